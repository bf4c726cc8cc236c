"""Step 2: train the variational autoencoder on the spectrograms from preprocess.py.

Everything generate.py needs is written into MODEL_DIR: the best model
(``model.keras``), the spectrogram parameters (``params.json``), the settings,
labels and loudness level used for new sounds (``training.json``), the
training curves (``history.csv``) and, once training ends, the latent prior
new sounds are drawn from (``latent_prior.json``: Gaussians fitted to where the
training clips lie in the latent space, one per class when clips have labels).
Re-running the same command after a crash or Ctrl-C resumes from the last
finished epoch.

Run ``python train.py --help`` to list the settings; e.g. ``python train.py --epochs=5``.
"""

import csv
import math
import os
import shutil
import time
import zlib
from pathlib import Path
from typing import Final

import numpy as np

import autoencoder  # noqa: F401  (first of the project's imports: it refuses a Keras backend other than TensorFlow)
import keras
import tensorflow as tf
from autoencoder import VAE
from configurator import PipelineError, configure, require, run_script
from fileio import atomic_write, read_json, write_json
from folders import (FSDD_NAME, HISTORY_FILE, MODEL_FILE, PARAMS_FILE, SPECTROGRAMS_FILE, STATE_DIR, TRAINING_FILE,
                     TRAINING_FORMAT_VERSION, clip_descriptors, load_spectrograms, natural_key, save_groups,
                     save_latent_prior, with_model_groups)
import latent_space

# I/O
SPECTROGRAMS_DIR = "data/spectrograms"
MODEL_DIR = "models/vae"
# model
CONV_FILTERS = [8, 16, 32, 64, 128]     # encoder, from the input down (measured: README, "Defaults")
DECODER_FILTERS = []                    # decoder, before its 1-channel output; [] = mirror the encoder
CONV_KERNELS = [3, 3, 3, 3, 3]
CONV_STRIDES = [2, 2, 2, 2, 2]          # an int or [frequency, time] per layer
LATENT_SPACE_DIM = 32
NORMALIZATION = "none"                  # after each convolution: "none", "group" or "batch" (the tutorial's; its statistics
                                        # lag behind on small folders, measured: README, "Defaults")
CONDITIONAL = False                     # True: learn one sound class per label (sub-folder or file name)
GROUPS = 0                              # unlabelled clips: sorted into this many groups; 0 = chosen, 1 = none
LATENT_CLASSIFIER_WEIGHT = 100.0        # labels known: a classifier on the latent organises it by class; 0 = off
# loss = RECONSTRUCTION_LOSS_WEIGHT * MSE + KL_WEIGHT * KL
RECONSTRUCTION_LOSS_WEIGHT = 30000.0
KL_WEIGHT = 1.0
# optimiser
LEARNING_RATE = 0.001                   # Adam
LEARNING_RATE_PATIENCE = 8              # halve the rate after this many epochs without a better validation loss
EARLY_STOPPING_PATIENCE = 25            # stop after this many epochs without one; 0 = never
BATCH_SIZE = 32
MIN_STEPS_PER_EPOCH = 6                 # a small folder is passed over several times an epoch, so the schedules'
                                        # patience counts enough steps (6 = one pass of a 200-clip kit)
EPOCHS = 150
MAX_MINUTES = 0.0                       # stop after this much training time; 0 = no limit
VALIDATION_FRACTION = 0.1               # clips held out (FSDD names: takes 0-4, its official test split)
# system
DISTRIBUTE = "none"                     # "none", "mirrored" (all GPUs of this machine), "multi_worker" (TF_CONFIG)
CPU_REPLICAS = 0                        # >1: split the CPU into this many devices (to try "mirrored" without GPUs)
SEED = 0
RESUME = True                           # continue an interrupted run of the same settings in MODEL_DIR
VERBOSE = 1                             # Keras progress bar: 0 silent, 1 bar, 2 one line per epoch

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
        seed=config.SEED,
    )
    vae.compile(optimizer=keras.optimizers.Adam(learning_rate=config.LEARNING_RATE))
    return vae


def fit_latent_prior(model_dir, reader, train_indices, clips, class_names):
    """Fit the best model's ``LatentPrior`` to its training clips and save it beside the model."""
    prior = latent_space.fit_latent_prior(VAE.load(Path(model_dir) / MODEL_FILE), reader, clips, train_indices,
                                         class_names)
    save_latent_prior(model_dir, prior)
    return prior


