"""A convolutional variational autoencoder for spectrograms, in idiomatic Keras 3.

``VAE`` is a ``keras.Model`` with its own ``train_step``/``test_step`` (loss =
``reconstruction_loss_weight * MSE + kl_weight * KL``), so ``fit``, callbacks,
progress bars and history work as Keras users expect. It saves and loads as a
single ``.keras`` file (safe mode, no pickle). With ``num_classes > 0`` it is a
class-conditional VAE: encoder and decoder also see the label. With
``latent_classes > 0`` it stays unconditional but a linear classifier on the
latent vector learns the labels too (``latent_classifier_weight *
cross-entropy``), so the latent space is organised by class.
"""

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide TensorFlow's start-up chatter

from soundkit.errors import PipelineError

# The VAE's train_step is TensorFlow code: refuse another Keras backend before Keras loads it
# (an absent jax or torch would fail with a traceback, a present one with a TypeError mid-training).
# Unset, it is TensorFlow here, whatever keras.json (a default for all of the user's projects) says.
if not os.environ.get("KERAS_BACKEND"):
    os.environ["KERAS_BACKEND"] = "tensorflow"
elif os.environ["KERAS_BACKEND"] != "tensorflow":
    raise PipelineError(f"this project trains with the TensorFlow backend of Keras; KERAS_BACKEND is "
                        f"{os.environ['KERAS_BACKEND']!r}: unset it or set KERAS_BACKEND=tensorflow")

import keras
import numpy as np
from keras import layers, ops

if keras.backend.backend() != "tensorflow":  # Keras was imported before, with the backend of keras.json
    raise PipelineError(f"this project trains with the TensorFlow backend of Keras, but Keras was loaded with "
                        f"{keras.backend.backend()!r} (from keras.json): set KERAS_BACKEND=tensorflow")

LOG_VARIANCE_LIMIT = 20.0
NORMALIZATIONS = ("batch", "group", "none")
UPSAMPLINGS = ("transpose", "nearest", "bilinear")
PACKAGE = "soundvae"


@keras.saving.register_keras_serializable(package=PACKAGE)
class Sampling(layers.Layer):
    """Draws z = mean + sigma * epsilon (the reparameterisation trick)."""

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs):
        mean, log_variance = inputs
        epsilon = keras.random.normal(ops.shape(mean), dtype=mean.dtype, seed=self.seed_generator)
        return mean + ops.exp(0.5 * log_variance) * epsilon

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}

    # The noise generator's state is saved with the model, so that a resumed run draws the
    # same noise as an uninterrupted one (Keras does not save a SeedGenerator's state itself).
    def save_own_variables(self, store):
        store["seed_generator_state"] = ops.convert_to_numpy(self.seed_generator.state)

    def load_own_variables(self, store):
        if "seed_generator_state" in store:  # models saved before this have none: a fresh stream
            self.seed_generator.state.assign(np.asarray(store["seed_generator_state"]))


def _multi_worker(strategy):
    """Whether ``strategy`` is a tf.distribute.MultiWorkerMirroredStrategy."""
    if strategy is None:
        return False
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


