"""Variations of one real snare, a sample pack and the knobs, from a model trained on the real kit.

    python benchmarks/variations_and_pack.py --workdir=W    # W: what benchmarks/real_kit.py left (--workdir=W)

Uses W/model, W/spectrograms (the training clips) and W/held_out (sounds the model
never saw). For one held-out snare, 20 variations at each of three spreads are
written as WAVs, then heard through the pipeline again:

- their distance to the source and to its reconstruction (spread 0), to each
  other, and to their nearest training clip, against the closest two distinct
  training clips of the kit (closer than that counts as a copy). Distances are
  RMS differences of the normalised spectrograms times TOP_DB, in dB relative to
  each sound's peak: generate.py normalises every WAV's level, so absolute dB
  would measure loudness, not sound;
- how often the stand-in listener of ``class_recognition.py`` (trained on the
  training clips) hears a snare.

Then ``generate.py`` writes 8 sounds per class with its pack; the SFZ goes
through sfzlint and the preset through the XML checks.

Last, the knobs: the same 40 prior draws (10 per class) with each knob at -1, 0
and +1, written as WAVs the way generate.py writes them and measured again: for
how many sounds the descriptor at +1 is above the one at -1, and how often the
listener still hears the class that was asked for (pitch is judged on the kicks
and toms only: it means little for a hi-hat or a snare). Prints JSON and writes
benchmarks/results/variations_and_pack.json.
"""

import json
import re
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

SPREADS = (0.0, 0.25, 0.5, 1.0)                # 0: the model's reconstruction of the source, for reference
VARIATIONS = 20
PER_CLASS = 8


def rms_db(a, b):
    """RMS difference between every spectrogram of ``a`` and every one of ``b``."""
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    squared = (a ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.maximum(squared, 0) / a.shape[1])


def main(argv):
    import generate
    from class_recognition import train_classifier
    from folders import load_model_folder, load_spectrograms
    from real_kit import cpu_name
    from sfzlint.parser import SFZValidatorConfig, validate
    from spectrogram import spectrogram_of_file

    options = dict(arg[2:].split("=", 1) for arg in argv if arg.startswith("--") and "=" in arg)
    workdir = Path(options["workdir"])
    vae, params, training = load_model_folder(workdir / "model")
    classes = training["classes"]
    data, clips, _ = load_spectrograms(workdir / "spectrograms", mmap=False)
    labels = np.array([classes.index(clip["label"]) for clip in clips])
    listener, accuracy = train_classifier(data, labels, len(classes), np.arange(len(data)), np.arange(len(data)))
    span = params["top_db"]  # each normalised spectrogram spans its peak down to TOP_DB below it
    train_db = data * span
    pairs = rms_db(train_db, train_db)
    np.fill_diagonal(pairs, np.inf)
    closest_pair = float(pairs.min())

    source = sorted((workdir / "held_out" / "snare").glob("*.wav"))[0]
    source_db = spectrogram_of_file(source, params)[0][None] * span
    reconstruction_db = None
    results = {"cpu": cpu_name(), "source": source.name, "listener_training_accuracy": accuracy,
               "closest_two_training_clips_db": round(closest_pair, 2), "spreads": {}}
    out = workdir / "variations_benchmark"
    for spread in SPREADS:
        started = time.perf_counter()
        written = generate.main([f"--model_dir={workdir / 'model'}", f"--spectrograms_dir={workdir / 'spectrograms'}",
                                 f"--output_dir={out / str(spread)}", f"--variations_of={source}",
                                 f"--variation_spread={spread}", f"--num_generated={VARIATIONS}",
                                 "--num_reconstructed=0", "--pack=false"])["variations"]
        seconds = time.perf_counter() - started
        heard = [spectrogram_of_file(path, params) for path in written]
        heard_db = np.stack([s for s, _, _ in heard]) * span
        if reconstruction_db is None:
            reconstruction_db = heard_db[:1]
        recognised = listener.predict(np.stack([s for s, _, _ in heard])[..., None], verbose=0).argmax(axis=1)
        nearest = rms_db(heard_db, train_db).min(axis=1)
        results["spreads"][str(spread)] = {
            "distance_to_source_db": round(float(rms_db(heard_db, source_db).mean()), 2),
            "distance_to_reconstruction_db": round(float(rms_db(heard_db, reconstruction_db).mean()), 2),
            "heard_as_snare": round(float(np.mean(recognised == classes.index("snare"))), 3),
            "nearest_training_clip_db_min": round(float(nearest.min()), 2),
            "copies_of_training_clips": int(np.sum(nearest < closest_pair)),
            "diversity_db": round(float(rms_db(heard_db, heard_db)[np.triu_indices(len(heard_db), 1)].mean()), 2),
            "seconds_for_20": round(seconds, 1),
        }

    generate.main([f"--model_dir={workdir / 'model'}", f"--spectrograms_dir={workdir / 'spectrograms'}",
                   f"--output_dir={out / 'pack_run'}", f"--num_generated={PER_CLASS * len(classes)}",
                   "--num_reconstructed=0", "--pack_name=real kit"])
    pack = out / "pack_run" / "pack"
    problems = []
    validate(pack / "real_kit.sfz", err_cb=lambda severity, message, token, file: problems.append(message),
             config=SFZValidatorConfig(file_path=pack / "real_kit.sfz", check_includes=False))
    preset = ElementTree.parse(pack / "real_kit.dspreset").getroot()
    samples = list(preset.iter("sample"))
    results["pack"] = {
        "sfz_lint_problems": problems,
        "regions": (pack / "real_kit.sfz").read_text().count("<region>"),
        "dspreset_samples": len(samples),
        "dspreset_samples_missing": sum(not (pack / s.get("path")).is_file() for s in samples),
        "keys": {group.get("name"): int(group.find("sample").get("rootNote")) for group in preset.iter("group")},
    }
    results["knobs"] = knob_figures(workdir, vae, params, training, listener, out / "knobs")
    print(json.dumps(results, indent=1))
    (ROOT / "benchmarks" / "results" / "variations_and_pack.json").write_text(json.dumps(results, indent=1) + "\n")
    return results


