"""soundkit/realism.py: how real generated sounds are, measured on inputs whose answers are known."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d

from soundkit.realism import (EMBEDDING_SIZE, LISTENER_MELS, LISTENER_RATE, LISTENER_SECONDS, Listener, decay_seconds,
                              frechet_distance, frequency_ripple, listener_view, matched_frechet_distance,
                              median_decay_by_class, saturated_share)

SAMPLE_RATE = 22050


def exact_gaussian_sample(mean, variances, clips=50, seed=0):
    """Rows whose sample mean and sample covariance (ddof=1) are exactly ``mean`` and diag(``variances``)."""
    noise = np.random.default_rng(seed).normal(size=(clips, len(mean)))
    noise -= noise.mean(axis=0)
    noise = noise @ np.linalg.inv(np.linalg.cholesky(np.cov(noise, rowvar=False))).T  # covariance I
    return np.asarray(mean) + noise * np.sqrt(variances)


def smooth_spectra(clips=8, bins=128, frames=20, seed=0):
    """Random smooth spectral envelopes that fade over time, plus white (not periodic) noise, in [0, 1]."""
    rng = np.random.default_rng(seed)
    envelope = gaussian_filter1d(rng.normal(size=(clips, bins, 1)), sigma=8, axis=1)
    envelope = 0.5 + 0.3 * envelope / np.abs(envelope).max(axis=1, keepdims=True)
    fade = np.linspace(0.0, 0.2, frames)
    return np.clip(envelope - fade + rng.normal(0.0, 0.03, (clips, bins, frames)), 0.0, 1.0)


def ripple(period, bins=128, amplitude=0.05):
    """A +/-amplitude square wave along frequency with a period of ``period`` bins, shape (1, bins, 1)."""
    return amplitude * np.where(np.arange(bins) % period < period // 2, 1.0, -1.0)[None, :, None]


def decaying_tone(tau, silence=0.0, seconds=1.2):
    """A 1 kHz sine whose amplitude falls as exp(-t / tau) (tau in seconds), after ``silence`` seconds."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return np.concatenate([np.zeros(int(silence * SAMPLE_RATE)), np.sin(2 * np.pi * 1000 * t) * np.exp(-t / tau)])


# Fréchet distance

def test_frechet_distance_of_a_set_with_itself_is_zero():
    embeddings = np.random.default_rng(0).normal(size=(100, 8))
    assert frechet_distance(embeddings, embeddings) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(embeddings[:5], embeddings[:5]) == pytest.approx(0.0, abs=1e-8)  # 5 clips, 8 wide


def test_frechet_distance_of_two_gaussians_matches_the_closed_form():
    mean_a, variances_a = np.array([0.0, 1.0, -2.0]), np.array([1.0, 4.0, 0.25])
    mean_b, variances_b = np.array([0.5, -1.0, 0.0]), np.array([9.0, 1.0, 0.25])
    a, b = exact_gaussian_sample(mean_a, variances_a, seed=1), exact_gaussian_sample(mean_b, variances_b, seed=2)
    expected = np.sum((mean_a - mean_b) ** 2) + np.sum((np.sqrt(variances_a) - np.sqrt(variances_b)) ** 2)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)  # 8.25 + 5


def test_frechet_distance_is_symmetric():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(60, 5)) @ rng.normal(size=(5, 5))
    b = rng.normal(1.0, 2.0, size=(40, 5))
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-8)
    assert frechet_distance(a, b) > 1.0


def test_frechet_distance_grows_with_the_mean_shift_as_its_square():
    reference = exact_gaussian_sample([0.0, 0.0], [1.0, 2.0])
    shifts = [0.0, 0.5, 1.0, 2.0, 4.0]
    distances = [frechet_distance(reference, reference + [shift, 0.0]) for shift in shifts]
    assert np.all(np.diff(distances) > 0)
    np.testing.assert_allclose(distances, np.square(shifts), atol=1e-9)


def test_frechet_distance_of_fewer_clips_than_dimensions_is_the_mean_shift():
    few = np.random.default_rng(0).normal(size=(5, 8))  # singular covariance: the ridge keeps sqrtm exact
    assert frechet_distance(few, few + 1.0) == pytest.approx(8.0, rel=1e-6)


def test_frechet_distance_refuses_mismatched_widths_naming_both():
    with pytest.raises(ValueError, match="3 columns and embeddings_b has 5"):
        frechet_distance(np.zeros((4, 3)), np.zeros((4, 5)))


def test_frechet_distance_refuses_a_set_of_one_clip():
    with pytest.raises(ValueError, match=r"embeddings_b must be .* at least 2 clips, got shape \(1, 4\)"):
        frechet_distance(np.zeros((4, 4)), np.zeros((1, 4)))


