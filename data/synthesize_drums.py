"""Deterministic synthesizer for the built-in demo data set of drum one-shots (kick, snare, hihat, clap, tom)."""

import argparse
import pathlib

import numpy as np
import soundfile as sf

DRUM_CLASSES = ("kick", "snare", "hihat", "clap", "tom")

DEFAULT_SAMPLE_RATE = 22050
DEFAULT_DURATION = 0.74  # seconds per clip
DEFAULT_CLIPS_PER_CLASS = 60
DEFAULT_OUTPUT_DIR = pathlib.Path(__file__).resolve().parent / "audio"
MIN_SAMPLE_RATE = 8000

MAX_ONSET_JITTER = 0.005  # seconds of silence allowed before the hit starts
ATTACK_TIME = 0.0007  # seconds; a tiny ramp so the onset does not click
FADE_OUT_TIME = 0.02  # seconds of fade at the end of every clip
DC_WINDOW_DECAY = 0.2  # seconds; decay of the smooth window used to remove DC
PEAK_DBFS_RANGE = (-6.0, -1.0)  # each clip is peak-normalised to a level in here

# Frequencies (Hz) of the six square-wave oscillators of the classic TR-808
# cymbal/hihat circuit; their inharmonic mix sounds metallic.
HIHAT_SQUARE_FREQS = np.array([205.3, 304.4, 369.6, 522.7, 540.0, 800.0])
OPEN_HIHAT_PROBABILITY = 0.25


# ---------------------------------------------------------------------------
# Small building blocks
# ---------------------------------------------------------------------------

def _decay(t, time_constant):
    """Exponential decay exp(-t / time_constant) that is zero before the onset (t < 0)."""
    return np.where(t >= 0, np.exp(-np.maximum(t, 0.0) / time_constant), 0.0)


def _sweep_phase(t, start_freq, end_freq, sweep_time):
    """Phase (radians) of a sine whose frequency glides exponentially from start_freq to end_freq.

    The instantaneous frequency is end + (start - end) * exp(-t / sweep_time);
    the phase is its integral, written out in closed form.
    """
    t = np.maximum(t, 0.0)
    glide = (start_freq - end_freq) * sweep_time * (1.0 - np.exp(-t / sweep_time))
    return 2.0 * np.pi * (end_freq * t + glide)


def _filtered_noise(rng, n_samples, sample_rate, low_cut=None, high_cut=None, order=2, tilt=0.0):
    """White noise shaped in the frequency domain, scaled to unit RMS.

    low_cut / high_cut give Butterworth-like high-pass / low-pass slopes
    (``order`` sets the steepness); ``tilt`` multiplies the spectrum by
    (f / 1 kHz) ** tilt, so negative values make the noise darker.
    """
    spectrum = np.fft.rfft(rng.standard_normal(n_samples))
    freqs = np.fft.rfftfreq(n_samples, d=1.0 / sample_rate)
    gain = np.ones_like(freqs)
    if low_cut is not None:
        ratio = (freqs / low_cut) ** order
        gain *= ratio / np.sqrt(1.0 + ratio**2)
    if high_cut is not None:
        gain /= np.sqrt(1.0 + (freqs / high_cut) ** (2 * order))
    if tilt:
        gain *= (np.maximum(freqs, 100.0) / 1000.0) ** tilt
    noise = np.fft.irfft(spectrum * gain, n=n_samples)
    return _unit_rms(noise)


def _unit_rms(signal):
    """Scale a signal to an RMS of 1 (silence is returned unchanged)."""
    rms = np.sqrt(np.mean(signal**2))
    return signal / rms if rms > 0 else signal


def _limit(freq, sample_rate, fraction=0.8):
    """Keep a filter cut-off safely below the Nyquist frequency."""
    return min(freq, fraction * sample_rate / 2.0)


# ---------------------------------------------------------------------------
# One function per drum class. Each gets the time since the onset for every
# sample (negative before the hit) and returns the raw, un-normalised sound.
# ---------------------------------------------------------------------------

def _kick(rng, t, sample_rate):
    """Sine with a fast downward pitch sweep, a short click and gentle saturation."""
    start_freq = rng.uniform(120.0, 180.0)
    end_freq = rng.uniform(42.0, 60.0)
    body = np.sin(_sweep_phase(t, start_freq, end_freq, rng.uniform(0.025, 0.06)))
    body *= _decay(t, rng.uniform(0.12, 0.3))

    click_noise = _filtered_noise(rng, len(t), sample_rate, low_cut=1000.0,
                                  high_cut=_limit(rng.uniform(3000.0, 5000.0), sample_rate))
    click = rng.uniform(0.04, 0.15) * click_noise * _decay(t, rng.uniform(0.001, 0.003))

    drive = rng.uniform(1.0, 2.5)
    return np.tanh(drive * (body + click)) / np.tanh(drive)


