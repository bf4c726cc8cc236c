"""Step 1: turn a folder of short sounds into normalised log-spectrograms.

For every audio file under AUDIO_DIR: load (any format soundfile reads), mix to
mono, resample to SAMPLE_RATE, pad or cut to DURATION, take the log-magnitude STFT
in dB and min-max normalise it to [0, 1]. Writes into SPECTROGRAMS_DIR:

- ``spectrograms.npy``: all clips, shape (clips, FRAME_SIZE // 2, frames), float32,
  readable with ``np.load(..., mmap_mode="r")`` so training streams it from disk;
- ``clips.json``: per clip its id, source file, label and the min/max dB values
  that undo the normalisation;
- ``params.json``: the spectrogram parameters. Later steps read them from here
  and from the model folder; they are never typed twice.

Run ``python preprocess.py --help`` to list the settings.
"""

import math
import multiprocessing
import os
import re
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Final

import numpy as np

from configurator import PipelineError, configure, require, run_script
from fileio import atomic_write_all, json_writer, printable, read_json
from soundgenerator import fade_out_curve

# I/O
AUDIO_DIR = "data/audio"                # searched recursively; filled with demo drums when empty
SPECTROGRAMS_DIR = "data/spectrograms"
# audio: 0 = chosen from the folder (the chosen values are printed)
SAMPLE_RATE = 0                         # Hz; 0 = the folder's most common rate, so its full band is kept
DURATION = 0.0                          # seconds; 0 = long enough for AUDIBLE_QUANTILE of the one-shots to ring out
MAX_DURATION = 2.0                      # seconds; the longest DURATION chosen from the folder
AUDIBLE_DB = -60.0                      # a sound has rung out once it stays this far below its peak
AUDIBLE_QUANTILE = 0.8                  # fraction of the folder's sounds that fit whole into DURATION
ALIGN_ONSETS = True                     # start every clip at its attack (leading silence removed)
ONSET_DB = -40.0                        # the attack: the first sample within this many dB of the peak
PRE_ROLL = 0.005                        # seconds kept before the attack
FADE_OUT = 0.1                          # seconds of fade where a longer sound is cut, so it never clicks
LONG_FILES = "cut"                      # "cut": keep the first DURATION; "split": several clips
MAX_CLIPS_PER_FILE = 16                 # with LONG_FILES="split"
SILENCE_DB = -60.0                      # a file whose peak is below this (dBFS) is skipped as silent
# spectrogram: the window and hop are set in milliseconds, so they scale with the sample rate
FRAME_MS = 23.2                         # STFT window; rounded to a power of two samples (512 at 22050 Hz)
HOP_MS = 11.6                           # between frames (256 samples at 22050 Hz; measured: README, "Defaults")
FRAME_SIZE = 0                          # samples; 0 = from FRAME_MS. FRAME_SIZE // 2 frequency rows
HOP_LENGTH = 0                          # samples; 0 = from HOP_MS
TOP_DB = 80.0                           # dynamic range kept below each clip's peak, dB
# labels, used by the conditional model and by evaluate.py
LABELS = "auto"                         # "auto", "folder", "filename" (FSDD: 7_jackson_32.wav -> 7) or "none"
# system
NUM_WORKERS = 0                         # processes; 0 = one per CPU core
BATCH_FILES = 32                        # files per task; clips analysed per call (1 = one at a time)
DEMO_CLIPS_PER_CLASS = 60               # built-in drum set written when AUDIO_DIR is empty
SEED = 0

AUDIO_EXTENSIONS: Final = {".wav", ".wave", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".aifc",
                    ".mp3", ".opus", ".au", ".snd", ".caf", ".w64", ".rf64"}
AMIN: Final = 1e-5                             # smallest magnitude before log: -100 dB
FILE_RATE_RANGE: Final = (1000, 1_000_000)     # Hz; a header outside it is damaged, not audio
RESAMPLE_MARGIN: Final = 0.05                  # seconds read past the part kept, so resampling its end is exact
FLUSH_EVERY: Final = 500                       # files between flushes of the spectrograms to disk
FORMAT_VERSION: Final = 2                      # of the files written here; bumped on incompatible change
FALLBACK_SAMPLE_RATE: Final = 22050           # Hz, when no file of the folder can be read (and the demo set's)
FALLBACK_DURATION: Final = 0.74                # seconds, likewise
FOLDER_STATS_FILE: Final = "folder.json"       # per file: its sample rate and how long it rings, for reruns
FSDD_NAME = re.compile(r"^(?P<digit>[^_]+)_(?P<speaker>[^_]+)_(?P<take>\d+)$")  # a file stem


