"""Fuzzing preprocessing with generated garbage, damaged files and extreme-but-valid audio.

One folder of FUZZ_CASES files, all made from a seeded generator, is preprocessed
once per LONG_FILES mode. Whatever the files hold: the run does not crash, every
file is reported exactly once (as clip(s) or as skipped with a reason), every
valid file becomes a clip and every written spectrogram is finite and in [0, 1].
"""

import io
from collections import Counter

import numpy as np
import pytest
import soundfile as sf

import preprocess
from soundkit.configurator import configure
from soundkit.folders import load_spectrograms
from preprocess import preprocess_folder

SEED = 20240611
FUZZ_CASES = 200
GARBAGE_EXTENSIONS = [".wav", ".flac", ".ogg", ".aiff", ".mp3", ".caf", ".au", ".w64"]
MAGIC_PREFIXES = {".wav": b"RIFF\x24\x08\x00\x00WAVEfmt ", ".flac": b"fLaC", ".ogg": b"OggS\x00\x02",
                  ".aiff": b"FORM\x00\x00\x10\x00AIFFCOMM", ".mp3": b"ID3\x03\x00\x00\x00\x00\x00\x00\xff\xfb"}
ENCODINGS = [("WAV", "PCM_16", ".wav"), ("WAV", "PCM_24", ".wav"), ("WAV", "FLOAT", ".wav"),
             ("WAVEX", "PCM_16", ".wav"), ("FLAC", "PCM_16", ".flac"), ("OGG", "VORBIS", ".ogg"),
             ("AIFF", "PCM_16", ".aiff")]


