"""A stand-in listener for FSDD models: does a digit classifier recognise the generated sounds?

    python benchmarks/digit_recognition.py --spectrograms_dir=data/fsdd_spectrograms \
        --models=models/fsdd,models/fsdd_conditional

Trains a small CNN digit classifier on FSDD's training takes (5-49), checks it
on the test takes (0-4), then for each model: classifies its prior samples
(an unconditional model: which digits come out, how evenly, how confidently;
a conditional one: how often the requested digit is the one recognised) and its
reconstructions of the test takes (is the word kept?). An unconditional model
is judged twice: with the latent prior train.py fitted (one Gaussian per digit,
what generate.py uses; digits requested in turn) and with N(0, I). Samples go through the
same audio path as generate.py (phase reconstruction, then a fresh STFT), so
the classifier hears what a person would. Prints JSON and writes
benchmarks/results/digit_recognition.json.

This is a proxy, not a listening test: a classifier can be fooled by sounds a
person would not call a digit, so its figures are upper bounds on what a
listener would recognise.
"""

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from generate import load_latent_prior, load_model_folder  # noqa: E402
from soundgenerator import SoundGenerator, stft  # noqa: E402
from preprocess import FSDD_NAME, load_spectrograms  # noqa: E402

SAMPLES_PER_DIGIT = 30
CLASSIFIER_EPOCHS = 15


def take_of(clip):
    return int(FSDD_NAME.match(Path(clip["file"]).stem)["take"])


def train_classifier(spectrograms, digits, train_rows, test_rows):
    """A small CNN on normalised spectrograms; returns (model, test accuracy)."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=spectrograms.shape[1:] + (1,))
    x = inputs
    for filters in (16, 32, 64):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.Flatten()(x)  # keeps where in frequency and time the energy is
    x = keras.layers.Dropout(0.5)(x)
    outputs = keras.layers.Dense(10, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(spectrograms[train_rows][..., None], digits[train_rows], epochs=CLASSIFIER_EPOCHS, batch_size=32,
              verbose=0)
    predicted = model.predict(spectrograms[test_rows][..., None], verbose=0).argmax(axis=1)
    return model, float(np.mean(predicted == digits[test_rows]))


def as_heard(normalised, minima, maxima, params):
    """Normalised spectrograms -> audio (as generate.py) -> normalised log-spectrograms again."""
    import librosa

    generator = SoundGenerator(params["sample_rate"], params["frame_size"], params["hop_length"])
    signals = generator.convert_spectrograms_to_audio(normalised, minima, maxima)
    magnitudes = np.abs(stft(signals, params["frame_size"], params["hop_length"]))[:, :-1]
    heard = np.stack([librosa.amplitude_to_db(m, ref=1.0, amin=params["amin"], top_db=params["top_db"])
                      for m in magnitudes])
    low, high = heard.min(axis=(1, 2), keepdims=True), heard.max(axis=(1, 2), keepdims=True)
    return (heard - low) / np.maximum(high - low, 1e-6)


def judge_samples(classifier, samples, names, requested, level, params):
    """What the classifier hears in decoded samples: digit shares, confidence, requested digit kept."""
    probabilities = classifier.predict(as_heard(samples[..., 0], level["min"], level["max"], params)[..., None],
                                       verbose=0)
    recognised = probabilities.argmax(axis=1)
    share = np.bincount(recognised, minlength=10) / len(recognised)
    result = {
        "count": len(recognised),
        "recognised_digit_share": {str(d): round(float(s), 3) for d, s in enumerate(share)},
        "most_common_digit_share": round(float(share.max()), 3),
        "mean_confidence": round(float(probabilities.max(axis=1).mean()), 3),
    }
    if requested is not None:
        wanted = np.array([int(names[i]) for i in requested])
        result["recognised_as_requested"] = round(float(np.mean(recognised == wanted)), 3)
    return result


def judge_model(model_dir, classifier, spectrograms, clips, digits, test_rows):
    vae, params, training = load_model_folder(model_dir)
    names = training["label_names"]
    level = training["generation_level_db"]
    result = {"conditional": bool(names)}
    count = SAMPLES_PER_DIGIT * 10
    if names:
        requested = np.repeat(np.arange(len(names)), SAMPLES_PER_DIGIT)
        samples, _ = vae.sample(len(requested), requested, seed=0)
        result["prior_samples"] = judge_samples(classifier, samples, names, requested, level, params)
    else:
        prior = load_latent_prior(model_dir)
        if prior is not None:
            requested = np.repeat(np.arange(len(prior.classes)), SAMPLES_PER_DIGIT) if prior.classes else None
            samples, _ = vae.sample(count if requested is None else len(requested), requested, seed=0, prior=prior)
            result["fitted_prior_samples"] = judge_samples(classifier, samples, prior.classes, requested, level,
                                                           params)
        samples, _ = vae.sample(count, seed=0)
        result["prior_samples"] = judge_samples(classifier, samples, names, None, level, params)
    labels = None
    if names:
        labels = np.array([names.index(clips[i]["label"]) for i in test_rows])
    reconstructions, _ = vae.reconstruct(spectrograms[test_rows], labels)
    minima = np.array([clips[i]["min"] for i in test_rows])
    maxima = np.array([clips[i]["max"] for i in test_rows])
    heard = as_heard(reconstructions[..., 0], minima, maxima, params)
    kept = classifier.predict(heard[..., None], verbose=0).argmax(axis=1) == digits[test_rows]
    result["test_reconstructions_recognised"] = round(float(np.mean(kept)), 3)
    return result


def main(argv):
    options = dict(arg[2:].split("=", 1) for arg in argv if arg.startswith("--") and "=" in arg)
    spectrograms, clips, params = load_spectrograms(options.get("spectrograms_dir", "data/fsdd_spectrograms"),
                                                    mmap=False)
    digits = np.array([int(clip["label"]) for clip in clips])
    test_rows = np.array([i for i, clip in enumerate(clips) if take_of(clip) < 5])
    train_rows = np.array([i for i, clip in enumerate(clips) if take_of(clip) >= 5])
    classifier, accuracy = train_classifier(spectrograms, digits, train_rows, test_rows)
    # The classifier's own accuracy on test takes heard through phase reconstruction.
    heard = as_heard(spectrograms[test_rows], [clips[i]["min"] for i in test_rows],
                     [clips[i]["max"] for i in test_rows], params)
    heard_accuracy = float(np.mean(classifier.predict(heard[..., None], verbose=0).argmax(axis=1) == digits[test_rows]))
    results = {"classifier_test_accuracy": round(accuracy, 3),
               "classifier_test_accuracy_through_phase_reconstruction": round(heard_accuracy, 3), "models": {}}
    for model_dir in filter(None, options.get("models", "").split(",")):
        results["models"][model_dir] = judge_model(model_dir, classifier, spectrograms, clips, digits, test_rows)
    print(json.dumps(results, indent=2))
    out = ROOT / "benchmarks" / "results" / "digit_recognition.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
