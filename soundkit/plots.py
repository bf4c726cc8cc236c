"""Drawing helpers shared by plot_spectrograms.py and generate.py (the morph strip, the listening page).

Files only, no window (matplotlib's Agg backend): works on servers and in tests.
Every spectrogram is drawn with time in seconds and frequency in Hz.
"""

from pathlib import Path
from typing import Final

import librosa
import matplotlib

matplotlib.use("Agg")  # files only, no window: works on servers and in tests

from librosa.display import specshow  # noqa: E402  (after the backend is chosen)
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FormatStrFormatter, MaxNLocator  # noqa: E402

DPI: Final = 110                               # pixels per inch of the PNG files (plot_spectrograms.py's default)
FREQUENCY_AXIS: Final = "linear"               # or "log" (plot_spectrograms.py's default)
PANEL_SIZE: Final = (4.0, 2.3)                 # inches per spectrogram panel (width, height)
FIGURE_STYLE = {"font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9,
                "xtick.labelsize": 8, "ytick.labelsize": 8, "legend.fontsize": 8,
                "figure.titlesize": 11}


def show_spectrogram(axes, spectrogram_db, params, vmin, vmax, frequency_axis=FREQUENCY_AXIS):
    """Draw one dB spectrogram on ``axes`` with time in seconds and frequency in Hz."""
    # The model's spectrograms lack the Nyquist row: give the bins' own frequencies.
    frequencies = librosa.fft_frequencies(sr=params["sample_rate"], n_fft=params["frame_size"])
    image = specshow(spectrogram_db, ax=axes, sr=params["sample_rate"], n_fft=params["frame_size"],
                     hop_length=params["hop_length"], x_axis="time", y_axis=frequency_axis,
                     y_coords=frequencies[:len(spectrogram_db)], vmin=vmin, vmax=vmax, cmap="magma")
    axes.xaxis.set_major_locator(MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10]))
    axes.xaxis.set_major_formatter(FormatStrFormatter("%g"))  # seconds, without trailing zeros
    axes.set_xlabel("time (s)")
    axes.set_ylabel("frequency (Hz)")
    return image


def spectrogram_grid(spectrograms_db, titles, params, columns, vmin, vmax, colour_bar_label,
                     frequency_axis=FREQUENCY_AXIS, suptitle=None, panel_size=PANEL_SIZE):
    """A figure with one panel per spectrogram, shared axes and one colour bar.

    Only the outer panels keep their tick labels and axis names, so the grid stays readable.
    """
    rows = -(-len(spectrograms_db) // columns)
    width, height = panel_size
    figure = Figure(figsize=(columns * width + 1.2, rows * height + (0.9 if suptitle else 0.5)),
                    layout="constrained")
    axes_grid = figure.subplots(rows, columns, sharex=True, sharey=True, squeeze=False)
    image = None
    for axes, spectrogram_db, title in zip(axes_grid.flat, spectrograms_db, titles):
        image = show_spectrogram(axes, spectrogram_db, params, vmin, vmax, frequency_axis)
        axes.set_title(title)
    for axes in axes_grid.flat[len(spectrograms_db):]:
        axes.set_axis_off()  # the unused panels of the last row
    # Axis names and tick labels only on the left column and above an empty space.
    for index, axes in enumerate(axes_grid.flat[:len(spectrograms_db)]):
        below_is_empty = index + columns >= len(spectrograms_db)
        axes.tick_params(labelbottom=below_is_empty, labelleft=index % columns == 0)
        if not below_is_empty:
            axes.set_xlabel("")
        if index % columns:
            axes.set_ylabel("")
    figure.colorbar(image, ax=axes_grid.ravel().tolist(), format="%+.0f dB", label=colour_bar_label,
                    shrink=min(1.0, 0.5 + 0.1 * rows))
    if suptitle:
        figure.suptitle(suptitle)
    return figure


def save_figure(figure, path, dpi=DPI):
    """Write ``figure`` as a PNG of exactly (width x height inches) * dpi pixels; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi, facecolor="white")
    return path
