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

import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from soundkit.configurator import configure, require, run_script
from soundkit.errors import PipelineError
from soundkit.fitted import fit_and_save_latent_prior, sort_into_groups
from soundkit.adversarial import fine_tune_decoder, watched_clips
from soundkit.fileio import atomic_write, atomic_write_all, write_csv
from soundkit.folders import (ADVERSARIAL_HISTORY_FILE, HISTORY_FILE, MODEL_FILE, SPECTROGRAMS_FILE, load_spectrograms,
                              model_info_writers, with_model_groups, write_model_info)
from soundkit.training import (SpectrogramReader, TrainingCheckpoint, build_vae, choose_classes, choose_strategy,
                               is_chief, make_dataset, schedule_callbacks, split_clips)

import keras  # after soundkit.training, whose autoencoder import refuses a Keras backend other than TensorFlow
from autoencoder import VAE

# I/O
SPECTROGRAMS_DIR = "data/spectrograms"
MODEL_DIR = "models/vae"
# model
CONV_FILTERS = [8, 16, 32, 64, 128]     # encoder, from the input down (measured: README, "Defaults")
DECODER_FILTERS = []                    # decoder, before its 1-channel output; [] = mirror the encoder
DECODER_UPSAMPLING = "bilinear"         # "bilinear"/"nearest" (upsample, then convolve); "transpose" (the tutorial's: stripes)
ATTACK_FRAMES = 4                       # a dense head adds to the first frames (the attack) what upsampling smooths away
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
# second stage: the decoder against a patch discriminator, the encoder frozen (soundkit/adversarial.py)
ADVERSARIAL_EPOCHS = 40                 # 0 = off
ADVERSARIAL_WEIGHT = 100.0              # hinge loss (+ 10 x feature matching) against the MSE of the envelope
ADVERSARIAL_LEARNING_RATE = 0.0002      # Adam, for the decoder and the discriminator
ADVERSARIAL_PATIENCE = 10               # stop after this many epochs without texture closer to the real clips
ADVERSARIAL_RIPPLE_WEIGHT = 10000.0     # penalty on a ripple at 2 or 4 bins beyond the real clips' (0 = off)
# system
DISTRIBUTE = "none"                     # "none", "mirrored" (all GPUs of this machine), "multi_worker" (TF_CONFIG)
CPU_REPLICAS = 0                        # >1: split the CPU into this many devices (to try "mirrored" without GPUs)
SEED = 0
RESUME = True                           # continue an interrupted run of the same settings in MODEL_DIR
VERBOSE = 1                             # Keras progress bar: 0 silent, 1 bar, 2 one line per epoch

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
        (config.ADVERSARIAL_EPOCHS >= 0, f"ADVERSARIAL_EPOCHS must be 0 (off) or more, got {config.ADVERSARIAL_EPOCHS}"),
        (config.ADVERSARIAL_RIPPLE_WEIGHT >= 0,
         f"ADVERSARIAL_RIPPLE_WEIGHT must be 0 (off) or more, got {config.ADVERSARIAL_RIPPLE_WEIGHT}"),
        (config.GROUPS >= 0, f"GROUPS must be 0 (chosen from the clips), 1 (none) or more, got {config.GROUPS}"),
        (config.LATENT_CLASSIFIER_WEIGHT >= 0,
         f"LATENT_CLASSIFIER_WEIGHT must be 0 or more, got {config.LATENT_CLASSIFIER_WEIGHT}"),
        # Each worker would check its own clock and stop at another step, leaving the others waiting.
        (not (config.DISTRIBUTE == "multi_worker" and config.MAX_MINUTES > 0),
         "MAX_MINUTES cannot be used with DISTRIBUTE=multi_worker (the workers would stop at different "
         "steps); set EPOCHS instead"),
    ]
    require(checks)


def read_data(config):
    """The spectrograms (read from disk batch by batch), their clips and parameters, the split and the classes."""
    spectrograms, clips, params = load_spectrograms(config.SPECTROGRAMS_DIR)
    del spectrograms  # training reads rows from disk batch by batch
    reader = SpectrogramReader(Path(config.SPECTROGRAMS_DIR) / SPECTROGRAMS_FILE)
    train_indices, validation_indices = split_clips(clips, config.VALIDATION_FRACTION, config.SEED)
    class_names, labels = choose_classes(config, clips)
    return SimpleNamespace(reader=reader, clips=clips, params=params, train=train_indices,
                           validation=validation_indices, class_names=class_names, labels=labels)


