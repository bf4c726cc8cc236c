"""Preprocessing: loading any format, spectrogram shape and dB range, normalisation, saving."""

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from soundkit.saver import Saver
from soundkit import spectrogram as spectrogram_module
from soundkit import workers as workers_module
import preprocess
from soundkit.configurator import configure
from soundkit.errors import PipelineError
from conftest import tone
from soundkit.folders import load_spectrograms
from preprocess import preprocess_folder
from soundkit.spectrogram import Loader, LogSpectrogramExtractor, MinMaxNormaliser, Padder


def run_preprocess(audio_dir, spectrograms_dir, *extra):
    config = configure(vars(preprocess), [f"--audio_dir={audio_dir}", f"--spectrograms_dir={spectrograms_dir}",
                                          "--num_workers=1", *extra])
    preprocess.validate(config)
    return preprocess_folder(config)[1]


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "FLOAT"])
def test_loader_reads_every_wav_bit_depth_at_full_scale(tmp_path, subtype):
    path = tmp_path / f"tone_{subtype}.wav"
    original = tone(440, amplitude=0.5)
    sf.write(path, original, 22050, subtype=subtype)
    signal = Loader(22050).load(path)
    assert signal.dtype == np.float32
    np.testing.assert_allclose(signal, original, atol=1e-4 if subtype == "PCM_16" else 1e-6)


def test_loader_mixes_stereo_to_mono(tmp_path):
    left, right = tone(440, amplitude=0.4), np.zeros(11025, dtype=np.float32)
    sf.write(tmp_path / "stereo.wav", np.stack([left, right], axis=1), 22050)
    signal = Loader(22050).load(tmp_path / "stereo.wav")
    assert signal.ndim == 1
    np.testing.assert_allclose(signal, left / 2, atol=1e-4)


@pytest.mark.parametrize("extension,fmt", [(".flac", "FLAC"), (".ogg", "OGG"), (".aiff", "AIFF")])
def test_loader_reads_other_formats_and_resamples(tmp_path, extension, fmt):
    path = tmp_path / ("tone" + extension)
    sf.write(path, tone(440, seconds=0.5, sample_rate=44100), 44100, format=fmt)
    signal = Loader(22050).load(path)
    assert len(signal) == pytest.approx(11025, abs=2)
    spectrum = np.abs(np.fft.rfft(signal))
    assert np.fft.rfftfreq(len(signal), 1 / 22050)[np.argmax(spectrum)] == pytest.approx(440, abs=5)


def test_loader_refuses_empty_and_garbage_files_with_a_reason(tmp_path):
    sf.write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), 22050)
    (tmp_path / "garbage.wav").write_bytes(b"RIFF\x00\x00this is not audio")
    with pytest.raises(ValueError, match="empty"):
        Loader(22050).load(tmp_path / "empty.wav")
    with pytest.raises(ValueError, match="unreadable audio"):
        Loader(22050).load(tmp_path / "garbage.wav")


def test_padder_pads_short_and_cuts_long_signals():
    padder = Padder(100)
    padded = padder.fix_length(np.ones(60, dtype=np.float32))
    assert padded.shape == (100,) and padded[:60].sum() == 60 and padded[60:].sum() == 0
    assert padder.fix_length(np.arange(250.0))[-1] == 99
    pieces = padder.split(np.arange(250.0), max_clips=10)
    assert [piece[0] for piece in pieces] == [0, 100, 200] and pieces[-1][50:].sum() == 0


