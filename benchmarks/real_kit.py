"""The real-kit benchmark: a real acoustic drum kit in, with the defaults and only the paths changed.

    python benchmarks/real_kit.py                          # ../shared/data/drums, every clip
    python benchmarks/real_kit.py --subset=50 --seed=1     # 50 training clips, another seed
    python benchmarks/real_kit.py --max_minutes=10         # a training time limit (default: none)
    python benchmarks/real_kit.py --workdir=W --reuse=true # judge the model an earlier run left in W again
    python benchmarks/real_kit.py --train_epochs=50        # any train.py setting, as --train_<setting>=V
    python benchmarks/real_kit.py --held_out=hits          # hold out whole hits, every round robin of them

Every fifth file of each class (in sorted order: a round robin) is held out and
never seen by training; the other files are linked into a training folder with
the same class sub-folders. With ``--held_out=hits``, files whose names differ
only in a trailing number (``hc_vl2_rr1`` .. ``hc_vl2_rr4``: round robins of one
hit at one velocity) go together, and a fifth of a class's hits, drawn at random
(seed 0: every fifth in sorted order would be mostly the loudest velocity), are
held out: no held-out clip has a twin in training. Then ``preprocess.py``, ``train.py`` and
``generate.py`` run with their defaults, each as its own process
(``soundkit.configurator.run_step``), and the new sounds are judged:

- a stand-in listener (the CNN of ``class_recognition.py``), trained on the
  training clips, says which class each generated WAV is: how often it is the
  class that was asked for;
- held-out log-spectral distance (``evaluate.py`` on the held-out folder, read back
  from the evaluation.json it writes into the work folder), and how varied the new
  sounds are and how far from their nearest training clip (no copies);
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

from soundkit.configurator import run_step  # noqa: E402
from soundkit.fileio import read_csv, read_json  # noqa: E402
from soundkit.folders import ADVERSARIAL_HISTORY_FILE, HISTORY_FILE, MODEL_FILE, PARAMS_FILE, TRAINING_FILE  # noqa: E402

DRUMS = ROOT.parent / "shared" / "data" / "drums"
HELD_OUT_EVERY = 5                    # every fifth file (or hit) of a class is held out
SAMPLES_PER_CLASS = 25
TOP_OCTAVE_HZ = 11000.0
TAIL_DB = -60.0


def split_kit(kit, workdir, subset, seed, by_hit=False):
    """Link the kit's files into workdir/train/<class>/ and workdir/held_out/<class>/; return both folders.

    Every fifth file of a class is held out, or with ``by_hit`` a fifth of its hits drawn at random (a hit: the
    files whose names differ only in a trailing number)."""
    rng, hit_rng = np.random.default_rng(seed), np.random.default_rng(0)
    train_dir, held_dir = workdir / "train", workdir / "held_out"
    training = []
    for class_dir in sorted(p for p in kit.iterdir() if p.is_dir()):
        files = sorted(class_dir.glob("*.wav"))
        if by_hit:
            hit_of = {path: re.sub(r"\d+$", "", path.stem) for path in files}
            hits = sorted(set(hit_of.values()))
            chosen = set(hit_rng.permutation(hits)[:max(1, round(len(hits) / HELD_OUT_EVERY))])
            held = {path for path in files if hit_of[path] in chosen}
        else:
            held = set(files[HELD_OUT_EVERY - 1::HELD_OUT_EVERY])
        for path in files:
            if path in held:
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
        if not getattr(layer, "_inbound_nodes", None):
            continue  # a layer inside a wrapper, never called on its own: counted through the wrapper
        if isinstance(layer, keras.layers.SpectralNormalization):
            total += int(np.prod(layer.output.shape[1:3])) * int(np.prod(layer.layer.kernel.shape))
        elif isinstance(layer, keras.layers.Conv2DTranspose):
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
    from soundkit.phase import spectral_convergence
    from soundgenerator import SoundGenerator

    generator = SoundGenerator.from_params(params)
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


def train_arguments(options):
    """The train.py arguments a run changes: --max_minutes, and --<setting>=V for each --train_<setting>=V."""
    extra = [f"--max_minutes={options['max_minutes']}"] if "max_minutes" in options else []
    # --train_<setting>=V passes --<setting>=V to train.py (to try another default; the results file says so)
    return extra + [f"--{name[len('train_'):]}={value}" for name, value in options.items() if name.startswith("train_")]


def preprocess_and_train(kit, workdir, subset, seed, extra, by_hit=False):
    """Split the kit, run preprocess.py and train.py on its training part; return the seconds of training."""
    train_dir, _ = split_kit(kit, workdir, subset, seed, by_hit)
    run_step("preprocess.py", [f"--audio_dir={train_dir}", f"--spectrograms_dir={workdir / 'spectrograms'}"])
    started = time.perf_counter()
    run_step("train.py", [f"--spectrograms_dir={workdir / 'spectrograms'}", f"--model_dir={workdir / 'model'}",
                          f"--seed={seed}", "--verbose=0", *extra])
    return round(time.perf_counter() - started, 1)


def generate_sounds(model_dir, spectrograms, output_dir, count):
    """Run generate.py for ``count`` new sounds; return their WAV paths, as its generation.json lists them."""
    run_step("generate.py", [f"--model_dir={model_dir}", f"--spectrograms_dir={spectrograms}",
                             f"--output_dir={output_dir}", f"--num_generated={count}", "--num_reconstructed=0"])
    return sorted(output_dir / path for path in read_json(output_dir / "generation.json")["files"]["generated"])


def preprocess_held_out(held_dir, held_spectrograms, params):
    """Run preprocess.py on the held-out files with the model's spectrogram settings; return the folder."""
    from soundkit.folders import settings_from_params

    run_step("preprocess.py", [f"--audio_dir={held_dir}", f"--spectrograms_dir={held_spectrograms}"]
             + [f"--{name.lower()}={value}" for name, value in settings_from_params(params).items()])
    return held_spectrograms


