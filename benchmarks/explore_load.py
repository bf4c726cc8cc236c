"""How fast the explorer answers: one client, then 200 requests from 4 parallel clients, on loopback.

    python benchmarks/explore_load.py --model_dir=W/model --spectrograms_dir=W/spectrograms
    python benchmarks/explore_load.py --model_dir=W/model --spectrograms_dir=W/spectrograms --sequencer=true

Starts ``explore.py`` as its own process, as a user would, on a free port of
127.0.0.1, reads the address it prints (with the run's token, which every
request then carries as the page does) and waits until it answers (at most
STARTUP_SECONDS). First 30
requests one after another (the time from request to sound as one user feels
it), then 4 clients send 50 requests each with random classes, knobs and
directions. Every request is bounded (60 s timeout); an error is counted, never
retried. The explorer is then stopped as Ctrl-C stops it. Prints JSON (latency
percentiles in ms) and writes benchmarks/results/explore_load.json.

With ``--sequencer=true`` the page is open all the while in a headless Chromium
(driven as the tests drive it, tests/browser.py), a description typed in its text
box and its sequencer playing the first beat (a row per class) at 120 BPM: the
same figures, and how many of the notes the page scheduled came too late to
play; a screenshot of the page playing goes to benchmarks/results/
explorer_sequencer.png, the figures to explore_load_sequencer.json.
"""

import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

SEQUENTIAL = 30
CLIENTS, PER_CLIENT = 4, 50
STARTUP_SECONDS = 300          # loading the model (and fitting its knobs the first time) before it answers
STOP_SECONDS = 30              # after Ctrl-C, before the explorer is killed
DESCRIPTION = "short bright snare"  # typed in the page's text box before the sequencer plays


def api_headers(token, json_body=False):
    """The headers the explorer's page sends: the run's token, and for a POST its JSON type."""
    return {"X-Explorer-Token": token, **({"Content-Type": "application/json"} if json_body else {})}


def timed_request(base, token, body):
    """(milliseconds, HTTP status) of one POST /api/sound."""
    started = time.perf_counter()
    call = urllib.request.Request(base + "/api/sound", data=json.dumps(body).encode(),
                                  headers=api_headers(token, json_body=True))
    try:
        with urllib.request.urlopen(call, timeout=60) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    except OSError:
        status = 0
    return 1000 * (time.perf_counter() - started), status


def percentiles(values):
    return {f"p{p}": round(float(np.percentile(values, p)), 1) for p in (50, 95, 99)} | {
        "max": round(float(np.max(values)), 1)}


def free_port():
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_explorer(model_dir, spectrograms_dir, keep_dir):
    """Start explore.py; return (the process, its address, its token, its answer to GET /api/model) once
    it answers. What it prints goes on to this script's stderr (its stdout is the JSON)."""
    from soundkit.configurator import PROJECT_DIR

    process = subprocess.Popen(
        [sys.executable, str(PROJECT_DIR / "explore.py"), f"--model_dir={Path(model_dir).resolve()}",
         f"--spectrograms_dir={Path(spectrograms_dir).resolve()}", f"--keep_dir={keep_dir}", f"--port={free_port()}"],
        cwd=PROJECT_DIR, stdout=subprocess.PIPE, text=True)
    printed = {}
    address_seen = threading.Event()

    def relay():  # reads every line, so the explorer never blocks on a full pipe
        for line in process.stdout:
            sys.stderr.write(line)
            found = re.search(r"(http://127\.0\.0\.1:\d+)/\?token=([\w-]+)", line)
            if found and not address_seen.is_set():
                printed["base"], printed["token"] = found.groups()
                address_seen.set()

    threading.Thread(target=relay, daemon=True).start()
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline and process.poll() is None:
        if not address_seen.wait(0.5):
            continue
        try:
            call = urllib.request.Request(printed["base"] + "/api/model", headers=api_headers(printed["token"]))
            with urllib.request.urlopen(call, timeout=5) as response:
                return process, printed["base"], printed["token"], json.loads(response.read())
        except OSError:  # not listening yet
            time.sleep(0.5)
    stop_explorer(process)
    raise SystemExit(f"explore.py did not print its address and answer within {STARTUP_SECONDS} s "
                     f"(exit status {process.returncode})")