class Loader:
    """Loads an audio file as a mono float32 signal at the target sample rate.

    Only the first ``max_duration`` seconds are decoded (all of the file when it
    is None), so a ten-minute loop costs no more than a one-shot.
    """

    def __init__(self, sample_rate, max_duration=None):
        self.sample_rate = sample_rate
        self.max_duration = max_duration

    def load(self, path):
        """Return the signal, or raise ValueError with the reason the file cannot be used."""
        import librosa

        seconds = None if self.max_duration is None else self.max_duration + RESAMPLE_MARGIN
        signal, file_rate = self.read(path, seconds)
        if signal.shape[1] == 1:
            signal = signal[:, 0]
        else:  # in float64, so that loud float files cannot overflow
            signal = signal.mean(axis=1, dtype=np.float64).astype(np.float32)
        if file_rate != self.sample_rate:
            # Silence after the end gives the resampling filter room to ring out; without it
            # the last samples, or all of a file shorter than one target sample, come out as 0.
            length = max(1, math.ceil(len(signal) * self.sample_rate / file_rate))
            signal = np.pad(signal, (0, int(RESAMPLE_MARGIN * file_rate)))
            signal = librosa.resample(signal, orig_sr=file_rate, target_sr=self.sample_rate)[:length]
        return signal.astype(np.float32)

    @staticmethod
    def read(path, seconds=None):
        """(samples, channels) float32 of the first ``seconds`` (None: all) and the file's own rate.

        Raises ValueError with the reason the file cannot be used.
        """
        import soundfile as sf

        if os.path.getsize(path) == 0:
            raise ValueError("empty file (0 bytes)")
        try:  # libsndfile: WAV (any bit depth, WAVE_EXTENSIBLE), FLAC, OGG, AIFF, MP3 and more
            # As bytes on POSIX: soundfile cannot open a str name holding non-UTF-8 bytes.
            name = os.fsencode(path) if os.name == "posix" else str(path)
            with sf.SoundFile(name) as sound:
                file_rate = sound.samplerate
                if not FILE_RATE_RANGE[0] <= file_rate <= FILE_RATE_RANGE[1]:
                    raise ValueError(f"damaged header: sample rate {file_rate} Hz")
                frames = -1 if seconds is None else int(seconds * file_rate)
                signal = sound.read(frames, dtype="float32", always_2d=True)
        except Exception as error:
            message = _first_line(error).replace(f"Error opening {name!r}: ", "")
            if "not a regular file" in message:  # what libsndfile says of some unknown formats
                message = "format not recognised"
            raise ValueError(f"unreadable audio ({message})") from None
        if signal.size == 0:
            raise ValueError("empty: no samples")
        if not np.all(np.isfinite(signal)):
            raise ValueError("contains NaN or infinite samples")
        return signal, file_rate


class Padder:
    """Pads a signal with silence, or cuts it, to an exact number of samples.

    A cut sound is faded out over its last ``fade_samples`` (a raised cosine),
    so a ringing tail ends smoothly instead of with a click.
    """

    def __init__(self, num_samples, fade_samples=0):
        self.num_samples = num_samples
        self.fade = fade_out_curve(min(fade_samples, num_samples))

    def fix_length(self, signal):
        if len(signal) > self.num_samples:
            signal = signal[: self.num_samples].copy()
            if len(self.fade):
                signal[-len(self.fade):] *= self.fade
            return signal
        return np.pad(signal, (0, self.num_samples - len(signal)))

    def split(self, signal, max_clips):
        """Cut a long signal into consecutive clips; the last one is padded."""
        starts = range(0, len(signal), self.num_samples)[:max_clips]
        return [self.fix_length(signal[start:]) for start in starts]


def onset_sample(signal, onset_db, pre_roll_samples):
    """Index where a clip aligned to its attack starts: the first sample within ``onset_db`` of the
    peak, minus the pre-roll (0 for a signal that is silent throughout)."""
    magnitude = np.abs(signal)
    peak = float(magnitude.max()) if len(signal) else 0.0
    if peak <= 0:
        return 0
    first = int(np.argmax(magnitude >= peak * 10 ** (onset_db / 20)))
    return max(0, first - pre_roll_samples)


def clips_of_signal(signal, params):
    """The clips preprocess.py makes of a loaded signal (aligned to its attack, cut or split, faded).

    One function, used by preprocessing and by generate.py for the audio files it is given.
    """
    pieces = params["max_clips_per_file"] if params["long_files"] == "split" else 1
    if params["align_onsets"]:
        signal = signal[onset_sample(signal, params["onset_db"], round(params["pre_roll"] * params["sample_rate"])):]
    padder = Padder(params["num_samples"], round(params["fade_out"] * params["sample_rate"]))
    return padder.split(signal, pieces) if pieces > 1 else [padder.fix_length(signal)]


