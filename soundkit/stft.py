"""The batched STFT and its inverse, with librosa's conventions.

A spectrogram is the magnitude of a short-time Fourier transform (STFT); turning
one back into audio needs the inverse (ISTFT).  These are our own batched
versions that follow ``librosa.stft`` and ``librosa.istft`` exactly (periodic
Hann window, centre padding with zeros, window-sum-square normalisation in the
inverse), with vectorised numpy calls over the whole batch and never a Python
loop over clips.  ``stft`` draws every picture of a sound (through
``spectrogram.wav_spectrogram_db``); ``phase.py`` builds PGHI and Griffin-Lim
on these pieces, which is why the helpers below (``overlap_add``,
``inverse_gain``, ``windowed_frames``, ``rfft``, ``irfft``, ``signal_length``,
``signals_from_spectra``) are public within the library.
"""

import numpy as np
import scipy.fft
from numpy.lib.stride_tricks import sliding_window_view


def hann_window(frame_size):
    """Periodic Hann window, as ``scipy.signal.get_window("hann", N)``.

    Parameters
    ----------
    frame_size : int
        Window length in samples.

    Returns
    -------
    numpy.ndarray
        float32 array of length ``frame_size``.
    """
    # "Periodic" means the period is frame_size (not frame_size - 1): this is
    # what makes shifted copies of the squared window add up to a constant.
    n = np.arange(frame_size)
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * n / frame_size)).astype(np.float32)


