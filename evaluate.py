"""Measure a trained model: numbers to put in a report, not just the loss.

For held-out clips (the validation split train.py kept aside, or any folder of
audio given as AUDIO_DIR) it measures:

- reconstruction error: normalised MSE and log-spectral distance (LSD, dB: RMS
  over time and frequency of the dB difference, each clip denormalised with
  its own min/max, averaged over clips);
- phase reconstruction: spectral convergence (dB, lower is better) of the
  audio made from the *true* spectrograms, against their magnitudes;
- prior samples: their diversity (mean pairwise distance, dB) next to the
  diversity of real clips, and the distance of each to its nearest training
  clip next to the same figure for real held-out clips (a model that copies
  its training data would be much closer); for an unconditional model, both
  for the fitted latent prior generate.py uses and for N(0, I);
- where clips have labels: leave-one-out 1-nearest-neighbour label accuracy
  of the latent means (and the latent classifier's accuracy, if it has one);
- how long each step took.

Prints a table and writes JSON (EVALUATION_JSON, default MODEL_DIR/evaluation.json).
"""

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from soundkit.configurator import configure, run_script
from soundkit.errors import PipelineError
from soundkit.fileio import write_json
from soundkit.folders import (check_same_parameters, clip_label_indices, load_latent_prior, load_model_folder,
                              load_spectrograms, settings_from_params, training_rows)
from soundkit.phase import (DEFAULT_MOMENTUM, DEFAULT_N_ITER, DEFAULT_PHASE_METHOD, check_phase_config,
                   spectral_convergence)
from soundgenerator import SoundGenerator
from soundkit.spectrogram import MinMaxNormaliser

# I/O
MODEL_DIR = "models/vae"
SPECTROGRAMS_DIR = "data/spectrograms"  # the training data (and, by default, its held-out clips)
AUDIO_DIR = ""                          # another folder of held-out audio; "" = the validation split
EVALUATION_JSON = ""                    # "" = MODEL_DIR/evaluation.json
# what to measure
NUM_PRIOR_SAMPLES = 100
MAX_CLIPS = 2000                        # cap per set, for memory and time
SEED = 0
# phase reconstruction, as generate.py
PHASE_METHOD = DEFAULT_PHASE_METHOD
GRIFFIN_LIM_ITERATIONS = DEFAULT_N_ITER
GRIFFIN_LIM_MOMENTUM = DEFAULT_MOMENTUM


class Stopwatch:
    """Records how long each named step takes."""

    def __init__(self):
        self.seconds = {}

    def time(self, name):
        watch = self

        class _Step:
            def __enter__(self):
                self.started = time.perf_counter()

            def __exit__(self, *exc):
                watch.seconds[name] = round(watch.seconds.get(name, 0.0) + time.perf_counter() - self.started, 3)

        return _Step()


def log_spectral_distance(normalised_a, normalised_b, minima, maxima):
    """Per-clip LSD in dB between two batches, both denormalised with each clip's own (min, max)."""
    normaliser = MinMaxNormaliser()
    count = len(np.atleast_1d(minima))
    a_db = normaliser.denormalise(np.asarray(normalised_a, dtype=np.float64).reshape(count, -1), minima, maxima)
    b_db = normaliser.denormalise(np.asarray(normalised_b, dtype=np.float64).reshape(count, -1), minima, maxima)
    return np.sqrt(np.mean((a_db - b_db) ** 2, axis=1))


def pairwise_rms(a, b=None, chunk=256):
    """RMS distance between every row of ``a`` and every row of ``b`` (flattened), chunked."""
    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = a if b is None else np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    b_norms = np.sum(b ** 2, axis=1)
    out = np.empty((len(a), len(b)))
    for start in range(0, len(a), chunk):
        block = a[start:start + chunk]
        squared = np.sum(block ** 2, axis=1)[:, None] + b_norms[None, :] - 2 * block @ b.T
        out[start:start + chunk] = np.sqrt(np.maximum(squared, 0.0) / a.shape[1])
    return out


def nearest_neighbour_accuracy(latents, labels):
    """Leave-one-out 1-NN label accuracy of latent vectors (Euclidean)."""
    latents = np.asarray(latents, dtype=np.float64)
    labels = np.asarray(labels)
    squared = np.sum(latents ** 2, axis=1)
    distances = squared[:, None] + squared[None, :] - 2 * latents @ latents.T
    np.fill_diagonal(distances, np.inf)
    return float(np.mean(labels[np.argmin(distances, axis=1)] == labels))


def held_out_from_audio(audio_dir, params, workdir):
    """Preprocess a folder of audio with the model's own parameters (in a scratch folder).

    preprocess.py runs as the step it is, in its own process: one step never imports another.
    """
    settings = {"AUDIO_DIR": str(audio_dir), "SPECTROGRAMS_DIR": str(workdir), **settings_from_params(params)}
    command = [sys.executable, str(Path(__file__).with_name("preprocess.py")),
               *(f"--{name.lower()}={value}" for name, value in settings.items())]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise PipelineError(f"cannot preprocess {audio_dir}: {(result.stderr or result.stdout).strip()[-2000:]}")
    return load_spectrograms(workdir)


