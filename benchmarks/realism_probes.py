"""Two probes behind the realism defaults: what the listener misses in reconstructions, and where new sounds start.

    python benchmarks/realism_probes.py --workdir=W --model=W/model --probe=diagnose
    python benchmarks/realism_probes.py --workdir=W --model=W/model --probe=prior --widths=0,0.5,1,1.5

``W`` is a folder ``real_kit.py`` laid out. Both probes train ``realism.py``'s
stand-in listener and give Fréchet distances as multiples of its floor.

- ``diagnose``: the held-out clips through the VAE, and the same with one thing
  changed: the real spectrograms blurred (does smoothness cost?), the decoded
  ones with their first 4 frames taken from the real ones (does the attack?),
  with the real grain added, and without ``full_range``'s stretch.
- ``prior``: 400 new sounds (100 per class) drawn from the latent prior with each
  ``kernel_width`` (0: each class's Gaussian), the mean and spread over 50 draws
  of the held-out make-up, how often the class is heard, and how far each new
  latent lies from the nearest training clip's (against the clips' own spacing).

Prints JSON and writes benchmarks/results/realism_probe_<probe>.json.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from soundgenerator import DEFAULT_FLOOR_GATE_DB, SoundGenerator, full_range  # noqa: E402
from soundkit.folders import load_model_folder, load_spectrograms, training_rows  # noqa: E402
from soundkit.latent_space import LatentPrior  # noqa: E402
from soundkit.realism import LISTENER_RATE, Listener, frechet_distance, listener_view  # noqa: E402
from soundkit.spectrogram import spectrogram_of_file  # noqa: E402
from real_kit import cpu_name  # noqa: E402
from realism import real_sets, stratified_frechet  # noqa: E402

ATTACK_FRAMES_SWAPPED = 4
NEW_PER_CLASS = 100


class Judge:
    """The listener, trained on the training clips, and the floor it measures."""

    def __init__(self, workdir):
        real = real_sets(workdir, LISTENER_RATE)
        self.classes = sorted(set(real["train"][0]))
        views = {name: np.stack([listener_view(s, LISTENER_RATE) for s in real[name][1]]) for name in real}
        self.listener = Listener()
        self.listener.fit(views["train"], np.array([self.classes.index(c) for c in real["train"][0]]),
                          epochs=20, seed=0)
        self.reference = self.listener.embed(views["train"])
        self.floor = frechet_distance(self.reference, self.listener.embed(views["held_out"]))
        self.held_labels, self.held_paths = real["held_out"][0], real["held_out"][2]

    def views(self, audio, rate):
        return np.stack([listener_view(signal, rate) for signal in audio])

    def times_floor(self, audio, rate):
        return round(frechet_distance(self.reference, self.listener.embed(self.views(audio, rate))) / self.floor, 2)


def to_audio(generator, normalised, low, high, stretch=True):
    """generate.py's conversion (floor gate included), with the stretch to [0, 1] optional."""
    spectrogram_db = generator.denormalise(full_range(normalised) if stretch else normalised, low, high)
    magnitudes = generator.db_to_magnitude(spectrogram_db)
    magnitudes[:, :-1] *= generator.floor_gate(spectrogram_db)
    return generator.magnitude_to_audio(magnitudes)


def diagnose(judge, model):
    from scipy.ndimage import uniform_filter

    analysed = [spectrogram_of_file(path, model.params) for path in judge.held_paths]
    real = np.stack([spectrogram for spectrogram, _, _ in analysed])
    low, high = np.array([a[1] for a in analysed]), np.array([a[2] for a in analysed])
    decoded = np.asarray(model.vae.reconstruct(real)[0])[..., 0]
    generator = SoundGenerator.from_params(model.params, floor_gate_db=DEFAULT_FLOOR_GATE_DB)
    swapped = ATTACK_FRAMES_SWAPPED
    variants = {
        "real": (real, False),
        "real_blurred_3x3": (uniform_filter(real, (1, 3, 3)), False),
        "real_blurred_5x5": (uniform_filter(real, (1, 5, 5)), False),
        "real_blurred_5_frames": (uniform_filter(real, (1, 1, 5)), False),
        "real_blurred_5_bins": (uniform_filter(real, (1, 5, 1)), False),
        "decoded": (decoded, True),
        "decoded_not_stretched": (decoded, False),
        f"decoded_with_the_real_first_{swapped}_frames": (
            np.concatenate([real[:, :, :swapped], decoded[:, :, swapped:]], axis=2), True),
        "decoded_with_the_real_grain": (np.clip(decoded + real - uniform_filter(real, (1, 5, 5)), 0, 1), True),
    }
    rate = model.params["sample_rate"]
    return {name: judge.times_floor(to_audio(generator, x, low, high, stretch), rate)
            for name, (x, stretch) in variants.items()}


def prior_widths(judge, model, workdir, widths):
    spectrograms, clips, _ = load_spectrograms(workdir / "spectrograms")
    rows = training_rows(clips, model.training)
    means = model.vae.encode_rows(spectrograms, rows)
    prior = LatentPrior.fit(means, [judge.classes.index(clips[i]["label"]) for i in rows], judge.classes)
    generator = SoundGenerator.from_params(model.params, floor_gate_db=DEFAULT_FLOOR_GATE_DB)
    level, rate = model.training["generation_level_db"], model.params["sample_rate"]
    asked = np.arange(NEW_PER_CLASS * len(judge.classes)) % len(judge.classes)
    labels = [judge.classes[index] for index in asked]
    wanted = {name: judge.held_labels.count(name) for name in judge.classes}
    spacing = np.sort(np.linalg.norm(means[:, None] - means[None], axis=2), axis=1)[:, 1]
    results = {"training_clips_to_their_nearest_other_median": round(float(np.median(spacing)), 3)}
    for width in widths:
        prior.kernel_width = width
        latents = prior.sample(len(asked), asked, np.random.default_rng(0))
        decoded = np.asarray(model.vae.decode(latents))[..., 0]
        views = judge.views(to_audio(generator, decoded, level["min"], level["max"]), rate)
        mean, spread = stratified_frechet(judge.reference, judge.listener.embed(views), labels, wanted, draws=50)
        nearest = np.sort(np.linalg.norm(latents[:, None] - means[None], axis=2), axis=1)[:, 0]
        results[f"kernel_width_{width:g}"] = {
            "new_sounds_times_floor": round(mean / judge.floor, 2), "std_between_draws": round(spread / judge.floor, 2),
            "recognised_as_requested": round(float(np.mean(judge.listener.predict(views) == asked)), 3),
            "to_the_nearest_training_clip_median": round(float(np.median(nearest)), 3)}
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--probe", choices=("diagnose", "prior"), required=True)
    parser.add_argument("--widths", default="0,0.5,1,1.5")
    args = parser.parse_args(argv)
    workdir, model = Path(args.workdir), load_model_folder(args.model)
    judge = Judge(workdir)
    figures = diagnose(judge, model) if args.probe == "diagnose" else \
        prior_widths(judge, model, workdir, [float(width) for width in args.widths.split(",")])
    results = {"cpu": cpu_name(), "workdir": str(workdir), "model": args.model, "floor": round(judge.floor, 2),
               args.probe: figures}
    print(json.dumps(results, indent=2))
    (ROOT / "benchmarks" / "results" / f"realism_probe_{args.probe}.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
