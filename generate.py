"""Step 3: write new sounds, and reconstructions of dataset clips, as WAV files.

Into OUTPUT_DIR:
- ``generated/``: NUM_GENERATED brand-new sounds decoded from the prior;
- ``original/`` and ``reconstructed/``: NUM_RECONSTRUCTED held-out clips and what
  the model makes of them (the original is the clip's own spectrogram through
  the same phase reconstruction, so the difference you hear is the model's).

All spectrogram parameters come from MODEL_DIR; nothing is typed twice.
Run ``python generate.py --help`` to list the settings.
"""

from pathlib import Path

import numpy as np

from configurator import PipelineError, configure, run_script
from fileio import read_json, safe_name, write_json

# I/O
MODEL_DIR = "models/vae"
SPECTROGRAMS_DIR = "data/spectrograms"  # source of the clips to reconstruct
OUTPUT_DIR = "samples"
# what to write
NUM_GENERATED = 10
NUM_RECONSTRUCTED = 5
LABEL = ""                              # conditional models: the class to generate ("" = every class)
TEMPERATURE = 1.0                       # spread of the prior samples; lower = safer, less varied
SEED = 0
# phase reconstruction
PHASE_METHOD = "griffinlim"             # "griffinlim" or "zero_phase" (the tutorial's, for comparison)
GRIFFIN_LIM_ITERATIONS = 32
GRIFFIN_LIM_MOMENTUM = 0.99
PEAK_DBFS = -1.0                        # louder results are turned down to this peak: no clipping


def load_model_folder(model_dir):
    """Return (vae, params, training info) from a folder written by train.py, or a clear error."""
    model_dir = Path(model_dir)
    missing = [name for name in ("model.keras", "params.json", "training.json") if not (model_dir / name).exists()]
    if missing:
        raise PipelineError(f"{model_dir} has no {', '.join(missing)}: train a model with train.py first "
                            f"(or pass --model_dir=PATH)")
    from train import TRAINING_FORMAT_VERSION

    training = read_json(model_dir / "training.json")
    if training.get("format_version") != TRAINING_FORMAT_VERSION:
        raise PipelineError(f"{model_dir} was written by an incompatible version of train.py "
                            f"(format {training.get('format_version')}, expected {TRAINING_FORMAT_VERSION}): "
                            f"train it again")
    from autoencoder import VAE

    try:
        vae = VAE.load(model_dir)
    except Exception as error:
        raise PipelineError(f"cannot load {model_dir}/model.keras ({type(error).__name__}: {error}); "
                            f"it may be damaged or from another version: train again") from None
    return vae, read_json(model_dir / "params.json"), training


def check_same_parameters(model_params, data_params, data_dir):
    """Refuse spectrograms made with other parameters than the model's."""
    ignore = {"labels", "long_files", "max_clips_per_file", "silence_db"}
    differing = [name for name in sorted(set(model_params) | set(data_params))
                 if name not in ignore and model_params.get(name) != data_params.get(name)]
    if differing:
        details = ", ".join(f"{name}: model {model_params.get(name)!r}, data {data_params.get(name)!r}"
                            for name in differing)
        raise PipelineError(f"the spectrograms in {data_dir} were made with other parameters than the model "
                            f"({details}). Run preprocess.py with the model's settings, or use the matching model.")


def resolve_labels(label, label_names, count):
    """Label indices for ``count`` sounds: the requested class, or every class in turn."""
    if not label_names:
        if label:
            raise PipelineError(f"--label={label} needs a conditional model (train with --conditional=true)")
        return None, [""] * count
    if label:
        if label not in label_names:
            raise PipelineError(f"unknown label {label!r}; this model knows: {', '.join(label_names)}")
        return np.full(count, label_names.index(label)), [label] * count
    indices = np.arange(count) % len(label_names)
    return indices, [label_names[i] for i in indices]


