"""Realism on the real kit: do new sounds and reconstructions sit as close to real clips as real clips do?

    python benchmarks/real_kit.py --workdir=W                 # first: split the kit, train, generate
    python benchmarks/realism.py --workdir=W                  # today's model, W/model
    python benchmarks/realism.py --workdir=W --models=W/model,W/model_b   # side by side, one run
    python benchmarks/realism.py --workdir=W --models=A,B --kernel_width=0,   # A with the Gaussian prior
    python benchmarks/realism.py --workdir=W --models=A,A --kernel_width=1, --spread_cap=0,   # A's new sounds twice

Reads a folder laid out by ``real_kit.py``: the kit's training clips in
``W/train/<class>/``, the held-out ones (every fifth file) in ``W/held_out/<class>/``,
and the training spectrograms in ``W/spectrograms``. A stand-in listener (the
small CNN ``soundkit.realism.Listener``) learns the classes from the training
clips on its own fixed analysis (log-mel, 22.05 kHz, 2 s), independent of any
model's geometry, so models of different geometry are judged alike. Then,
against the held-out clips:

- the Fréchet distance in the listener's embedding (as FAD does with VGGish)
  from all the training clips to: the real held-out clips (the floor), the same
  clips through the phase reconstruction only, through the VAE (encode, decode,
  phase), and the new sounds ``generate.py`` writes when asked for every class
  in turn; each as a multiple of the floor. Every compared set has as many
  clips of each class as the held-out set (new sounds: the mean and median over
  random draws of that make-up from a pool of ``SAMPLES_PER_CLASS`` a class): a
  Fréchet distance grows as sets shrink, and a set with another mix of classes
  is far from the kit however real each sound is. None is paired with the
  reference: a reconstruction compared with its own original would look closer
  than another real clip does;
- how far real clips drawn at random lie, against the same floor: the training
  clips are split in halves (``HALF_SPLITS`` times, by class); with one half as
  the reference, a draw from the other half of the held-out set's make-up, and
  a draw of new sounds, are each compared with the held-out set. The held-out
  set is every fifth file, so it keeps each kind of hit (closed, open, pedal
  hi-hats; each velocity) in proportion, and half of its clips have a
  round-robin twin (the same hit, recorded again) among the training clips: its
  floor is lower than any random set of real clips reaches. A model as good as
  the kit itself would make new sounds as far as these real draws;
- the frequency-axis ripple (periods of 2, 4 and 8 bins) and the share of
  saturated pixels (>= 0.9) of decoded and real spectrograms, at the model's geometry;
- each class's median time from the attack to -60 dB, generated against real;
- how often the listener hears the class that was asked for.

Prints JSON and writes benchmarks/results/realism[_<tag>].json.
"""

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from soundgenerator import DEFAULT_FLOOR_GATE_DB, SoundGenerator  # noqa: E402
from soundkit.configurator import run_step  # noqa: E402
from soundkit.folders import load_model_folder  # noqa: E402
from soundkit.realism import (LISTENER_RATE, Listener, decay_seconds, frechet_distance,  # noqa: E402
                              frequency_ripple, listener_view, saturated_share)
from soundkit.spectrogram import Loader, spectrogram_of_file  # noqa: E402
from class_recognition import sampler_settings  # noqa: E402
from real_kit import cpu_name  # noqa: E402

SAMPLES_PER_CLASS = 100   # the pool of new sounds each class's draws come from: 25 left the figure to the pool's luck
FRECHET_DRAWS = 40
HALF_SPLITS = 40
TAIL_DB = -60.0


def clips_of(folder):
    """[(class, path)] of a folder of class sub-folders, in sorted order."""
    return [(path.parent.name, path) for path in sorted(Path(folder).glob("*/*.wav"))]


def real_sets(workdir, rate, names=("train", "held_out")):
    """The training and held-out clips (or those of ``names``) as audio at ``rate``, with their classes."""
    loader = Loader(rate)
    sets = {}
    for name in names:
        items = clips_of(workdir / name)
        sets[name] = ([label for label, _ in items], [loader.load(path) for _, path in items],
                      [path for _, path in items])
    return sets


