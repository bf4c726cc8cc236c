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

import re
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Final, NamedTuple

import librosa
import numpy as np

from soundkit.configurator import configure, require, run_script
from soundkit.errors import PipelineError
from data.synthesize_drums import write_demo_drums
from soundkit.fileio import first_line, printable, read_json
from soundkit.audio_folder import file_key, find_audio_files, label_rule, measure_file, power_of_two
from soundkit.folders import (CLIPS_FILE, FOLDER_STATS_FILE, FORMAT_VERSION, PARAMS_FILE, REPORT_FILE,
                              SPECTROGRAMS_FILE, load_cache)
from soundkit.saver import Saver
from soundkit.spectrogram import AMIN, Loader, LogSpectrogramExtractor, MinMaxNormaliser, Padder, clips_of_signal
from soundkit.workers import map_in_workers, map_per_file, with_progress, worker_count, worker_start_method

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
TOP_DB = 80.0                           # dynamic range kept below each clip's peak, dB (100 tried: benchmarks/README.md)
# labels, used by the conditional model and by evaluate.py
LABELS = "auto"                         # "auto", "folder", "filename" (FSDD: 7_jackson_32.wav -> 7) or "none"
# system
NUM_WORKERS = 0                         # processes; 0 = one per CPU core
BATCH_FILES = 32                        # files per task; clips analysed per call (1 = one at a time)
DEMO_CLIPS_PER_CLASS = 60               # built-in drum set written when AUDIO_DIR is empty
SEED = 0

FLUSH_EVERY: Final = 500                       # files between flushes of the spectrograms to disk
FALLBACK_SAMPLE_RATE: Final = 22050           # Hz, when no file of the folder can be read (and the demo set's)
FALLBACK_DURATION: Final = 0.74                # seconds, likewise
TRIED_AGAIN: Final = "; tried again next run"  # ends the reason of a skip with a passing cause


class AudioFolder(NamedTuple):
    """The sounds found under AUDIO_DIR, each with its path relative to it and its ``file_key``."""
    path: Path
    files: list
    relatives: list
    keys: list
    other_files: list   # (path, reason) of everything that is not a usable sound


