"""The machinery of training (train.py): reading spectrograms from disk, datasets, strategies,
the resumable checkpoint and the callbacks.

``train.py`` holds the settings and the phases of a run; everything it builds
them from is here, so a benchmark or a test can use the same pieces.
"""

import math
import os
import time
import zlib
from pathlib import Path
from typing import Final

import numpy as np

import autoencoder  # noqa: F401  (first of TensorFlow's importers: it refuses a Keras backend other than TensorFlow)
import keras
import tensorflow as tf
from autoencoder import VAE
from soundkit.audio_folder import FSDD_NAME, natural_key
from soundkit.errors import PipelineError
from soundkit.fileio import atomic_write, atomic_write_all, read_json, write_csv, write_json
from soundkit.folders import HISTORY_FILE, MODEL_FILE, STATE_DIR, remove_fitted

# The counters of ReduceLROnPlateau and EarlyStopping that a resumed run must continue from.
SCHEDULE_FIELDS: Final = ("wait", "best", "cooldown_counter", "stopped_epoch", "best_epoch")
INTEGER_FIELDS: Final = ("wait", "cooldown_counter", "stopped_epoch", "best_epoch")


class SpectrogramReader:
    """Reads batches of rows from ``spectrograms.npy`` with plain file reads.

    Memory stays flat however large the file is: rows are read when a batch
    needs them and not kept (no memory map that grows with the pages touched).
    """

    def __init__(self, path):
        self.path = Path(path)
        mapped = np.load(self.path, mmap_mode="r")  # only to read the header: shape, type, data offset
        if mapped.dtype != np.dtype("<f4") or not mapped.flags.c_contiguous:
            raise PipelineError(f"{self.path} is not a float32 row-major array: run preprocess.py again")
        self.shape, self.offset = mapped.shape, mapped.offset
        del mapped
        self.row_bytes = int(np.prod(self.shape[1:])) * 4

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, indices):
        return self.read(indices)

    def read(self, indices):
        """Rows ``indices`` (sorted reads are fastest) as a float32 array (n, bins, frames)."""
        batch = np.empty((len(indices),) + tuple(self.shape[1:]), dtype=np.float32)
        with open(self.path, "rb", buffering=0) as file:
            for position, index in enumerate(indices):
                file.seek(self.offset + int(index) * self.row_bytes)
                file.readinto(memoryview(batch[position]).cast("B"))
        return batch


def split_clips(clips, fraction, seed):
    """Deterministic train/validation split of clip indices.

    FSDD-style names use the dataset's official split (takes 0-4 held out);
    otherwise a fixed ``fraction`` of source files is held out, chosen by a hash
    of the file name, so adding files does not reshuffle the others and all
    clips cut from one file stay on the same side.
    """
    if clips and all(FSDD_NAME.match(Path(clip["file"]).stem) for clip in clips):
        held_out = [int(FSDD_NAME.match(Path(clip["file"]).stem)["take"]) < 5 for clip in clips]
    else:
        held_out = [(zlib.crc32(f"{seed}:{clip['file']}".encode()) % 10_000) < fraction * 10_000
                    for clip in clips]
    validation = np.flatnonzero(held_out)
    train = np.flatnonzero(~np.asarray(held_out, dtype=bool))
    if len(train) == 0:
        raise PipelineError(f"no clips left for training out of {len(clips)}: lower VALIDATION_FRACTION")
    return train, validation


def make_dataset(reader, indices, labels, batch_size, shuffle, seed, replicas=1, first_epoch=0, min_steps=1):
    """A ``tf.data`` pipeline that streams (spectrograms[, labels]) batches from disk, prefetched.

    A last batch smaller than ``replicas`` is left out: tf.distribute splits every
    batch between the replicas, and one with no clips fails. With fewer clips than
    ``min_steps`` full batches (a small folder), an epoch is ``min_steps`` full
    batches drawn from as many shuffled passes over the clips as that takes.
    """
    bins, frames = reader.shape[1:]
    count = len(indices) // batch_size + (len(indices) % batch_size >= max(1, replicas))
    passes = 1
    if shuffle and count < min_steps:
        count, passes = min_steps, -(-min_steps * batch_size // len(indices))
    epoch = [first_epoch]

    def batches():
        # Each epoch's order depends only on the seed and the epoch number, so a resumed run
        # sees the same batches as an uninterrupted one.
        if not shuffle:
            order = np.asarray(indices)
        elif passes == 1:
            order = np.random.default_rng([seed, epoch[0]]).permutation(indices)
        else:
            order = np.concatenate([np.random.default_rng([seed, epoch[0], repeat]).permutation(indices)
                                    for repeat in range(passes)])
        epoch[0] += 1
        for start in range(0, count * batch_size, batch_size):
            batch = np.sort(order[start:start + batch_size])
            spectrograms = reader.read(batch)[..., np.newaxis]
            yield (spectrograms, labels[batch]) if labels is not None else spectrograms

    spectrogram_spec = tf.TensorSpec((None, bins, frames, 1), tf.float32)
    signature = (spectrogram_spec, tf.TensorSpec((None, 1), tf.int32)) if labels is not None else spectrogram_spec
    dataset = tf.data.Dataset.from_generator(batches, output_signature=signature)
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(count))
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


