"""Sounds made from a trained model beyond plain prior samples: variations of a sound, the clips
nearest a sound, morphs between sounds or classes, the knobs' latent step, and which class each
new sound is asked to be. Used by generate.py and explore.py.

Every function takes the model as a ``soundkit.folders.ModelFolder`` and returns
decoded spectrograms in [0, 1] (or clip lists); turning them into audio is
``soundgenerator.SoundGenerator``'s work.
"""

from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np

from soundkit.audio_folder import FSDD_NAME
from soundkit.errors import PipelineError
from soundkit.fitted import fit_knobs_if_missing
from soundkit.folders import CLIPS_FILE, check_same_parameters, clip_label_indices, load_spectrograms, with_model_groups
from soundkit.latent_space import interpolate_latents
from soundkit.spectrogram import spectrogram_of_file


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


def knob_shift(settings, model, spectrograms_dir, labels=None):
    """The latent steps the knob settings ({knob: standard deviations}) ask for, one per sound of the classes
    ``labels`` (each turned with its class's directions), or one for any sound when ``labels`` is None.
    None when every knob is at 0."""
    if not any(settings.values()):
        return None
    knobs = fit_knobs_if_missing(model, spectrograms_dir)
    if labels is None:
        return knobs.shift(settings)
    return np.stack([knobs.shift(settings, label) for label in labels])


def variations_of(path, model, count, spread, seed=0, knob_settings=None, spectrograms_dir=None):
    """Decoded spectrograms of ``count`` sounds near the audio file ``path``.

    The file is encoded as preprocessing would make its spectrogram; each
    variation is its posterior mean plus ``spread`` times the posterior's
    standard deviation times Gaussian noise (``seed``). At spread 0 every one is
    the model's reconstruction of the file; the larger the spread, the further
    they stray. A conditional model keeps the file's class. ``knob_settings``
    ({knob: standard deviations}) turns them with the knobs fitted to the
    training clips in ``spectrograms_dir``, those of the file's class.

    Returns
    -------
    spectrograms : numpy.ndarray
        (count, bins, frames, 1) in [0, 1].
    min_db, max_db : float
        The file's own dB range, which the variations keep.
    class_name : str
        The file's class when the model knows it (its folder's name), else "".
    """
    vae, label_names = model.vae, model.decoder_classes
    spectrogram, min_db, max_db = spectrogram_of_file(path, model.params)
    label = class_of_file(path, label_names) if label_names else None
    mean, log_variance = vae.encode(spectrogram[np.newaxis], None if label is None else [label])
    noise = np.random.default_rng(seed).standard_normal((count, mean.shape[1]))
    latents = (mean + spread * np.exp(0.5 * log_variance) * noise).astype(np.float32)
    labels = None if label is None else np.full(count, label)
    parent = Path(path).parent.name
    class_name = label_names[label] if label is not None else (parent if parent in model.classes else "")
    shift = knob_shift(knob_settings or {}, model, spectrograms_dir, [class_name] * count)
    if shift is not None:
        latents = latents + shift
    return vae.decode(latents, labels), min_db, max_db, class_name


def similar_clips(path, model, spectrograms_dir, count):
    """The ``count`` clips of ``spectrograms_dir`` nearest the audio file ``path`` in the latent space.

    Returns
    -------
    list of dict
        id, file, label (or group) and distance (Euclidean, between latent means), nearest first.
    """
    vae, label_names = model.vae, model.decoder_classes
    spectrogram, _, _ = spectrogram_of_file(path, model.params)
    data, clips, data_params = load_spectrograms(spectrograms_dir)
    check_same_parameters(model.params, data_params, spectrograms_dir)
    clips = with_model_groups(clips, model.path)
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


def class_end(name, model, spectrograms_dir):
    """A class of ``model`` as a morph end: the mean latent of its clips (or groups) in ``spectrograms_dir``.

    Without such clips, the prior's mean (the zero vector) and the training
    set's typical level stand for the class.
    """
    vae = model.vae
    label = model.classes.index(name) if vae.num_classes else None  # only a conditional model takes it
    latent = np.zeros(vae.latent_space_dim, dtype=np.float32)
    level = model.training["generation_level_db"]
    min_db, max_db = level["min"], level["max"]
    spectrograms_dir = Path(spectrograms_dir)
    if not (spectrograms_dir / CLIPS_FILE).exists():
        print(f"morph: no clips in {spectrograms_dir}; class {name!r} starts from the prior's mean")
        return MorphEnd(name, latent, label, min_db, max_db)
    data, clips, data_params = load_spectrograms(spectrograms_dir)
    check_same_parameters(model.params, data_params, spectrograms_dir)
    clips = with_model_groups(clips, model.path)  # the groups of an unlabelled folder are classes too
    indices = np.array([i for i, clip in enumerate(clips) if clip.get("label") == name], dtype=int)
    if len(indices) == 0:
        print(f"morph: no clips of class {name!r} in {spectrograms_dir}; it starts from the prior's mean")
        return MorphEnd(name, latent, label, min_db, max_db)
    means = vae.encode_rows(data, indices, None if label is None else np.full(len(indices), label))
    return MorphEnd(name, means.mean(axis=0), label, float(np.mean([clips[i]["min"] for i in indices])),
                    float(np.mean([clips[i]["max"] for i in indices])))


def morph_end(text, setting, model, spectrograms_dir):
    """Turn MORPH_FROM or MORPH_TO (an audio file or a class name) into a ``MorphEnd``.

    Parameters
    ----------
    text : str
        A class name of the model (classes win over files of the
        same name), or the path of an audio file.
    setting : str
        The setting's name, for messages.
    model : soundkit.folders.ModelFolder
    spectrograms_dir : path-like
        Where the clips of a class are looked for.

    Raises
    ------
    PipelineError
        When ``text`` is neither a class of the model nor a usable audio file.
    """
    vae, label_names, classes = model.vae, model.decoder_classes, model.classes
    if classes and text in classes:
        return class_end(text, model, spectrograms_dir)
    if not Path(text).is_file():
        known = (f"this model's classes: {', '.join(classes)}" if classes
                 else "this model has no classes, so give an audio file")
        raise PipelineError(f"{setting} {text!r} is neither an audio file nor a class of the model ({known})")
    spectrogram, min_db, max_db = spectrogram_of_file(text, model.params)
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
