"""Tests of soundgenerator.py: batched STFT/ISTFT, Griffin-Lim, SoundGenerator.

All signals are synthetic and small, so the whole file runs in a few seconds.
"""

import sys
from pathlib import Path

import librosa
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from soundkit import phase  # noqa: E402
from soundkit.phase import spectral_convergence  # noqa: E402
from soundkit.stft import istft, stft  # noqa: E402
from soundgenerator import SoundGenerator  # noqa: E402

SAMPLE_RATE = 22050
DURATION_S = 0.74
FRAME_SIZE = 512
HOP_LENGTH = 256
# (frame_size, hop_length): the tutorial's, 75 % overlap, a hop that does not
# divide the frame, and an odd frame size.
STFT_SETTINGS = [(512, 256), (512, 128), (256, 64), (512, 200), (511, 100)]

# Measured with the defaults (PGHI start, 32 fast Griffin-Lim iterations) on
# the chirp-plus-tone signal below: -24.9 dB; zero phase gives -2.0 dB.  The
# thresholds leave about 3 dB of margin for FFT rounding on other machines.
GRIFFIN_LIM_MAX_SC_DB = -22.0
ZERO_PHASE_MIN_SC_DB = -5.0
MIN_IMPROVEMENT_OVER_ZERO_PHASE_DB = 15.0


def chirp_plus_decaying_tone(sample_rate=SAMPLE_RATE, duration=DURATION_S):
    """A 200 -> 2000 Hz linear chirp plus a 440 Hz tone decaying exponentially."""
    t = np.arange(int(sample_rate * duration)) / sample_rate
    chirp = 0.5 * np.sin(2 * np.pi * (200 * t + (2000 - 200) / (2 * duration) * t**2))
    tone = 0.3 * np.exp(-3 * t) * np.sin(2 * np.pi * 440 * t)
    return (chirp + tone).astype(np.float32)


def three_different_clips():
    """A batch of three unlike clips: chirp + tone, noise, and a quiet tone."""
    rng = np.random.default_rng(7)
    n_samples = int(SAMPLE_RATE * DURATION_S)
    t = np.arange(n_samples) / SAMPLE_RATE
    return np.stack([
        chirp_plus_decaying_tone(),
        0.1 * rng.standard_normal(n_samples),
        0.01 * np.sin(2 * np.pi * 1000 * t),
    ]).astype(np.float32)


def magnitudes_of(signals, frame_size=FRAME_SIZE, hop_length=HOP_LENGTH):
    return np.abs(stft(signals, frame_size, hop_length))


def normalise(spectrogram_db):
    """The project's per-clip min-max normalisation (preprocessing)."""
    minima = spectrogram_db.min(axis=(1, 2))
    maxima = spectrogram_db.max(axis=(1, 2))
    span = (maxima - minima)[:, None, None]
    return (spectrogram_db - minima[:, None, None]) / span, minima, maxima


# --- STFT and ISTFT -----------------------------------------------------------


@pytest.mark.parametrize("frame_size, hop_length", STFT_SETTINGS)
def test_batched_stft_equals_librosa_stft(frame_size, hop_length):
    signals = three_different_clips()[:, :5000]
    expected = librosa.stft(signals, n_fft=frame_size, hop_length=hop_length)
    result = stft(signals, frame_size, hop_length)
    assert result.shape == expected.shape
    assert result.dtype == np.complex64
    assert np.max(np.abs(result - expected)) <= 1e-5 * np.max(np.abs(expected))


@pytest.mark.parametrize("frame_size, hop_length", STFT_SETTINGS)
def test_batched_istft_equals_librosa_istft(frame_size, hop_length):
    spectra = librosa.stft(three_different_clips()[:, :5000], n_fft=frame_size,
                           hop_length=hop_length)
    expected = librosa.istft(spectra, n_fft=frame_size, hop_length=hop_length)
    result = istft(spectra, frame_size, hop_length)
    assert result.shape == expected.shape
    assert np.max(np.abs(result - expected)) <= 1e-5


