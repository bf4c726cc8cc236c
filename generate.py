"""Step 3: write new sounds, and reconstructions of dataset clips, as WAV files.

Into OUTPUT_DIR:
- ``generated/``: NUM_GENERATED brand-new sounds decoded from the prior (for an
  unconditional model, by default the Gaussians train.py fitted to where its
  training clips lie in the latent space, one per class when clips had labels);
- ``original/`` and ``reconstructed/``: NUM_RECONSTRUCTED held-out clips and what
  the model makes of them (the original is the clip's own spectrogram through
  the same phase reconstruction, so the difference you hear is the model's).
- ``morph/``: when MORPH_FROM and MORPH_TO are both set, MORPH_STEPS sounds that
  walk through the latent space from one to the other (``morph_00.wav`` ...),
  and ``morph_strip.png``, their spectrograms in order;
- ``index.html``: a listening page to open in any browser (no server, no
  internet): a player and a spectrogram picture (from ``spectrograms/``) for
  every sound written, originals beside their reconstructions, and the settings.

All spectrogram parameters come from MODEL_DIR; nothing is typed twice.
Run ``python generate.py --help`` to list the settings.
"""

import html
import json
from pathlib import Path
from typing import NamedTuple, Optional
from urllib.parse import quote

import numpy as np

from configurator import PipelineError, configure, run_script
from fileio import atomic_write, file_sha256, read_json, safe_name, write_json

# I/O
MODEL_DIR = "models/vae"
SPECTROGRAMS_DIR = "data/spectrograms"  # source of the clips to reconstruct
OUTPUT_DIR = "samples"
# what to write
NUM_GENERATED = 10
NUM_RECONSTRUCTED = 5
LABEL = ""                              # models that know classes: the class to generate ("" = every class)
TEMPERATURE = 1.0                       # spread of the prior samples; lower = safer, less varied
PRIOR = "fitted"                        # unconditional models: "fitted" (latent_prior.json) or "standard" N(0, I)
SEED = 0
# phase reconstruction
PHASE_METHOD = "griffinlim"             # "griffinlim" or "zero_phase" (the tutorial's, for comparison)
GRIFFIN_LIM_ITERATIONS = 32
GRIFFIN_LIM_MOMENTUM = 0.99
# the WAV files: ready for a sampler
PEAK_DBFS = -1.0                        # every sound is normalised to this peak (dBFS)
NORMALIZE = True                        # False: only sounds louder than PEAK_DBFS are turned down
BIT_DEPTH = 24                          # 16 or 24-bit PCM, or 32 (float)
TRIM_DB = -60.0                         # trailing audio this far below the peak is trimmed
END_FADE = 0.01                         # seconds of fade at the end, so no sound ends with a click
# morphing: both set = a morph from one to the other
MORPH_FROM = ""                         # an audio file, or a class name of the model
MORPH_TO = ""
MORPH_STEPS = 8                         # sounds in the morph, both ends included
MORPH_INTERPOLATION = "slerp"           # "linear" or "slerp" (along the sphere, as prior samples lie)
# listening page (index.html)
PAGE_IMAGE_SIZE = [320, 160]            # pixels (width, height) of each sound's spectrogram picture


def load_model_folder(model_dir):
    """Return (vae, params, training info) from a folder written by train.py, or a clear error."""
    model_dir = Path(model_dir)
    missing = [name for name in ("model.keras", "params.json", "training.json") if not (model_dir / name).exists()]
    if missing:
        raise PipelineError(f"{model_dir} has no {', '.join(missing)}: train a model with train.py first "
                            f"(or pass --model_dir=PATH)")
    from train import TRAINING_FORMAT_VERSION

    try:
        training = read_json(model_dir / "training.json")
    except (OSError, ValueError) as error:
        raise PipelineError(f"cannot read {model_dir}/training.json ({error}): train the model again") from None
    if training.get("format_version") != TRAINING_FORMAT_VERSION:
        raise PipelineError(f"{model_dir} was written by an incompatible version of train.py "
                            f"(format {training.get('format_version')}, expected {TRAINING_FORMAT_VERSION}): "
                            f"train it again")
    from autoencoder import VAE

    try:
        vae = VAE.load(model_dir)
    except Exception as error:
        raise PipelineError(f"cannot load {model_dir}/model.keras ({type(error).__name__}: {error}); "
                            f"it may be damaged or from another version: train again") from None
    return vae, read_json(model_dir / "params.json"), training


def check_same_parameters(model_params, data_params, data_dir):
    """Refuse spectrograms made with other parameters than the model's."""
    ignore = {"labels", "long_files", "max_clips_per_file", "silence_db"}
    differing = [name for name in sorted(set(model_params) | set(data_params))
                 if name not in ignore and model_params.get(name) != data_params.get(name)]
    if differing:
        details = ", ".join(f"{name}: model {model_params.get(name)!r}, data {data_params.get(name)!r}"
                            for name in differing)
        raise PipelineError(f"the spectrograms in {data_dir} were made with other parameters than the model "
                            f"({details}). Run preprocess.py with the model's settings, or use the matching model.")


