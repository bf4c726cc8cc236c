"""Fingerprint a fixed-seed run of the pipeline, so a refactor can show it changed no behaviour.

    python benchmarks/fingerprint.py --output=before.json     # record
    python benchmarks/fingerprint.py --compare=before.json    # run again, compare, exit 1 on a difference

Writes the demo drums (a smaller set than ``make demo``'s, same synthesizer),
then runs ``preprocess.py``, ``train.py`` (a few epochs, fixed seed) and
``generate.py`` as a user would, each as its own process, in a temporary
folder. Prints the SHA-256 of every WAV, JSON and NPY file they wrote. JSON files
are hashed after dropping what no code decides: wall-clock figures (keys
naming seconds, times or dates), files' modification times, the hash of the
saved model file (it records when it was saved) and the temporary folder's path.
"""

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLIPS_PER_CLASS = 12
TRAIN_SETTINGS = ["--epochs=3", "--seed=0", "--verbose=0", "--max_minutes=0"]
HASHED_SUFFIXES = (".wav", ".json", ".npy")
CLOCK_WORDS = ("seconds", "time", "date", "minutes", "elapsed", "_ms", "per_second")
SAVED_AT_KEYS = ("model_sha256",)             # a .keras file records when it was saved
MODIFIED_TIME = re.compile(r"(\|\d+)\|\d{9,}$")  # a cache key "path|size|mtime in ns"


def run_pipeline(workdir):
    """Run the steps in ``workdir``; return the folders they wrote."""
    audio, spectrograms, model, samples = (workdir / name for name in ("audio", "spectrograms", "model", "samples"))
    steps = [
        [str(ROOT / "data" / "synthesize_drums.py"), str(audio), f"--clips-per-class={CLIPS_PER_CLASS}"],
        [str(ROOT / "preprocess.py"), f"--audio_dir={audio}", f"--spectrograms_dir={spectrograms}", "--num_workers=1"],
        [str(ROOT / "train.py"), f"--spectrograms_dir={spectrograms}", f"--model_dir={model}", *TRAIN_SETTINGS],
        [str(ROOT / "generate.py"), f"--model_dir={model}", f"--spectrograms_dir={spectrograms}",
         f"--output_dir={samples}"],
    ]
    for step in steps:
        print("$ python " + " ".join(Path(step[0]).name if i == 0 else arg for i, arg in enumerate(step)),
              file=sys.stderr)
        subprocess.run([sys.executable, *step], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return [spectrograms, model, samples]


def without_clock(value, workdir):
    """The JSON value with wall-clock entries removed and the working folder's path made neutral."""
    if isinstance(value, dict):
        return {without_clock(key, workdir): without_clock(item, workdir) for key, item in value.items()
                if not any(word in key.lower() for word in CLOCK_WORDS) and key not in SAVED_AT_KEYS}
    if isinstance(value, list):
        return [without_clock(item, workdir) for item in value]
    if isinstance(value, str):
        return MODIFIED_TIME.sub(r"\1", value.replace(str(workdir), "<workdir>"))
    return value


def fingerprint(folders, workdir):
    """{relative path: SHA-256} of every hashed file under the folders."""
    hashes = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.suffix not in HASHED_SUFFIXES or not path.is_file():
                continue
            content = path.read_bytes()
            if path.suffix == ".json":
                value = without_clock(json.loads(content), workdir)
                content = json.dumps(value, sort_keys=True).encode()
            hashes[path.relative_to(workdir).as_posix()] = hashlib.sha256(content).hexdigest()
    return hashes


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", help="write the fingerprint to this JSON file")
    parser.add_argument("--compare", help="compare with a fingerprint written earlier; exit 1 on any difference")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder).resolve()
        hashes = fingerprint(run_pipeline(workdir), workdir)
    print(json.dumps({"files": len(hashes), "hashes": hashes}, indent=1))
    if args.output:
        Path(args.output).write_text(json.dumps(hashes, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    if args.compare:
        before = json.loads(Path(args.compare).read_text(encoding="utf-8"))
        changed = sorted(name for name in before.keys() | hashes.keys() if before.get(name) != hashes.get(name))
        print(f"{len(hashes)} files, {len(changed)} differ" + "".join(f"\n  {name}" for name in changed))
        sys.exit(1 if changed else 0)


if __name__ == "__main__":
    main()