def listener_figures(spectrograms, held_spectrograms, classes, generated, params):
    """The stand-in listener, trained on the training clips: its held-out accuracy, and how often it hears
    in each generated WAV the class that was asked for (the class is in the file name)."""
    from class_recognition import train_classifier
    from soundkit.folders import load_spectrograms
    from soundkit.spectrogram import spectrogram_of_file

    data, clips, _ = load_spectrograms(spectrograms, mmap=False)
    held_data, held_clips, _ = load_spectrograms(held_spectrograms, mmap=False)
    labels = np.array([classes.index(clip["label"]) for clip in clips])
    held_labels = np.array([classes.index(clip["label"]) for clip in held_clips])
    both = np.concatenate([data, held_data])
    all_labels = np.concatenate([labels, held_labels])
    listener, accuracy = train_classifier(both, all_labels, len(classes), np.arange(len(data)),
                                          np.arange(len(data), len(both)))
    asked = np.array([classes.index(path.stem.split("_")[1]) for path in generated])
    heard = np.stack([spectrogram_of_file(path, params)[0] for path in generated])
    recognised = listener.predict(heard[..., None], verbose=0).argmax(axis=1)
    per_class = {name: round(float(np.mean(recognised[asked == c] == c)), 3) for c, name in enumerate(classes)}
    return {"listener_held_out_accuracy": round(accuracy, 3),
            "recognised_as_requested": round(float(np.mean(recognised == asked)), 3),
            "per_class_recognised_as_requested": per_class}


def class_signals(generated, held_dir, classes, rate):
    """{class: (generated signals, real held-out signals)}: whole files, mixed to mono, at the model's rate."""
    from soundkit.spectrogram import Loader

    loader = Loader(rate)
    return {name: ([loader.load(path) for path in generated if path.stem.split("_")[1] == name],
                   [loader.load(path) for path in sorted((held_dir / name).glob("*.wav"))])
            for name in classes}


def sound_figures(by_class, rate):
    """Hi-hats' energy above 11 kHz and toms' ring time, generated against real; every class's flatness."""
    figures = {}
    for key, name, measure, digits in (("hihat_energy_above_11khz", "hihat", top_octave_share, 4),
                                       ("tom_time_to_minus_60_db_s", "tom", tail_seconds, 3)):
        if name in by_class:
            made_signals, real_signals = by_class[name]
            real = np.median([measure(signal, rate) for signal in real_signals])
            made = np.median([measure(signal, rate) for signal in made_signals])
            figures[key] = {"generated": round(float(made), digits), "real_held_out": round(float(real), digits),
                            "ratio": round(float(made / real), 3)}
    figures["spectral_flatness_median"] = {
        name: {"generated": round(float(np.median([spectral_flatness(s) for s in made])), 4),
               "real_held_out": round(float(np.median([spectral_flatness(s) for s in real])), 4)}
        for name, (made, real) in by_class.items()}
    return figures