def load_latent_prior(model_dir, model=None, spectrograms_dir=None):
    """The model's fitted ``LatentPrior``, or None (with the reason printed) when it has none that fits.

    When ``latent_prior.json`` is missing or was fitted for another ``model.keras``
    (training was interrupted by Ctrl-C, a kill or a time limit) and the model's
    training clips are in ``spectrograms_dir``, the prior of ``model`` (what
    ``load_model_folder`` returns) is fitted to them now and saved, so every
    model can generate by class however its training ended.
    """
    from autoencoder import LATENT_PRIOR_FILE, MODEL_FILE, LatentPrior

    path = Path(model_dir) / LATENT_PRIOR_FILE
    reason = None
    if not path.exists():
        reason = f"{path} is missing (training did not finish)"
    else:
        try:
            data = read_json(path)
            if data.get("model_sha256") == file_sha256(Path(model_dir) / MODEL_FILE):
                return LatentPrior.from_json(data)
            reason = f"{path} was fitted for another model.keras"
        except (OSError, ValueError, KeyError, TypeError) as error:
            reason = f"cannot use {path} ({error})"
    prior = None
    if model is not None and spectrograms_dir is not None:
        prior = _fit_missing_prior(model_dir, *model, spectrograms_dir)
    if prior is None:
        print(f"note: {reason}: new sounds come from N(0, I)")
    else:
        print(f"note: {reason}: fitted it now to the training clips in {spectrograms_dir}")
    return prior


def _fit_missing_prior(model_dir, vae, params, training, spectrograms_dir):
    """Fit and save the latent prior of ``vae`` to its training clips, or None when that cannot be done."""
    from autoencoder import fit_latent_prior, save_latent_prior
    from preprocess import load_spectrograms

    try:
        data, clips, data_params = load_spectrograms(spectrograms_dir)
        check_same_parameters(params, data_params, spectrograms_dir)
    except PipelineError as error:
        print(f"note: cannot fit the latent prior now: {error}")
        return None
    held_out = set(training.get("validation_ids", []))
    train_indices = [i for i, clip in enumerate(clips) if clip["id"] not in held_out]
    class_names = model_classes(training)
    if not train_indices or (class_names and any(clip.get("label") not in class_names for clip in clips)):
        print(f"note: the clips in {spectrograms_dir} are not the ones this model was trained on")
        return None
    try:
        prior = fit_latent_prior(vae, data, clips, train_indices, class_names)
    except ValueError as error:
        print(f"note: cannot fit the latent prior now: {error}")
        return None
    save_latent_prior(model_dir, prior)
    return prior


def model_classes(training):
    """The classes a model knows, from its ``training.json``: what --label and class morph ends accept."""
    return training.get("class_names") or training["label_names"] or training.get("latent_label_names") or []


def resolve_labels(label, label_names, count):
    """Label indices for ``count`` sounds: the requested class, or every class in turn."""
    if not label_names:
        if label:
            raise PipelineError(f"--label={label} needs a model that knows classes: train on labelled clips "
                                f"(sub-folders or FSDD-style names), or with --conditional=true")
        return None, [""] * count
    if label:
        if label not in label_names:
            raise PipelineError(f"unknown label {label!r}; this model knows: {', '.join(label_names)}")
        return np.full(count, label_names.index(label)), [label] * count
    indices = np.arange(count) % len(label_names)
    return indices, [label_names[i] for i in indices]


def clip_label_indices(clips, label_names):
    """Class indices of dataset clips for a conditional model (None for an unconditional one)."""
    if not label_names:
        return None
    unknown = sorted({clip.get("label") for clip in clips} - set(label_names), key=str)
    if unknown:
        raise PipelineError(f"clips with labels {unknown} unknown to the model "
                            f"(it knows {', '.join(label_names)})")
    return np.array([label_names.index(clip["label"]) for clip in clips])


WAV_SUBTYPES = {16: "PCM_16", 24: "PCM_24", 32: "FLOAT"}


def write_wavs(signals, names, folder, sample_rate, config):
    """Write signals as WAVs ready for a sampler (see ``soundgenerator.finish_for_sampler``).

    ``config`` holds PEAK_DBFS, NORMALIZE, BIT_DEPTH, TRIM_DB and END_FADE. Names are
    sanitised and made unique; nothing is written outside ``folder``.
    """
    import soundfile as sf

    from soundgenerator import finish_for_sampler

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for signal, name in zip(signals, names):
        stem = safe_name(name)
        while folder / (stem + ".wav") in paths:  # two ids that sanitise to one name
            stem += "_"
        finished = finish_for_sampler(signal, sample_rate, config.PEAK_DBFS, config.NORMALIZE,
                                      config.TRIM_DB, config.END_FADE)
        path = folder / (stem + ".wav")
        sf.write(path, finished, sample_rate, subtype=WAV_SUBTYPES[config.BIT_DEPTH])
        paths.append(path)
    return paths


# --- morphing ----------------------------------------------------------------------------

