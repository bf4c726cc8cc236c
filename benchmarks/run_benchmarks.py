"""Speed and memory figures for the README; prints JSON and writes benchmarks/results/speed.json.

    python benchmarks/run_benchmarks.py            # everything (about 7 minutes on 2 cores)
    python benchmarks/run_benchmarks.py --only=training

Measures, in one run on this machine:
- preprocessing of FSDD (../shared/data/fsdd): files/s one file at a time, in batches, and in
  batches on all cores (five alternating rounds, medians). Each is a run of preprocess.py in its
  own process, timed by the seconds it writes in report.json: its work on the files, without the
  start of Python, the imports and the choice of settings;
- training throughput (spectrograms/s) of the defaults and of the tutorial preset on the tutorial's
  geometry (256 x 64), and of the defaults on the one chosen for a real kit (44.1 kHz, 1.75 s: 512 x 151);
- generation: 100 new 1.75 s sounds at 44.1 kHz, decode + phase reconstruction + WAV writing;
- peak memory (RSS) of train.py on a small and a 10x larger synthetic dataset;
- training throughput of the defaults in float32 and in mixed bfloat16 precision.

No step is imported: preprocess.py and train.py run as their own processes
(``soundkit.configurator.run_step``); training and generation are timed with the
library they are made of (``soundkit.training``, ``soundgenerator``), given the
settings of train.py and generate.py as their sources set them (``step_settings``).
Each geometry's spectrogram parameters come from a preprocess.py run on one
second of noise.
"""

import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from soundkit.configurator import PRESETS, configure, run_step, step_settings  # noqa: E402
from soundkit.fileio import read_json, write_json  # noqa: E402
from soundkit.folders import PARAMS_FILE, REPORT_FILE  # noqa: E402

FSDD_DIR = ROOT.parent / "shared" / "data" / "fsdd"
RESULTS = ROOT / "benchmarks" / "results" / "speed.json"
TRAINING_STEPS = 20            # timed steps per model, after a warm-up epoch
MEMORY_CLIPS = 400             # the small dataset; the large one is 10x
PREPROCESSING_ROUNDS = 5       # rounds of the three preprocessing modes; median ratios are reported
PREPROCESSING_MODES = (("one_at_a_time", ["--num_workers=1", "--batch_files=1"]),
                       ("one_process", ["--num_workers=1"]), ("all_cores", ["--num_workers=0"]))
# Spectrogram geometries, as preprocess.py chooses them for these folders (a real kit at 44.1 kHz, FSDD at
# 8 kHz), and the tutorial's (FSDD resampled to 22050 Hz). Both models are timed on the same geometry.
GEOMETRIES = {
    "kit_44k": ["--sample_rate=44100", "--duration=1.75", "--frame_size=1024", "--hop_length=512"],
    "tutorial_22k": ["--sample_rate=22050", "--duration=0.74", "--frame_size=512", "--hop_length=256"],
}


def preprocessing_run(arguments):
    """(files processed, seconds) of one preprocess.py run on FSDD into a fresh folder.

    The seconds are the ones preprocess.py writes in report.json: its work on
    the files (load, resample, pad, STFT, dB, normalise, write), not the start
    of its process, its imports or the search of the folder.
    """
    with tempfile.TemporaryDirectory() as out:
        run_step("preprocess.py", [f"--audio_dir={FSDD_DIR}", f"--spectrograms_dir={out}", *arguments], capture=True)
        report = read_json(Path(out) / REPORT_FILE)
    return report["files_processed"], report["seconds"]


def preprocessing():
    """FSDD files/s: a one-file-at-a-time loop, one process with batches, all cores with batches.

    All three run the same steps through preprocess.py, each in its own process
    (``preprocessing_run``); "one_at_a_time" is NUM_WORKERS=1 with BATCH_FILES=1.
    The modes run PREPROCESSING_ROUNDS times, in alternating order, and the
    speed-ups reported are medians of each round's ratios: on a shared 2-core
    machine one round alone can be off by 20% either way.
    """
    if not FSDD_DIR.is_dir():
        return {"skipped": f"no FSDD at {FSDD_DIR}"}
    modes = PREPROCESSING_MODES
    rounds = []
    for round_index in range(PREPROCESSING_ROUNDS):
        seconds = {}
        for name, argv in modes if round_index % 2 == 0 else modes[::-1]:
            files, seconds[name] = preprocessing_run(argv)
        rounds.append({name: round(seconds[name], 2) for name, _ in modes})
    figures = {"files": files, "cpus": os.cpu_count(), "rounds": rounds}
    for name, _ in modes:
        median_seconds = float(np.median([one_round[name] for one_round in rounds]))
        figures[name] = {"median_seconds": round(median_seconds, 2),
                         "files_per_second": round(files / median_seconds, 1)}

    def median_ratio(slow, fast):
        return round(float(np.median([one_round[slow] / one_round[fast] for one_round in rounds])), 2)

    figures["speedup"] = median_ratio("one_at_a_time", "all_cores")        # the figure
    figures["speedup_from_cores"] = median_ratio("one_process", "all_cores")
    figures["speedup_from_batches"] = median_ratio("one_at_a_time", "one_process")
    return figures


