"""Turn normalised log-magnitude spectrograms back into audio, ready for a sampler.

The preprocessing of this project stores, for every clip, a log-magnitude
STFT spectrogram squeezed into [0, 1]::

    stft      = librosa.stft(signal, n_fft=frame_size, hop_length=hop_length)
    magnitude = np.abs(stft)[:-1]            # Nyquist row dropped
    db        = librosa.amplitude_to_db(magnitude, ref=1.0, amin=1e-5, top_db=80.0)
    norm      = (db - db.min()) / (db.max() - db.min())

Going back to audio takes three steps (``SoundGenerator``):

1. *denormalise*: undo the min-max scaling with the stored (min, max), with
   ``spectrogram.MinMaxNormaliser.denormalise``, the one place that formula lives;
2. *dB to magnitude*: undo the decibels and put back the dropped Nyquist row
   (as zeros, its value is lost);
3. *phase reconstruction*: PGHI and fast Griffin-Lim, in ``phase.py``.

``finish_for_sampler`` then makes each sound ready to drop into a sampler, and
``write_wavs`` writes them.
"""

from pathlib import Path

import numpy as np
import soundfile as sf

from soundkit.fileio import atomic_write, safe_name
from soundkit.phase import (DEFAULT_MOMENTUM, DEFAULT_N_ITER, DEFAULT_PHASE_INIT, DEFAULT_PHASE_METHOD, DEFAULT_SEED,
                   check_phase_settings, griffin_lim, is_integer)
from soundkit.spectrogram import MinMaxNormaliser, fade_out_curve
from soundkit.stft import istft


def full_range(normalised):
    """Stretch each spectrogram of a batch to span exactly [0, 1], as preprocessing makes every clip.

    A decoder's output is a little blurred: its loudest bin stays below 1 and
    its floor above 0. Undone with the clip's dB range as it is, the sound's
    peak would then sit less than TOP_DB above its floor, and the noise floor
    would rise by as much as the peak fell (heard as the "quiet noise" of an
    unstretched model). A real clip's spectrogram is returned unchanged.
    """
    normalised = np.asarray(normalised, dtype=np.float32)
    axes = tuple(range(1, normalised.ndim))
    low = normalised.min(axis=axes, keepdims=True)
    span = normalised.max(axis=axes, keepdims=True) - low
    return np.where(span > 0, (normalised - low) / np.maximum(span, 1e-12), normalised)


def finish_for_sampler(signal, sample_rate, peak_dbfs=-1.0, normalize=True, trim_db=-60.0, fade_seconds=0.01):
    """Make a decoded sound ready for a sampler: no DC offset, no trailing silence, a short fade, a set peak.

    Parameters
    ----------
    signal : numpy.ndarray
        Mono float signal.
    sample_rate : int
        Hz, for the fade length.
    peak_dbfs : float
        The peak level, dBFS. With ``normalize`` every sound is brought to it;
        without, louder sounds are only turned down to it (never clipped).
    trim_db : float
        Samples after the last one within this many dB of the peak are cut off.
    fade_seconds : float
        A raised-cosine fade over the last samples kept, so the end never clicks.

    Returns
    -------
    numpy.ndarray
        float32; silence stays silence (all zeros).
    """
    signal = np.asarray(signal, dtype=np.float64)
    signal = signal - signal.mean() if len(signal) else signal
    peak = float(np.max(np.abs(signal))) if len(signal) else 0.0
    if peak <= 0:
        return np.zeros(len(signal), dtype=np.float32)
    loud = np.flatnonzero(np.abs(signal) >= peak * 10 ** (trim_db / 20))
    fade = min(int(round(fade_seconds * sample_rate)), len(signal))
    end = min(len(signal), int(loud[-1]) + 1 + fade)  # the fade runs over what lies below trim_db
    signal = signal[:end].copy()
    if fade:
        signal[-fade:] *= fade_out_curve(fade)
    peak = float(np.max(np.abs(signal)))
    target = 10 ** (peak_dbfs / 20)
    if normalize or peak > target:
        signal *= target / peak
    return signal.astype(np.float32)


WAV_SUBTYPES = {16: "PCM_16", 24: "PCM_24", 32: "FLOAT"}