def through_model(model, paths, vae, gate_db):
    """Held-out files at the model's geometry, and as audio through the phase reconstruction only and the VAE."""
    analysed = [spectrogram_of_file(path, model.params) for path in paths]
    spectrograms = np.stack([spectrogram for spectrogram, _, _ in analysed])
    minima = np.array([low for _, low, _ in analysed])
    maxima = np.array([high for _, _, high in analysed])
    generator = SoundGenerator.from_params(model.params, floor_gate_db=gate_db)
    phase_only = generator.convert_spectrograms_to_audio(spectrograms, minima, maxima)
    decoded = np.asarray(vae.reconstruct(spectrograms)[0])[..., 0] if vae is not None else None
    through_vae = generator.convert_spectrograms_to_audio(decoded, minima, maxima) if vae is not None else None
    return spectrograms, decoded, list(phase_only), None if through_vae is None else list(through_vae)


def new_sounds(model, name, workdir, classes, gate_db, sampler, per_class=SAMPLES_PER_CLASS):
    """(classes asked for, audio, files) of the new sounds generate.py writes for every class in turn,
    ``per_class`` of each; ``sampler`` ({setting: value}) sets its fitted prior (KERNEL_WIDTH, SPREAD_CAP)."""
    output = workdir / f"realism_{name}"
    kernel = [f"--{setting}={value}" for setting, value in sampler.items()]
    run_step("generate.py", [f"--model_dir={model.path}", f"--spectrograms_dir={workdir / 'spectrograms'}",
                             f"--output_dir={output}", f"--num_generated={per_class * len(classes)}",
                             "--num_reconstructed=0", "--pack=false", f"--floor_gate_db={gate_db}", *kernel],
             capture=True)
    paths = sorted((output / "generated").glob("*.wav"))
    loader = Loader(model.params["sample_rate"])
    return [path.stem.split("_")[1] for path in paths], [loader.load(path) for path in paths], paths


def save_picture(model, title, classes, held_labels, spectrograms, decoded, asked, regenerated, path):
    """Per class, side by side: a real held-out clip, the model's reconstruction of it and a new sound."""
    import matplotlib

    from soundkit.plots import FIGURE_STYLE, save_figure, spectrogram_grid

    top_db = model.params["top_db"]
    panels, titles = [], []
    for name in classes:
        real = held_labels.index(name)
        new = asked.index(name)
        for image, kind in ((spectrograms[real], "real"), (decoded[real], "reconstructed"), (regenerated[new], "new")):
            panels.append((np.asarray(image) - 1.0) * top_db)  # dB below the clip's peak
            titles.append(f"{name}: {kind}")
    with matplotlib.rc_context(FIGURE_STYLE):
        figure = spectrogram_grid(panels, titles, model.params, columns=3, vmin=-top_db, vmax=0.0,
                                  colour_bar_label="dB below the peak",
                                  suptitle=f"{title}: real, reconstructed and new, per class")
    return save_figure(figure, path)


def stratified_draw(rng, labels, wanted):
    """Row indices of ``labels``: ``wanted[name]`` rows of each class name, drawn without replacement."""
    labels = np.asarray(labels)
    return np.concatenate([rng.choice(np.flatnonzero(labels == name), count, replace=False)
                           for name, count in wanted.items()])


def stratified_frechet(reference, embedded, labels, wanted, draws=FRECHET_DRAWS, with_median=False):
    """(mean, std[, median]) of the Fréchet distance from ``reference`` to draws of ``embedded`` rows with
    ``wanted`` ({class: count}) rows of each class."""
    rng = np.random.default_rng(0)
    distances = [frechet_distance(reference, embedded[stratified_draw(rng, labels, wanted)]) for _ in range(draws)]
    figures = float(np.mean(distances)), float(np.std(distances))
    return (*figures, float(np.median(distances))) if with_median else figures


