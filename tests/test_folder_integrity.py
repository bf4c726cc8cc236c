"""Folder integrity: reruns and crashes mid-run, damaged or untrusted files.

A crash mid-run leaves the previous spectrograms intact; damaged spectrogram and
model folders are refused with a clear message; nothing unsafe is loaded,
nothing is written outside its folder.  Messy input folders: test_robustness.py.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

import preprocess
from soundkit.errors import PipelineError
from conftest import run_preprocess, skip_reasons, tone
from soundkit.fileio import MAX_NAME_BYTES, safe_name
from soundkit.folders import (CLIPS_FILE, FOLDER_STATS_FILE, PARAMS_FILE, REPORT_FILE, SPECTROGRAMS_FILE,
                              load_spectrograms)
from soundkit.saver import Saver
from soundkit.spectrogram import Loader

PROJECT_DIR = Path(__file__).resolve().parents[1]
SAMPLE_RATE = 22050



# --- reruns and crashes mid-run -------------------------------------------------

def test_a_rerun_reports_unchanged_skipped_files_again_without_retrying_them(audio_folder, tmp_path, monkeypatch):
    (audio_folder / "low" / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk")
    first = run_preprocess(audio_folder, tmp_path / "spectrograms")
    loaded = []
    original_load = Loader.load
    monkeypatch.setattr(Loader, "load", lambda self, path: loaded.append(path) or original_load(self, path))
    again = run_preprocess(audio_folder, tmp_path / "spectrograms")
    assert loaded == []
    assert (again["files_processed"], again["files_reused"]) == (0, 6)
    assert skip_reasons(again) == skip_reasons(first) == {"broken.wav": skip_reasons(first)["broken.wav"]}
    assert skip_reasons(again)["broken.wav"].startswith("unreadable audio")


def test_a_file_made_unreadable_is_skipped_then_processed_once_it_is_readable_again(audio_folder, tmp_path):
    locked = audio_folder / "low" / "low_110.wav"
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):
            pytest.skip("this user reads a file whatever its permissions (root)")
        first = run_preprocess(audio_folder, tmp_path / "spectrograms")
    finally:
        locked.chmod(0o644)  # nothing else changes: same size, same modification time
    assert skip_reasons(first) == {"low_110.wav": "cannot be read (Permission denied); tried again next run"}
    again = run_preprocess(audio_folder, tmp_path / "spectrograms")
    assert (again["files_processed"], again["files_reused"], again["files_skipped"]) == (1, 5, [])
    assert len(load_spectrograms(tmp_path / "spectrograms")[1]) == 6


def test_a_file_the_loader_could_not_read_for_a_passing_reason_is_tried_again(audio_folder, tmp_path, monkeypatch):
    original_load = Loader.load

    def denied(self, path):  # what reading a file without permission, or a network disk that went away, raises
        if Path(path).name == "low_110.wav":
            raise PermissionError(13, "Permission denied", str(path))
        return original_load(self, path)
    monkeypatch.setattr(Loader, "load", denied)
    first = run_preprocess(audio_folder, tmp_path / "spectrograms")
    monkeypatch.undo()
    assert skip_reasons(first) == {"low_110.wav": "cannot be read (Permission denied); tried again next run"}
    assert "until_changed" not in first["files_skipped"][0]
    again = run_preprocess(audio_folder, tmp_path / "spectrograms")
    assert (again["files_processed"], again["files_reused"], again["files_skipped"]) == (1, 5, [])


def test_a_file_that_changed_while_it_was_read_is_not_remembered_as_unusable(audio_folder, tmp_path, monkeypatch):
    growing = audio_folder / "low" / "growing.wav"
    sf.write(growing, tone(170), SAMPLE_RATE)
    complete = growing.read_bytes()
    growing.write_bytes(complete[:20])  # a copy that has just begun
    original_load = Loader.load

    def copy_finishes_while_read(self, path):
        try:
            return original_load(self, path)
        finally:
            if Path(path).name == "growing.wav":
                growing.write_bytes(complete)
    monkeypatch.setattr(Loader, "load", copy_finishes_while_read)
    first = run_preprocess(audio_folder, tmp_path / "spectrograms")
    monkeypatch.undo()
    reason = skip_reasons(first)["growing.wav"]
    assert reason.endswith(", but it changed while it was read (still being copied?); tried again next run"), reason
    assert "until_changed" not in first["files_skipped"][0]
    again = run_preprocess(audio_folder, tmp_path / "spectrograms")
    assert (again["files_processed"], again["files_reused"], again["files_skipped"]) == (1, 6, [])


def test_skips_of_a_report_that_does_not_say_their_cause_are_tried_again(audio_folder, tmp_path, monkeypatch):
    (audio_folder / "low" / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk")
    run_preprocess(audio_folder, tmp_path / "spectrograms")
    report_path = tmp_path / "spectrograms" / "report.json"
    edit_json(report_path, lambda report: [item.pop("until_changed") for item in report["files_skipped"]])
    loaded = []
    original_load = Loader.load
    monkeypatch.setattr(Loader, "load", lambda self, path: loaded.append(Path(path).name) or original_load(self, path))
    again = run_preprocess(audio_folder, tmp_path / "spectrograms")  # as a report of an earlier version
    assert loaded == ["broken.wav"] and again["files_skipped"][0]["until_changed"] is True


def folder_contents(folder):
    return {path.name: path.read_bytes() for path in sorted(Path(folder).iterdir())}


def test_an_error_while_writing_the_array_leaves_the_previous_spectrograms_intact(audio_folder, tmp_path, monkeypatch):
    run_preprocess(audio_folder, tmp_path / "spectrograms")
    before = folder_contents(tmp_path / "spectrograms")
    sf.write(audio_folder / "low" / "low_110.wav", tone(170), SAMPLE_RATE)  # one file to redo

    def crash(*args):
        raise KeyboardInterrupt
    monkeypatch.setattr(Saver, "read_slot", crash)
    with pytest.raises(KeyboardInterrupt):
        run_preprocess(audio_folder, tmp_path / "spectrograms")
    assert folder_contents(tmp_path / "spectrograms") == before  # no temporary files left either
    spectrograms, clips, _ = load_spectrograms(tmp_path / "spectrograms")
    assert len(clips) == len(spectrograms) == 6


def test_an_error_while_moving_files_into_place_leaves_the_previous_spectrograms_intact(audio_folder, tmp_path,
                                                                                         monkeypatch):
    run_preprocess(audio_folder, tmp_path / "spectrograms")
    before = folder_contents(tmp_path / "spectrograms")
    sf.write(audio_folder / "low" / "extra.wav", tone(120), SAMPLE_RATE)  # the new run has 7 clips

    def disk_full(*args):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(OSError, match="No space left"):
        run_preprocess(audio_folder, tmp_path / "spectrograms")
    monkeypatch.undo()
    assert folder_contents(tmp_path / "spectrograms") == before
    spectrograms, clips, _ = load_spectrograms(tmp_path / "spectrograms")
    assert len(clips) == len(spectrograms) == 6


# A preprocess.py whose worker kills itself, as the out-of-memory killer would, when it loads poison.wav.
POISONED_PREPROCESS = """
import os, signal, sys
import preprocess
from soundkit.configurator import run_script

