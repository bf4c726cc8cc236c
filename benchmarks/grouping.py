"""Sorting an unlabelled real kit into groups: how well do the groups agree with the kit's real classes?

    python preprocess.py --audio_dir=W/train --spectrograms_dir=W2/spectrograms --labels=none
    python train.py --spectrograms_dir=W2/spectrograms --model_dir=W2/model --groups=1
    python benchmarks/grouping.py --workdir=W2

W is what ``benchmarks/real_kit.py --workdir=W`` left: the kit's training files in class
sub-folders. With ``--labels=none`` the model never sees the classes; ``--groups=1``
skips train.py's own grouping so that this script can run it (``soundkit.fitted.sort_into_groups``,
the function train.py calls) with the number of groups chosen and with 4 set by hand, and
compare each with the folder names: adjusted Rand index (1 = the same partition,
0 = chance) and purity (the share of clips in their group's most common class).
Prints JSON and writes benchmarks/results/grouping.json.
"""

import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def agreement(truth, found, groups):
    """How the groups ``found`` (one per clip) agree with the classes ``truth``; ``groups``: groups.json."""
    from sklearn.metrics import adjusted_rand_score

    def members(group):
        return Counter(t for t, g in zip(truth, found, strict=True) if g == group)

    purity = sum(members(group).most_common(1)[0][1] for group in set(found)) / len(truth)
    return {
        "groups": {group: dict(members(group)) for group in sorted(set(found))},
        "representatives": groups["representatives"],
        "silhouette_by_count": groups["silhouette_by_count"],
        "adjusted_rand_index": round(float(adjusted_rand_score(truth, found)), 3),
        "purity": round(float(purity), 3),
    }


def main(argv):
    from real_kit import cpu_name
    from soundkit.fitted import sort_into_groups
    from soundkit.folders import GROUPS_FILE, SPECTROGRAMS_FILE, load_model_folder, load_spectrograms, training_rows
    from soundkit.training import SpectrogramReader

    options = dict(arg[2:].split("=", 1) for arg in argv if arg.startswith("--") and "=" in arg)
    workdir = Path(options["workdir"])
    model_dir, spectrograms_dir = workdir / "model", workdir / "spectrograms"
    _, clips, params = load_spectrograms(spectrograms_dir)
    model = load_model_folder(model_dir)
    train_indices = training_rows(clips, model.training)
    truth = [Path(clip["file"]).parts[0] for clip in clips]
    reader = SpectrogramReader(spectrograms_dir / SPECTROGRAMS_FILE)
    results = {"cpu": cpu_name(), "clips": len(clips), "classes": dict(Counter(truth))}
    for name, count in (("chosen", 0), ("four_by_hand", 4)):
        sort_into_groups(model_dir, model.vae, reader, clips, train_indices, params, count)
        groups = json.loads((model_dir / GROUPS_FILE).read_text())
        found = [groups["clips"][clip["id"]] for clip in clips]
        results[name] = agreement(truth, found, groups)
    (model_dir / GROUPS_FILE).unlink()  # the model stays as it was trained
    print(json.dumps(results, indent=1))
    (ROOT / "benchmarks" / "results" / "grouping.json").write_text(json.dumps(results, indent=1) + "\n")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
