"""The decoder's second stage: adversarial fine-tuning, once the VAE has converged.

The mean squared error of the first stage averages the grain of noisy sounds
(hi-hats, snares) into a smooth wash. Here a small patch discriminator learns to
tell real log-spectrograms from decoded ones, and the decoder learns to fool it,
as in the second stage of RAVE (Caillon and Esling, 2021):

- the encoder is frozen, so the latent space, its prior and the knobs stay as
  they were (an adversarial loss on the encoder would make the latent grow);
- the decoder's loss is the first stage's weighted MSE, plus the hinge loss of
  the discriminator on its output, plus feature matching (the L1 distance
  between the discriminator's inner maps of the real and decoded spectrograms);
- the discriminator sees both through the same random augmentation (a time
  shift, a gain and a spectral tilt), so a few hundred clips are not learnt by
  heart (as DiffAugment does for small image sets);
- without more, the decoder answers the discriminator with a ripple every 2 or
  4 bins along frequency (measured: benchmarks/README.md), so ``ripple_weight``
  penalises the power at those periods of the decoded spectra that stands above
  the neighbouring periods' more than the real batch's (``periodic_excess``),
  over all frames and again over the attack head's first frames alone: there
  the dense head (no convolution to smooth it) wrote a loud comb into speech,
  which a mean over all frames hardly saw.

``TextureCheck`` decides which epoch is kept: the one whose decoded validation
clips come closest to the real ones in texture, and only while the MSE stays
near the first stage's, no frequency ripple appears and the content stays: the
decoded clips, encoded again, must land where their originals did (their class,
when the VAE has a latent classifier; otherwise near their latent means). Texture
that changes what a sound is (a spoken digit that becomes another) is refused.
"""

import math
import time

import autoencoder  # noqa: F401  (first of TensorFlow's importers: it refuses a Keras backend other than TensorFlow)
import keras
import numpy as np
from keras import layers, ops

from soundkit.realism import frequency_ripple

DISCRIMINATOR_FILTERS = (16, 32, 64, 128)   # a patch discriminator: 4x4 kernels, stride 2
MAX_SHIFT_FRAMES = 8                        # augmentation: time shift, either way
MAX_GAIN = 0.05                             # augmentation: offset of the normalised level
MAX_TILT = 0.05                             # augmentation: level change from the lowest to the highest bin
WATCHED_CLIPS = 64                          # TextureCheck: validation clips decoded after each epoch
TEXTURE_BANDS = 8                           # TextureCheck: frequency bands compared
ENVELOPE_POOL = 4                           # the MSE compares the envelope: means of 4 x 4 pixels
MAX_MSE_GROWTH = 1.25                       # TextureCheck: envelope MSE at most this x the first stage's
MAX_RIPPLE_GROWTH = 1.5                     # ... and the ripple at 2, 4 and 8 bins at most this x the first stage's
MAX_CLASS_LOSS = 0.05                       # ... and (labels, latent classifier) the share of decoded clips whose
                                            # class is heard again at most this far below the first stage's
MAX_DRIFT_GROWTH = 1.5                      # ... or (no labels) their latent drift at most this x the first stage's
PENALTY_NEIGHBOURS = 4                      # ripple penalty: DFT indices each side a period's power is compared with


def build_discriminator(input_shape, filters=DISCRIMINATOR_FILTERS):
    """A patch discriminator: spectrogram -> [inner maps..., a map of logits], one logit per patch."""
    spectrogram = keras.Input(shape=input_shape, name="spectrogram")
    x, outputs = spectrogram, []
    for index, count in enumerate(filters):
        x = layers.SpectralNormalization(layers.Conv2D(count, 4, strides=2, padding="same"),
                                         name=f"discriminator_conv_{index + 1}")(x)
        x = layers.LeakyReLU(negative_slope=0.2)(x)
        outputs.append(x)
    outputs.append(layers.Conv2D(1, 3, padding="same", name="discriminator_logits")(x))
    return keras.Model(spectrogram, outputs, name="discriminator")


def augment(real, fake, seed):
    """The same random time shift, gain and spectral tilt for each pair (one shift per batch)."""
    count, bins, frames = ops.shape(real)[0], real.shape[1], real.shape[2]
    gain = keras.random.uniform((count, 1, 1, 1), -MAX_GAIN, MAX_GAIN, seed=seed)
    ramp = ops.reshape(ops.linspace(-0.5, 0.5, bins), (1, bins, 1, 1))
    tilt = keras.random.uniform((count, 1, 1, 1), -MAX_TILT, MAX_TILT, seed=seed) * ramp
    start = ops.cast(keras.random.uniform((), 0, 2 * MAX_SHIFT_FRAMES + 1, seed=seed), "int32")

    def moved(x):
        padded = ops.pad(x + gain + tilt, [[0, 0], [0, 0], [MAX_SHIFT_FRAMES, MAX_SHIFT_FRAMES], [0, 0]])
        return ops.slice(padded, [0, 0, start, 0], [count, bins, frames, 1])

    return moved(real), moved(fake)