def build_or_resume(config, data, strategy, checkpoint):
    """(the VAE, the epoch it starts after): an interrupted run's model, or a new one."""
    # Workers on other machines cannot see the chief's checkpoint: they all start from epoch 1.
    resumed = checkpoint.resume_state() if config.RESUME and config.DISTRIBUTE != "multi_worker" else None
    num_classes = len(data.class_names) if config.CONDITIONAL else 0
    latent_classes = len(data.class_names) if not config.CONDITIONAL and data.labels is not None else 0
    input_shape = (data.params["n_bins"], data.params["n_frames"], 1)
    with strategy.scope():
        if resumed:
            model_path, state = resumed
            print(f"resuming the interrupted run in {config.MODEL_DIR} after epoch {state['epoch']}")
            return VAE.load(model_path, compile=True), state["epoch"]
        if (Path(config.MODEL_DIR) / MODEL_FILE).exists():
            print(f"{config.MODEL_DIR} already holds a model from other settings: it is replaced, with its "
                  f"parameters, when the first epoch of this run ends (use --model_dir=... to keep it)")
        return build_vae(config, input_shape, num_classes, latent_classes), 0


def fit(config, vae, data, checkpoint, initial_epoch, replicas, chief):
    """Train from ``initial_epoch`` to EPOCHS (or an early stop); return the seconds it took."""
    global_batch = config.BATCH_SIZE * replicas
    train_data = make_dataset(data.reader, data.train, data.labels, global_batch, shuffle=True, seed=config.SEED,
                              replicas=replicas, first_epoch=initial_epoch, min_steps=config.MIN_STEPS_PER_EPOCH)
    validation_data = (make_dataset(data.reader, data.validation, data.labels, global_batch, shuffle=False, seed=0,
                                    replicas=replicas)
                       if len(data.validation) >= replicas else None)
    monitor = "val_loss" if validation_data is not None else "loss"
    callbacks = schedule_callbacks(config, checkpoint, monitor, chief)
    print(f"training on {len(data.train)} clips, validating on {len(data.validation) if validation_data else 0}, "
          f"{replicas} replica(s), batch {global_batch}, spectrograms {tuple(data.reader.shape[1:])}")
    started = time.perf_counter()
    if initial_epoch < config.EPOCHS:
        vae.fit(train_data, validation_data=validation_data, epochs=config.EPOCHS,
                initial_epoch=initial_epoch, callbacks=callbacks, verbose=config.VERBOSE,
                shuffle=False)  # the dataset shuffles itself, every epoch
    return time.perf_counter() - started


def sharpen_decoder(config, data):
    """Second stage (ADVERSARIAL_EPOCHS > 0): the best model's decoder against a patch discriminator.

    The encoder is frozen, so the latent space stays as the first stage left it. ``model.keras`` is
    replaced only by an epoch whose decoded validation clips come closer to the real texture.
    """
    model_path = Path(config.MODEL_DIR) / MODEL_FILE
    if config.DISTRIBUTE != "none":
        print("the second stage (ADVERSARIAL_EPOCHS) runs on one device only: skipped with DISTRIBUTE="
              f"{config.DISTRIBUTE}")
        return
    vae = VAE.load(model_path)
    watched = watched_clips(data.validation if len(data.validation) else data.train)
    validation = (data.reader.read(watched)[..., np.newaxis], None if data.labels is None else data.labels[watched])
    train_data = make_dataset(data.reader, data.train, data.labels, config.BATCH_SIZE, shuffle=True,
                              seed=config.SEED + 1, min_steps=config.MIN_STEPS_PER_EPOCH)
    print(f"\nsecond stage: the decoder against a discriminator, up to {config.ADVERSARIAL_EPOCHS} epochs")
    started = time.perf_counter()
    check, rows = fine_tune_decoder(
        vae, train_data, validation, save=lambda model: atomic_write(model_path, model.save),
        epochs=config.ADVERSARIAL_EPOCHS, weight=config.ADVERSARIAL_WEIGHT,
        learning_rate=config.ADVERSARIAL_LEARNING_RATE, patience=config.ADVERSARIAL_PATIENCE, seed=config.SEED,
        verbose=config.VERBOSE, ripple_weight=config.ADVERSARIAL_RIPPLE_WEIGHT)
    write_csv(Path(config.MODEL_DIR) / ADVERSARIAL_HISTORY_FILE, rows)
    kept = (f"epoch {check.best_epoch} kept (texture gap {check.start['texture_gap']:.3f} -> {check.best:.3f})"
            if check.best_epoch else "no epoch came closer to the real texture: the first stage's decoder is kept")
    print(f"second stage: {len(rows)} epochs in {(time.perf_counter() - started) / 60:.1f} min; {kept}")


