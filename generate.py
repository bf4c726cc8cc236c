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

from pathlib import Path
from typing import NamedTuple, Optional

import matplotlib
import numpy as np
import soundfile as sf

import listening_page
from configurator import PipelineError, configure, run_script
from fileio import safe_name, write_json
from folders import (CLIPS_FILE, FSDD_NAME, check_same_parameters, clip_label_indices, decoder_classes, load_knobs,
                     load_latent_prior, load_model_folder, load_spectrograms, with_model_groups)
from sample_pack import write_sample_pack
from phase import DEFAULT_MOMENTUM, DEFAULT_N_ITER, DEFAULT_PHASE_METHOD, check_phase_config
from latent_space import interpolate_latents
from plots import FIGURE_STYLE, save_figure, spectrogram_grid
from soundgenerator import SoundGenerator, finish_for_sampler
from spectrogram import OFFERED_KNOBS, MinMaxNormaliser, spectrogram_of_file

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
PHASE_METHOD = DEFAULT_PHASE_METHOD     # "griffinlim" or "zero_phase" (the tutorial's, for comparison)
GRIFFIN_LIM_ITERATIONS = DEFAULT_N_ITER
GRIFFIN_LIM_MOMENTUM = DEFAULT_MOMENTUM
# the WAV files: ready for a sampler
PEAK_DBFS = -1.0                        # every sound is normalised to this peak (dBFS)
NORMALIZE = True                        # False: only sounds louder than PEAK_DBFS are turned down
BIT_DEPTH = 24                          # 16 or 24-bit PCM, or 32 (float)
TRIM_DB = -60.0                         # trailing audio this far below the peak is trimmed
END_FADE = 0.01                         # seconds of fade at the end, so no sound ends with a click
# variations of one sound: NUM_GENERATED new sounds near it, instead of sounds from the prior
VARIATIONS_OF = ""                      # an audio file ("" = none)
VARIATION_SPREAD = 0.5                  # how far they stray, in posterior standard deviations; 0 = its reconstruction
# your library: the clips of SPECTROGRAMS_DIR nearest an audio file, listed with distances (similar.json)
SIMILAR_TO = ""                         # an audio file ("" = none)
NUM_SIMILAR = 10
# knobs: turn the new sounds, in standard deviations of the training clips (directions fitted to them)
BRIGHTNESS = 0.0                        # spectral centroid (-1 darker, +1 brighter)
LENGTH = 0.0                            # time from the attack to -60 dB (-1 shorter, +1 longer)
ATTACK = 0.0                            # how far the first 20 ms stand out (-1 softer, +1 sharper)
PITCH = 0.0                             # where the energy below 1 kHz lies: the tuning of kicks and toms
# sample pack (pack/): the new sounds named by class, an .sfz and a Decent Sampler .dspreset on General MIDI keys
PACK = True
PACK_NAME = "generated_kit"             # file name of the .sfz and .dspreset
# morphing: both set = a morph from one to the other
MORPH_FROM = ""                         # an audio file, or a class name of the model
MORPH_TO = ""
MORPH_STEPS = 8                         # sounds in the morph, both ends included
MORPH_INTERPOLATION = "slerp"           # "linear" or "slerp" (along the sphere, as prior samples lie)
# listening page (index.html)
PAGE_IMAGE_SIZE = list(listening_page.IMAGE_SIZE)  # pixels (width, height) of each sound's picture


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


WAV_SUBTYPES = {16: "PCM_16", 24: "PCM_24", 32: "FLOAT"}


def write_wavs(signals, names, folder, sample_rate, config):
    """Write signals as WAVs ready for a sampler (see ``soundgenerator.finish_for_sampler``).

    ``config`` holds PEAK_DBFS, NORMALIZE, BIT_DEPTH, TRIM_DB and END_FADE. Names are
    sanitised and made unique; nothing is written outside ``folder``.
    """
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


def class_of_file(path, label_names):
    """The class of an audio file for a conditional model: its folder's name, else an FSDD-style name."""
    path = Path(path)
    if path.parent.name in label_names:
        return label_names.index(path.parent.name)
    match = FSDD_NAME.match(path.stem)
    if match and match[1] in label_names:
        return label_names.index(match[1])
    raise PipelineError(f"cannot tell the class of {path} for this conditional model: put it in a folder "
                        f"named after its class (one of: {', '.join(label_names)})")