def _snare(rng, t, sample_rate):
    """Two tuned drum-head modes plus band-passed noise for the snare wires."""
    body_freq = rng.uniform(180.0, 250.0)
    body_decay = rng.uniform(0.04, 0.1)
    body = np.sin(_sweep_phase(t, body_freq * 1.15, body_freq, 0.01)) * _decay(t, body_decay)
    body += rng.uniform(0.3, 0.6) * np.sin(2 * np.pi * body_freq * 1.59 * np.maximum(t, 0.0)) \
        * _decay(t, body_decay * 0.6)

    wires = _filtered_noise(rng, len(t), sample_rate,
                            low_cut=_limit(rng.uniform(800.0, 2000.0), sample_rate),
                            high_cut=_limit(rng.uniform(5000.0, 8000.0), sample_rate),
                            tilt=rng.uniform(-0.6, 0.1))
    wires *= rng.uniform(0.7, 1.3) * _decay(t, rng.uniform(0.07, 0.18))
    return body + wires


def _hihat(rng, t, sample_rate):
    """Six detuned square waves plus noise, high-passed so almost all energy sits above ~6 kHz."""
    n_samples = len(t)
    t_pos = np.maximum(t, 0.0)
    freqs = HIHAT_SQUARE_FREQS * rng.uniform(0.9, 1.3)
    phases = rng.uniform(0.0, 2.0 * np.pi, size=len(freqs))
    squares = np.sign(np.sin(2 * np.pi * freqs[:, None] * t_pos[None, :] + phases[:, None])).sum(axis=0)

    # Apply the same high-pass to the metallic squares and to plain noise.
    cutoff = _limit(rng.uniform(6500.0, 8500.0), sample_rate, fraction=0.7)
    freqs_axis = np.fft.rfftfreq(n_samples, d=1.0 / sample_rate)
    ratio = (freqs_axis / cutoff) ** 4
    highpass = ratio / np.sqrt(1.0 + ratio**2)
    metal = _unit_rms(np.fft.irfft(np.fft.rfft(squares) * highpass, n=n_samples))
    noise = _filtered_noise(rng, n_samples, sample_rate, low_cut=cutoff, order=4)

    metal_share = rng.uniform(0.3, 0.7)
    tone = metal_share * metal + (1.0 - metal_share) * noise

    if rng.random() < OPEN_HIHAT_PROBABILITY:
        decay_time = rng.uniform(0.12, 0.28)  # open hat
    else:
        decay_time = rng.uniform(0.015, 0.05)  # closed hat
    return tone * _decay(t, decay_time)


def _clap(rng, t, sample_rate):
    """Three or four quick noise bursts followed by a decaying band-passed tail."""
    centre = rng.uniform(1000.0, 2000.0)
    width = rng.uniform(1.6, 2.5)  # ratio between the upper and lower cut-off
    noise = _filtered_noise(rng, len(t), sample_rate,
                            low_cut=_limit(centre / np.sqrt(width), sample_rate),
                            high_cut=_limit(centre * np.sqrt(width), sample_rate),
                            order=3, tilt=rng.uniform(-0.3, 0.3))

    envelope = np.zeros_like(t)
    burst_start = 0.0
    for _ in range(rng.integers(3, 5)):
        envelope = np.maximum(envelope, _decay(t - burst_start, rng.uniform(0.002, 0.005)))
        burst_start += rng.uniform(0.007, 0.013)
    tail = rng.uniform(0.5, 0.8) * _decay(t - burst_start, rng.uniform(0.08, 0.2))
    return noise * np.maximum(envelope, tail)


def _tom(rng, t, sample_rate):
    """Pitched sine with a small downward sweep, an overtone and a soft stick noise."""
    end_freq = rng.uniform(80.0, 300.0)
    start_freq = end_freq * rng.uniform(1.15, 1.4)
    decay_time = rng.uniform(0.15, 0.35)
    body = np.sin(_sweep_phase(t, start_freq, end_freq, rng.uniform(0.05, 0.12))) * _decay(t, decay_time)
    overtone = rng.uniform(0.15, 0.35) * np.sin(_sweep_phase(t, start_freq * 1.5, end_freq * 1.5, 0.08))
    overtone *= _decay(t, decay_time * 0.4)

    stick = _filtered_noise(rng, len(t), sample_rate, low_cut=1500.0,
                            high_cut=_limit(4000.0, sample_rate))
    stick *= rng.uniform(0.03, 0.1) * _decay(t, rng.uniform(0.002, 0.006))
    return body + overtone + stick


_SYNTHESIZERS = {"kick": _kick, "snare": _snare, "hihat": _hihat, "clap": _clap, "tom": _tom}


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------

def _check_settings(sample_rate, duration):
    """Validate sample rate and duration; return the clip length in samples."""
    if not float(sample_rate).is_integer() or sample_rate < MIN_SAMPLE_RATE:
        raise ValueError(f"sample_rate must be an integer >= {MIN_SAMPLE_RATE} Hz, got {sample_rate!r}")
    if not duration > 0:
        raise ValueError(f"duration must be > 0 seconds, got {duration!r}")
    n_samples = int(round(duration * sample_rate))
    if n_samples < 1:
        raise ValueError(f"duration {duration!r} s is shorter than one sample at {sample_rate} Hz")
    return n_samples


