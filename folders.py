"""What each folder of the pipeline holds, and how it is read, written and checked.

- **The audio folder** (preprocess.py's AUDIO_DIR): which files are sounds, and
  how a file's class is named (its sub-folder, or an FSDD-style file name).
- **The spectrograms folder** (preprocess.py writes it; train.py, generate.py,
  plot_spectrograms.py and evaluate.py read it): ``spectrograms.npy``,
  ``clips.json`` (per clip its id, file, label and the min/max dB that undo the
  normalisation), ``params.json`` (the spectrogram parameters), ``report.json``
  and ``folder.json`` (what was measured per file, for reruns).
- **The model folder** (train.py writes it; every later step reads it):
  ``model.keras``, ``params.json``, ``training.json`` (settings, the classes,
  the loudness of new sounds, the held-out clips), ``history.csv`` and
  ``latent_prior.json``.

Every file name is written here once; every step reads a folder through the
functions below, so a missing, damaged or mismatched folder gets the same
clear message everywhere.
"""

import os
import re
import tempfile
from pathlib import Path
from typing import Final

import numpy as np

from configurator import PipelineError
from fileio import atomic_write_all, file_sha256, first_line, json_writer, printable, read_json, write_json
from latent_space import Knobs, LatentPrior, fit_latent_prior
from spectrogram import DESCRIPTORS_VERSION, KNOB_DESCRIPTORS, MinMaxNormaliser, sound_descriptors

# --- the audio folder ----------------------------------------------------------------------

AUDIO_EXTENSIONS: Final = {".wav", ".wave", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".aifc",
                           ".mp3", ".opus", ".au", ".snd", ".caf", ".w64", ".rf64"}
FSDD_NAME = re.compile(r"^(?P<digit>[^_]+)_(?P<speaker>[^_]+)_(?P<take>\d+)$")  # a file stem: class_speaker_take


def find_audio_files(audio_dir):
    """Walk ``audio_dir`` recursively, following symlinks without ever looping.

    Symlinked files are read. A symlinked folder is searched unless it leads back
    into ``audio_dir`` (its files are found anyway), to a folder that contains
    ``audio_dir`` (a loop) or to a folder already searched; those, hidden folders
    (``.git``) and folders that cannot be listed are reported instead.

    Returns
    -------
    audio_files : list of Path
        Files with an audio extension, in sorted walking order.
    other_files : list of (Path, str)
        Everything else, files and folders, with the reason it is skipped.
    """
    audio_root = os.path.realpath(audio_dir)
    searched = {audio_root}
    audio_files, other_files = [], []

    def report_unlistable(error):
        other_files.append((Path(error.filename), f"folder cannot be listed ({error.strerror})"))

    for root, dirs, files in os.walk(audio_dir, onerror=report_unlistable, followlinks=True):
        followed = []
        for name in sorted(dirs):
            folder = Path(root) / name
            reason = _folder_skip_reason(folder, audio_root, searched)
            if reason:
                other_files.append((folder, reason))
            else:
                searched.add(os.path.realpath(folder))
                followed.append(name)
        dirs[:] = followed
        for name in sorted(files):
            path = Path(root) / name
            if name.startswith("."):
                other_files.append((path, "hidden file"))
            elif path.suffix.lower() not in AUDIO_EXTENSIONS:
                other_files.append((path, f"not an audio file (extension {path.suffix or 'none'!r})"))
            elif not path.is_file():
                other_files.append((path, "broken symlink" if path.is_symlink() else "not a regular file"))
            else:
                audio_files.append(path)
    return audio_files, other_files


def _folder_skip_reason(folder, audio_root, searched):
    """Why ``folder`` is not searched, or None when it should be."""
    if folder.name.startswith("."):
        return "hidden folder (not searched)"
    real = os.path.realpath(folder)
    if folder.is_symlink() and os.path.commonpath([real, audio_root]) == audio_root:
        return "symlink to a folder inside AUDIO_DIR (its files are found anyway)"
    if folder.is_symlink() and os.path.commonpath([real, audio_root]) == real:
        return "symlink loop: it leads to a folder that contains AUDIO_DIR"
    if real in searched:
        return "folder already searched (symlink loop or second link to it)"
    return None


