"""How real do generated sounds look and sound, next to a real kit's held-out clips?

``frechet_distance``/``matched_frechet_distance`` compare two sets of embeddings
as FAD and FID do, with ``Listener`` (a small classifier) as the ear and
``listener_view`` what it hears;
``frequency_ripple`` finds the grid stride-2 transposed convolutions leave,
``saturated_share`` pixels pinned at the top, ``decay_seconds`` how long a hit rings.
"""

import numpy as np
import scipy.linalg
import scipy.signal

from soundkit.spectrogram import onset_sample

EMBEDDING_SIZE = 32       # width of the Listener's embedding layer
ENVELOPE_SECONDS = 0.01   # frame of the max-envelope decay_seconds reads
RIPPLE_NEIGHBOURS = 3     # ripple-frequency indices on each side that frequency_ripple compares with
LISTENER_RATE, LISTENER_SECONDS = 22050, 1.5   # the listener's own analysis: log-mel, 64 bands, hop 256,
                                                # from the attack, shorter than any clip a model of the kit makes
LISTENER_MELS, LISTENER_HOP, LISTENER_FFT, LISTENER_TOP_DB = 64, 256, 1024, 80.0
ONSET_DB, PRE_ROLL = -40.0, 0.005                  # the attack, as preprocess.py finds it


def _checked(values, name, ndim, min_rows=1):
    """``values`` as float64, or a ValueError naming ``name`` if it is not ``ndim``-D, large enough and finite."""
    values = np.asarray(values, dtype=np.float64)
    axes = "(clips, width)" if ndim == 2 else "(clips, frequency_bins, frames)"
    if values.ndim != ndim or values.shape[0] < min_rows or values.size == 0:
        raise ValueError(f"{name} must be a {ndim}-D array {axes} of at least {min_rows} clips, "
                         f"got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} holds {np.count_nonzero(~np.isfinite(values))} NaN or infinite values")
    return values


def frechet_distance(embeddings_a, embeddings_b, eps=1e-6):
    """Fréchet distance between Gaussians fitted to two sets of embeddings, as FAD and FID compute it.

    ``|mu_a - mu_b|^2 + Tr(C_a + C_b - 2 sqrtm(C_a C_b))``. Where ``C_a C_b`` is
    singular (fewer clips than dimensions, or a unit that never fires),
    ``eps * I`` is added to both covariances first.

    Parameters
    ----------
    embeddings_a, embeddings_b : array_like, shape (clips, width)
        One row per clip, at least 2 rows each; the same width.
    eps : float
        Ridge added to the diagonals of singular covariances (squared embedding units).

    Returns
    -------
    float
        The distance in squared embedding units; 0 for identical sets.

    Raises
    ------
    ValueError
        If a set is not 2-D with at least 2 finite rows, or the widths differ.
    """
    a, b = _checked(embeddings_a, "embeddings_a", 2, 2), _checked(embeddings_b, "embeddings_b", 2, 2)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"embeddings_a has {a.shape[1]} columns and embeddings_b has {b.shape[1]}: "
                         f"they must be embeddings of the same width")
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    if np.linalg.matrix_rank(cov_a @ cov_b) < a.shape[1]:
        ridge = eps * np.eye(a.shape[1])
        cov_a, cov_b = cov_a + ridge, cov_b + ridge
    # The product of two covariances has real, non-negative eigenvalues; an imaginary part is round-off.
    root = np.real(scipy.linalg.sqrtm(cov_a @ cov_b))
    distance = np.sum((a.mean(axis=0) - b.mean(axis=0)) ** 2) + np.trace(cov_a + cov_b - 2.0 * root)
    return float(max(distance, 0.0))  # a true distance is >= 0; -1e-12 is round-off


