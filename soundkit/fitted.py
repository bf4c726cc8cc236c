"""What is fitted to a trained model and saved beside it: the latent prior, the knobs and the groups.

Each is an explicit "fit and save" call. Reading a model folder
(``soundkit.folders``) never fits anything; a step that wants a prior or knobs
that may be missing (training was interrupted, the descriptors changed) says
so by calling ``fit_latent_prior_if_missing`` or ``fit_knobs_if_missing``.
"""

from pathlib import Path

import numpy as np

from soundkit import latent_space
from soundkit.audio_folder import natural_key
from soundkit.errors import PipelineError
from soundkit.folders import (KNOBS_FILE, LATENT_PRIOR_FILE, check_same_parameters, clip_label_indices,
                              generation_level, load_knobs, load_spectrograms, read_fitted, save_fitted, save_groups,
                              training_rows, with_model_groups)
from soundkit.spectrogram import DESCRIPTORS_VERSION, KNOB_DESCRIPTORS, MinMaxNormaliser, sound_descriptors


def fit_and_save_latent_prior(model_dir, vae, spectrograms, clips, rows, class_names):
    """Fit the ``LatentPrior`` of ``vae`` to the clips ``rows`` and save it as the model's ``latent_prior.json``.

    Raises ValueError when the clips encode to NaN or infinity (a diverged model or damaged data).
    """
    prior = latent_space.fit_latent_prior(vae, spectrograms, clips, rows, class_names)
    save_fitted(model_dir, LATENT_PRIOR_FILE, prior.to_json())
    return prior


def fit_latent_prior_if_missing(model, spectrograms_dir=None):
    """The saved prior of ``model`` (a ``folders.ModelFolder``), or, when it has none fitted for its
    ``model.keras`` (training was interrupted), one fitted now to its training clips in
    ``spectrograms_dir`` and saved. None, with the reason printed, when neither can be had."""
    data, reason = read_fitted(model.path, LATENT_PRIOR_FILE)
    if data is not None:
        return latent_space.LatentPrior.from_json(data)
    prior = _fit_to_training_clips(model, spectrograms_dir) if spectrograms_dir is not None else None
    if prior is None:
        print(f"note: {reason} (training did not finish?): new sounds come from N(0, I)")
    else:
        print(f"note: {reason}: fitted it now to the training clips in {spectrograms_dir}")
    return prior


def _fit_to_training_clips(model, spectrograms_dir):
    """Fit and save the latent prior of ``model`` to its training clips, or None when that cannot be done."""
    try:
        data, clips, data_params = load_spectrograms(spectrograms_dir)
        check_same_parameters(model.params, data_params, spectrograms_dir)
    except PipelineError as error:
        print(f"note: cannot fit the latent prior now: {error}")
        return None
    rows = list(training_rows(clips, model.training))
    clips = with_model_groups(clips, model.path)
    if not rows or (model.classes and any(clip.get("label") not in model.classes for clip in clips)):
        print(f"note: the clips in {spectrograms_dir} are not the ones this model was trained on")
        return None
    try:
        return fit_and_save_latent_prior(model.path, model.vae, data, clips, rows, model.classes)
    except ValueError as error:
        print(f"note: cannot fit the latent prior now: {error}")
        return None


def fit_knobs_if_missing(model, spectrograms_dir, chunk=256):
    """The knobs of ``model`` (``latent_space.Knobs``): saved ones fitted for its ``model.keras``, or
    fitted now to its training clips in ``spectrograms_dir`` and saved.

    Raises
    ------
    PipelineError
        When the training clips are not there, or the knobs cannot be fitted to them.
    """
    saved = load_knobs(model.path)
    if saved is not None:
        return saved
    data, clips, data_params = load_spectrograms(spectrograms_dir)
    check_same_parameters(model.params, data_params, spectrograms_dir)
    rows = training_rows(clips, model.training)
    means = model.vae.encode_rows(data, rows, clip_label_indices([clips[i] for i in rows], model.decoder_classes))
    # Measured as the model sees the clips and makes new sounds: each spanning [0, 1], given the level of
    # new sounds (a clip's own dB range is not in its spectrogram, so no knob can follow it).
    descriptors = clip_descriptors(data, rows, model.training["generation_level_db"], model.params, chunk)
    clips = with_model_groups(clips, model.path)
    groups = [clips[i].get("label") or "" for i in rows] if model.classes else None
    try:
        knobs = latent_space.Knobs.fit(means, descriptors, KNOB_DESCRIPTORS, groups)
    except ValueError as error:
        raise PipelineError(f"cannot fit the knobs to the clips in {spectrograms_dir}: {error}") from None
    save_fitted(model.path, KNOBS_FILE, {**knobs.to_json(), "descriptors_version": DESCRIPTORS_VERSION})
    print(f"fitted the knobs to {len(rows)} training clips (R^2 " + ", ".join(
        f"{name} {score:.2f}" for name, score in zip(knobs.names, knobs.scores)) + "), saved to "
        f"{Path(model.path) / KNOBS_FILE}")
    return knobs


def clip_descriptors(spectrograms, rows, level, params, chunk=256):
    """``sound_descriptors`` of rows of a spectrogram array (or reader), each given the dB range ``level``
    ({"min", "max"}: the level of new sounds), chunk by chunk."""
    rows = np.asarray(rows, dtype=int)
    return np.concatenate([np.zeros((0, len(KNOB_DESCRIPTORS)))] + [
        sound_descriptors(MinMaxNormaliser().denormalise(np.asarray(spectrograms[part]), level["min"], level["max"]),
                          params)
        for part in (rows[start:start + chunk] for start in range(0, len(rows), chunk))])


def sort_into_groups(model_dir, vae, reader, clips, train_indices, params, count=0, seed=0):
    """Sort the clips of an unlabelled folder into groups, by where the model puts them; return the names.

    K-means on the latent means of the training clips, with ``count`` groups or,
    for 0, the number from 2 to 8 with the highest mean silhouette. Each group is
    named by its character (``latent_space.name_groups``: dark/bright, short/long)
    and gets a representative clip, its training clip nearest the centre; held-out
    clips join the nearest group. Written to ``groups.json``; from then on each
    group is a class of the model (``folders.with_model_groups``).
    """
    means = vae.encode_rows(reader, np.arange(len(clips)))
    train_indices = np.asarray(train_indices, dtype=int)
    labels, centres, scores = latent_space.choose_groups(means[train_indices], count, seed)
    level = generation_level(clips, train_indices)
    descriptors = clip_descriptors(reader, train_indices, level, params)
    names = latent_space.name_groups(labels, descriptors[:, 0], descriptors[:, 1])
    nearest = ((means[:, None, :] - centres[None]) ** 2).sum(axis=2).argmin(axis=1)
    nearest[train_indices] = labels
    representatives = {}
    for group, name in names.items():
        members = train_indices[labels == group]
        closest = members[np.argmin(((means[members] - centres[group]) ** 2).sum(axis=1))]
        representatives[name] = clips[closest]["id"]
    save_groups(model_dir, {clip["id"]: names[int(group)] for clip, group in zip(clips, nearest)},
                representatives, scores)
    chosen = ", ".join(f"{name} ({np.sum(labels == group)} clips, e.g. {representatives[name]})"
                       for group, name in names.items())
    print(f"sorted the unlabelled clips into {len(names)} groups by where the model puts them "
          f"(silhouette {max(scores.values()):.2f}): {chosen}")
    return sorted(names.values(), key=natural_key)