def fit_to_best_model(config, data):
    """After training: sort an unlabelled folder into groups, then fit the latent prior new sounds come from."""
    model_dir = Path(config.MODEL_DIR)
    vae = VAE.load(model_dir / MODEL_FILE)
    clips, class_names = data.clips, data.class_names
    try:
        if not class_names and config.GROUPS != 1 and len(data.train) >= 6:
            class_names = sort_into_groups(model_dir, vae, data.reader, clips, data.train, data.params,
                                           config.GROUPS, config.SEED)
            write_model_info(model_dir, vars(config), data.params, class_names, clips, data.train, data.validation)
            clips = with_model_groups(clips, model_dir)
        fit_and_save_latent_prior(model_dir, vae, data.reader, clips, data.train, class_names)
        print(f"fitted the latent prior for new sounds ({len(class_names) or 'one'} Gaussian"
              f"{'s, one per class' if class_names else ''}) to the training clips")
    except ValueError as error:  # NaN latents: a diverged model or damaged spectrograms
        print(f"\nwarning: no latent prior was fitted ({error})")


def report(config, checkpoint, seconds, chief):
    """Print how training went; exit with status 3 when the loss became NaN."""
    model_dir = Path(config.MODEL_DIR)
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


def main(argv=None):
    config = configure(globals(), argv)
    validate(config)
    data = read_data(config)
    keras.utils.set_random_seed(config.SEED)
    strategy = choose_strategy(config.DISTRIBUTE, config.CPU_REPLICAS)
    chief = is_chief(strategy)  # the one process that writes the model folder
    replicas = strategy.num_replicas_in_sync
    if len(data.train) < replicas:
        raise PipelineError(f"{len(data.train)} training clips cannot be shared between {replicas} replicas")
    run_settings = {name: value for name, value in vars(config).items()
                    if name not in ("EPOCHS", "MAX_MINUTES", "VERBOSE", "RESUME", "EARLY_STOPPING_PATIENCE")}
    checkpoint = TrainingCheckpoint(config.MODEL_DIR, {**run_settings, "spectrograms": data.params})
    vae, initial_epoch = build_or_resume(config, data, strategy, checkpoint)
    if config.VERBOSE:
        vae.summary_all()
    # What generate.py needs beside the model: written now, so even an interrupted run is usable, or, over
    # another run's model, together with this run's first model, so the folder never mixes the two runs.
    info = model_info_writers(config.MODEL_DIR, vars(config), data.params, data.class_names, data.clips, data.train,
                              data.validation)
    if chief and initial_epoch == 0 and (Path(config.MODEL_DIR) / MODEL_FILE).exists():
        checkpoint.replace_with_first_model(info)
    elif chief:
        atomic_write_all(info)
    seconds = fit(config, vae, data, checkpoint, initial_epoch, replicas, chief)
    if chief and config.ADVERSARIAL_EPOCHS and (Path(config.MODEL_DIR) / MODEL_FILE).exists() and len(data.train) \
            and not checkpoint.stopped_on_nan:
        sharpen_decoder(config, data)
    if chief and not config.CONDITIONAL and (Path(config.MODEL_DIR) / MODEL_FILE).exists() and len(data.train):
        fit_to_best_model(config, data)
    report(config, checkpoint, seconds, chief)
    return checkpoint.history


if __name__ == "__main__":
    run_script(main)