def test_matched_frechet_distance_compares_sets_of_different_sizes_at_one_size():
    rng = np.random.default_rng(0)
    real, few_fakes, many_fakes = rng.normal(size=(400, 4)), rng.normal(size=(20, 4)), rng.normal(size=(400, 4))
    # The same distribution reads ten times farther from 20 clips than from 400 ...
    assert frechet_distance(real, few_fakes) > 4 * frechet_distance(real, many_fakes)
    # ... but alike when both are drawn at 20 clips.
    few, many = matched_frechet_distance(real, few_fakes), matched_frechet_distance(real, many_fakes, size=20)
    assert few["size"] == many["size"] == 20 and few["draws"] == 10
    assert 0.67 < few["mean"] / many["mean"] < 1.5


def test_matched_frechet_distance_of_whole_sets_in_one_draw_is_the_frechet_distance():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(30, 3)), rng.normal(0.5, 1.0, size=(30, 3))
    result = matched_frechet_distance(a, b, draws=1)
    assert result["mean"] == pytest.approx(frechet_distance(a, b), rel=1e-9) and result["std"] == 0.0


def test_matched_frechet_distance_is_reproducible_with_a_seed():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(100, 3)), rng.normal(size=(80, 3))
    first, again = matched_frechet_distance(a, b, 20, 5, seed=7), matched_frechet_distance(a, b, 20, 5, seed=7)
    assert first == again and first["std"] > 0
    assert matched_frechet_distance(a, b, 20, 5, seed=8)["mean"] != first["mean"]


def test_matched_frechet_distance_refuses_a_size_above_the_smaller_set():
    with pytest.raises(ValueError, match="between 2 and 20 .* got 21"):
        matched_frechet_distance(np.zeros((50, 2)), np.zeros((20, 2)), size=21)


# Frequency ripple: the transposed convolutions' grid

def test_frequency_ripple_is_about_one_on_smooth_random_spectra():
    ratios = frequency_ripple(smooth_spectra())
    assert set(ratios) == {2, 4, 8}
    assert all(0.5 < ratio < 2.0 for ratio in ratios.values()), ratios


def test_frequency_ripple_finds_an_alternating_pattern_at_period_2_only():
    ratios = frequency_ripple(smooth_spectra() + ripple(2))
    assert ratios[2] > 10
    assert 0.5 < ratios[4] < 2.0 and 0.5 < ratios[8] < 2.0, ratios


def test_frequency_ripple_finds_a_period_4_pattern_and_leaves_period_2_alone():
    ratios = frequency_ripple(smooth_spectra() + ripple(4))
    assert ratios[4] > 5
    assert 0.5 < ratios[2] < 2.0, ratios


def test_frequency_ripple_finds_the_pattern_when_the_period_does_not_divide_the_bins():
    ratios = frequency_ripple(smooth_spectra(bins=127) + ripple(2, bins=127))
    assert ratios[2] > 10 and 0.5 < ratios[4] < 2.0, ratios


def test_frequency_ripple_ignores_silent_frames():
    spectra = smooth_spectra() + ripple(2)
    with_silence = np.concatenate([spectra, np.zeros((8, 128, 10))], axis=2)
    assert frequency_ripple(with_silence) == pytest.approx(frequency_ripple(spectra), rel=1e-9)
    with pytest.raises(ValueError, match="min_level=0.1"):
        frequency_ripple(np.zeros((2, 128, 10)))


def test_frequency_ripple_refuses_a_period_too_long_for_the_bins():
    with pytest.raises(ValueError, match="period 16 .* between 2 and 8 bins for 32"):
        frequency_ripple(smooth_spectra(bins=32), periods=(2, 16))


# Saturation and decay

def test_saturated_share_counts_pixels_at_or_above_the_threshold():
    spectrograms = np.array([0.0, 0.5, 0.89, 0.9, 0.95, 1.0]).reshape(1, 2, 3)
    assert saturated_share(spectrograms) == 0.5
    assert saturated_share(spectrograms, threshold=1.0) == pytest.approx(1 / 6)
    with pytest.raises(ValueError, match="got 1.5"):
        saturated_share(spectrograms, threshold=1.5)


@pytest.mark.parametrize("tau", [0.02, 0.05, 0.1])
@pytest.mark.parametrize("db", [-60.0, -20.0])
def test_decay_seconds_of_an_exponential_decay_is_the_analytic_time(tau, db):
    analytic = tau * np.log(10 ** (-db / 20))  # amplitude exp(-t / tau) falls db below its peak; -60 dB: tau ln 1000
    assert decay_seconds(decaying_tone(tau), SAMPLE_RATE, db) == pytest.approx(analytic, abs=0.02)