def write_wavs(signals, names, folder, sample_rate, peak_dbfs):
    """Write float signals as 16-bit WAVs, turned down where needed so nothing clips."""
    import soundfile as sf

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    limit = 10 ** (peak_dbfs / 20)
    paths = []
    for signal, name in zip(signals, names):
        stem = safe_name(name)
        while folder / (stem + ".wav") in paths:  # two ids that sanitise to one name
            stem += "_"
        peak = float(np.max(np.abs(signal))) if len(signal) else 0.0
        if peak > limit:
            signal = signal * (limit / peak)
        path = folder / (stem + ".wav")
        sf.write(path, np.asarray(signal, dtype=np.float32), sample_rate, subtype="PCM_16")
        paths.append(path)
    return paths


def main(argv=None):
    config = configure(globals(), argv)
    if config.NUM_GENERATED < 0 or config.NUM_RECONSTRUCTED < 0:
        raise PipelineError("NUM_GENERATED and NUM_RECONSTRUCTED must be >= 0")
    from soundgenerator import SoundGenerator

    vae, params, training = load_model_folder(config.MODEL_DIR)
    label_names = training["label_names"]
    sound_generator = SoundGenerator(params["sample_rate"], params["frame_size"], params["hop_length"],
                                     phase_method=config.PHASE_METHOD, n_iter=config.GRIFFIN_LIM_ITERATIONS,
                                     momentum=config.GRIFFIN_LIM_MOMENTUM)
    output_dir = Path(config.OUTPUT_DIR)
    written = {"generated": [], "original": [], "reconstructed": []}

    # Brand-new sounds from the prior, given the training set's typical level.
    if config.NUM_GENERATED:
        label_indices, label_texts = resolve_labels(config.LABEL, label_names, config.NUM_GENERATED)
        spectrograms, _ = vae.sample(config.NUM_GENERATED, label_indices, seed=config.SEED,
                                     temperature=config.TEMPERATURE)
        level = training["generation_level_db"]
        signals = sound_generator.convert_spectrograms_to_audio(spectrograms, level["min"], level["max"])
        names = [f"{'_'.join(filter(None, ['generated', text]))}_{index:03d}"
                 for index, text in enumerate(label_texts)]
        written["generated"] = write_wavs(signals, names, output_dir / "generated",
                                          params["sample_rate"], config.PEAK_DBFS)

    # Held-out clips and their reconstructions.
    if config.NUM_RECONSTRUCTED:
        from preprocess import load_spectrograms

        data, clips, data_params = load_spectrograms(config.SPECTROGRAMS_DIR)
        check_same_parameters(params, data_params, config.SPECTROGRAMS_DIR)
        held_out = set(training.get("validation_ids", []))
        candidates = [i for i, clip in enumerate(clips) if clip["id"] in held_out] or list(range(len(clips)))
        rng = np.random.default_rng(config.SEED)
        chosen = np.sort(rng.choice(candidates, size=min(config.NUM_RECONSTRUCTED, len(candidates)), replace=False))
        originals = np.asarray(data[chosen])
        labels = None
        if label_names:
            unknown = {clips[i]["label"] for i in chosen} - set(label_names)
            if unknown:
                raise PipelineError(f"clips with labels {sorted(unknown)} unknown to the model "
                                    f"(it knows {', '.join(label_names)})")
            labels = np.array([label_names.index(clips[i]["label"]) for i in chosen])
        reconstructions, _ = vae.reconstruct(originals, labels)
        minima = np.array([clips[i]["min"] for i in chosen])
        maxima = np.array([clips[i]["max"] for i in chosen])
        names = [clips[i]["id"].rsplit(".", 1)[0] for i in chosen]
        for kind, spectrograms in (("original", originals), ("reconstructed", reconstructions)):
            signals = sound_generator.convert_spectrograms_to_audio(spectrograms, minima, maxima)
            written[kind] = write_wavs(signals, names, output_dir / kind, params["sample_rate"], config.PEAK_DBFS)

    write_json(output_dir / "generation.json", {
        "settings": vars(config),
        "sample_rate": params["sample_rate"],
        "files": {kind: [str(path.relative_to(output_dir)) for path in paths] for kind, paths in written.items()},
    })
    total = sum(len(paths) for paths in written.values())
    print(f"wrote {total} WAV files at {params['sample_rate']} Hz to {output_dir}/ "
          f"({len(written['generated'])} generated, {len(written['reconstructed'])} reconstructed "
          f"with their originals)")
    return written


if __name__ == "__main__":
    run_script(main)