@functools.cache
def geometry_params(geometry):
    """The params.json that preprocess.py writes with GEOMETRIES[geometry] (n_bins, n_frames...).

    Read from a preprocess.py run on one second of noise, so that the shape of
    the spectrograms is preprocess.py's own and never computed twice.
    """
    import soundfile as sf

    with tempfile.TemporaryDirectory() as out:
        audio_dir = Path(out) / "audio"
        audio_dir.mkdir()
        noise = 0.1 * np.random.default_rng(0).standard_normal(44100)
        sf.write(audio_dir / "noise.wav", noise.astype(np.float32), 44100)
        spectrograms_dir = Path(out) / "spectrograms"
        run_step("preprocess.py", [f"--audio_dir={audio_dir}", f"--spectrograms_dir={spectrograms_dir}",
                                   "--labels=none", "--num_workers=1", *GEOMETRIES[geometry]], capture=True)
        return read_json(spectrograms_dir / PARAMS_FILE)


def training_throughput(configurations=(("defaults", []), ("tutorial", ["--preset=tutorial"]))):
    """Spectrograms/s of a training step, defaults vs the tutorial preset, on the tutorial's geometry; the
    defaults alone on the real kit's. (The tutorial preset on 512 x 151 spectrograms took over 17 GB and
    had not finished 40 steps after 20 minutes on 2 cores: its first layer has 512 filters.)"""
    return {geometry: _throughput(configurations if geometry == "tutorial_22k" else configurations[:1], geometry)
            for geometry in GEOMETRIES}


def _throughput(configurations, geometry):
    """{name: figures} of one timed epoch of TRAINING_STEPS steps per (name, train.py arguments)."""
    from soundkit import training

    params = geometry_params(geometry)
    bins, frames = params["n_bins"], params["n_frames"]
    figures = {}
    for name, argv in configurations:
        config = configure(step_settings("train.py"), argv)
        count = config.BATCH_SIZE * TRAINING_STEPS
        with tempfile.TemporaryDirectory() as out:
            path = Path(out) / "spectrograms.npy"
            np.save(path, np.random.default_rng(0).random((count, bins, frames), dtype=np.float32))
            reader = training.SpectrogramReader(path)
            dataset = training.make_dataset(reader, np.arange(count), None, config.BATCH_SIZE, True, 0)
            vae = training.build_vae(config, (bins, frames, 1), 0)
            vae.fit(dataset, epochs=1, verbose=0)  # compile the graph
            started = time.perf_counter()
            vae.fit(dataset, epochs=1, verbose=0)
            seconds = time.perf_counter() - started
        figures[name] = {"spectrogram_shape": [bins, frames], "batch_size": config.BATCH_SIZE,
                         "parameters": int(vae.encoder.count_params() + vae.decoder.count_params()),
                         "spectrograms_per_second": round(count / seconds, 1)}
    if "tutorial" in figures:
        figures["speedup"] = round(figures["defaults"]["spectrograms_per_second"]
                                   / figures["tutorial"]["spectrograms_per_second"], 1)
    return figures


def _throughput_child(policy):
    """Run in a subprocess: training throughput of the defaults under a Keras dtype policy."""
    import keras

    keras.mixed_precision.set_global_policy(policy)
    print(json.dumps(_throughput((("defaults", []),), "kit_44k")["defaults"]))