def choose_strategy(name, cpu_replicas=0):
    """The tf.distribute strategy named by DISTRIBUTE.

    "mirrored" uses every GPU of this machine; without GPUs, ``cpu_replicas`` > 1
    splits the CPU into that many logical devices, which exercises the same code.
    """
    if cpu_replicas > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_replicas)
    if name == "none":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [device.name for device in gpus or tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise PipelineError("DISTRIBUTE=multi_worker needs the TF_CONFIG environment variable "
                                "(see the README section 'Training on several machines')")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise PipelineError(f"DISTRIBUTE must be none, mirrored or multi_worker, got {name!r}")


def build_vae(config, input_shape, num_classes, latent_classes=0):
    """A compiled VAE with the architecture and loss settings of ``config``."""
    vae = VAE(
        input_shape=input_shape,
        conv_filters=config.CONV_FILTERS,
        conv_kernels=config.CONV_KERNELS,
        conv_strides=config.CONV_STRIDES,
        decoder_filters=config.DECODER_FILTERS or None,
        latent_space_dim=config.LATENT_SPACE_DIM,
        reconstruction_loss_weight=config.RECONSTRUCTION_LOSS_WEIGHT,
        kl_weight=config.KL_WEIGHT,
        num_classes=num_classes,
        latent_classes=latent_classes,
        latent_classifier_weight=config.LATENT_CLASSIFIER_WEIGHT if latent_classes else 0.0,
        normalization=config.NORMALIZATION,
        upsampling=config.DECODER_UPSAMPLING.split(",") if "," in config.DECODER_UPSAMPLING
        else config.DECODER_UPSAMPLING,
        attack_frames=config.ATTACK_FRAMES,
        seed=config.SEED,
    )
    vae.compile(optimizer=keras.optimizers.Adam(learning_rate=config.LEARNING_RATE))
    return vae


class TrainingCheckpoint:
    """Saves, atomically at every epoch end: the best model, a resumable state and history.csv.

    Implemented as a Keras callback (see ``callback``); a crash at any moment
    leaves the previous files intact, and re-running resumes from ``last.keras``.
    """

    def __init__(self, model_dir, run_settings):
        self.model_dir = Path(model_dir)
        # {path: writer} saved together with this run's first model (see ``replace_with_first_model``).
        self.first_save = None
        self.state_dir = self.model_dir / STATE_DIR
        self.run_settings = run_settings
        self.history = []
        self.best = math.inf
        self.stopped_on_nan = None
        self.started = time.perf_counter()
        self.seconds_before = 0.0  # training time of the run this one resumes
        self.schedules = {}        # name -> the learning-rate and early-stopping callbacks, saved with the state
        self.schedule_states = {}  # their counters from the run this one resumes

    def resume_state(self):
        """(model path, state) of an interrupted run with the same settings, or None."""
        state_path = self.state_dir / "state.json"
        model_path = self.state_dir / "last.keras"
        if not (state_path.exists() and model_path.exists()):
            return None
        state = read_json(state_path)
        if state.get("run_settings") != self.run_settings:
            return None
        self.history = state["history"]
        self.best = state["best"]
        self.schedule_states = state.get("schedules", {})
        self.seconds_before = self.history[-1].get("seconds", 0.0) if self.history else 0.0
        return model_path, state

    def callback(self, chief=True):
        checkpoint = self

        class _Callback(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                checkpoint.started = time.perf_counter()
                checkpoint.restore_schedules()

            def on_epoch_begin(self, epoch, logs=None):
                self.epoch = epoch

            def on_train_batch_end(self, batch, logs=None):
                if not math.isfinite(float((logs or {}).get("loss", 0.0))):
                    checkpoint.stopped_on_nan = self.epoch + 1
                    self.model.stop_training = True

            def on_epoch_end(self, epoch, logs=None):
                checkpoint.on_epoch_end(self.model, epoch, logs or {}, chief)

        return _Callback()

    def replace_with_first_model(self, writers):
        """A new run in a folder that holds another run's model: ``writers`` (its params.json and training.json)
        are written with this run's first model, and what was fitted to the old one is removed then.

        Until then the folder keeps the old model with its own parameters, whenever the run is stopped.
        """
        self.first_save = writers

    def restore_schedules(self):
        """Give the schedules back their counters from the run this one resumes.

        Keras resets them in their ``on_train_begin``, so the checkpoint's callback,
        placed after them, calls this from its own.
        """
        for name, fields in self.schedule_states.items():
            callback = self.schedules.get(name)
            if callback is None:
                continue
            for field, value in fields.items():
                setattr(callback, field, int(value) if field in INTEGER_FIELDS else value)

    def on_epoch_end(self, model, epoch, logs, chief):
        logs = {name: float(value) for name, value in logs.items()}
        if self.stopped_on_nan or not all(math.isfinite(value) for value in logs.values()):
            self.stopped_on_nan = epoch + 1
            model.stop_training = True
            return  # keep the last good files
        elapsed = self.seconds_before + time.perf_counter() - self.started
        self.history.append({"epoch": epoch + 1, **logs, "seconds": round(elapsed, 1)})
        if not chief:
            return
        monitored = logs.get("val_loss", logs.get("loss"))
        if monitored < self.best:
            self.best = monitored
            if self.first_save is not None:
                remove_fitted(self.model_dir)
            atomic_write_all({self.model_dir / MODEL_FILE: model.save, **(self.first_save or {})})
            self.first_save = None
        atomic_write(self.state_dir / "last.keras", model.save)
        write_json(self.state_dir / "state.json", {
            "epoch": epoch + 1, "best": self.best, "history": self.history, "run_settings": self.run_settings,
            "schedules": {name: {field: float(getattr(callback, field)) for field in SCHEDULE_FIELDS
                                 if hasattr(callback, field)}
                          for name, callback in self.schedules.items()}})
        self.write_history()

    def write_history(self):
        write_csv(self.model_dir / HISTORY_FILE, self.history)


def time_limit_callback(max_minutes):
    """Stop training once ``max_minutes`` have passed (checked after every batch).

    The epoch in progress ends early, is validated and checkpointed as usual, so
    runs with the same budget can be compared fairly however long their epochs are.
    """

    class TimeLimit(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.started = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            if not self.model.stop_training and time.perf_counter() - self.started > max_minutes * 60:
                print(f"\nMAX_MINUTES={max_minutes} reached: stopping after this batch")
                self.model.stop_training = True

    return TimeLimit()


def choose_classes(config, clips):
    """(the classes the model will know, each clip's class index as (clips, 1) int32, or None).

    The classes come from the clips' labels: what --label and morphs by class accept,
    one list for every later step (``training.json``'s ``classes``). A conditional
    model's decoder takes them; otherwise a latent classifier learns them when
    LATENT_CLASSIFIER_WEIGHT > 0 (labels are returned then only), or only the latent
    prior gets one Gaussian per class.
    """
    all_labelled = all(clip.get("label") is not None for clip in clips)
    if config.CONDITIONAL and not all_labelled:
        raise PipelineError("CONDITIONAL=True needs a label for every clip: put each class in its own "
                            "sub-folder of the audio folder (kick/, snare/...) or use FSDD-style names, "
                            "then run preprocess.py again")
    names = sorted({clip.get("label") for clip in clips} - {None}, key=natural_key)
    class_names = names if config.CONDITIONAL or (all_labelled and len(names) > 1) else []
    learnt = config.CONDITIONAL or (config.LATENT_CLASSIFIER_WEIGHT > 0 and class_names)
    if learnt and not config.CONDITIONAL:
        print(f"labels found ({', '.join(names)}): a latent classifier organises the latent space by class "
              f"(LATENT_CLASSIFIER_WEIGHT={config.LATENT_CLASSIFIER_WEIGHT:g}; 0 turns it off)")
    labels = np.array([[names.index(clip["label"])] for clip in clips], dtype=np.int32) if learnt else None
    return class_names, labels


def is_chief(strategy):
    """Only one worker writes files in multi-worker training."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    return resolver.task_type in ("chief", None) or (resolver.task_type == "worker" and resolver.task_id == 0)


def schedule_callbacks(config, checkpoint, monitor, chief):
    """The callbacks of a run: learning-rate plateau, early stopping, the checkpoint and the time limit.

    The checkpoint comes after the schedules: it saves their counters with this
    epoch counted, and gives them back on resume after Keras has reset them.
    """
    # Late in a long run a high rate can make training diverge (seen on FSDD
    # after ~70 epochs at 0.001); halving it on a plateau keeps it stable.
    checkpoint.schedules["reduce_lr"] = keras.callbacks.ReduceLROnPlateau(
        monitor=monitor, factor=0.5, min_lr=1e-5, patience=config.LEARNING_RATE_PATIENCE,
        verbose=min(config.VERBOSE, 1))
    if config.EARLY_STOPPING_PATIENCE > 0:
        checkpoint.schedules["early_stopping"] = keras.callbacks.EarlyStopping(
            monitor=monitor, patience=config.EARLY_STOPPING_PATIENCE)
    callbacks = [*checkpoint.schedules.values(), checkpoint.callback(chief)]
    if config.MAX_MINUTES > 0:
        callbacks.append(time_limit_callback(config.MAX_MINUTES))
    return callbacks
