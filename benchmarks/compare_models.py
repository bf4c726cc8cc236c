"""Train several configurations for the same wall-clock budget on FSDD and evaluate each, side by side.

    python benchmarks/compare_models.py                       # defaults vs the tutorial preset, 20 min each
    python benchmarks/compare_models.py --minutes=3 --set=sweep

FSDD (../shared/data/fsdd) is preprocessed once per set of spectrogram
parameters (models and spectrograms are kept in models/compare_<set>/); train.py holds out FSDD's
official test split (takes 0-4), and evaluate.py measures on it. Each step runs as its own process
(``soundkit.configurator.run_step``); what it made is read back from the files it writes
(history.csv, the evaluation JSON). Prints JSON and writes benchmarks/results/compare_<set>.json.
"""

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from soundkit.configurator import PROJECT_DIR, assigned_names, run_step  # noqa: E402
from soundkit.errors import PipelineError  # noqa: E402
from soundkit.fileio import read_csv, read_json  # noqa: E402
from soundkit.folders import HISTORY_FILE  # noqa: E402

FSDD_DIR = ROOT.parent / "shared" / "data" / "fsdd"

# name -> extra arguments shared by preprocess, train and evaluate (each takes what it knows)
CANDIDATE_SETS = {
    "tutorial": {
        "defaults": [],
        "tutorial": ["--preset=tutorial"],
    },
    "sweep": {
        "defaults": [],
        "weight_1e3": ["--reconstruction_loss_weight=1000"],
        "weight_1e5": ["--reconstruction_loss_weight=100000"],
        "latent_64": ["--latent_space_dim=64"],
        "learning_rate_3e-3": ["--learning_rate=0.003"],
    },
}


def arguments_for(script, argv):
    """Keep the arguments that the step ``script`` knows (plus --preset): the capitalised names it assigns
    at its top level, read from its source (the step is not imported)."""
    known = {name.lower() for name in assigned_names(PROJECT_DIR / script) or () if name.isupper()}
    return [arg for arg in argv if arg.startswith("--preset=") or arg[2:].split("=", 1)[0] in known]


def train_and_evaluate(name, extra, spectrograms, work, minutes):
    """Train one candidate for ``minutes`` with train.py, evaluate it with evaluate.py; return its figures."""
    model_dir = work / name
    started = time.perf_counter()
    try:
        run_step("train.py", [f"--spectrograms_dir={spectrograms}", f"--model_dir={model_dir}", "--epochs=100000",
                              f"--max_minutes={minutes}", "--verbose=0", "--resume=false",
                              *arguments_for("train.py", extra)])
        stopped = None
    except PipelineError as error:  # a NaN stop keeps the last good model: evaluate that one
        stopped = str(error).split(":", 1)[0]  # "train.py exited with 3"
    train_seconds = time.perf_counter() - started
    history = read_csv(model_dir / HISTORY_FILE)
    evaluation_json = work / (name + ".json")
    run_step("evaluate.py", [f"--model_dir={model_dir}", f"--spectrograms_dir={spectrograms}",
                             f"--evaluation_json={evaluation_json}", *arguments_for("evaluate.py", extra)])
    return {"arguments": extra, "epochs": len(history), "train_seconds": round(train_seconds, 1),
            "stopped": stopped, "final_losses": history[-1], "history": history,
            "evaluation": read_json(evaluation_json)}


def main(argv):
    minutes = float(next((a.split("=", 1)[1] for a in argv if a.startswith("--minutes=")), 20))
    set_name = next((a.split("=", 1)[1] for a in argv if a.startswith("--set=")), "tutorial")
    if not FSDD_DIR.is_dir():
        raise SystemExit(f"no FSDD at {FSDD_DIR}")
    results = {"minutes_per_model": minutes, "set": set_name, "models": {}}
    work = ROOT / "models" / f"compare_{set_name}"  # kept, to listen to; ignored by git
    for name, extra in CANDIDATE_SETS[set_name].items():
        print(f"=== {name}: {' '.join(extra) or 'defaults'}", file=sys.stderr)
        spectrogram_args = arguments_for("preprocess.py", extra)
        spectrograms = work / ("spectrograms_" + str(abs(hash(tuple(spectrogram_args)))))
        run_step("preprocess.py", [f"--audio_dir={FSDD_DIR}", f"--spectrograms_dir={spectrograms}",
                                   *spectrogram_args])
        results["models"][name] = train_and_evaluate(name, extra, spectrograms, work, minutes)
    baseline = results["models"].get("tutorial")
    if baseline and "defaults" in results["models"]:
        ours = results["models"]["defaults"]["evaluation"]["reconstruction"]["log_spectral_distance_db"]
        theirs = baseline["evaluation"]["reconstruction"]["log_spectral_distance_db"]
        results["lsd_improvement_over_tutorial"] = round(1 - ours / theirs, 3)
    print(json.dumps(results, indent=2, default=str))
    out = ROOT / "benchmarks" / "results" / f"compare_{set_name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
