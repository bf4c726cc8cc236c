"""Tests for the demo drum one-shot synthesizer in data/synthesize_drums.py."""

import numpy as np
import pytest
import soundfile as sf

from data.synthesize_drums import DRUM_CLASSES, synthesize_drum, write_demo_drums

SAMPLE_RATE = 22050
DURATION = 0.74
N_SAMPLES = round(SAMPLE_RATE * DURATION)
CLIPS_FOR_STATISTICS = 10


def _clips(kind, count=CLIPS_FOR_STATISTICS, seed=123):
    """Synthesize `count` clips of one class with independent generators."""
    class_index = DRUM_CLASSES.index(kind)
    return [synthesize_drum(kind, np.random.default_rng([seed, class_index, i])) for i in range(count)]


def _spectral_centroid(signal, sample_rate=SAMPLE_RATE):
    magnitude = np.abs(np.fft.rfft(signal))
    freqs = np.fft.rfftfreq(len(signal), d=1.0 / sample_rate)
    return float((freqs * magnitude).sum() / magnitude.sum())


def _median_centroid(kind):
    return float(np.median([_spectral_centroid(clip) for clip in _clips(kind)]))


def test_same_seed_writes_byte_identical_files(tmp_path):
    first = write_demo_drums(tmp_path / "a", clips_per_class=2, seed=7)
    second = write_demo_drums(tmp_path / "b", clips_per_class=2, seed=7)
    assert [p.relative_to(tmp_path / "a") for p in first] == [p.relative_to(tmp_path / "b") for p in second]
    for path_a, path_b in zip(first, second):
        assert path_a.read_bytes() == path_b.read_bytes()


def test_different_seeds_give_different_audio(tmp_path):
    first = write_demo_drums(tmp_path / "a", clips_per_class=1, seed=0)
    second = write_demo_drums(tmp_path / "b", clips_per_class=1, seed=1)
    for path_a, path_b in zip(first, second):
        assert not np.array_equal(sf.read(path_a)[0], sf.read(path_b)[0])


def test_clip_does_not_depend_on_generation_order(tmp_path):
    paths = write_demo_drums(tmp_path, clips_per_class=3, seed=5)
    snare_2 = tmp_path / "snare" / "snare_002.wav"
    assert snare_2 in paths
    expected = synthesize_drum("snare", np.random.default_rng([5, DRUM_CLASSES.index("snare"), 2]))
    written, _ = sf.read(snare_2, dtype="float32")
    np.testing.assert_allclose(written, expected, atol=1.0 / 32768 + 1e-6)


def test_writes_expected_files_per_class_sorted(tmp_path):
    paths = write_demo_drums(tmp_path, clips_per_class=3)
    assert paths == sorted(paths)
    assert len(paths) == 3 * len(DRUM_CLASSES)
    for kind in DRUM_CLASSES:
        names = sorted(p.name for p in (tmp_path / kind).glob("*.wav"))
        assert names == [f"{kind}_000.wav", f"{kind}_001.wav", f"{kind}_002.wav"]


def test_written_files_are_16_bit_mono_with_right_rate_and_length(tmp_path):
    paths = write_demo_drums(tmp_path, clips_per_class=1, sample_rate=16000, duration=0.5)
    for path in paths:
        info = sf.info(path)
        assert info.samplerate == 16000
        assert info.channels == 1
        assert info.frames == 8000
        assert info.subtype == "PCM_16"


def test_synthesize_drum_returns_float32_of_requested_length():
    for kind in DRUM_CLASSES:
        clip = synthesize_drum(kind, np.random.default_rng(0))
        assert clip.dtype == np.float32
        assert clip.shape == (N_SAMPLES,)


@pytest.mark.parametrize("kind", DRUM_CLASSES)
def test_clips_are_loud_but_not_clipped(kind):
    for clip in _clips(kind):
        peak = np.max(np.abs(clip))
        assert 0.2 < peak < 1.0
        assert np.sqrt(np.mean(clip**2)) > 0.005


@pytest.mark.parametrize("kind", DRUM_CLASSES)
def test_clips_have_no_dc_offset_and_end_silent(kind):
    for clip in _clips(kind):
        assert abs(float(np.mean(clip))) < 1e-3
        assert abs(float(clip[-1])) < 1e-3


def test_spectral_centroids_are_ordered_kick_tom_snare_hihat():
    kick, tom, snare, hihat = (_median_centroid(k) for k in ("kick", "tom", "snare", "hihat"))
    assert kick < tom < snare < hihat


def test_clap_centroid_is_well_above_kick():
    assert _median_centroid("clap") > 3 * _median_centroid("kick")


def test_hihat_centroid_is_above_5_khz():
    assert _median_centroid("hihat") > 5000.0


@pytest.mark.parametrize("kind", DRUM_CLASSES)
def test_energy_is_concentrated_at_the_onset(kind):
    window = int(0.1 * SAMPLE_RATE)
    for clip in _clips(kind):
        head = np.sum(clip[:window].astype(np.float64) ** 2)
        tail = np.sum(clip[-window:].astype(np.float64) ** 2)
        assert head > 20.0 * tail


@pytest.mark.parametrize("kind", DRUM_CLASSES)
def test_onset_is_within_first_20_ms(kind):
    for clip in _clips(kind):
        first_loud = np.argmax(np.abs(clip) > 0.25 * np.max(np.abs(clip)))
        assert first_loud < 0.02 * SAMPLE_RATE


def test_unknown_kind_raises_value_error_naming_it():
    with pytest.raises(ValueError, match="cowbell") as excinfo:
        synthesize_drum("cowbell", np.random.default_rng(0))
    assert "kick" in str(excinfo.value)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"clips_per_class": 0}, "clips_per_class"),
        ({"sample_rate": 4000}, "sample_rate"),
        ({"duration": 0.0}, "duration"),
    ],
)
def test_write_demo_drums_rejects_bad_settings(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        write_demo_drums(tmp_path, **kwargs)
