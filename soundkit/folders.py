"""What each folder of the pipeline holds, and how it is read, written and checked.

- **The spectrograms folder** (preprocess.py writes it; train.py, generate.py,
  plot_spectrograms.py and evaluate.py read it): ``spectrograms.npy``,
  ``clips.json`` (per clip its id, file, label and the min/max dB that undo the
  normalisation), ``params.json`` (the spectrogram parameters), ``report.json``
  and ``folder.json`` (what was measured per file, for reruns).
- **The model folder** (train.py writes it; every later step reads it):
  ``model.keras``, ``params.json``, ``training.json`` (settings, the classes,
  the loudness of new sounds, the held-out clips), ``history.csv``, and what
  was fitted to the model (``latent_prior.json`` and ``knobs.json``, which
  name the ``model.keras`` they were fitted for, and ``groups.json``).

Reading a folder only reads: what is fitted to a model is fitted and saved by
``soundkit.fitted``. The audio folder a user brings is ``soundkit.audio_folder``.

Every file name is written here once; every step reads a folder through the
functions below, so a missing, damaged or mismatched folder gets the same
clear message everywhere.
"""

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from soundkit.errors import PipelineError
from soundkit.fileio import atomic_write_all, file_sha256, first_line, json_writer, read_json, write_json
from soundkit.latent_space import Knobs, LatentPrior
from soundkit.spectrogram import DESCRIPTORS_VERSION

# --- the spectrograms folder ---------------------------------------------------------------

FORMAT_VERSION: Final = 2                      # of the files preprocess.py writes; bumped on incompatible change
SPECTROGRAMS_FILE: Final = "spectrograms.npy"
CLIPS_FILE: Final = "clips.json"
PARAMS_FILE: Final = "params.json"             # in the spectrograms folder and, copied, in the model folder
REPORT_FILE: Final = "report.json"
FOLDER_STATS_FILE: Final = "folder.json"       # per file: its sample rate and how long it rings, for reruns
SCRATCH_PREFIX: Final = ".slots."              # Saver's scratch file: .slots.<random>.npy
# The temporary files atomic_write_all makes beside each file of the folder: .clips.json.<random>.tmp.json
TEMPORARY_FILE = re.compile("|".join(rf"\.{re.escape(name)}\.\w+\.tmp\{Path(name).suffix}" for name in (
    SPECTROGRAMS_FILE, CLIPS_FILE, PARAMS_FILE, REPORT_FILE, FOLDER_STATS_FILE)))
STALE_AFTER: Final = 6 * 3600                  # seconds untouched before such a temporary file is a leftover


def load_spectrograms(spectrograms_dir, mmap=True):
    """Read what preprocess.py wrote: (spectrograms array, clips list, params dict).

    Raises PipelineError with a clear message when the folder is missing,
    incomplete or from an incompatible version.
    """
    spectrograms_dir = Path(spectrograms_dir)
    if not spectrograms_dir.is_dir():
        raise PipelineError(f"{spectrograms_dir} does not exist: run preprocess.py first "
                            f"(or pass --spectrograms_dir=PATH)")
    required = [SPECTROGRAMS_FILE, CLIPS_FILE, PARAMS_FILE]
    missing = [name for name in required if not (spectrograms_dir / name).exists()]
    if missing:
        raise PipelineError(f"{spectrograms_dir} has no {', '.join(missing)}: run preprocess.py first "
                            f"(or pass --spectrograms_dir=PATH)")
    params = _read_index(spectrograms_dir / PARAMS_FILE, dict)
    if params.get("format_version") != FORMAT_VERSION:
        raise PipelineError(f"{spectrograms_dir} was written by an incompatible version "
                            f"(format {params.get('format_version')}, expected {FORMAT_VERSION}): run preprocess.py again")
    clips = _read_index(spectrograms_dir / CLIPS_FILE, list)
    try:
        spectrograms = np.load(spectrograms_dir / SPECTROGRAMS_FILE, mmap_mode="r" if mmap else None)
    except (OSError, ValueError) as error:
        raise PipelineError(f"{spectrograms_dir}/spectrograms.npy is damaged ({first_line(error)}): "
                            f"run preprocess.py again") from None
    expected = (len(clips), params.get("n_bins"), params.get("n_frames"))
    if spectrograms.shape != expected or spectrograms.dtype != np.float32:
        raise PipelineError(f"{spectrograms_dir}/spectrograms.npy holds {spectrograms.dtype} of shape "
                            f"{spectrograms.shape} but clips.json and params.json describe float32 of shape "
                            f"{expected}: run preprocess.py again")
    for clip in clips:
        if not isinstance(clip, dict) or "id" not in clip or "min" not in clip or "max" not in clip:
            raise PipelineError(f"clips.json has no id/min/max entry for clip {clip!r:.80}: run preprocess.py again")
    return spectrograms, clips, params