def test_decay_seconds_counts_from_the_attack_not_the_start_of_the_file():
    assert decay_seconds(decaying_tone(0.05, silence=0.3), SAMPLE_RATE) == pytest.approx(0.05 * np.log(1000), abs=0.02)


def test_decay_seconds_refuses_silence_and_a_positive_db():
    with pytest.raises(ValueError, match="silent"):
        decay_seconds(np.zeros(1000), SAMPLE_RATE)
    with pytest.raises(ValueError, match="got 6"):
        decay_seconds(decaying_tone(0.05), SAMPLE_RATE, db=6)


def test_the_listener_hears_a_sound_alike_at_any_level_and_from_its_attack():
    """A quiet hi-hat has bands so empty that librosa's decibels stop at ``amin``; the view must not let
    the listener hear the level through them (new sounds are normalised, real clips are not)."""
    rng = np.random.default_rng(0)
    t = np.arange(int(0.8 * SAMPLE_RATE)) / SAMPLE_RATE
    hat = np.diff(rng.normal(size=len(t) + 1)) * np.exp(-t / 0.08)   # high-passed noise: its lowest bands empty
    hat[:200] = 0.0
    loud = listener_view(0.9 * hat / np.abs(hat).max(), SAMPLE_RATE)
    assert loud.shape == (LISTENER_MELS, 1 + int(LISTENER_RATE * LISTENER_SECONDS) // 256)
    assert loud.max() == pytest.approx(1.0) and loud.min() >= 0.0
    for quiet in (0.01, 1e-4):
        np.testing.assert_allclose(listener_view(quiet * hat / np.abs(hat).max(), SAMPLE_RATE), loud, atol=1e-4)
    # 50 ms of silence first: heard from the attack, the same sound.
    late = listener_view(np.concatenate([np.zeros(int(0.05 * SAMPLE_RATE)), hat]), SAMPLE_RATE)
    np.testing.assert_allclose(late, loud, atol=1e-4)
    assert np.all(listener_view(np.zeros(1000), SAMPLE_RATE) == 0.0)


def test_median_decay_by_class_is_the_median_of_each_class():
    signals = {"hihat": [decaying_tone(tau) for tau in (0.01, 0.02, 0.1)],
               "tom": [decaying_tone(tau) for tau in (0.1, 0.15)]}
    medians = median_decay_by_class(signals, SAMPLE_RATE)
    assert set(medians) == {"hihat", "tom"}
    assert medians["hihat"] == pytest.approx(0.02 * np.log(1000), abs=0.02)
    assert medians["tom"] == pytest.approx(0.125 * np.log(1000), abs=0.02)


# The stand-in listener

def two_class_spectrograms(clips, seed):
    """(spectrograms (clips, 32, 16), labels): class 0 has its energy in low bins, class 1 in high bins."""
    rng = np.random.default_rng(seed)
    labels = np.arange(clips) % 2
    spectrograms = rng.uniform(0.0, 0.2, size=(clips, 32, 16))
    for spectrogram, label in zip(spectrograms, labels):
        start = rng.integers(0, 8) + 18 * label  # a band of 6 bins: low in 0-13, high in 18-31
        spectrogram[start:start + 6] += rng.uniform(0.5, 0.8)
    return np.clip(spectrograms, 0.0, 1.0), labels


@pytest.fixture(scope="module")
def listener():
    spectrograms, labels = two_class_spectrograms(40, seed=0)
    fitted = Listener()
    fitted.fit(spectrograms, labels, epochs=15, seed=0)
    return fitted


@pytest.mark.slow
def test_listener_tells_held_out_low_from_high_clips(listener):
    spectrograms, labels = two_class_spectrograms(40, seed=1)
    assert np.mean(listener.predict(spectrograms) == labels) >= 0.9


@pytest.mark.slow
def test_listener_embeds_each_clip_in_embedding_size_numbers(listener):
    spectrograms, _ = two_class_spectrograms(6, seed=1)
    assert EMBEDDING_SIZE == 32
    assert listener.embed(spectrograms).shape == (6, 32)


@pytest.mark.slow
def test_listener_embeddings_of_two_classes_are_farther_apart_than_two_halves_of_one(listener):
    spectrograms, labels = two_class_spectrograms(120, seed=2)
    embeddings = listener.embed(spectrograms)
    low, high = embeddings[labels == 0], embeddings[labels == 1]
    assert frechet_distance(low, high) > 10 * frechet_distance(low[:30], low[30:])


@pytest.mark.slow
def test_listener_refuses_spectrograms_of_another_shape(listener):
    with pytest.raises(ValueError, match=r"\(32, 8\) per clip, but the listener was fitted on \(32, 16\)"):
        listener.predict(np.zeros((2, 32, 8)))
