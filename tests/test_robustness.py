"""Robustness: messy real-world audio folders.

Every input file ends up either as a clip or in report["files_skipped"] with its
reason; nothing crashes the run.  Crashes mid-run, damaged or untrusted files:
test_folder_integrity.py.
"""

import json
import os
import subprocess
import sys
import time
import tracemalloc
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from soundkit import spectrogram
import preprocess
from conftest import run_preprocess, skip_reasons, tone
from soundkit.folders import load_spectrograms
from soundkit.spectrogram import Loader

PROJECT_DIR = Path(__file__).resolve().parents[1]
SAMPLE_RATE = 22050
NUM_SAMPLES = 16317                     # DURATION 0.74 s at 22050 Hz



def dominant_frequency(signal, sample_rate=SAMPLE_RATE):
    spectrum = np.abs(np.fft.rfft(signal))
    return np.fft.rfftfreq(len(signal), 1 / sample_rate)[np.argmax(spectrum)]


def peak_row(spectrogram, frame=5):
    """The frequency row with the most energy, for a 512-sample frame at 22050 Hz."""
    return int(np.argmax(spectrogram[:, frame]))


# --- formats, bit depths, channels, sample rates -----------------------------

@pytest.mark.parametrize("fmt,subtype,extension", [
    ("WAV", "PCM_U8", ".wav"), ("WAV", "PCM_16", ".wav"), ("WAV", "PCM_24", ".wav"), ("WAV", "PCM_32", ".wav"),
    ("WAV", "FLOAT", ".wav"), ("WAV", "DOUBLE", ".wav"), ("WAVEX", "PCM_24", ".wav"), ("FLAC", "PCM_24", ".flac"),
    ("OGG", "VORBIS", ".ogg"), ("AIFF", "PCM_16", ".aiff"), ("CAF", "PCM_16", ".caf"), ("W64", "FLOAT", ".w64"),
])
def test_every_format_and_bit_depth_loads_at_the_right_pitch(tmp_path, fmt, subtype, extension):
    path = tmp_path / ("tone" + extension)
    sf.write(path, tone(440, amplitude=0.5), SAMPLE_RATE, format=fmt, subtype=subtype)
    signal = Loader(SAMPLE_RATE).load(path)
    assert dominant_frequency(signal) == pytest.approx(440, abs=3)
    assert np.max(np.abs(signal)) == pytest.approx(0.5, abs=0.05)


def test_wave_extensible_files_that_the_wave_module_refuses_are_read(tmp_path):
    path = tmp_path / "extensible.wav"
    sf.write(path, tone(440), SAMPLE_RATE, format="WAVEX", subtype="FLOAT")
    with pytest.raises(wave.Error):
        wave.open(str(path)).close()
    assert len(Loader(SAMPLE_RATE).load(path)) == len(tone(440))


@pytest.mark.parametrize("channels", [1, 2, 3, 6, 8])
def test_any_channel_count_is_mixed_to_mono(tmp_path, channels):
    signal = tone(440, amplitude=0.8)
    multichannel = np.zeros((len(signal), channels), dtype=np.float32)
    multichannel[:, 0] = signal  # only the first channel sounds
    sf.write(tmp_path / "multi.wav", multichannel, SAMPLE_RATE)
    mono = Loader(SAMPLE_RATE).load(tmp_path / "multi.wav")
    assert mono.ndim == 1
    np.testing.assert_allclose(mono, signal / channels, atol=1e-4)


