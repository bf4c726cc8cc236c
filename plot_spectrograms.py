"""Step 4: draw the pictures a person wants to look at after training and generating.

Into PLOTS_DIR (each figure is skipped, with a one-line message, when its source
is missing):

- ``comparison.png``: original | reconstructed spectrogram of the clips that
  generate.py wrote to OUTPUT_DIR/original/ and OUTPUT_DIR/reconstructed/;
- ``generated.png``: the spectrograms of the brand-new sounds in OUTPUT_DIR/generated/;
- ``training_curves.png``: total, reconstruction (MSE) and KL loss per epoch, from
  MODEL_DIR/history.csv, training and validation;
- ``latent_map.png``: every clip of SPECTROGRAMS_DIR encoded by the model, its
  latent mean projected to 2-D with PCA, coloured by label; held-out clips marked;
- ``latent_grid.png``: spectrograms decoded on a grid along the two main PCA
  directions of the latent space.

The spectrograms of WAV files are computed with the model's own frame size and
hop length, read from MODEL_DIR/params.json; nothing is typed twice.
Run ``python plot_spectrograms.py --help`` to list the settings.
"""

from pathlib import Path
from typing import Final

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from soundkit import plots
from soundkit.configurator import configure, require, run_script
from soundkit.errors import PipelineError
from soundkit.fileio import read_csv, read_json
from soundkit.latent_space import latent_discriminants, latent_grid_points, latent_pca
from soundkit.folders import (CLIPS_FILE, HISTORY_FILE, MODEL_FILE, PARAMS_FILE, SPECTROGRAMS_FILE, TRAINING_FILE,
                     check_same_parameters, clip_label_indices, load_model_folder, load_spectrograms,
                     with_model_groups)
from soundkit.plots import FIGURE_STYLE, save_figure, spectrogram_grid
from soundkit.spectrogram import MinMaxNormaliser, wav_spectrogram_db

# I/O
MODEL_DIR = "models/vae"
SPECTROGRAMS_DIR = "data/spectrograms"  # clips for the latent map
OUTPUT_DIR = "samples"                  # where generate.py wrote its WAV files
PLOTS_DIR = "samples/plots"
# figures
MAX_PER_FIGURE = 6                      # rows of comparison.png; generated.png shows twice as many
DPI = plots.DPI                         # pixels per inch of the PNG files
FREQUENCY_AXIS = plots.FREQUENCY_AXIS   # "linear" or "log" (Hz either way; log shows low drums better)
LATENT_GRID_SIZE = 5                    # latent_grid.png has this many rows and columns
LATENT_GRID_SPAN = 2.0                  # its edges are this many standard deviations from the centre
MAX_MAP_CLIPS = 5000                    # the latent map encodes at most this many clips (evenly spread)

GENERATED_COLUMNS: Final = 4
LOSS_PANELS: Final = [                         # (history.csv column, panel title)
    ("loss", "total loss"),
    ("reconstruction_loss", "reconstruction loss (MSE)"),
    ("kl_loss", "KL divergence"),
]


# --- the figures ------------------------------------------------------------------------

def plot_comparison(original_paths, reconstructed_paths, params, frequency_axis=FREQUENCY_AXIS):
    """Original | reconstructed spectrograms, one row per clip, from the WAV files.

    Parameters
    ----------
    original_paths, reconstructed_paths : list of path-like
        WAV files, in pairs (the same clip on the same row).
    params : dict
        The model's spectrogram parameters (sample_rate, frame_size, hop_length).

    Returns
    -------
    matplotlib.figure.Figure
    """
    if len(original_paths) != len(reconstructed_paths) or not original_paths:
        raise ValueError(f"need pairs of files, got {len(original_paths)} originals "
                         f"and {len(reconstructed_paths)} reconstructions")
    spectrograms_db, titles = [], []
    for original, reconstructed in zip(original_paths, reconstructed_paths):
        spectrograms_db += [wav_spectrogram_db(original, params), wav_spectrogram_db(reconstructed, params)]
        titles += [f"original: {Path(original).stem}", f"reconstructed: {Path(reconstructed).stem}"]
    with matplotlib.rc_context(FIGURE_STYLE):
        return spectrogram_grid(spectrograms_db, titles, params, columns=2, vmin=-80, vmax=0,
                                colour_bar_label="dB relative to the clip's peak",
                                frequency_axis=frequency_axis,
                                suptitle="Held-out clips and their reconstructions")