class DecoderFineTuner(keras.Model):
    """Trains a converged VAE's decoder against a patch discriminator; the encoder stays frozen.

    Parameters
    ----------
    vae : autoencoder.VAE
        The first stage's model; its decoder is changed in place.
    adversarial_weight : float
        Weight of the hinge loss (and, times ``feature_weight``, of feature matching)
        against the VAE's own weighted MSE.
    feature_weight : float
        Weight of feature matching against the hinge loss (RAVE: 10).
    ripple_weight : float
        Weight of ``periodic_excess`` of the decoded spectrograms (0: off).
    """

    def __init__(self, vae, adversarial_weight=10.0, feature_weight=10.0, seed=None, ripple_weight=0.0, **kwargs):
        super().__init__(**kwargs)
        self.ripple_weight = float(ripple_weight)
        self.waves = periodic_waves(vae.input_shape_[0])
        self.vae = vae
        self.vae.encoder.trainable = False
        self.attack_frames = vae.attack_frames
        self.discriminator = build_discriminator(vae.input_shape_)
        self.adversarial_weight = float(adversarial_weight)
        self.feature_weight = float(feature_weight)
        self.seed_generator = keras.random.SeedGenerator(seed)
        names = ("reconstruction_loss", "adversarial_loss", "feature_loss", "discriminator_loss",
                 "real_logit", "fake_logit")
        self.trackers = {name: keras.metrics.Mean(name=name) for name in names}

    def compile(self, decoder_optimizer, discriminator_optimizer):
        super().compile()
        self.decoder_optimizer = decoder_optimizer
        self.discriminator_optimizer = discriminator_optimizer

    @property
    def metrics(self):
        return list(self.trackers.values())

    def _decoded(self, spectrograms, labels):
        vae = self.vae
        conditions = labels if vae.num_classes else None
        mean, log_variance = vae.encoder(vae._inputs(spectrograms, conditions), training=False)
        latent = vae.sampling([mean, ops.clip(log_variance, -20.0, 20.0)])
        return vae.decoder(vae._inputs(latent, conditions), training=True)

    def train_step(self, data):
        import tensorflow as tf

        # Labels matter here only to a conditional decoder (a latent classifier is not trained any more).
        spectrograms, labels = (data[0], data[1] if len(data) > 1 else None) if isinstance(data, (tuple, list)) \
            else (data, None)
        if self.vae.num_classes and labels is None:
            raise ValueError("this VAE is conditional: pass (spectrograms, labels)")
        decoder_weights = self.vae.decoder.trainable_weights
        judge_weights = self.discriminator.trainable_weights
        with tf.GradientTape() as decoder_tape, tf.GradientTape() as judge_tape:
            decoded = self._decoded(spectrograms, labels)
            real = ops.cast(spectrograms, decoded.dtype)
            real_seen, fake_seen = augment(real, decoded, self.seed_generator)
            *real_maps, real_logits = self.discriminator(real_seen, training=True)
            *fake_maps, fake_logits = self.discriminator(fake_seen, training=True)
            judge_loss = ops.mean(ops.relu(1.0 - real_logits)) + ops.mean(ops.relu(1.0 + fake_logits))
            reconstruction = ops.mean(ops.square(envelope(real) - envelope(decoded)))
            adversarial = -ops.mean(fake_logits)
            features = ops.mean(ops.stack([ops.mean(ops.abs(ops.stop_gradient(r) - f))
                                           for r, f in zip(real_maps, fake_maps)]))
            decoder_loss = (self.vae.reconstruction_loss_weight * reconstruction
                            + self.adversarial_weight * (adversarial + self.feature_weight * features))
            if self.ripple_weight:
                ripple = periodic_excess(decoded, self.waves, real)
                if self.attack_frames:
                    attack = slice(0, self.attack_frames)
                    ripple = ripple + periodic_excess(decoded[:, :, attack], self.waves, real[:, :, attack])
                decoder_loss = decoder_loss + self.ripple_weight * ripple
        self.decoder_optimizer.apply_gradients(zip(decoder_tape.gradient(decoder_loss, decoder_weights),
                                                   decoder_weights))
        self.discriminator_optimizer.apply_gradients(zip(judge_tape.gradient(judge_loss, judge_weights),
                                                         judge_weights))
        values = (reconstruction, adversarial, features, judge_loss, ops.mean(real_logits), ops.mean(fake_logits))
        for tracker, value in zip(self.trackers.values(), values):
            tracker.update_state(value)
        return {name: tracker.result() for name, tracker in self.trackers.items()}