def write_wavs(signals, names, folder, sample_rate, config):
    """Write signals as WAVs ready for a sampler (see ``soundgenerator.finish_for_sampler``).

    ``config`` holds PEAK_DBFS, NORMALIZE, BIT_DEPTH, TRIM_DB and END_FADE. Names are
    sanitised and made unique, also where case is ignored (macOS, Windows); nothing is
    written outside ``folder``. Each file is written whole under a temporary name and
    then moved into place, so a crash never leaves a half-written WAV under its name.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths, taken = [], set()
    for signal, name in zip(signals, names):
        stem = safe_name(name)
        while stem.casefold() in taken:  # two ids that sanitise to one name, or differ only in case
            stem += "_"
        taken.add(stem.casefold())
        finished = finish_for_sampler(signal, sample_rate, config.PEAK_DBFS, config.NORMALIZE,
                                      config.TRIM_DB, config.END_FADE)
        paths.append(atomic_write(folder / (stem + ".wav"), _wav_writer(finished, sample_rate, config.BIT_DEPTH)))
    return paths


def _wav_writer(signal, sample_rate, bit_depth):
    def write(tmp_name):
        sf.write(tmp_name, signal, sample_rate, subtype=WAV_SUBTYPES[bit_depth], format="WAV")
    return write


DEFAULT_FLOOR_GATE_DB = 3.0   # measured: benchmarks/README.md, "Realism on the real kit"


class SoundGenerator:
    """Turns normalised log-spectrograms into audio (denormalise, dB to magnitude, phase reconstruction).

    Parameters
    ----------
    sample_rate : int
        Sample rate of the audio, in Hz (kept for saving the audio).
    frame_size : int
        FFT size / window length used in preprocessing (``n_fft``).
    hop_length : int
        Hop used in preprocessing, 1 <= hop_length <= frame_size.
    phase_method : {"griffinlim", "zero_phase"}
        "griffinlim": fast Griffin-Lim, the default.  "zero_phase": the
        original tutorial's inverse STFT with all phases zero, kept only for
        comparison (it sounds buzzy and metallic).
    n_iter : int
        Griffin-Lim iterations (>= 0; 0 inverts the initial phase directly).
    momentum : float
        Fast Griffin-Lim momentum, in [0, 1]; 0 is the classic algorithm.
    phase_init : {"pghi", "random", "zeros"}
        Starting phase of Griffin-Lim.
    seed : int
        Seed of the random phases (>= 0); the output is deterministic.
    floor_gate_db : float
        Bins at the clip's floor are silenced, with a ramp to full level over
        this many dB above it (see ``floor_gate``); 0 turns the gate off.

    Examples
    --------
    >>> generator = SoundGenerator(22050, 512, 256)
    >>> audio = generator.convert_spectrograms_to_audio(normalised, mins, maxs)
    """

    def __init__(self, sample_rate, frame_size, hop_length, phase_method=DEFAULT_PHASE_METHOD,
                 n_iter=DEFAULT_N_ITER, momentum=DEFAULT_MOMENTUM,
                 phase_init=DEFAULT_PHASE_INIT, seed=DEFAULT_SEED, floor_gate_db=DEFAULT_FLOOR_GATE_DB):
        if not is_integer(sample_rate) or sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
        if not is_integer(frame_size) or frame_size < 2:
            raise ValueError(f"frame_size must be an integer >= 2, got {frame_size!r}")
        if not is_integer(hop_length) or not 1 <= hop_length <= frame_size:
            raise ValueError(
                f"hop_length must be an integer between 1 and frame_size={frame_size}, "
                f"got {hop_length!r}")
        check_phase_settings(phase_method, n_iter, momentum, phase_init, seed)
        if not isinstance(floor_gate_db, (int, float)) or not 0 <= floor_gate_db <= 40:
            raise ValueError(f"floor_gate_db must be from 0 to 40 dB, got {floor_gate_db!r}")
        self.sample_rate = int(sample_rate)
        self.frame_size = int(frame_size)
        self.hop_length = int(hop_length)
        self.phase_method = phase_method
        self.n_iter = int(n_iter)
        self.momentum = float(momentum)
        self.phase_init = phase_init
        self.seed = int(seed)
        self.floor_gate_db = float(floor_gate_db)

    @classmethod
    def from_params(cls, params, **phase_settings):
        """A generator for the spectrograms of a ``params.json`` (its sample_rate, frame_size and hop_length)."""
        return cls(params["sample_rate"], params["frame_size"], params["hop_length"], **phase_settings)

    # -- shapes ------------------------------------------------------------

    def _as_batch(self, spectrograms, n_rows, name):
        """Float32 array (batch, n_rows, T); squeezes a trailing channel axis."""
        spectrograms = np.asarray(spectrograms, dtype=np.float32)
        if spectrograms.ndim == 4 and spectrograms.shape[-1] == 1:
            spectrograms = spectrograms[..., 0]  # the model's channel axis
        if spectrograms.ndim != 3 or spectrograms.shape[1] != n_rows or spectrograms.shape[2] < 1:
            raise ValueError(
                f"{name} must have shape (batch, {n_rows}, time_frames) for "
                f"frame_size={self.frame_size} (optionally with a trailing axis of 1), "
                f"got shape {spectrograms.shape}")
        return spectrograms

    # -- the three steps -----------------------------------------------------

    def denormalise(self, normalised, min_values, max_values):
        """Undo the per-clip min-max normalisation.

        Parameters
        ----------
        normalised : array_like
            Spectrograms in [0, 1], (batch, frame_size // 2, T) or with a
            trailing axis of 1.
        min_values, max_values : float or array_like
            The dB minimum and maximum of each clip: scalars (the same for
            all clips) or arrays of length batch.

        Returns
        -------
        numpy.ndarray
            float32 dB spectrograms (batch, frame_size // 2, T).
        """
        normalised = self._as_batch(normalised, self.frame_size // 2, "normalised")
        batch = normalised.shape[0]
        bounds = []
        for name, values in (("min_values", min_values), ("max_values", max_values)):
            values = np.asarray(values, dtype=np.float32)
            if values.ndim == 0:
                values = np.full(batch, values)
            values = values.reshape(-1)
            if values.shape != (batch,):
                raise ValueError(
                    f"{name} must be a scalar or have one value per clip ({batch}), "
                    f"got {values.shape[0]} values")
            bounds.append(values)
        return MinMaxNormaliser().denormalise(normalised, *bounds)

    def db_to_magnitude(self, spectrogram_db):
        """Decibels (ref 1.0) to magnitude, with the dropped Nyquist row put back.

        Parameters
        ----------
        spectrogram_db : array_like
            (batch, frame_size // 2, T) dB spectrograms, or with a trailing
            axis of 1.

        Returns
        -------
        numpy.ndarray
            float32 magnitudes (batch, frame_size // 2 + 1, T); the last
            (Nyquist) row is zero, its value was dropped in preprocessing.
        """
        spectrogram_db = self._as_batch(spectrogram_db, self.frame_size // 2, "spectrogram_db")
        batch, n_rows, n_frames = spectrogram_db.shape
        magnitudes = np.zeros((batch, n_rows + 1, n_frames), dtype=np.float32)
        # Inverse of amplitude_to_db(ref=1.0): 20 log10(magnitude).
        np.power(np.float32(10.0), spectrogram_db / np.float32(20.0), out=magnitudes[:, :n_rows])
        return magnitudes

    def magnitude_to_audio(self, magnitudes):
        """Reconstruct a phase and invert the STFT, for the whole batch at once.

        Parameters
        ----------
        magnitudes : array_like
            (batch, frame_size // 2 + 1, T) magnitudes, or with a trailing
            axis of 1.

        Returns
        -------
        numpy.ndarray
            float32 audio (batch, (T - 1) * hop_length).
        """
        magnitudes = self._as_batch(magnitudes, self.frame_size // 2 + 1, "magnitudes")
        if self.phase_method == "zero_phase":
            return istft(magnitudes.astype(np.complex64), self.frame_size, self.hop_length)
        return griffin_lim(magnitudes, self.frame_size, self.hop_length, n_iter=self.n_iter,
                           momentum=self.momentum, phase_init=self.phase_init, seed=self.seed)

    def convert_spectrograms_to_audio(self, normalised, min_values, max_values):
        """Normalised log-spectrograms to audio: the three steps in a row.

        Parameters
        ----------
        normalised : array_like
            (batch, frame_size // 2, T) spectrograms in [0, 1], or with a
            trailing axis of 1 (the model's output).
        min_values, max_values : float or array_like
            Each clip's dB minimum and maximum stored in preprocessing.
            A decoded spectrogram is first stretched to span [0, 1], as every
            training spectrogram does (see ``full_range``).

        Returns
        -------
        numpy.ndarray
            float32 audio (batch, (T - 1) * hop_length).
        """
        spectrogram_db = self.denormalise(full_range(normalised), min_values, max_values)
        magnitudes = self.db_to_magnitude(spectrogram_db)
        if self.floor_gate_db > 0:
            magnitudes[:, :-1] *= self.floor_gate(spectrogram_db)
        return self.magnitude_to_audio(magnitudes)

    def floor_gate(self, spectrogram_db):
        """Weights in [0, 1] that silence each clip's floor: 0 at the floor, 1 from ``floor_gate_db`` above it.

        Preprocessing clamps every bin at TOP_DB below the clip's peak, so a silent
        bin comes back at that floor, not at zero. A clip has hundreds of bins: at
        -80 dB each, together they make a hiss about -53 dB below the peak that
        lasts to the end of the clip, and a tail that never reaches -60 dB.
        """
        floor = spectrogram_db.min(axis=(1, 2), keepdims=True)
        return np.clip((spectrogram_db - floor) / np.float32(self.floor_gate_db), 0.0, 1.0)