def plot_generated(paths, params, frequency_axis=FREQUENCY_AXIS):
    """Spectrograms of generated WAV files in a grid, titled with their file names.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if not paths:
        raise ValueError("no generated files to plot")
    spectrograms_db = [wav_spectrogram_db(path, params) for path in paths]
    titles = [Path(path).stem for path in paths]
    with matplotlib.rc_context(FIGURE_STYLE):
        return spectrogram_grid(spectrograms_db, titles, params, columns=min(GENERATED_COLUMNS, len(paths)),
                                vmin=-80, vmax=0, colour_bar_label="dB relative to the sound's peak",
                                frequency_axis=frequency_axis, suptitle="Generated sounds")


def read_history(history_csv):
    """history.csv as a dict column -> float array (missing values are NaN)."""
    rows = read_csv(history_csv)
    columns = {}
    for name in (rows[0].keys() if rows else []):
        columns[name] = np.array([float(row[name]) if row.get(name) not in (None, "") else np.nan
                                  for row in rows])
    return columns


def plot_training_curves(history_csv, path=None, dpi=DPI):
    """Total, reconstruction and KL loss against epoch: training solid, validation dashed.

    Panels whose columns are missing from the file are left out; a loss panel
    whose values are all positive gets a logarithmic y-axis.

    Parameters
    ----------
    history_csv : path-like
        The file train.py writes (columns epoch, loss, reconstruction_loss, kl_loss
        and their ``val_`` versions).
    path : path-like, optional
        Where to save the figure as PNG.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        When the file has none of the loss columns.
    """
    history = read_history(history_csv)
    panels = [(column, title) for column, title in LOSS_PANELS
              if column in history or "val_" + column in history]
    if not panels:
        raise ValueError(f"{history_csv} has none of the columns {', '.join(c for c, _ in LOSS_PANELS)}")
    any_column = history[panels[0][0]] if panels[0][0] in history else history["val_" + panels[0][0]]
    epochs = history.get("epoch", np.arange(1, len(any_column) + 1))
    marker = "o" if len(epochs) <= 30 else None  # a few epochs: show the points themselves

    with matplotlib.rc_context(FIGURE_STYLE):
        figure = Figure(figsize=(4.0 * len(panels), 3.4), layout="constrained")
        axes_row = figure.subplots(1, len(panels), squeeze=False)[0]
        for axes, (column, title) in zip(axes_row, panels):
            plotted = []
            for name, label, style in ((column, "training", "-"), ("val_" + column, "validation", "--")):
                if name in history:
                    axes.plot(epochs, history[name], style, marker=marker, markersize=3, label=label)
                    plotted.append(history[name])
            values = np.concatenate(plotted)
            values = values[np.isfinite(values)]
            if values.size and np.all(values > 0):
                axes.set_yscale("log")
            axes.set_title(title)
            axes.set_xlabel("epoch")
            axes.xaxis.set_major_locator(MaxNLocator(integer=True))
            axes.grid(True, which="major", alpha=0.3)
            axes.legend()
        figure.suptitle("Training curves")
    if path is not None:
        save_figure(figure, path, dpi)
    return figure


def group_names(clips):
    """Colour group of each clip: its label, else the top-level folder of its file, else "(none)"."""
    names = []
    for clip in clips:
        if clip.get("label") is not None:
            names.append(str(clip["label"]))
        else:
            parts = Path(clip["file"]).parts
            names.append(parts[0] if len(parts) > 1 else "(none)")
    return names


def plot_latent_map(projected, explained_variance_ratio, groups, held_out, discriminant=None):
    """Scatter of the 2-D projected latent means, coloured by group, held-out clips as triangles.

    Parameters
    ----------
    projected : numpy.ndarray
        (clips, 2) coordinates from ``latent_pca``.
    explained_variance_ratio : sequence of float
        Share of the variance along each axis, shown in the axis labels.
    groups : list of str
        Colour group (label) of each clip.
    held_out : numpy.ndarray of bool
        True for clips the model did not train on.
    discriminant : tuple, optional
        (coordinates, separation) from ``latent_discriminants``: drawn as a
        second panel, the view that separates the groups best.

    Returns
    -------
    matplotlib.figure.Figure
    """
    projected = np.asarray(projected, dtype=np.float64)
    if projected.shape[1] < 2:
        projected = np.hstack([projected, np.zeros((len(projected), 2 - projected.shape[1]))])
    held_out = np.asarray(held_out, dtype=bool)
    names = sorted(set(groups), key=str)
    colours = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20" if len(names) <= 20 else "turbo"]
    size = 28 if len(projected) <= 500 else 10
    ratios = list(explained_variance_ratio) + [0.0] * (2 - len(explained_variance_ratio))
    panels = [(projected, f"PC 1 ({100 * ratios[0]:.1f}% of the variance)",
               f"PC 2 ({100 * ratios[1]:.1f}% of the variance)",
               f"Latent means of {len(projected)} clips, PCA projection")]
    if discriminant is not None:
        coordinates, separation = discriminant
        panels.append((np.asarray(coordinates), f"LD 1 (between/within-class variance {separation[0]:.1f})",
                       f"LD 2 (between/within-class variance {separation[1]:.1f})",
                       "The two directions that separate the classes best (LDA)"))
    with matplotlib.rc_context(FIGURE_STYLE):
        figure = Figure(figsize=(7.5 + 5.5 * (len(panels) - 1), 6.0), layout="constrained")
        for axes, (points, xlabel, ylabel, title) in zip(np.atleast_1d(figure.subplots(1, len(panels))), panels):
            for index, name in enumerate(names):
                colour = colours(index / max(len(names) - 1, 1)) if len(names) > 20 else colours(index)
                in_group = np.array([group == name for group in groups])
                axes.scatter(*points[in_group & ~held_out, :2].T, s=size, color=colour, marker="o",
                             alpha=0.75, linewidths=0, label=name)
                axes.scatter(*points[in_group & held_out, :2].T, s=size * 1.8, color=colour, marker="^",
                             edgecolors="black", linewidths=0.6)
            axes.set_xlabel(xlabel)
            axes.set_ylabel(ylabel)
            axes.set_title(title)
            axes.grid(True, alpha=0.3)
        label_legend = axes.legend(title="label", loc="upper left", bbox_to_anchor=(1.01, 1.0),
                                   ncol=1 if len(names) <= 20 else 2)
        axes.add_artist(label_legend)
        markers = [Line2D([], [], marker="o", linestyle="", color="grey", label="training clip"),
                   Line2D([], [], marker="^", linestyle="", color="grey", markeredgecolor="black",
                          label="held-out clip")]
        axes.legend(handles=markers, loc="lower left", bbox_to_anchor=(1.01, 0.0))
    return figure


def plot_latent_grid(vae, means, params, generation_level_db, label_index=None, label_name="",
                     grid_size=LATENT_GRID_SIZE, span=LATENT_GRID_SPAN, frequency_axis=FREQUENCY_AXIS):
    """Spectrograms decoded on a grid along the two main PCA directions of the latent means.

    Parameters
    ----------
    vae : autoencoder.VAE
    means : numpy.ndarray
        (clips, latent_dim) latent means of the dataset.
    params : dict
        The model's spectrogram parameters.
    generation_level_db : dict
        {"min", "max"} dB range that turns the decoder's [0, 1] output into dB
        (training.json's ``generation_level_db``).
    label_index : int, optional
        The class to decode with, for a conditional model.

    Returns
    -------
    matplotlib.figure.Figure
    """
    latents, offsets = latent_grid_points(means, grid_size, span)
    labels = None if label_index is None else np.full(grid_size * grid_size, label_index)
    decoded = vae.decode(latents.reshape(-1, latents.shape[-1]).astype(np.float32), labels)[..., 0]
    low, high = generation_level_db["min"], generation_level_db["max"]
    spectrograms_db = MinMaxNormaliser().denormalise(decoded, low, high)
    # Column titles on the top row only, row names with the frequency axis of the left column.
    titles = [f"PC 1 {column:+g}σ" for column in offsets] + [""] * (grid_size * (grid_size - 1))
    heading = "Decoded from the mean latent vector moved along the two main PCA directions"
    if label_name:
        heading += f" (label {label_name!r})"
    with matplotlib.rc_context(FIGURE_STYLE):
        figure = spectrogram_grid(list(spectrograms_db), titles, params, columns=grid_size, vmin=low, vmax=high,
                                  colour_bar_label="dB", frequency_axis=frequency_axis, suptitle=heading,
                                  panel_size=(2.6, 1.6))
        for axes, row in zip(figure.axes[::grid_size], offsets[::-1]):
            axes.set_ylabel(f"PC 2 {row:+g}σ\nfrequency (Hz)")
    return figure


# --- finding the inputs ------------------------------------------------------------------

def generated_files(output_dir):
    """(generated paths, original paths, reconstructed paths) written by generate.py that exist.

    Uses the lists in generation.json when there is one, else the folders' WAV files;
    originals and reconstructions are paired by file name.
    """
    output_dir = Path(output_dir)
    listing = output_dir / "generation.json"
    if listing.exists():
        files = read_json(listing).get("files", {})
        found = {kind: [output_dir / name for name in files.get(kind, [])] for kind in
                 ("generated", "original", "reconstructed")}
    else:
        found = {kind: sorted((output_dir / kind).glob("*.wav")) for kind in ("generated", "original", "reconstructed")}
    found = {kind: [path for path in paths if path.exists()] for kind, paths in found.items()}
    originals = {path.name: path for path in found["original"]}
    reconstructed = [path for path in found["reconstructed"] if path.name in originals]
    return found["generated"], [originals[path.name] for path in reconstructed], reconstructed


def latent_figures(config):
    """[(figure, name)] of latent_map.png and latent_grid.png, or [] (with the reason printed) when the
    model or the dataset is missing."""
    model_dir, spectrograms_dir = Path(config.MODEL_DIR), Path(config.SPECTROGRAMS_DIR)
    needed = [model_dir / MODEL_FILE, model_dir / TRAINING_FILE, model_dir / PARAMS_FILE,
              spectrograms_dir / SPECTROGRAMS_FILE, spectrograms_dir / CLIPS_FILE, spectrograms_dir / PARAMS_FILE]
    missing = [path for path in needed if not path.exists()]
    if missing:
        hint = "run preprocess.py first" if missing[0].parent == spectrograms_dir else "run train.py first"
        print(f"skipping latent_map.png and latent_grid.png: {missing[0]} not found ({hint})")
        return []
    model = load_model_folder(model_dir)
    vae, params, training = model.vae, model.params, model.training
    spectrograms, clips, data_params = load_spectrograms(spectrograms_dir)
    check_same_parameters(params, data_params, spectrograms_dir)
    clips = with_model_groups(clips, model_dir)  # an unlabelled folder's groups are coloured as classes
    label_names = model.decoder_classes
    clip_indices = np.arange(len(clips))
    if label_names:  # a conditional model encodes each clip with its label
        clip_indices = np.array([i for i in clip_indices if clips[i].get("label") in label_names], dtype=int)
        if len(clip_indices) < len(clips):
            print(f"latent map: {len(clips) - len(clip_indices)} clips with labels unknown to the model left out")
    if len(clip_indices) > config.MAX_MAP_CLIPS:
        clip_indices = clip_indices[np.linspace(0, len(clip_indices) - 1, config.MAX_MAP_CLIPS).astype(int)]
    if len(clip_indices) < 2:
        print(f"skipping latent_map.png and latent_grid.png: fewer than 2 usable clips in {spectrograms_dir}")
        return []
    chosen_clips = [clips[i] for i in clip_indices]
    means = vae.encode_rows(spectrograms, clip_indices, clip_label_indices(chosen_clips, label_names))
    projected, _, explained = latent_pca(means)
    held_out_ids = set(training.get("validation_ids", []))
    held_out = np.array([clip["id"] in held_out_ids for clip in chosen_clips])
    groups = group_names(chosen_clips)
    discriminant = latent_discriminants(means, groups) if len(set(groups)) >= 3 else None
    grid = plot_latent_grid(vae, means, params, training["generation_level_db"],
                            label_index=0 if label_names else None, label_name=label_names[0] if label_names else "",
                            grid_size=config.LATENT_GRID_SIZE, span=config.LATENT_GRID_SPAN,
                            frequency_axis=config.FREQUENCY_AXIS)
    return [(plot_latent_map(projected, explained, groups, held_out, discriminant), "latent_map.png"),
            (grid, "latent_grid.png")]


def validate(config):
    checks = [
        (config.MAX_PER_FIGURE >= 1, f"MAX_PER_FIGURE must be at least 1, got {config.MAX_PER_FIGURE}"),
        (10 <= config.DPI <= 1000, f"DPI must be between 10 and 1000, got {config.DPI}"),
        (config.FREQUENCY_AXIS in ("linear", "log"),
         f"FREQUENCY_AXIS must be 'linear' or 'log', got {config.FREQUENCY_AXIS!r}"),
        (config.LATENT_GRID_SIZE >= 2, f"LATENT_GRID_SIZE must be at least 2, got {config.LATENT_GRID_SIZE}"),
        (config.LATENT_GRID_SPAN > 0, f"LATENT_GRID_SPAN must be positive, got {config.LATENT_GRID_SPAN}"),
        (config.MAX_MAP_CLIPS >= 2, f"MAX_MAP_CLIPS must be at least 2, got {config.MAX_MAP_CLIPS}"),
    ]
    require(checks)


def main(argv=None):
    config = configure(globals(), argv)
    validate(config)
    model_dir, output_dir, plots_dir = Path(config.MODEL_DIR), Path(config.OUTPUT_DIR), Path(config.PLOTS_DIR)
    written = []

    def skip(figure_name, missing, hint):
        print(f"skipping {figure_name}: {missing} not found ({hint})")

    def save(figure, name):
        written.append(save_figure(figure, plots_dir / name, config.DPI))

    params_path = model_dir / PARAMS_FILE
    params = read_json(params_path) if params_path.exists() else None

    # 1 and 2: the WAV files of generate.py.
    generated, originals, reconstructed = generated_files(output_dir)
    if params is None:
        skip("comparison.png and generated.png", params_path, "run train.py first")
    else:
        if reconstructed:
            count = config.MAX_PER_FIGURE
            save(plot_comparison(originals[:count], reconstructed[:count], params, config.FREQUENCY_AXIS),
                 "comparison.png")
        else:
            skip("comparison.png", output_dir / "reconstructed", "run generate.py first")
        if generated:
            save(plot_generated(generated[:2 * config.MAX_PER_FIGURE], params, config.FREQUENCY_AXIS),
                 "generated.png")
        else:
            skip("generated.png", output_dir / "generated", "run generate.py first")

    # 3: the training curves.
    history_csv = model_dir / HISTORY_FILE
    if history_csv.exists():
        try:
            save(plot_training_curves(history_csv), "training_curves.png")
        except ValueError as error:
            print(f"skipping training_curves.png: {error}")
    else:
        skip("training_curves.png", history_csv, "run train.py first")

    # 4 and 5: the latent space, from the model and the dataset.
    for figure, name in latent_figures(config):
        save(figure, name)

    if not written:
        raise PipelineError(f"nothing to plot: no model in {model_dir} and no sounds in {output_dir}. "
                            f"Run train.py and generate.py first (or pass --model_dir=PATH --output_dir=PATH)")
    print(f"wrote {len(written)} figures to {plots_dir}/:")
    for path in written:
        print(f"  {path}")
    return written


if __name__ == "__main__":
    run_script(main)
