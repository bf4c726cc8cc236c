"""Audio to normalised log-spectrograms, and back to dB: the steps every script shares.

``Loader`` (any format soundfile reads, mono, resampled), ``Padder`` (an exact
length, a smooth fade where a sound is cut), ``LogSpectrogramExtractor`` (the
log-magnitude STFT in dB) and ``MinMaxNormaliser`` (to [0, 1] and back) are the
tutorial's steps. preprocess.py runs them over a folder; ``spectrogram_of_file``
runs them over one file given to generate.py, exactly as preprocessing does;
``wav_spectrogram_db`` is what every picture of a written sound shows.
"""

import math
import os
from pathlib import Path
from typing import Final

import librosa
import numpy as np
import soundfile as sf

from soundkit.errors import PipelineError
from soundkit.fileio import first_line
from soundkit.stft import stft

AMIN: Final = 1e-5                             # smallest magnitude before log: -100 dB
FILE_RATE_RANGE: Final = (1000, 1_000_000)     # Hz; a header outside it is damaged, not audio
RESAMPLE_MARGIN: Final = 0.05                  # seconds read past the part kept, so resampling its end is exact


def fade_out_curve(length):
    """A raised-cosine fade from 1 to 0 over ``length`` samples (float32), so a sound ends without a click."""
    return (0.5 + 0.5 * np.cos(np.linspace(0.0, np.pi, length))).astype(np.float32)

class Loader:
    """Loads an audio file as a mono float32 signal at the target sample rate.

    Only the first ``max_duration`` seconds are decoded (all of the file when it
    is None), so a ten-minute loop costs no more than a one-shot.
    """

    def __init__(self, sample_rate, max_duration=None):
        self.sample_rate = sample_rate
        self.max_duration = max_duration

    def load(self, path):
        """Return the signal, or raise ValueError with the reason the file cannot be used."""
        seconds = None if self.max_duration is None else self.max_duration + RESAMPLE_MARGIN
        signal, file_rate = self.read(path, seconds)
        if signal.shape[1] == 1:
            signal = signal[:, 0]
        else:  # in float64, so that loud float files cannot overflow
            signal = signal.mean(axis=1, dtype=np.float64).astype(np.float32)
        if file_rate != self.sample_rate:
            # Silence after the end gives the resampling filter room to ring out; without it
            # the last samples, or all of a file shorter than one target sample, come out as 0.
            length = max(1, math.ceil(len(signal) * self.sample_rate / file_rate))
            signal = np.pad(signal, (0, int(RESAMPLE_MARGIN * file_rate)))
            signal = librosa.resample(signal, orig_sr=file_rate, target_sr=self.sample_rate)[:length]
        return signal.astype(np.float32)

    @staticmethod
    def read(path, seconds=None):
        """(samples, channels) float32 of the first ``seconds`` (None: all) and the file's own rate.

        Raises ValueError with the reason the file cannot be used.
        """
        if os.path.getsize(path) == 0:
            raise ValueError("empty file (0 bytes)")
        try:  # libsndfile: WAV (any bit depth, WAVE_EXTENSIBLE), FLAC, OGG, AIFF, MP3 and more
            # As bytes on POSIX: soundfile cannot open a str name holding non-UTF-8 bytes.
            name = os.fsencode(path) if os.name == "posix" else str(path)
            with sf.SoundFile(name) as sound:
                file_rate = sound.samplerate
                if not FILE_RATE_RANGE[0] <= file_rate <= FILE_RATE_RANGE[1]:
                    raise ValueError(f"damaged header: sample rate {file_rate} Hz")
                frames = -1 if seconds is None else int(seconds * file_rate)
                signal = sound.read(frames, dtype="float32", always_2d=True)
        except Exception as error:
            message = first_line(error).replace(f"Error opening {name!r}: ", "")
            if "not a regular file" in message:  # what libsndfile says of some unknown formats
                message = "format not recognised"
            raise ValueError(f"unreadable audio ({message})") from None
        if signal.size == 0:
            raise ValueError("empty: no samples")
        if not np.all(np.isfinite(signal)):
            raise ValueError("contains NaN or infinite samples")
        return signal, file_rate


