"""The explorer: a local server that makes a sound for every request, keeps the good ones, refuses bad requests."""

import base64
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from browser import Browser


ROOT = Path(__file__).resolve().parents[1]
TOKENS = {}  # address of a running explorer -> the token its API calls must carry


@pytest.fixture(scope="module")
def server(labelled_project, tmp_path_factory):
    from conftest import running_explorer

    with running_explorer(labelled_project[0], tmp_path_factory, "explore", "--griffin_lim_iterations=8") as running:
        base, token, root, config = running
        TOKENS[base] = token
        yield base, root, config


def request(base, path, body=None, raw=None):
    """(status, decoded JSON) of a GET (no body) or a POST, with the explorer's token, as the page sends them."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    call = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json",
                                                                   "X-Explorer-Token": TOKENS[base]})
    try:
        with urllib.request.urlopen(call, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def wav_of(sound):
    return sf.read(io.BytesIO(base64.b64decode(sound["wav"])))


def page_address(base, fragment=""):
    """The address explore.py prints (with its token), as a person opens it."""
    return f"{base}/?token={TOKENS[base]}{fragment}"


@pytest.mark.slow
def test_the_server_listens_on_loopback_only_and_describes_the_model(server):
    base, _, _ = server
    assert base.startswith("http://127.0.0.1:")
    status, info = request(base, "/api/model")
    assert status == 200
    assert info["classes"] == ["clap", "hihat", "kick", "snare", "tom"]
    assert info["knobs"] == ["brightness", "length", "attack", "pitch"] and info["directions"] == ["direction_1", "direction_2"]
    with urllib.request.urlopen(page_address(base), timeout=30) as page:
        html = page.read().decode()
    assert "<script>" in html and "http" not in re.sub(r'"/api/[a-z]+"', "", html.split("<script>")[1])


@pytest.mark.slow
def test_a_new_sound_is_a_24_bit_wav_of_the_model_with_its_spectrogram(server):
    base, root, _ = server
    params = json.loads((root / "model" / "params.json").read_text())
    status, sound = request(base, "/api/sound", {"mode": "new", "class": "snare", "seed": 3})
    assert status == 200 and sound["class"] == "snare"
    signal, rate = wav_of(sound)
    info = sf.info(io.BytesIO(base64.b64decode(sound["wav"])))
    assert rate == params["sample_rate"] and info.subtype == "PCM_24"
    assert 0 < len(signal) <= params["num_samples"]
    assert 20 * np.log10(np.max(np.abs(signal))) == pytest.approx(-1.0, abs=0.05)
    import matplotlib.image

    picture = matplotlib.image.imread(io.BytesIO(base64.b64decode(sound["png"])), format="png")
    assert picture.shape[:2] == (params["n_bins"], params["n_frames"])


@pytest.mark.slow
def test_the_same_draw_sounds_the_same_and_a_direction_changes_it(server):
    base, _, _ = server
    first = wav_of(request(base, "/api/sound", {"seed": 5})[1])[0]
    again = wav_of(request(base, "/api/sound", {"seed": 5})[1])[0]
    np.testing.assert_array_equal(first, again)
    moved = wav_of(request(base, "/api/sound", {"seed": 5, "directions": {"direction_1": -2.0}})[1])[0]
    assert len(moved) != len(first) or not np.array_equal(moved, first)


@pytest.mark.slow
@pytest.mark.parametrize("knob", ["brightness", "length", "attack"])
def test_a_knob_turned_up_moves_what_it_names_up_for_the_same_draw(server, knob, tmp_path):
    """Measured on the WAV the page gets (brightness: log2 of the spectral centroid; length: the decay
    time; attack: the first 20 ms against the rest), at -2 and +2 standard deviations, for ten draws.

    The pitch knob is left out: on this tiny model (20 clips at 8 kHz, 8 epochs) it follows pitch
    poorly (R^2 about 0.5) and the same draws measure lower at +2; on a real kit it follows
    (benchmarks/variations_and_pack.py)."""
    from soundkit.spectrogram import KNOB_DESCRIPTORS, sound_descriptors, wav_spectrogram_db

    base, root, _ = server
    params = json.loads((root / "model" / "params.json").read_text())

    def measured(seed, amount):
        _, sound = request(base, "/api/sound", {"seed": seed, "knobs": {knob: amount}})
        (tmp_path / "heard.wav").write_bytes(base64.b64decode(sound["wav"]))
        return sound_descriptors(wav_spectrogram_db(tmp_path / "heard.wav", params)[None], params)[
            0, KNOB_DESCRIPTORS.index(knob)]

    change = np.array([measured(seed, 2.0) - measured(seed, -2.0) for seed in range(10)])
    assert np.mean(change > 0) >= 0.8 and np.median(change) > 0, change


@pytest.mark.slow
def test_variations_and_morphs_start_from_recent_sounds(server):
    base, _, _ = server
    _, a = request(base, "/api/sound", {"class": "kick", "seed": 1})
    _, b = request(base, "/api/sound", {"class": "hihat", "seed": 2})
    status, variation = request(base, "/api/sound", {"mode": "variation", "of": a["id"], "spread": 0.5, "seed": 9})
    assert status == 200 and variation["class"] == "kick" and variation["id"] not in (a["id"], b["id"])
    ends = [wav_of(request(base, "/api/sound", {"mode": "morph", "a": a["id"], "b": b["id"], "t": t})[1])[0]
            for t in (0.0, 1.0)]
    np.testing.assert_array_equal(ends[0], wav_of(a)[0])  # the ends of a morph are the sounds themselves
    np.testing.assert_array_equal(ends[1], wav_of(b)[0])


@pytest.mark.slow
def test_keep_writes_the_sound_into_the_keep_folder_only_and_export_makes_a_pack(server):
    base, root, _ = server
    _, sound = request(base, "/api/sound", {"class": "tom", "seed": 4})
    status, kept = request(base, "/api/keep", {"id": sound["id"], "name": "../../outside/evil name"})
    assert status == 200 and kept["kept"] == "outside_evil_name.wav"
    assert not (root.parent / "outside").exists() and not (root / "outside").exists()
    # The kept file is the same sound made again at full quality (more Griffin-Lim iterations than the preview).
    kept_signal, rate = sf.read(root / "kept" / "outside_evil_name.wav")
    preview, preview_rate = wav_of(sound)
    assert sf.info(root / "kept" / "outside_evil_name.wav").subtype == "PCM_24" and rate == preview_rate
    assert 20 * np.log10(np.max(np.abs(kept_signal))) == pytest.approx(-1.0, abs=0.05)
    assert (root / "kept" / "outside_evil_name.wav").read_bytes() != base64.b64decode(sound["wav"])
    from soundkit.stft import stft

    length = min(len(kept_signal), len(preview))
    spectra = [20 * np.log10(np.abs(stft(x[:length].astype(np.float32), 128, 32)) + 1e-4)
               for x in (kept_signal, preview)]
    assert np.sqrt(np.mean((spectra[0] - spectra[1]) ** 2)) < 6.0  # dB: the same sound
    request(base, "/api/keep", {"id": sound["id"], "name": "../../outside/evil name"})
    assert (root / "kept" / "outside_evil_name_2.wav").exists()  # never overwritten
    status, pack = request(base, "/api/export", {})
    assert status == 200 and pack["sounds"] >= 2
    assert "key=45" in Path(pack["sfz"]).read_text()  # the kept toms on the tom key


@pytest.mark.slow
def test_each_kind_of_bad_request_gets_a_clear_error_and_the_server_keeps_serving(server):
    base, _, config = server
    cases = [
        (request(base, "/api/sound", {"knobs": {"brightness": 4}}), 400, "brightness must be a number from -3.0 to 3.0"),
        (request(base, "/api/sound", {"knobs": {"wetness": 1}}), 400, "knobs must be an object with some of"),
        (request(base, "/api/sound", {"class": "cowbell"}), 400, "unknown class 'cowbell'; this model knows: clap"),
        (request(base, "/api/sound", {"mode": "remix"}), 400, "mode must be new, variation or morph"),
        (request(base, "/api/sound", {"mode": "variation", "of": "s99999"}), 400, "of: no recent sound 's99999'"),
        (request(base, "/api/sound", {"temperature": "hot"}), 400, "temperature must be a number from 0.1 to 2.0"),
        (request(base, "/api/sound", raw=b"{not json"), 400, "the body is not JSON"),
        (request(base, "/api/sound", raw=b"[1, 2]"), 400, "the request must be a JSON object"),
        (request(base, "/api/sound", raw=b" " * (config.MAX_BODY_BYTES + 1)), 413, "at most 4096 bytes"),
        (request(base, "/api/nothing", {}), 404, "no action at /api/nothing"),
        (request(base, "/etc/passwd"), 404, "no page at /etc/passwd"),
        (request(base, "/api/keep", {"id": "s0"}), 400, "id: no recent sound 's0'"),
        (request(base, "/api/keep", {"id": "s1", "colour": "red"}), 400, "unknown field 'colour'"),
        (request(base, "/api/export", {"all": True}), 400, "unknown field 'all'; this request takes none"),
    ]
    for (status, body), expected_status, message in cases:
        assert status == expected_status and message in body["error"], (status, body)
    assert request(base, "/api/sound", {"seed": 1})[0] == 200


@pytest.mark.slow
def test_concurrent_requests_do_not_corrupt_each_other(server):
    base, _, _ = server
    expected = {seed: wav_of(request(base, "/api/sound", {"seed": seed})[1])[0] for seed in range(4)}
    results, errors = {}, []

    def client(seed):
        for _ in range(3):
            status, sound = request(base, "/api/sound", {"seed": seed})
            if status != 200:
                errors.append(sound)
                continue
            results.setdefault(seed, []).append(wav_of(sound)[0])

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    for seed, sounds in results.items():
        assert len(sounds) == 3 and all(np.array_equal(sound, expected[seed]) for sound in sounds)


@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix", reason="sends SIGINT, as Ctrl-C does")
def test_ctrl_c_stops_the_server_cleanly(server, tmp_path):
    _, root, _ = server
    process = subprocess.Popen([sys.executable, str(ROOT / "explore.py"), f"--model_dir={root / 'model'}",
                                f"--spectrograms_dir={root / 'spectrograms'}", "--port=0",
                                f"--keep_dir={tmp_path / 'kept'}"], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        while "open http://127.0.0.1:" not in line:
            line = process.stdout.readline()
            assert line, process.stderr.read()[-2000:]
        base, token = re.search(r"(http://127\.0\.0\.1:\d+)/\?token=([\w-]{40,})", line).groups()
        TOKENS[base] = "not this run's"
        assert request(base, "/api/model") == (403, {"error": "wrong X-Explorer-Token: open the address the "
                                                             "server printed this time"})
        TOKENS[base] = token  # the printed address's
        assert request(base, "/api/model")[0] == 200
        # A browser keeps a connection open; Ctrl-C must not wait for it (REQUEST_SECONDS is 20 s).
        idle = socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1])))
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
        idle.close()
    finally:
        process.kill()
    assert process.returncode == 0 and "stopped" in output


@pytest.mark.slow
def test_in_a_real_browser_the_page_loads_the_model_and_plays_a_first_sound(server, tmp_path, chromium):
    base, _, _ = server
    # Over the DevTools pipe, with real-time waits: a busy machine makes the page slower, not the test wrong.
    with Browser(chromium, tmp_path / "profile") as browser:
        browser.open(page_address(base))
        status = browser.wait_for("document.getElementById('player').src.startsWith('data:audio/wav;base64,') && "
                                  "document.getElementById('status').className === '' && "
                                  "document.getElementById('status').textContent", 120)
        dom = browser.evaluate("document.documentElement.outerHTML")
    assert re.fullmatch(r"sound s\d+: \d+ ms from request to sound", status), status
    assert '<option>snare</option>' in dom and 'id="brightness"' in dom


@pytest.mark.slow
def test_in_a_real_browser_a_knob_new_and_keep_give_sounds_of_the_right_length_and_a_kept_file(server, tmp_path, chromium):
    base, root, _ = server
    params = json.loads((root / "model" / "params.json").read_text())
    with Browser(chromium, tmp_path / "profile") as browser:
        browser.open(page_address(base, "#selfcheck"))
        found = browser.wait_for("(document.getElementById('selfcheck-report') || {}).textContent || "
                                 "(document.getElementById('status').classList.contains('error') && "
                                 "'error: ' + document.getElementById('status').textContent)", 180)
    assert not found.startswith("error: "), found
    report = json.loads(found)
    assert [sound["step"] for sound in report["sounds"]] == ["first", "knob", "new"]
    for sound in report["sounds"]:
        assert sound["error"] is None, sound
        # Trimmed below -60 dB and faded, never longer than the model's clips.
        assert 0.02 < sound["duration"] <= params["duration"] + 0.01, sound
    assert [sound.get("rate") for sound in report["sounds"][1:]] == [params["sample_rate"]] * 2
    assert report["sounds"][1]["id"] != report["sounds"][2]["id"]
    kept = root / "kept" / report["kept"]["kept"]
    assert kept.is_file() and sf.info(kept).samplerate == params["sample_rate"]
    assert len(report["latencies_ms"]) >= 3 and all(latency >= 0 for latency in report["latencies_ms"])
