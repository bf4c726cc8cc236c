"""The real-kit benchmark: a real acoustic drum kit in, with the defaults and only the paths changed.

    python benchmarks/real_kit.py                          # ../shared/data/drums, every clip
    python benchmarks/real_kit.py --subset=50 --seed=1     # 50 training clips, another seed
    python benchmarks/real_kit.py --max_minutes=10         # a training time limit (default: none)
    python benchmarks/real_kit.py --workdir=W --reuse=true # judge the model an earlier run left in W again
    python benchmarks/real_kit.py --train_epochs=50        # any train.py setting, as --train_<setting>=V

Every fifth file of each class (in sorted order: a round robin) is held out and
never seen by training; the other files are linked into a training folder with
the same class sub-folders. Then ``preprocess.py``, ``train.py`` and
``generate.py`` run with their defaults, and the new sounds are judged:

- a stand-in listener (the CNN of ``class_recognition.py``), trained on the
  training clips, says which class each generated WAV is: how often it is the
  class that was asked for;
- held-out log-spectral distance (``evaluate.py`` on the held-out folder), and how
  varied the new sounds are and how far from their nearest training clip (no copies);
- energy above 11 kHz in generated hi-hats against the real held-out ones;
- time from the attack to -60 dB of generated toms against the real ones (whole files);
- sample rate, sample format and peak level of the files;
- spectral flatness of generated and real sounds (flat noise would be near 1);
- the default phase reconstruction on the true held-out spectrograms: spectral
  convergence and CPU milliseconds per second of audio;
- time to the best model, and the training FLOPs per spectrogram with the
  utilisation they imply against a dense float32 matrix multiply in this run.

Prints JSON and writes benchmarks/results/real_kit[_subset<N>_seed<S>].json.
"""

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

DRUMS = ROOT.parent / "shared" / "data" / "drums"
HELD_OUT_EVERY = 5                    # every fifth file of a class is held out
SAMPLES_PER_CLASS = 25
TOP_OCTAVE_HZ = 11000.0
TAIL_DB = -60.0


def split_kit(kit, workdir, subset, seed):
    """Link the kit's files into workdir/train/<class>/ and workdir/held_out/<class>/; return both folders."""
    rng = np.random.default_rng(seed)
    train_dir, held_dir = workdir / "train", workdir / "held_out"
    training = []
    for class_dir in sorted(p for p in kit.iterdir() if p.is_dir()):
        files = sorted(class_dir.glob("*.wav"))
        for position, path in enumerate(files):
            if position % HELD_OUT_EVERY == HELD_OUT_EVERY - 1:
                _link(path, held_dir / class_dir.name / path.name)
            else:
                training.append(path)
    if subset:
        # Keep every class: at least two clips each, the rest drawn at random.
        by_class = {}
        for path in training:
            by_class.setdefault(path.parent.name, []).append(path)
        kept = [path for paths in by_class.values() for path in rng.permutation(paths)[:2]]
        rest = [path for path in training if path not in kept]
        training = kept + list(rng.permutation(rest)[:max(0, subset - len(kept))])
    for path in training:
        _link(path, train_dir / path.parent.name / path.name)
    return train_dir, held_dir


def _link(source, target):
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.symlink(source, target)
    except OSError:  # no symlinks (Windows without the right): copy
        shutil.copyfile(source, target)


def top_octave_share(signal, rate):
    """Fraction of the energy above TOP_OCTAVE_HZ."""
    spectrum = np.abs(np.fft.rfft(signal)) ** 2
    frequencies = np.fft.rfftfreq(len(signal), 1 / rate)
    return float(spectrum[frequencies >= TOP_OCTAVE_HZ].sum() / max(spectrum.sum(), 1e-20))


def tail_seconds(signal, rate):
    """Seconds from the attack (the peak) until the 10 ms envelope stays TAIL_DB below the peak."""
    window = max(1, int(0.01 * rate))
    count = len(signal) // window
    envelope = np.abs(signal[:count * window]).reshape(count, window).max(axis=1)
    loud = np.flatnonzero(envelope >= envelope.max() * 10 ** (TAIL_DB / 20))
    return float((loud[-1] - np.argmax(envelope)) * window / rate)


def spectral_flatness(signal):
    import librosa

    return float(np.median(librosa.feature.spectral_flatness(y=signal)))


def conv_macs(model):
    """Multiply-accumulates of one forward pass through the Conv2D, Conv2DTranspose and Dense layers."""
    import keras

    total = 0
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.Conv2DTranspose):
            _, height, width, channels = layer.input.shape
            total += height * width * channels * int(np.prod(layer.kernel_size)) * layer.filters
        elif isinstance(layer, keras.layers.Conv2D):
            _, height, width, filters = layer.output.shape
            total += height * width * filters * int(np.prod(layer.kernel_size)) * layer.input.shape[-1]
        elif isinstance(layer, keras.layers.Dense):
            total += int(np.prod(layer.kernel.shape))
    return int(total)


