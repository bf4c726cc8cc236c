"""Phase reconstruction: PGHI and fast Griffin-Lim, and the phase settings.

A spectrogram keeps only magnitudes; the phase must be guessed before the
inverse STFT gives audio. The default is the "fast Griffin-Lim" algorithm
(Perraudin, Balazs and Sondergaard, 2013), started from a phase estimate
computed from the magnitude alone ("phase-gradient heuristic integration",
PGHI, Prusa, Balazs and Sondergaard, 2017). ``soundgenerator.SoundGenerator``
uses it; so do evaluate.py and the benchmarks, with ``spectral_convergence``
as the measure of how good a reconstruction is.

Everything works on whole batches with vectorised numpy calls, never a
Python loop over clips (Griffin-Lim goes through the batch in blocks of
clips that fit in the CPU cache, which is three times faster).  The batched
STFT and its inverse it is built on, with librosa's conventions, are in
``stft.py``.

The phase settings are defined here once (``DEFAULT_*``); generate.py and
evaluate.py take their defaults from these and check them with
``check_phase_settings`` before any model is loaded.
"""

import numpy as np

from soundkit.errors import PipelineError
from soundkit.stft import (hann_window, inverse_gain, irfft, overlap_add, rfft, signal_length, signals_from_spectra,
                           stft, windowed_frames)

PHASE_METHODS = ("griffinlim", "zero_phase")  # "zero_phase": the tutorial's, for comparison only
PHASE_INITS = ("pghi", "random", "zeros")

# Defaults chosen with benchmarks/phase_reconstruction.py (FSDD test set,
# 22050 Hz, frame 512, hop 256): PGHI + 32 fast Griffin-Lim iterations reach
# about -31 dB spectral convergence for about 8 ms of CPU per second of audio.
DEFAULT_PHASE_METHOD = "griffinlim"
DEFAULT_N_ITER = 32
DEFAULT_MOMENTUM = 0.99
DEFAULT_PHASE_INIT = "pghi"
DEFAULT_SEED = 0

# Added to magnitudes before dividing by them, so that a zero never gives NaN.
# Far below anything audible (the pipeline's floor is amin = 1e-5), and large
# enough that magnitude / MAGNITUDE_EPSILON cannot overflow float32.
MAGNITUDE_EPSILON = 1e-12

# A Hann window of length N is close to a Gaussian exp(-pi t^2 / lambda) with
# lambda = 0.25645 * N^2 (Prusa et al. 2017).  PGHI needs that lambda.
HANN_GAUSSIAN_LAMBDA_FACTOR = 0.25645

# PGHI trusts the phase derivatives only where the magnitude is within this
# many dB of the clip's loudest bin; quieter bins keep a random phase.
PGHI_TOLERANCE_DB = 50.0

# Griffin-Lim works on blocks of clips whose spectra take about this many
# bytes, so that its arrays stay in the CPU cache (see ``griffin_lim``).
CACHE_BLOCK_BYTES = 1 << 20


# ---------------------------------------------------------------------------
# Phase initialisation
# ---------------------------------------------------------------------------


def _cumulative_trapezoid(derivative, axis):
    """Integral of a sampled derivative from index 0, trapezoidal rule.

    ``result[0] = 0`` and ``result[k] = sum over j < k of (d[j] + d[j+1]) / 2``.
    """
    derivative = np.moveaxis(derivative, axis, -1)
    steps = 0.5 * (derivative[..., 1:] + derivative[..., :-1])
    integral = np.zeros_like(derivative)
    np.cumsum(steps, axis=-1, out=integral[..., 1:])
    return np.moveaxis(integral, -1, axis)