class LogSpectrogramExtractor:
    """Computes the log-magnitude STFT in dB, without the Nyquist row."""

    def __init__(self, frame_size, hop_length, top_db):
        self.frame_size = frame_size
        self.hop_length = hop_length
        self.top_db = top_db

    def extract(self, signals):
        """dB spectrogram(s) of a signal (samples,) or of equal-length signals (clips, samples).

        Each clip keeps TOP_DB below its own peak, so a batch gives exactly what
        one call per clip would, only faster.
        """
        import librosa

        stft = librosa.stft(signals, n_fft=self.frame_size, hop_length=self.hop_length)[..., :-1, :]
        spectrogram_db = librosa.amplitude_to_db(np.abs(stft), ref=1.0, amin=AMIN, top_db=None)
        return np.maximum(spectrogram_db, spectrogram_db.max(axis=(-2, -1), keepdims=True) - self.top_db)


class MinMaxNormaliser:
    """Scales each spectrogram to [0, 1] and back, with its own min and max."""

    def __init__(self, min_val=0.0, max_val=1.0):
        self.min_val = min_val
        self.max_val = max_val

    def normalise(self, array):
        array_min, array_max = float(array.min()), float(array.max())
        if not array_max > array_min:
            raise ValueError("constant spectrogram: cannot normalise (silent clip?)")
        norm = (array - array_min) / (array_max - array_min)
        return (norm * (self.max_val - self.min_val) + self.min_val).astype(np.float32), array_min, array_max

    def denormalise(self, norm, original_min, original_max):
        original_min = np.reshape(original_min, (-1,) + (1,) * (np.ndim(norm) - 1))
        original_max = np.reshape(original_max, (-1,) + (1,) * (np.ndim(norm) - 1))
        array = (norm - self.min_val) / (self.max_val - self.min_val)
        return array * (original_max - original_min) + original_min


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
                self.spectrograms_dir / "spectrograms.npy": write_array,
                self.spectrograms_dir / "params.json": json_writer(params),
                self.spectrograms_dir / "report.json": json_writer(report),
                self.spectrograms_dir / "clips.json": json_writer(clips, item_per_line=True),
            })
        finally:
            self.close()