def encode(signal, sample_rate, fmt="WAV", subtype="PCM_16"):
    buffer = io.BytesIO()
    sf.write(buffer, signal, sample_rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def noise_burst(rng, seconds=0.3, sample_rate=22050, channels=1):
    frames = int(seconds * sample_rate)
    envelope = np.exp(-np.linspace(0, 8, frames))[:, None]
    return (0.5 * rng.uniform(-1, 1, (frames, channels)) * envelope).astype(np.float32).squeeze()


def garbage_cases(rng, count):
    """Random bytes of random length, under an audio extension."""
    for number in range(count):
        extension = GARBAGE_EXTENSIONS[number % len(GARBAGE_EXTENSIONS)]
        yield f"garbage_{number:03d}{extension}", rng.bytes(int(rng.integers(0, 4096))), "any"


def magic_prefix_cases(rng, count):
    """A real format's magic bytes followed by random bytes."""
    extensions = list(MAGIC_PREFIXES)
    for number in range(count):
        extension = extensions[number % len(extensions)]
        body = rng.bytes(int(rng.integers(0, 8192)))
        yield f"magic_{number:03d}{extension}", MAGIC_PREFIXES[extension] + body, "any"


def truncated_cases(rng, count):
    """Valid files of every encoding cut at a random byte, often inside the header."""
    for number in range(count):
        fmt, subtype, extension = ENCODINGS[number % len(ENCODINGS)]
        data = encode(noise_burst(rng), 22050, fmt, subtype)
        cut = int(rng.integers(0, 80)) if number % 2 else int(rng.integers(0, len(data)))
        yield f"truncated_{number:03d}_{fmt}{extension}", data[:cut], "any"


def corrupted_cases(rng, count):
    """Valid files with random bytes overwritten in the header or the data."""
    for number in range(count):
        fmt, subtype, extension = ENCODINGS[number % len(ENCODINGS)]
        data = bytearray(encode(noise_burst(rng), 22050, fmt, subtype))
        for position in rng.integers(0, min(len(data), 128 if number % 2 else len(data)), size=8):
            data[position] = int(rng.integers(0, 256))
        yield f"corrupted_{number:03d}_{fmt}{extension}", bytes(data), "any"


def extreme_valid_cases(rng):
    """Unusual but valid audio: each must become a clip (or be skipped for the stated reason)."""
    rate = 22050
    t = np.arange(int(0.5 * rate)) / rate
    square = np.sign(np.sin(2 * np.pi * 100 * t)).astype(np.float32)
    click = np.zeros(rate, dtype=np.float32)
    click[rate // 2] = 1.0
    yield "square_full_scale.wav", encode(square, rate), "clip"
    yield "square_clipping_float.wav", encode(4.0 * square, rate, subtype="FLOAT"), "clip"
    yield "dc_full_scale.wav", encode(np.ones(rate, dtype=np.float32) * 0.999, rate), "clip"
    yield "dc_negative.wav", encode(-np.ones(rate, dtype=np.float32) * 0.5, rate, subtype="FLOAT"), "clip"
    yield "single_click.wav", encode(click, rate), "clip"
    yield "one_sample.wav", encode(np.array([0.7], dtype=np.float32), rate), "clip"
    yield "one_sample_8k.flac", encode(np.array([-0.7], dtype=np.float32), 8000, "FLAC"), "clip"
    yield "two_samples_192k.wav", encode(np.array([0.5, 0.5], dtype=np.float32), 192000), "clip"
    yield "shorter_than_a_frame.wav", encode(noise_burst(rng, seconds=0.01), rate), "clip"
    yield "nyquist.wav", encode(np.tile([0.9, -0.9], rate // 2).astype(np.float32), rate), "clip"
    yield "loud_float.wav", encode(1e6 * noise_burst(rng), rate, subtype="FLOAT"), "clip"
    yield "huge_float.wav", encode(1e30 * noise_burst(rng), rate, subtype="FLOAT"), "too loud to analyse"
    yield "quiet_float.wav", encode(0.02 * noise_burst(rng), rate, subtype="FLOAT"), "clip"  # -40 dBFS
    yield "below_silence_db.wav", encode(1e-4 * noise_burst(rng), rate, subtype="FLOAT"), "silent"
    yield "long_20_seconds.flac", encode(noise_burst(rng, seconds=20.0), 16000, "FLAC"), "clip"
    for channels in range(1, 9):
        yield f"channels_{channels}.wav", encode(noise_burst(rng, channels=channels), rate), "clip"
    for file_rate in (8000, 11025, 16000, 32000, 44100, 48000, 88200, 96000, 176400, 192000):
        yield f"rate_{file_rate}.wav", encode(noise_burst(rng, sample_rate=file_rate), file_rate), "clip"
    nan_signal = noise_burst(rng)
    nan_signal[rng.integers(0, len(nan_signal), size=5)] = np.nan
    yield "nan_samples.wav", encode(nan_signal, rate, subtype="FLOAT"), "contains NaN or infinite samples"
    inf_signal = noise_burst(rng)
    inf_signal[100] = np.inf
    yield "inf_sample.wav", encode(inf_signal, rate, subtype="DOUBLE"), "contains NaN or infinite samples"
    yield "denormals.wav", encode(np.full(rate, 1e-42, dtype=np.float32), rate, subtype="FLOAT"), "silent"
    yield "digital_silence.wav", encode(np.zeros(rate, dtype=np.float32), rate), "silent"
    yield "zero_frames.wav", encode(np.zeros(0, dtype=np.float32), rate), "empty"
    yield "zero_bytes.wav", b"", "empty file"


def all_cases():
    """Every case as (file name, bytes, expected: "clip", "any" or the start of the skip reason)."""
    rng = np.random.default_rng(SEED)
    cases = list(extreme_valid_cases(rng))
    cases += garbage_cases(rng, 40)
    cases += magic_prefix_cases(rng, 40)
    cases += truncated_cases(rng, 40)
    cases += corrupted_cases(rng, FUZZ_CASES - len(cases))  # the rest, so that the total is FUZZ_CASES
    return cases


@pytest.fixture(scope="module")
def fuzz_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz") / "audio"
    folder.mkdir()
    cases = all_cases()
    for name, data, _ in cases:
        (folder / name).write_bytes(data)
    return folder, cases


def test_the_fuzz_set_has_the_documented_number_of_cases(fuzz_folder):
    _, cases = fuzz_folder
    assert len(cases) == len({name for name, _, _ in cases}) == FUZZ_CASES


@pytest.mark.parametrize("long_files", ["cut", "split"])
def test_every_fuzz_case_is_reported_exactly_once_and_valid_ones_become_clips(fuzz_folder, tmp_path, long_files):
    folder, cases = fuzz_folder
    config = configure(vars(preprocess), [f"--audio_dir={folder}", f"--spectrograms_dir={tmp_path}",
                                          f"--long_files={long_files}", "--max_clips_per_file=4"])
    report = preprocess_folder(config)[1]
    spectrograms, clips, _ = load_spectrograms(tmp_path)

    clip_files = {clip["file"] for clip in clips}
    skipped = {item["file"].rsplit("/", 1)[-1]: item["reason"] for item in report["files_skipped"]}
    reported = Counter(list(clip_files) + [item["file"].rsplit("/", 1)[-1] for item in report["files_skipped"]])
    assert sorted(reported) == sorted(name for name, _, _ in cases)
    assert set(reported.values()) == {1}
    for name, _, expected in cases:
        if expected == "clip":
            assert name in clip_files, f"{name}: {skipped.get(name)}"
        elif expected != "any":
            assert skipped[name].startswith(expected), f"{name}: {skipped[name]}"
    assert len({clip["id"] for clip in clips}) == len(clips) == len(spectrograms)
    assert np.all(np.isfinite(spectrograms))
    assert spectrograms.min() >= 0.0 and spectrograms.max() <= 1.0
    assert all(np.isfinite(clip["min"]) and np.isfinite(clip["max"]) for clip in clips)