def _peak_owners(magnitudes, reliable):
    """For every bin, the index of the spectral peak it belongs to.

    Works on the last axis (frequency).  A peak is a reliable local maximum.
    Between two neighbouring peaks the magnitude first falls then rises, so a
    bin whose right neighbour is larger is on the slope of the peak to its
    right, otherwise it is on the slope of the peak to its left.

    Returns
    -------
    owners : numpy.ndarray of int32
        Peak index per bin (0 where ``has_owner`` is False).
    has_owner : numpy.ndarray of bool
        False where no peak exists in the frame, or the bin is unreliable.
    """
    n_bins = magnitudes.shape[-1]
    bins = np.arange(n_bins, dtype=np.int32)  # int32: half the memory traffic of int64
    # rising: the right neighbour is larger; not_falling_in: the left one is
    # not larger.  A peak is not rising and not falling in.
    rising = np.zeros(magnitudes.shape, dtype=bool)
    np.greater(magnitudes[..., 1:], magnitudes[..., :-1], out=rising[..., :-1])
    not_falling_in = np.ones(magnitudes.shape, dtype=bool)
    np.greater_equal(magnitudes[..., 1:], magnitudes[..., :-1], out=not_falling_in[..., 1:])
    is_peak = not_falling_in & ~rising & reliable
    # Nearest peak at or left of each bin (-1 if none), and at or right of it
    # (n_bins if none), both with running maxima/minima instead of loops.
    left_peak = np.maximum.accumulate(np.where(is_peak, bins, np.int32(-1)), axis=-1)
    right_peak = np.where(is_peak, bins, np.int32(n_bins))[..., ::-1]
    right_peak = np.minimum.accumulate(right_peak, axis=-1)[..., ::-1]
    use_right = (rising & (right_peak < n_bins)) | (left_peak < 0)
    owners = np.where(use_right, right_peak, left_peak)
    has_owner = (owners >= 0) & (owners < n_bins) & reliable
    owners[~has_owner] = 0  # any valid index; these bins are not used
    return owners, has_owner


def _pghi_phase_steps(log_magnitude, frame_size, hop_length):
    """PGHI's phase derivatives, integrated between neighbouring frames and along frequency.

    Parameters
    ----------
    log_magnitude : numpy.ndarray
        float32 log-magnitudes laid out (batch, T, F).
    frame_size, hop_length : int
        STFT parameters the magnitudes come from.

    Returns
    -------
    time_steps : numpy.ndarray
        float32 (batch, T - 1, F): phase advance of every bin from frame n-1 to n.
    along_frequency : numpy.ndarray
        float32 (batch, T, F): phase of every bin relative to bin 0 of its frame.
    """
    n_bins = log_magnitude.shape[2]
    lam = HANN_GAUSSIAN_LAMBDA_FACTOR * frame_size**2
    time_scale = np.float32(hop_length * frame_size / lam)
    frequency_scale = np.float32(lam / (hop_length * frame_size))

    # Phase advance from frame n-1 to n: the bin's centre frequency times the
    # hop, plus the deviation from the log-magnitude's slope along frequency
    # (trapezoidal rule between the two frames).  The centre-frequency part
    # is taken modulo 2 pi (exactly, in integers) so that the running phase
    # stays small and float32 stays accurate over many frames.
    centre_advance = (2.0 * np.pi / frame_size) * ((hop_length * np.arange(n_bins)) % frame_size)
    slope_along_frequency = np.gradient(log_magnitude, axis=2)
    time_steps = slope_along_frequency[:, 1:] + slope_along_frequency[:, :-1]
    time_steps *= np.float32(0.5) * time_scale
    time_steps += centre_advance.astype(np.float32)

    # Phase along frequency within a frame: pi per bin (the window centred at
    # N / 2) minus the scaled slope of the log-magnitude along time.
    neg_group_delay = np.gradient(log_magnitude, axis=1)
    neg_group_delay *= -frequency_scale
    neg_group_delay += np.float32(np.pi)
    along_frequency = _cumulative_trapezoid(neg_group_delay, axis=2)
    return time_steps, along_frequency