@pytest.mark.parametrize("frame_size, hop_length", STFT_SETTINGS)
def test_batched_istft_inverts_stft(frame_size, hop_length):
    signals = three_different_clips()
    rebuilt = istft(stft(signals, frame_size, hop_length), frame_size, hop_length)
    assert np.max(np.abs(rebuilt - signals[:, : rebuilt.shape[1]])) <= 1e-4


def test_spectral_convergence_of_the_original_signal_is_very_low():
    signal = chirp_plus_decaying_tone()[None]
    assert spectral_convergence(magnitudes_of(signal), signal, FRAME_SIZE, HOP_LENGTH)[0] < -100


# --- Griffin-Lim --------------------------------------------------------------


def test_griffin_lim_reaches_low_spectral_convergence_on_a_synthetic_signal():
    magnitudes = magnitudes_of(chirp_plus_decaying_tone()[None])
    audio = SoundGenerator(SAMPLE_RATE, FRAME_SIZE, HOP_LENGTH).magnitude_to_audio(magnitudes)
    sc = spectral_convergence(magnitudes, audio, FRAME_SIZE, HOP_LENGTH)[0]
    assert sc < GRIFFIN_LIM_MAX_SC_DB


def test_griffin_lim_is_far_better_than_zero_phase():
    magnitudes = magnitudes_of(chirp_plus_decaying_tone()[None])
    scores = {}
    for method in ("griffinlim", "zero_phase"):
        generator = SoundGenerator(SAMPLE_RATE, FRAME_SIZE, HOP_LENGTH, phase_method=method)
        audio = generator.magnitude_to_audio(magnitudes)
        scores[method] = spectral_convergence(magnitudes, audio, FRAME_SIZE, HOP_LENGTH)[0]
    assert scores["zero_phase"] > ZERO_PHASE_MIN_SC_DB
    assert scores["griffinlim"] < scores["zero_phase"] - MIN_IMPROVEMENT_OVER_ZERO_PHASE_DB


def test_pghi_start_is_much_better_than_a_random_start():
    # Before any iteration the PGHI phase alone must already be good: this
    # catches a wrong sign or scale in the phase-gradient formulas.
    magnitudes = magnitudes_of(chirp_plus_decaying_tone()[None])
    scores = {}
    for phase_init in ("pghi", "random"):
        generator = SoundGenerator(SAMPLE_RATE, FRAME_SIZE, HOP_LENGTH, n_iter=0,
                                   phase_init=phase_init)
        audio = generator.magnitude_to_audio(magnitudes)
        scores[phase_init] = spectral_convergence(magnitudes, audio, FRAME_SIZE, HOP_LENGTH)[0]
    assert scores["pghi"] < scores["random"] - 10.0


def test_pghi_phase_alone_reconstructs_gaussian_tone_bursts():
    # Gaussian-enveloped tones are where PGHI's formulas are nearly exact, and
    # both of them matter: measured -32.8 dB before any iteration; with the
    # sign of the group-delay term flipped it is -14.6 dB, with the
    # instantaneous-frequency term flipped far worse.
    t = np.arange(int(SAMPLE_RATE * DURATION_S)) / SAMPLE_RATE
    bursts = sum(np.exp(-0.5 * ((t - centre) / 0.01) ** 2) * np.sin(2 * np.pi * 1000 * t)
                 for centre in (0.1, 0.3, 0.5))
    magnitudes = magnitudes_of(bursts[None].astype(np.float32))
    generator = SoundGenerator(SAMPLE_RATE, FRAME_SIZE, HOP_LENGTH, n_iter=0, phase_init="pghi")
    audio = generator.magnitude_to_audio(magnitudes)
    assert spectral_convergence(magnitudes, audio, FRAME_SIZE, HOP_LENGTH)[0] < -25.0