def _read_index(path, expected_type):
    """Read one of the JSON files of a spectrograms folder, or refuse it clearly."""
    try:
        data = read_json(path)
    except (OSError, ValueError) as error:
        raise PipelineError(f"{path} is damaged ({first_line(error)}): run preprocess.py again") from None
    if not isinstance(data, expected_type):
        raise PipelineError(f"{path} holds a {type(data).__name__}, not a {expected_type.__name__}: "
                            f"run preprocess.py again")
    return data


def settings_from_params(params):
    """The preprocess.py settings that make spectrograms with ``params`` (e.g. a model's), as a dict."""
    names = ["sample_rate", "duration", "frame_size", "hop_length", "top_db", "align_onsets", "onset_db",
             "pre_roll", "fade_out"]
    return {name.upper(): params[name] for name in names}


class PreviousRun:
    """What an earlier run of preprocess.py made of each file (see ``load_cache``)."""

    def __init__(self, entries=None, failures=None, changed=()):
        self.entries = entries or {}        # file key -> [(clip, spectrogram row)]
        self.failures = failures or {}      # file key -> reason it was skipped
        self.changed = list(changed)        # names of the parameters that differ


def load_cache(spectrograms_dir, params):
    """What an earlier run made of each file, reusable when the parameters are the same.

    Files are identified by path, size and modification time (``file_key``): a
    changed file is processed again, an unchanged one reuses its spectrograms or,
    if it was skipped for its content (``until_changed`` in ``report.json``), its
    reason. A file skipped for a passing reason (no permission, a disk error, still
    being copied) is tried again, and so is every file skipped by a run whose
    report did not yet tell the two apart.
    """
    spectrograms_dir = Path(spectrograms_dir)
    if not (spectrograms_dir / PARAMS_FILE).exists():
        return PreviousRun()
    try:
        old_params = read_json(spectrograms_dir / PARAMS_FILE)
        changed = sorted(name for name in set(params) | set(old_params)
                         if params.get(name) != old_params.get(name))
        if changed:
            return PreviousRun(changed=changed)
        array, clips, _ = load_spectrograms(spectrograms_dir)
    except (PipelineError, OSError, ValueError, AttributeError):
        return PreviousRun()  # damaged or incomplete: everything is processed again
    try:
        report = read_json(spectrograms_dir / REPORT_FILE)
        failures = {item["key"]: item["reason"] for item in report["files_skipped"]
                    if "key" in item and item.get("until_changed") is True}
    except (OSError, ValueError, TypeError, KeyError):
        failures = {}  # skipped files are simply tried again
    entries = {}
    for index, clip in enumerate(clips):
        entries.setdefault(clip.get("key"), []).append((clip, array[index]))
    return PreviousRun(entries, failures)


# --- the model folder ----------------------------------------------------------------------

TRAINING_FORMAT_VERSION: Final = 2             # of training.json; 1 is still read (see read_training)
MODEL_FILE: Final = "model.keras"
TRAINING_FILE: Final = "training.json"
HISTORY_FILE: Final = "history.csv"
ADVERSARIAL_HISTORY_FILE: Final = "history_adversarial.csv"   # the decoder's second stage, one row per epoch
LATENT_PRIOR_FILE: Final = "latent_prior.json"
KNOBS_FILE: Final = "knobs.json"               # the knobs' latent directions, fitted when first turned
GROUPS_FILE: Final = "groups.json"             # an unlabelled folder sorted into groups: each clip's group
STATE_DIR: Final = "checkpoint"               # what an interrupted run resumes from (removed when it ends)