def _n_blocks(frame_size, hop_length):
    """Number of hop-sized blocks a frame spans (rounded up)."""
    return -(-frame_size // hop_length)


def overlap_add(frames, hop_length):
    """Overlap-add frames (batch, T, frame_size) into signals.

    Returns an array (batch, frame_size + hop_length * (T - 1)).  Instead of a
    loop over the T frames we cut every frame into R = ceil(frame_size / hop)
    blocks of ``hop_length`` samples: block r of frame t lands on block t + r
    of the output, so R vectorised additions of shifted slabs do the work.
    """
    batch, n_frames, frame_size = frames.shape
    n_blocks = _n_blocks(frame_size, hop_length)
    padded_size = n_blocks * hop_length
    if padded_size != frame_size:
        # hop does not divide the frame: pad every frame with zeros up to R
        # whole blocks, the zeros add nothing.
        frames = np.pad(frames, ((0, 0), (0, 0), (0, padded_size - frame_size)))
    blocks = frames.reshape(batch, n_frames, n_blocks, hop_length)
    output = np.zeros((batch, n_frames + n_blocks - 1, hop_length), dtype=frames.dtype)
    for r in range(n_blocks):
        output[:, r : r + n_frames] += blocks[:, :, r]
    output = output.reshape(batch, -1)
    return output[:, : frame_size + hop_length * (n_frames - 1)]


def _window_sum_square(frame_size, hop_length, n_frames):
    """Sum of the squared, shifted windows (the ``librosa.filters.window_sumsquare``).

    Dividing the overlap-added signal by it undoes the analysis and synthesis
    windows; its length is that of the centre-padded signal.
    """
    squared = np.broadcast_to(hann_window(frame_size) ** 2, (1, n_frames, frame_size))
    return overlap_add(np.ascontiguousarray(squared), hop_length)[0]


def inverse_gain(frame_size, hop_length, n_frames):
    """1 / window-sum-square on the centre-padded time axis, 0 on the padding.

    Multiplying an overlap-added signal by this gain performs the ISTFT's
    normalisation *and* sets the centre padding to zero in one step, which is
    exactly what an ISTFT followed by a fresh (zero-padded) STFT would see.
    """
    wss = _window_sum_square(frame_size, hop_length, n_frames)
    gain = np.zeros_like(wss)
    pad = frame_size // 2
    inside = slice(pad, len(wss) - pad)
    # librosa only divides where the sum is not (numerically) zero.
    nonzero = wss[inside] > np.finfo(np.float32).tiny
    gain[inside][nonzero] = 1.0 / wss[inside][nonzero]
    return gain


def windowed_frames(padded, frame_size, hop_length, out=None):
    """Frames (batch, T, frame_size) of centre-padded signals, times the window.

    ``sliding_window_view`` gives every frame as a view (no copy); the single
    multiplication by the window writes them into one contiguous array.
    """
    views = sliding_window_view(padded, frame_size, axis=-1)[:, ::hop_length]
    return np.multiply(views, hann_window(frame_size), out=out)


def rfft(frames, frame_size):
    """Real FFT of every frame (batch, T, frame_size) -> spectra (batch, T, F)."""
    # Along the last (contiguous) axis; float32 in, complex64 out.
    return scipy.fft.rfft(frames, n=frame_size, axis=-1)


def irfft(spectra, frame_size):
    """Inverse real FFT of spectra (batch, T, F) -> frames (batch, T, frame_size)."""
    return scipy.fft.irfft(spectra, n=frame_size, axis=-1)


def stft(signals, frame_size, hop_length):
    """Batched STFT with the conventions of ``librosa.stft`` (defaults).

    Parameters
    ----------
    signals : array_like
        Real signals, shape (batch, n_samples) or (n_samples,).
    frame_size : int
        FFT size and window length (``n_fft``).
    hop_length : int
        Samples between successive frames.

    Returns
    -------
    numpy.ndarray
        complex64 array (batch, frame_size // 2 + 1, 1 + n_samples // hop_length);
        the batch axis is dropped for a 1-D input.
    """
    signals = np.asarray(signals, dtype=np.float32)
    one_signal = signals.ndim == 1
    signals = np.atleast_2d(signals)
    pad = frame_size // 2
    padded = np.pad(signals, ((0, 0), (pad, pad)))  # zeros, like pad_mode="constant"
    spectra = rfft(windowed_frames(padded, frame_size, hop_length), frame_size)
    spectra = np.swapaxes(spectra, -1, -2)  # (batch, T, F) -> (batch, F, T)
    return spectra[0] if one_signal else spectra


def istft(stft_matrix, frame_size, hop_length):
    """Batched inverse STFT with the conventions of ``librosa.istft`` (defaults).

    Parameters
    ----------
    stft_matrix : array_like
        Complex spectra, shape (batch, frame_size // 2 + 1, T) or without the
        batch axis.
    frame_size : int
        FFT size and window length (``n_fft``).
    hop_length : int
        Samples between successive frames.

    Returns
    -------
    numpy.ndarray
        float32 signals (batch, (T - 1) * hop_length) for an even frame_size
        (one more sample for an odd one, as librosa); batch axis dropped for a
        2-D input.
    """
    stft_matrix = np.asarray(stft_matrix)
    one_signal = stft_matrix.ndim == 2
    if one_signal:
        stft_matrix = stft_matrix[np.newaxis]
    # (batch, F, T) -> (batch, T, F): each frame's spectrum contiguous.
    spectra = np.ascontiguousarray(np.swapaxes(stft_matrix, -1, -2), dtype=np.complex64)
    signals = signals_from_spectra(spectra, frame_size, hop_length)
    return signals[0] if one_signal else signals


def signal_length(frame_size, hop_length, n_frames):
    """Samples of the ISTFT: centre-padded length minus the padding.

    That is (n_frames - 1) * hop_length for an even frame_size.
    """
    return frame_size + hop_length * (n_frames - 1) - 2 * (frame_size // 2)


def signals_from_spectra(spectra, frame_size, hop_length):
    """ISTFT of spectra laid out (batch, T, F); returns (batch, (T-1) * hop)."""
    n_frames = spectra.shape[1]
    frames = irfft(spectra, frame_size)
    frames *= hann_window(frame_size)
    padded = overlap_add(frames, hop_length) * inverse_gain(frame_size, hop_length, n_frames)
    pad = frame_size // 2
    return np.ascontiguousarray(padded[:, pad : padded.shape[1] - pad], dtype=np.float32)