def label_rule(relatives, rule):
    """Return a function (path relative to AUDIO_DIR) -> label (str or None), following LABELS."""
    if rule not in ("auto", "folder", "filename", "none"):
        raise PipelineError(f"LABELS must be auto, folder, filename or none, got {rule!r}")
    in_folders = bool(relatives) and all(len(relative.parts) > 1 for relative in relatives)
    by_name = bool(relatives) and all(FSDD_NAME.match(relative.stem) for relative in relatives)
    if rule == "folder" or (rule == "auto" and in_folders):
        return lambda relative: relative.parts[0] if len(relative.parts) > 1 else None
    if rule == "filename" or (rule == "auto" and by_name):
        return lambda relative: (FSDD_NAME.match(relative.stem) or [None, None])[1]
    return lambda relative: None


def file_key(path, relative):
    """Identify a file's content cheaply: path relative to AUDIO_DIR, size and modification time."""
    stat = path.stat()
    return f"{printable(relative.as_posix())}|{stat.st_size}|{stat.st_mtime_ns}"


def natural_key(text):
    """Sort key that puts "tom2" before "tom10": the order of class names everywhere."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(text))]


# --- the spectrograms folder ---------------------------------------------------------------

FORMAT_VERSION: Final = 2                      # of the files preprocess.py writes; bumped on incompatible change
SPECTROGRAMS_FILE: Final = "spectrograms.npy"
CLIPS_FILE: Final = "clips.json"
PARAMS_FILE: Final = "params.json"             # in the spectrograms folder and, copied, in the model folder
REPORT_FILE: Final = "report.json"
FOLDER_STATS_FILE: Final = "folder.json"       # per file: its sample rate and how long it rings, for reruns


class Saver:
    """Writes spectrograms, per-clip min/max values and parameters, atomically and without pickle.

    Workers write each spectrogram straight into its slot of a scratch ``.npy``
    file (``write_slot``), so nothing large travels between processes and memory
    does not grow with the number of clips. When every slot holds a clip, in
    order, that file becomes ``spectrograms.npy`` as it is; otherwise ``finish``
    copies the clips into a new one.

    Every process reads and writes slots through a handle of its own on the
    scratch file: where ``os.pwrite``/``os.pread`` are missing (Windows) a slot
    is reached with seek, and a file position shared between processes would
    send their writes to the wrong slots.
    """

    def __init__(self, spectrograms_dir):
        self.spectrograms_dir = Path(spectrograms_dir)
        self.scratch_path = None
        self.scratch = None
        self.row_bytes = 0
        self.offset = 0
        self.capacity = 0
        self.slot_file, self.slot_file_pid = None, None  # this process's handle for slots, and its owner

    def __getstate__(self):
        # A copy for a spawned worker process: open files do not travel; it opens its own.
        return {**self.__dict__, "scratch": None, "slot_file": None, "slot_file_pid": None}

    def _slot_file(self):
        """This process's own unbuffered handle on the scratch file, opened on first use."""
        if self.slot_file_pid != os.getpid():  # none yet, or inherited from the parent by fork
            self.slot_file, self.slot_file_pid = open(self.scratch_path, "r+b", buffering=0), os.getpid()
        return self.slot_file

    def _close_slot_file(self):
        if self.slot_file is not None and self.slot_file_pid == os.getpid():
            self.slot_file.close()
        self.slot_file, self.slot_file_pid = None, None

    def begin(self, n_bins, n_frames, capacity):
        self.spectrograms_dir.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=self.spectrograms_dir, prefix=".slots.", suffix=".npy")
        self.scratch_path, self.scratch = name, os.fdopen(handle, "r+b")
        header = {"descr": "<f4", "fortran_order": False, "shape": (capacity, n_bins, n_frames)}
        np.lib.format.write_array_header_1_0(self.scratch, header)
        self.scratch.flush()
        # Unwritten slots (failed files, unused split pieces) stay holes: no disk used.
        self.offset, self.row_bytes, self.capacity = self.scratch.tell(), n_bins * n_frames * 4, capacity

    def write_slot(self, slot, spectrogram):
        data = np.ascontiguousarray(spectrogram, dtype="<f4").tobytes()
        position, file = self.offset + slot * self.row_bytes, self._slot_file()
        if hasattr(os, "pwrite"):
            os.pwrite(file.fileno(), data, position)
        else:  # Windows
            file.seek(position)
            file.write(data)

    def flush(self):
        """Start putting the slots written so far on disk, so little is left for ``finish``."""
        sync = getattr(os, "fdatasync", os.fsync)  # fdatasync (data only, no metadata) is missing on macOS
        sync(self.scratch.fileno())

    def read_slot(self, slot, shape):
        position, file = self.offset + slot * self.row_bytes, self._slot_file()
        if hasattr(os, "pread"):
            data = os.pread(file.fileno(), self.row_bytes, position)
        else:  # Windows
            file.seek(position)
            data = file.read(self.row_bytes)
        return np.frombuffer(data, dtype="<f4").reshape(shape)

    def close(self):
        self._close_slot_file()
        if self.scratch is not None:
            self.scratch.close()
            self.scratch = None
        if self.scratch_path is not None and os.path.exists(self.scratch_path):
            os.remove(self.scratch_path)
        self.scratch_path = None

    def finish(self, rows, clips, params, report, slots=None, folder_stats=None):
        """Write ``rows`` (an iterable of arrays, one per clip) and the JSON files.

        ``slots`` lists the slot of each clip (None for a row from elsewhere);
        ``folder_stats`` is what ``choose_settings`` measured, if anything. All the
        files are written completely before any of them replaces the
        previous run's: an error or Ctrl-C meanwhile leaves the old folder as it was.
        """
        shape = (len(clips), params["n_bins"], params["n_frames"])

        def write_array(tmp_name):
            if slots is not None and list(slots) == list(range(self.capacity)):
                self._close_slot_file()  # Windows renames no file that is open
                self.scratch.close()
                os.replace(self.scratch_path, tmp_name)  # already complete and in order: no copy
                return
            with open(tmp_name, "wb") as file:
                header = {"descr": "<f4", "fortran_order": False, "shape": shape}
                np.lib.format.write_array_header_1_0(file, header)
                for row in rows:
                    file.write(np.ascontiguousarray(row, dtype="<f4").tobytes())

        # The index (clips.json) is moved into place last.
        extra = {self.spectrograms_dir / FOLDER_STATS_FILE: json_writer(folder_stats)} if folder_stats else {}
        try:
            atomic_write_all({
                **extra,
                self.spectrograms_dir / SPECTROGRAMS_FILE: write_array,
                self.spectrograms_dir / PARAMS_FILE: json_writer(params),
                self.spectrograms_dir / REPORT_FILE: json_writer(report),
                self.spectrograms_dir / CLIPS_FILE: json_writer(clips, item_per_line=True),
            })
        finally:
            self.close()


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
    if it was skipped, its reason.
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
        failures = {item["key"]: item["reason"] for item in report["files_skipped"] if "key" in item}
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