def matched_frechet_distance(reference, candidate, size=None, draws=10, seed=0):
    """Fréchet distance between equal-size draws of two sets, averaged over ``draws`` draws.

    A finite set's distance is biased upwards, the more the fewer its clips, so
    sets compare only at one size: ``size`` rows of each, without replacement.

    Parameters
    ----------
    reference, candidate : array_like, shape (clips, width)
        Embeddings, e.g. of real held-out clips and of generated ones.
    size : int or None
        Rows drawn from each set; None = the smaller set's number of rows.
    draws : int
        How many pairs of draws to average over.
    seed : int
        Seed of the draws: the same seed, the same figures.

    Returns
    -------
    dict
        ``{"mean", "std", "size", "draws"}``: the distance over the draws (squared embedding units).

    Raises
    ------
    ValueError
        If ``size`` is below 2 or above either set's rows, or ``draws`` is below 1.
    """
    reference, candidate = _checked(reference, "reference", 2, 2), _checked(candidate, "candidate", 2, 2)
    largest = min(len(reference), len(candidate))
    size = largest if size is None else size
    if not 2 <= size <= largest:
        raise ValueError(f"size must be between 2 and {largest} (the smaller set's rows), got {size}")
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    rng = np.random.default_rng(seed)
    distances = [frechet_distance(reference[rng.choice(len(reference), size, replace=False)],
                                  candidate[rng.choice(len(candidate), size, replace=False)])
                 for _ in range(draws)]
    return {"mean": float(np.mean(distances)), "std": float(np.std(distances)), "size": int(size),
            "draws": int(draws)}


def _ripple_power(frames, period):
    """Mean power over frames (rows) at ripple indices n_bins / period + k, |k| <= N; which are neighbours."""
    n_bins = frames.shape[1]
    offsets = np.arange(-RIPPLE_NEIGHBOURS, RIPPLE_NEIGHBOURS + 1)
    # A DFT at n_bins / p + k for integer k, so the peak falls on the grid even when p does not divide n_bins.
    frequencies = (n_bins / period + offsets) / n_bins  # cycles per bin
    basis = np.exp(-2j * np.pi * np.outer(frequencies, np.arange(n_bins)))
    power = np.abs(frames @ basis.T) ** 2 / np.mean(frames ** 2, axis=1, keepdims=True)  # unit mean per frame
    return power.mean(axis=0), (offsets != 0) & (frequencies > 0) & (frequencies <= 0.5)


def frequency_ripple(spectrograms, periods=(2, 4, 8), min_level=0.1):
    """How much a ripple along frequency stands out: the grid stride-2 transposed convolutions leave.

    Frames (columns) with a mean of at least ``min_level`` lose their linear trend
    along frequency; a ripple of ``p`` bins then peaks at index ``n_bins / p`` of their
    length-``n_bins`` DFT. Its power, averaged over a clip's frames, is divided by the
    mean power of ``RIPPLE_NEIGHBOURS`` indices each side (only below at period 2, the
    Nyquist index); the figure is the median over clips. (A median of one-frame
    ratios would read about 0.7, and 0.6 at period 2, on white noise.)

    Parameters
    ----------
    spectrograms : array_like, shape (clips, frequency_bins, frames)
        Normalised log-magnitude spectrograms, in [0, 1].
    periods : sequence of float
        Ripple periods, in frequency bins, each at least 2 and at most frequency_bins / (RIPPLE_NEIGHBOURS + 1).
    min_level : float
        Frames whose mean is below this (of the [0, 1] range) are silence and skipped.

    Returns
    -------
    dict
        ``{period: ratio}``: about 1 where nothing repeats every ``period`` bins, >> 1 where a grid does.

    Raises
    ------
    ValueError
        If a period is out of range or no frame reaches ``min_level``.
    """
    spectrograms = _checked(spectrograms, "spectrograms", 3)
    longest = spectrograms.shape[1] / (RIPPLE_NEIGHBOURS + 1)
    for period in periods:
        if not 2 <= period <= longest:
            raise ValueError(f"period {period} is out of range: ripple periods must be between 2 and {longest:g} "
                             f"bins for {spectrograms.shape[1]} frequency bins")
    ratios = {period: [] for period in periods}
    for spectrogram in spectrograms:
        frames = spectrogram[:, spectrogram.mean(axis=0) >= min_level].T  # (frames, bins)
        frames = scipy.signal.detrend(frames, axis=1) if len(frames) else frames
        frames = frames[np.mean(frames ** 2, axis=1) > 1e-12]  # a flat frame has no ripple
        for period in periods if len(frames) else ():
            power, neighbours = _ripple_power(frames, period)
            ratios[period].append(power[RIPPLE_NEIGHBOURS] / power[neighbours].mean())
    if not ratios[periods[0]]:
        raise ValueError(f"no frame has a mean of at least min_level={min_level}: nothing to measure")
    return {period: float(np.median(values)) for period, values in ratios.items()}