class Padder:
    """Pads a signal with silence, or cuts it, to an exact number of samples.

    A cut sound is faded out over its last ``fade_samples`` (a raised cosine),
    so a ringing tail ends smoothly instead of with a click.
    """

    def __init__(self, num_samples, fade_samples=0):
        self.num_samples = num_samples
        self.fade = fade_out_curve(min(fade_samples, num_samples))

    def fix_length(self, signal):
        if len(signal) > self.num_samples:
            signal = signal[: self.num_samples].copy()
            if len(self.fade):
                signal[-len(self.fade):] *= self.fade
            return signal
        return np.pad(signal, (0, self.num_samples - len(signal)))

    def split(self, signal, max_clips):
        """Cut a long signal into consecutive clips; the last one is padded."""
        starts = range(0, len(signal), self.num_samples)[:max_clips]
        return [self.fix_length(signal[start:]) for start in starts]


def onset_sample(signal, onset_db, pre_roll_samples):
    """Index where a clip aligned to its attack starts: the first sample within ``onset_db`` of the
    peak, minus the pre-roll (0 for a signal that is silent throughout)."""
    magnitude = np.abs(signal)
    peak = float(magnitude.max()) if len(signal) else 0.0
    if peak <= 0:
        return 0
    first = int(np.argmax(magnitude >= peak * 10 ** (onset_db / 20)))
    return max(0, first - pre_roll_samples)


def clips_of_signal(signal, params):
    """The clips preprocess.py makes of a loaded signal (aligned to its attack, cut or split, faded).

    One function, used by preprocessing and by ``spectrogram_of_file`` for the audio files generate.py is given.
    """
    pieces = params["max_clips_per_file"] if params["long_files"] == "split" else 1
    if params["align_onsets"]:
        signal = signal[onset_sample(signal, params["onset_db"], round(params["pre_roll"] * params["sample_rate"])):]
    padder = Padder(params["num_samples"], round(params["fade_out"] * params["sample_rate"]))
    return padder.split(signal, pieces) if pieces > 1 else [padder.fix_length(signal)]


class LogSpectrogramExtractor:
    """Computes the log-magnitude STFT in dB, without the Nyquist row."""

    def __init__(self, frame_size, hop_length, top_db):
        self.frame_size = frame_size
        self.hop_length = hop_length
        self.top_db = top_db

    def extract(self, signals):
        """dB spectrogram(s) of a signal (samples,) or of equal-length signals (clips, samples).

        Each clip keeps TOP_DB below its own peak, so a batch gives exactly what
        one call per clip would, only faster.
        """
        stft = librosa.stft(signals, n_fft=self.frame_size, hop_length=self.hop_length)[..., :-1, :]
        spectrogram_db = librosa.amplitude_to_db(np.abs(stft), ref=1.0, amin=AMIN, top_db=None)
        return np.maximum(spectrogram_db, spectrogram_db.max(axis=(-2, -1), keepdims=True) - self.top_db)


class MinMaxNormaliser:
    """Scales each spectrogram to [0, 1] and back, with its own min and max.

    ``denormalise`` is the one place where normalised values become dB again:
    generation, evaluation and every picture use it.
    """

    def __init__(self, min_val=0.0, max_val=1.0):
        self.min_val = min_val
        self.max_val = max_val

    def normalise(self, array):
        array_min, array_max = float(array.min()), float(array.max())
        if not array_max > array_min:
            raise ValueError("constant spectrogram: cannot normalise (silent clip?)")
        norm = (array - array_min) / (array_max - array_min)
        return (norm * (self.max_val - self.min_val) + self.min_val).astype(np.float32), array_min, array_max

    def denormalise(self, norm, original_min, original_max):
        """dB values of normalised spectrogram(s): ``original_min`` and ``original_max`` are a clip's own
        (from clips.json), a scalar or one per spectrogram of a batch."""
        original_min = np.reshape(original_min, (-1,) + (1,) * (np.ndim(norm) - 1))
        original_max = np.reshape(original_max, (-1,) + (1,) * (np.ndim(norm) - 1))
        array = (norm - self.min_val) / (self.max_val - self.min_val)
        return array * (original_max - original_min) + original_min