def file_figures(generated):
    """Sample rates, sample formats and peak levels of the generated WAV files."""
    import soundfile as sf

    infos = [sf.info(path) for path in generated]
    peaks = [20 * np.log10(np.max(np.abs(sf.read(path)[0]))) for path in generated]
    return {"sample_rates": sorted({info.samplerate for info in infos}),
            "subtypes": sorted({info.subtype for info in infos}),
            "peak_dbfs_min": round(float(min(peaks)), 2), "peak_dbfs_max": round(float(max(peaks)), 2)}


def evaluate_held_out(model_dir, spectrograms, held_dir, workdir):
    """Run evaluate.py on the held-out folder; return what it writes into workdir/evaluation.json."""
    path = workdir / "evaluation.json"
    run_step("evaluate.py", [f"--model_dir={model_dir}", f"--spectrograms_dir={spectrograms}",
                             f"--audio_dir={held_dir}", f"--evaluation_json={path}"])
    return read_json(path)


def training_figures(model_dir, training_seconds):
    """Epochs, time to the best model, training throughput, FLOPs, and utilisation against a matrix multiply."""
    from autoencoder import VAE

    history = read_csv(model_dir / HISTORY_FILE)
    best = min(history, key=lambda row: float(row.get("val_loss") or row["loss"]))
    epoch_seconds = np.diff([0.0] + [float(row["seconds"]) for row in history])
    vae = VAE.load(model_dir / MODEL_FILE)
    forward = conv_macs(vae.encoder) + conv_macs(vae.decoder)
    training_flops = 3 * 2 * forward  # forward, and about twice that backwards
    spectrograms_per_second = read_json(model_dir / TRAINING_FILE)["train_clips"] / float(np.median(epoch_seconds))
    matmul = matmul_flops_per_second()
    achieved = training_flops * spectrograms_per_second
    second = second_stage_figures(model_dir, vae, matmul)
    # The best model is the first stage's best, or the second stage's kept epoch after the whole first stage.
    to_best = float(history[-1]["seconds"]) + second["seconds_to_kept_epoch"] if second.get("kept_epoch") \
        else float(best["seconds"])
    return {"epochs": len(history), "training_seconds": training_seconds,
            "best_epoch": int(best["epoch"]), "seconds_to_best_model": round(to_best, 1),
            "first_stage_seconds_to_best": float(best["seconds"]), "second_stage": second,
            "training_spectrograms_per_second": round(spectrograms_per_second, 1),
            "training_gflop_per_spectrogram": round(training_flops / 1e9, 3),
            "achieved_gflop_per_second": round(achieved / 1e9, 1),
            "matmul_gflop_per_second": round(matmul / 1e9, 1),
            "utilisation_of_matmul": round(achieved / matmul, 3)}


def second_stage_figures(model_dir, vae, matmul):
    """The decoder's second stage (train.py's ADVERSARIAL_EPOCHS): epochs, time, FLOPs and utilisation."""
    from soundkit.adversarial import build_discriminator

    path = model_dir / ADVERSARIAL_HISTORY_FILE
    if not path.exists():
        return {"epochs": 0}
    rows = read_csv(path)
    kept = [row for row in rows if row["kept"] == "True"]
    judge_macs = conv_macs(build_discriminator(vae.input_shape_))
    # the frozen encoder forward; the decoder forward and back; the discriminator on real and decoded, both ways
    flops = 2 * (conv_macs(vae.encoder) + 3 * conv_macs(vae.decoder) + 2 * 3 * judge_macs)
    epoch_seconds = np.diff([0.0] + [float(row["seconds"]) for row in rows])
    per_second = read_json(model_dir / TRAINING_FILE)["train_clips"] / float(np.median(epoch_seconds))
    return {"epochs": len(rows), "kept_epoch": int(kept[-1]["epoch"]) if kept else 0,
            "seconds": float(rows[-1]["seconds"]),
            "seconds_to_kept_epoch": float(kept[-1]["seconds"]) if kept else 0.0,
            "texture_gap_first_epoch_and_kept": [round(float(rows[0]["texture_gap"]), 3),
                                       round(float(kept[-1]["texture_gap"]), 3) if kept else None],
            "spectrograms_per_second": round(per_second, 1), "gflop_per_spectrogram": round(flops / 1e9, 3),
            "utilisation_of_matmul": round(flops * per_second / matmul, 3)}


