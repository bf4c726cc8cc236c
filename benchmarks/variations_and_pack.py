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
  training clips) hears a snare;
- the seconds of the generate.py run that wrote them, as a user runs it: its
  start as a process and the loading of the model included.

Then ``generate.py`` writes 8 sounds per class with its pack; the SFZ goes
through sfzlint and the preset through the XML checks. generate.py runs as its
own process (``soundkit.configurator.run_step``); the files it wrote are read
from its generation.json.

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

from soundkit.configurator import run_step  # noqa: E402
from soundkit.fileio import read_json  # noqa: E402

SPREADS = (0.0, 0.25, 0.5, 1.0)                # 0: the model's reconstruction of the source, for reference
VARIATIONS = 20
PER_CLASS = 8


def rms_db(a, b):
    """RMS difference between every spectrogram of ``a`` and every one of ``b``."""
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    squared = (a ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.maximum(squared, 0) / a.shape[1])


def run_generate(workdir, output_dir, *arguments):
    """Run generate.py on W's model and training clips; return the WAVs it wrote ({kind: paths}, generation.json)."""
    run_step("generate.py", [f"--model_dir={workdir / 'model'}", f"--spectrograms_dir={workdir / 'spectrograms'}",
                             f"--output_dir={output_dir}", *arguments])
    files = read_json(output_dir / "generation.json")["files"]
    return {kind: [output_dir / path for path in paths] for kind, paths in files.items()}


def variation_figures(workdir, source, params, listener, snare, train_db, closest_pair, out):
    """For each spread of SPREADS: VARIATIONS variations of ``source`` by generate.py, heard again and measured."""
    from soundkit.spectrogram import spectrogram_of_file

    span = params["top_db"]  # each normalised spectrogram spans its peak down to TOP_DB below it
    source_db = spectrogram_of_file(source, params)[0][None] * span
    reconstruction_db = None
    figures = {}
    for spread in SPREADS:
        started = time.perf_counter()
        written = run_generate(workdir, out / str(spread), f"--variations_of={source}", f"--variation_spread={spread}",
                               f"--num_generated={VARIATIONS}", "--num_reconstructed=0", "--pack=false")["variations"]
        seconds = time.perf_counter() - started
        heard = np.stack([spectrogram_of_file(path, params)[0] for path in written])
        heard_db = heard * span
        if reconstruction_db is None:
            reconstruction_db = heard_db[:1]
        recognised = listener.predict(heard[..., None], verbose=0).argmax(axis=1)
        nearest = rms_db(heard_db, train_db).min(axis=1)
        figures[str(spread)] = {
            "distance_to_source_db": round(float(rms_db(heard_db, source_db).mean()), 2),
            "distance_to_reconstruction_db": round(float(rms_db(heard_db, reconstruction_db).mean()), 2),
            "heard_as_snare": round(float(np.mean(recognised == snare)), 3),
            "nearest_training_clip_db_min": round(float(nearest.min()), 2),
            "copies_of_training_clips": int(np.sum(nearest < closest_pair)),
            "diversity_db": round(float(rms_db(heard_db, heard_db)[np.triu_indices(len(heard_db), 1)].mean()), 2),
            "seconds_for_20": round(seconds, 1),
        }
    return figures


def pack_figures(workdir, class_count, out):
    """generate.py's sample pack of PER_CLASS sounds per class: sfzlint's problems, regions, samples, keys."""
    from sfzlint.parser import SFZValidatorConfig, validate

    run_generate(workdir, out / "pack_run", f"--num_generated={PER_CLASS * class_count}", "--num_reconstructed=0",
                 "--pack_name=real kit")
    pack = out / "pack_run" / "pack"
    problems = []
    validate(pack / "real_kit.sfz", err_cb=lambda severity, message, token, file: problems.append(message),
             config=SFZValidatorConfig(file_path=pack / "real_kit.sfz", check_includes=False))
    preset = ElementTree.parse(pack / "real_kit.dspreset").getroot()
    samples = list(preset.iter("sample"))
    return {
        "sfz_lint_problems": problems,
        "regions": (pack / "real_kit.sfz").read_text().count("<region>"),
        "dspreset_samples": len(samples),
        "dspreset_samples_missing": sum(not (pack / s.get("path")).is_file() for s in samples),
        "keys": {group.get("name"): int(group.find("sample").get("rootNote")) for group in preset.iter("group")},
    }