def load_model_folder(model_dir):
    """Return (vae, params, training info) from a folder written by train.py, or a clear error."""
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
    return vae, read_json(model_dir / PARAMS_FILE), training


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


def load_latent_prior(model_dir, model=None, spectrograms_dir=None):
    """The model's fitted ``LatentPrior``, or None (with the reason printed) when it has none that fits.

    When ``latent_prior.json`` is missing or was fitted for another ``model.keras``
    (training was interrupted by Ctrl-C, a kill or a time limit) and the model's
    training clips are in ``spectrograms_dir``, the prior of ``model`` (what
    ``load_model_folder`` returns) is fitted to them now and saved, so every
    model can generate by class however its training ended.
    """
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
    try:
        data, clips, data_params = load_spectrograms(spectrograms_dir)
        check_same_parameters(params, data_params, spectrograms_dir)
    except PipelineError as error:
        print(f"note: cannot fit the latent prior now: {error}")
        return None
    train_indices = list(training_rows(clips, training))
    clips = with_model_groups(clips, model_dir)
    class_names = training["classes"]
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


def save_latent_prior(model_dir, prior):
    """Write ``latent_prior.json`` beside the model, with the SHA-256 of the ``model.keras`` it was fitted for."""
    model_dir = Path(model_dir)
    write_json(model_dir / LATENT_PRIOR_FILE,
               {**prior.to_json(), "model_sha256": file_sha256(model_dir / MODEL_FILE)})


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


