"""The explorer's guards: only its own page on this computer can drive it, slow or broken clients cannot
stall it, no request goes unanswered, and a kept WAV is written whole or not at all."""

import errno
import json
import os
import random
import re
import socket
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import soundfile as sf
from browser import Browser

import explore
from soundkit.configurator import configure
from soundkit.http_guard import LINGER_SECONDS, nesting, new_token

REQUEST_SECONDS, MAX_CONNECTIONS = 1.0, 3  # low, so that the limits show within a test


@pytest.fixture(scope="module")
def explorer(labelled_project, tmp_path_factory):
    """A running explorer with low limits: (port, token, root, keep folder)."""
    from conftest import copy_project

    root = copy_project(labelled_project[0], tmp_path_factory.mktemp("explore_security") / "project")
    config = configure(vars(explore), [f"--model_dir={root / 'model'}", f"--spectrograms_dir={root / 'spectrograms'}",
                                       "--port=0", f"--keep_dir={root / 'kept'}", "--griffin_lim_iterations=4",
                                       f"--request_seconds={REQUEST_SECONDS}", f"--max_connections={MAX_CONNECTIONS}"])
    explore.validate(config)
    running = explore.serve(config)
    threading.Thread(target=running.serve_forever, daemon=True).start()
    yield SimpleNamespace(port=running.server_address[1], token=running.token, root=root, kept=root / "kept")
    running.shutdown()
    running.server_close()