def knob_shift(config, vae, params, training):
    """The latent step the knob settings ask for (None when every knob is at 0)."""
    settings = {name: getattr(config, name.upper()) for name in OFFERED_KNOBS}
    if not any(settings.values()):
        return None
    knobs = load_knobs(config.MODEL_DIR, vae, params, training, config.SPECTROGRAMS_DIR)
    return knobs.shift(settings)


def variations_of(path, vae, params, training, count, spread, seed=0, shift=None):
    """Decoded spectrograms of ``count`` sounds near the audio file ``path``.

    The file is encoded as preprocessing would make its spectrogram; each
    variation is its posterior mean plus ``spread`` times the posterior's
    standard deviation times Gaussian noise (``seed``). At spread 0 every one is
    the model's reconstruction of the file; the larger the spread, the further
    they stray. A conditional model keeps the file's class.

    Returns
    -------
    spectrograms : numpy.ndarray
        (count, bins, frames, 1) in [0, 1].
    min_db, max_db : float
        The file's own dB range, which the variations keep.
    class_name : str
        The file's class when the model knows it (its folder's name), else "".
    """
    spectrogram, min_db, max_db = spectrogram_of_file(path, params)
    label_names = decoder_classes(vae, training)
    label = class_of_file(path, label_names) if label_names else None
    mean, log_variance = vae.encode(spectrogram[np.newaxis], None if label is None else [label])
    noise = np.random.default_rng(seed).standard_normal((count, mean.shape[1]))
    latents = (mean + spread * np.exp(0.5 * log_variance) * noise).astype(np.float32)
    if shift is not None:  # the knobs
        latents = latents + shift
    labels = None if label is None else np.full(count, label)
    parent = Path(path).parent.name
    class_name = label_names[label] if label is not None else (parent if parent in training["classes"] else "")
    return vae.decode(latents, labels), min_db, max_db, class_name


def similar_clips(path, vae, params, training, spectrograms_dir, model_dir, count):
    """The ``count`` clips of ``spectrograms_dir`` nearest the audio file ``path`` in the latent space.

    Returns
    -------
    list of dict
        id, file, label (or group) and distance (Euclidean, between latent means), nearest first.
    """
    spectrogram, _, _ = spectrogram_of_file(path, params)
    data, clips, data_params = load_spectrograms(spectrograms_dir)
    check_same_parameters(params, data_params, spectrograms_dir)
    clips = with_model_groups(clips, model_dir)
    label_names = decoder_classes(vae, training)
    label = class_of_file(path, label_names) if label_names else None
    mean, _ = vae.encode(spectrogram[np.newaxis], None if label is None else [label])
    rows = np.arange(len(clips))
    if label_names:  # a conditional model encodes each clip with its own class
        rows = np.array([i for i in rows if clips[i].get("label") in label_names], dtype=int)
    means = vae.encode_rows(data, rows, clip_label_indices([clips[i] for i in rows], label_names))
    distances = np.linalg.norm(means - mean, axis=1)
    order = np.argsort(distances, kind="stable")[:count]
    return [{"id": clips[rows[i]]["id"], "file": clips[rows[i]]["file"], "label": clips[rows[i]].get("label"),
             "distance": round(float(distances[i]), 4)} for i in order]