def periodic_waves(bins, periods=(2, 4)):
    """What ``periodic_excess`` projects on: cosine and sine waves along frequency at each period's DFT index
    and at its ``PENALTY_NEIGHBOURS`` neighbours each side, (bins, waves); and per period, weights that take
    the power at its index less the mean power at its neighbours', (periods, waves)."""
    k, columns, owners = np.arange(bins), [], []
    for number, period in enumerate(periods):
        peak = bins // period
        neighbours = [*range(peak - PENALTY_NEIGHBOURS, peak),
                      *range(peak + 1, min(peak + PENALTY_NEIGHBOURS, bins // 2) + 1)]
        for index in (peak, *neighbours):
            columns += [np.cos(2 * np.pi * index * k / bins), np.sin(2 * np.pi * index * k / bins)]
            owners += [(number, 1.0 if index == peak else -1.0 / len(neighbours))] * 2
    weights = np.zeros((len(periods), len(columns)), dtype="float32")
    for column, (number, weight) in enumerate(owners):
        weights[number, column] = weight
    return (np.stack(columns, axis=1) / np.sqrt(bins)).astype("float32"), weights


def periodic_excess(spectrograms, waves, reference=None):
    """Summed over the periods: how much the power at a period's DFT index stands above its neighbours' mean
    (0 where it does not); with ``reference`` (real spectrograms), only what stands above the reference's:
    real clips have some fine structure at those periods too, and the decoder may keep as much."""
    matrix, weights = waves

    def excess(x):
        power = ops.mean(ops.square(ops.einsum("bkf,kw->bfw", x[..., 0], matrix)), axis=(0, 1))
        return ops.relu(ops.matmul(weights, power))

    over = excess(spectrograms) if reference is None else ops.relu(excess(spectrograms) - excess(reference))
    return ops.sum(over)


def envelope(spectrograms, pool=ENVELOPE_POOL):
    """Means of ``pool`` x ``pool`` pixels: the shape of a spectrogram without its grain."""
    return ops.average_pool(spectrograms, pool, strides=pool, padding="same")


def texture(spectrograms, bands=TEXTURE_BANDS):
    """Mean absolute difference between neighbouring pixels (along frequency and time), per frequency band."""
    spectrograms = np.asarray(spectrograms, dtype=np.float64)
    along_frequency = np.abs(np.diff(spectrograms, axis=1))[:, :, :-1]
    along_time = np.abs(np.diff(spectrograms, axis=2))[:, :-1, :]
    contrast = (along_frequency + along_time).mean(axis=(0, 2))
    return np.array([band.mean() for band in np.array_split(contrast, bands)])


CHECKED_PERIODS = (2, 4, 8)   # TextureCheck bounds the ripple at these periods (8: the comb the attack head once wrote)
RIPPLES = tuple(f"{where}ripple_{period}" for where in ("", "attack_") for period in CHECKED_PERIODS)


def checked_ripples(spectrograms):
    """``frequency_ripple`` at CHECKED_PERIODS; NaN where no frame is loud enough (or there are no frames)."""
    try:
        return frequency_ripple(spectrograms, periods=CHECKED_PERIODS)
    except ValueError:
        return dict.fromkeys(CHECKED_PERIODS, math.nan)


def texture_gap(real, decoded):
    """How far decoded texture is from real, band by band: mean |log(decoded / real)| (0: alike)."""
    return float(np.mean(np.abs(np.log((texture(decoded) + 1e-9) / (texture(real) + 1e-9)))))


class TextureCheck(keras.callbacks.Callback):
    """At each epoch end: decode the validation clips and keep the decoder if its texture is the closest yet.

    An epoch is eligible while the validation MSE is at most ``MAX_MSE_GROWTH`` times
    the first stage's, the ripple at 2, 4 and 8 bins (over all frames, and over the attack head's
    frames) at most ``MAX_RIPPLE_GROWTH`` times,
    and the content stays: with labels and a latent classifier, the share of decoded
    clips classified as their label (encoded again) at most ``MAX_CLASS_LOSS`` below
    the first stage's; otherwise their latent drift at most ``MAX_DRIFT_GROWTH`` times.
    ``save`` is called with the VAE whenever a better epoch is found; training stops
    after ``patience`` epochs without one.
    """

    def __init__(self, vae, spectrograms, labels, save, patience=10):
        super().__init__()
        self.vae, self.spectrograms, self.labels, self.save = vae, np.asarray(spectrograms), labels, save
        self.patience = patience
        self.rows = []
        self.means = vae.encode(self.spectrograms, self._conditions())[0]
        self.spread = max(float(np.mean(np.sum((self.means - self.means.mean(axis=0)) ** 2, axis=1))), 1e-12)
        self.by_class = bool(vae.latent_classes) and labels is not None
        self.start = self.measure()
        self.best, self.best_epoch, self.waited = self.start["texture_gap"], 0, 0

    def _conditions(self):
        return self.labels if self.vae.num_classes else None

    def content(self, decoded):
        """Where the decoded clips land when encoded again: (share classified as their label or NaN, drift).

        The drift is the mean squared distance from their originals' latent means, over the spread of those.
        """
        means = self.vae.encode(decoded, self._conditions())[0]
        drift = float(np.mean(np.sum((means - self.means) ** 2, axis=1))) / self.spread
        if not self.by_class:
            return math.nan, drift
        heard = np.argmax(self.vae.classify_latents(means), axis=1)
        return float(np.mean(heard == np.asarray(self.labels).reshape(-1))), drift

    def measure(self):
        """Texture gap, MSE, ripple and content of the validation clips decoded from their latent means."""
        decoded = self.vae.decode(self.means, self._conditions())
        class_kept, drift = self.content(decoded)
        decoded = np.asarray(decoded).reshape(len(decoded), *self.vae.input_shape_[:2])
        real = self.spectrograms.reshape(decoded.shape)
        ripples = {"": checked_ripples(decoded), "attack_": checked_ripples(decoded[:, :, :self.vae.attack_frames])}
        envelopes = [np.asarray(envelope(x[..., np.newaxis])) for x in (real, decoded)]
        return {"texture_gap": texture_gap(real, decoded), "mse": float(np.mean((envelopes[0] - envelopes[1]) ** 2)),
                **{f"{where}ripple_{period}": values[period] for where, values in ripples.items()
                   for period in CHECKED_PERIODS},
                "class_kept": class_kept, "latent_drift": drift}

    def eligible(self, row):
        start = self.start
        content = (row["class_kept"] >= start["class_kept"] - MAX_CLASS_LOSS if self.by_class
                   else row["latent_drift"] <= MAX_DRIFT_GROWTH * start["latent_drift"])
        return (content and row["mse"] <= MAX_MSE_GROWTH * start["mse"]
                and all(not row[k] > MAX_RIPPLE_GROWTH * max(start[k], 1.0) for k in RIPPLES))

    def on_train_begin(self, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = round(time.perf_counter() - self.started, 1)   # (the check's own time not counted)
        row = {"epoch": epoch + 1, **self.measure(), "seconds": seconds}
        row["kept"] = self.eligible(row) and row["texture_gap"] < self.best
        self.rows.append(row)
        if row["kept"]:
            self.best, self.best_epoch, self.waited = row["texture_gap"], epoch + 1, 0
            self.save(self.vae)
        else:
            self.waited += 1
            if self.waited >= self.patience:
                self.model.stop_training = True


def watched_clips(indices, count=WATCHED_CLIPS):
    """Up to ``count`` of the clip ``indices``, sorted, spread evenly over them: clips sorted by name come
    class by class, so every class is watched, not only the first few."""
    indices = np.sort(np.asarray(indices))
    return indices[np.unique(np.linspace(0, len(indices) - 1, min(len(indices), count)).round().astype(int))]


def fine_tune_decoder(vae, train_data, validation, save, epochs, weight=10.0, learning_rate=2e-4, patience=10,
                      seed=None, verbose=1, ripple_weight=0.0):
    """Run the second stage on a converged ``vae``; return TextureCheck's rows (one per epoch) and the logs.

    ``train_data`` yields batches as the first stage's did; ``validation`` is (spectrograms, labels or None),
    the clips TextureCheck decodes. ``save(vae)`` is called whenever an epoch comes closer to real texture,
    so whatever stops this stage, the saved model is the first stage's or a better one.
    """
    tuner = DecoderFineTuner(vae, adversarial_weight=weight, seed=seed, ripple_weight=ripple_weight)
    # Adam with a short memory of its momentum, as GANs are usually trained (beta_1 0.5, beta_2 0.9)
    tuner.compile(keras.optimizers.Adam(learning_rate, beta_1=0.5, beta_2=0.9),
                  keras.optimizers.Adam(learning_rate, beta_1=0.5, beta_2=0.9))
    check = TextureCheck(vae, *validation, save=save, patience=patience)
    history = tuner.fit(train_data, epochs=epochs, callbacks=[check], verbose=verbose, shuffle=False)
    logs = history.history
    rows = [{**row, **{name: float(values[index]) for name, values in logs.items()}}
            for index, row in enumerate(check.rows)]
    return check, rows