def read_training(model_dir):
    """``training.json`` of a model folder, with ``classes``: the one list of the classes the model knows.

    A conditional model's decoder takes them, a latent classifier learnt them, or
    only the latent prior has one Gaussian per class; the model (``VAE.num_classes``,
    ``VAE.latent_classes``) says which. Folders of format 1 kept three lists
    (``class_names``, ``label_names``, ``latent_label_names``); they are read as one.
    """
    path = Path(model_dir) / TRAINING_FILE
    try:
        training = read_json(path)
    except (OSError, ValueError) as error:
        raise PipelineError(f"cannot read {path} ({error}): train the model again") from None
    version = training.get("format_version") if isinstance(training, dict) else None
    if version not in (1, TRAINING_FORMAT_VERSION):
        raise PipelineError(f"{model_dir} was written by an incompatible version of train.py "
                            f"(format {version}, expected {TRAINING_FORMAT_VERSION}): train it again")
    if version == 1:
        old = [training.pop(name, None) or [] for name in ("class_names", "label_names", "latent_label_names")]
        training["classes"] = next((names for names in old if names), [])
        training["format_version"] = TRAINING_FORMAT_VERSION
    return training


@dataclass(frozen=True)
class ModelFolder:
    """A model folder as read by ``load_model_folder``: the model, its spectrogram parameters and training record."""

    path: Path
    vae: Any
    params: dict
    training: dict

    @property
    def classes(self):
        """The classes the model knows (``training.json``'s one list); [] for none."""
        return self.training["classes"]

    @property
    def decoder_classes(self):
        """The classes its decoder takes (by index): a conditional model's classes, else []."""
        return decoder_classes(self.vae, self.training)


def load_model_folder(model_dir):
    """Return a ``ModelFolder`` from a folder written by train.py, or a clear error."""
    model_dir = Path(model_dir)
    missing = [name for name in (MODEL_FILE, PARAMS_FILE, TRAINING_FILE) if not (model_dir / name).exists()]
    if missing:
        raise PipelineError(f"{model_dir} has no {', '.join(missing)}: train a model with train.py first "
                            f"(or pass --model_dir=PATH)")
    training = read_training(model_dir)
    from autoencoder import VAE  # the deliberate lazy import: TensorFlow loads here, once a model is needed

    try:
        vae = VAE.load(model_dir / MODEL_FILE)
    except Exception as error:
        raise PipelineError(f"cannot load {model_dir}/model.keras ({type(error).__name__}: {error}); "
                            f"it may be damaged or from another version: train again") from None
    return ModelFolder(model_dir, vae, read_json(model_dir / PARAMS_FILE), training)


def generation_level(clips, train_indices):
    """The dB range given to brand-new sounds: the median of the training clips' own ranges."""
    maxima = np.array([clips[i]["max"] for i in train_indices])
    minima = np.array([clips[i]["min"] for i in train_indices])
    return {"min": float(np.median(minima)), "max": float(np.median(maxima))}


def model_info_writers(model_dir, settings, params, class_names, clips, train_indices, validation_indices):
    """{path: writer} of ``params.json`` and ``training.json``, for ``atomic_write_all`` (with the model, or alone)."""
    return {Path(model_dir) / PARAMS_FILE: json_writer(params), Path(model_dir) / TRAINING_FILE: json_writer({
        "format_version": TRAINING_FORMAT_VERSION,
        "settings": settings,
        "classes": class_names,
        "generation_level_db": generation_level(clips, train_indices),
        "train_clips": len(train_indices),
        "validation_clips": len(validation_indices),
        "validation_ids": [clips[i]["id"] for i in validation_indices],
    })}


def write_model_info(model_dir, settings, params, class_names, clips, train_indices, validation_indices):
    """Write ``params.json`` and ``training.json`` into the model folder."""
    atomic_write_all(model_info_writers(model_dir, settings, params, class_names, clips, train_indices,
                                        validation_indices))