def class_end(name, vae, label_names, spectrograms_dir, model_params, generation_level_db, model_dir=None):
    """A class of the model as a morph end: the mean latent of its clips in ``spectrograms_dir``.

    Without such clips, the prior's mean (the zero vector) and the training
    set's typical level stand for the class.
    """
    label = label_names.index(name) if vae.num_classes else None  # only a conditional model takes it
    latent = np.zeros(vae.latent_space_dim, dtype=np.float32)
    min_db, max_db = generation_level_db["min"], generation_level_db["max"]
    spectrograms_dir = Path(spectrograms_dir)
    if not (spectrograms_dir / CLIPS_FILE).exists():
        print(f"morph: no clips in {spectrograms_dir}; class {name!r} starts from the prior's mean")
        return MorphEnd(name, latent, label, min_db, max_db)
    data, clips, data_params = load_spectrograms(spectrograms_dir)
    check_same_parameters(model_params, data_params, spectrograms_dir)
    if model_dir is not None:  # the groups of an unlabelled folder are classes too
        clips = with_model_groups(clips, model_dir)
    indices = np.array([i for i, clip in enumerate(clips) if clip.get("label") == name], dtype=int)
    if len(indices) == 0:
        print(f"morph: no clips of class {name!r} in {spectrograms_dir}; it starts from the prior's mean")
        return MorphEnd(name, latent, label, min_db, max_db)
    means = vae.encode_rows(data, indices, None if label is None else np.full(len(indices), label))
    return MorphEnd(name, means.mean(axis=0), label, float(np.mean([clips[i]["min"] for i in indices])),
                    float(np.mean([clips[i]["max"] for i in indices])))


def morph_end(text, setting, vae, params, training, spectrograms_dir, model_dir=None):
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
    label_names = decoder_classes(vae, training)
    classes = training["classes"]
    if classes and text in classes:
        return class_end(text, vae, classes, spectrograms_dir, params, training["generation_level_db"], model_dir)
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
    spectrograms_db = MinMaxNormaliser().denormalise(result.spectrograms[..., 0], result.min_db, result.max_db)
    titles = [f"step {index}" for index in range(len(spectrograms_db))]
    with matplotlib.rc_context(FIGURE_STYLE):
        return spectrogram_grid(list(spectrograms_db), titles, params, columns=min(columns, len(titles)),
                                vmin=float(result.min_db.min()), vmax=float(result.max_db.max()),
                                colour_bar_label="dB", suptitle=title, panel_size=(2.3, 1.7))


# --- the script -------------------------------------------------------------------------