def matmul_flops_per_second(size=2048, repeats=10):
    import tensorflow as tf

    a = tf.random.normal((size, size))
    b = tf.random.normal((size, size))
    tf.matmul(a, b).numpy()
    started = time.perf_counter()
    for _ in range(repeats):
        result = tf.matmul(a, b)
    result.numpy()
    return 2 * size ** 3 * repeats / (time.perf_counter() - started)


def cpu_name():
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def phase_check(held_data, held_clips, params, repeats=3):
    """Spectral convergence and CPU ms per second of audio of the default phase reconstruction, on
    the true held-out spectrograms (the magnitudes that survive the pipeline), at the kit's rate."""
    from phase import spectral_convergence
    from soundgenerator import SoundGenerator

    generator = SoundGenerator(params["sample_rate"], params["frame_size"], params["hop_length"])
    minima = np.array([clip["min"] for clip in held_clips])
    maxima = np.array([clip["max"] for clip in held_clips])
    magnitudes = generator.db_to_magnitude(generator.denormalise(held_data, minima, maxima))
    cpu = []
    for _ in range(repeats):
        started = time.process_time()
        signals = generator.magnitude_to_audio(magnitudes)
        cpu.append(time.process_time() - started)
    sc = spectral_convergence(magnitudes, signals, params["frame_size"], params["hop_length"])
    audio_seconds = len(held_clips) * params["num_samples"] / params["sample_rate"]
    return {"clips": len(held_clips), "griffin_lim_iterations": generator.n_iter, "sc_db": round(float(sc.mean()), 2),
            "sc_db_worst_clip": round(float(sc.max()), 2),
            "cpu_ms_per_audio_s": round(1000 * min(cpu) / audio_seconds, 2)}


