"""A stand-in listener for labelled sounds: does a classifier recognise the class of what a model makes?

    python benchmarks/class_recognition.py --spectrograms_dir=data/fsdd_spectrograms \
        --models=models/fsdd,models/fsdd_conditional
    python benchmarks/class_recognition.py --spectrograms_dir=data/spectrograms --models=models/vae
    python benchmarks/class_recognition.py --spectrograms_dir=S --models=A,A --kernel_width=0,1   # two priors
    python benchmarks/class_recognition.py --spectrograms_dir=S --models=A,A --kernel_width=1,0.5 --spread_cap=0,1

Trains a small CNN classifier on the training clips of a labelled spectrogram
folder (the split train.py uses: FSDD's takes 5-49, or the same hashed 90% of
files), checks it on the held-out clips, then for each model: classifies its
new sounds and its reconstructions of the held-out clips (is the class kept?).
A model that knows classes (conditional, or with a per-class fitted latent
prior) is asked for every class in turn and scored on how often the requested
class is the one recognised; an unconditional model is also judged on N(0, I)
samples: which classes come out, how evenly. Sounds go through the same audio
path as generate.py (phase reconstruction, then a fresh STFT), so the
classifier hears what a person would. Prints JSON and writes
benchmarks/results/class_recognition_<spectrograms folder name>.json.

This is a proxy, not a listening test: a classifier can be fooled by sounds a
person would not recognise, so its figures are upper bounds on what a
listener would.
"""

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from soundgenerator import SoundGenerator  # noqa: E402
from soundkit.audio_folder import natural_key  # noqa: E402
from soundkit.folders import load_latent_prior, load_model_folder, load_spectrograms  # noqa: E402
from soundkit.stft import stft  # noqa: E402
from soundkit.training import split_clips  # noqa: E402

SAMPLES_PER_CLASS = 30
CLASSIFIER_EPOCHS = 15


def train_classifier(spectrograms, classes, count, train_rows, test_rows):
    """A small CNN on normalised spectrograms; returns (model, held-out accuracy)."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=spectrograms.shape[1:] + (1,))
    x = inputs
    for filters in (16, 32, 64):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.Flatten()(x)  # keeps where in frequency and time the energy is
    x = keras.layers.Dropout(0.5)(x)
    outputs = keras.layers.Dense(count, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(spectrograms[train_rows][..., None], classes[train_rows], epochs=CLASSIFIER_EPOCHS, batch_size=32,
              verbose=0)
    predicted = model.predict(spectrograms[test_rows][..., None], verbose=0).argmax(axis=1)
    return model, float(np.mean(predicted == classes[test_rows]))


def as_heard(normalised, minima, maxima, params):
    """Normalised spectrograms -> audio (as generate.py) -> normalised log-spectrograms again."""
    import librosa

    generator = SoundGenerator.from_params(params)
    signals = generator.convert_spectrograms_to_audio(normalised, minima, maxima)
    magnitudes = np.abs(stft(signals, params["frame_size"], params["hop_length"]))[:, :-1]
    heard = np.stack([librosa.amplitude_to_db(m, ref=1.0, amin=params["amin"], top_db=params["top_db"])
                      for m in magnitudes])
    low, high = heard.min(axis=(1, 2), keepdims=True), heard.max(axis=(1, 2), keepdims=True)
    return (heard - low) / np.maximum(high - low, 1e-6)


def judge_samples(listener, samples, level, params, requested=None):
    """What the listener hears in decoded samples: class shares, confidence, requested class kept.

    ``requested`` holds the listener's class index asked for each sample (None: nothing asked).
    """
    classifier, names = listener
    probabilities = classifier.predict(as_heard(samples[..., 0], level["min"], level["max"], params)[..., None],
                                       verbose=0)
    recognised = probabilities.argmax(axis=1)
    share = np.bincount(recognised, minlength=len(names)) / len(recognised)
    result = {
        "count": len(recognised),
        "recognised_class_share": {name: round(float(s), 3) for name, s in zip(names, share, strict=True)},
        "most_common_class_share": round(float(share.max()), 3),
        "mean_confidence": round(float(probabilities.max(axis=1).mean()), 3),
    }
    if requested is not None:
        result["recognised_as_requested"] = round(float(np.mean(recognised == requested)), 3)
        result["per_class_recognised_as_requested"] = {
            names[c]: round(float(np.mean(recognised[requested == c] == c)), 3) for c in np.unique(requested)}
    return result


def sampler_settings(options, count):
    """Per model, the fitted prior's settings given as comma-separated lists in ``options`` ({"kernel_width":
    "1,0.5", "spread_cap": ",0"}; an empty item: generate.py's default): [{setting: float}] of ``count`` items."""
    samplers = [{} for _ in range(count)]
    for setting in ("kernel_width", "spread_cap"):
        values = options[setting].split(",") if options.get(setting) else [""] * count
        for sampler, value in zip(samplers, values, strict=True):
            if value:
                sampler[setting] = float(value)
    return samplers