class MorphEnd(NamedTuple):
    """One end of a morph: its latent vector, class and loudness, and a name for titles."""

    name: str
    latent: np.ndarray          # (latent_dim,)
    label: Optional[int]        # class index for a conditional model, else None
    min_db: float               # the dB range that turns the decoder's [0, 1] into dB
    max_db: float


class Morph(NamedTuple):
    """The steps of a morph, in order, decoded."""

    positions: np.ndarray       # (steps,) from 0 (the start) to 1 (the end)
    latents: np.ndarray         # (steps, latent_dim)
    labels: Optional[np.ndarray]  # (steps,) class index of each step, or None
    min_db: np.ndarray          # (steps,)
    max_db: np.ndarray          # (steps,)
    spectrograms: np.ndarray    # (steps, bins, frames, 1) in [0, 1]


def spectrogram_of_file(path, params):
    """Normalised log-spectrogram of an audio file, made exactly as preprocess.py makes them.

    Parameters
    ----------
    path : path-like
        Any audio file soundfile reads; it is resampled, mixed to mono and cut
        or padded to the model's duration.
    params : dict
        The model's spectrogram parameters (``params.json``).

    Returns
    -------
    spectrogram : numpy.ndarray
        (frame_size // 2, frames) float32 values in [0, 1].
    min_db, max_db : float
        The dB values that 0 and 1 stand for.

    Raises
    ------
    PipelineError
        When the file does not exist or cannot be used (unreadable, silent).
    """
    from preprocess import Loader, LogSpectrogramExtractor, MinMaxNormaliser, clips_of_signal

    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"no audio file at {path}")
    try:
        signal = clips_of_signal(Loader(params["sample_rate"]).load(path), {**params, "long_files": "cut"})[0]
        spectrogram_db = LogSpectrogramExtractor(params["frame_size"], params["hop_length"],
                                                 params["top_db"]).extract(signal)
        return MinMaxNormaliser(0.0, 1.0).normalise(spectrogram_db)
    except ValueError as error:
        raise PipelineError(f"cannot use {path}: {error}") from None


def interpolate_latents(start, end, steps, method="slerp"):
    """Points from ``start`` to ``end`` in latent space, both ends included.

    Parameters
    ----------
    start, end : array_like
        Latent vectors of the same length.
    steps : int
        Number of points, at least 2.
    method : {"slerp", "linear"}
        "linear": evenly spaced on the straight line. "slerp": spherical
        interpolation, evenly spaced in angle; the path keeps the length of the
        vectors instead of cutting through the low-probability centre of the
        prior. When the angle is 0 or 180 degrees (or an end is the zero vector)
        the direction is undefined and slerp falls back to linear.

    Returns
    -------
    numpy.ndarray
        (steps, latent_dim) float32; the first row is ``start``, the last ``end``.

    Examples
    --------
    >>> interpolate_latents([1.0, 0.0], [0.0, 1.0], 3, "slerp").astype(float).round(3).tolist()
    [[1.0, 0.0], [0.707, 0.707], [0.0, 1.0]]
    >>> interpolate_latents([1.0, 0.0], [0.0, 1.0], 3, "linear").tolist()
    [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]
    """
    start = np.asarray(start, dtype=np.float64).reshape(-1)
    end = np.asarray(end, dtype=np.float64).reshape(-1)
    if start.shape != end.shape:
        raise ValueError(f"start and end must have the same length, got {len(start)} and {len(end)}")
    if steps < 2:
        raise ValueError(f"steps must be at least 2, got {steps}")
    if method not in ("linear", "slerp"):
        raise ValueError(f"method must be 'linear' or 'slerp', got {method!r}")
    positions = np.linspace(0.0, 1.0, steps)[:, np.newaxis]
    points = (1 - positions) * start + positions * end
    lengths = np.linalg.norm(start) * np.linalg.norm(end)
    if method == "slerp" and lengths > 0:
        angle = np.arccos(np.clip(np.dot(start, end) / lengths, -1.0, 1.0))
        if np.sin(angle) > 1e-6:
            points = (np.sin((1 - positions) * angle) * start + np.sin(positions * angle) * end) / np.sin(angle)
    points[0], points[-1] = start, end  # exactly, not up to rounding
    return points.astype(np.float32)


def class_of_file(path, label_names):
    """The class of an audio file for a conditional model: its folder's name, else an FSDD-style name."""
    from preprocess import FSDD_NAME

    path = Path(path)
    if path.parent.name in label_names:
        return label_names.index(path.parent.name)
    match = FSDD_NAME.match(path.stem)
    if match and match[1] in label_names:
        return label_names.index(match[1])
    raise PipelineError(f"cannot tell the class of {path} for this conditional model: put it in a folder "
                        f"named after its class (one of: {', '.join(label_names)})")