def spectrogram_of_file(path, params):
    """Normalised log-spectrogram of an audio file, made exactly as preprocess.py makes them.

    Parameters
    ----------
    path : path-like
        Any audio file soundfile reads; it is resampled, mixed to mono and cut
        or padded to the model's duration.
    params : dict
        The model's spectrogram parameters (``params.json``).

    Returns
    -------
    spectrogram : numpy.ndarray
        (frame_size // 2, frames) float32 values in [0, 1].
    min_db, max_db : float
        The dB values that 0 and 1 stand for.

    Raises
    ------
    PipelineError
        When the file does not exist or cannot be used (unreadable, silent).
    """
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"no audio file at {path}")
    try:
        signal = clips_of_signal(Loader(params["sample_rate"]).load(path), {**params, "long_files": "cut"})[0]
        spectrogram_db = LogSpectrogramExtractor(params["frame_size"], params["hop_length"],
                                                 params["top_db"]).extract(signal)
        return MinMaxNormaliser(0.0, 1.0).normalise(spectrogram_db)
    except ValueError as error:
        raise PipelineError(f"cannot use {path}: {error}") from None


def wav_spectrogram_db(wav_path, params):
    """Spectrogram of a WAV file in dB relative to its loudest bin, from 0 down to -80 dB.

    What every picture of a sound shows (plot_spectrograms.py, the listening page),
    with the project's own STFT (``stft.stft``, librosa's conventions).

    Parameters
    ----------
    wav_path : path-like
        Any audio file soundfile reads; mixed to mono and, when its rate is not
        the model's, resampled to it.
    params : dict
        The model's spectrogram parameters (sample_rate, frame_size, hop_length).

    Returns
    -------
    numpy.ndarray
        (frame_size // 2 + 1, frames) float32 dB values.
    """
    signal = Loader(params["sample_rate"]).load(wav_path)  # mono; resampled only when the rates differ
    magnitude = np.abs(stft(signal, params["frame_size"], params["hop_length"]))
    peak = float(magnitude.max()) if magnitude.size else 0.0
    if peak == 0.0:  # a silent file: an even floor
        return np.full(magnitude.shape, -80.0, dtype=np.float32)
    spectrogram_db = 20 * np.log10(np.maximum(magnitude, 1e-5) / max(peak, 1e-5))
    return np.maximum(spectrogram_db, -80.0).astype(np.float32)


KNOB_DESCRIPTORS: Final = ("brightness", "length", "attack", "pitch")
# Bumped whenever a descriptor's definition changes, so knobs fitted to the old ones are fitted again.
DESCRIPTORS_VERSION: Final = 3
# The knobs generate.py and explore.py offer (each one a setting of generate.py): every one fitted, since each
# follows on a real kit (README, "Variations, the pack and the knobs").
OFFERED_KNOBS: Final = KNOB_DESCRIPTORS
ATTACK_SECONDS: Final = 0.02      # the hit's first moments, against ...
BODY_SECONDS: Final = 0.1         # ... what follows them, up to this time after the attack
PITCH_MAX_HZ: Final = 1000.0


def _crossing(curve_db, level_db):
    """Per row of ``curve_db`` (falling curves, in frames): where it first falls to ``level_db``, in
    fractional frames (linear between frames); the last frame when it never does."""
    below = curve_db <= level_db
    first = np.where(below.any(axis=1), np.argmax(below, axis=1), curve_db.shape[1] - 1)
    before = np.maximum(first - 1, 0)
    rows = np.arange(len(curve_db))
    high, low = curve_db[rows, before], curve_db[rows, first]
    fraction = np.where(high > low, (high - level_db) / np.maximum(high - low, 1e-12), 0.0)
    return before + np.clip(fraction, 0.0, 1.0) * (first > 0)


