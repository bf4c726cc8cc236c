"""The tutorial's ``Saver``: writes a spectrograms folder (see ``soundkit.folders``), atomically, and clears
what runs killed before they could clean up left there."""

import os
import re
import tempfile
import time
from pathlib import Path

import numpy as np

from soundkit.fileio import atomic_write_all, json_writer
from soundkit.folders import (CLIPS_FILE, FOLDER_STATS_FILE, PARAMS_FILE, REPORT_FILE, SCRATCH_PREFIX,
                              SPECTROGRAMS_FILE, STALE_AFTER, TEMPORARY_FILE)

try:
    import fcntl                                # POSIX: a run's scratch file is locked while it lives
except ImportError:                             # Windows: a file held open cannot be removed, which does as well
    fcntl = None

def remove_leftovers(spectrograms_dir):
    """Remove the temporary files of runs killed before they could clean up (SIGKILL, a power cut).

    Only the project's own, and only those no live run can own: a scratch file
    (``.slots.*.npy``) when its lock can be taken (its run locks it an instant after
    making it, hence 10 s of grace, and the system drops the lock when the process
    ends, however it ends; on Windows a file held open cannot be removed, which does
    as well); a temporary file of
    ``atomic_write_all`` (``.clips.json.*.tmp.json``...), which has no owner to ask
    and lives seconds to minutes while a run writes its results, when untouched for
    ``STALE_AFTER``. Returns the names removed.
    """
    removed = []
    for path in sorted(Path(spectrograms_dir).glob(".*")):
        try:
            if re.fullmatch(re.escape(SCRATCH_PREFIX) + r"\w+\.npy", path.name):
                stale = time.time() - path.stat().st_mtime > 10 and not _locked_by_a_live_run(path)
            else:
                stale = bool(TEMPORARY_FILE.fullmatch(path.name)) and time.time() - path.stat().st_mtime > STALE_AFTER
            if stale and path.is_file() and not path.is_symlink():
                path.unlink()
                removed.append(path.name)
        except OSError:  # gone meanwhile, or held open by a live run (Windows): left alone
            pass
    return removed


def _locked_by_a_live_run(path):
    if fcntl is None:
        return False
    try:
        with open(path, "rb") as file:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # dropped when the file closes
    except OSError:  # locked by a live run, or the lock cannot be asked about: kept
        return True
    return False


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
        """Make the scratch file of ``capacity`` slots, after removing what killed runs left (``remove_leftovers``)."""
        self.spectrograms_dir.mkdir(parents=True, exist_ok=True)
        remove_leftovers(self.spectrograms_dir)
        handle, name = tempfile.mkstemp(dir=self.spectrograms_dir, prefix=SCRATCH_PREFIX, suffix=".npy")
        if fcntl is not None:  # the lock holds until the file is closed, or the process ends however it ends
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # a file system without locks: other runs then never remove this file
                pass
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