class PreprocessingPipeline:
    """Finds audio files, turns each into a normalised spectrogram (in parallel) and saves them."""

    def __init__(self, config):
        self.config = config
        self.warmed_up = False
        self.saver = Saver(config.SPECTROGRAMS_DIR)
        if config.SAMPLE_RATE and config.DURATION and config.FRAME_SIZE and config.HOP_LENGTH:
            self._build()

    def _build(self):
        """Make the steps once every setting is known (after ``choose_settings`` for a folder)."""
        config = self.config
        self.num_samples = int(round(config.DURATION * config.SAMPLE_RATE))
        self.pieces_per_file = config.MAX_CLIPS_PER_FILE if config.LONG_FILES == "split" else 1
        # Read a little past the clip: the attack may come after some silence.
        read_seconds = config.DURATION * self.pieces_per_file + (1.0 if config.ALIGN_ONSETS else 0.0)
        self.loader = Loader(config.SAMPLE_RATE, max_duration=read_seconds)
        self.extractor = LogSpectrogramExtractor(config.FRAME_SIZE, config.HOP_LENGTH, config.TOP_DB)
        self.normaliser = MinMaxNormaliser(0.0, 1.0)

    @property
    def params(self):
        """The parameters every later step needs to read these spectrograms."""
        config = self.config
        return {
            "format_version": FORMAT_VERSION,
            "sample_rate": config.SAMPLE_RATE,
            "duration": config.DURATION,
            "num_samples": self.num_samples,
            "frame_size": config.FRAME_SIZE,
            "hop_length": config.HOP_LENGTH,
            "window": "hann",
            "n_bins": config.FRAME_SIZE // 2,
            "n_frames": 1 + self.num_samples // config.HOP_LENGTH,
            "amin": AMIN,
            "top_db": config.TOP_DB,
            "align_onsets": config.ALIGN_ONSETS,
            "onset_db": config.ONSET_DB,
            "pre_roll": config.PRE_ROLL,
            "fade_out": config.FADE_OUT,
            "long_files": config.LONG_FILES,
            "max_clips_per_file": config.MAX_CLIPS_PER_FILE,
            "silence_db": config.SILENCE_DB,
            "labels": config.LABELS,
        }

    def process_files(self, items):
        """Turn each (index, path) into spectrograms, written into the file's slots.

        Files are loaded one by one; their clips are analysed BATCH_FILES at a
        time, in one call each (long files split into several clips count
        each clip). Returns [(index, list of (min, max) dB per clip, or the
        reason the file cannot be used)].
        """
        outcomes, reasons, pending = {}, {}, []  # pending: (index, signal) of clips not analysed yet
        params = self.params
        threshold = 10 ** (self.config.SILENCE_DB / 20)
        for index, path in items:
            try:
                signal = self.loader.load(path)
            except ValueError as error:
                outcomes[index] = str(error)
                continue
            except Exception as error:  # a decoder bug must not stop the whole run
                outcomes[index] = f"unreadable audio ({type(error).__name__}: {_first_line(error)})"
                continue
            pieces = clips_of_signal(signal, params)
            # A silent stretch of a long file is left out; a file with nothing else is skipped.
            pieces = [piece for piece in pieces if np.max(np.abs(piece)) >= threshold]
            if not pieces:
                outcomes[index] = (f"silent: peak {_peak_dbfs(signal):.1f} dBFS is below "
                                   f"SILENCE_DB={self.config.SILENCE_DB}")
                continue
            outcomes[index] = []
            pending += [(index, piece) for piece in pieces]
            if len(pending) >= self.config.BATCH_FILES:
                self._analyse(pending, outcomes, reasons)
                pending = []
        self._analyse(pending, outcomes, reasons)
        for index, reason in reasons.items():
            if not outcomes[index]:  # no clip of the file could be used
                outcomes[index] = reason
        return [(index, outcomes[index]) for index, _ in items]

    def _analyse(self, clips, outcomes, reasons):
        """Spectrograms of (index, signal) clips in one call; each usable one goes to its file's next slot."""
        if not clips:
            return
        with np.errstate(over="ignore"):  # checked just below
            spectrograms_db = self.extractor.extract(np.stack([piece for _, piece in clips]))
        for (index, piece), spectrogram_db in zip(clips, spectrograms_db):
            if not np.all(np.isfinite(spectrogram_db)):
                reasons[index] = f"too loud to analyse (peak {_peak_dbfs(piece):.0f} dBFS)"
                continue
            try:
                normalised, db_min, db_max = self.normaliser.normalise(spectrogram_db)
            except ValueError as error:
                reasons[index] = str(error)
                continue
            self.saver.write_slot(index * self.pieces_per_file + len(outcomes[index]), normalised)
            outcomes[index].append((db_min, db_max))

    def run(self):
        config = self.config
        audio_dir = Path(config.AUDIO_DIR)
        if audio_dir.exists() and not audio_dir.is_dir():
            raise PipelineError(f"AUDIO_DIR {str(audio_dir)!r} is a file; pass the folder that holds your "
                                f"sounds: --audio_dir=PATH")
        if not audio_dir.is_dir() and _is_default_audio_dir(audio_dir):
            audio_dir.mkdir(parents=True)  # a fresh clone: the demo set goes here
        if not audio_dir.is_dir():
            raise PipelineError(f"AUDIO_DIR {str(audio_dir)!r} does not exist; create it and put sounds in it, "
                                f"or pass --audio_dir=PATH")
        audio_files, other_files = find_audio_files(audio_dir)
        if not audio_files and _is_default_audio_dir(audio_dir) and not other_files:
            audio_files = write_demo_set(audio_dir, config)

        keys, relatives, readable_files = [], [], []
        for path in audio_files:
            relative = path.relative_to(audio_dir)
            try:
                keys.append(file_key(path, relative))
            except OSError as error:  # removed or made unreadable since it was listed
                other_files.append((path, f"cannot be read ({error.strerror})"))
                continue
            relatives.append(relative)
            readable_files.append(path)
        audio_files = readable_files
        self.config, folder_stats = choose_settings(config, audio_files, keys)
        config = self.config
        self._build()
        params = self.params
        cache = load_cache(config.SPECTROGRAMS_DIR, params)
        label_of = label_rule(relatives, config.LABELS)
        todo = [(index, path) for index, (path, key) in enumerate(zip(audio_files, keys))
                if key not in cache.entries and key not in cache.failures]
        started = time.perf_counter()
        self.saver.begin(params["n_bins"], params["n_frames"], len(audio_files) * self.pieces_per_file)
        try:
            outcomes = dict(self.map_files(todo))
        except BaseException:  # a worker died, Ctrl-C: the scratch file goes, the previous run's files stay
            self.saver.close()
            raise

        # Assemble in sorted file order, so that reruns give identical arrays.
        skipped = [{"file": printable(path), "reason": reason} for path, reason in other_files]
        clips, rows, slots, reused = [], [], [], 0
        shape = (params["n_bins"], params["n_frames"])
        for index, (path, key) in enumerate(zip(audio_files, keys)):
            if key in cache.failures:  # unchanged since it was skipped: not tried again
                skipped.append({"file": printable(path), "reason": cache.failures[key], "key": key})
                continue
            if key in cache.entries:
                for clip, row in cache.entries[key]:
                    clips.append(clip)
                    rows.append(lambda row=row: row)
                    slots.append(None)
                reused += 1
                continue
            outcome = outcomes[index]
            if isinstance(outcome, str):
                skipped.append({"file": printable(path), "reason": outcome, "key": key})
                continue
            relative = printable(relatives[index].as_posix())
            label = label_of(relatives[index])
            for piece, (db_min, db_max) in enumerate(outcome):
                clips.append({
                    "id": relative if len(outcome) == 1 else f"{relative}#{piece}",
                    "file": relative,
                    "key": key,
                    "label": None if label is None else printable(label),
                    "min": round(db_min, 4),
                    "max": round(db_max, 4),
                })
                slot = index * self.pieces_per_file + piece
                rows.append(lambda slot=slot: self.saver.read_slot(slot, shape))
                slots.append(slot)
        report = {
            "audio_dir": printable(audio_dir),
            "clips_written": len(clips),
            "files_processed": len(todo) - sum(isinstance(outcome, str) for outcome in outcomes.values()),
            "files_reused": reused,
            "files_skipped": skipped,
            "parameters_changed": cache.changed,
            "seconds": round(time.perf_counter() - started, 3),
        }
        if not clips:
            self.saver.close()
            raise PipelineError(
                f"no usable audio found in {str(audio_dir)!r} ({len(skipped)} files skipped). "
                f"Put WAV/FLAC/OGG/AIFF files there (sub-folders are fine) or pass --audio_dir=PATH."
                + _skipped_text(skipped))
        self.saver.finish((read() for read in rows), clips, params, report, slots, folder_stats)
        return report

    def warm_up(self):
        """Load the resampler and FFT once, so that forked workers inherit them ready."""
        import librosa

        noise = np.random.default_rng(0).standard_normal(self.num_samples).astype(np.float32)
        self.extractor.extract(Padder(self.num_samples).fix_length(
            librosa.resample(noise, orig_sr=44100, target_sr=22050)))
        self.warmed_up = True

    def map_files(self, todo):
        """Yield (index, min/max values or reason) for each (index, path), with NUM_WORKERS processes.

        Work goes out in chunks of up to BATCH_FILES files. Every FLUSH_EVERY files
        the spectrograms written so far go to disk; with worker processes that
        happens while they compute the next ones. A worker process that dies (killed
        when memory runs out, or crashed) stops the run with a PipelineError that
        names the files it was working on.
        """
        from tqdm import tqdm

        workers = self.config.NUM_WORKERS or os.cpu_count() or 1
        workers = max(1, min(workers, len(todo)))
        chunks = _chunks(len(todo), workers, self.config.BATCH_FILES)
        pool = None
        if workers > 1:
            start_method = worker_start_method()
            if start_method == "fork" and not self.warmed_up:
                self.warm_up()
            context = multiprocessing.get_context(start_method)
            begun = context.RawArray("b", len(chunks))  # set by the worker that begins each chunk
            # Each worker gets this pipeline and the list of files once, at its start, so a
            # task is just a range of positions in that list and the main process mostly waits.
            pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                       initargs=(self, todo, begun))
            futures = {pool.submit(_process_chunk_in_worker, number, chunk): (number, chunk)
                       for number, chunk in enumerate(chunks)}
            results = self._results_of_workers(futures, begun, todo)
        else:
            results = (self.process_files(todo[chunk]) for chunk in chunks)
        try:
            with tqdm(total=len(todo), unit="file", desc="preprocessing", disable=not todo) as bar:
                done = 0
                for outcomes in results:
                    bar.update(len(outcomes))
                    for outcome in outcomes:
                        yield outcome
                        done += 1
                        if done % FLUSH_EVERY == 0:
                            self.saver.flush()
        finally:
            if pool is not None:  # after an error, the chunks no worker has begun are dropped
                pool.shutdown(wait=True, cancel_futures=True)

    def _results_of_workers(self, futures, begun, todo):
        """Yield each chunk's outcomes as its worker finishes it; a worker that died is a PipelineError."""
        for future in as_completed(futures):
            try:
                outcomes = future.result()
            except BrokenProcessPool:
                wait(futures, timeout=60)  # the pool marks every unfinished chunk as failed
                # The chunks begun and not finished: the dead worker's, and those of the workers
                # the pool stopped because of it.
                files = [printable(path) for other, (number, chunk) in futures.items()
                         if begun[number] and other.done() and isinstance(other.exception(), BrokenProcessPool)
                         for _, path in todo[chunk]]
                shown = ", ".join(files[:10]) + (f" and {len(files) - 10} more" if len(files) > 10 else "")
                raise PipelineError(
                    f"a worker process died "
                    f"{'while processing one of these files: ' + shown if files else 'before it began a file'}. "
                    f"It was killed (the system does that when memory runs out) or crashed. Nothing was "
                    f"saved: {self.config.SPECTROGRAMS_DIR} is as it was. Try fewer workers "
                    f"(--num_workers=1), or move those files out of {self.config.AUDIO_DIR}.") from None
            yield outcomes