def sort_into_groups(model_dir, reader, clips, train_indices, params, count=0, seed=0):
    """Sort the clips of an unlabelled folder into groups, by where the model puts them; return the names.

    K-means on the latent means of the training clips, with ``count`` groups or,
    for 0, the number from 2 to 8 with the highest mean silhouette. Each group is
    named by its character (``latent_space.name_groups``: dark/bright, short/long)
    and gets a representative clip, its training clip nearest the centre; held-out
    clips join the nearest group. Written to ``groups.json``; from then on each
    group is a class of the model (``folders.with_model_groups``).
    """
    vae = VAE.load(Path(model_dir) / MODEL_FILE)
    means = vae.encode_rows(reader, np.arange(len(clips)))
    train_indices = np.asarray(train_indices, dtype=int)
    labels, centres, scores = latent_space.choose_groups(means[train_indices], count, seed)
    level = generation_level(clips, train_indices)
    descriptors = clip_descriptors(reader, train_indices, level, params)
    names = latent_space.name_groups(labels, descriptors[:, 0], descriptors[:, 1])
    nearest = ((means[:, None, :] - centres[None]) ** 2).sum(axis=2).argmin(axis=1)
    nearest[train_indices] = labels
    representatives = {}
    for group, name in names.items():
        members = train_indices[labels == group]
        closest = members[np.argmin(((means[members] - centres[group]) ** 2).sum(axis=1))]
        representatives[name] = clips[closest]["id"]
    save_groups(model_dir, {clip["id"]: names[int(group)] for clip, group in zip(clips, nearest)},
                representatives, scores)
    chosen = ", ".join(f"{name} ({np.sum(labels == group)} clips, e.g. {representatives[name]})"
                       for group, name in names.items())
    print(f"sorted the unlabelled clips into {len(names)} groups by where the model puts them "
          f"(silhouette {max(scores.values()):.2f}): {chosen}")
    return sorted(names.values(), key=natural_key)


def generation_level(clips, train_indices):
    """The dB range given to brand-new sounds: the median of the training clips' own ranges."""
    maxima = np.array([clips[i]["max"] for i in train_indices])
    minima = np.array([clips[i]["min"] for i in train_indices])
    return {"min": float(np.median(minima)), "max": float(np.median(maxima))}


class TrainingCheckpoint:
    """Saves, atomically at every epoch end: the best model, a resumable state and history.csv.

    Implemented as a Keras callback (see ``callback``); a crash at any moment
    leaves the previous files intact, and re-running resumes from ``last.keras``.
    """

    def __init__(self, model_dir, run_settings):
        self.model_dir = Path(model_dir)
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
            atomic_write(self.model_dir / MODEL_FILE, model.save)
        atomic_write(self.state_dir / "last.keras", model.save)
        write_json(self.state_dir / "state.json", {
            "epoch": epoch + 1, "best": self.best, "history": self.history, "run_settings": self.run_settings,
            "schedules": {name: {field: float(getattr(callback, field)) for field in SCHEDULE_FIELDS
                                 if hasattr(callback, field)}
                          for name, callback in self.schedules.items()}})
        self.write_history()

    def write_history(self):
        names = list(dict.fromkeys(name for row in self.history for name in row))

        def write(tmp_name):
            with open(tmp_name, "w", newline="") as file:
                writer = csv.DictWriter(file, fieldnames=names)
                writer.writeheader()
                writer.writerows(self.history)

        atomic_write(self.model_dir / HISTORY_FILE, write)


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