def class_end(name, vae, label_names, spectrograms_dir, model_params, generation_level_db):
    """A class of the model as a morph end: the mean latent of its clips in ``spectrograms_dir``.

    Without such clips, the prior's mean (the zero vector) and the training
    set's typical level stand for the class.
    """
    from preprocess import load_spectrograms

    label = label_names.index(name) if vae.num_classes else None  # only a conditional model takes it
    latent = np.zeros(vae.latent_space_dim, dtype=np.float32)
    min_db, max_db = generation_level_db["min"], generation_level_db["max"]
    spectrograms_dir = Path(spectrograms_dir)
    if not (spectrograms_dir / "clips.json").exists():
        print(f"morph: no clips in {spectrograms_dir}; class {name!r} starts from the prior's mean")
        return MorphEnd(name, latent, label, min_db, max_db)
    data, clips, data_params = load_spectrograms(spectrograms_dir)
    check_same_parameters(model_params, data_params, spectrograms_dir)
    indices = np.array([i for i, clip in enumerate(clips) if clip.get("label") == name], dtype=int)
    if len(indices) == 0:
        print(f"morph: no clips of class {name!r} in {spectrograms_dir}; it starts from the prior's mean")
        return MorphEnd(name, latent, label, min_db, max_db)
    means = vae.encode_rows(data, indices, None if label is None else np.full(len(indices), label))
    return MorphEnd(name, means.mean(axis=0), label, float(np.mean([clips[i]["min"] for i in indices])),
                    float(np.mean([clips[i]["max"] for i in indices])))


def morph_end(text, setting, vae, params, training, spectrograms_dir):
    """Turn MORPH_FROM or MORPH_TO (an audio file or a class name) into a ``MorphEnd``.

    Parameters
    ----------
    text : str
        A class name of the model (classes win over files of the
        same name), or the path of an audio file.
    setting : str
        The setting's name, for messages.
    vae : autoencoder.VAE
    params, training : dict
        The model folder's ``params.json`` and ``training.json``.
    spectrograms_dir : path-like
        Where the clips of a class are looked for.

    Raises
    ------
    PipelineError
        When ``text`` is neither a class of the model nor a usable audio file.
    """
    label_names = training["label_names"]
    classes = model_classes(training)
    if classes and text in classes:
        return class_end(text, vae, classes, spectrograms_dir, params, training["generation_level_db"])
    if not Path(text).is_file():
        known = (f"this model's classes: {', '.join(classes)}" if classes
                 else "this model has no classes, so give an audio file")
        raise PipelineError(f"{setting} {text!r} is neither an audio file nor a class of the model ({known})")
    spectrogram, min_db, max_db = spectrogram_of_file(text, params)
    label = class_of_file(text, label_names) if label_names else None
    mean, _ = vae.encode(spectrogram[np.newaxis], None if label is None else [label])
    return MorphEnd(Path(text).name, mean[0], label, min_db, max_db)


def morph(vae, start, end, steps, interpolation="slerp"):
    """Decode ``steps`` points on the way from one ``MorphEnd`` to another.

    The latent vector follows ``interpolate_latents``; the dB range moves in a
    straight line from the start's to the end's. A conditional decoder needs one
    class per step: the first half of the steps (position < 0.5) use the start's
    class, the rest the end's.

    Returns
    -------
    Morph
    """
    positions = np.linspace(0.0, 1.0, steps)
    latents = interpolate_latents(start.latent, end.latent, steps, interpolation)
    labels = None
    if start.label is not None:
        labels = np.where(positions < 0.5, start.label, end.label)
    min_db = (1 - positions) * start.min_db + positions * end.min_db
    max_db = (1 - positions) * start.max_db + positions * end.max_db
    return Morph(positions, latents, labels, min_db, max_db, vae.decode(latents, labels))