def main(argv):
    from class_recognition import train_classifier
    from real_kit import cpu_name
    from soundkit.folders import load_model_folder, load_spectrograms

    options = dict(arg[2:].split("=", 1) for arg in argv if arg.startswith("--") and "=" in arg)
    workdir = Path(options["workdir"]).absolute()  # generate.py runs in the project folder
    model = load_model_folder(workdir / "model")
    classes = model.classes
    data, clips, _ = load_spectrograms(workdir / "spectrograms", mmap=False)
    labels = np.array([classes.index(clip["label"]) for clip in clips])
    listener, accuracy = train_classifier(data, labels, len(classes), np.arange(len(data)), np.arange(len(data)))
    train_db = data * model.params["top_db"]
    pairs = rms_db(train_db, train_db)
    np.fill_diagonal(pairs, np.inf)
    closest_pair = float(pairs.min())

    source = sorted((workdir / "held_out" / "snare").glob("*.wav"))[0]
    out = workdir / "variations_benchmark"
    results = {"cpu": cpu_name(), "source": source.name, "listener_training_accuracy": accuracy,
               "closest_two_training_clips_db": round(closest_pair, 2),
               "spreads": variation_figures(workdir, source, model.params, listener, classes.index("snare"),
                                            train_db, closest_pair, out)}
    results["pack"] = pack_figures(workdir, len(classes), out)
    results["knobs"] = knob_figures(workdir, model, listener, out / "knobs")
    print(json.dumps(results, indent=1))
    (ROOT / "benchmarks" / "results" / "variations_and_pack.json").write_text(json.dumps(results, indent=1) + "\n")
    return results


PITCHED = re.compile(r"kick|tom", re.IGNORECASE)


def knob_figures(workdir, model, listener, out, per_class=10):
    """For each knob at -1, 0, +1: the share of sounds that move its way, and the share heard as their class.

    The sounds are written as generate.py writes them (``soundgenerator.write_wavs`` with
    generate.py's default WAV settings), with the knobs and prior generate.py uses.
    """
    from soundgenerator import SoundGenerator, write_wavs
    from soundkit.configurator import configure, step_settings
    from soundkit.fitted import fit_knobs_if_missing, fit_latent_prior_if_missing
    from soundkit.spectrogram import KNOB_DESCRIPTORS, sound_descriptors, spectrogram_of_file

    vae, params = model.vae, model.params
    knobs = fit_knobs_if_missing(model, workdir / "spectrograms")
    prior = fit_latent_prior_if_missing(model, workdir / "spectrograms")
    classes = prior.classes
    asked = np.arange(per_class * len(classes)) % len(classes)
    latents = prior.sample(len(asked), asked, np.random.default_rng(0), 1.0)
    level = model.training["generation_level_db"]
    generator = SoundGenerator.from_params(params)
    wav_settings = configure(step_settings("generate.py"), [])
    figures = {}
    for index, name in enumerate(KNOB_DESCRIPTORS):
        measured, kept = {}, {}
        for amount in (-1, 0, 1):
            shift = np.stack([knobs.shift({name: amount}, classes[c]) for c in asked])  # each with its class's
            signals = generator.convert_spectrograms_to_audio(vae.decode(latents + shift), level["min"], level["max"])
            paths = write_wavs(signals, [f"{name}_{amount}_{i:03d}" for i in range(len(asked))],
                               out / name, params["sample_rate"], wav_settings)
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