def sound_descriptors(spectrograms_db, params):
    """What the knobs turn, measured on dB spectrograms (clips, bins, frames), one row per clip.

    Columns (``KNOB_DESCRIPTORS``), each a smooth function of the spectrogram so a
    small change of the sound is a small change of the figure:

    - brightness: log2 of the spectral centroid (Hz), energy-weighted over the whole clip;
    - length: seconds from the attack (the first frame within 40 dB of the loudest) to
      -60 dB, extrapolated from the first 20 dB of the Schroeder decay curve (the energy
      still to come), as a reverberation time is measured: a noise floor or the end of
      the clip do not hide it;
    - attack: how much the hit's first ``ATTACK_SECONDS`` stand out, in dB, from the
      mean level of the rest of its first ``BODY_SECONDS`` (a sharp click against a soft swell);
    - pitch: where the energy below ``PITCH_MAX_HZ`` lies in the first ``BODY_SECONDS``,
      as the energy-weighted mean of log2 frequency (Hz): the tuning of a kick or a tom
      (of little meaning for noisy sounds). Unlike the strongest partial, it does not
      jump from one of a drum's modes to another.

    Returns
    -------
    numpy.ndarray
        (clips, 4) float64.
    """
    spectrograms_db = np.asarray(spectrograms_db, dtype=np.float64)
    if spectrograms_db.ndim == 4:
        spectrograms_db = spectrograms_db[..., 0]
    rate, frame_size, hop = params["sample_rate"], params["frame_size"], params["hop_length"]
    frame_seconds = hop / rate
    frequencies = np.arange(spectrograms_db.shape[1]) * rate / frame_size
    power = 10.0 ** (spectrograms_db / 10.0)
    centroid = (power * frequencies[None, :, None]).sum(axis=(1, 2)) / power.sum(axis=(1, 2))
    energy = power.sum(axis=1)                                           # (clips, frames)
    energy_db = 10 * np.log10(energy)
    frames = np.arange(energy.shape[1])
    onset = np.argmax(energy_db >= energy_db.max(axis=1, keepdims=True) - 40.0, axis=1)
    after = frames[None, :] >= onset[:, None]                            # from the attack on
    remaining = np.cumsum((energy * after)[:, ::-1], axis=1)[:, ::-1]     # Schroeder: energy still to come
    decay_db = 10 * np.log10(np.maximum(remaining, 1e-30) / remaining[np.arange(len(energy)), onset][:, None])
    decay_db[~after] = 0.0
    length = 3.0 * (_crossing(decay_db, -20.0) - onset) * frame_seconds
    attack_frames = max(1, int(round(ATTACK_SECONDS / frame_seconds)))
    body_frames = max(attack_frames + 1, int(round(BODY_SECONDS / frame_seconds)))
    since = frames[None, :] - onset[:, None]
    head = (since >= 0) & (since < attack_frames)
    body = (since >= attack_frames) & (since < body_frames)
    mean_db = [10 * np.log10(np.maximum((energy * part).sum(axis=1), 1e-30) / np.maximum(part.sum(axis=1), 1))
               for part in (head, body)]
    attack = mean_db[0] - mean_db[1]
    early = (since >= 0) & (since < body_frames)
    low = (frequencies > 0) & (frequencies < PITCH_MAX_HZ)             # not the DC bin
    low_power = (power * early[:, None, :]).sum(axis=2)[:, low]          # (clips, low bins)
    pitch = (low_power * np.log2(frequencies[low])).sum(axis=1) / np.maximum(low_power.sum(axis=1), 1e-30)
    return np.stack([np.log2(np.maximum(centroid, 1.0)), length, attack, pitch], axis=1)