def load_knobs(model_dir, vae, params, training, spectrograms_dir, chunk=256):
    """The model's ``latent_space.Knobs``: from ``knobs.json`` when it was fitted for this ``model.keras``,
    else fitted now to the model's training clips in ``spectrograms_dir`` and saved.

    Raises
    ------
    PipelineError
        When the training clips are not there, or the knobs cannot be fitted to them.
    """
    path = Path(model_dir) / KNOBS_FILE
    sha256 = file_sha256(Path(model_dir) / MODEL_FILE)
    try:
        saved = read_json(path)
        if saved.get("model_sha256") == sha256 and saved.get("descriptors_version") == DESCRIPTORS_VERSION:
            return Knobs.from_json(saved)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # missing or damaged: fitted again below
    data, clips, data_params = load_spectrograms(spectrograms_dir)
    check_same_parameters(params, data_params, spectrograms_dir)
    rows = training_rows(clips, training)
    means = vae.encode_rows(data, rows, clip_label_indices([clips[i] for i in rows], decoder_classes(vae, training)))
    # Measured as the model sees the clips and makes new sounds: each spanning [0, 1], given the level of
    # new sounds (a clip's own dB range is not in its spectrogram, so no knob can follow it).
    descriptors = clip_descriptors(data, rows, training["generation_level_db"], params, chunk)
    clips = with_model_groups(clips, model_dir)
    groups = [clips[i].get("label") or "" for i in rows] if training["classes"] else None
    try:
        knobs = Knobs.fit(means, descriptors, KNOB_DESCRIPTORS, groups)
    except ValueError as error:
        raise PipelineError(f"cannot fit the knobs to the clips in {spectrograms_dir}: {error}") from None
    write_json(path, {**knobs.to_json(), "model_sha256": sha256, "descriptors_version": DESCRIPTORS_VERSION})
    print(f"fitted the knobs to {len(rows)} training clips (R^2 " + ", ".join(
        f"{name} {score:.2f}" for name, score in zip(knobs.names, knobs.scores)) + f"), saved to {path}")
    return knobs


def clip_descriptors(spectrograms, rows, level, params, chunk=256):
    """``sound_descriptors`` of rows of a spectrogram array (or reader), each given the dB range ``level``
    ({"min", "max"}: the level of new sounds), chunk by chunk."""
    rows = np.asarray(rows, dtype=int)
    return np.concatenate([np.zeros((0, len(KNOB_DESCRIPTORS)))] + [
        sound_descriptors(MinMaxNormaliser().denormalise(np.asarray(spectrograms[part]), level["min"], level["max"]),
                          params)
        for part in (rows[start:start + chunk] for start in range(0, len(rows), chunk))])


def save_groups(model_dir, groups, representatives, scores):
    """Write ``groups.json``: each clip id's group, a representative clip per group and the silhouettes tried."""
    write_json(Path(model_dir) / GROUPS_FILE, {"clips": groups, "representatives": representatives,
                                               "silhouette_by_count": {str(k): v for k, v in scores.items()}})


def with_model_groups(clips, model_dir):
    """``clips`` with each clip's group as its label, when train.py sorted this model's unlabelled folder
    into groups (``groups.json``); else ``clips`` as they are. From then on a group is a class."""
    path = Path(model_dir) / GROUPS_FILE
    if not path.exists():
        return clips
    try:
        groups = read_json(path)["clips"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise PipelineError(f"{path} is damaged ({error}): train the model again") from None
    return [{**clip, "label": groups.get(clip["id"], clip.get("label"))} for clip in clips]
