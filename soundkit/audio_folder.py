"""The audio folder a user brings: which files are sounds, how a file's class is named, and what its
sounds are like (their rate, how long they ring), from which preprocess.py chooses its settings.

A file's class is its sub-folder (``kick/``, ``snare/``...) or, for FSDD-style
names (``7_jackson_32.wav``), the first part of its name.
"""

import math
import os
import re
from pathlib import Path
from typing import Final

import numpy as np

from soundkit.errors import PipelineError
from soundkit.fileio import printable
from soundkit.spectrogram import Loader, onset_sample

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


# --- what the sounds of the folder are like ---------------------------------------------

def power_of_two(samples):
    """The power of two nearest to ``samples`` (on a log scale), at least 16."""
    return int(2 ** max(4, round(math.log2(max(samples, 1)))))


def measure_file(path, max_seconds, audible_db, onset_db):
    """(sample rate, seconds from the attack until the sound stays ``audible_db`` below its peak), or None.

    Only the first ``max_seconds`` are read; a file that cannot be read gives None
    (it is reported by name when it is processed).
    """
    try:
        signal, rate = Loader.read(path, max_seconds)
    except (ValueError, OSError):
        return None
    magnitude = np.abs(signal).max(axis=1)
    peak = float(magnitude.max())
    if peak <= 0:
        return rate, 0.0
    start = onset_sample(magnitude, onset_db, 0)
    loud = np.flatnonzero(magnitude >= peak * 10 ** (audible_db / 20))
    return rate, (int(loud[-1]) + 1 - start) / rate