@pytest.mark.parametrize("phase_init", phase.PHASE_INITS)
def test_batch_of_three_gives_each_clip_the_result_it_gets_alone(phase_init):
    magnitudes = magnitudes_of(three_different_clips())
    generator = SoundGenerator(SAMPLE_RATE, FRAME_SIZE, HOP_LENGTH, n_iter=16,
                               phase_init=phase_init)
    together = generator.magnitude_to_audio(magnitudes)
    for i in range(3):
        alone = generator.magnitude_to_audio(magnitudes[i : i + 1])[0]
        np.testing.assert_allclose(together[i], alone, rtol=0, atol=1e-5 * np.abs(alone).max())


@pytest.mark.parametrize("phase_method", phase.PHASE_METHODS)
def test_output_has_t_minus_one_hops_of_float32_samples(phase_method):
    n_frames = 64
    magnitudes = np.ones((2, FRAME_SIZE // 2 + 1, n_frames), dtype=np.float64)
    generator = SoundGenerator(SAMPLE_RATE, FRAME_SIZE, HOP_LENGTH, phase_method=phase_method,
                               n_iter=2)
    audio = generator.magnitude_to_audio(magnitudes)
    assert audio.shape == (2, (n_frames - 1) * HOP_LENGTH)
    assert audio.dtype == np.float32


def test_odd_frame_size_gives_librosas_istft_length():
    frame_size, hop_length, n_frames = 511, 100, 20
    magnitudes = np.ones((2, frame_size // 2 + 1, n_frames), dtype=np.float32)
    audio = SoundGenerator(SAMPLE_RATE, frame_size, hop_length, n_iter=2).magnitude_to_audio(
        magnitudes)
    expected = librosa.istft(magnitudes.astype(np.complex64), n_fft=frame_size,
                             hop_length=hop_length)
    assert audio.shape == expected.shape


@pytest.mark.parametrize("phase_init", phase.PHASE_INITS)
def test_reconstruction_is_deterministic(phase_init):
    magnitudes = magnitudes_of(three_different_clips())
    generator = SoundGenerator(SAMPLE_RATE, FRAME_SIZE, HOP_LENGTH, n_iter=8,
                               phase_init=phase_init)
    first = generator.magnitude_to_audio(magnitudes)
    second = generator.magnitude_to_audio(magnitudes)
    np.testing.assert_array_equal(first, second)


# --- SoundGenerator steps -----------------------------------------------------


def test_denormalise_inverts_normalise_with_per_clip_min_and_max():
    generator = SoundGenerator(SAMPLE_RATE, FRAME_SIZE, HOP_LENGTH)
    rng = np.random.default_rng(0)
    spectrogram_db = rng.uniform(-80, 20, size=(3, FRAME_SIZE // 2, 10)).astype(np.float32)
    normalised, minima, maxima = normalise(spectrogram_db)
    np.testing.assert_allclose(generator.denormalise(normalised, minima, maxima),
                               spectrogram_db, atol=1e-4)


def test_denormalise_accepts_scalar_min_and_max():
    generator = SoundGenerator(SAMPLE_RATE, FRAME_SIZE, HOP_LENGTH)
    normalised = np.full((2, FRAME_SIZE // 2, 4), 0.5, dtype=np.float32)
    np.testing.assert_allclose(generator.denormalise(normalised, -80.0, 0.0), -40.0)


def test_db_to_magnitude_inverts_amplitude_to_db_and_appends_a_zero_nyquist_row():
    generator = SoundGenerator(SAMPLE_RATE, FRAME_SIZE, HOP_LENGTH)
    magnitude = magnitudes_of(three_different_clips())[:, :-1]
    spectrogram_db = librosa.amplitude_to_db(magnitude, ref=1.0, amin=1e-5, top_db=None)
    result = generator.db_to_magnitude(spectrogram_db)
    assert result.shape == (3, FRAME_SIZE // 2 + 1, magnitude.shape[2])
    np.testing.assert_allclose(result[:, :-1], np.maximum(magnitude, 1e-5), rtol=1e-4)
    assert np.all(result[:, -1] == 0)


def test_convert_spectrograms_to_audio_accepts_the_models_channel_axis():
    generator = SoundGenerator(SAMPLE_RATE, FRAME_SIZE, HOP_LENGTH, n_iter=4)
    magnitude = magnitudes_of(three_different_clips())[:, :-1]
    spectrogram_db = librosa.amplitude_to_db(magnitude, ref=1.0, amin=1e-5, top_db=80.0)
    normalised, minima, maxima = normalise(spectrogram_db)
    with_channel = generator.convert_spectrograms_to_audio(normalised[..., None], minima, maxima)
    without = generator.convert_spectrograms_to_audio(normalised, minima, maxima)
    assert with_channel.shape == (3, (magnitude.shape[2] - 1) * HOP_LENGTH)
    np.testing.assert_array_equal(with_channel, without)


# --- invalid arguments --------------------------------------------------------


@pytest.mark.parametrize("name, value", [
    ("sample_rate", 0),
    ("sample_rate", 22050.5),
    ("frame_size", 1),
    ("frame_size", "512"),
    ("hop_length", 0),
    ("hop_length", 513),
    ("phase_method", "istft"),
    ("n_iter", -1),
    ("n_iter", 2.5),
    ("momentum", -0.1),
    ("momentum", 1.5),
    ("phase_init", "ones"),
    ("seed", -3),
])
def test_invalid_argument_raises_value_error_naming_it_and_its_value(name, value):
    arguments = {"sample_rate": SAMPLE_RATE, "frame_size": FRAME_SIZE,
                 "hop_length": HOP_LENGTH, name: value}
    with pytest.raises(ValueError) as error:
        SoundGenerator(**arguments)
    assert name in str(error.value)
    assert repr(value) in str(error.value)


def test_spectrogram_with_wrong_number_of_rows_raises_value_error_with_its_shape():
    generator = SoundGenerator(SAMPLE_RATE, FRAME_SIZE, HOP_LENGTH)
    with pytest.raises(ValueError, match=r"\(2, 100, 8\)"):
        generator.db_to_magnitude(np.zeros((2, 100, 8)))


def test_min_values_of_wrong_length_raise_value_error():
    generator = SoundGenerator(SAMPLE_RATE, FRAME_SIZE, HOP_LENGTH)
    normalised = np.zeros((3, FRAME_SIZE // 2, 8))
    with pytest.raises(ValueError, match="min_values"):
        generator.denormalise(normalised, np.zeros(2), np.ones(3))


def test_sounds_are_finished_for_a_sampler_no_dc_trimmed_faded_at_the_peak():
    from soundgenerator import finish_for_sampler

    rate = 8000
    t = np.arange(rate) / rate
    hit = np.where(t < 0.5, 0.05 * np.sin(2 * np.pi * 300 * t) * np.exp(-6 * t), 0.0) + 0.02  # DC, then silence
    finished = finish_for_sampler(hit, rate, peak_dbfs=-1.0, trim_db=-60.0, fade_seconds=0.01)
    assert 20 * np.log10(np.max(np.abs(finished))) == pytest.approx(-1.0, abs=1e-3)
    assert abs(float(np.mean(finished[: int(0.4 * rate)]))) < 0.02    # the offset is gone
    assert 0.45 * rate < len(finished) < 0.52 * rate                   # the silent half second is trimmed
    assert abs(finished[-1]) < 1e-4                                   # and the end is faded
    quiet = finish_for_sampler(0.01 * np.sin(2 * np.pi * 300 * t), rate, normalize=False)
    assert np.max(np.abs(quiet)) == pytest.approx(0.01, rel=1e-3)      # only turned down, never up
    np.testing.assert_array_equal(finish_for_sampler(np.zeros(100), rate), np.zeros(100))


def test_a_blurred_decoded_spectrogram_is_stretched_to_the_full_range_of_a_training_clip():
    from soundgenerator import full_range

    rng = np.random.default_rng(0)
    real = rng.random((2, 8, 5)).astype(np.float32)
    real = (real - real.min(axis=(1, 2), keepdims=True)) / np.ptp(real, axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(full_range(real), real, atol=1e-6)          # a real clip: unchanged
    blurred = 0.05 + 0.6 * real                                            # peak 0.65, floor 0.05
    np.testing.assert_allclose(full_range(blurred), real, atol=1e-5)
    np.testing.assert_allclose(full_range(np.full((1, 3, 3), 0.4)), 0.4, rtol=1e-6)  # flat: left alone
    generator = SoundGenerator(8000, 16, 4, n_iter=4)
    quiet = generator.convert_spectrograms_to_audio(blurred, -90.0, -10.0)
    loud = generator.convert_spectrograms_to_audio(real, -90.0, -10.0)
    np.testing.assert_allclose(quiet, loud, atol=1e-6)  # the sound keeps the clip's dynamic range


def decaying_noise_spectrogram(top_db=80.0, frames=40, bins=256, seconds_per_frame=HOP_LENGTH / SAMPLE_RATE):
    """dB spectrogram of noise falling 120 dB over the clip, clamped TOP_DB below its peak as preprocessing does."""
    rng = np.random.default_rng(3)
    decay_db = -120.0 * np.arange(frames) / frames
    spectrogram_db = decay_db[None, :] + 3.0 * rng.standard_normal((bins, frames))
    return np.maximum(spectrogram_db, spectrogram_db.max() - top_db)[None].astype(np.float32)


def tail_db(audio):
    """Level of the last quarter of each clip, in dB below its loudest 512 samples."""
    frames = audio[:, :len(audio[0]) // 512 * 512].reshape(len(audio), -1, 512)
    peaks = np.abs(frames).max(axis=2)
    return 20 * np.log10(np.maximum(peaks[:, -peaks.shape[1] // 4:].max(axis=1), 1e-20) / peaks.max(axis=1))


def test_the_floor_gate_silences_the_clamped_floor_that_otherwise_hisses_to_the_end():
    spectrogram_db = decaying_noise_spectrogram()
    normalised, minima, maxima = normalise(spectrogram_db)
    ungated = SoundGenerator(SAMPLE_RATE, FRAME_SIZE, HOP_LENGTH, floor_gate_db=0)
    gated = SoundGenerator(SAMPLE_RATE, FRAME_SIZE, HOP_LENGTH)  # the default gate
    hiss = tail_db(ungated.convert_spectrograms_to_audio(normalised, minima, maxima))
    quiet = tail_db(gated.convert_spectrograms_to_audio(normalised, minima, maxima))
    # The last quarter is over 90 dB down in truth, but its 256 clamped bins come back as a steady hiss
    # (measured -73 dB); the gate takes it away.
    assert -85 < hiss[0] < -60
    assert quiet[0] < hiss[0] - 40


def test_the_floor_gate_ramps_over_its_width_above_the_floor():
    generator = SoundGenerator(SAMPLE_RATE, FRAME_SIZE, HOP_LENGTH, floor_gate_db=4.0)
    spectrogram_db = np.array([[[-80.0, -79.0, -78.0, -76.0, -40.0, 0.0]]] * 1, dtype=np.float32)
    np.testing.assert_allclose(generator.floor_gate(spectrogram_db)[0, 0], [0.0, 0.25, 0.5, 1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="floor_gate_db must be from 0 to 40 dB, got -1"):
        SoundGenerator(SAMPLE_RATE, FRAME_SIZE, HOP_LENGTH, floor_gate_db=-1)