def test_log_spectrogram_has_half_frame_rows_and_the_expected_frames_and_peak():
    extractor = LogSpectrogramExtractor(frame_size=512, hop_length=128, top_db=80.0)
    t = np.arange(16317) / 22050
    sine = np.sin(2 * np.pi * 1000.0 * t).astype(np.float32)  # full scale, 1 kHz
    spectrogram_db = extractor.extract(sine)
    assert spectrogram_db.shape == (256, 1 + 16317 // 128)
    peak_row = np.argmax(spectrogram_db[:, 64])
    assert peak_row == round(1000 / (22050 / 512))
    # A full-scale sine through a Hann window of 512 samples peaks at 512 / 4 = 128 (42.1 dB).
    assert spectrogram_db.max() == pytest.approx(20 * np.log10(128), abs=1.0)
    assert spectrogram_db.max() - spectrogram_db.min() == pytest.approx(80.0, abs=1e-3)



def test_a_batch_of_clips_gives_exactly_the_spectrograms_of_one_call_per_clip():
    import librosa

    extractor = LogSpectrogramExtractor(frame_size=512, hop_length=256, top_db=80.0)
    t = np.arange(16317) / 22050
    clips = np.stack([np.sin(2 * np.pi * 440.0 * t), 1e-3 * np.sin(2 * np.pi * 3000.0 * t),
                      np.random.default_rng(0).standard_normal(16317) * np.exp(-20 * t)]).astype(np.float32)
    batch = extractor.extract(clips)
    assert batch.shape == (3, 256, 64)
    for clip, row in zip(clips, batch):
        assert np.array_equal(row, extractor.extract(clip))  # bit for bit
        # librosa's own dB conversion, one clip at a time: each clip keeps TOP_DB below its own peak
        stft = librosa.stft(clip, n_fft=512, hop_length=256)[:-1]
        expected = librosa.amplitude_to_db(np.abs(stft), ref=1.0, amin=spectrogram_module.AMIN, top_db=80.0)
        assert np.array_equal(row, expected)
        assert row.max() - row.min() == pytest.approx(80.0, abs=1e-3)
    assert batch[0].max() - batch[1].max() == pytest.approx(60.0, abs=0.5)  # -60 dB quieter tone

def test_min_max_normaliser_round_trip():
    normaliser = MinMaxNormaliser(0.0, 1.0)
    spectrogram_db = np.random.default_rng(0).uniform(-60, 20, size=(8, 5)).astype(np.float32)
    normalised, low, high = normaliser.normalise(spectrogram_db)
    assert normalised.min() == 0.0 and normalised.max() == 1.0
    np.testing.assert_allclose(normaliser.denormalise(normalised, low, high), spectrogram_db, atol=1e-4)


def test_normaliser_refuses_a_constant_spectrogram():
    with pytest.raises(ValueError, match="constant spectrogram"):
        MinMaxNormaliser().normalise(np.full((4, 4), -100.0))


def test_pipeline_writes_spectrograms_min_max_and_parameters(audio_folder, tmp_path):
    report = run_preprocess(audio_folder, tmp_path / "spectrograms")
    spectrograms, clips, params = load_spectrograms(tmp_path / "spectrograms")
    assert report["clips_written"] == 6
    # Chosen from the folder: 22050 Hz files; 0.5 s tones that ring to their end, plus the 5 ms pre-roll.
    assert (params["sample_rate"], params["duration"], params["frame_size"]) == (22050, 0.51, 512)
    assert spectrograms.shape == (6, params["n_bins"], params["n_frames"]) == (6, 256, 1 + 11246 // 256)
    assert spectrograms.min() >= 0.0 and spectrograms.max() <= 1.0
    assert {clip["label"] for clip in clips} == {"low", "high"}
    assert all(clip["max"] - clip["min"] == pytest.approx(preprocess.TOP_DB, abs=1e-2) for clip in clips)
    assert preprocess.TOP_DB == params["top_db"] == 80.0  # each clip keeps 80 dB below its own peak
    assert params["hop_length"] == 256 and params["sample_rate"] == 22050
    # Only safe formats: JSON that parses, an .npy that loads without pickle.
    json.loads((tmp_path / "spectrograms" / "params.json").read_text())
    np.load(tmp_path / "spectrograms" / "spectrograms.npy", allow_pickle=False)


def test_low_tones_have_their_energy_in_low_rows(audio_folder, tmp_path):
    run_preprocess(audio_folder, tmp_path / "spectrograms")
    spectrograms, clips, _ = load_spectrograms(tmp_path / "spectrograms")
    for spectrogram, clip in zip(spectrograms, clips):
        frequency = float(clip["file"].split("_")[1].split(".")[0])
        assert np.argmax(spectrogram[:, 5]) == pytest.approx(frequency / (22050 / 512), abs=1)


def test_parallel_and_serial_runs_write_identical_arrays(audio_folder, tmp_path):
    run_preprocess(audio_folder, tmp_path / "serial")
    config = configure(vars(preprocess), [f"--audio_dir={audio_folder}", f"--spectrograms_dir={tmp_path / 'parallel'}",
                                          "--num_workers=2"])
    preprocess_folder(config)[1]
    serial = np.load(tmp_path / "serial" / "spectrograms.npy")
    parallel = np.load(tmp_path / "parallel" / "spectrograms.npy")
    np.testing.assert_array_equal(serial, parallel)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork, the start method to compare with, is Linux's")
def test_spawned_and_forked_workers_and_one_process_write_identical_files(audio_folder, tmp_path, monkeypatch):
    written = {}
    for start_method, workers in [("spawn", 2), ("fork", 2), ("fork", 1)]:
        monkeypatch.setattr(preprocess, "worker_start_method", lambda method=start_method: method)
        monkeypatch.setattr(workers_module, "worker_start_method", lambda method=start_method: method)
        out = tmp_path / f"{start_method}_{workers}"
        run_preprocess(audio_folder, out, f"--num_workers={workers}")
        written[start_method, workers] = [(out / name).read_bytes() for name in ("spectrograms.npy", "clips.json")]
    assert written["spawn", 2] == written["fork", 2] == written["fork", 1]


def test_workers_start_by_fork_on_linux_only():
    assert workers_module.worker_start_method() == ("fork" if sys.platform.startswith("linux") else "spawn")


@pytest.mark.parametrize("workers", [1, 2])
def test_slots_are_written_and_read_the_same_without_pwrite_and_pread(audio_folder, tmp_path, monkeypatch, workers):
    """As on Windows, which has neither; forked workers inherit the missing functions."""
    monkeypatch.setattr(preprocess, "FLUSH_EVERY", 2)
    run_preprocess(audio_folder, tmp_path / "positional", f"--num_workers={workers}", "--batch_files=1")
    monkeypatch.delattr(os, "pwrite")
    monkeypatch.delattr(os, "pread")
    run_preprocess(audio_folder, tmp_path / "seek", f"--num_workers={workers}", "--batch_files=1")
    for name in ("spectrograms.npy", "clips.json"):
        assert (tmp_path / "seek" / name).read_bytes() == (tmp_path / "positional" / name).read_bytes(), name


def test_flush_falls_back_to_fsync_without_fdatasync(tmp_path, monkeypatch):
    """As on macOS, which has no fdatasync."""
    saver = Saver(tmp_path / "spectrograms")
    saver.begin(n_bins=4, n_frames=3, capacity=2)
    synced = []
    monkeypatch.delattr(os, "fdatasync", raising=False)
    monkeypatch.setattr(os, "fsync", synced.append)
    saver.flush()
    assert synced == [saver.scratch.fileno()]
    monkeypatch.undo()
    saver.close()


def test_bad_files_are_skipped_and_reported_by_name(audio_folder, tmp_path):
    sf.write(audio_folder / "low" / "silent.wav", np.zeros(4000, dtype=np.float32), 22050)
    sf.write(audio_folder / "low" / "empty.wav", np.zeros(0, dtype=np.float32), 22050)
    (audio_folder / "low" / "broken.wav").write_bytes(b"RIFF$\x00\x00\x00WAVEfmt ")
    (audio_folder / "low" / "notes.txt").write_text("not audio")
    (audio_folder / "low" / ".DS_Store").write_bytes(b"\x00\x01")
    report = run_preprocess(audio_folder, tmp_path / "spectrograms")
    reasons = {item["file"].rsplit("/", 1)[-1]: item["reason"] for item in report["files_skipped"]}
    assert report["clips_written"] == 6
    assert reasons["silent.wav"].startswith("silent")
    assert reasons["empty.wav"].startswith("empty")
    assert reasons["broken.wav"].startswith("unreadable audio")
    assert "not an audio file" in reasons["notes.txt"]
    assert reasons[".DS_Store"] == "hidden file"
    spectrograms, _, _ = load_spectrograms(tmp_path / "spectrograms")
    assert np.all(np.isfinite(spectrograms))


def test_rerun_reuses_unchanged_files_and_detects_changed_parameters(audio_folder, tmp_path):
    first = run_preprocess(audio_folder, tmp_path / "spectrograms")
    again = run_preprocess(audio_folder, tmp_path / "spectrograms")
    assert (first["files_processed"], again["files_processed"], again["files_reused"]) == (6, 0, 6)
    sf.write(audio_folder / "low" / "low_110.wav", tone(170), 22050)  # changed content
    changed_file = run_preprocess(audio_folder, tmp_path / "spectrograms")
    assert (changed_file["files_processed"], changed_file["files_reused"]) == (1, 5)
    changed_hop = run_preprocess(audio_folder, tmp_path / "spectrograms", "--hop_length=128")
    assert changed_hop["parameters_changed"] == ["hop_length", "n_frames"]
    assert changed_hop["files_processed"] == 6
    _, _, params = load_spectrograms(tmp_path / "spectrograms")
    assert params["n_frames"] == 1 + 11246 // 128


def test_a_run_that_finds_nothing_usable_refuses_and_keeps_the_old_spectrograms(audio_folder, tmp_path):
    run_preprocess(audio_folder, tmp_path / "spectrograms")
    before = (tmp_path / "spectrograms" / "spectrograms.npy").read_bytes()
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.wav").write_bytes(b"garbage")
    with pytest.raises(PipelineError, match=r"(?s)no usable audio found.*a\.wav: unreadable audio"):
        run_preprocess(junk, tmp_path / "spectrograms")
    assert (tmp_path / "spectrograms" / "spectrograms.npy").read_bytes() == before


def test_missing_audio_dir_is_refused_clearly(tmp_path):
    with pytest.raises(PipelineError, match="does not exist"):
        run_preprocess(tmp_path / "nowhere", tmp_path / "spectrograms")


def test_filename_labels_follow_the_fsdd_rule(tmp_path):
    folder = tmp_path / "digits"
    folder.mkdir()
    for name in ("7_jackson_32.wav", "3_theo_0.wav"):
        sf.write(folder / name, tone(300), 8000)
    run_preprocess(folder, tmp_path / "spectrograms")
    _, clips, _ = load_spectrograms(tmp_path / "spectrograms")
    assert [clip["label"] for clip in clips] == ["3", "7"]


def test_the_default_audio_folder_is_created_and_filled_with_demo_drums(tmp_path, monkeypatch):
    audio = tmp_path / "audio"  # absent, as in a fresh clone
    monkeypatch.setattr(preprocess, "_is_default_audio_dir", lambda folder: Path(folder) == audio)
    report = run_preprocess(audio, tmp_path / "spectrograms", "--demo_clips_per_class=2")
    assert report["clips_written"] == 10
    _, clips, _ = load_spectrograms(tmp_path / "spectrograms")
    assert sorted({clip["label"] for clip in clips}) == ["clap", "hihat", "kick", "snare", "tom"]


@pytest.mark.parametrize("workers", [1, 2])
def test_spectrograms_are_flushed_to_disk_while_files_are_processed(audio_folder, tmp_path, monkeypatch, workers):
    flushed_with = []  # how many slots held a spectrogram at each flush
    real_flush = Saver.flush

    def counting_flush(saver):
        data = np.frombuffer(Path(saver.scratch_path).read_bytes()[saver.offset:], dtype="<f4")
        rows = data[:len(data) // (saver.row_bytes // 4) * (saver.row_bytes // 4)].reshape(-1, saver.row_bytes // 4)
        flushed_with.append(int(np.count_nonzero(rows.max(axis=1) > 0)))
        real_flush(saver)

    monkeypatch.setattr(preprocess, "FLUSH_EVERY", 2)
    monkeypatch.setattr(Saver, "flush", counting_flush)
    # One file per batch, so that the spectrograms written at each flush can be counted.
    run_preprocess(audio_folder, tmp_path / "flushed", f"--num_workers={workers}", "--batch_files=1")
    # 6 files: a flush after every second outcome, each after that many spectrograms were written
    # (worker processes may have written more by then).
    assert len(flushed_with) == 3
    assert all(written >= need for written, need in zip(flushed_with, [2, 4, 6]))
    if workers == 1:
        assert flushed_with == [2, 4, 6]
    monkeypatch.setattr(preprocess, "FLUSH_EVERY", 10 ** 9)
    run_preprocess(audio_folder, tmp_path / "plain", f"--num_workers={workers}")  # batched, no flushes
    assert (tmp_path / "flushed" / "spectrograms.npy").read_bytes() == (tmp_path / "plain" / "spectrograms.npy").read_bytes()


def test_work_is_split_into_chunks_that_shrink_towards_the_end():
    items = list(range(1000))
    chunks = [items[chunk] for chunk in workers_module.chunks_of(len(items), workers=2, largest=32)]
    assert [item for chunk in chunks for item in chunk] == items  # every file once, in order
    sizes = [len(chunk) for chunk in chunks]
    assert max(sizes) == 32 and sizes[0] == 32
    assert sizes == sorted(sizes, reverse=True)
    assert sizes[-4:] == [1, 1, 1, 1]  # the last tasks are single files, so both workers end together
    assert workers_module.chunks_of(0, workers=2, largest=32) == []
    assert [len(range(5)[chunk]) for chunk in workers_module.chunks_of(5, workers=4, largest=32)] == [1, 1, 1, 1, 1]
    # One process: full chunks to the end; BATCH_FILES=1: one file at a time.
    assert [len(range(100)[chunk]) for chunk in workers_module.chunks_of(100, workers=1, largest=32)] == [32, 32, 32, 4]
    assert workers_module.chunks_of(3, workers=1, largest=1) == [slice(0, 1), slice(1, 2), slice(2, 3)]


def test_clips_index_is_json_with_one_clip_per_line(audio_folder, tmp_path):
    run_preprocess(audio_folder, tmp_path / "out")
    text = (tmp_path / "out" / "clips.json").read_text(encoding="utf-8")
    clips = json.loads(text)
    lines = text.splitlines()
    assert lines[0] == "[" and lines[-1] == "]"
    assert [json.loads(line.strip().rstrip(",")) for line in lines[1:-1]] == clips
    assert len(clips) == 6 and {"id", "file", "key", "label", "min", "max"} <= set(clips[0])


def ringing_hit(seconds_to_60_db, sample_rate, total_seconds, delay=0.0, frequency=200.0):
    """A decaying sine that falls 60 dB in ``seconds_to_60_db``, after ``delay`` s of silence."""
    t = np.arange(int(total_seconds * sample_rate)) / sample_rate
    hit = 0.5 * np.sin(2 * np.pi * frequency * t) * 10 ** (-3 * t / seconds_to_60_db)
    return np.concatenate([np.zeros(int(delay * sample_rate)), hit]).astype(np.float32)


def test_settings_left_at_zero_follow_the_folder_and_are_printed(tmp_path, capsys):
    folder = tmp_path / "audio"
    (folder / "tom").mkdir(parents=True)
    for number, ring in enumerate([0.4, 0.6, 0.8, 1.0, 1.2]):  # four at 44.1 kHz, one at 22.05 kHz
        rate = 22050 if number == 0 else 44100
        sf.write(folder / "tom" / f"tom_{number}.flac", ringing_hit(ring, rate, 3.0), rate, subtype="PCM_24")
    run_preprocess(folder, tmp_path / "spectrograms")
    _, _, params = load_spectrograms(tmp_path / "spectrograms")
    assert params["sample_rate"] == 44100                       # the most common rate: the full band kept
    assert (params["frame_size"], params["hop_length"]) == (1024, 512)  # 23.2 and 11.6 ms at 44.1 kHz
    assert params["duration"] == pytest.approx(np.quantile([0.4, 0.6, 0.8, 1.0, 1.2], 0.8) + 0.005, abs=0.02)
    assert "chosen from the folder" in capsys.readouterr().out
    stats = json.loads((tmp_path / "spectrograms" / "folder.json").read_text())
    assert sorted(rate for rate, _ in stats["files"].values()) == [22050, 44100, 44100, 44100, 44100]


def test_the_chosen_duration_is_capped_and_settings_set_by_hand_win(tmp_path):
    folder = tmp_path / "audio"
    folder.mkdir()
    for number in range(3):
        sf.write(folder / f"crash_{number}.wav", ringing_hit(8.0, 16000, 9.0), 16000)
    run_preprocess(folder, tmp_path / "capped", "--max_duration=1.5")
    _, _, params = load_spectrograms(tmp_path / "capped")
    assert params["duration"] == 1.5 and params["sample_rate"] == 16000
    run_preprocess(folder, tmp_path / "by_hand", "--sample_rate=8000", "--duration=0.5", "--frame_size=256",
                   "--hop_length=64")
    _, _, params = load_spectrograms(tmp_path / "by_hand")
    assert [params[name] for name in ("sample_rate", "duration", "frame_size", "hop_length")] == [8000, 0.5, 256, 64]


def test_a_sound_longer_than_the_clip_is_faded_out_not_cut_with_a_click():
    signal = np.full(1000, 0.5, dtype=np.float32)
    faded = Padder(400, fade_samples=100).fix_length(signal)
    assert len(faded) == 400
    np.testing.assert_array_equal(faded[:300], 0.5)
    assert faded[-1] == pytest.approx(0.0, abs=1e-6)
    assert np.all(np.diff(faded[300:]) <= 0)          # a smooth, monotonic fade
    np.testing.assert_array_equal(Padder(400, fade_samples=100).fix_length(signal[:300])[300:], 0.0)  # padded, not faded


def test_every_clip_starts_at_its_attack():
    rate = 8000
    late = ringing_hit(0.3, rate, 0.5, delay=0.25)
    params = {"sample_rate": rate, "num_samples": 2400, "align_onsets": True, "onset_db": -40.0, "pre_roll": 0.005,
              "fade_out": 0.05, "long_files": "cut", "max_clips_per_file": 1}
    clip = spectrogram_module.clips_of_signal(late, params)[0]
    attack = int(np.argmax(np.abs(clip) >= 0.01 * np.abs(clip).max()))
    assert attack == pytest.approx(0.005 * rate, abs=2)  # the pre-roll, not 0.25 s of silence
    unaligned = spectrogram_module.clips_of_signal(late, {**params, "align_onsets": False})[0]
    assert np.max(np.abs(unaligned[:int(0.24 * rate)])) == 0.0


def test_the_class_with_the_longest_sounds_keeps_its_tails(tmp_path, capsys):
    """Each class's quantile, then the longest: 8 short hats must not cut 2 long-ringing toms."""
    folder = tmp_path / "audio"
    for name, rings in {"hihat": [0.2] * 8, "tom": [1.0, 1.2]}.items():
        (folder / name).mkdir(parents=True)
        for number, ring in enumerate(rings):
            sf.write(folder / name / f"{name}_{number}.wav", ringing_hit(ring, 16000, 2.0), 16000)
    run_preprocess(folder, tmp_path / "spectrograms")
    _, _, params = load_spectrograms(tmp_path / "spectrograms")
    everything = np.quantile([0.2] * 8 + [1.0, 1.2], 0.8)     # one quantile of all ten: 1.0 s or less
    toms = np.quantile([1.0, 1.2], 0.8)                        # the toms' own: 1.16 s
    assert params["duration"] == pytest.approx(toms + 0.005 + 0.005, abs=0.02) and params["duration"] > everything
    printed = capsys.readouterr().out
    assert "hihat 0.20 s" in printed and "tom 1.16 s" in printed and "keeps tom's tails" in printed
