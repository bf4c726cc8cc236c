"""The decoder's second stage on small folders: no collapse to noise, no discriminator blow-up.

    python benchmarks/adversarial_subsets.py                      # 50 and 100 training clips, seeds 0, 1, 2
    python benchmarks/adversarial_subsets.py --sizes=50 --seeds=0 --workroot=/tmp/subsets

For each size and seed, ``real_kit.py --subset=N --seed=S`` splits ../shared/data/drums
(every fifth clip held out), trains with the defaults (the second stage included) and
judges the new sounds; ``realism.py`` then measures the same model. From the
second stage's own record (``history_adversarial.csv``) come the discriminator's
loss and logits: a blow-up shows as a loss near 0 with logits far apart (the
discriminator wins outright), a collapse to noise as an envelope MSE the check
refused, new sounds the listener cannot place, and a spectral flatness near 1.

Prints JSON and writes benchmarks/results/adversarial_subsets.json.
"""

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from soundkit.adversarial import MAX_MSE_GROWTH  # noqa: E402
from soundkit.configurator import run_step  # noqa: E402
from soundkit.fileio import read_csv  # noqa: E402
from soundkit.folders import ADVERSARIAL_HISTORY_FILE  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def second_stage_figures(model_dir):
    """What the discriminator and the check did, read from history_adversarial.csv."""
    path = Path(model_dir) / ADVERSARIAL_HISTORY_FILE
    if not path.exists():
        return {"epochs": 0}
    rows = read_csv(path)
    number = {name: [float(row[name]) for row in rows] for name in (
        "discriminator_loss", "real_logit", "fake_logit", "texture_gap", "mse")}
    kept = [int(row["epoch"]) for row in rows if row["kept"] == "True"]
    return {"epochs": len(rows), "kept_epoch": kept[-1] if kept else 0,
            "discriminator_loss_min_max": [round(min(number["discriminator_loss"]), 3),
                                           round(max(number["discriminator_loss"]), 3)],
            "last_real_minus_fake_logit": round(number["real_logit"][-1] - number["fake_logit"][-1], 3),
            "texture_gap_first_last": [round(number["texture_gap"][0], 3), round(number["texture_gap"][-1], 3)],
            "epochs_refused_for_envelope_mse": sum(
                1 for row in rows if row["kept"] != "True" and float(row["mse"]) > MAX_MSE_GROWTH * number["mse"][0])}


def one_run(size, seed, workroot):
    workdir = workroot / f"subset{size}_seed{seed}"
    # --reuse=true: a model this workdir already holds is judged again, not trained again.
    run_step("benchmarks/real_kit.py", [f"--subset={size}", f"--seed={seed}", f"--workdir={workdir}", "--reuse=true"])
    kit = json.loads((RESULTS / f"real_kit_subset{size}{f'_seed{seed}' if seed else ''}.json").read_text())
    tag = f"subset{size}_seed{seed}"
    run_step("benchmarks/realism.py", [f"--workdir={workdir}", f"--names={tag}", f"--tag={tag}"])
    realism = json.loads((RESULTS / f"realism_{tag}.json").read_text())
    judged = realism["models"][0]
    return {"subset": size, "seed": seed, "second_stage": second_stage_figures(workdir / "model"),
            "frechet_times_floor": judged["frechet_times_floor"],
            "recognised_as_requested": judged["recognised_as_requested"],
            "spectral_flatness_median": kit.get("spectral_flatness_median"),
            "seconds_to_best_model": kit.get("seconds_to_best_model"),
            "cpu": kit["cpu"]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50,100")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--workroot", default=str(ROOT / "benchmarks" / "work" / "subsets"))
    args = parser.parse_args(argv)
    runs = [one_run(int(size), int(seed), Path(args.workroot).absolute())
            for size in args.sizes.split(",") for seed in args.seeds.split(",")]
    print(json.dumps(runs, indent=2))
    (RESULTS / "adversarial_subsets.json").write_text(json.dumps(runs, indent=2) + "\n")
    return runs


if __name__ == "__main__":
    main()