def validate(config):
    checks = [
        (config.EPOCHS >= 1, f"EPOCHS must be at least 1, got {config.EPOCHS}"),
        (config.BATCH_SIZE >= 1, f"BATCH_SIZE must be at least 1, got {config.BATCH_SIZE}"),
        (config.MIN_STEPS_PER_EPOCH >= 1, f"MIN_STEPS_PER_EPOCH must be at least 1, got {config.MIN_STEPS_PER_EPOCH}"),
        (config.LEARNING_RATE > 0, f"LEARNING_RATE must be positive, got {config.LEARNING_RATE}"),
        (config.LATENT_SPACE_DIM >= 1, f"LATENT_SPACE_DIM must be at least 1, got {config.LATENT_SPACE_DIM}"),
        (0 <= config.VALIDATION_FRACTION < 1, f"VALIDATION_FRACTION must be in [0, 1), got {config.VALIDATION_FRACTION}"),
        (len(config.CONV_FILTERS) == len(config.CONV_KERNELS) == len(config.CONV_STRIDES),
         "CONV_FILTERS, CONV_KERNELS and CONV_STRIDES must have one entry per layer, got "
         f"{len(config.CONV_FILTERS)}, {len(config.CONV_KERNELS)} and {len(config.CONV_STRIDES)}"),
        (config.GROUPS >= 0, f"GROUPS must be 0 (chosen from the clips), 1 (none) or more, got {config.GROUPS}"),
        (config.LATENT_CLASSIFIER_WEIGHT >= 0,
         f"LATENT_CLASSIFIER_WEIGHT must be 0 or more, got {config.LATENT_CLASSIFIER_WEIGHT}"),
        # Each worker would check its own clock and stop at another step, leaving the others waiting.
        (not (config.DISTRIBUTE == "multi_worker" and config.MAX_MINUTES > 0),
         "MAX_MINUTES cannot be used with DISTRIBUTE=multi_worker (the workers would stop at different "
         "steps); set EPOCHS instead"),
    ]
    require(checks)


def write_model_info(model_dir, config, params, class_names, clips, train_indices, validation_indices):
    """Write ``params.json`` and ``training.json`` into the model folder (see folders.py)."""
    write_json(Path(model_dir) / PARAMS_FILE, params)
    write_json(Path(model_dir) / TRAINING_FILE, {
        "format_version": TRAINING_FORMAT_VERSION,
        "settings": vars(config),
        "classes": class_names,
        "generation_level_db": generation_level(clips, train_indices),
        "train_clips": len(train_indices),
        "validation_clips": len(validation_indices),
        "validation_ids": [clips[i]["id"] for i in validation_indices],
    })


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