def remove_fitted(model_dir):
    """Remove what was fitted to a model folder's earlier model (prior, knobs, groups): a new run replaces it."""
    for name in (LATENT_PRIOR_FILE, KNOBS_FILE, GROUPS_FILE):
        (Path(model_dir) / name).unlink(missing_ok=True)


def training_rows(clips, training):
    """Indices (int array) of the clips a model trained on: all but the held-out ``validation_ids``."""
    held_out = set(training.get("validation_ids", []))
    return np.array([i for i, clip in enumerate(clips) if clip["id"] not in held_out], dtype=int)


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


def read_fitted(model_dir, file_name, descriptors_version=None):
    """(content, None) of a file fitted to the model (``LATENT_PRIOR_FILE``, ``KNOBS_FILE``), or (None, why not).

    It is used only when it names the SHA-256 of this folder's ``model.keras``
    (and, for the knobs, the version of the descriptors they follow).
    """
    path = Path(model_dir) / file_name
    if not path.exists():
        return None, f"{path} is missing"
    try:
        data = read_json(path)
        if data.get("model_sha256") != file_sha256(Path(model_dir) / MODEL_FILE):
            return None, f"{path} was fitted for another model.keras"
        if descriptors_version is not None and data.get("descriptors_version") != descriptors_version:
            return None, f"{path} follows other descriptors"
        return data, None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        return None, f"cannot use {path} ({error})"


def save_fitted(model_dir, file_name, content):
    """Write ``content`` beside the model with the SHA-256 of the ``model.keras`` it was fitted for."""
    model_dir = Path(model_dir)
    write_json(model_dir / file_name, {**content, "model_sha256": file_sha256(model_dir / MODEL_FILE)})


def load_latent_prior(model_dir):
    """The model's saved ``LatentPrior``, or None when it has none fitted for this ``model.keras``."""
    data, _ = read_fitted(model_dir, LATENT_PRIOR_FILE)
    return None if data is None else LatentPrior.from_json(data)


def load_knobs(model_dir):
    """The model's saved ``Knobs``, or None when it has none fitted for this model and these descriptors
    (or of an earlier format, without directions per class)."""
    data, _ = read_fitted(model_dir, KNOBS_FILE, DESCRIPTORS_VERSION)
    return None if data is None or data.get("format_version") != Knobs.FORMAT_VERSION else Knobs.from_json(data)


def decoder_classes(vae, training):
    """The classes a conditional model's decoder takes (by index); [] for an unconditional model."""
    return training["classes"] if vae.num_classes else []


def clip_label_indices(clips, label_names):
    """Class indices of dataset clips for a conditional model (None for an unconditional one)."""
    if not label_names:
        return None
    unknown = sorted({clip.get("label") for clip in clips} - set(label_names), key=str)
    if unknown:
        raise PipelineError(f"clips with labels {unknown} unknown to the model "
                            f"(it knows {', '.join(label_names)})")
    return np.array([label_names.index(clip["label"]) for clip in clips])


def save_groups(model_dir, groups, representatives, scores):
    """Write ``groups.json``: each clip id's group, a representative clip per group, the silhouettes tried,
    and the SHA-256 of the ``model.keras`` that sorted them."""
    save_fitted(model_dir, GROUPS_FILE, {"clips": groups, "representatives": representatives,
                                         "silhouette_by_count": {str(k): v for k, v in scores.items()}})


def with_model_groups(clips, model_dir):
    """``clips`` with each clip's group as its label, when train.py sorted this model's unlabelled folder
    into groups (``groups.json``); else ``clips`` as they are. From then on a group is a class.

    Groups sorted by another model (an earlier run in the same folder) are not this model's: ignored.
    """
    path = Path(model_dir) / GROUPS_FILE
    if not path.exists():
        return clips
    try:
        saved = read_json(path)
        groups = saved["clips"]
        sha256 = saved.get("model_sha256")  # absent in folders written before groups named their model
        if sha256 is not None and sha256 != file_sha256(Path(model_dir) / MODEL_FILE):
            return clips
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise PipelineError(f"{path} is damaged ({error}): train the model again") from None
    return [{**clip, "label": groups.get(clip["id"], clip.get("label"))} for clip in clips]