def synthesize_drum(kind, rng, sample_rate=DEFAULT_SAMPLE_RATE, duration=DEFAULT_DURATION):
    """Synthesize one randomised drum one-shot.

    Parameters
    ----------
    kind : str
        Drum class, one of ``DRUM_CLASSES``.
    rng : numpy.random.Generator
        Source of randomness; the same generator state gives the same sound.
    sample_rate : int, optional
        Sample rate in Hz (at least 8000). Default 22050.
    duration : float, optional
        Clip length in seconds. Default 0.74.

    Returns
    -------
    numpy.ndarray
        Mono float32 signal of length ``round(duration * sample_rate)``,
        with its onset in the first 5 ms, no DC offset, a short fade-out and
        a peak between -6 and -1 dBFS.

    Raises
    ------
    ValueError
        If ``kind`` is not a known drum class, or ``sample_rate`` /
        ``duration`` are out of range.
    """
    if kind not in _SYNTHESIZERS:
        raise ValueError(f"unknown drum kind {kind!r}; known classes are {', '.join(DRUM_CLASSES)}")
    n_samples = _check_settings(sample_rate, duration)

    # Time since the hit for every sample; negative during the short silent lead-in.
    onset = rng.integers(0, int(MAX_ONSET_JITTER * sample_rate) + 1)
    t = (np.arange(n_samples) - onset) / sample_rate

    signal = _SYNTHESIZERS[kind](rng, t, sample_rate)
    signal = signal * np.clip(t / ATTACK_TIME, 0.0, 1.0)

    # Fade out the last few milliseconds so the clip ends exactly at zero.
    fade_len = min(max(int(FADE_OUT_TIME * sample_rate), 1), n_samples)
    fade = np.ones(n_samples)
    fade[n_samples - fade_len:] = np.linspace(1.0, 0.0, fade_len)
    signal = signal * fade

    # Remove DC by subtracting a scaled smooth window that starts at the onset,
    # so the silent lead-in and the faded end stay silent.
    window = _decay(t, DC_WINDOW_DECAY) * fade
    if window.sum() > 0:
        signal = signal - (signal.sum() / window.sum()) * window

    peak = np.max(np.abs(signal))
    if peak > 0:
        target_peak = 10.0 ** (rng.uniform(*PEAK_DBFS_RANGE) / 20.0)
        signal = signal * (target_peak / peak)
    return signal.astype(np.float32)


def write_demo_drums(output_dir, clips_per_class=DEFAULT_CLIPS_PER_CLASS, sample_rate=DEFAULT_SAMPLE_RATE,
                     seed=0, duration=DEFAULT_DURATION):
    """Write the demo drum data set as 16-bit WAV files.

    Files are written to ``output_dir/<class>/<class>_<NNN>.wav``. Every clip
    uses its own generator seeded with ``[seed, class_index, clip_index]``, so
    the same arguments always produce byte-identical files.

    Parameters
    ----------
    output_dir : str or pathlib.Path
        Folder to write into; it and the class sub-folders are created.
    clips_per_class : int, optional
        Number of clips for each class in ``DRUM_CLASSES``. Default 60.
    sample_rate : int, optional
        Sample rate in Hz (at least 8000). Default 22050.
    seed : int, optional
        Seed of the whole set. Default 0.
    duration : float, optional
        Length of every clip in seconds. Default 0.74.

    Returns
    -------
    list of pathlib.Path
        The written files, sorted.

    Raises
    ------
    ValueError
        If ``clips_per_class`` < 1, ``sample_rate`` < 8000 or ``duration`` <= 0.
    """
    if int(clips_per_class) != clips_per_class or clips_per_class < 1:
        raise ValueError(f"clips_per_class must be an integer >= 1, got {clips_per_class!r}")
    _check_settings(sample_rate, duration)

    output_dir = pathlib.Path(output_dir)
    digits = max(3, len(str(clips_per_class - 1)))
    paths = []
    for class_index, kind in enumerate(DRUM_CLASSES):
        class_dir = output_dir / kind
        class_dir.mkdir(parents=True, exist_ok=True)
        for clip_index in range(int(clips_per_class)):
            rng = np.random.default_rng([seed, class_index, clip_index])
            audio = synthesize_drum(kind, rng, sample_rate=sample_rate, duration=duration)
            path = class_dir / f"{kind}_{clip_index:0{digits}d}.wav"
            sf.write(path, audio, int(sample_rate), subtype="PCM_16")
            paths.append(path)
    return sorted(paths)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Write the synthetic demo drum one-shots.")
    parser.add_argument("output_dir", nargs="?", default=DEFAULT_OUTPUT_DIR,
                        help="folder to write into (default: data/audio)")
    parser.add_argument("--clips-per-class", type=int, default=DEFAULT_CLIPS_PER_CLASS)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    written = write_demo_drums(args.output_dir, clips_per_class=args.clips_per_class, seed=args.seed)
    print(f"Wrote {len(written)} clips to {args.output_dir}")