@pytest.mark.parametrize("file_rate", [8000, 11025, 44100, 48000, 96000, 192000])
def test_any_sample_rate_is_resampled_to_the_target_rate(tmp_path, file_rate):
    sf.write(tmp_path / "tone.wav", tone(440, seconds=0.5, sample_rate=file_rate), file_rate)
    signal = Loader(SAMPLE_RATE).load(tmp_path / "tone.wav")
    assert len(signal) == pytest.approx(SAMPLE_RATE // 2, abs=2)
    assert dominant_frequency(signal) == pytest.approx(440, abs=3)


# --- short, long, silent, broken ----------------------------------------------

def test_a_file_shorter_than_one_frame_is_padded_into_a_full_clip(tmp_path):
    folder = tmp_path / "audio"
    folder.mkdir()
    sf.write(folder / "blip.wav", tone(2000, seconds=0.005), SAMPLE_RATE)  # 110 samples < 512
    run_preprocess(folder, tmp_path / "spectrograms")
    spectrograms, clips, _ = load_spectrograms(tmp_path / "spectrograms")
    assert spectrograms.shape == (1, 256, 64)
    assert np.all(np.isfinite(spectrograms)) and spectrograms.min() == 0.0 and spectrograms.max() == 1.0
    energy_per_frame = spectrograms[0].mean(axis=0)
    assert energy_per_frame[:3].mean() > energy_per_frame[-10:].mean()  # the blip, then padded silence


def test_a_one_sample_click_becomes_a_clip(tmp_path):
    folder = tmp_path / "audio"
    folder.mkdir()
    sf.write(folder / "click.wav", np.array([0.9], dtype=np.float32), 8000)
    report = run_preprocess(folder, tmp_path / "spectrograms")
    spectrograms, _, _ = load_spectrograms(tmp_path / "spectrograms")
    assert report["clips_written"] == 1
    assert np.all(np.isfinite(spectrograms))


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_nan_or_infinite_samples_are_reported_not_written(tmp_path, bad_value):
    folder = tmp_path / "audio"
    folder.mkdir()
    broken = tone(440)
    broken[100] = bad_value
    sf.write(folder / "broken.wav", broken, SAMPLE_RATE, subtype="FLOAT")
    sf.write(folder / "good.wav", tone(440), SAMPLE_RATE)
    report = run_preprocess(folder, tmp_path / "spectrograms")
    spectrograms, clips, _ = load_spectrograms(tmp_path / "spectrograms")
    assert skip_reasons(report) == {"broken.wav": "contains NaN or infinite samples"}
    assert [clip["file"] for clip in clips] == ["good.wav"]
    assert np.all(np.isfinite(spectrograms))


def test_silent_and_denormal_files_are_reported_and_nothing_non_finite_is_written(tmp_path):
    folder = tmp_path / "audio"
    folder.mkdir()
    sf.write(folder / "zeros.wav", np.zeros(8000, dtype=np.float32), SAMPLE_RATE)
    sf.write(folder / "denormals.wav", np.full(8000, 1e-40, dtype=np.float32), SAMPLE_RATE, subtype="FLOAT")
    sf.write(folder / "good.wav", tone(440), SAMPLE_RATE)
    report = run_preprocess(folder, tmp_path / "spectrograms")
    spectrograms, clips, _ = load_spectrograms(tmp_path / "spectrograms")
    reasons = skip_reasons(report)
    assert reasons["zeros.wav"].startswith("silent") and reasons["denormals.wav"].startswith("silent")
    assert len(clips) == 1 and np.all(np.isfinite(spectrograms))
    assert all(np.isfinite([clip["min"], clip["max"]]).all() for clip in clips)


def test_zero_byte_and_truncated_files_are_reported_with_a_reason(tmp_path):
    folder = tmp_path / "audio"
    folder.mkdir()
    sf.write(folder / "good.wav", tone(440), SAMPLE_RATE)
    (folder / "zero.wav").write_bytes(b"")
    (folder / "cut_header.wav").write_bytes((folder / "good.wav").read_bytes()[:30])
    (folder / "cut_header.flac").write_bytes(b"fLaC\x00\x00\x00\x22")
    reasons = skip_reasons(run_preprocess(folder, tmp_path / "spectrograms"))
    assert reasons["zero.wav"] == "empty file (0 bytes)"
    assert reasons["cut_header.wav"].startswith("unreadable audio")
    assert reasons["cut_header.flac"].startswith("unreadable audio")


def test_non_audio_files_are_reported_with_their_extension(tmp_path):
    folder = tmp_path / "audio"
    folder.mkdir()
    sf.write(folder / "kick.wav", tone(60), SAMPLE_RATE)
    (folder / "kick.wav.asd").write_bytes(b"Ableton analysis")
    (folder / "README").write_text("samples by me")
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    reasons = skip_reasons(run_preprocess(folder, tmp_path / "spectrograms"))
    assert reasons == {"kick.wav.asd": "not an audio file (extension '.asd')",
                       "README": "not an audio file (extension 'none')",
                       ".DS_Store": "hidden file"}


def test_hidden_folders_are_reported_not_searched(tmp_path):
    folder = tmp_path / "audio"
    (folder / ".git").mkdir(parents=True)
    sf.write(folder / ".git" / "hidden.wav", tone(440), SAMPLE_RATE)
    sf.write(folder / "kick.wav", tone(60), SAMPLE_RATE)
    report = run_preprocess(folder, tmp_path / "spectrograms")
    assert report["clips_written"] == 1
    assert skip_reasons(report) == {".git": "hidden folder (not searched)"}


def write_long_file(path, seconds, sample_rate, first_frequency=300.0, later_frequency=3000.0):
    """A file whose first 0.74 s is one tone and the rest another, written in chunks."""
    t = np.arange(sample_rate) / sample_rate
    with sf.SoundFile(path, "w", sample_rate, 1, subtype="PCM_16") as sound:
        for second in range(seconds):
            frequency = np.where(second + t < 0.74, first_frequency, later_frequency)
            sound.write((0.5 * np.sin(2 * np.pi * frequency * t)).astype(np.float32))



def test_a_messy_folder_gives_the_same_files_whatever_the_batch_size_and_number_of_workers(tmp_path):
    """Files analysed together in one batch must not change each other's result or reason."""
    folder = tmp_path / "audio"
    folder.mkdir()
    for number, (frequency, rate) in enumerate([(220, 22050), (440, 8000), (880, 44100), (1760, 48000)]):
        sf.write(folder / f"{number}_good.wav", tone(frequency, sample_rate=rate), rate)
    sf.write(folder / "1_silent.wav", np.zeros(8000, dtype=np.float32), SAMPLE_RATE)
    (folder / "2_empty.wav").write_bytes(b"")
    (folder / "3_cut.wav").write_bytes((folder / "0_good.wav").read_bytes()[:30])
    sf.write(folder / "4_huge.wav", 1e30 * tone(440), SAMPLE_RATE, subtype="FLOAT")
    write_long_file(folder / "5_long.wav", seconds=3, sample_rate=SAMPLE_RATE)
    results = {}
    for batch_files, workers in [(1, 1), (32, 1), (3, 2), (32, 2)]:
        out = tmp_path / f"spectrograms_{batch_files}_{workers}"
        report = run_preprocess(folder, out, f"--batch_files={batch_files}", f"--num_workers={workers}",
                                "--long_files=split", "--max_clips_per_file=4")
        spectrograms, clips, _ = load_spectrograms(out)
        results[batch_files, workers] = (np.array(spectrograms), [clip["id"] for clip in clips], skip_reasons(report))
    spectrograms, ids, reasons = results[1, 1]
    assert ids == ["0_good.wav", "1_good.wav", "2_good.wav", "3_good.wav",
                   "5_long.wav#0", "5_long.wav#1", "5_long.wav#2", "5_long.wav#3"]
    assert set(reasons) == {"1_silent.wav", "2_empty.wav", "3_cut.wav", "4_huge.wav"}
    assert reasons["4_huge.wav"].startswith("too loud to analyse")
    for key, (other_spectrograms, other_ids, other_reasons) in results.items():
        assert other_ids == ids and other_reasons == reasons, key
        assert np.array_equal(other_spectrograms, spectrograms), key


def test_split_files_are_analysed_a_few_clips_per_call_so_memory_stays_bounded(tmp_path, monkeypatch):
    folder = tmp_path / "audio"
    folder.mkdir()
    for number in range(5):
        write_long_file(folder / f"loop_{number}.wav", seconds=3, sample_rate=SAMPLE_RATE)
    calls = []
    real_extract = preprocess.LogSpectrogramExtractor.extract
    monkeypatch.setattr(preprocess.LogSpectrogramExtractor, "extract",
                        lambda self, signals: calls.append(len(signals)) or real_extract(self, signals))
    run_preprocess(folder, tmp_path / "spectrograms", "--long_files=split", "--max_clips_per_file=4",
                   "--batch_files=6")
    # 4 clips per file: a call as soon as 6 or more are waiting, then the rest.
    assert calls == [8, 8, 4]
    _, clips, _ = load_spectrograms(tmp_path / "spectrograms")
    assert len(clips) == 20

def test_long_files_cut_keep_only_the_first_duration(tmp_path):
    folder = tmp_path / "audio"
    folder.mkdir()
    write_long_file(folder / "loop.wav", seconds=5, sample_rate=SAMPLE_RATE)
    run_preprocess(folder, tmp_path / "spectrograms", "--long_files=cut")
    spectrograms, clips, _ = load_spectrograms(tmp_path / "spectrograms")
    assert [clip["id"] for clip in clips] == ["loop.wav"]
    assert peak_row(spectrograms[0], frame=20) == pytest.approx(300 / (SAMPLE_RATE / 512), abs=1)


def test_long_files_split_make_at_most_max_clips_per_file(tmp_path):
    folder = tmp_path / "audio"
    folder.mkdir()
    write_long_file(folder / "loop.wav", seconds=10, sample_rate=SAMPLE_RATE)
    run_preprocess(folder, tmp_path / "spectrograms", "--long_files=split", "--max_clips_per_file=4")
    spectrograms, clips, _ = load_spectrograms(tmp_path / "spectrograms")
    assert [clip["id"] for clip in clips] == ["loop.wav#0", "loop.wav#1", "loop.wav#2", "loop.wav#3"]
    assert peak_row(spectrograms[0], frame=20) == pytest.approx(300 / (SAMPLE_RATE / 512), abs=1)
    assert peak_row(spectrograms[1], frame=20) == pytest.approx(3000 / (SAMPLE_RATE / 512), abs=1)


def test_a_two_minute_96_khz_file_costs_little_memory_and_is_read_only_as_far_as_needed(tmp_path, monkeypatch):
    path = tmp_path / "two_minutes.wav"
    write_long_file(path, seconds=120, sample_rate=96000)
    loader = Loader(SAMPLE_RATE, max_duration=0.74)
    sf.write(tmp_path / "short.wav", tone(440, sample_rate=96000), 96000)
    loader.load(tmp_path / "short.wav")  # imports librosa and the resampler before measuring
    frames_read = []
    real_read = sf.SoundFile.read

    def counting_read(self, frames=-1, *args, **kwargs):
        data = real_read(self, frames, *args, **kwargs)
        frames_read.append(len(data))
        return data

    monkeypatch.setattr(sf.SoundFile, "read", counting_read)
    tracemalloc.start()
    signal = loader.load(path)
    _, peak_bytes = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(signal) == pytest.approx((0.74 + spectrogram.RESAMPLE_MARGIN) * SAMPLE_RATE, abs=2)
    assert peak_bytes < 5_000_000  # the whole file as float32 would be 46 MB
    # Only the first 0.74 s (and the resampler's margin) of the 120 s are decoded: the time it takes
    # follows from that, whatever the machine.
    assert sum(frames_read) <= (0.74 + spectrogram.RESAMPLE_MARGIN) * 96000 + 1


def test_cut_reading_gives_the_same_start_as_reading_the_whole_file(tmp_path):
    sf.write(tmp_path / "tone.wav", tone(440, seconds=3.0, sample_rate=44100, decay=0.1), 44100)
    whole = Loader(SAMPLE_RATE).load(tmp_path / "tone.wav")[:NUM_SAMPLES]
    start = Loader(SAMPLE_RATE, max_duration=0.74).load(tmp_path / "tone.wav")[:NUM_SAMPLES]
    np.testing.assert_allclose(start, whole, atol=1e-5)


# --- names, duplicates, symlinks ---------------------------------------------

def test_names_with_spaces_and_accents_keep_their_name_in_clip_ids(tmp_path):
    folder = tmp_path / "audio"
    (folder / "café crème").mkdir(parents=True)
    sf.write(folder / "café crème" / "Kick drüm 01.wav", tone(60), SAMPLE_RATE)
    run_preprocess(folder, tmp_path / "spectrograms")
    _, clips, _ = load_spectrograms(tmp_path / "spectrograms")
    assert clips[0]["id"] == "café crème/Kick drüm 01.wav"
    assert clips[0]["label"] == "café crème"


def test_names_that_are_not_utf8_are_read_and_written_escaped(tmp_path):
    folder = tmp_path / "audio"
    folder.mkdir()
    name = os.fsdecode(b"snare\xff.wav")
    sf.write(os.fsencode(folder / name), tone(200), SAMPLE_RATE)
    run_preprocess(folder, tmp_path / "spectrograms")
    clips = json.loads((tmp_path / "spectrograms" / "clips.json").read_text(encoding="utf-8"))
    assert clips[0]["id"] == "snare\\xff.wav"


def test_the_same_name_in_two_folders_gives_two_clips_with_unique_ids(tmp_path):
    folder = tmp_path / "audio"
    for pack, frequency in (("pack_a", 100), ("pack_b", 2000)):
        (folder / pack).mkdir(parents=True)
        sf.write(folder / pack / "kick.wav", tone(frequency), SAMPLE_RATE)
    run_preprocess(folder, tmp_path / "spectrograms")
    spectrograms, clips, _ = load_spectrograms(tmp_path / "spectrograms")
    assert [clip["id"] for clip in clips] == ["pack_a/kick.wav", "pack_b/kick.wav"]
    assert peak_row(spectrograms[0]) < peak_row(spectrograms[1])


def test_symlinked_files_are_read(tmp_path):
    folder = tmp_path / "audio"
    folder.mkdir()
    sf.write(tmp_path / "elsewhere.wav", tone(440), SAMPLE_RATE)
    (folder / "linked.wav").symlink_to(tmp_path / "elsewhere.wav")
    run_preprocess(folder, tmp_path / "spectrograms")
    _, clips, _ = load_spectrograms(tmp_path / "spectrograms")
    assert [clip["id"] for clip in clips] == ["linked.wav"]


def test_symlinked_folders_outside_audio_dir_are_followed(tmp_path):
    folder = tmp_path / "audio"
    (tmp_path / "sample_pack").mkdir()
    folder.mkdir()
    sf.write(tmp_path / "sample_pack" / "snare.wav", tone(440), SAMPLE_RATE)
    (folder / "pack").symlink_to(tmp_path / "sample_pack")
    run_preprocess(folder, tmp_path / "spectrograms")
    _, clips, _ = load_spectrograms(tmp_path / "spectrograms")
    assert [clip["id"] for clip in clips] == ["pack/snare.wav"]


def test_symlink_loops_are_reported_and_do_not_hang(tmp_path):
    folder = tmp_path / "audio"
    (folder / "kicks").mkdir(parents=True)
    (tmp_path / "pack").mkdir()
    sf.write(folder / "kicks" / "kick.wav", tone(60), SAMPLE_RATE)
    sf.write(tmp_path / "pack" / "snare.wav", tone(440), SAMPLE_RATE)
    (folder / "kicks" / "again").symlink_to(folder / "kicks")       # into itself
    (folder / "kicks" / "up").symlink_to(tmp_path)                  # to a folder holding AUDIO_DIR
    (folder / "pack").symlink_to(tmp_path / "pack")                 # outside: followed...
    (tmp_path / "pack" / "self").symlink_to(tmp_path / "pack")      # ...but not round its own loop
    started = time.perf_counter()
    report = run_preprocess(folder, tmp_path / "spectrograms")
    _, clips, _ = load_spectrograms(tmp_path / "spectrograms")
    reasons = skip_reasons(report)
    assert time.perf_counter() - started < 10
    assert [clip["id"] for clip in clips] == ["kicks/kick.wav", "pack/snare.wav"]
    assert reasons == {"again": "symlink to a folder inside AUDIO_DIR (its files are found anyway)",
                       "up": "symlink loop: it leads to a folder that contains AUDIO_DIR",
                       "self": "folder already searched (symlink loop or second link to it)"}


def test_broken_symlinks_are_reported(tmp_path):
    folder = tmp_path / "audio"
    folder.mkdir()
    sf.write(folder / "kick.wav", tone(60), SAMPLE_RATE)
    (folder / "gone.wav").symlink_to(tmp_path / "deleted.wav")
    assert skip_reasons(run_preprocess(folder, tmp_path / "spectrograms")) == {"gone.wav": "broken symlink"}


def test_the_script_exits_with_status_1_and_advice_when_nothing_is_usable(tmp_path):
    folder = tmp_path / "junk"
    folder.mkdir()
    (folder / "notes.txt").write_text("no sounds here")
    (folder / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk")
    result = subprocess.run([sys.executable, "preprocess.py", f"--audio_dir={folder}",
                             f"--spectrograms_dir={tmp_path / 'spectrograms'}"],
                            cwd=PROJECT_DIR, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "error: no usable audio found" in result.stderr
    assert "Put WAV/FLAC/OGG/AIFF files there" in result.stderr
    assert "broken.wav: unreadable audio" in result.stderr and "notes.txt: not an audio file" in result.stderr