class PoisonLoader(preprocess.Loader):
    def load(self, path):
        if os.path.basename(path) == "poison.wav":
            os.kill(os.getpid(), signal.SIGKILL)
        return super().load(path)

if __name__ == "__main__":
    preprocess.Loader = PoisonLoader
    run_script(lambda: preprocess.main(sys.argv[1:]))
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL to kill a worker")
def test_a_worker_that_dies_stops_the_run_clearly_and_keeps_the_previous_spectrograms(audio_folder, tmp_path):
    run_preprocess(audio_folder, tmp_path / "spectrograms")
    before = folder_contents(tmp_path / "spectrograms")
    sf.write(audio_folder / "low" / "poison.wav", tone(170), SAMPLE_RATE)
    script = tmp_path / "poisoned_preprocess.py"
    script.write_text(POISONED_PREPROCESS)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(script), f"--audio_dir={audio_folder}", f"--spectrograms_dir={tmp_path / 'spectrograms'}",
         "--num_workers=2", f"--sample_rate={SAMPLE_RATE}", "--duration=0.74", "--top_db=70"],  # all 7 files anew
        capture_output=True, text=True, timeout=120, cwd=PROJECT_DIR,
        env={**os.environ, "PYTHONPATH": str(PROJECT_DIR)})
    assert time.monotonic() - started < 60  # no hang: the dead worker is noticed
    assert result.returncode == 1, result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("error: a worker process died while processing one of these files:"), result.stderr
    assert "poison.wav" in message and "--num_workers=1" in message
    assert "Traceback" not in result.stderr
    assert folder_contents(tmp_path / "spectrograms") == before  # and no scratch file left behind