def results_path(subset, seed, extra, kit=DRUMS, by_hit=False):
    """benchmarks/results/real_kit[_<kit>][_held_out_hits][_subset<N>_seed<S>][_<setting><value>...].json (<kit>:
    another --kit's folder name)"""
    tag = f"_{re.sub(r'[^A-Za-z0-9_.]+', '-', Path(kit).name)}" if Path(kit).resolve() != DRUMS.resolve() else ""
    tag += "_held_out_hits" if by_hit else ""
    tag += f"_subset{subset}" if subset else ""
    tag += f"_seed{seed}" if seed else ""
    # One part per setting, with what a file name should not hold made dashes:
    # --conv_strides=[[4,2],2] -> _conv_strides-4-2-2
    changed = "".join("_" + re.sub(r"[^A-Za-z0-9_.]+", "-", arg[2:].replace("=", "")).strip("-")
                      for arg in extra if not arg.startswith("--max_minutes"))
    return ROOT / "benchmarks" / "results" / f"real_kit{tag}{changed}.json"


def main(argv):
    from soundkit.folders import load_spectrograms, read_training

    options = dict(arg[2:].split("=", 1) for arg in argv if arg.startswith("--") and "=" in arg)
    kit = Path(options.get("kit", DRUMS)).absolute()
    subset, seed = int(options.get("subset", 0)), int(options.get("seed", 0))
    if options.get("held_out", "files") not in ("files", "hits"):
        raise SystemExit(f"--held_out must be 'files' or 'hits', got {options['held_out']!r}")
    by_hit = options.get("held_out") == "hits"
    if not kit.is_dir():
        raise SystemExit(f"no drum kit at {kit}")
    # Absolute: the steps run in the project folder.
    workdir = Path(options.get("workdir") or tempfile.mkdtemp(prefix="real_kit_")).absolute()
    spectrograms, model_dir, output_dir = workdir / "spectrograms", workdir / "model", workdir / "samples"
    extra = train_arguments(options)
    reuse = options.get("reuse") == "true" and (model_dir / HISTORY_FILE).exists()
    training_seconds = None
    if not reuse:  # --reuse=true judges the model a previous run of the same --workdir trained
        training_seconds = preprocess_and_train(kit, workdir, subset, seed, extra, by_hit)
    train_dir, held_dir = workdir / "train", workdir / "held_out"
    classes = read_training(model_dir)["classes"]
    generated = generate_sounds(model_dir, spectrograms, output_dir, SAMPLES_PER_CLASS * len(classes))
    params = read_json(model_dir / PARAMS_FILE)
    held_spectrograms = preprocess_held_out(held_dir, workdir / "held_out_spectrograms", params)
    listening = listener_figures(spectrograms, held_spectrograms, classes, generated, params)
    evaluation = evaluate_held_out(model_dir, spectrograms, held_dir, workdir)
    held_data, held_clips, _ = load_spectrograms(held_spectrograms, mmap=False)
    results = {
        "cpu": cpu_name(), "cores": os.cpu_count(), "kit": str(kit), "subset": subset, "seed": seed,
        "train_files": sum(1 for _ in train_dir.rglob("*.wav")),
        "held_out_files": sum(1 for _ in held_dir.rglob("*.wav")),
        "spectrogram": {name: params[name] for name in ("sample_rate", "duration", "frame_size", "hop_length",
                                                         "n_bins", "n_frames")},
        **listening,
        "held_out_log_spectral_distance_db": round(evaluation["reconstruction"]["log_spectral_distance_db"], 2),
        "phase_reconstruction_held_out": phase_check(held_data, held_clips, params),
        "new_sounds_not_copies": {name: round(evaluation["prior_samples"][name], 2) for name in (
            "diversity_db", "held_out_diversity_db", "nearest_training_clip_db", "nearest_training_clip_db_min",
            "held_out_nearest_training_clip_db")},
        **sound_figures(class_signals(generated, held_dir, classes, params["sample_rate"]), params["sample_rate"]),
        "files": file_figures(generated),
        **training_figures(model_dir, training_seconds),
        "workdir": str(workdir), "train_settings_changed": extra,
    }
    print(json.dumps(results, indent=2))
    out = results_path(subset, seed, extra, kit, by_hit)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