def main(argv):
    import csv

    import evaluate
    import folders
    import generate
    import preprocess
    import spectrogram
    import train
    from class_recognition import train_classifier

    options = dict(arg[2:].split("=", 1) for arg in argv if arg.startswith("--") and "=" in arg)
    kit = Path(options.get("kit", DRUMS))
    subset, seed = int(options.get("subset", 0)), int(options.get("seed", 0))
    if not kit.is_dir():
        raise SystemExit(f"no drum kit at {kit}")
    tag = f"_subset{subset}" if subset else ""
    tag += f"_seed{seed}" if seed else ""
    workdir = Path(options.get("workdir") or tempfile.mkdtemp(prefix="real_kit_"))
    spectrograms, model_dir, output_dir = workdir / "spectrograms", workdir / "model", workdir / "samples"
    extra = [f"--max_minutes={options['max_minutes']}"] if "max_minutes" in options else []
    # --train_<setting>=V passes --<setting>=V to train.py (to try another default; the results file says so)
    extra += [f"--{name[len('train_'):]}={value}" for name, value in options.items() if name.startswith("train_")]
    reuse = options.get("reuse") == "true" and (model_dir / "history.csv").exists()
    training_seconds = None
    if not reuse:  # --reuse=true judges the model a previous run of the same --workdir trained
        train_dir, held_dir = split_kit(kit, workdir, subset, seed)
        preprocess.main([f"--audio_dir={train_dir}", f"--spectrograms_dir={spectrograms}"])
        started = time.perf_counter()
        train.main([f"--spectrograms_dir={spectrograms}", f"--model_dir={model_dir}", f"--seed={seed}",
                    "--verbose=0", *extra])
        training_seconds = round(time.perf_counter() - started, 1)
    train_dir, held_dir = workdir / "train", workdir / "held_out"
    classes = folders.read_training(model_dir)["classes"]
    generate.main([f"--model_dir={model_dir}", f"--spectrograms_dir={spectrograms}", f"--output_dir={output_dir}",
                   f"--num_generated={SAMPLES_PER_CLASS * len(classes)}", "--num_reconstructed=0"])
    params = json.loads((model_dir / "params.json").read_text())

    # The stand-in listener, trained on the training clips.
    data, clips, _ = folders.load_spectrograms(spectrograms, mmap=False)
    labels = np.array([classes.index(clip["label"]) for clip in clips])
    held_config = folders.settings_from_params(params)
    held_spectrograms = workdir / "held_out_spectrograms"
    preprocess.main([f"--audio_dir={held_dir}", f"--spectrograms_dir={held_spectrograms}"]
                    + [f"--{name.lower()}={value}" for name, value in held_config.items()])
    held_data, held_clips, _ = folders.load_spectrograms(held_spectrograms, mmap=False)
    held_labels = np.array([classes.index(clip["label"]) for clip in held_clips])
    both = np.concatenate([data, held_data])
    all_labels = np.concatenate([labels, held_labels])
    listener, accuracy = train_classifier(both, all_labels, len(classes), np.arange(len(data)),
                                          np.arange(len(data), len(both)))

    generated = sorted((output_dir / "generated").glob("*.wav"))
    asked = np.array([classes.index(path.stem.split("_")[1]) for path in generated])
    heard = np.stack([spectrogram.spectrogram_of_file(path, params)[0] for path in generated])
    recognised = listener.predict(heard[..., None], verbose=0).argmax(axis=1)
    per_class = {name: round(float(np.mean(recognised[asked == c] == c)), 3) for c, name in enumerate(classes)}

    import soundfile as sf

    infos = [sf.info(path) for path in generated]
    peaks = [20 * np.log10(np.max(np.abs(sf.read(path)[0]))) for path in generated]
    rate = params["sample_rate"]
    loader = spectrogram.Loader(rate)  # whole files, mixed to mono, at the model's rate
    signals = {path: loader.load(path) for path in generated}

    def of_class(name, held=True):
        if held:
            return [loader.load(path) for path in sorted((held_dir / name).glob("*.wav"))]
        return [signal for path, signal in signals.items() if path.stem.split("_")[1] == name]

    figures = {}
    if "hihat" in classes:
        real = np.median([top_octave_share(s, rate) for s in of_class("hihat")])
        made = np.median([top_octave_share(s, rate) for s in of_class("hihat", held=False)])
        figures["hihat_energy_above_11khz"] = {"generated": round(float(made), 4), "real_held_out": round(float(real), 4),
                                               "ratio": round(float(made / real), 3)}
    if "tom" in classes:
        real = np.median([tail_seconds(s, rate) for s in of_class("tom")])
        made = np.median([tail_seconds(s, rate) for s in of_class("tom", held=False)])
        figures["tom_time_to_minus_60_db_s"] = {"generated": round(float(made), 3), "real_held_out": round(float(real), 3),
                                                "ratio": round(float(made / real), 3)}
    flatness = {name: {"generated": round(float(np.median([spectral_flatness(s) for s in of_class(name, False)])), 4),
                       "real_held_out": round(float(np.median([spectral_flatness(s) for s in of_class(name)])), 4)}
                for name in classes}

    evaluation = evaluate.evaluate(evaluate.configure(vars(evaluate), [
        f"--model_dir={model_dir}", f"--spectrograms_dir={spectrograms}", f"--audio_dir={held_dir}",
        f"--evaluation_json={workdir / 'evaluation.json'}"]))

    with open(model_dir / "history.csv") as file:
        history = list(csv.DictReader(file))
    best = min(history, key=lambda row: float(row.get("val_loss") or row["loss"]))
    epoch_seconds = np.diff([0.0] + [float(row["seconds"]) for row in history])
    from autoencoder import VAE

    vae = VAE.load(model_dir / folders.MODEL_FILE)
    forward = conv_macs(vae.encoder) + conv_macs(vae.decoder)
    training_flops = 3 * 2 * forward  # forward, and about twice that backwards
    training = json.loads((model_dir / "training.json").read_text())
    spectrograms_per_second = training["train_clips"] / float(np.median(epoch_seconds))
    matmul = matmul_flops_per_second()
    achieved = training_flops * spectrograms_per_second

    phase = phase_check(held_data, held_clips, params)
    results = {
        "cpu": cpu_name(), "cores": os.cpu_count(), "kit": str(kit), "subset": subset, "seed": seed,
        "train_files": sum(1 for _ in train_dir.rglob("*.wav")), "held_out_files": sum(1 for _ in held_dir.rglob("*.wav")),
        "spectrogram": {name: params[name] for name in ("sample_rate", "duration", "frame_size", "hop_length",
                                                         "n_bins", "n_frames")},
        "listener_held_out_accuracy": round(accuracy, 3),
        "recognised_as_requested": round(float(np.mean(recognised == asked)), 3),
        "per_class_recognised_as_requested": per_class,
        "held_out_log_spectral_distance_db": round(evaluation["reconstruction"]["log_spectral_distance_db"], 2),
        "phase_reconstruction_held_out": phase,
        "new_sounds_not_copies": {name: round(evaluation["prior_samples"][name], 2) for name in (
            "diversity_db", "held_out_diversity_db", "nearest_training_clip_db", "nearest_training_clip_db_min",
            "held_out_nearest_training_clip_db")},
        **figures,
        "spectral_flatness_median": flatness,
        "files": {"sample_rates": sorted({info.samplerate for info in infos}),
                  "subtypes": sorted({info.subtype for info in infos}),
                  "peak_dbfs_min": round(float(min(peaks)), 2), "peak_dbfs_max": round(float(max(peaks)), 2)},
        "epochs": len(history), "training_seconds": training_seconds,
        "best_epoch": int(best["epoch"]), "seconds_to_best_model": float(best["seconds"]),
        "training_spectrograms_per_second": round(spectrograms_per_second, 1),
        "training_gflop_per_spectrogram": round(training_flops / 1e9, 3),
        "achieved_gflop_per_second": round(achieved / 1e9, 1),
        "matmul_gflop_per_second": round(matmul / 1e9, 1),
        "utilisation_of_matmul": round(achieved / matmul, 3),
        "workdir": str(workdir), "train_settings_changed": extra,
    }
    print(json.dumps(results, indent=2))
    # One part per setting, with what a file name should not hold made dashes: --conv_strides=[[4,2],2] -> _conv_strides-4-2-2
    changed = "".join("_" + re.sub(r"[^A-Za-z0-9_.]+", "-", arg[2:].replace("=", "")).strip("-")
                      for arg in extra if not arg.startswith("--max_minutes"))
    out = ROOT / "benchmarks" / "results" / f"real_kit{tag}{changed}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