def pghi_phase(magnitudes, frame_size, hop_length, seed=DEFAULT_SEED):
    """Phase estimated from the magnitude alone (a vectorised PGHI variant).

    For a Gaussian-like window the STFT phase and log-magnitude are linked
    (Portnoff 1979; Prusa, Balazs and Sondergaard 2017).  With librosa's frame
    convention, per hop and per frequency bin::

        d phase / d frame = 2 pi hop m / N + (hop N / lambda) d log|X| / d m
        d phase / d bin   = pi - (lambda / (hop N)) d log|X| / d frame

    The first is the instantaneous frequency, the second minus the local
    group delay; the pi comes from librosa's window being centred at N / 2,
    lambda = 0.25645 N^2 is the Gaussian closest to a Hann window of length N.

    The original PGHI integrates these derivatives coefficient by coefficient
    in order of decreasing magnitude (a heap), which needs a Python loop over
    every coefficient.  Here, frame after frame and for the whole batch at
    once, every spectral peak continues the phase of the previous frame along
    time (instantaneous frequency, trapezoidal rule) and the bins on the
    peak's slopes follow the peak along frequency (group delay).  This is the
    "phase locking" of phase vocoders, with PGHI's derivatives.  Measured on
    FSDD (22050 Hz, 512/256) against a heap implementation: better before any
    iteration (-17.5 vs -15.4 dB spectral convergence), about 0.5 dB behind
    after 32 fast Griffin-Lim iterations, for a fraction of the cost.

    Parameters
    ----------
    magnitudes : numpy.ndarray
        Magnitudes laid out (batch, T, F) with F = frame_size // 2 + 1.
    frame_size, hop_length : int
        STFT parameters the magnitudes come from.
    seed : int
        Seed of the random phase given to bins too quiet to be trusted.

    Returns
    -------
    numpy.ndarray
        float32 phases in radians, same shape as ``magnitudes``.
    """
    magnitudes = np.asarray(magnitudes, dtype=np.float32)
    batch, n_frames, n_bins = magnitudes.shape

    # Bins more than PGHI_TOLERANCE_DB below the clip's loudest bin carry
    # little energy and unreliable derivatives: they keep a random phase.
    loudest = magnitudes.max(axis=(1, 2), keepdims=True)
    threshold = loudest * np.float32(10.0 ** (-PGHI_TOLERANCE_DB / 20.0))
    reliable = magnitudes > threshold
    log_magnitude = np.log(np.maximum(magnitudes, threshold) + np.float32(MAGNITUDE_EPSILON))
    time_steps, along_frequency = _pghi_phase_steps(log_magnitude, frame_size, hop_length)

    # Phase of every bin relative to the peak that owns it.
    owners, has_owner = _peak_owners(magnitudes, reliable)
    relative = along_frequency - np.take_along_axis(along_frequency, owners, axis=2)

    phase = _random_phase(magnitudes.shape, seed)

    # Frame recursion, vectorised over batch and frequency: one small step
    # per frame.  Flat indices make the "value at my peak" gather a cheap
    # 1-D np.take.
    flat_owners = owners + (np.arange(batch, dtype=np.int32) * np.int32(n_bins))[:, None, None]
    candidate = np.zeros((batch, n_bins), dtype=np.float32)
    for n in range(n_frames):
        if n > 0:
            np.add(phase[:, n - 1], time_steps[:, n - 1], out=candidate)
        locked = np.take(candidate, flat_owners[:, n]) + relative[:, n]
        phase[:, n] = np.where(has_owner[:, n], locked, phase[:, n])
    return phase


# ---------------------------------------------------------------------------
# Griffin-Lim
# ---------------------------------------------------------------------------


def _random_phase(shape, seed):
    """Seeded uniform phases in [0, 2 pi), float32, of shape (batch, T, F).

    Every clip of the batch gets the same pattern: a clip's result must not
    depend on which other clips share its batch, or on its position in it.
    """
    rng = np.random.default_rng(seed)
    one_clip = rng.random(shape[1:], dtype=np.float32) * np.float32(2.0 * np.pi)
    return np.broadcast_to(one_clip, shape).copy()


def _initial_phasors(magnitudes_btf, frame_size, hop_length, phase_init, seed):
    """Unit complex numbers (batch, T, F) to start Griffin-Lim from."""
    if phase_init not in PHASE_INITS:
        raise ValueError(f"phase_init must be one of {PHASE_INITS}, got {phase_init!r}")
    if phase_init == "zeros":
        return np.ones(magnitudes_btf.shape, dtype=np.complex64)
    if phase_init == "random":
        phase = _random_phase(magnitudes_btf.shape, seed)
    else:
        phase = pghi_phase(magnitudes_btf, frame_size, hop_length, seed)
    phasors = np.empty(magnitudes_btf.shape, dtype=np.complex64)
    phasors.real = np.cos(phase)
    phasors.imag = np.sin(phase)
    return phasors