def judge_model(model_dir, listener, spectrograms, clips, classes, test_rows, sampler=None):
    """The listener's figures for one model: its new sounds (by class where it knows classes), its
    N(0, I) samples when unconditional, and its reconstructions of the held-out clips. ``sampler``: settings of
    the fitted prior ({"kernel_width", "spread_cap"}: generate.py's KERNEL_WIDTH, SPREAD_CAP; missing: its default)."""
    _, names = listener
    model = load_model_folder(model_dir)
    vae, params = model.vae, model.params
    conditional_names = model.decoder_classes
    level = model.training["generation_level_db"]
    result = {"conditional": bool(conditional_names)}
    prior = None if conditional_names else load_latent_prior(model_dir)
    if prior is not None:
        for setting, value in (sampler or {}).items():
            setattr(prior, setting, value)
            result[setting] = value
    model_names = conditional_names or (prior.classes if prior else [])
    if model_names:  # ask for every class in turn
        asked = np.repeat(np.arange(len(model_names)), SAMPLES_PER_CLASS)
        samples, _ = vae.sample(len(asked), asked, seed=0, prior=prior)
        requested = np.array([names.index(model_names[i]) for i in asked])
        key = "prior_samples" if conditional_names else "fitted_prior_samples"
        result[key] = judge_samples(listener, samples, level, params, requested)
    elif prior is not None:
        samples, _ = vae.sample(SAMPLES_PER_CLASS * len(names), seed=0, prior=prior)
        result["fitted_prior_samples"] = judge_samples(listener, samples, level, params)
    if not conditional_names:
        samples, _ = vae.sample(SAMPLES_PER_CLASS * len(names), seed=0)
        result["prior_samples"] = judge_samples(listener, samples, level, params)
    labels = None
    if conditional_names:
        labels = np.array([conditional_names.index(clips[i]["label"]) for i in test_rows])
    reconstructions, _ = vae.reconstruct(spectrograms[test_rows], labels)
    minima = np.array([clips[i]["min"] for i in test_rows])
    maxima = np.array([clips[i]["max"] for i in test_rows])
    heard = as_heard(reconstructions[..., 0], minima, maxima, params)
    kept = listener[0].predict(heard[..., None], verbose=0).argmax(axis=1) == classes[test_rows]
    result["test_reconstructions_recognised"] = round(float(np.mean(kept)), 3)
    return result


def main(argv):
    options = dict(arg[2:].split("=", 1) for arg in argv if arg.startswith("--") and "=" in arg)
    folder = Path(options.get("spectrograms_dir", "data/fsdd_spectrograms"))
    spectrograms, clips, params = load_spectrograms(folder, mmap=False)
    if any(clip.get("label") is None for clip in clips):
        raise SystemExit(f"{folder}: every clip needs a label (class sub-folders or FSDD-style names)")
    names = sorted({clip["label"] for clip in clips}, key=natural_key)
    classes = np.array([names.index(clip["label"]) for clip in clips])
    train_rows, test_rows = split_clips(clips, 0.1, 0)
    classifier, accuracy = train_classifier(spectrograms, classes, len(names), train_rows, test_rows)
    listener = (classifier, names)
    # The classifier's own accuracy on held-out clips heard through phase reconstruction.
    heard = as_heard(spectrograms[test_rows], [clips[i]["min"] for i in test_rows],
                     [clips[i]["max"] for i in test_rows], params)
    heard_accuracy = float(np.mean(classifier.predict(heard[..., None], verbose=0).argmax(axis=1)
                                   == classes[test_rows]))
    results = {"spectrograms_dir": str(folder), "classes": names, "train_clips": len(train_rows),
               "test_clips": len(test_rows), "classifier_test_accuracy": round(accuracy, 3),
               "classifier_test_accuracy_through_phase_reconstruction": round(heard_accuracy, 3), "models": {}}
    models = list(filter(None, options.get("models", "").split(",")))
    # --kernel_width=0,1 (and --spread_cap): one per model (the same folder may come twice, with two widths)
    for model_dir, sampler in zip(models, sampler_settings(options, len(models)), strict=True):
        key = " ".join([model_dir, *(f"({setting} {value:g})" for setting, value in sampler.items())])
        results["models"][key] = judge_model(model_dir, listener, spectrograms, clips, classes, test_rows, sampler)
    print(json.dumps(results, indent=2))
    out = ROOT / "benchmarks" / "results" / f"class_recognition_{folder.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