def test_a_run_removes_what_killed_runs_left_and_keeps_everything_else(audio_folder, tmp_path):
    folder = tmp_path / "spectrograms"
    run_preprocess(audio_folder, folder)
    results = sorted(path.name for path in folder.iterdir())
    left_by_killed_runs = [".slots.k1ll3d_x.npy",                 # a scratch file no live run holds
                           ".clips.json.a1b2c3d4.tmp.json", ".spectrograms.npy.q9w8e7r6.tmp.npy"]  # untouched for a day
    others = ["notes.txt", "my.tmp.json", ".other.json.a1b2c3d4.tmp.json", ".slots.txt", ".slots.k1ll3d_x.npy.bak",
              ".params.json.fresh123.tmp.json",                     # a live run may be writing it
              ".slots.j0stmade.npy",                                # a live run may be about to lock it
              ".slots.l1ve0000.npy"]                                # a live run's scratch file: locked
    day_ago = time.time() - 24 * 3600
    for name in left_by_killed_runs + others:
        (folder / name).write_bytes(b"\x93NUMPY left over")
        if name not in (".params.json.fresh123.tmp.json", ".slots.j0stmade.npy"):
            os.utime(folder / name, (day_ago, day_ago))
    with open(folder / ".slots.l1ve0000.npy", "rb+") as live:
        if fcntl is not None:  # (on Windows a file held open cannot be removed)
            fcntl.flock(live.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        run_preprocess(audio_folder, folder)
    assert sorted(path.name for path in folder.iterdir()) == sorted(results + others)
    assert (folder / "notes.txt").read_bytes() == b"\x93NUMPY left over"


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_the_scratch_file_of_a_run_killed_with_sigkill_is_removed_by_the_next_run(audio_folder, tmp_path):
    sf.write(audio_folder / "low" / "poison.wav", tone(170), SAMPLE_RATE)
    script = tmp_path / "poisoned_preprocess.py"
    script.write_text(POISONED_PREPROCESS)
    folder = tmp_path / "spectrograms"
    result = subprocess.run(  # one process: the run itself is killed, mid-way
        [sys.executable, str(script), f"--audio_dir={audio_folder}", f"--spectrograms_dir={folder}",
         "--num_workers=1", f"--sample_rate={SAMPLE_RATE}", "--duration=0.74"],
        capture_output=True, text=True, timeout=120, cwd=PROJECT_DIR, env={**os.environ, "PYTHONPATH": str(PROJECT_DIR)})
    assert result.returncode == -signal.SIGKILL
    assert [path.name.startswith(".slots.") for path in folder.iterdir()] == [True]
    (audio_folder / "low" / "poison.wav").unlink()
    minute_ago = time.time() - 60  # the next run comes a little later
    os.utime(next(folder.iterdir()), (minute_ago, minute_ago))
    run_preprocess(audio_folder, folder)
    assert sorted(path.name for path in folder.iterdir()) == [CLIPS_FILE, PARAMS_FILE, REPORT_FILE, SPECTROGRAMS_FILE]


# A preprocess.py whose decoder crashes (as a bug in libsndfile would) on poison.wav, wherever it reads it.
CRASHING_DECODER_PREPROCESS = """
import os, resource, signal, sys
import preprocess
from soundkit import spectrogram
from soundkit.configurator import run_script

original_read = spectrogram.Loader.read

def crashing_read(path, seconds=None):
    if os.path.basename(path) == "poison.wav":
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file
        os.kill(os.getpid(), signal.SIGSEGV)
    return original_read(path, seconds)

if __name__ == "__main__":
    spectrogram.Loader.read = staticmethod(crashing_read)
    run_script(lambda: preprocess.main(sys.argv[1:]))
"""


@pytest.mark.skipif(not hasattr(signal, "SIGSEGV") or sys.platform == "win32", reason="needs SIGSEGV")
def test_a_file_that_crashes_the_decoder_while_settings_are_chosen_is_named_and_nothing_is_lost(audio_folder,
                                                                                               tmp_path):
    folder = tmp_path / "spectrograms"
    config = preprocess.configure(vars(preprocess), [f"--audio_dir={audio_folder}", f"--spectrograms_dir={folder}",
                                                     "--num_workers=1"])  # rate and length chosen from the folder
    preprocess.preprocess_folder(config)
    before = folder_contents(folder)
    assert FOLDER_STATS_FILE in before
    sf.write(audio_folder / "low" / "poison.wav", tone(170), SAMPLE_RATE)
    script = tmp_path / "crashing_preprocess.py"
    script.write_text(CRASHING_DECODER_PREPROCESS)
    result = subprocess.run(
        [sys.executable, str(script), f"--audio_dir={audio_folder}", f"--spectrograms_dir={folder}", "--num_workers=1"],
        capture_output=True, text=True, timeout=120, cwd=PROJECT_DIR, env={**os.environ, "PYTHONPATH": str(PROJECT_DIR)})
    assert result.returncode == 1, result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith(f"error: a worker process died while processing one of these files: "
                              f"{audio_folder / 'low' / 'poison.wav'}. "), message  # that file, and only it
    assert f"Nothing was saved: {folder} is as it was. Move that file out of {audio_folder}." in message
    assert "Traceback" not in result.stderr
    assert folder_contents(folder) == before  # the spectrograms and the measurements of the other files


# --- refusing damaged spectrogram and model folders ---------------------------

@pytest.fixture
def spectrograms_dir(audio_folder, tmp_path):
    run_preprocess(audio_folder, tmp_path / "spectrograms")
    return tmp_path / "spectrograms"


def edit_json(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_load_spectrograms_refuses_an_absent_folder(tmp_path):
    with pytest.raises(PipelineError, match="does not exist: run preprocess.py first"):
        load_spectrograms(tmp_path / "nowhere")


def test_load_spectrograms_refuses_a_clip_without_min_max(spectrograms_dir):
    edit_json(spectrograms_dir / "clips.json", lambda clips: clips[2].pop("max"))
    with pytest.raises(PipelineError, match="no id/min/max entry .* run preprocess.py again"):
        load_spectrograms(spectrograms_dir)


def test_load_spectrograms_refuses_another_format_version(spectrograms_dir):
    edit_json(spectrograms_dir / "params.json", lambda params: params.update(format_version=99))
    with pytest.raises(PipelineError, match=rf"incompatible version \(format 99, expected {preprocess.FORMAT_VERSION}\)"):
        load_spectrograms(spectrograms_dir)


def test_load_spectrograms_refuses_an_array_whose_rows_do_not_match_clips(spectrograms_dir):
    edit_json(spectrograms_dir / "clips.json", lambda clips: clips.pop())
    with pytest.raises(PipelineError, match=r"shape \(6, 256, 64\) but .* describe float32 of shape \(5, 256, 64\)"):
        load_spectrograms(spectrograms_dir)


def test_load_spectrograms_refuses_damaged_json(spectrograms_dir):
    (spectrograms_dir / "clips.json").write_text('[{"id": "cut in the mid')
    with pytest.raises(PipelineError, match="clips.json is damaged"):
        load_spectrograms(spectrograms_dir)


def test_load_spectrograms_refuses_an_array_that_needs_pickle(spectrograms_dir):
    np.save(spectrograms_dir / "spectrograms.npy", np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(PipelineError, match="spectrograms.npy is damaged"):
        load_spectrograms(spectrograms_dir)


def write_model_folder(folder, format_version, model_bytes):
    """A model folder as train.py lays it out, with the given training format and model file."""
    folder.mkdir()
    (folder / "model.keras").write_bytes(model_bytes)
    (folder / "params.json").write_text(json.dumps({"format_version": 1}))
    (folder / "training.json").write_text(json.dumps({"format_version": format_version, "label_names": []}))
    return folder


def test_load_model_folder_refuses_another_training_format_version(tmp_path):
    from soundkit.folders import TRAINING_FORMAT_VERSION, load_model_folder

    folder = write_model_folder(tmp_path / "model", TRAINING_FORMAT_VERSION + 1, b"not even looked at")
    with pytest.raises(PipelineError, match="incompatible version of train.py"):
        load_model_folder(folder)


def test_load_model_folder_refuses_a_damaged_model_file(tmp_path):
    from soundkit.folders import TRAINING_FORMAT_VERSION, load_model_folder

    garbage = np.random.default_rng(0).bytes(4096)
    folder = write_model_folder(tmp_path / "model", TRAINING_FORMAT_VERSION, b"PK\x03\x04" + garbage)
    with pytest.raises(PipelineError, match="model.keras .*damaged"):
        load_model_folder(folder)


# --- nothing unsafe to load, nothing written outside its folder ---------------

def test_no_project_code_uses_pickle_or_unsafe_loading():
    # Code, not prose: docstrings may say "no pickle".
    unsafe = re.compile(r"import (c?pickle|dill|joblib|shelve)|from (c?pickle|dill|joblib|shelve) |pickle\.\w|"
                        r"read_pickle|\.pkl\b|allow_pickle\s*=\s*True|safe_mode\s*=\s*False")
    sources = [path for path in PROJECT_DIR.rglob("*.py")
               if not {"tests", ".venv", "venv"} & set(path.relative_to(PROJECT_DIR).parts)]
    offending = [f"{path.relative_to(PROJECT_DIR)}:{number}: {line.strip()}"
                 for path in sources
                 for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if unsafe.search(line)]
    assert len(sources) >= 6
    assert offending == []


@pytest.mark.parametrize("name", ["../../evil", "a/b", "..", ".", "", "/etc/passwd", "C:\\\\Windows\\\\x",
                                  ".hidden", "kick drüm é", "a" * 300, "🥁" * 100, "nul\x00byte",
                                  os.fsdecode(b"bad\xffbyte")])
def test_safe_name_stays_inside_its_folder(tmp_path, name):
    safe = safe_name(name)
    assert safe and "/" not in safe and "\\" not in safe and "\x00" not in safe
    assert not safe.startswith(".")
    assert len(safe.encode("utf-8")) <= MAX_NAME_BYTES
    assert (tmp_path / safe).resolve().parent == tmp_path.resolve()


@pytest.mark.parametrize("name,expected", [("CON", "CON_"), ("con.wav", "con_.wav"), ("Nul", "Nul_"),
                                           ("COM1", "COM1_"), ("lpt9.x", "lpt9_.x"), ("console", "console"),
                                           ("COM10", "COM10")])
def test_safe_name_never_gives_a_name_windows_reserves(name, expected):
    assert safe_name(name) == expected


@pytest.mark.parametrize("name", ["\ud800", "a\ud800b", "kick\udcff"])
def test_safe_name_and_printable_take_lone_surrogates(name, tmp_path):
    """Valid JSON can carry a lone surrogate ("\\ud800"); it must become a name, not a crash."""
    from soundkit.fileio import printable

    safe = safe_name(name)
    assert safe and "\\" not in safe and (tmp_path / (safe + ".wav")).resolve().parent == tmp_path.resolve()
    (tmp_path / (safe + ".wav")).write_bytes(b"")
    assert printable(name).isprintable()


def test_safe_name_keeps_accents_and_turns_spaces_into_underscores():
    assert safe_name("Kick drüm 01") == "Kick_drüm_01"
    assert safe_name("../../evil") == "evil"
    assert safe_name("") == "clip"


def test_write_wavs_writes_every_name_inside_the_folder_without_overwriting(tmp_path):
    from generate import write_wavs

    names = ["../../evil", "a/b", "a_b", "..", "", "café crème", "Kick drüm"]
    wave = np.sin(np.linspace(0, 20 * np.pi, 100)).astype(np.float32)
    signals = [0.1 * (index + 1) * wave for index in range(len(names))]
    settings = SimpleNamespace(PEAK_DBFS=-1.0, NORMALIZE=False, BIT_DEPTH=24, TRIM_DB=-60.0, END_FADE=0.0)
    paths = write_wavs(signals, names, tmp_path / "out", SAMPLE_RATE, settings)
    written = sorted((tmp_path / "out").iterdir())
    assert len(set(paths)) == len(names) == len(written)
    assert all(path.resolve().parent == (tmp_path / "out").resolve() for path in written)
    assert not (tmp_path / "evil.wav").exists()
    levels = sorted(round(float(np.max(np.abs(sf.read(path)[0]))), 1) for path in paths)
    assert levels == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]  # "a/b" and "a_b" both kept


WAV_SETTINGS = SimpleNamespace(PEAK_DBFS=-1.0, NORMALIZE=False, BIT_DEPTH=32, TRIM_DB=-60.0, END_FADE=0.0)


def test_write_wavs_gives_names_that_differ_only_in_case_files_of_their_own(tmp_path):
    from soundgenerator import write_wavs

    wave = np.sin(np.linspace(0, 20 * np.pi, 100)).astype(np.float32)
    paths = write_wavs([0.1 * wave, 0.2 * wave, 0.3 * wave], ["Kick", "kick", "KICK"], tmp_path, SAMPLE_RATE,
                       WAV_SETTINGS)
    assert [path.name for path in paths] == ["Kick.wav", "kick_.wav", "KICK__.wav"]  # one file each on macOS too
    assert len({path.name.casefold() for path in paths}) == 3


def test_write_wavs_writes_each_file_whole_and_leaves_no_temporary_file(tmp_path):
    from soundgenerator import finish_for_sampler, write_wavs

    signals = [tone(frequency, seconds=0.2) for frequency in (220, 440)]
    paths = write_wavs(signals, ["low", "high"], tmp_path / "out", SAMPLE_RATE, WAV_SETTINGS)
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["high.wav", "low.wav"]
    for path, sound in zip(paths, signals):
        expected = finish_for_sampler(sound, SAMPLE_RATE, -1.0, False, -60.0, 0.0)
        read, rate = sf.read(path, dtype="float32")
        assert rate == SAMPLE_RATE and np.array_equal(read, expected)  # 32-bit float: bit-exact


def test_a_wav_whose_writing_fails_is_never_left_half_written_under_its_name(tmp_path, monkeypatch):
    from soundgenerator import write_wavs

    write_wavs([tone(220, seconds=0.2)], ["old"], tmp_path, SAMPLE_RATE, WAV_SETTINGS)
    before = folder_contents(tmp_path)

    def write_part_then_fail(file, data, *args, **kwargs):  # the disk fills up after the header
        Path(file).write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt ")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(sf, "write", write_part_then_fail)
    for name in ("new", "old"):
        with pytest.raises(OSError, match="No space left"):
            write_wavs([tone(440, seconds=0.2)], [name], tmp_path, SAMPLE_RATE, WAV_SETTINGS)
    assert folder_contents(tmp_path) == before  # old.wav as it was, no new.wav, no temporary file