def griffin_lim(magnitudes, frame_size, hop_length, n_iter=DEFAULT_N_ITER,
                momentum=DEFAULT_MOMENTUM, phase_init=DEFAULT_PHASE_INIT, seed=DEFAULT_SEED):
    """Fast Griffin-Lim (Perraudin et al. 2013) on a whole batch.

    Each iteration projects on the set of *consistent* spectrograms (STFT of
    the ISTFT), extrapolates with momentum ``t_n = c_n + momentum * (c_n -
    c_{n-1})`` and projects on the set of spectrograms with the wanted
    magnitude (keep the phase, impose the magnitude).

    Parameters
    ----------
    magnitudes : numpy.ndarray
        Full magnitudes (batch, frame_size // 2 + 1, T).
    frame_size, hop_length : int
        STFT parameters.
    n_iter : int
        Number of iterations; 0 inverts the initial phase estimate directly.
    momentum : float
        Extrapolation factor, 0 gives the classic Griffin-Lim.
    phase_init : {"pghi", "random", "zeros"}
        Starting phase.
    seed : int
        Seed of the random phases ("random", and quiet bins of "pghi").

    Returns
    -------
    numpy.ndarray
        float32 signals (batch, (T - 1) * hop_length).
    """
    # Work with frequency on the last axis: each frame is then contiguous,
    # which is what the FFT along the last axis wants.
    target = np.ascontiguousarray(np.swapaxes(magnitudes, -1, -2), dtype=np.float32)
    batch, n_frames, n_bins = target.shape
    phasors = _initial_phasors(target, frame_size, hop_length, phase_init, seed)

    # The batch is processed in blocks of a few clips whose arrays fit in the
    # CPU cache: the same vectorised numpy calls on 40 MB arrays run about 3x
    # slower than on ~1 MB blocks, because every call would stream the whole
    # batch through main memory.  This is a loop over blocks, not over clips.
    clip_bytes = n_frames * n_bins * np.dtype(np.complex64).itemsize
    clips_per_block = max(1, CACHE_BLOCK_BYTES // clip_bytes)
    signals = np.empty((batch, signal_length(frame_size, hop_length, n_frames)),
                       dtype=np.float32)
    for start in range(0, batch, clips_per_block):
        block = slice(start, start + clips_per_block)
        signals[block] = _griffin_lim_block(
            target[block], phasors[block], frame_size, hop_length, n_iter, momentum)
    return signals


def _griffin_lim_block(target, phasors, frame_size, hop_length, n_iter, momentum):
    """Fast Griffin-Lim on magnitudes laid out (batch, T, F); returns signals."""
    batch, n_frames, n_bins = target.shape
    gain = inverse_gain(frame_size, hop_length, n_frames)
    window = hann_window(frame_size)
    momentum = np.float32(momentum)

    spectra = target * phasors
    previous = None
    frames = np.empty((batch, n_frames, frame_size), dtype=np.float32)
    magnitude = np.empty(target.shape, dtype=np.float32)
    for _ in range(n_iter):
        # Consistency projection: ISTFT then STFT.  The ISTFT's division by
        # the window-sum-square and the STFT's zero padding are one gain.
        synthesis = irfft(spectra, frame_size)
        synthesis *= window
        padded = overlap_add(synthesis, hop_length)
        padded *= gain
        windowed_frames(padded, frame_size, hop_length, out=frames)
        rebuilt = rfft(frames, frame_size)

        # Momentum, in place to avoid temporary arrays:
        # previous <- rebuilt + momentum * (rebuilt - previous).
        if previous is None:
            previous = rebuilt.copy()
        else:
            np.subtract(rebuilt, previous, out=previous)
            previous *= momentum
            previous += rebuilt
        spectra, previous = previous, rebuilt

        # Magnitude projection: spectra *= target / |spectra|.  Scaling the
        # real and imaginary parts separately is faster than numpy's
        # complex-by-real multiplication (which first converts to complex).
        np.abs(spectra, out=magnitude)
        magnitude += np.float32(MAGNITUDE_EPSILON)
        np.divide(target, magnitude, out=magnitude)
        spectra.real *= magnitude
        spectra.imag *= magnitude

    return signals_from_spectra(spectra, frame_size, hop_length)


def spectral_convergence(magnitudes, signals, frame_size, hop_length):
    """How far the STFT magnitude of ``signals`` is from ``magnitudes``, in dB.

    ``20 log10(|| |STFT(y)| - S ||_F / ||S||_F)`` per clip: 0 dB means an
    error as large as the spectrogram itself, -30 dB an error of about 3 % of
    it (10 ** (-30 / 20)).  Lower is better.

    Parameters
    ----------
    magnitudes : numpy.ndarray
        Reference magnitudes S, (batch, frame_size // 2 + 1, T).
    signals : numpy.ndarray
        Reconstructed signals y, (batch, n_samples), with
        1 + n_samples // hop_length == T.
    frame_size, hop_length : int
        STFT parameters.

    Returns
    -------
    numpy.ndarray
        float64 array (batch,) of spectral convergences in dB.
    """
    magnitudes = np.asarray(magnitudes, dtype=np.float64)
    rebuilt = np.abs(stft(signals, frame_size, hop_length)).astype(np.float64)
    if rebuilt.shape != magnitudes.shape:
        raise ValueError(
            f"the signals give spectrograms of shape {rebuilt.shape}, "
            f"the magnitudes have shape {magnitudes.shape}")
    batch = magnitudes.shape[0]
    error = np.linalg.norm((rebuilt - magnitudes).reshape(batch, -1), axis=1)
    reference = np.linalg.norm(magnitudes.reshape(batch, -1), axis=1)
    with np.errstate(divide="ignore"):  # a perfect reconstruction gives -inf dB
        return 20.0 * np.log10(error / np.maximum(reference, np.finfo(np.float64).tiny))


# ---------------------------------------------------------------------------
# The phase settings, checked once for every caller
# ---------------------------------------------------------------------------

def is_integer(value):
    """Whether ``value`` is an integer (bool is an int in Python, but True is not a sensible frame size)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_real(value):
    """Whether ``value`` is a real number (not a bool)."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def check_phase_settings(phase_method=DEFAULT_PHASE_METHOD, n_iter=DEFAULT_N_ITER, momentum=DEFAULT_MOMENTUM,
                         phase_init=DEFAULT_PHASE_INIT, seed=DEFAULT_SEED,
                         names=("phase_method", "n_iter", "momentum", "phase_init", "seed")):
    """Raise ValueError naming the first phase setting that cannot work.

    Parameters
    ----------
    phase_method : {"griffinlim", "zero_phase"}
    n_iter : int
        Griffin-Lim iterations, >= 0 (0 inverts the initial phase directly).
    momentum : float
        Fast Griffin-Lim momentum, in [0, 1]; 0 is the classic algorithm.
    phase_init : {"pghi", "random", "zeros"}
    seed : int
        Seed of the random phases, >= 0.
    names : sequence of str
        What the message calls the five settings (a script's setting names).
    """
    method_name, n_iter_name, momentum_name, init_name, seed_name = names
    if phase_method not in PHASE_METHODS:
        raise ValueError(f"{method_name} must be one of {PHASE_METHODS}, got {phase_method!r}")
    if not is_integer(n_iter) or n_iter < 0:
        raise ValueError(f"{n_iter_name} must be an integer >= 0, got {n_iter!r}")
    if not is_real(momentum) or not 0.0 <= momentum <= 1.0:
        # Above 1 the extrapolation can diverge (librosa warns likewise).
        raise ValueError(f"{momentum_name} must be a number between 0 and 1, got {momentum!r}")
    if phase_init not in PHASE_INITS:
        raise ValueError(f"{init_name} must be one of {PHASE_INITS}, got {phase_init!r}")
    if not is_integer(seed) or seed < 0:
        raise ValueError(f"{seed_name} must be an integer >= 0, got {seed!r}")


def check_phase_config(config):
    """Check a script's PHASE_METHOD, GRIFFIN_LIM_ITERATIONS and GRIFFIN_LIM_MOMENTUM up front.

    Raises
    ------
    configurator.PipelineError
        Naming the setting, before any model is loaded.
    """
    try:
        check_phase_settings(config.PHASE_METHOD, config.GRIFFIN_LIM_ITERATIONS, config.GRIFFIN_LIM_MOMENTUM,
                             names=("PHASE_METHOD", "GRIFFIN_LIM_ITERATIONS", "GRIFFIN_LIM_MOMENTUM", "", ""))
    except ValueError as error:
        raise PipelineError(str(error)) from None