def subsample(indices, limit, rng):
    indices = np.asarray(indices)
    return np.sort(rng.choice(indices, size=limit, replace=False)) if len(indices) > limit else indices


def phase_figures(config, params, held, minima, maxima, watch):
    """Spectral convergence and cost of the phase reconstruction of real held-out spectrograms (timed on ``watch``)."""
    generator = SoundGenerator.from_params(params, phase_method=config.PHASE_METHOD,
                                           n_iter=config.GRIFFIN_LIM_ITERATIONS, momentum=config.GRIFFIN_LIM_MOMENTUM)
    audio_seconds = len(held) * (params["n_frames"] - 1) * params["hop_length"] / params["sample_rate"]
    cpu_started = time.process_time()
    with watch.time("invert_true_spectrograms"):
        signals = generator.convert_spectrograms_to_audio(held, minima, maxima)
    cpu_seconds = time.process_time() - cpu_started
    true_magnitudes = generator.db_to_magnitude(generator.denormalise(held, minima, maxima))
    convergence = spectral_convergence(true_magnitudes, signals, params["frame_size"], params["hop_length"])
    return {
        "method": config.PHASE_METHOD, "iterations": config.GRIFFIN_LIM_ITERATIONS,
        "spectral_convergence_db": float(np.mean(convergence)),
        "cpu_ms_per_second_of_audio": 1000 * cpu_seconds / audio_seconds,
        "wall_ms_per_second_of_audio": 1000 * watch.seconds["invert_true_spectrograms"] / audio_seconds,
    }


def held_out_set(config, model, train_data, train_clips, rng, watch):
    """(held-out spectrograms, their clips, where they came from): AUDIO_DIR's, or the validation split."""
    with tempfile.TemporaryDirectory() as workdir:
        if config.AUDIO_DIR:
            with watch.time("preprocess_held_out_audio"):
                held_data, held_clips, _ = held_out_from_audio(config.AUDIO_DIR, model.params, workdir)
            held_indices = np.arange(len(held_clips))
            source = str(config.AUDIO_DIR)
        else:
            validation_ids = set(model.training.get("validation_ids", []))
            held_data, held_clips = train_data, train_clips
            held_indices = [i for i, clip in enumerate(train_clips) if clip["id"] in validation_ids]
            source = f"{config.SPECTROGRAMS_DIR} (validation split)"
            if not held_indices:
                raise PipelineError("the model has no held-out clips (VALIDATION_FRACTION was 0): "
                                    "pass --audio_dir=FOLDER with held-out sounds")
        held_indices = subsample(held_indices, config.MAX_CLIPS, rng)
        held = np.asarray(held_data[held_indices], dtype=np.float32)
        return held, [held_clips[i] for i in held_indices], source


def prior_sample_figures(config, model, held, training_spectrograms, watch):
    """How varied the prior's samples are and how far from their nearest training clip, per prior.

    Distances are RMS differences of normalised spectrograms times the dB span they stand for.
    """
    vae, label_names = model.vae, model.decoder_classes
    level = model.training["generation_level_db"]
    span_db = level["max"] - level["min"]
    # Both priors of an unconditional model: the fitted one generate.py uses, and N(0, I).
    priors = {"standard": None}
    if not vae.num_classes and (fitted := load_latent_prior(config.MODEL_DIR)) is not None:
        priors = {"fitted": fitted, **priors}
    with watch.time("nearest_training_clips"):
        held_to_train = pairwise_rms(held, training_spectrograms).min(axis=1) * span_db
        held_pairs = pairwise_rms(held)[np.triu_indices(len(held), 1)] * span_db
    prior_labels = (np.arange(config.NUM_PRIOR_SAMPLES) % len(label_names)) if label_names else None
    results = {}
    for name, prior in priors.items():
        with watch.time(f"sample_{name}_prior"):
            samples, _ = vae.sample(config.NUM_PRIOR_SAMPLES, prior_labels, seed=config.SEED, prior=prior)
        samples = samples[..., 0]
        with watch.time("nearest_training_clips"):
            sample_to_train = pairwise_rms(samples, training_spectrograms).min(axis=1) * span_db
            sample_pairs = pairwise_rms(samples)[np.triu_indices(len(samples), 1)] * span_db
        key = "prior_samples" if name == next(iter(priors)) else f"{name}_prior_samples"
        results[key] = {
            "prior": name,
            "count": len(samples),
            "diversity_db": float(np.mean(sample_pairs)),
            "held_out_diversity_db": float(np.mean(held_pairs)),
            "nearest_training_clip_db": float(np.mean(sample_to_train)),
            "nearest_training_clip_db_min": float(np.min(sample_to_train)),
            "held_out_nearest_training_clip_db": float(np.mean(held_to_train)),
        }
    return results