def _child_json(*arguments):
    """Run this script with ``arguments`` in its own process; return the JSON of the last line it prints."""
    result = subprocess.run([sys.executable, __file__, *arguments], capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-2000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def mixed_precision():
    """Training spectrograms/s of the defaults in float32 and in mixed bfloat16 (each in its own process)."""
    figures = {}
    for policy in ("float32", "mixed_bfloat16"):
        figures[policy] = _child_json("--child-throughput", policy)["spectrograms_per_second"]
    figures["ratio"] = round(figures["mixed_bfloat16"] / figures["float32"], 2)
    return figures


def generation(count=100):
    """Seconds for ``count`` new sounds: prior sampling, decoding, phase reconstruction, WAV files.

    With the defaults of train.py (the model) and generate.py (its WAV settings; its
    Griffin-Lim settings are the library's defaults, ``soundkit.phase``).
    """
    from soundgenerator import SoundGenerator, write_wavs
    from soundkit import training
    from soundkit.phase import DEFAULT_MOMENTUM, DEFAULT_N_ITER

    config = configure(step_settings("train.py"), [])
    params = geometry_params("kit_44k")
    wav_settings = configure(step_settings("generate.py"), [])
    with tempfile.TemporaryDirectory() as out:
        vae = training.build_vae(config, (params["n_bins"], params["n_frames"], 1), 0)
        vae.decode(np.zeros((1, config.LATENT_SPACE_DIM)))  # warm up
        started = time.perf_counter()
        spectrograms, _ = vae.sample(count, seed=0)
        decoded = time.perf_counter()
        generator = SoundGenerator.from_params(params, n_iter=DEFAULT_N_ITER, momentum=DEFAULT_MOMENTUM)
        signals = generator.convert_spectrograms_to_audio(spectrograms, -60.0, 20.0)
        inverted = time.perf_counter()
        write_wavs(signals, [f"s{i}" for i in range(count)], out, params["sample_rate"], wav_settings)
        written = time.perf_counter()
    return {"sounds": count, "seconds": round(written - started, 2),
            "decode_seconds": round(decoded - started, 2), "phase_reconstruction_seconds": round(inverted - decoded, 2),
            "write_seconds": round(written - inverted, 2), "sounds_per_second": round(count / (written - started), 1),
            "griffin_lim_iterations": DEFAULT_N_ITER}


def _train_child(spectrograms_dir, model_dir):
    """Run in a subprocess: one epoch of train.py in its own process, then print its peak RSS in MiB.

    The peak is ``ru_maxrss`` of this process's children, that is of train.py. It
    counts the memory of the process that started train.py as well, which is why a
    small process of its own starts it, not the benchmark (which may hold a model).
    """
    import resource

    run_step("train.py", [f"--spectrograms_dir={spectrograms_dir}", f"--model_dir={model_dir}", "--epochs=1",
                          "--verbose=0"], capture=True)
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    print(json.dumps({"peak_rss_mib": peak_kib / 1024}))


def write_synthetic_spectrograms(folder, count, bins, frames, params):
    """A preprocess.py-style folder of random spectrograms, written in blocks (flat memory)."""
    folder.mkdir(parents=True, exist_ok=True)
    array = np.lib.format.open_memmap(folder / "spectrograms.npy", mode="w+", dtype=np.float32,
                                      shape=(count, bins, frames))
    rng = np.random.default_rng(0)
    for start in range(0, count, 256):
        array[start:start + 256] = rng.random((min(256, count - start), bins, frames), dtype=np.float32)
    array.flush()
    del array
    clips = [{"id": f"clip_{i:06d}.wav", "file": f"clip_{i:06d}.wav", "key": str(i), "label": None,
              "min": -60.0, "max": 20.0} for i in range(count)]
    write_json(folder / "clips.json", clips)
    write_json(folder / PARAMS_FILE, params)


def training_memory():
    """Peak RSS of train.py for MEMORY_CLIPS and 10x as many clips."""
    params = geometry_params("kit_44k")
    figures = {}
    with tempfile.TemporaryDirectory() as out:
        for name, count in (("small", MEMORY_CLIPS), ("large", 10 * MEMORY_CLIPS)):
            folder = Path(out) / name
            write_synthetic_spectrograms(folder, count, params["n_bins"], params["n_frames"], params)
            peak = _child_json("--child-train", str(folder), str(Path(out) / f"model_{name}"))["peak_rss_mib"]
            size_mib = (folder / "spectrograms.npy").stat().st_size / 2 ** 20
            figures[name] = {"clips": count, "dataset_mib": round(size_mib, 1), "peak_rss_mib": round(peak, 1)}
    figures["ratio"] = round(figures["large"]["peak_rss_mib"] / figures["small"]["peak_rss_mib"], 3)
    return figures


BENCHMARKS = {"preprocessing": preprocessing, "training": training_throughput,
              "generation": generation, "memory": training_memory, "mixed_precision": mixed_precision}


def main(argv):
    if argv[:1] == ["--child-train"]:
        return _train_child(*argv[1:3])
    if argv[:1] == ["--child-throughput"]:
        return _throughput_child(argv[1])
    only = [arg.split("=", 1)[1] for arg in argv if arg.startswith("--only=")]
    names = only[0].split(",") if only else list(BENCHMARKS)
    from real_kit import cpu_name

    results = {"machine": {"cpus": os.cpu_count(), "cpu": cpu_name()}, "tutorial_preset": PRESETS["tutorial"]}
    for name in names:
        print(f"running {name} ...", file=sys.stderr)
        results[name] = BENCHMARKS[name]()
    print(json.dumps(results, indent=2))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    RESULTS.write_text(json.dumps({**previous, **results}, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