class PreprocessingPipeline:
    """Turns the files of an ``AudioFolder`` into normalised spectrograms (in parallel) and saves them.

    Built from settled settings (``settle_settings``): the rate, length and STFT size are known.
    """

    def __init__(self, config):
        unsettled = [name for name in ("SAMPLE_RATE", "DURATION", "FRAME_SIZE", "HOP_LENGTH")
                     if not getattr(config, name)]
        if unsettled:
            raise ValueError(f"{', '.join(unsettled)} must be settled first (settle_settings)")
        self.config = config
        self.warmed_up = False
        self.saver = Saver(config.SPECTROGRAMS_DIR)
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
            "sample_rate": config.SAMPLE_RATE, "duration": config.DURATION, "num_samples": self.num_samples,
            "frame_size": config.FRAME_SIZE, "hop_length": config.HOP_LENGTH, "window": "hann",
            "n_bins": config.FRAME_SIZE // 2, "n_frames": 1 + self.num_samples // config.HOP_LENGTH,
            "amin": AMIN, "top_db": config.TOP_DB, "align_onsets": config.ALIGN_ONSETS, "onset_db": config.ONSET_DB,
            "pre_roll": config.PRE_ROLL, "fade_out": config.FADE_OUT, "long_files": config.LONG_FILES,
            "max_clips_per_file": config.MAX_CLIPS_PER_FILE, "silence_db": config.SILENCE_DB, "labels": config.LABELS,
        }

    def process_files(self, items):
        """Turn each (index, path) into spectrograms, written into the file's slots.

        Files are loaded one by one; their clips are analysed BATCH_FILES at a time, in one call each (long
        files split into several clips count each clip). Returns [(index, list of (min, max) dB per clip, or
        the reason the file cannot be used)].
        """
        outcomes, reasons, pending = {}, {}, []  # pending: (index, signal) of clips not analysed yet
        params = self.params
        threshold = 10 ** (self.config.SILENCE_DB / 20)
        for index, path in items:
            try:
                signal = self.loader.load(path)
            except (OSError, MemoryError) as error:  # no permission, a disk or network error: not the content
                outcomes[index] = f"cannot be read ({getattr(error, 'strerror', None) or first_line(error)}){TRIED_AGAIN}"
                continue
            except ValueError as error:
                outcomes[index] = str(error)
                continue
            except Exception as error:  # a decoder bug must not stop the whole run
                outcomes[index] = f"unreadable audio ({type(error).__name__}: {first_line(error)})"
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

    def run(self, folder, folder_stats=None):
        """Analyse the files of ``folder`` (an ``AudioFolder``), reusing an earlier run's unchanged ones, and save
        everything; returns the report."""
        config, params = self.config, self.params
        audio_dir, audio_files, relatives, keys, other_files = folder
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

        clips, rows, slots, skipped, reused = self._assemble(audio_files, relatives, keys, other_files,
                                                              cache, outcomes, label_of)
        report = {
            "audio_dir": printable(audio_dir), "clips_written": len(clips),
            "files_processed": len(todo) - sum(isinstance(outcome, str) for outcome in outcomes.values()),
            "files_reused": reused, "files_skipped": skipped, "parameters_changed": cache.changed,
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

    def _assemble(self, audio_files, relatives, keys, other_files, cache, outcomes, label_of):
        """The clips in sorted file order (so that reruns give identical arrays), each with a function that
        reads its row, its slot, and the files skipped; reused rows come from ``cache``."""
        skipped = [{"file": printable(path), "reason": reason} for path, reason in other_files]
        clips, rows, slots, reused = [], [], [], 0
        params = self.params
        shape = (params["n_bins"], params["n_frames"])
        for index, (path, key) in enumerate(zip(audio_files, keys)):
            if key in cache.failures:  # unchanged since its content was found unusable: not tried again
                skipped.append({"file": printable(path), "reason": cache.failures[key], "key": key,
                                "until_changed": True})
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
                skipped.append(_skip_entry(path, relatives[index], key, outcome))
                continue
            relative = printable(relatives[index].as_posix())
            label = label_of(relatives[index])
            for piece, (db_min, db_max) in enumerate(outcome):
                clips.append({
                    "id": relative if len(outcome) == 1 else f"{relative}#{piece}", "file": relative, "key": key,
                    "label": None if label is None else printable(label),
                    "min": round(db_min, 4), "max": round(db_max, 4),
                })
                slot = index * self.pieces_per_file + piece
                rows.append(lambda slot=slot: self.saver.read_slot(slot, shape))
                slots.append(slot)
        return clips, rows, slots, skipped, reused

    def warm_up(self):
        """Load the resampler and FFT once, so that forked workers inherit them ready."""
        noise = np.random.default_rng(0).standard_normal(self.num_samples).astype(np.float32)
        self.extractor.extract(Padder(self.num_samples).fix_length(
            librosa.resample(noise, orig_sr=44100, target_sr=22050)))
        self.warmed_up = True

    def map_files(self, todo):
        """(index, min/max values or reason) for each (index, path), with NUM_WORKERS processes, as they come.

        Work goes out in chunks of up to BATCH_FILES files (``workers.map_in_workers``). Every FLUSH_EVERY files
        the spectrograms written so far go to disk; with worker processes, while they compute the next ones.
        """
        workers = worker_count(self.config.NUM_WORKERS, len(todo))
        if workers > 1 and worker_start_method() == "fork" and not self.warmed_up:
            self.warm_up()
        results = map_in_workers(self, todo, workers, self.config.BATCH_FILES, after_death=(
            f"Nothing was saved: {self.config.SPECTROGRAMS_DIR} is as it was. Try fewer workers "
            f"(--num_workers=1), or move those files out of {self.config.AUDIO_DIR}."))
        return with_progress(results, len(todo), "preprocessing", FLUSH_EVERY, self.saver.flush)


# --- settings chosen from the folder ---------------------------------------------


def find_sounds(config):
    """The ``AudioFolder`` of AUDIO_DIR; an empty default folder is filled with the demo drums first."""
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
    audio_files, relatives, keys = _readable(audio_files, audio_dir, other_files)
    return AudioFolder(audio_dir, audio_files, relatives, keys, other_files)


def settle_settings(config, folder):
    """``config`` with every setting left at 0 chosen from ``folder``, and what to keep in ``folder.json``."""
    labels = [label_rule(folder.relatives, config.LABELS)(relative) for relative in folder.relatives]
    return choose_settings(config, folder.files, folder.keys, labels)


def preprocess_folder(config):
    """Find the sounds, settle the settings, build the pipeline and run it; returns (pipeline, report)."""
    folder = find_sounds(config)
    config, folder_stats = settle_settings(config, folder)
    pipeline = PreprocessingPipeline(config)
    return pipeline, pipeline.run(folder, folder_stats)


def _readable(audio_files, audio_dir, other_files):
    """(files, paths relative to ``audio_dir``, ``file_key`` of each) of those still readable; the others go
    to ``other_files`` with the reason."""
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
    return readable_files, relatives, keys


def _skip_entry(path, relative, key, reason):
    """The report entry of a file just skipped. Only a skip its content caused is remembered until the file
    changes (``until_changed``); one with a passing cause (no permission, still being copied) is tried again."""
    try:
        with open(path, "rb"):  # a file the decoder may not open: its content is not the cause
            changed = file_key(path, relative) != key
    except OSError as error:
        return {"file": printable(path), "reason": f"cannot be read ({error.strerror or first_line(error)}){TRIED_AGAIN}"}
    if changed and not reason.endswith(TRIED_AGAIN):
        reason += f", but it changed while it was read (still being copied?){TRIED_AGAIN}"
    entry = {"file": printable(path), "reason": reason}
    return entry if reason.endswith(TRIED_AGAIN) else {**entry, "key": key, "until_changed": True}


def choose_settings(config, audio_files, keys, labels=None):
    """``config`` with every setting left at 0 chosen from the folder, and those choices printed.

    SAMPLE_RATE: the folder's most common rate (the higher one on a tie). DURATION:
    long enough for the AUDIBLE_QUANTILE of the sounds of every class (``labels``,
    one a file; None or no labels: the folder as one class) to ring out, from the
    attack until they stay AUDIBLE_DB below their peak, at most MAX_DURATION: the
    class with the longest sounds keeps its tails. FRAME_SIZE and HOP_LENGTH
    from FRAME_MS and HOP_MS at that rate. Measurements are kept per file in
    ``folder.json`` of SPECTROGRAMS_DIR, so a rerun reads only new or changed files.

    Returns the completed settings and what to write into ``folder.json`` (None: nothing measured).
    """
    chosen, folder_stats = {}, None
    if not config.SAMPLE_RATE or not config.DURATION:
        settings = [config.MAX_DURATION, config.AUDIBLE_DB, config.ONSET_DB]
        try:
            old = read_json(Path(config.SPECTROGRAMS_DIR) / FOLDER_STATS_FILE)
            cached = old["files"] if old.get("settings") == settings else {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            cached = {}
        todo = [(index, path) for index, (path, key) in enumerate(zip(audio_files, keys)) if not cached.get(key)]
        # A file a task in worker processes, even with NUM_WORKERS=1: a file that crashes its decoder is named.
        probed = map_per_file(measure_file, (config.MAX_DURATION + 1.0, config.AUDIBLE_DB, config.ONSET_DB), todo,
                              worker_count(config.NUM_WORKERS, len(todo)), after_death=f"Nothing was saved: "
                              f"{config.SPECTROGRAMS_DIR} is as it was. Move that file out of {config.AUDIO_DIR}.")
        stats = {key: cached.get(key) or probed.get(index) for index, key in enumerate(keys)}
        folder_stats = {"settings": settings, "files": stats}
        measured = [value for value in stats.values() if value]
        if not config.SAMPLE_RATE:
            rates = Counter(rate for rate, _ in measured)
            chosen["SAMPLE_RATE"] = (max(rates, key=lambda rate: (rates[rate], rate)) if rates
                                     else FALLBACK_SAMPLE_RATE)
        if not config.DURATION:
            chosen["DURATION"] = _ringing_duration(config, [stats[key] for key in keys], labels)
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


def _ringing_duration(config, measured, labels):
    """DURATION from how long the sounds ring (``measured``: (rate, seconds) or None a file), class by class."""
    by_class = {}
    for value, label in zip(measured, labels or [None] * len(measured)):
        if value:
            by_class.setdefault(label, []).append(value[1])
    if not by_class:
        return FALLBACK_DURATION
    quantiles = {label: float(np.quantile(seconds, config.AUDIBLE_QUANTILE)) for label, seconds in by_class.items()}
    longest = max(quantiles, key=quantiles.get)
    duration = round(min(config.MAX_DURATION, quantiles[longest] + config.PRE_ROLL) + 0.005, 2)
    if len(quantiles) > 1:
        capped = quantiles[longest] + config.PRE_ROLL > config.MAX_DURATION
        print(f"how long each class rings ({config.AUDIBLE_QUANTILE:.0%} of its sounds, to {config.AUDIBLE_DB:g} dB): "
              + ", ".join(f"{label} {seconds:.2f} s" for label, seconds in sorted(quantiles.items(), key=str))
              + (f"; duration {duration} s, capped by MAX_DURATION: the longest of {longest}'s tails are cut"
                 if capped else f"; duration {duration} s keeps {longest}'s tails"))
    return duration


def _peak_dbfs(signal):
    return 20 * np.log10(max(float(np.max(np.abs(signal))), 1e-12))


def _is_default_audio_dir(audio_dir):
    return Path(audio_dir).resolve() == (Path(__file__).parent / "data" / "audio").resolve()


def write_demo_set(audio_dir, config):
    """Fill the empty default AUDIO_DIR with the built-in synthesized drum one-shots."""
    print(f"{audio_dir} is empty: writing the built-in demo drum set there ({config.DEMO_CLIPS_PER_CLASS} clips per class)")
    return write_demo_drums(audio_dir, clips_per_class=config.DEMO_CLIPS_PER_CLASS,
                            sample_rate=config.SAMPLE_RATE or FALLBACK_SAMPLE_RATE, seed=config.SEED)


def _skipped_text(skipped, limit=20):
    more = [f"\n  ... and {len(skipped) - limit} more (see report.json)"] if len(skipped) > limit else []
    return "".join([f"\n  {item['file']}: {item['reason']}" for item in skipped[:limit]] + more)


def validate(config):
    """Refuse settings that cannot work, with a message that says why."""
    require([
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
    ])
    if config.SAMPLE_RATE and config.DURATION and config.FRAME_SIZE \
            and config.DURATION * config.SAMPLE_RATE < config.FRAME_SIZE:
        raise PipelineError(f"DURATION={config.DURATION} s is shorter than one frame "
                            f"({config.FRAME_SIZE} samples at {config.SAMPLE_RATE} Hz)")


def print_summary(report, params):
    print(f"\n{report['clips_written']} clips written to spectrograms of shape ({params['n_bins']}, {params['n_frames']}) "
          f"({report['files_processed']} files processed in {report['seconds']:.1f} s, "
          f"{report['files_reused']} unchanged files reused)")
    if report["parameters_changed"]:
        print(f"parameters changed since the last run ({', '.join(report['parameters_changed'])}): all files processed again")
    skipped = report["files_skipped"]
    if skipped:
        kinds = Counter(re.split(r" \(|:", item["reason"])[0] for item in skipped).most_common()
        tally = ", ".join(f"{count} {kind}" for kind, count in kinds)
        print(f"{len(skipped)} skipped ({tally}):" + _skipped_text(skipped))


def main(argv=None):
    config = configure(globals(), argv)
    validate(config)
    pipeline, report = preprocess_folder(config)
    print_summary(report, pipeline.params)
    print(f"saved to {config.SPECTROGRAMS_DIR}/ ({SPECTROGRAMS_FILE}, {CLIPS_FILE}, {PARAMS_FILE}, {REPORT_FILE})")
    return report


if __name__ == "__main__":
    run_script(main)
