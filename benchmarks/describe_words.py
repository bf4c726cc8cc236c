"""Sounds asked for in words, on the real kit: do the sounds move the way the words say, and keep their class?

    python benchmarks/describe_words.py --workdir=W    # W: what benchmarks/real_kit.py --workdir=W left

Each description of DESCRIPTIONS is read by ``soundkit.describe`` for W/model's
classes; PER_DESCRIPTION draws of the prior for its class are decoded twice,
with the knobs it chose and with every knob at 0 (the same draws: paired), and
written as generate.py writes them (``soundgenerator.write_wavs`` with its
default settings). Then, measured again on the WAVs:

- each knob's descriptor (``soundkit.spectrogram.sound_descriptors``: brightness
  in log2 Hz, length in s, attack in dB, pitch in log2 Hz) with the knobs chosen
  against the knobs at 0: the mean of each, and the share of sounds that moved
  the way the word says. Pitch words are only tried on kicks and toms, where a
  pitch means something (as benchmarks/variations_and_pack.py judges it);
- how often the stand-in listener (``soundkit.realism.Listener`` trained on
  W/train as benchmarks/realism.py trains it) hears the class asked for.

The first description also goes through ``generate.py --describe`` as its own
process, to check that the settings it prints are the ones measured here.
Prints JSON and writes benchmarks/results/describe_words.json.
"""

import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from soundgenerator import SoundGenerator, write_wavs  # noqa: E402
from soundkit.configurator import configure, run_step, step_settings  # noqa: E402
from soundkit.describe import describe  # noqa: E402
from soundkit.fitted import fit_knobs_if_missing, fit_latent_prior_if_missing  # noqa: E402
from soundkit.folders import load_model_folder  # noqa: E402
from soundkit.realism import LISTENER_RATE, Listener, listener_view  # noqa: E402
from soundkit.spectrogram import KNOB_DESCRIPTORS, sound_descriptors, spectrogram_of_file  # noqa: E402
from real_kit import cpu_name  # noqa: E402
from realism import real_sets  # noqa: E402

DESCRIPTIONS = [
    "short bright snare", "a bit darker snare", "very long snare", "soft snare", "snappy snare", "dark, short snare",
    "bass drum, very low", "high kick", "short kick", "long kick", "punchy kick", "a bit brighter kick",
    "bright hat", "very dark hi-hat", "short hat", "long hihat", "soft hat", "sharp hihat",
    "deep tom", "high-pitched tom", "very long tom", "short tom", "a bit brighter tom", "dark tom",
]
PER_DESCRIPTION = 10
LISTENER_EPOCHS = 20      # as benchmarks/realism.py trains its listener
UNITS = {"brightness": "log2 Hz", "length": "s", "attack": "dB", "pitch": "log2 Hz"}


class Kit:
    """W's model with its prior and knobs, and a way to hear a batch of latents as generate.py writes them."""

    def __init__(self, workdir):
        self.model = load_model_folder(workdir / "model")
        self.params = self.model.params
        self.prior = fit_latent_prior_if_missing(self.model, workdir / "spectrograms")
        self.knobs = fit_knobs_if_missing(self.model, workdir / "spectrograms")
        self.generator = SoundGenerator.from_params(self.params)
        self.wav_settings = configure(step_settings("generate.py"), [])
        self.out = workdir / "describe_words"

    def draws(self, label):
        """PER_DESCRIPTION latents of class ``label``, the same every time for the same class."""
        index = self.prior.classes.index(label)
        return self.prior.sample(PER_DESCRIPTION, [index] * PER_DESCRIPTION, np.random.default_rng(index), 1.0)

    def hear(self, latents, name):
        """(descriptors (sounds, 4), the audio) of latents decoded, written as WAVs and read back."""
        level = self.model.training["generation_level_db"]
        signals = self.generator.convert_spectrograms_to_audio(self.model.vae.decode(latents), level["min"],
                                                               level["max"])
        paths = write_wavs(signals, [f"{name}_{index:02d}" for index in range(len(latents))], self.out / name,
                           self.params["sample_rate"], self.wav_settings)
        heard = np.stack([spectrogram_of_file(path, self.params)[0] for path in paths])
        return sound_descriptors(heard * self.params["top_db"], self.params), list(signals)


def trained_listener(workdir):
    """The stand-in listener of benchmarks/realism.py, trained on W/train; its held-out accuracy."""
    real = real_sets(workdir, LISTENER_RATE)
    classes = sorted(set(real["train"][0]))
    views = {name: np.stack([listener_view(signal, LISTENER_RATE) for signal in real[name][1]]) for name in real}
    listener = Listener()
    listener.fit(views["train"], np.array([classes.index(c) for c in real["train"][0]]), epochs=LISTENER_EPOCHS)
    held = np.array([classes.index(c) for c in real["held_out"][0]])
    return listener, classes, float(np.mean(listener.predict(views["held_out"]) == held))