def saturated_share(spectrograms, threshold=0.9):
    """Share of pixels at or above ``threshold`` of the normalised [0, 1] range (0 to 1).

    Raises
    ------
    ValueError
        If ``threshold`` is outside [0, 1] or the spectrograms are not 3-D or hold NaN.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in the normalised range [0, 1], got {threshold}")
    return float(np.mean(_checked(spectrograms, "spectrograms", 3) >= threshold))


def decay_seconds(signal, sample_rate, db=-60.0):
    """Seconds from the attack until the sound stays ``db`` below its peak.

    The envelope is the maximum of ``|signal|`` over 10 ms frames: the time of its
    last frame above ``peak + db`` minus its peak frame's. A sound cut short gives a lower bound.

    Parameters
    ----------
    signal : array_like, shape (samples,)
        Mono audio.
    sample_rate : float
        Samples per second (Hz).
    db : float
        Level below the peak, in dB (negative): -60 gives the classic T60.

    Returns
    -------
    float
        Seconds, in steps of 10 ms.

    Raises
    ------
    ValueError
        If the signal is not 1-D, finite and audible, ``sample_rate`` is not positive or ``db`` not negative.
    """
    signal = np.abs(np.asarray(signal, dtype=np.float64))
    if signal.ndim != 1 or signal.size == 0 or not np.all(np.isfinite(signal)):
        raise ValueError(f"signal must be a non-empty 1-D array of finite samples, got shape {signal.shape}")
    if not sample_rate > 0:
        raise ValueError(f"sample_rate must be positive (Hz), got {sample_rate}")
    if not db < 0:
        raise ValueError(f"db must be negative (a level below the peak), got {db}")
    if not signal.any():
        raise ValueError("signal is silent: it has no attack to measure a decay from")
    frame = max(1, round(ENVELOPE_SECONDS * sample_rate))
    signal = np.pad(signal, (0, -len(signal) % frame))
    envelope = signal.reshape(-1, frame).max(axis=1)
    peak = int(np.argmax(envelope))
    last_above = np.flatnonzero(envelope > envelope[peak] * 10.0 ** (db / 20.0))[-1]
    return float((last_above - peak) * frame / sample_rate)


def median_decay_by_class(signals_by_class, sample_rate, db=-60.0):
    """``{class: median decay_seconds of its signals}``, from ``{class: [signal, ...]}``.

    Raises
    ------
    ValueError
        If a class has no signals (or as ``decay_seconds``).
    """
    for name, signals in signals_by_class.items():
        if len(signals) == 0:
            raise ValueError(f"class {name!r} has no signals")
    return {name: float(np.median([decay_seconds(signal, sample_rate, db) for signal in signals]))
            for name, signals in signals_by_class.items()}


def listener_view(signal, rate):
    """The listener's input: a log-mel spectrogram of LISTENER_SECONDS from the attack, in [0, 1] below the peak.

    Every sound, real or made, is heard from its attack (as preprocess.py aligns clips) and for
    the same time, so that neither a few ms of silence before a hit nor a tail past a model's clip
    length tells the listener which is which; and at the same peak level: librosa's decibels stop
    at a fixed power (``amin``), so a quiet clip's emptiest bands sit nearer its peak than a loud
    one's, and the listener would hear the level (new sounds are normalised, real clips are not).
    """
    import librosa

    signal = np.asarray(signal, dtype=np.float32)
    length = int(LISTENER_RATE * LISTENER_SECONDS)
    peak = float(np.max(np.abs(signal))) if len(signal) else 0.0
    if peak == 0:  # silence: nothing below a peak, all at the floor
        return np.zeros((LISTENER_MELS, 1 + length // LISTENER_HOP), dtype=np.float32)
    signal = signal / peak
    signal = signal[onset_sample(signal, ONSET_DB, int(PRE_ROLL * rate)):]
    if rate != LISTENER_RATE:
        signal = librosa.resample(signal, orig_sr=rate, target_sr=LISTENER_RATE)
    signal = np.pad(signal[:length], (0, max(0, length - len(signal))))
    mel = librosa.feature.melspectrogram(y=signal, sr=LISTENER_RATE, n_fft=LISTENER_FFT, hop_length=LISTENER_HOP,
                                         n_mels=LISTENER_MELS)
    # amin far below top_db: the floor is TOP_DB under the peak, whatever the level.
    db = librosa.power_to_db(mel, ref=float(mel.max()), amin=1e-30, top_db=LISTENER_TOP_DB)
    return ((db + LISTENER_TOP_DB) / LISTENER_TOP_DB).astype(np.float32)


class Listener:
    """A stand-in listener: a small CNN that tells classes apart, whose embedding the Fréchet distance reads."""

    def __init__(self, batch_size=16, learning_rate=1e-3):
        self.batch_size, self.learning_rate = batch_size, learning_rate
        self.model = self.embedder = self.classes = None

    def fit(self, spectrograms, labels, epochs=15, seed=0):
        """Train on (clips, frequency_bins, frames) spectrograms and their labels; returns Keras's History.

        ``classes`` becomes the sorted distinct labels; ``predict`` answers indices into it.
        """
        # Keras (and TensorFlow behind it) loads here, not at the top: the other measures are
        # numpy only and should not pay seconds of start-up for a model they never use.
        import keras
        from keras import layers

        spectrograms = _checked(spectrograms, "spectrograms", 3, 2)
        labels = np.asarray(labels)
        if labels.shape != (len(spectrograms),):
            raise ValueError(f"labels must have one entry per clip ({len(spectrograms)}), got shape {labels.shape}")
        self.classes, indices = np.unique(labels, return_inverse=True)
        if len(self.classes) < 2:
            raise ValueError(f"a listener needs at least 2 classes to tell apart, got {list(self.classes)}")
        keras.utils.set_random_seed(seed)
        inputs = keras.Input(shape=(*spectrograms.shape[1:], 1))
        x = inputs
        for filters in (16, 32, 64):
            x = layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu")(x)
        x = layers.Flatten()(x)  # not global pooling: where in frequency the energy sits matters
        x = layers.Dropout(0.5)(x)
        embedding = layers.Dense(EMBEDDING_SIZE, activation="relu", name="embedding")(x)
        outputs = layers.Dense(len(self.classes), activation="softmax")(embedding)
        self.model = keras.Model(inputs, outputs, name="listener")
        self.embedder = keras.Model(inputs, self.model.get_layer("embedding").output, name="listener_embedding")
        self.model.compile(optimizer=keras.optimizers.Adam(self.learning_rate),
                           loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return self.model.fit(spectrograms[..., np.newaxis], indices, epochs=epochs,
                              batch_size=self.batch_size, shuffle=True, verbose=0)

    def _inputs(self, spectrograms):
        if self.model is None:
            raise ValueError("this Listener has not been fitted: call fit first")
        spectrograms = _checked(spectrograms, "spectrograms", 3)
        expected = tuple(self.model.input_shape[1:3])
        if spectrograms.shape[1:] != expected:
            raise ValueError(f"spectrograms of shape {spectrograms.shape[1:]} per clip, but the listener was fitted "
                             f"on {expected}")
        return spectrograms[..., np.newaxis]

    def predict(self, spectrograms):
        """Class index (into ``classes``) of each clip, shape (clips,)."""
        inputs = self._inputs(spectrograms)
        return np.argmax(self.model.predict(inputs, batch_size=256, verbose=0), axis=1)

    def embed(self, spectrograms):
        """The embedding layer's activations, shape (clips, EMBEDDING_SIZE)."""
        inputs = self._inputs(spectrograms)
        return np.asarray(self.embedder.predict(inputs, batch_size=256, verbose=0))
