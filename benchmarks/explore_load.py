"""How fast the explorer answers: one client, then 200 requests from 4 parallel clients, on loopback.

    python benchmarks/explore_load.py --model_dir=W/model --spectrograms_dir=W/spectrograms

Starts ``explore.py``'s server on a free port of 127.0.0.1, in this process. First
30 requests one after another (the time from request to sound as one user feels
it), then 4 clients send 50 requests each with random classes, knobs and
directions. Every request is bounded (60 s timeout); an error is counted, never
retried. Prints JSON (latency percentiles in ms) and writes
benchmarks/results/explore_load.json.
"""

import json
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


def timed_request(base, body):
    """(milliseconds, HTTP status) of one POST /api/sound."""
    started = time.perf_counter()
    call = urllib.request.Request(base + "/api/sound", data=json.dumps(body).encode(),
                                  headers={"Content-Type": "application/json"})
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


def main(argv):
    import explore
    from configurator import configure
    from real_kit import cpu_name

    options = dict(arg[2:].split("=", 1) for arg in argv if arg.startswith("--") and "=" in arg)
    with tempfile.TemporaryDirectory() as keep_dir:
        config = configure(vars(explore), [f"--model_dir={options['model_dir']}",
                                           f"--spectrograms_dir={options['spectrograms_dir']}", "--port=0",
                                           f"--keep_dir={keep_dir}"])
        server = explore.serve(config)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_address[1]}"
        info = server.RequestHandlerClass and json.loads(urllib.request.urlopen(base + "/api/model").read())
        rng = np.random.default_rng(0)

        def random_body():
            return {"seed": int(rng.integers(1 << 30)), "class": str(rng.choice([""] + info["classes"])),
                    "knobs": {name: round(float(rng.uniform(-1.5, 1.5)), 2) for name in info["knobs"]},
                    "directions": {name: round(float(rng.uniform(-1.5, 1.5)), 2) for name in info["directions"]}}

        timed_request(base, random_body())  # warm up
        sequential = [timed_request(base, random_body()) for _ in range(SEQUENTIAL)]
        bodies = [[random_body() for _ in range(PER_CLIENT)] for _ in range(CLIENTS)]
        parallel = []

        def client(mine):
            for body in mine:
                parallel.append(timed_request(base, body))

        started = time.perf_counter()
        threads = [threading.Thread(target=client, args=(mine,)) for mine in bodies]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(600)
        seconds = time.perf_counter() - started
        server.shutdown()
        server.server_close()
    results = {
        "cpu": cpu_name(), "model_dir": options["model_dir"], "sample_rate": info["sample_rate"],
        "seconds_per_sound": info["seconds"],
        "one_client": {"requests": SEQUENTIAL, "errors": sum(s != 200 for _, s in sequential),
                       **percentiles([ms for ms, _ in sequential])},
        "four_clients": {"requests": len(parallel), "errors": sum(s != 200 for _, s in parallel),
                         "sounds_per_second": round(len(parallel) / seconds, 2),
                         **percentiles([ms for ms, _ in parallel])},
    }
    print(json.dumps(results, indent=1))
    (ROOT / "benchmarks" / "results" / "explore_load.json").write_text(json.dumps(results, indent=1) + "\n")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