PITCHED = re.compile(r"kick|tom", re.IGNORECASE)


def knob_figures(workdir, vae, params, training, listener, out, per_class=10):
    """For each knob at -1, 0, +1: the share of sounds that move its way, and the share heard as their class."""
    from configurator import configure

    import generate
    from folders import load_knobs, load_latent_prior
    from soundgenerator import SoundGenerator
    from spectrogram import KNOB_DESCRIPTORS, sound_descriptors, spectrogram_of_file

    knobs = load_knobs(workdir / "model", vae, params, training, workdir / "spectrograms")
    prior = load_latent_prior(workdir / "model")
    classes = prior.classes
    asked = np.arange(per_class * len(classes)) % len(classes)
    latents = prior.sample(len(asked), asked, np.random.default_rng(0), 1.0)
    level = training["generation_level_db"]
    generator = SoundGenerator(params["sample_rate"], params["frame_size"], params["hop_length"])
    config = configure(vars(generate), [])
    figures = {}
    for index, name in enumerate(KNOB_DESCRIPTORS):
        measured, kept = {}, {}
        for amount in (-1, 0, 1):
            signals = generator.convert_spectrograms_to_audio(vae.decode(latents + knobs.shift({name: amount})),
                                                              level["min"], level["max"])
            paths = generate.write_wavs(signals, [f"{name}_{amount}_{i:03d}" for i in range(len(asked))],
                                        out / name, params["sample_rate"], config)
            heard = np.stack([spectrogram_of_file(path, params)[0] for path in paths])
            measured[amount] = sound_descriptors(heard * params["top_db"], params)[:, index]
            kept[amount] = float(np.mean(listener.predict(heard[..., None], verbose=0).argmax(axis=1) == asked))
        # Pitch is judged where it is defined: on the pitched drums (kicks and toms), when the kit has them.
        judged = np.isin(asked, [c for c, label in enumerate(classes) if PITCHED.search(label)])
        judged = judged if name == "pitch" and judged.any() else np.ones(len(asked), dtype=bool)
        figures[name] = {"r2_of_latents": round(knobs.scores[index], 3),
                         "moves_its_way": round(float(np.mean((measured[1] > measured[-1])[judged])), 3),
                         "judged_on": sorted({classes[c] for c in asked[judged]}),
                         "mean_at_minus_1_0_plus_1": [round(float(np.mean(measured[a])), 3) for a in (-1, 0, 1)],
                         "class_kept": {str(a): round(kept[a], 3) for a in (-1, 0, 1)}}
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