def judged(description, kit, listener, classes, baseline):
    """One row of the table: the class and knobs a description chose, and what they did to the sounds."""
    chosen = describe(description, kit.model.classes)
    latents = kit.draws(chosen.label)
    made, audio = kit.hear(latents + kit.knobs.shift(chosen.knobs, chosen.label), re.sub(r"\W+", "_", description).strip("_"))
    at_zero = baseline[chosen.label]["descriptors"]
    rate = kit.params["sample_rate"]
    heard = listener.predict(np.stack([listener_view(signal, rate) for signal in audio]))
    knobs = {}
    for name, amount in chosen.knobs.items():
        column = KNOB_DESCRIPTORS.index(name)
        change = made[:, column] - at_zero[:, column]
        knobs[name] = {"amount": amount, "unit": UNITS[name], "mean_at_0": round(float(at_zero[:, column].mean()), 3),
                       "mean_described": round(float(made[:, column].mean()), 3),
                       "mean_moved_its_way": bool(np.sign(change.mean()) == np.sign(amount)),
                       "sounds_moved_its_way": round(float(np.mean(np.sign(change) == np.sign(amount))), 3)}
    return {"description": description, "class": chosen.label, "settings": chosen.settings, "knobs": knobs,
            "class_kept": round(float(np.mean(heard == classes.index(chosen.label))), 3),
            "class_kept_at_0": baseline[chosen.label]["class_kept"]}


def summary(rows):
    pairs = [knob for row in rows for knob in row["knobs"].values()]
    return {
        "descriptions": len(rows), "knob_words": len(pairs), "sounds_per_description": PER_DESCRIPTION,
        "knob_words_whose_mean_moved_its_way": round(float(np.mean([k["mean_moved_its_way"] for k in pairs])), 3),
        "descriptions_all_of_whose_knobs_moved": round(float(np.mean([
            all(k["mean_moved_its_way"] for k in row["knobs"].values()) for row in rows])), 3),
        "sounds_moved_its_way": round(float(np.mean([k["sounds_moved_its_way"] for k in pairs])), 3),
        "sounds_moved_its_way_by_knob": {name: round(float(np.mean([
            row["knobs"][name]["sounds_moved_its_way"] for row in rows if name in row["knobs"]])), 3)
            for name in KNOB_DESCRIPTORS},
        "class_kept": round(float(np.mean([row["class_kept"] for row in rows])), 3),
        "class_kept_at_0": round(float(np.mean([row["class_kept_at_0"] for row in rows])), 3),
    }


def through_generate(workdir, kit, description):
    """The settings ``generate.py --describe`` prints for ``description`` (as its own process)."""
    result = run_step("generate.py", [f"--model_dir={workdir / 'model'}", f"--spectrograms_dir={workdir / 'spectrograms'}",
                                      f"--output_dir={kit.out / 'generate'}", f"--describe={description}",
                                      "--num_generated=1", "--num_reconstructed=0", "--pack=false"], capture=True)
    return re.search(r"means: (.*)", result.stdout)[1].strip()


def main(argv):
    options = dict(arg[2:].split("=", 1) for arg in argv if arg.startswith("--") and "=" in arg)
    if "workdir" not in options:
        print(__doc__)
        return None
    workdir = Path(options["workdir"]).absolute()
    started = time.perf_counter()
    kit = Kit(workdir)
    listener, classes, accuracy = trained_listener(workdir)
    rate = kit.params["sample_rate"]
    baseline = {}
    for label in kit.prior.classes:
        descriptors, audio = kit.hear(kit.draws(label), f"{label}_knobs_at_0")
        heard = listener.predict(np.stack([listener_view(signal, rate) for signal in audio]))
        baseline[label] = {"descriptors": descriptors,
                           "class_kept": round(float(np.mean(heard == classes.index(label))), 3)}
    rows = [judged(description, kit, listener, classes, baseline) for description in DESCRIPTIONS]
    printed = through_generate(workdir, kit, DESCRIPTIONS[0])
    results = {"cpu": cpu_name(), "cores": os.cpu_count(), "model_dir": str(workdir / "model"),
               "listener_held_out_accuracy": round(accuracy, 3), "summary": summary(rows),
               "generate_describe_prints": {"description": DESCRIPTIONS[0], "settings": printed,
                                            "same_as_measured": printed == rows[0]["settings"]},
               "seconds": round(time.perf_counter() - started, 1), "rows": rows}
    print(json.dumps(results, indent=1))
    (ROOT / "benchmarks" / "results" / "describe_words.json").write_text(json.dumps(results, indent=1) + "\n")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