# --- settings chosen from the folder ---------------------------------------------


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


def choose_settings(config, audio_files, keys):
    """``config`` with every setting left at 0 chosen from the folder, and those choices printed.

    SAMPLE_RATE: the folder's most common rate (the higher one on a tie). DURATION:
    the AUDIBLE_QUANTILE of how long its sounds ring (from the attack until they
    stay AUDIBLE_DB below their peak), at most MAX_DURATION. FRAME_SIZE and HOP_LENGTH
    from FRAME_MS and HOP_MS at that rate. Measurements are kept per file in
    ``folder.json`` of SPECTROGRAMS_DIR, so a rerun reads only new or changed files.

    Returns the completed settings and what to write into ``folder.json`` (None: nothing measured).
    """
    from types import SimpleNamespace

    chosen, folder_stats = {}, None
    if not config.SAMPLE_RATE or not config.DURATION:
        stats_path = Path(config.SPECTROGRAMS_DIR) / FOLDER_STATS_FILE
        settings = [config.MAX_DURATION, config.AUDIBLE_DB, config.ONSET_DB]
        try:
            old = read_json(stats_path)
            cached = old["files"] if old.get("settings") == settings else {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            cached = {}
        stats = {}
        for path, key in zip(audio_files, keys):
            stats[key] = cached.get(key) or measure_file(path, config.MAX_DURATION + 1.0,
                                                         config.AUDIBLE_DB, config.ONSET_DB)
        folder_stats = {"settings": settings, "files": stats}
        measured = [value for value in stats.values() if value]
        if not config.SAMPLE_RATE:
            rates = Counter(rate for rate, _ in measured)
            chosen["SAMPLE_RATE"] = (max(rates, key=lambda rate: (rates[rate], rate)) if rates
                                     else FALLBACK_SAMPLE_RATE)
        if not config.DURATION:
            seconds = [ring for _, ring in measured]
            quantile = float(np.quantile(seconds, config.AUDIBLE_QUANTILE)) if seconds else FALLBACK_DURATION
            chosen["DURATION"] = round(min(config.MAX_DURATION, quantile + config.PRE_ROLL) + 0.005, 2)
    sample_rate = chosen.get("SAMPLE_RATE", config.SAMPLE_RATE)
    if not config.FRAME_SIZE:
        chosen["FRAME_SIZE"] = power_of_two(config.FRAME_MS / 1000 * sample_rate)
    if not config.HOP_LENGTH:
        chosen["HOP_LENGTH"] = max(1, round(config.HOP_MS / 1000 * sample_rate))
    if chosen:
        duration = chosen.get("DURATION", config.DURATION)
        frame = chosen.get("FRAME_SIZE", config.FRAME_SIZE)
        chosen["DURATION"] = max(duration, round(frame / sample_rate + 0.005, 2))  # at least one frame
        print("chosen from the folder (set them by hand to override): " + ", ".join(
            f"{name.lower()}={value}" for name, value in chosen.items() if getattr(config, name) != value))
    return SimpleNamespace(**{**vars(config), **chosen}), folder_stats


def settings_from_params(params):
    """The preprocess.py settings that make spectrograms with ``params`` (e.g. a model's), as a dict."""
    names = ["sample_rate", "duration", "frame_size", "hop_length", "top_db", "align_onsets", "onset_db",
             "pre_roll", "fade_out"]
    return {name.upper(): params[name] for name in names}


# --- helpers -----------------------------------------------------------------

def worker_start_method():
    """How preprocessing starts its worker processes: "fork" on Linux, "spawn" elsewhere.

    A forked worker starts at once with everything this process has loaded
    (librosa, the resampler: see ``warm_up``). Windows has no fork, and on macOS
    a process forked after system libraries have started threads may crash, so
    there each worker starts a fresh Python and gets a pickled copy of the
    pipeline. Tests replace this function to try either on Linux.
    """
    return "fork" if sys.platform.startswith("linux") else "spawn"


_worker_pipeline, _worker_todo, _worker_begun = None, None, None


def _init_worker(pipeline, todo, begun):
    global _worker_pipeline, _worker_todo, _worker_begun
    _worker_pipeline, _worker_todo, _worker_begun = pipeline, todo, begun


def _process_chunk_in_worker(number, chunk):
    _worker_begun[number] = 1  # so that the main process knows the files of a worker that dies
    return _worker_pipeline.process_files(_worker_todo[chunk])


def _chunks(count, workers, largest):
    """Split ``range(count)`` into slices of up to ``largest``.

    With several workers the last slices shrink, down to one file, so that the
    workers finish together.
    """
    chunks, start = [], 0
    while start < count:
        size = largest if workers == 1 else max(1, min(largest, (count - start) // (workers * 4)))
        chunks.append(slice(start, start + size))
        start += size
    return chunks


def _peak_dbfs(signal):
    return 20 * np.log10(max(float(np.max(np.abs(signal))), 1e-12))


def _first_line(error):
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _is_default_audio_dir(audio_dir):
    return Path(audio_dir).resolve() == (Path(__file__).parent / "data" / "audio").resolve()


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


class _Cache:
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
    if not (spectrograms_dir / "params.json").exists():
        return _Cache()
    try:
        old_params = read_json(spectrograms_dir / "params.json")
        changed = sorted(name for name in set(params) | set(old_params)
                         if params.get(name) != old_params.get(name))
        if changed:
            return _Cache(changed=changed)
        array, clips, _ = load_spectrograms(spectrograms_dir)
    except (PipelineError, OSError, ValueError, AttributeError):
        return _Cache()  # damaged or incomplete: everything is processed again
    try:
        report = read_json(spectrograms_dir / "report.json")
        failures = {item["key"]: item["reason"] for item in report["files_skipped"] if "key" in item}
    except (OSError, ValueError, TypeError, KeyError):
        failures = {}  # skipped files are simply tried again
    entries = {}
    for index, clip in enumerate(clips):
        entries.setdefault(clip.get("key"), []).append((clip, array[index]))
    return _Cache(entries, failures)


def write_demo_set(audio_dir, config):
    """Fill the empty default AUDIO_DIR with the built-in synthesized drum one-shots."""
    from data.synthesize_drums import write_demo_drums

    print(f"{audio_dir} is empty: writing the built-in demo drum set there "
          f"({config.DEMO_CLIPS_PER_CLASS} clips per class)")
    return write_demo_drums(audio_dir, clips_per_class=config.DEMO_CLIPS_PER_CLASS,
                            sample_rate=config.SAMPLE_RATE or FALLBACK_SAMPLE_RATE, seed=config.SEED)


def _skipped_text(skipped, limit=20):
    lines = [f"\n  {item['file']}: {item['reason']}" for item in skipped[:limit]]
    if len(skipped) > limit:
        lines.append(f"\n  ... and {len(skipped) - limit} more (see report.json)")
    return "".join(lines)


def validate(config):
    """Refuse settings that cannot work, with a message that says why."""
    checks = [
        (config.SAMPLE_RATE == 0 or config.SAMPLE_RATE >= 1000,
         f"SAMPLE_RATE must be at least 1000 Hz (or 0: the folder's), got {config.SAMPLE_RATE}"),
        (config.DURATION >= 0, f"DURATION must be positive (seconds; 0: chosen from the folder), got {config.DURATION}"),
        (config.MAX_DURATION > 0, f"MAX_DURATION must be positive (seconds), got {config.MAX_DURATION}"),
        (0 < config.AUDIBLE_QUANTILE <= 1, f"AUDIBLE_QUANTILE must be in (0, 1], got {config.AUDIBLE_QUANTILE}"),
        (config.AUDIBLE_DB < 0 and config.ONSET_DB < 0,
         f"AUDIBLE_DB and ONSET_DB must be negative (dB below the peak), got {config.AUDIBLE_DB} and {config.ONSET_DB}"),
        (config.PRE_ROLL >= 0 and config.FADE_OUT >= 0,
         f"PRE_ROLL and FADE_OUT must be 0 or more seconds, got {config.PRE_ROLL} and {config.FADE_OUT}"),
        (config.FRAME_SIZE == 0 or (config.FRAME_SIZE >= 16 and config.FRAME_SIZE % 2 == 0),
         f"FRAME_SIZE must be an even number of samples >= 16 (or 0: from FRAME_MS), got {config.FRAME_SIZE}"),
        (config.FRAME_MS > 0 and config.HOP_MS > 0, f"FRAME_MS and HOP_MS must be positive, got "
                                                    f"{config.FRAME_MS} and {config.HOP_MS}"),
        (config.HOP_LENGTH >= 0 and (not config.FRAME_SIZE or config.HOP_LENGTH <= config.FRAME_SIZE),
         f"HOP_LENGTH must be between 1 and FRAME_SIZE={config.FRAME_SIZE} (or 0: from HOP_MS), got {config.HOP_LENGTH}"),
        (config.LONG_FILES in ("cut", "split"), f"LONG_FILES must be 'cut' or 'split', got {config.LONG_FILES!r}"),
        (config.MAX_CLIPS_PER_FILE >= 1, f"MAX_CLIPS_PER_FILE must be at least 1, got {config.MAX_CLIPS_PER_FILE}"),
        (config.TOP_DB > 0, f"TOP_DB must be positive, got {config.TOP_DB}"),
        (config.NUM_WORKERS >= 0, f"NUM_WORKERS must be >= 0, got {config.NUM_WORKERS}"),
        (config.BATCH_FILES >= 1, f"BATCH_FILES must be >= 1, got {config.BATCH_FILES}"),
    ]
    require(checks)
    if config.SAMPLE_RATE and config.DURATION and config.FRAME_SIZE \
            and config.DURATION * config.SAMPLE_RATE < config.FRAME_SIZE:
        raise PipelineError(f"DURATION={config.DURATION} s is shorter than one frame "
                            f"({config.FRAME_SIZE} samples at {config.SAMPLE_RATE} Hz)")


def load_spectrograms(spectrograms_dir, mmap=True):
    """Read what preprocess.py wrote: (spectrograms array, clips list, params dict).

    Raises PipelineError with a clear message when the folder is missing,
    incomplete or from an incompatible version.
    """
    spectrograms_dir = Path(spectrograms_dir)
    if not spectrograms_dir.is_dir():
        raise PipelineError(f"{spectrograms_dir} does not exist: run preprocess.py first "
                            f"(or pass --spectrograms_dir=PATH)")
    required = ["spectrograms.npy", "clips.json", "params.json"]
    missing = [name for name in required if not (spectrograms_dir / name).exists()]
    if missing:
        raise PipelineError(f"{spectrograms_dir} has no {', '.join(missing)}: run preprocess.py first "
                            f"(or pass --spectrograms_dir=PATH)")
    params = _read_index(spectrograms_dir / "params.json", dict)
    if params.get("format_version") != FORMAT_VERSION:
        raise PipelineError(f"{spectrograms_dir} was written by an incompatible version "
                            f"(format {params.get('format_version')}, expected {FORMAT_VERSION}): run preprocess.py again")
    clips = _read_index(spectrograms_dir / "clips.json", list)
    try:
        spectrograms = np.load(spectrograms_dir / "spectrograms.npy", mmap_mode="r" if mmap else None)
    except (OSError, ValueError) as error:
        raise PipelineError(f"{spectrograms_dir}/spectrograms.npy is damaged ({_first_line(error)}): "
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
        raise PipelineError(f"{path} is damaged ({_first_line(error)}): run preprocess.py again") from None
    if not isinstance(data, expected_type):
        raise PipelineError(f"{path} holds a {type(data).__name__}, not a {expected_type.__name__}: "
                            f"run preprocess.py again")
    return data


def print_summary(report, params):
    print(f"\n{report['clips_written']} clips written to spectrograms of shape "
          f"({params['n_bins']}, {params['n_frames']}) "
          f"({report['files_processed']} files processed in {report['seconds']:.1f} s, "
          f"{report['files_reused']} unchanged files reused)")
    if report["parameters_changed"]:
        print(f"parameters changed since the last run ({', '.join(report['parameters_changed'])}): "
              f"every file was processed again")
    skipped = report["files_skipped"]
    if skipped:
        kinds = Counter(re.split(r" \(|:", item["reason"])[0] for item in skipped)
        tally = ", ".join(f"{count} {kind}" for kind, count in kinds.most_common())
        print(f"{len(skipped)} skipped ({tally}):" + _skipped_text(skipped))


def main(argv=None):
    config = configure(globals(), argv)
    validate(config)
    pipeline = PreprocessingPipeline(config)
    report = pipeline.run()
    print_summary(report, pipeline.params)
    print(f"saved to {config.SPECTROGRAMS_DIR}/ (spectrograms.npy, clips.json, params.json, report.json)")
    return report


if __name__ == "__main__":
    run_script(main)