def stop_explorer(process):
    """Stop explore.py as Ctrl-C does; kill it if it has not stopped after STOP_SECONDS."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        process.wait(STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def load(base, token, info):
    """(sequential, parallel, seconds of the parallel part): (ms, status) of each request."""
    rng = np.random.default_rng(0)

    def random_body():
        return {"seed": int(rng.integers(1 << 30)), "class": str(rng.choice([""] + info["classes"])),
                "knobs": {name: round(float(rng.uniform(-1.5, 1.5)), 2) for name in info["knobs"]},
                "directions": {name: round(float(rng.uniform(-1.5, 1.5)), 2) for name in info["directions"]}}

    timed_request(base, token, random_body())  # warm up
    sequential = [timed_request(base, token, random_body()) for _ in range(SEQUENTIAL)]
    bodies = [[random_body() for _ in range(PER_CLIENT)] for _ in range(CLIENTS)]
    parallel = []

    def client(mine):
        for body in mine:
            parallel.append(timed_request(base, token, body))

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(mine,)) for mine in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    return sequential, parallel, time.perf_counter() - started


def open_playing_page(base, token, profile):
    """A headless Chromium on the explorer's page: a description typed in, then the sequencer playing."""
    sys.path.insert(0, str(ROOT / "tests"))
    from browser import Browser

    browser = Browser(shutil.which("chromium") or "/usr/bin/chromium", profile)
    browser.open(f"{base}/?token={token}")
    browser.wait_for("typeof sequencer !== 'undefined' && sequencer.ready === true", STARTUP_SECONDS)
    browser.evaluate(f"document.getElementById('describe').value = {json.dumps(DESCRIPTION)}; describe()")
    browser.evaluate("sequencer.set({bpm: 120, swing: 50, accent_db: 6}); sequencer.play()")
    return browser


def playing_figures(browser):
    """What the page's sequencer did during the load: passes, notes played on time and late; a screenshot."""
    figures = browser.evaluate("({passes: sequencer.pass.index + 1, notes: sequencer.log.length, late: sequencer.late,"
                               " described: document.getElementById('described').textContent})")
    browser.screenshot(ROOT / "benchmarks" / "results" / "explorer_sequencer.png")
    return figures


def main(argv):
    from real_kit import cpu_name

    options = dict(arg[2:].split("=", 1) for arg in argv if arg.startswith("--") and "=" in arg)
    if "--help" in argv or not {"model_dir", "spectrograms_dir"} <= set(options):
        print(__doc__)
        return None
    playing = options.get("sequencer") == "true"
    browser = figures = None
    with tempfile.TemporaryDirectory() as keep_dir:
        process, base, token, info = start_explorer(options["model_dir"], options["spectrograms_dir"], keep_dir)
        try:
            browser = open_playing_page(base, token, Path(keep_dir) / "profile") if playing else None
            sequential, parallel, seconds = load(base, token, info)
            figures = playing_figures(browser) if browser else None
        finally:
            if browser:
                browser.close()
            stop_explorer(process)
    results = {
        "cpu": cpu_name(), "model_dir": options["model_dir"], "sample_rate": info["sample_rate"],
        "seconds_per_sound": info["seconds"],
        "one_client": {"requests": SEQUENTIAL, "errors": sum(s != 200 for _, s in sequential),
                       **percentiles([ms for ms, _ in sequential])},
        "four_clients": {"requests": len(parallel), "errors": sum(s != 200 for _, s in parallel),
                         "sounds_per_second": round(len(parallel) / seconds, 2),
                         **percentiles([ms for ms, _ in parallel])},
    }
    if playing:
        results["sequencer_playing"] = figures
    print(json.dumps(results, indent=1))
    name = "explore_load_sequencer.json" if playing else "explore_load.json"
    (ROOT / "benchmarks" / "results" / name).write_text(json.dumps(results, indent=1) + "\n")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