def label_figures(model, latent_means, held_clips):
    """How well the latent space keeps the held-out clips' classes apart (when they have labels)."""
    labels = [clip.get("label") for clip in held_clips]
    if not (all(label is not None for label in labels) and len(set(labels)) > 1):
        return {}
    results = {"latent_1nn_label_accuracy": nearest_neighbour_accuracy(latent_means, labels),
               "label_classes": len(set(labels)),
               "chance_accuracy": float(max(labels.count(label) for label in set(labels)) / len(labels))}
    latent_names = model.classes if model.vae.latent_classes else []
    if model.vae.latent_classes and set(labels) <= set(latent_names):
        predicted = model.vae.classify_latents(latent_means).argmax(axis=1)  # held-out means, encoded above
        results["latent_classifier_accuracy"] = float(np.mean(
            [latent_names[i] == label for i, label in zip(predicted, labels, strict=True)]))
    return results


def evaluate(config):
    """Compute every figure; returns the results as a dict."""
    check_phase_config(config)
    watch = Stopwatch()
    rng = np.random.default_rng(config.SEED)
    with watch.time("load_model"):
        model = load_model_folder(config.MODEL_DIR)
    train_data, train_clips, data_params = load_spectrograms(config.SPECTROGRAMS_DIR)
    check_same_parameters(model.params, data_params, config.SPECTROGRAMS_DIR)
    train_indices = training_rows(train_clips, model.training)
    held, held_clips, source = held_out_set(config, model, train_data, train_clips, rng, watch)
    minima = np.array([clip["min"] for clip in held_clips])
    maxima = np.array([clip["max"] for clip in held_clips])
    results = {"model_dir": str(config.MODEL_DIR), "held_out_source": source, "held_out_clips": len(held)}

    with watch.time("reconstruct_held_out"):
        reconstructions, latent_means = model.vae.reconstruct(held, clip_label_indices(held_clips,
                                                                                       model.decoder_classes))
    reconstructions = reconstructions[..., 0]
    lsd = log_spectral_distance(held, reconstructions, minima, maxima)
    results["reconstruction"] = {
        "normalised_mse": float(np.mean((held - reconstructions) ** 2)),
        "log_spectral_distance_db": float(np.mean(lsd)),
        "log_spectral_distance_db_median": float(np.median(lsd)),
    }
    results["phase_reconstruction"] = phase_figures(config, model.params, held, minima, maxima, watch)
    training_subset = subsample(train_indices, config.MAX_CLIPS, rng)
    training_spectrograms = np.asarray(train_data[training_subset], dtype=np.float32)
    results.update(prior_sample_figures(config, model, held, training_spectrograms, watch))
    results.update(label_figures(model, latent_means, held_clips))
    results["seconds"] = watch.seconds
    return results


def print_table(results):
    reconstruction, phase, prior = results["reconstruction"], results["phase_reconstruction"], results["prior_samples"]
    rows = [
        ("held-out clips", f"{results['held_out_clips']}  ({results['held_out_source']})"),
        ("reconstruction: normalised MSE", f"{reconstruction['normalised_mse']:.5f}"),
        ("reconstruction: log-spectral distance", f"{reconstruction['log_spectral_distance_db']:.2f} dB"),
        (f"inversion ({phase['method']}, {phase['iterations']} it.): spectral convergence",
         f"{phase['spectral_convergence_db']:.1f} dB"),
        ("inversion cost", f"{phase['cpu_ms_per_second_of_audio']:.1f} ms CPU per second of audio"),
    ]
    for prior in (results[key] for key in ("prior_samples", "standard_prior_samples") if key in results):
        rows += [
            (f"{prior['prior']} prior samples: diversity",
             f"{prior['diversity_db']:.2f} dB  (real clips: {prior['held_out_diversity_db']:.2f} dB)"),
            (f"{prior['prior']} prior samples: distance to nearest training clip",
             f"{prior['nearest_training_clip_db']:.2f} dB  (real held-out clips: "
             f"{prior['held_out_nearest_training_clip_db']:.2f} dB)"),
        ]
    if "latent_1nn_label_accuracy" in results:
        rows.append(("latent 1-NN label accuracy (leave-one-out)",
                     f"{results['latent_1nn_label_accuracy']:.3f}  ({results['label_classes']} classes, "
                     f"chance {results['chance_accuracy']:.3f})"))
    if "latent_classifier_accuracy" in results:
        rows.append(("latent classifier accuracy", f"{results['latent_classifier_accuracy']:.3f}"))
    rows.append(("time per step", ", ".join(f"{name} {seconds:.1f} s" for name, seconds in results["seconds"].items())))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def main(argv=None):
    config = configure(globals(), argv)
    results = evaluate(config)
    print_table(results)
    path = Path(config.EVALUATION_JSON or Path(config.MODEL_DIR) / "evaluation.json")
    results["settings"] = vars(config)
    write_json(path, results)
    print(f"written to {path}")
    return results


if __name__ == "__main__":
    run_script(main)