def generate_new(config, vae, params, training, sound_generator):
    """Write NUM_GENERATED sounds from the prior into OUTPUT_DIR/generated/; return (paths, class names)."""
    label_names = decoder_classes(vae, training)
    prior = None
    if config.PRIOR == "fitted" and not vae.num_classes:
        prior = load_latent_prior(config.MODEL_DIR, (vae, params, training), config.SPECTROGRAMS_DIR)
    class_names = label_names or (prior.classes if prior else [])
    if config.LABEL and not class_names and training["classes"]:
        raise PipelineError(f"--label={config.LABEL}: this model draws the sounds of one class from its fitted "
                            f"latent prior, which cannot be used here (PRIOR={config.PRIOR}"
                            f"{'' if config.PRIOR == 'standard' else ', see the note above'}). Use --prior=fitted "
                            f"with the latent_prior.json that train.py wrote beside this model.keras.")
    label_indices, label_texts = resolve_labels(config.LABEL, class_names, config.NUM_GENERATED)
    spectrograms, latents = vae.sample(config.NUM_GENERATED, label_indices, seed=config.SEED,
                                       temperature=config.TEMPERATURE, prior=prior)
    shift = knob_shift(config, vae, params, training)
    if shift is not None:
        spectrograms = vae.decode(latents + shift, label_indices if vae.num_classes else None)
    level = training["generation_level_db"]
    signals = sound_generator.convert_spectrograms_to_audio(spectrograms, level["min"], level["max"])
    names = [f"{'_'.join(filter(None, ['generated', text]))}_{index:03d}" for index, text in enumerate(label_texts)]
    return write_wavs(signals, names, Path(config.OUTPUT_DIR) / "generated", params["sample_rate"], config), label_texts


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
    check_phase_config(config)
    for name in OFFERED_KNOBS:
        if not -3 <= getattr(config, name.upper()) <= 3:
            raise PipelineError(f"{name.upper()} must be between -3 and +3 (standard deviations of the training "
                                f"clips), got {getattr(config, name.upper())}")
    if config.VARIATION_SPREAD < 0:
        raise PipelineError(f"VARIATION_SPREAD must be 0 or more (posterior standard deviations), "
                            f"got {config.VARIATION_SPREAD}")
    for name in ("VARIATIONS_OF", "SIMILAR_TO"):
        if getattr(config, name) and not Path(getattr(config, name)).is_file():
            raise PipelineError(f"{name}: no audio file at {getattr(config, name)}")
    if config.NUM_SIMILAR < 1:
        raise PipelineError(f"NUM_SIMILAR must be at least 1, got {config.NUM_SIMILAR}")
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
    vae, params, training = load_model_folder(config.MODEL_DIR)
    label_names = decoder_classes(vae, training)
    sound_generator = SoundGenerator(params["sample_rate"], params["frame_size"], params["hop_length"],
                                     phase_method=config.PHASE_METHOD, n_iter=config.GRIFFIN_LIM_ITERATIONS,
                                     momentum=config.GRIFFIN_LIM_MOMENTUM)
    output_dir = Path(config.OUTPUT_DIR)
    written = {"generated": [], "variations": [], "original": [], "reconstructed": [], "morph": []}
    labels = {kind: [] for kind in written}
    # The ends of a morph first: a typo is reported before minutes of work.
    morph_ends = None
    if config.MORPH_FROM:
        morph_ends = tuple(morph_end(text, name, vae, params, training, config.SPECTROGRAMS_DIR, config.MODEL_DIR)
                           for text, name in ((config.MORPH_FROM, "MORPH_FROM"), (config.MORPH_TO, "MORPH_TO")))

    if config.SIMILAR_TO:
        similar = similar_clips(config.SIMILAR_TO, vae, params, training, config.SPECTROGRAMS_DIR, config.MODEL_DIR,
                                config.NUM_SIMILAR)
        write_json(output_dir / "similar.json", {"to": str(config.SIMILAR_TO), "clips": similar})
        print(f"the {len(similar)} clips of {config.SPECTROGRAMS_DIR} nearest {config.SIMILAR_TO} (latent distance):")
        for clip in similar:
            print(f"  {clip['distance']:8.3f}  {clip['file']}" + (f"  ({clip['label']})" if clip["label"] else ""))

    # Brand-new sounds: from the prior, given the training set's typical level, or near one sound.
    if config.NUM_GENERATED and config.VARIATIONS_OF:
        spectrograms, min_db, max_db, class_name = variations_of(
            config.VARIATIONS_OF, vae, params, training, config.NUM_GENERATED, config.VARIATION_SPREAD, config.SEED,
            knob_shift(config, vae, params, training))
        signals = sound_generator.convert_spectrograms_to_audio(spectrograms, min_db, max_db)
        stem = safe_name(Path(config.VARIATIONS_OF).stem)
        names = [f"{stem}_variation_{index:03d}" for index in range(config.NUM_GENERATED)]
        written["variations"] = write_wavs(signals, names, output_dir / "variations", params["sample_rate"], config)
        labels["variations"] = [class_name] * config.NUM_GENERATED
    elif config.NUM_GENERATED:
        written["generated"], labels["generated"] = generate_new(config, vae, params, training, sound_generator)

    # Held-out clips and their reconstructions.
    if config.NUM_RECONSTRUCTED:
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

    pack = None
    new_sounds = [(path, label) for kind in ("generated", "variations") for path, label in zip(written[kind], labels[kind])]
    if config.PACK and new_sounds:
        pack = write_sample_pack(output_dir / "pack", new_sounds, config.PACK_NAME)
        print(f"sample pack: {pack['sfz']} and {pack['dspreset']} (keys: "
              + ", ".join(f"{label or 'sound'} {key}" for label, key in pack["keys"].items()) + ")")
    page = listening_page.write_listening_page(output_dir, written, labels, vars(config), params, label_names,
                                               morph_strip, pack)
    write_json(output_dir / "generation.json", {
        "settings": vars(config),
        "sample_rate": params["sample_rate"],
        "files": {kind: [str(path.relative_to(output_dir)) for path in paths] for kind, paths in written.items()},
    })
    total = sum(len(paths) for paths in written.values())
    print(f"wrote {total} WAV files at {params['sample_rate']} Hz to {output_dir}/ "
          f"({len(written['generated']) + len(written['variations'])} new, {len(written['reconstructed'])} reconstructed "
          f"with their originals, {len(written['morph'])} morph steps)")
    print(f"listen to them all on {page}")
    return written


if __name__ == "__main__":
    run_script(main)