def half_split_ratios(train, train_labels, held, wanted, candidates=None, splits=HALF_SPLITS):
    """Per split of the training embeddings into halves (by class): the Fréchet distance from one half to a draw
    of the other half with the ``wanted`` make-up, and to a draw of each ``candidates`` set ({name: (embeddings,
    labels)}), over the distance from that half to the held-out set ``held``. {name: ratios}; "real" for the
    real draws. None where a half has fewer clips of a class than ``wanted``."""
    rng, pick = np.random.default_rng(0), np.random.default_rng(1)  # the same splits and real draws, with or
    train_labels = np.asarray(train_labels)                         # without candidates
    ratios = {"real": [], **{name: [] for name in candidates or {}}}
    for _ in range(splits):
        halves = [rng.permutation(np.flatnonzero(train_labels == name)) for name in wanted]
        reference = np.concatenate([rows[:len(rows) // 2] for rows in halves])
        other = np.concatenate([rows[len(rows) // 2:] for rows in halves])
        if any(np.sum(train_labels[other] == name) < count for name, count in wanted.items()):
            return None
        floor = frechet_distance(train[reference], held)
        drawn = other[stratified_draw(rng, train_labels[other], wanted)]
        ratios["real"].append(frechet_distance(train[reference], train[drawn]) / floor)
        for name, (embedded, labels) in (candidates or {}).items():
            ratios[name].append(frechet_distance(train[reference], embedded[stratified_draw(pick, labels, wanted)])
                                / floor)
    return ratios


def spread_of(values):
    """{median, mean, p10, p90} of ratios, rounded."""
    return {"median": round(float(np.median(values)), 2), "mean": round(float(np.mean(values)), 2),
            "p10": round(float(np.percentile(values, 10)), 2), "p90": round(float(np.percentile(values, 90)), 2)}


def ratio(value, reference):
    return round(float(value / reference), 2) if reference else None


def judge_model(model_dir, name, gate_db, sampler, workdir, listener, embed_real, classes, train_labels):
    """Every figure of one model against the held-out clips."""
    model = load_model_folder(model_dir)
    rate = model.params["sample_rate"]
    # The held-out clips at the model's rate: for their tails, and through the model.
    held_labels, held_audio, held_paths = real_sets(workdir, rate, ("held_out",))["held_out"]
    spectrograms, decoded, phase_only, through_vae = through_model(model, held_paths, model.vae, gate_db)
    wanted = {name: held_labels.count(name) for name in classes}
    # At least as many new sounds of each class as there are held-out clips of it (FSDD: 60 a digit).
    asked, generated, generated_paths = new_sounds(model, name, workdir, classes, gate_db, sampler,
                                                   max(SAMPLES_PER_CLASS, *wanted.values()))
    reference = embed_real["train"]

    def frechet(audio):
        """Distance from the training clips to the held-out clips through something."""
        return float(frechet_distance(reference, listener.embed(np.stack([listener_view(s, rate) for s in audio]))))

    floor = frechet_distance(reference, embed_real["held_out"])
    new_views = np.stack([listener_view(signal, rate) for signal in generated])   # heard once: embedded, classified
    embedded_new = listener.embed(new_views)
    new_mean, new_std, new_median = stratified_frechet(reference, embedded_new, asked, wanted, with_median=True)
    halves = half_split_ratios(reference, train_labels, embed_real["held_out"], wanted, {"new": (embedded_new, asked)})
    distances = {"held_out_clips_floor": floor, "phase_reconstruction_only": frechet(phase_only),
                 "vae_reconstructions": frechet(through_vae), "new_sounds": new_mean}
    heard = listener.predict(new_views)
    asked_index = np.array([classes.index(name) for name in asked])
    regenerated = np.stack([spectrogram_of_file(path, model.params)[0] for path in generated_paths])
    ripple = {"real": frequency_ripple(spectrograms), "vae_decoded": frequency_ripple(decoded),
              "new_sounds_reanalysed": frequency_ripple(regenerated)}
    picture = save_picture(model, name, classes, held_labels, spectrograms, decoded, asked, regenerated,
                           ROOT / "benchmarks" / "results" / f"realism_{name}.png")
    tails = {}
    for label in classes:  # (not ``name``: that is the model's, written below)
        real_tail = np.median([decay_seconds(s, rate, TAIL_DB) for s, c in zip(held_audio, held_labels) if c == label])
        made_tail = np.median([decay_seconds(s, rate, TAIL_DB) for s, c in zip(generated, asked) if c == label])
        tails[label] = {"real_s": round(float(real_tail), 3), "generated_s": round(float(made_tail), 3),
                       "ratio": ratio(made_tail, real_tail)}
    return {
        "name": name, "model_dir": str(model_dir), "floor_gate_db": gate_db,
        "sampler": {**{"kernel_width": "generate.py's", "spread_cap": "generate.py's"}, **sampler},
        "picture": picture.relative_to(ROOT).as_posix(),
        "spectrogram": {key: model.params[key] for key in (
            "sample_rate", "duration", "frame_size", "hop_length", "n_bins", "n_frames")},
        "frechet_distance": {name: round(float(value), 2) for name, value in distances.items()},
        "frechet_times_floor": {name: ratio(value, floor) for name, value in distances.items()},
        "new_sounds_frechet_std_between_draws": round(new_std, 2),
        "new_sounds_median_times_floor": ratio(new_median, floor),
        "half_split": "a half has fewer clips of a class than held out: not drawn" if halves is None else {
            "new_sounds_times_floor": spread_of(halves["new"]),
            "real_random_draws_times_floor": spread_of(halves["real"]),
            "new_sounds_over_real_random_draws": spread_of(np.array(halves["new"]) / np.array(halves["real"]))},
        "recognised_as_requested": round(float(np.mean(heard == asked_index)), 3),
        "per_class_recognised": {name: round(float(np.mean(heard[asked_index == c] == c)), 3)
                                 for c, name in enumerate(classes)},
        "frequency_ripple": {kind: {str(period): round(float(value), 2) for period, value in figures.items()}
                             for kind, figures in ripple.items()},
        "ripple_times_real": {kind: {str(p): ratio(ripple[kind][p], ripple["real"][p]) for p in ripple["real"]}
                              for kind in ("vae_decoded", "new_sounds_reanalysed")},
        "saturated_share": {"real": round(saturated_share(spectrograms), 4),
                            "vae_decoded": round(saturated_share(decoded), 4),
                            "new_sounds_reanalysed": round(saturated_share(regenerated), 4)},
        "time_to_minus_60_db": tails,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="a folder real_kit.py laid out (train/, held_out/, ...)")
    parser.add_argument("--models", default="", help="comma-separated model folders (default: WORKDIR/model)")
    parser.add_argument("--floor_gate_db", default="",
                        help=f"comma-separated, one per model (default: {DEFAULT_FLOOR_GATE_DB} dB, generate.py's)")
    parser.add_argument("--kernel_width", default="",
                        help="comma-separated, one per model: generate.py's KERNEL_WIDTH (0: the Gaussian prior; "
                             "default: generate.py's)")
    parser.add_argument("--spread_cap", default="",
                        help="comma-separated, one per model: generate.py's SPREAD_CAP (0: no cap; default: generate.py's)")
    parser.add_argument("--names", default="", help="comma-separated, one per model (default: the folders' names)")
    parser.add_argument("--tag", default="", help="a name for the results file: realism_<tag>.json")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)
    models = [Path(path) for path in args.models.split(",") if path] or [workdir / "model"]
    names = [name for name in args.names.split(",") if name] or [f"{path.parent.name}_{path.name}" for path in models]
    gates = [float(value) for value in args.floor_gate_db.split(",") if value] or [DEFAULT_FLOOR_GATE_DB] * len(models)
    samplers = sampler_settings(vars(args), len(models))
    real = real_sets(workdir, LISTENER_RATE)
    classes = sorted(set(real["train"][0]))
    views = {name: np.stack([listener_view(signal, LISTENER_RATE) for signal in real[name][1]]) for name in real}
    listener = Listener()
    listener.fit(views["train"], np.array([classes.index(c) for c in real["train"][0]]), epochs=20, seed=0)
    held_index = np.array([classes.index(c) for c in real["held_out"][0]])
    results = {"cpu": cpu_name(), "cores": os.cpu_count(), "workdir": str(workdir), "classes": classes,
               "train_clips": len(views["train"]), "held_out_clips": len(views["held_out"]),
               "listener_held_out_accuracy": round(float(np.mean(listener.predict(views["held_out"]) == held_index)), 3),
               "models": []}
    embed_real = {name: listener.embed(views[name]) for name in views}
    wanted = {name: real["held_out"][0].count(name) for name in classes}
    # How far real clips drawn at random lie, as a multiple of the floor (see the module's docstring). A small
    # folder may have fewer training clips of a class in a half than the held-out set: then there is no such draw.
    halves = half_split_ratios(embed_real["train"], real["train"][0], embed_real["held_out"], wanted)
    results["real_random_draws_times_floor"] = "a half has fewer clips of a class than held out: not drawn" \
        if halves is None else spread_of(halves["real"])
    for model_dir, name, gate_db, sampler in zip(models, names, gates, samplers, strict=True):
        results["models"].append(judge_model(model_dir, name, gate_db, sampler, workdir, listener, embed_real, classes,
                                             real["train"][0]))
    print(json.dumps(results, indent=2))
    out = ROOT / "benchmarks" / "results" / f"realism{'_' + args.tag if args.tag else ''}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