@keras.saving.register_keras_serializable(package=PACKAGE)
class VAE(keras.Model):
    """Convolutional VAE: spectrogram -> latent Gaussian -> spectrogram.

    Parameters
    ----------
    input_shape : tuple of int
        (frequency bins, time frames, 1).
    conv_filters, conv_kernels, conv_strides : list
        One entry per convolutional layer of the encoder; the decoder mirrors them.
        A stride is an int or a pair (frequency, time).
    latent_space_dim : int
        Size of the latent vector.
    decoder_filters : list of int, optional
        Filters of the decoder's transposed convolutions before its one-channel
        output, one fewer than ``conv_filters``. None mirrors the encoder: each
        decoder layer has the filters of the encoder layer at the same resolution.
    reconstruction_loss_weight : float
        Weight of the mean squared error against the KL divergence.
    kl_weight : float
        Weight of the KL divergence (beta in a beta-VAE).
    num_classes : int
        0 for an unconditional VAE; otherwise the number of labels to condition on.
    latent_classes : int
        Unconditional VAEs only: the number of labels a linear classifier on the
        sampled latent vector learns (0: no classifier).
    latent_classifier_weight : float
        Weight of that classifier's cross-entropy in the loss.
    upsampling : {"transpose", "nearest", "bilinear"} or list of them
        How the decoder enlarges its maps, for every layer or one entry per layer
        (from the bottleneck out): "transpose", a strided transposed convolution
        (the tutorial's; with a kernel the stride does not divide, it leaves a
        checkerboard, a ripple every 2 bins); "nearest" or "bilinear", upsampling
        by repeating or interpolating, then a convolution, which leaves none but
        costs 4 times as much (nearest leaves steps of 2 frames).
    attack_frames : int
        0: the convolutions decode every frame. N > 0: a dense head on the latent
        vector adds to the first N frames (the attack) what the upsampling smooths
        away: without it, decoded attacks are blurred (measured: benchmarks/README.md).
    """

    def __init__(self, input_shape, conv_filters, conv_kernels, conv_strides, latent_space_dim,
                 reconstruction_loss_weight=1000.0, kl_weight=1.0, num_classes=0, seed=None,
                 decoder_filters=None, latent_classes=0, latent_classifier_weight=0.0, normalization="batch",
                 upsampling="transpose", attack_frames=0, **kwargs):
        super().__init__(**kwargs)
        if not (len(conv_filters) == len(conv_kernels) == len(conv_strides)) or not conv_filters:
            raise ValueError("conv_filters, conv_kernels and conv_strides must be non-empty and of equal "
                             f"length, got {len(conv_filters)}, {len(conv_kernels)}, {len(conv_strides)}")
        if len(input_shape) != 3 or input_shape[-1] != 1:
            raise ValueError(f"input_shape must be (bins, frames, 1), got {tuple(input_shape)}")
        self.input_shape_ = tuple(int(size) for size in input_shape)
        self.conv_filters = [int(f) for f in conv_filters]
        if decoder_filters is None:
            decoder_filters = self.conv_filters[-2::-1]
        if len(decoder_filters) != len(self.conv_filters) - 1:
            raise ValueError(f"decoder_filters needs {len(self.conv_filters) - 1} entries (one fewer than "
                             f"conv_filters), got {len(decoder_filters)}")
        self.decoder_filters = [int(f) for f in decoder_filters]
        self.conv_kernels = [int(k) if np.ndim(k) == 0 else tuple(k) for k in conv_kernels]
        self.conv_strides = [(int(s), int(s)) if np.ndim(s) == 0 else tuple(int(v) for v in s) for s in conv_strides]
        self.latent_space_dim = int(latent_space_dim)
        self.reconstruction_loss_weight = float(reconstruction_loss_weight)
        self.kl_weight = float(kl_weight)
        self.num_classes = int(num_classes)
        self.latent_classes = int(latent_classes)
        self.latent_classifier_weight = float(latent_classifier_weight)
        if self.num_classes and self.latent_classes:
            raise ValueError("a conditional VAE (num_classes > 0) cannot also have a latent classifier: "
                             "its latent vector is meant to hold what the label does not")
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {', '.join(NORMALIZATIONS)}, got {normalization!r}")
        self.normalization = normalization
        modes = [upsampling] * len(self.conv_filters) if isinstance(upsampling, str) else list(upsampling)
        if len(modes) != len(self.conv_filters) or any(mode not in UPSAMPLINGS for mode in modes):
            raise ValueError(f"upsampling must be one of {', '.join(UPSAMPLINGS)}, or a list of them with one per "
                             f"layer ({len(self.conv_filters)}), got {upsampling!r}")
        self.upsampling = upsampling if isinstance(upsampling, str) else modes
        self.upsampling_modes = modes
        self.seed = seed

        self.attack_frames = int(attack_frames)
        if not 0 <= self.attack_frames < self.input_shape_[1]:
            raise ValueError(f"attack_frames must be between 0 and {self.input_shape_[1] - 1}, got {attack_frames}")
        self.encoder = self._build_encoder()
        self.decoder = self._build_decoder()
        self.sampling = Sampling(seed=seed, name="sampling")
        self.latent_classifier = None
        if self.latent_classes:
            self.latent_classifier = layers.Dense(self.latent_classes, name="latent_classifier")
        self.total_loss_tracker = keras.metrics.Mean(name="loss")
        self.reconstruction_loss_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_loss_tracker = keras.metrics.Mean(name="kl_loss")
        self.label_loss_tracker = keras.metrics.Mean(name="label_loss")
        # Everything is known now, so build at once (Keras marks the model built); fit() and
        # load_model() then find nothing left to build.
        self.build((None, *self.input_shape_))

    def build(self, input_shape=None):
        """Create the weights the sub-models do not create themselves: the latent classifier's.

        The encoder and decoder are functional models, built when made, and the architecture
        is fixed by the constructor, so ``input_shape`` adds nothing. ``__init__`` calls this.
        """
        if self.latent_classifier is not None and not self.latent_classifier.built:
            self.latent_classifier.build((None, self.latent_space_dim))

    def compile(self, optimizer="rmsprop", **kwargs):
        """Keras' ``compile``, then the optimizer's variables are made for the trainable weights.

        They are made in the strategy scope the model was made in, so that ``fit`` has nothing
        left to build. The VAE computes its own loss and metrics: ``loss`` and ``metrics`` are refused.
        """
        unused = [name for name in ("loss", "loss_weights", "metrics", "weighted_metrics") if kwargs.get(name)]
        if unused:
            raise ValueError(f"the VAE computes its own loss and metrics; compile it without {', '.join(unused)}")
        super().compile(optimizer=optimizer, **kwargs)
        if not self.optimizer.built:
            with self.distribute_strategy.scope():
                self.optimizer.build(self.trainable_variables)

    def compile_from_config(self, config):
        """Compile a loaded model as it was saved (Keras leaves this to a model with its own ``compile``)."""
        self.compile(**keras.saving.deserialize_keras_object(config))

    # --- architecture -----------------------------------------------------------

    @property
    def padded_shape(self):
        """Input size rounded up so that every stride divides it exactly."""
        total = np.prod(self.conv_strides, axis=0)
        bins, frames, _ = self.input_shape_
        return int(-(-bins // total[0]) * total[0]), int(-(-frames // total[1]) * total[1])

    def _normalize(self, x):
        if self.normalization == "batch":
            return layers.BatchNormalization()(x)
        if self.normalization == "group":
            return layers.GroupNormalization(groups=min(8, x.shape[-1]))(x)
        return x

    def _condition(self, inputs, label):
        one_hot = ops.one_hot(ops.cast(ops.reshape(label, (-1,)), "int32"), self.num_classes)
        return layers.Concatenate()([inputs, one_hot])

    def _build_encoder(self):
        spectrogram = keras.Input(shape=self.input_shape_, name="spectrogram")
        inputs = [spectrogram]
        bins, frames, _ = self.input_shape_
        padded_bins, padded_frames = self.padded_shape
        x = layers.ZeroPadding2D(((0, padded_bins - bins), (0, padded_frames - frames)))(spectrogram)
        for index, (filters, kernel, stride) in enumerate(zip(self.conv_filters, self.conv_kernels, self.conv_strides)):
            x = layers.Conv2D(filters, kernel, strides=stride, padding="same", name=f"encoder_conv_{index + 1}")(x)
            x = layers.ReLU()(x)
            x = self._normalize(x)
        x = layers.Flatten()(x)
        if self.num_classes:
            label = keras.Input(shape=(1,), dtype="int32", name="label")
            inputs.append(label)
            x = self._condition(x, label)
        mean = layers.Dense(self.latent_space_dim, name="mean")(x)
        log_variance = layers.Dense(self.latent_space_dim, name="log_variance")(x)
        return keras.Model(inputs if self.num_classes else spectrogram, [mean, log_variance], name="encoder")

    def _build_decoder(self):
        latent = keras.Input(shape=(self.latent_space_dim,), name="latent")
        inputs = [latent]
        x = latent
        if self.num_classes:
            label = keras.Input(shape=(1,), dtype="int32", name="label")
            inputs.append(label)
            x = self._condition(x, label)
        conditioned = x
        total = np.prod(self.conv_strides, axis=0)
        padded_bins, padded_frames = self.padded_shape
        bottleneck = (padded_bins // int(total[0]), padded_frames // int(total[1]), self.conv_filters[-1])
        x = layers.Dense(int(np.prod(bottleneck)), name="decoder_dense")(x)
        x = layers.Reshape(bottleneck)(x)
        layer_specs = list(zip([*self.decoder_filters, 1], self.conv_kernels[::-1], self.conv_strides[::-1]))
        for index, (filters, kernel, stride) in enumerate(layer_specs):
            last = index == len(layer_specs) - 1
            x = self._upsample(x, filters, kernel, stride, self.upsampling_modes[index],
                               "decoder_output" if last else f"decoder_conv_transpose_{index + 1}")
            if not last:
                x = layers.ReLU()(x)
                x = self._normalize(x)
        bins, frames, _ = self.input_shape_
        x = layers.Cropping2D(((0, padded_bins - bins), (0, padded_frames - frames)))(x)
        if self.attack_frames:
            x = layers.Add(name="body_plus_attack")([x, self._attack_head(conditioned)])
        x = layers.Activation("sigmoid", dtype="float32")(x)
        return keras.Model(inputs if self.num_classes else latent, x, name="decoder")

    def _attack_head(self, latent):
        """What the first ``attack_frames`` frames add to the convolutions' output (before the sigmoid), from
        the latent vector through two dense layers; zero for the later frames, and at first everywhere."""
        bins, frames, _ = self.input_shape_
        x = layers.Dense(256, activation="relu", name="attack_hidden")(latent)
        x = layers.Dense(bins * self.attack_frames, kernel_initializer="zeros", name="attack_output")(x)
        x = layers.Reshape((bins, self.attack_frames, 1))(x)
        return layers.ZeroPadding2D(((0, 0), (0, frames - self.attack_frames)))(x)

    @staticmethod
    def _upsample(x, filters, kernel, stride, mode, name):
        """One decoder layer that enlarges the map by ``stride`` (see ``upsampling``)."""
        if mode == "transpose":
            return layers.Conv2DTranspose(filters, kernel, strides=stride, padding="same", name=name)(x)
        if tuple(stride) != (1, 1):
            x = layers.UpSampling2D(size=tuple(stride), interpolation=mode)(x)
        return layers.Conv2D(filters, kernel, padding="same", name=name)(x)

    # --- training -----------------------------------------------------------------

    @property
    def metrics(self):
        trackers = [self.total_loss_tracker, self.reconstruction_loss_tracker, self.kl_loss_tracker]
        return trackers + [self.label_loss_tracker] if self.latent_classes else trackers

    def _split(self, data):
        """(spectrograms, labels or None) from what fit/evaluate pass in."""
        needs_labels = self.num_classes or self.latent_classes
        if isinstance(data, (tuple, list)):
            spectrograms = data[0]
            labels = data[1] if len(data) > 1 and needs_labels else None
        else:
            spectrograms, labels = data, None
        if needs_labels and labels is None:
            kind = "conditional" if self.num_classes else "trained with a latent classifier"
            raise ValueError(f"this VAE is {kind}: pass (spectrograms, labels)")
        return spectrograms, labels

    def _inputs(self, tensor, labels):
        return [tensor, labels] if self.num_classes else tensor

    def compute_losses(self, spectrograms, labels, training):
        """Return (total, reconstruction, kl[, label]), each averaged over the batch."""
        conditions = labels if self.num_classes else None
        mean, log_variance = self.encoder(self._inputs(spectrograms, conditions), training=training)
        # exp() of an unbounded log-variance can overflow float32 late in a long run (seen on
        # FSDD after ~100 epochs); variances beyond e^+-LOG_VARIANCE_LIMIT mean nothing here.
        log_variance = ops.clip(log_variance, -LOG_VARIANCE_LIMIT, LOG_VARIANCE_LIMIT)
        latent = self.sampling([mean, log_variance])
        reconstruction = self.decoder(self._inputs(latent, conditions), training=training)
        spectrograms = ops.cast(spectrograms, reconstruction.dtype)
        reconstruction_loss = ops.mean(ops.square(spectrograms - reconstruction))
        kl_loss = ops.mean(-0.5 * ops.sum(1 + log_variance - ops.square(mean) - ops.exp(log_variance), axis=1))
        total = self.reconstruction_loss_weight * reconstruction_loss + self.kl_weight * kl_loss
        if not self.latent_classes:
            return total, reconstruction_loss, kl_loss
        # On the sampled latent, not the mean: classes must stay apart by more than the noise.
        label_loss = ops.mean(keras.losses.sparse_categorical_crossentropy(
            ops.reshape(labels, (-1,)), self.latent_classifier(latent), from_logits=True))
        return total + self.latent_classifier_weight * label_loss, reconstruction_loss, kl_loss, label_loss

    def _update_metrics(self, losses):
        import tensorflow as tf

        for tracker, value in zip(self.metrics, losses):
            tracker.update_state(value)
        results = {tracker.name: tracker.result() for tracker in self.metrics}
        # Called in train_step/test_step, under the strategy fit/evaluate run them with.
        if _multi_worker(tf.distribute.get_strategy()):
            # Keras 3.15 averages each worker's results with strategy.reduce(..., axis=0)
            # (keras-team/keras#20585), which needs an axis: give each value one.
            results = {name: ops.reshape(value, (1,)) for name, value in results.items()}
        return results

    def train_step(self, data):
        import tensorflow as tf

        spectrograms, labels = self._split(data)
        with tf.GradientTape() as tape:
            losses = self.compute_losses(spectrograms, labels, training=True)
            # Under tf.distribute each replica sees part of the batch; the gradients
            # are summed over replicas, so each replica's loss is divided by their number.
            scaled = losses[0] / tf.distribute.get_strategy().num_replicas_in_sync
        gradients = tape.gradient(scaled, self.trainable_weights)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_weights))
        return self._update_metrics(losses)

    def test_step(self, data):
        spectrograms, labels = self._split(data)
        return self._update_metrics(self.compute_losses(spectrograms, labels, training=False))

    # --- the one Keras internal this model still overrides (keras-team/keras#20585) ---------------
    # Keras 3.15 offers no public way around this. Under a tf.distribute strategy, fit() and
    # evaluate() call the private Trainer._maybe_symbolic_build, which averages a first batch over
    # all replicas with strategy.reduce -- MultiWorkerMirroredStrategy refuses that for a tuple such
    # as (spectrograms, labels) -- before _symbolic_build asks whether anything is left to build.
    # Here nothing is: __init__ builds the model and compile() the optimizer. So the step is skipped
    # (no batch read, no reduce) unless something is unbuilt after all. Delete this method once
    # Keras checks before it reduces; tests/test_distributed.py shows whether it is still needed.
    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if self.built and self.optimizer is not None and self.optimizer.built:
            return None
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def call(self, inputs, training=False):
        """Reconstruct from the latent mean (deterministic)."""
        if self.num_classes:
            spectrograms, labels = inputs
        else:
            spectrograms, labels = inputs, None
        mean, _ = self.encoder(self._inputs(spectrograms, labels), training=training)
        return self.decoder(self._inputs(mean, labels), training=training)

    # --- using a trained model ------------------------------------------------------

    def _labels(self, labels, count):
        if not self.num_classes:
            return None
        if labels is None:
            raise ValueError("this VAE is conditional: pass labels")
        labels = np.broadcast_to(np.asarray(labels, dtype="int32").reshape(-1), (count,))
        if labels.min() < 0 or labels.max() >= self.num_classes:
            raise ValueError(f"labels must be in 0..{self.num_classes - 1}, got {sorted(set(labels.tolist()))}")
        return labels.reshape(-1, 1)

    def encode(self, spectrograms, labels=None, batch_size=64):
        """Latent means and log-variances (numpy) of spectrograms shaped (n, bins, frames[, 1])."""
        spectrograms = _with_channel(spectrograms)
        inputs = self._inputs(spectrograms, self._labels(labels, len(spectrograms)))
        mean, log_variance = self.encoder.predict(inputs, batch_size=batch_size, verbose=0)
        return mean, log_variance

    def encode_rows(self, spectrograms, rows, labels=None, chunk=256):
        """Latent means of the rows ``rows`` of a (memory-mapped) spectrogram array, chunk by chunk."""
        means = [np.zeros((0, self.latent_space_dim), dtype="float32")]
        for start in range(0, len(rows), chunk):
            batch_labels = None if labels is None else labels[start:start + chunk]
            mean, _ = self.encode(np.asarray(spectrograms[rows[start:start + chunk]]), batch_labels)
            means.append(mean)
        return np.concatenate(means)

    def decode(self, latents, labels=None, batch_size=64):
        """Spectrograms (n, bins, frames, 1) in [0, 1] decoded from latent vectors."""
        latents = np.asarray(latents, dtype="float32").reshape(-1, self.latent_space_dim)
        inputs = self._inputs(latents, self._labels(labels, len(latents)))
        return self.decoder.predict(inputs, batch_size=batch_size, verbose=0)

    def decode_now(self, latents, labels=None):
        """``decode`` for a few latent vectors, in milliseconds: it calls the decoder directly, where ``predict``
        sets up a data pipeline on every call (about 100 ms: right for a batch, too slow for a live explorer)."""
        latents = np.asarray(latents, dtype="float32").reshape(-1, self.latent_space_dim)
        return ops.convert_to_numpy(self.decoder(self._inputs(latents, self._labels(labels, len(latents))),
                                                 training=False))

    def classify(self, spectrograms, batch_size=64):
        """Class probabilities from the latent classifier, for the latent means of ``spectrograms``."""
        return self.classify_latents(self.encode(spectrograms, batch_size=batch_size)[0])

    def classify_latents(self, latents):
        """Class probabilities from the latent classifier, for latent vectors (n, latent_dim)."""
        if not self.latent_classes:
            raise ValueError("this VAE has no latent classifier (train with labels and LATENT_CLASSIFIER_WEIGHT > 0)")
        latents = np.asarray(latents, dtype="float32").reshape(-1, self.latent_space_dim)
        return ops.convert_to_numpy(ops.softmax(self.latent_classifier(latents)))

    def reconstruct(self, spectrograms, labels=None):
        """Return (reconstructed spectrograms, latent means), the tutorial's method."""
        mean, _ = self.encode(spectrograms, labels)
        return self.decode(mean, labels), mean

    def sample(self, count, labels=None, seed=0, temperature=1.0, prior=None):
        """Decode ``count`` latent vectors drawn from the prior N(0, temperature^2 I).

        With ``prior`` (a ``LatentPrior``, unconditional models) they are drawn from
        it instead, and ``labels`` picks its class for each vector (None: any).
        """
        rng = np.random.default_rng(seed)
        if prior is None:
            latents = (rng.standard_normal((count, self.latent_space_dim)) * temperature).astype("float32")
            return self.decode(latents, labels), latents
        if self.num_classes:
            raise ValueError("a fitted latent prior is for unconditional VAEs")
        latents = prior.sample(count, labels, rng, temperature)
        return self.decode(latents), latents

    def summary_all(self):
        self.encoder.summary()
        self.decoder.summary()

    # --- saving -------------------------------------------------------------------------

    def get_config(self):
        return {
            **super().get_config(),
            "input_shape": list(self.input_shape_),
            "conv_filters": self.conv_filters,
            "decoder_filters": self.decoder_filters,
            "conv_kernels": [k if isinstance(k, int) else list(k) for k in self.conv_kernels],
            "conv_strides": [list(s) for s in self.conv_strides],
            "latent_space_dim": self.latent_space_dim,
            "reconstruction_loss_weight": self.reconstruction_loss_weight,
            "kl_weight": self.kl_weight,
            "num_classes": self.num_classes,
            "latent_classes": self.latent_classes,
            "latent_classifier_weight": self.latent_classifier_weight,
            "normalization": self.normalization,
            "upsampling": self.upsampling,
            "attack_frames": self.attack_frames,
            "seed": self.seed,
        }

    @classmethod
    def load(cls, path, compile=False):
        """Load a model saved with ``save("name.keras")``, in Keras' safe mode (no code from the file runs).

        ``compile=True`` also restores the optimizer and its state, to resume training.
        A model folder's file is ``folders.MODEL_FILE``; ``folders.load_model_folder`` checks the rest.
        """
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no model at {path}: train one with train.py first")
        return keras.saving.load_model(path, safe_mode=True, compile=compile)


def _with_channel(spectrograms):
    spectrograms = np.asarray(spectrograms, dtype="float32")
    return spectrograms[..., np.newaxis] if spectrograms.ndim == 3 else spectrograms