def main(argv=None):
    config = configure(globals(), argv)
    validate(config)
    spectrograms, clips, params = load_spectrograms(config.SPECTROGRAMS_DIR)
    del spectrograms  # training reads rows from disk batch by batch
    reader = SpectrogramReader(Path(config.SPECTROGRAMS_DIR) / SPECTROGRAMS_FILE)
    train_indices, validation_indices = split_clips(clips, config.VALIDATION_FRACTION, config.SEED)

    class_names, labels = choose_classes(config, clips)
    num_classes = len(class_names) if config.CONDITIONAL else 0
    latent_classes = len(class_names) if not config.CONDITIONAL and labels is not None else 0

    keras.utils.set_random_seed(config.SEED)
    strategy = choose_strategy(config.DISTRIBUTE, config.CPU_REPLICAS)
    chief = _is_chief(strategy)  # the one process that writes the model folder
    replicas = strategy.num_replicas_in_sync
    if len(train_indices) < replicas:
        raise PipelineError(f"{len(train_indices)} training clips cannot be shared between {replicas} replicas")
    global_batch = config.BATCH_SIZE * replicas
    model_dir = Path(config.MODEL_DIR)
    run_settings = {name: value for name, value in vars(config).items()
                    if name not in ("EPOCHS", "MAX_MINUTES", "VERBOSE", "RESUME", "EARLY_STOPPING_PATIENCE")}
    run_settings["spectrograms"] = params
    checkpoint = TrainingCheckpoint(model_dir, run_settings)
    # Workers on other machines cannot see the chief's checkpoint: they all start from epoch 1.
    resumed = checkpoint.resume_state() if config.RESUME and config.DISTRIBUTE != "multi_worker" else None
    input_shape = (params["n_bins"], params["n_frames"], 1)

    with strategy.scope():
        if resumed:
            model_path, state = resumed
            vae = VAE.load(model_path, compile=True)
            initial_epoch = state["epoch"]
            print(f"resuming the interrupted run in {model_dir} after epoch {initial_epoch}")
        else:
            if (model_dir / MODEL_FILE).exists():
                print(f"{model_dir} already holds a model from other settings: it is replaced when the "
                      f"first epoch of this run ends (use --model_dir=... to keep it)")
            vae = build_vae(config, input_shape, num_classes, latent_classes)
            initial_epoch = 0
    if config.VERBOSE:
        vae.summary_all()

    # Write what generate.py needs before training, so even an interrupted run is usable.
    if chief:
        write_model_info(model_dir, config, params, class_names, clips, train_indices, validation_indices)

    train_data = make_dataset(reader, train_indices, labels, global_batch, shuffle=True, seed=config.SEED,
                              replicas=replicas, first_epoch=initial_epoch, min_steps=config.MIN_STEPS_PER_EPOCH)
    validation_data = (make_dataset(reader, validation_indices, labels, global_batch, shuffle=False, seed=0,
                                    replicas=replicas)
                       if len(validation_indices) >= replicas else None)
    monitor = "val_loss" if validation_data is not None else "loss"
    # Late in a long run a high rate can make training diverge (seen on FSDD
    # after ~70 epochs at 0.001); halving it on a plateau keeps it stable.
    checkpoint.schedules["reduce_lr"] = keras.callbacks.ReduceLROnPlateau(
        monitor=monitor, factor=0.5, min_lr=1e-5, patience=config.LEARNING_RATE_PATIENCE,
        verbose=min(config.VERBOSE, 1))
    if config.EARLY_STOPPING_PATIENCE > 0:
        checkpoint.schedules["early_stopping"] = keras.callbacks.EarlyStopping(
            monitor=monitor, patience=config.EARLY_STOPPING_PATIENCE)
    # The checkpoint comes after the schedules: it saves their counters with this epoch counted,
    # and gives them back on resume after Keras has reset them.
    callbacks = [*checkpoint.schedules.values(), checkpoint.callback(chief)]
    if config.MAX_MINUTES > 0:
        callbacks.append(time_limit_callback(config.MAX_MINUTES))
    print(f"training on {len(train_indices)} clips, validating on {len(validation_indices) if validation_data else 0}, "
          f"{replicas} replica(s), batch {global_batch}, spectrograms {input_shape[:2]}")
    started = time.perf_counter()
    if initial_epoch < config.EPOCHS:
        vae.fit(train_data, validation_data=validation_data, epochs=config.EPOCHS,
                initial_epoch=initial_epoch, callbacks=callbacks, verbose=config.VERBOSE,
                shuffle=False)  # the dataset shuffles itself, every epoch
    seconds = time.perf_counter() - started

    if chief and not config.CONDITIONAL and (model_dir / MODEL_FILE).exists() and len(train_indices):
        try:
            if not class_names and config.GROUPS != 1 and len(train_indices) >= 6:
                class_names = sort_into_groups(model_dir, reader, clips, train_indices, params, config.GROUPS,
                                               config.SEED)
                write_model_info(model_dir, config, params, class_names, clips, train_indices, validation_indices)
                clips = with_model_groups(clips, model_dir)
            fit_latent_prior(model_dir, reader, train_indices, clips, class_names)
            print(f"fitted the latent prior for new sounds ({len(class_names) or 'one'} Gaussian"
                  f"{'s, one per class' if class_names else ''}) to the training clips")
        except ValueError as error:  # NaN latents: a diverged model or damaged spectrograms
            print(f"\nwarning: no latent prior was fitted ({error})")
    if checkpoint.stopped_on_nan:
        print(f"\nerror: the loss became NaN or infinite in epoch {checkpoint.stopped_on_nan}; training stopped. "
              f"The last good model is kept in {model_dir / MODEL_FILE}. Try a lower --learning_rate.")
        raise SystemExit(3)
    if chief:
        shutil.rmtree(checkpoint.state_dir, ignore_errors=True)  # finished: nothing left to resume
    last = checkpoint.history[-1] if checkpoint.history else {}
    summary = ", ".join(f"{name} {value:.5g}" for name, value in last.items() if name not in ("epoch", "seconds"))
    print(f"\ntrained {len(checkpoint.history)} epochs in {seconds / 60:.1f} min; last epoch: {summary}")
    if chief:
        print(f"best model saved to {model_dir / MODEL_FILE} (history in {model_dir / HISTORY_FILE})")
    else:
        print("this worker writes no files: the chief (worker 0) saved the model")
    return checkpoint.history


def _is_chief(strategy):
    """Only one worker writes files in multi-worker training."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    return resolver.task_type in ("chief", None) or (resolver.task_type == "worker" and resolver.task_id == 0)


if __name__ == "__main__":
    run_script(main)