def plot_morph_strip(result, params, title, columns=8):
    """The decoded spectrograms of a morph in order, time in seconds and frequency in Hz.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib

    from plot_spectrograms import FIGURE_STYLE, spectrogram_grid

    spectrograms_db = result.spectrograms[..., 0] * (result.max_db - result.min_db)[:, None, None] \
        + result.min_db[:, None, None]
    titles = [f"step {index}" for index in range(len(spectrograms_db))]
    with matplotlib.rc_context(FIGURE_STYLE):
        return spectrogram_grid(list(spectrograms_db), titles, params, columns=min(columns, len(titles)),
                                vmin=float(result.min_db.min()), vmax=float(result.max_db.max()),
                                colour_bar_label="dB", suptitle=title, panel_size=(2.3, 1.7))


# --- the listening page ------------------------------------------------------------------

# Fixed looks of the page (underscored: not settings).
_PAGE_FIGURE_STYLE = {"font.size": 6, "axes.labelsize": 6, "xtick.labelsize": 6, "ytick.labelsize": 6,
                     "xtick.major.size": 2, "ytick.major.size": 2, "xtick.major.pad": 1.5,
                     "ytick.major.pad": 1.5, "axes.labelpad": 1.5}
_PAGE_MARGINS_PX = (38, 8, 26, 5)       # left, right, bottom, top around each picture's axes

_PAGE_STYLE = """
:root { color-scheme: light; --ink: #1d1d1f; --muted: #5f6368; --line: #dedbd5; --card: #fff; }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px 32px 48px; background: #f4f2ee; color: var(--ink);
       font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
header { max-width: 1100px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 36px 0 4px; padding-top: 8px; border-top: 1px solid var(--line); }
h3 { font-size: 14px; margin: 14px 0 8px; color: var(--muted); text-transform: uppercase; letter-spacing: .06em; }
p { margin: 4px 0 10px; max-width: 900px; }
.muted { color: var(--muted); }
nav a { margin-right: 14px; color: #8a3b12; }
.groups { display: flex; flex-wrap: wrap; gap: 6px 36px; }
.sounds { display: flex; flex-wrap: wrap; gap: 14px; }
.sound, .pair { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 8px;
                box-shadow: 0 1px 2px rgba(0, 0, 0, .05); margin: 0; }
.pair { display: flex; flex-direction: column; gap: 4px; }
.pair > .name { font-weight: 600; font-size: 13px; padding: 0 2px; }
.pair > .sides { display: flex; gap: 10px; }
.pair .sound { border: 0; box-shadow: none; padding: 0; }
.sound img { display: block; border-radius: 4px; }
.sound figcaption { font-size: 13px; margin: 6px 2px 2px; overflow-wrap: anywhere; }
.sound audio { display: block; width: 100%; height: 34px; margin-top: 4px; }
.strip { display: block; max-width: 100%; height: auto; margin-top: 16px; background: #fff;
         border: 1px solid var(--line); border-radius: 8px; }
.tables { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
table { border-collapse: collapse; background: var(--card); font-size: 13px; }
caption { text-align: left; font-weight: 600; padding: 4px 0; }
th, td { border: 1px solid var(--line); padding: 3px 8px; text-align: left; vertical-align: top; }
th { font-weight: 500; color: var(--muted); }
td { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; overflow-wrap: anywhere;
     max-width: 420px; }
"""


def peak_relative_db(wav_path, params):
    """Spectrogram of a WAV file in dB relative to its loudest bin, from 0 down to -80 dB.

    The values of ``plot_spectrograms.wav_spectrogram_db``, computed with
    soundgenerator's STFT (librosa's conventions, already loaded here): librosa's
    own first STFT in a process costs seconds of imports.

    Parameters
    ----------
    wav_path : path-like
        A file written at the model's sample rate.
    params : dict
        The model's spectrogram parameters (frame_size, hop_length).

    Returns
    -------
    numpy.ndarray
        (frame_size // 2 + 1, frames) float32 dB values.
    """
    import soundfile as sf

    from soundgenerator import stft

    signal, _ = sf.read(str(wav_path), dtype="float32", always_2d=True)
    magnitude = np.abs(stft(signal.mean(axis=1), params["frame_size"], params["hop_length"]))
    peak = float(magnitude.max()) if magnitude.size else 0.0
    if peak == 0.0:  # a silent file: an even floor
        return np.full(magnitude.shape, -80.0, dtype=np.float32)
    spectrogram_db = 20 * np.log10(np.maximum(magnitude, 1e-5) / max(peak, 1e-5))
    return np.maximum(spectrogram_db, -80.0).astype(np.float32)


def write_spectrogram_pngs(wav_paths, png_paths, params, size=PAGE_IMAGE_SIZE):
    """Draw the spectrogram of each WAV file as a small PNG for the listening page.

    One figure is drawn and then only its picture is replaced for each sound:
    about 40 ms per PNG instead of 100.

    Parameters
    ----------
    wav_paths, png_paths : list of path-like
        Parallel lists.
    params : dict
        The model's spectrogram parameters (sample_rate, frame_size, hop_length).
    size : (int, int)
        Width and height of every picture in pixels.

    Returns
    -------
    list of pathlib.Path
        The PNGs: dB relative to each sound's peak (0 to -80 dB), time in
        seconds, frequency in Hz.
    """
    import matplotlib
    from matplotlib.figure import Figure

    from plot_spectrograms import save_figure, show_spectrogram

    width, height = size
    left, right, bottom, top = _PAGE_MARGINS_PX
    written, shown_shape, mesh, figure = [], None, None, None
    with matplotlib.rc_context(_PAGE_FIGURE_STYLE):
        for wav_path, png_path in zip(wav_paths, png_paths):
            spectrogram_db = peak_relative_db(wav_path, params)
            if spectrogram_db.shape == shown_shape:
                mesh.set_array(spectrogram_db)
            else:  # the first sound, or one of another length
                figure = Figure(figsize=(width / 100, height / 100))
                axes = figure.add_axes((left / width, bottom / height, 1 - (left + right) / width,
                                        1 - (bottom + top) / height))
                mesh = show_spectrogram(axes, spectrogram_db, params, vmin=-80, vmax=0)
                axes.set_ylabel("Hz")
                shown_shape = spectrogram_db.shape
            written.append(save_figure(figure, png_path, dpi=100))
    return written


def _text(value):
    return html.escape(str(value), quote=True)


def _link(relative_path):
    """A relative URL for a path inside the output folder, escaped for an HTML attribute."""
    return _text(quote(Path(relative_path).as_posix()))


def _setting_text(value):
    return json.dumps(value, ensure_ascii=False)


def _sound_figure(sound, caption, image_size):
    width, height = image_size
    return (f'<figure class="sound">'
            f'<img src="{_link(sound["png"])}" width="{width}" height="{height}" '
            f'alt="spectrogram of {_text(sound["name"])}">'
            f'<figcaption>{_text(caption)}</figcaption>'
            f'<audio controls preload="metadata" src="{_link(sound["wav"])}"></audio></figure>')


def _by_label(items, label_of):
    """[(label, items)] in order of first appearance."""
    groups = {}
    for item in items:
        groups.setdefault(label_of(item), []).append(item)
    return list(groups.items())


def _grouped(items, label_of, render):
    """The rendered items under a heading per class (none when no item has a class)."""
    groups = _by_label(items, label_of)
    parts = []
    for label, members in groups:
        heading = f"<h3>{_text(label or 'no class')}</h3>" if label or len(groups) > 1 else ""
        parts.append(f'<div class="group">{heading}<div class="sounds">'
                     + "".join(render(member) for member in members) + "</div></div>")
    return '<div class="groups">' + "".join(parts) + "</div>"


def _table(caption, rows):
    body = "".join(f"<tr><th>{_text(name)}</th><td>{_text(_setting_text(value))}</td></tr>"
                   for name, value in rows.items())
    return f"<table><caption>{_text(caption)}</caption>{body}</table>"


def listening_page_html(sounds, settings, params, label_names=(), morph_strip=None):
    """The listening page: one self-contained HTML document (inline style, no scripts, relative links).

    Parameters
    ----------
    sounds : list of dict
        One per sound, in order, with keys ``kind`` ("generated", "original",
        "reconstructed" or "morph"), ``name``, ``label`` ("" when none), and
        ``wav`` and ``png``: paths relative to the page.
    settings : dict
        generate.py's effective settings (shown in a table; PAGE_IMAGE_SIZE
        also sizes the pictures).
    params : dict
        The model's spectrogram parameters (shown in a table).
    label_names : sequence of str
        The model's classes, if it is conditional.
    morph_strip : str, optional
        Relative path of the morph's strip picture.

    Returns
    -------
    str
        The page; every text is HTML-escaped.
    """
    image_size = settings.get("PAGE_IMAGE_SIZE", PAGE_IMAGE_SIZE)
    of_kind = {kind: [sound for sound in sounds if sound["kind"] == kind]
               for kind in ("generated", "original", "reconstructed", "morph")}
    sections = []
    if of_kind["generated"]:
        sections.append(("generated", "New sounds", "Decoded from random points of the prior "
                         f"(temperature {settings.get('TEMPERATURE')}, seed {settings.get('SEED')}).",
                         _grouped(of_kind["generated"], lambda sound: sound["label"],
                                  lambda sound: _sound_figure(sound, sound["name"], image_size))))
    if of_kind["reconstructed"]:
        originals = {sound["name"]: sound for sound in of_kind["original"]}
        pairs = [(originals[sound["name"]], sound) for sound in of_kind["reconstructed"]
                 if sound["name"] in originals]

        def pair_html(pair):
            original, reconstructed = pair
            return (f'<div class="pair"><div class="name">{_text(original["name"])}</div><div class="sides">'
                    + _sound_figure(original, "original", image_size)
                    + _sound_figure(reconstructed, "reconstructed", image_size) + "</div></div>")

        sections.append(("reconstructed", "Originals and their reconstructions",
                         "Held-out clips the model did not train on. The original goes through the same "
                         "phase reconstruction, so the difference you hear is the model's.",
                         _grouped(pairs, lambda pair: pair[0]["label"], pair_html)))
    if of_kind["morph"]:
        steps = len(of_kind["morph"])
        note = (f"{steps} steps, {settings.get('MORPH_INTERPOLATION')} interpolation in the latent space; "
                f"the loudness range moves in a straight line.")
        if label_names:
            note += " The class the decoder is given switches from the start's to the end's halfway."
        captions = [f"step {index}" for index in range(steps)]
        captions[0] += f": {Path(str(settings.get('MORPH_FROM', ''))).name}"
        captions[-1] += f": {Path(str(settings.get('MORPH_TO', ''))).name}"
        figures = "".join(_sound_figure(sound, caption, image_size)
                          for sound, caption in zip(of_kind["morph"], captions))
        strip = (f'<img class="strip" src="{_link(morph_strip)}" alt="the morph\'s spectrograms in order">'
                 if morph_strip else "")
        sections.append(("morph", f"Morph: {settings.get('MORPH_FROM')} → {settings.get('MORPH_TO')}", note,
                         f'<div class="sounds">{figures}</div>{strip}'))
    model_rows = dict(params)
    if label_names:
        model_rows = {"classes": list(label_names), **model_rows}
    sections.append(("settings", "Settings", "The settings of this run of generate.py and the spectrogram "
                     "parameters of the model.",
                     '<div class="tables">' + _table("generate.py", settings)
                     + _table("model (params.json)", model_rows) + "</div>"))

    count = sum(len(of_kind[kind]) for kind in ("generated", "reconstructed", "morph"))
    nav = "".join(f'<a href="#{key}">{_text(heading.split(":")[0])}</a>' for key, heading, _, _ in sections)
    body = "".join(f'<section id="{key}"><h2>{_text(heading)}</h2><p class="muted">{_text(intro)}</p>'
                   f"{content}</section>" for key, heading, intro, content in sections)
    return ("<!DOCTYPE html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>Listening page: {_text(settings.get('MODEL_DIR', ''))}</title>"
            f"<style>{_PAGE_STYLE}</style></head><body>"
            f"<header><h1>Listening page</h1>"
            f"<p>{count} sounds from the model in <code>{_text(settings.get('MODEL_DIR', ''))}</code>, "
            f"at {_text(params.get('sample_rate'))} Hz. Each picture is the spectrogram of the sound "
            f"as written: dB relative to its peak (0 to −80 dB, dark = quiet), time in seconds, "
            f"frequency in Hz.</p><nav>{nav}</nav></header>"
            f"{body}</body></html>\n")


def write_listening_page(output_dir, written, labels, settings, params, label_names=(), morph_strip=None):
    """Write a spectrogram picture per sound into ``output_dir/spectrograms/`` and ``output_dir/index.html``.

    Parameters
    ----------
    output_dir : path-like
    written : dict
        kind -> list of WAV paths inside ``output_dir``, as ``main`` returns it.
    labels : dict
        kind -> list of class names ("" when none), parallel to ``written``.
    settings, params, label_names, morph_strip
        As for ``listening_page_html``.

    Returns
    -------
    pathlib.Path
        The page.
    """
    output_dir = Path(output_dir)
    image_size = settings.get("PAGE_IMAGE_SIZE", PAGE_IMAGE_SIZE)
    sounds = []
    for kind, paths in written.items():
        kind_labels = labels.get(kind) or [""] * len(paths)
        for path, label in zip(paths, kind_labels):
            sounds.append({"kind": kind, "name": path.stem, "label": label or "", "wav": path.relative_to(output_dir),
                           "png": Path("spectrograms") / kind / (path.stem + ".png")})
    write_spectrogram_pngs([output_dir / sound["wav"] for sound in sounds],
                           [output_dir / sound["png"] for sound in sounds], params, image_size)
    page = listening_page_html(sounds, settings, params, label_names, morph_strip)

    def write(tmp_name):
        Path(tmp_name).write_text(page, encoding="utf-8")

    return atomic_write(output_dir / "index.html", write)


# --- the script -------------------------------------------------------------------------

def validate(config):
    """Refuse settings that cannot work, before any model is loaded."""
    if config.NUM_GENERATED < 0 or config.NUM_RECONSTRUCTED < 0:
        raise PipelineError("NUM_GENERATED and NUM_RECONSTRUCTED must be >= 0")
    if config.PRIOR not in ("fitted", "standard"):
        raise PipelineError(f"PRIOR must be 'fitted' or 'standard', got {config.PRIOR!r}")
    if bool(config.MORPH_FROM) != bool(config.MORPH_TO):
        raise PipelineError("a morph needs both MORPH_FROM and MORPH_TO (an audio file or a class name each)")
    if config.MORPH_STEPS < 2:
        raise PipelineError(f"MORPH_STEPS must be at least 2 (both ends), got {config.MORPH_STEPS}")
    if config.MORPH_INTERPOLATION not in ("linear", "slerp"):
        raise PipelineError(f"MORPH_INTERPOLATION must be 'linear' or 'slerp', got {config.MORPH_INTERPOLATION!r}")
    if config.BIT_DEPTH not in WAV_SUBTYPES:
        raise PipelineError(f"BIT_DEPTH must be 16, 24 or 32 (float), got {config.BIT_DEPTH}")
    if not (config.PEAK_DBFS <= 0 and config.TRIM_DB < 0 and config.END_FADE >= 0):
        raise PipelineError(f"PEAK_DBFS must be <= 0 dBFS, TRIM_DB below 0 dB and END_FADE >= 0 s; got "
                            f"{config.PEAK_DBFS}, {config.TRIM_DB} and {config.END_FADE}")
    size = config.PAGE_IMAGE_SIZE
    if len(size) != 2 or not all(isinstance(pixels, int) and 100 <= pixels <= 2000 for pixels in size):
        raise PipelineError(f"PAGE_IMAGE_SIZE must be [width, height] in pixels, each 100 to 2000, got {size!r}")


def main(argv=None):
    config = configure(globals(), argv)
    validate(config)
    from soundgenerator import SoundGenerator

    vae, params, training = load_model_folder(config.MODEL_DIR)
    label_names = training["label_names"]
    sound_generator = SoundGenerator(params["sample_rate"], params["frame_size"], params["hop_length"],
                                     phase_method=config.PHASE_METHOD, n_iter=config.GRIFFIN_LIM_ITERATIONS,
                                     momentum=config.GRIFFIN_LIM_MOMENTUM)
    output_dir = Path(config.OUTPUT_DIR)
    written = {"generated": [], "original": [], "reconstructed": [], "morph": []}
    labels = {kind: [] for kind in written}
    # The ends of a morph first: a typo is reported before minutes of work.
    morph_ends = None
    if config.MORPH_FROM:
        morph_ends = (morph_end(config.MORPH_FROM, "MORPH_FROM", vae, params, training, config.SPECTROGRAMS_DIR),
                      morph_end(config.MORPH_TO, "MORPH_TO", vae, params, training, config.SPECTROGRAMS_DIR))

    # Brand-new sounds from the prior, given the training set's typical level.
    prior = None
    if config.NUM_GENERATED and config.PRIOR == "fitted" and not vae.num_classes:
        prior = load_latent_prior(config.MODEL_DIR, (vae, params, training), config.SPECTROGRAMS_DIR)
    class_names = label_names or (prior.classes if prior else [])
    if config.NUM_GENERATED and config.LABEL and not class_names and model_classes(training):
        raise PipelineError(f"--label={config.LABEL}: this model draws the sounds of one class from its fitted "
                            f"latent prior, which cannot be used here (PRIOR={config.PRIOR}"
                            f"{'' if config.PRIOR == 'standard' else ', see the note above'}). Use --prior=fitted "
                            f"with the latent_prior.json that train.py wrote beside this model.keras.")
    if config.NUM_GENERATED:
        label_indices, label_texts = resolve_labels(config.LABEL, class_names, config.NUM_GENERATED)
        spectrograms, _ = vae.sample(config.NUM_GENERATED, label_indices, seed=config.SEED,
                                     temperature=config.TEMPERATURE, prior=prior)
        level = training["generation_level_db"]
        signals = sound_generator.convert_spectrograms_to_audio(spectrograms, level["min"], level["max"])
        names = [f"{'_'.join(filter(None, ['generated', text]))}_{index:03d}"
                 for index, text in enumerate(label_texts)]
        written["generated"] = write_wavs(signals, names, output_dir / "generated", params["sample_rate"], config)
        labels["generated"] = label_texts

    # Held-out clips and their reconstructions.
    if config.NUM_RECONSTRUCTED:
        from preprocess import load_spectrograms

        data, clips, data_params = load_spectrograms(config.SPECTROGRAMS_DIR)
        check_same_parameters(params, data_params, config.SPECTROGRAMS_DIR)
        held_out = set(training.get("validation_ids", []))
        candidates = [i for i, clip in enumerate(clips) if clip["id"] in held_out] or list(range(len(clips)))
        rng = np.random.default_rng(config.SEED)
        chosen = np.sort(rng.choice(candidates, size=min(config.NUM_RECONSTRUCTED, len(candidates)), replace=False))
        originals = np.asarray(data[chosen])
        label_indices = clip_label_indices([clips[i] for i in chosen], label_names)
        reconstructions, _ = vae.reconstruct(originals, label_indices)
        minima = np.array([clips[i]["min"] for i in chosen])
        maxima = np.array([clips[i]["max"] for i in chosen])
        names = [clips[i]["id"].rsplit(".", 1)[0] for i in chosen]
        for kind, spectrograms in (("original", originals), ("reconstructed", reconstructions)):
            signals = sound_generator.convert_spectrograms_to_audio(spectrograms, minima, maxima)
            written[kind] = write_wavs(signals, names, output_dir / kind, params["sample_rate"], config)
            labels[kind] = [clips[i].get("label") or "" for i in chosen]

    # A morph from one sound or class to another.
    morph_strip = None
    if morph_ends:
        from plot_spectrograms import save_figure

        start, end = morph_ends
        result = morph(vae, start, end, config.MORPH_STEPS, config.MORPH_INTERPOLATION)
        signals = sound_generator.convert_spectrograms_to_audio(result.spectrograms, result.min_db, result.max_db)
        morph_dir = output_dir / "morph"
        for stale in morph_dir.glob("morph_*.wav"):  # a longer morph of an earlier run
            stale.unlink()
        digits = max(2, len(str(config.MORPH_STEPS - 1)))
        written["morph"] = write_wavs(signals, [f"morph_{index:0{digits}d}" for index in range(config.MORPH_STEPS)],
                                      morph_dir, params["sample_rate"], config)
        title = (f"Morph from {start.name} to {end.name}: {config.MORPH_STEPS} steps, "
                 f"{config.MORPH_INTERPOLATION} interpolation")
        morph_strip = save_figure(plot_morph_strip(result, params, title), morph_dir / "morph_strip.png")
        morph_strip = morph_strip.relative_to(output_dir)

    page = write_listening_page(output_dir, written, labels, vars(config), params, label_names, morph_strip)
    write_json(output_dir / "generation.json", {
        "settings": vars(config),
        "sample_rate": params["sample_rate"],
        "files": {kind: [str(path.relative_to(output_dir)) for path in paths] for kind, paths in written.items()},
    })
    total = sum(len(paths) for paths in written.values())
    print(f"wrote {total} WAV files at {params['sample_rate']} Hz to {output_dir}/ "
          f"({len(written['generated'])} generated, {len(written['reconstructed'])} reconstructed "
          f"with their originals, {len(written['morph'])} morph steps)")
    print(f"listen to them all on {page}")
    return written


if __name__ == "__main__":
    run_script(main)