def exchange(port, data, half_close=False, timeout=30):
    """Send raw bytes on a new connection and read until the server closes it.

    Returns (status, body: decoded JSON, or text), or (None, why) when the connection
    ended without an HTTP answer.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        connection.sendall(data)
        if half_close:
            connection.shutdown(socket.SHUT_WR)
        received = b""
        try:
            while chunk := connection.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
    head, _, body = received.partition(b"\r\n\r\n")
    status = re.match(rb"HTTP/1\.[01] (\d{3}) ", head)
    if status is None:
        return None, f"no HTTP answer: {received[:200]!r}"
    try:
        return int(status[1]), json.loads(body)
    except ValueError:
        return int(status[1]), body.decode("utf-8", "replace")


def http(explorer, method, path, body=None, **headers):
    """(status, answer) of one request as the page sends it; a header given as None is left out."""
    data = body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
    sent = {"Host": f"127.0.0.1:{explorer.port}", "X-Explorer-Token": explorer.token,
            "Content-Type": "application/json", "Content-Length": str(len(data)),
            **{name.replace("_", "-"): value for name, value in headers.items()}}
    lines = [f"{method} {path} HTTP/1.1"] + [f"{name}: {value}" for name, value in sent.items() if value is not None]
    return exchange(explorer.port, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data)


def new_sound(explorer, **request):
    status, sound = http(explorer, "POST", "/api/sound", request)
    assert status == 200, sound
    return sound


def kept_files(explorer):
    return sorted(path.name for path in explorer.kept.glob("*")) if explorer.kept.exists() else []


# 1. Only the explorer's own page, opened at the printed address, can use it.

@pytest.mark.slow
def test_a_request_naming_another_host_is_refused_as_a_rebound_dns_name_would_be(explorer):
    port = explorer.port
    for host in (f"evil.example:{port}", f"127.0.0.1:{port + 1}", "127.0.0.1", None):
        for path in ("/", "/api/model"):
            status, answer = http(explorer, "GET", path, Host=host)
            assert status == 403, (host, path, answer)
            assert answer["error"] == f"Host must be 127.0.0.1:{port} or localhost:{port}, got {host!r}"
    assert http(explorer, "GET", "/api/model", Host=f"localhost:{port}")[0] == 200
    assert http(explorer, "GET", "/api/model")[0] == 200


@pytest.mark.slow
def test_a_request_from_another_page_is_refused(explorer):
    for origin in ("http://evil.example", f"http://evil.example:{explorer.port}", "null",
                   f"https://127.0.0.1:{explorer.port}"):
        status, answer = http(explorer, "POST", "/api/sound", {"seed": 1}, Origin=origin)
        assert status == 403 and answer["error"] == f"requests from other pages are refused (Origin {origin!r})"
    for origin in (f"http://127.0.0.1:{explorer.port}", f"http://localhost:{explorer.port}"):
        assert http(explorer, "POST", "/api/sound", {"seed": 1}, Origin=origin)[0] == 200


@pytest.mark.slow
def test_every_api_call_needs_this_runs_token_and_the_page_itself_does_not(explorer):
    for method, path, body in (("GET", "/api/model", None), ("POST", "/api/sound", {"seed": 1}),
                               ("POST", "/api/export", {}), ("POST", "/api/nothing", {})):
        status, answer = http(explorer, method, path, body, X_Explorer_Token=None)
        assert status == 403 and answer["error"].startswith("no X-Explorer-Token header: open the address the "
                                                            "server printed (it ends in /?token=...)"), answer
        for wrong in (new_token(), explorer.token[:-1], explorer.token + "x", "", "é" * 43):
            status, answer = http(explorer, method, path, body, X_Explorer_Token=wrong)
            assert status == 403 and answer["error"].startswith("wrong X-Explorer-Token"), (wrong, answer)
    status, page = http(explorer, "GET", "/?token=anything", X_Explorer_Token=None)
    assert status == 200 and "<script>" in page


def test_each_run_makes_a_new_random_token():
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100 and all(re.fullmatch(r"[\w-]{43}", token) for token in tokens)


@pytest.mark.slow
def test_an_api_post_must_say_json_so_a_plain_form_or_fetch_from_elsewhere_cannot_send_it(explorer):
    sound = new_sound(explorer, seed=2)
    before = kept_files(explorer)
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
        status, answer = http(explorer, "POST", "/api/keep", {"id": sound["id"]}, Content_Type=content_type)
        assert status == 415 and answer["error"] == f"Content-Type must be application/json, got {content_type!r}"
    assert kept_files(explorer) == before  # refused before anything was done
    status, kept = http(explorer, "POST", "/api/keep", {"id": sound["id"]}, Content_Type="application/json; charset=utf-8")
    assert status == 200 and kept["kept"] in kept_files(explorer)


@pytest.mark.slow
def test_the_page_says_the_token_is_missing_when_opened_without_it(explorer, tmp_path, chromium):
    with Browser(chromium, tmp_path / "profile") as browser:  # real-time waits: a busy machine is only slower
        browser.open(f"http://127.0.0.1:{explorer.port}/")
        status = browser.wait_for("document.getElementById('status').classList.contains('error') && "
                                  "document.getElementById('status').textContent", 120)
    assert status == "no X-Explorer-Token header: open the address the server printed (it ends in /?token=...)"


# 2. A slow client cannot hold a thread for ever, nor can many clients take every thread.

@pytest.mark.slow
def test_a_client_dripping_its_request_a_byte_at_a_time_is_cut_off_and_others_are_still_served(explorer):
    request = (f"POST /api/sound HTTP/1.1\r\nHost: 127.0.0.1:{explorer.port}\r\nX-Explorer-Token: {explorer.token}\r\n"
               "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}").encode()
    answer, started = b"", time.monotonic()
    with socket.create_connection(("127.0.0.1", explorer.port), timeout=10) as drip:
        for index in range(len(request)):  # 0.3 s a byte: every read is quick, the request never ends
            if time.monotonic() - started > 5 * REQUEST_SECONDS:
                break
            try:
                drip.sendall(request[index:index + 1])
            except OSError:
                break
            if index == 1:  # while it drips, another client is served
                assert http(explorer, "GET", "/api/model")[0] == 200
            drip.settimeout(0.3)
            try:
                answer = drip.recv(65536)
                break
            except TimeoutError:
                continue
        cut_after = time.monotonic() - started
        drip.settimeout(5)
        while answer and (more := drip.recv(65536)):
            answer += more
    assert answer.startswith(b"HTTP/1.0 408 Request Timeout\r\n"), answer
    assert json.loads(answer.partition(b"\r\n\r\n")[2]) == {"error": "the request took longer than 1 s to arrive"}
    assert REQUEST_SECONDS - 0.1 < cut_after < REQUEST_SECONDS + 1.5
    assert http(explorer, "GET", "/api/model")[0] == 200


@pytest.mark.slow
def test_a_connection_over_the_cap_is_answered_503_at_once_and_the_slots_come_back(explorer):
    idle = [socket.create_connection(("127.0.0.1", explorer.port)) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.2)  # accepted, each holding a thread until REQUEST_SECONDS
        started = time.monotonic()
        status, answer = http(explorer, "GET", "/api/model")
        assert status == 503 and answer["error"] == f"too many connections at once (at most {MAX_CONNECTIONS}): try again"
        assert time.monotonic() - started < 0.5
    finally:
        for connection in idle:
            connection.close()
    deadline = time.monotonic() + 3 * REQUEST_SECONDS
    while (status := http(explorer, "GET", "/api/model")[0]) == 503 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert status == 200


@pytest.mark.slow
def test_idle_connections_are_closed_after_the_request_time_so_they_cannot_hold_the_slots(explorer):
    idle = [socket.create_connection(("127.0.0.1", explorer.port), timeout=10) for _ in range(MAX_CONNECTIONS)]
    time.sleep(REQUEST_SECONDS + LINGER_SECONDS + 0.5)  # the answer (408), then a short wait for the client to close
    assert http(explorer, "GET", "/api/model")[0] == 200
    for connection in idle:
        assert connection.recv(65536).startswith(b"HTTP/1.0 408 Request Timeout")
        connection.close()


# 3. Requests that once got no answer at all (a dropped connection and a traceback).

@pytest.mark.slow
@pytest.mark.parametrize("path, body, message", [
    ("/api/sound", b'{"mode": "variation", "of": []}', "of: no recent sound [] (make one first)"),
    ("/api/sound", b'{"mode": "morph", "a": {"x": 1}, "b": "s1"}', "a: no recent sound {'x': 1} (make one first)"),
    ("/api/keep", b'{"id": {}}', "id: no recent sound {} (make one first)"),
    ("/api/keep", b'{"id": "s1", "name": ["a"]}', "name must be text, got ['a']"),
    ("/api/sound", b"[" * 4096, "the body nests deeper than 8 levels"),
    ("/api/sound", b'{"a":' * 819, "the body nests deeper than 8 levels"),
    ("/api/sound", b'{"knobs": ' * 9 + b"{}" + b"}" * 9, "the body nests deeper than 8 levels"),
    ("/api/sound", b'{"class": ["snare"]}', "unknown class ['snare']"),
    ("/api/sound", b'{"seed": 1e999}', "the body is not JSON (numbers must be finite, got 1e999)"),
    ("/api/sound", b'{"seed": NaN}', "the body is not JSON (numbers must be finite, got NaN)"),
    ("/api/sound", b'{"seed": 1' + b"0" * 4000 + b"}", "seed must be a number from 0 to 2147483648, got 1000000"),
    ("/api/sound", b'{"seed": 1, "colour": "red"}', "unknown field 'colour'; this request takes mode, class"),
])
def test_requests_that_once_dropped_the_connection_get_a_400_with_the_reason(explorer, path, body, message):
    status, answer = http(explorer, "POST", path, body)
    assert status == 400 and answer["error"].startswith(message), answer
    assert http(explorer, "POST", "/api/sound", {"seed": 1})[0] == 200  # and it goes on serving


@pytest.mark.slow
def test_a_kept_sound_gets_a_safe_file_name_whatever_name_it_is_given(explorer):
    sound = new_sound(explorer, seed=3)
    # Text UTF-8 cannot hold is written as the bytes it stands for (\xNN), as preprocess.py names such files.
    for name, kept in (("\ud800", "xed_xa0_x80.wav"), ("\udcff", "xff.wav"), ("a\u0000b", "a_b.wav"),
                       ("../..", "clip.wav"), ("é" * 100, "é" * 80 + ".wav")):
        status, answer = http(explorer, "POST", "/api/keep", {"id": sound["id"], "name": name})
        assert status == 200 and answer["kept"] == kept, (name, answer)
        assert (explorer.kept / kept).is_file()


@pytest.mark.slow
def test_the_http_layers_own_errors_are_json_too(explorer):
    assert http(explorer, "PUT", "/api/sound", {}) == (501, {"error": "Unsupported method ('PUT')"})
    status, answer = exchange(explorer.port, b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n")
    assert status == 414 and answer == {"error": "Request-URI Too Long"}


@pytest.mark.slow
def test_a_damaged_class_file_in_the_keep_folder_does_not_break_export(explorer):
    names = []
    for seed, damage in ((11, b"{not json"), (12, b"[1, 2]"), (13, b'{"class": 7}'), (14, None)):
        sound = new_sound(explorer, seed=seed, **{"class": "kick"})
        status, kept = http(explorer, "POST", "/api/keep", {"id": sound["id"], "name": f"damaged_{seed}"})
        assert status == 200
        names.append(kept["kept"])
        if damage is not None:
            (explorer.kept / kept["kept"]).with_suffix(".json").write_bytes(damage)
    status, pack = http(explorer, "POST", "/api/export", {})
    assert status == 200, pack
    reasons = {item["file"]: item["reason"] for item in pack["unclassed"]}
    assert reasons["damaged_11.wav"].startswith("damaged_11.json is damaged (JSONDecodeError: ")
    assert reasons["damaged_12.wav"].startswith("damaged_12.json is damaged (TypeError: ")
    assert reasons["damaged_13.wav"] == "damaged_13.json is damaged (class 7 is not text)"
    assert "damaged_14.wav" not in reasons  # its class file is whole: a kick
    assert pack["sounds"] == len(list(explorer.kept.glob("*.wav")))
    sfz = Path(pack["sfz"]).read_text()
    assert "kick_" in sfz and "sound_" in sfz  # the damaged ones go in without their class


def test_nesting_is_measured_outside_strings_without_parsing():
    assert nesting(b'{"a": [1, {"b": "[[[{{{"}], "c": "\\\\", "d": "\\"[["}') == 3
    assert nesting(b"[" * 100_000) == 100_000 and nesting(b'"[[[') == 0 and nesting(b"") == 0


# 4. Whatever comes in gets an HTTP answer, never a 5xx, and the server goes on.

def fuzz_requests(rng, ids, count, port, token):
    """``count`` (path, raw request bytes, half-close?) from a seeded generator: random JSON, the right fields
    with wrong types, deep nesting, huge and non-finite numbers, binary, bodies cut short."""
    fields = ["mode", "class", "seed", "temperature", "knobs", "directions", "spread", "of", "a", "b", "t",
              "id", "name", "text", "bpm", "swing", "accent_db", "bars", "rows", "audio", "steps",
              "brightness", "length", "attack", "pitch", "direction_1", "", "__proto__"]
    right = len(fields) - 7  # the fields of some API call
    scalars = [None, True, False, 0, -1, 1, 2 ** 31, 2 ** 63, -2 ** 80, 0.5, -0.0, 3.0, -3.0, 1e308, 5e-324,
               "", "new", "variation", "morph", "kick", "snare", "s0", "s1", "../../x", "\u0000", "\ud800",
               "é" * 50, "x" * 300, "short bright snare", "very", "bass drum", 60, 200, 75, 12, 16, "AAAAAA==",
               [0] * 16, [2] * 16, *ids]

    def value(depth=0):
        kind = rng.random()
        if depth < 4 and kind < 0.2:
            return [value(depth + 1) for _ in range(rng.randrange(4))]
        if depth < 4 and kind < 0.45:
            return {rng.choice(fields): value(depth + 1) for _ in range(rng.randrange(5))}
        return rng.choice(scalars)

    def body():
        kind = rng.randrange(9)
        if kind == 0:
            return json.dumps(value()).encode()
        if kind in (1, 2, 3):  # the right fields, random values
            return json.dumps({rng.choice(fields[:right]): value(1) for _ in range(rng.randrange(1, 5))}).encode()
        if kind == 4:
            opener = rng.choice([b"[", b'{"a":', b'{"knobs":', b"[{}, "])
            return opener * rng.randrange(5, 1000)
        if kind == 5:
            number = rng.choice([b"1e999", b"-1e999", b"NaN", b"Infinity", b"-Infinity", b"1" * 4000, b"1e-999"])
            return b'{"' + rng.choice(fields[:right]).encode() + b'": ' + number + b"}"
        if kind == 6:
            return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
        if kind == 7:
            whole = json.dumps({"mode": "variation", "of": rng.choice(ids), "knobs": {"pitch": 1.5}}).encode()
            return whole[:rng.randrange(len(whole))]
        return rng.choice([b"", b"{}", b"null", b"[]", b'"x"', b"0", b"\xef\xbb\xbf{}", b"{}" * 3, b"\x00" * 10])

    paths = ["/api/sound", "/api/keep", "/api/export", "/api/model", "/api/describe", "/api/bounce"]
    for index in range(count):
        path, data = paths[index % len(paths)], body()
        cut = index % 20 == 7  # says more bytes than it sends, then stops sending
        length = str(len(data) + rng.randrange(1, 100)) if cut else str(len(data))
        if index % 50 == 3:
            length = rng.choice(["-1", "abc", "1e3", "99999999999999999999", " ", "4097"])
        method = "GET" if path == "/api/model" and index % 8 == 3 else "POST"
        yield path, (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Explorer-Token: {token}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n").encode() + data, cut


@pytest.mark.slow
def test_fuzz_every_api_path_answers_every_body_and_never_with_a_5xx(explorer):
    ids = [new_sound(explorer, seed=seed)["id"] for seed in range(3)]
    started, answered, statuses = time.monotonic(), 0, {}
    for path, data, cut in fuzz_requests(random.Random(22), ids, 1200, explorer.port, explorer.token):
        status, answer = exchange(explorer.port, data, half_close=cut)
        assert status is not None and status < 500, (path, data[-300:], answer)
        assert status == 200 or "error" in answer, (path, data[-300:], answer)
        statuses[status] = statuses.get(status, 0) + 1
        answered += 1
    seconds = time.monotonic() - started
    print(f"fuzz: {answered} requests answered in {seconds:.1f} s, by status: {dict(sorted(statuses.items()))}")
    assert answered >= 1000 and {200, 400} <= set(statuses)
    assert http(explorer, "POST", "/api/sound", {"seed": 1})[0] == 200


# 5. A kept WAV is written whole under a temporary name, then renamed.

@pytest.mark.slow
def test_a_kept_wav_appears_in_one_step_from_a_whole_temporary_file_beside_it(explorer, monkeypatch):
    sound = new_sound(explorer, seed=21)
    renamed = []
    real_replace = os.replace

    def watched_replace(source, target):
        target = Path(target)
        if target.suffix == ".wav":  # what is about to appear is already a whole WAV, next to where it goes
            renamed.append((Path(source).parent == target.parent, target.exists(), sf.info(source).frames > 0))
        return real_replace(source, target)

    monkeypatch.setattr(os, "replace", watched_replace)
    status, kept = http(explorer, "POST", "/api/keep", {"id": sound["id"], "name": "atomic"})
    assert status == 200 and kept["kept"] == "atomic.wav"
    assert renamed == [(True, False, True)]
    assert kept_files(explorer).count("atomic.wav") == 1 and not [name for name in kept_files(explorer) if ".tmp" in name]


@pytest.mark.slow
def test_a_keep_that_fails_while_writing_leaves_no_file_behind_and_says_why(explorer, monkeypatch):
    sound = new_sound(explorer, seed=22)
    before = kept_files(explorer)

    def full_disk(descriptor):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full_disk)
    status, answer = http(explorer, "POST", "/api/keep", {"id": sound["id"], "name": "no_room"})
    assert status == 500 and answer["error"] == "the server failed: OSError: [Errno 28] No space left on device"
    assert kept_files(explorer) == before  # no half file, no temporary file
    monkeypatch.undo()
    status, kept = http(explorer, "POST", "/api/keep", {"id": sound["id"], "name": "no_room"})
    assert status == 200 and sf.info(explorer.kept / kept["kept"]).frames > 0
