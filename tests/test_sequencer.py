"""The explorer's step sequencer in a real browser (headless Chromium): rendered onsets, bounces, MIDI files,
sounds replaced while the loop plays, MIDI pads, a reload, and descriptions in the text box."""

import base64
import http.client
import io
import json
import urllib.error
import urllib.request

import mido
import numpy as np
import pytest
import soundfile as sf

from browser import Browser
from soundkit.pattern import loop_samples, step_seconds

PACK_KEYS = {"clap": 39, "hihat": 42, "kick": 36, "snare": 38, "tom": 45}  # README, "Sample pack"
ONSET_TOLERANCE = 0.001   # seconds
SEARCH = 0.01             # seconds either side of a step time where its sound is looked for
# Taps the sequencer's output while it plays live (a test-only recorder): blocks of samples with their time on
# the audio clock, so that a block the busy main thread missed leaves a gap, not a shift.
RECORDER = """window.recorded = []; window.recorder = sequencer.context.createScriptProcessor(1024, 1, 1);
recorder.onaudioprocess = (event) => recorded.push([event.playbackTime, Array.from(event.inputBuffer.getChannelData(0))]);
sequencer.output.connect(recorder); recorder.connect(sequencer.context.destination);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const until = async (time) => { while (sequencer.context.currentTime < time) await sleep(10); };"""


@pytest.fixture(scope="module")
def server(labelled_project, tmp_path_factory):
    from conftest import running_explorer

    with running_explorer(labelled_project[0], tmp_path_factory, "sequencer", "--griffin_lim_iterations=4") as running:
        yield running[:3]


def open_page(server, chromium, profile, before_load=None):
    """A browser on the explorer's page, once the sequencer has its rows (one per class, the first beat)."""
    base, token, _ = server
    browser = Browser(chromium, profile)
    if before_load:
        browser.command("Page.addScriptToEvaluateOnNewDocument", session=True, source=before_load)
    browser.open(f"{base}/?token={token}")
    browser.wait_for("typeof sequencer !== 'undefined' && sequencer.ready === true", 120)
    return browser


@pytest.fixture
def page(server, chromium, tmp_path):
    browser = open_page(server, chromium, tmp_path / "profile")
    yield browser
    browser.close()


def audio_of(wav_base64):
    return sf.read(io.BytesIO(base64.b64decode(wav_base64)))[0]


def timeline(blocks, rate):
    """The recorded blocks laid on the audio clock from the first one's time: NaN where a block is missing."""
    first = blocks[0][0]
    length = int(round((blocks[-1][0] - first) * rate)) + len(blocks[-1][1])
    signal = np.full(length, np.nan)
    for time, samples in blocks:
        start = int(round((time - first) * rate))
        signal[start:start + len(samples)] = samples
    return signal


def find_sound(signal, sound, around, rate):
    """(seconds, gain) where ``sound`` best matches ``signal`` within SEARCH of ``around`` seconds; the gain is
    the RMS there over the sound's, over its first 50 ms (a start between two samples blurs a sample-wise ratio)."""
    window = sound[:min(len(sound), int(0.05 * rate))]
    centre, reach = int(round(around * rate)), int(SEARCH * rate)
    lags = range(max(0, centre - reach), min(len(signal) - len(window), centre + reach) + 1)
    scores = [np.dot(signal[lag:lag + len(window)], window) for lag in lags]
    lag = lags[int(np.argmax(scores))]
    return lag / rate, np.linalg.norm(signal[lag:lag + len(window)]) / np.linalg.norm(window)


ONE_ROW = """(() => { const kick = sequencer.rows.find((row) => row.sound.class === "kick");
sequencer.rows = [kick]; kick.steps = %s; sequencer.set(%s); sequencer.draw(); return kick.sound.wav; })()"""


@pytest.mark.slow
@pytest.mark.parametrize("bpm, swing", [(90, 50), (180, 50), (120, 66)])
def test_the_rendered_pattern_sounds_each_step_within_1_ms_and_accents_louder_by_the_set_amount(
        server, page, bpm, swing):
    """One row (the kick) on steps 0, 5 and 10 of two bars, accented on 0 and 10 (5 is a swung step), so that
    no hit overlaps the next (a kick of the tiny model lasts at most 0.3 s); bounced, and the kick looked for
    around each step time in the WAV."""
    _, _, root = server
    hits = (0, 5, 10)
    steps = [0] * 16
    steps[0], steps[5], steps[10] = 2, 1, 2
    accent_db = 7.5
    kick = audio_of(page.evaluate(ONE_ROW % (steps, json.dumps({"bpm": bpm, "swing": swing, "accent_db": accent_db,
                                                                   "bars": 2}))))
    reply = page.evaluate("sequencer.bounce()")
    signal, rate = sf.read(root / "kept" / "loops" / reply["wav"])
    assert len(signal) == loop_samples(2, bpm, rate) and reply["turned_down_db"] == 0
    found = {}
    for bar in range(2):
        for step in hits:
            expected = bar * 4 * 60 / bpm + step_seconds(step, bpm, swing)
            onset, gain = find_sound(signal, kick, expected, rate)
            assert abs(onset - expected) <= ONSET_TOLERANCE, (bar, step, onset, expected)
            found[bar, step] = (onset, gain)
    worst = max(abs(onset - (bar * 4 * 60 / bpm + step_seconds(step, bpm, swing))) for (bar, step), (onset, _)
                in found.items())
    print(f"{bpm} BPM, swing {swing}%: the largest onset error of 6 is {1000 * worst:.3f} ms")
    accented = [found[bar, step][1] for bar in range(2) for step in (0, 10)]
    plain = [found[bar, 5][1] for bar in range(2)]
    assert 20 * np.log10(np.mean(accented) / np.mean(plain)) == pytest.approx(accent_db, abs=0.2)
    assert np.std(accented) / np.mean(accented) < 0.02 and np.std(plain) / np.mean(plain) < 0.02
    silent = np.ones(len(signal), bool)  # nothing sounds but the six hits
    for onset, _ in found.values():
        silent[int(onset * rate):int(onset * rate) + len(kick) + 2] = False
    assert np.max(np.abs(signal[silent])) < 1e-4


@pytest.mark.slow
def test_a_bounce_is_a_24_bit_wav_of_the_bars_and_a_midi_file_of_the_pattern_on_the_packs_keys(server, page):
    _, _, root = server
    rows = page.evaluate("sequencer.set({bpm: 100, swing: 60, accent_db: 9, bars: 3}); "
                         "sequencer.rows.map((row) => [row.sound.class, row.steps])")
    assert sorted(label for label, _ in rows) == sorted(PACK_KEYS)  # a row per class, each with the first beat
    reply = page.evaluate("sequencer.bounce('groove')")
    assert (reply["wav"], reply["midi"]) == ("groove.wav", "groove.mid")
    wav = root / "kept" / "loops" / "groove.wav"
    info = sf.info(wav)
    assert (info.subtype, info.samplerate, info.channels) == ("PCM_24", 8000, 1)
    assert info.frames == round(3 * 4 * 60 / 100 * 8000) == 57600
    song = mido.MidiFile(root / "kept" / "loops" / "groove.mid")
    assert song.ticks_per_beat == 960 and song.length == pytest.approx(3 * 4 * 60 / 100, abs=1e-4)
    now, notes = 0.0, []
    for message in song:
        now += message.time
        if message.type == "note_on":
            notes.append((now, message.note, message.velocity, message.channel))
    plain = round(127 * 10 ** (-9 / 40))  # 76: a velocity that plays 9 dB below 127 ((v / 127) ** 2)
    expected = sorted((bar * 2.4 + step_seconds(step, 100, 60), PACK_KEYS[label], 127 if value == 2 else plain)
                      for bar in range(3) for label, steps in rows for step, value in enumerate(steps) if value)
    assert len(notes) == len(expected) == 3 * 16  # the first beat: 3 kicks, 2 snares, 2 claps, 8 hats, 1 tom a bar
    assert [(key, velocity, channel) for _, key, velocity, channel in notes] == [(k, v, 9) for _, k, v in expected]
    assert max(abs(note[0] - want[0]) for note, want in zip(notes, expected)) < ONSET_TOLERANCE
    again = page.evaluate("sequencer.bounce('groove')")
    assert (again["wav"], again["midi"]) == ("groove_2.wav", "groove_2.mid")  # never overwritten


@pytest.mark.slow
def test_a_row_replaced_while_the_loop_plays_sounds_new_from_the_next_pass(page):
    """The kick row on every beat at 120 BPM (a pass is 2 s), played live and recorded; 0.7 s into the first
    pass its sound is replaced by a hi-hat: the rest of that pass keeps the kick, the next passes have the hat."""
    page.evaluate(ONE_ROW % ([1, 0, 0, 0] * 4, json.dumps({"bpm": 120, "swing": 50, "accent_db": 0})))
    result = page.evaluate("(async () => {" + RECORDER + """
        const row = sequencer.rows[0], old = row.sound;
        sequencer.play();
        const start = sequencer.pass.start;
        await until(start + 0.7);
        const replacement = await call("/api/sound", { class: "hihat", seed: 11 });
        await sequencer.replace(row, replacement);
        const replacedAt = sequencer.context.currentTime;
        await until(start + 3 * 2.0 + 0.3);
        sequencer.stop(); recorder.disconnect();
        return { old: old.wav, fresh: replacement.wav, ids: [old.id, replacement.id], replacedAt, start,
                 rate: sequencer.context.sampleRate, log: sequencer.log, recorded };
    })()""", timeout=120)
    assert result["start"] + 0.5 < result["replacedAt"] < result["start"] + 1.0  # after the 2nd beat of pass 0
    by_pass = {}
    for note in result["log"]:
        by_pass.setdefault(note["pass"], []).append(note["sound"])
    old_id, new_id = result["ids"]
    assert by_pass[0] == [old_id] * 4 and by_pass[1] == by_pass[2] == [new_id] * 4
    assert not any(note["late"] for note in result["log"])
    # What was heard: each beat is the kick, then the hat, where the log says, on the beat.
    rate = result["rate"]
    recorded = timeline(result["recorded"], rate)
    sounds = {"old": audio_of(result["old"]), "new": audio_of(result["fresh"])}
    first = np.flatnonzero(np.nan_to_num(np.abs(recorded)) > 0.05)[0] / rate  # the first beat's attack
    heard, onsets = {}, {}
    for beat in range(12):
        around = first + beat * 0.5
        if np.isnan(recorded[int((around - SEARCH) * rate):int((around + 0.05 + SEARCH) * rate) + 1]).any():
            continue  # a block the page's busy main thread never saw
        scores = {}
        for name, sound in sounds.items():
            onset, _ = find_sound(recorded, sound, around, rate)
            window = sound[:int(0.05 * rate)]
            segment = recorded[int(round(onset * rate)):int(round(onset * rate)) + len(window)]
            scores[name] = (np.dot(segment, window) / np.linalg.norm(segment) / np.linalg.norm(window), onset)
        heard[beat] = max(scores, key=lambda name: scores[name][0])
        onsets[beat] = scores[heard[beat]][1]
    assert len([b for b in heard if b < 4]) >= 3 and len([b for b in heard if b >= 4]) >= 6, sorted(heard)
    assert heard == {beat: "old" if beat < 4 else "new" for beat in heard}
    # Live, as offline: every beat on time; the new sound starts its pass exactly where the old one would have.
    steps = [onsets[b + 1] - onsets[b] for b in range(11) if b in onsets and b + 1 in onsets]
    assert len(steps) >= 6 and np.max(np.abs(np.array(steps) - 0.5)) <= ONSET_TOLERANCE


@pytest.mark.slow
def test_a_midi_note_on_plays_the_row_on_its_key_at_a_level_set_by_its_velocity(page):
    notes = page.evaluate("(async () => {" + RECORDER + """
        const notes = [sequencer.pad([0x99, 36, 127])];
        await sleep(500);
        notes.push(sequencer.pad([0x90, 36, 64]), sequencer.pad([0x99, 38, 0]), sequencer.pad([0x89, 38, 90]),
                   sequencer.pad([0x99, 50, 100]));
        await sleep(600);
        recorder.disconnect();
        const kick = sequencer.rows.findIndex((row) => row.sound.class === "kick");
        return { notes, kick, recorded, rate: sequencer.context.sampleRate };
    })()""")
    first, second, *ignored = notes["notes"]
    assert ignored == [None, None, None]  # a note-on at velocity 0, a note-off, a key no row is on
    assert (first["pad"], first["row"], first["level"]) == (36, notes["kick"], 1.0)
    assert (second["pad"], second["row"]) == (36, notes["kick"]) and second["level"] == pytest.approx((64 / 127) ** 2)
    rate = notes["rate"]
    recorded = np.nan_to_num(np.abs(timeline(notes["recorded"], rate)))
    gap = int((second["time"] - first["time"]) * rate)
    start = np.flatnonzero(recorded > 0.01)[0]
    peaks = recorded[start:start + gap - 100].max(), recorded[start + gap - 100:].max()
    assert 20 * np.log10(peaks[1] / peaks[0]) == pytest.approx(40 * np.log10(64 / 127), abs=0.5)  # -11.9 dB


@pytest.mark.slow
def test_without_web_midi_the_page_says_so_and_still_plays_and_bounces(server, chromium, tmp_path):
    browser = open_page(server, chromium, tmp_path / "profile", before_load="delete Navigator.prototype.requestMIDIAccess;")
    try:
        text = browser.wait_for("sequencer.midi")
        assert text == "MIDI pads: this browser offers no Web MIDI; everything else works."
        assert browser.evaluate("document.getElementById('seq-midi').textContent") == text
        assert browser.evaluate("sequencer.set({bars: 1}); sequencer.bounce().then((reply) => reply.samples)") == \
            loop_samples(1, 120, 8000)
    finally:
        browser.close()


@pytest.mark.slow
def test_the_pattern_and_the_row_sounds_survive_a_reload(server, chromium, tmp_path):
    """Set with the page's own controls: a tempo, a step clicked twice (accent), the second row ticked and a new
    sound made above (it goes to that row). The same profile opened again has all of it."""
    state = ("JSON.stringify({settings: sequencer.settings, rows: sequencer.rows.map((row) => "
             "[row.steps, row.sound.id, row.sound.class, row.sound.wav])})")
    browser = open_page(server, chromium, tmp_path / "profile")
    try:
        before = json.loads(browser.evaluate("""(async () => {
            const set = (id, value) => { const input = document.getElementById(id); input.value = value;
                                         input.dispatchEvent(new Event("change")); };
            set("seq-bpm", "97"); set("seq-swing", "62"); set("seq-accent_db", "4.5"); set("seq-bars", "3");
            const cell = () => document.querySelector('.seq-row .step[data-step="3"]');
            cell().click(); cell().click();
            document.querySelectorAll(".seq-row input[type=checkbox]")[1].click();
            document.getElementById("new").click();
            const old = sequencer.rows[1].sound.id;
            while (sequencer.rows[1].sound.id === old) await new Promise((resolve) => setTimeout(resolve, 20));
            return %s; })()""" % state))
    finally:
        browser.close()
    assert before["settings"] == {"bpm": 97, "swing": 62, "accent_db": 4.5, "bars": 3}
    assert before["rows"][0][0][3] == 2
    browser = open_page(server, chromium, tmp_path / "profile")
    try:
        after = json.loads(browser.evaluate(state))
        assert browser.evaluate("document.getElementById('seq-bpm').value") == "97"
    finally:
        browser.close()
    assert after == before


@pytest.mark.slow
def test_a_description_in_the_text_box_sets_the_class_and_knobs_and_an_unknown_word_is_named(page):
    ask = """(async (text) => { const box = document.getElementById("describe"); box.value = text;
        box.dispatchEvent(new Event("change")); await describe();
        const knobs = Object.fromEntries(window.model.knobs.map((name) => [name, document.getElementById(name).value]));
        return { said: document.getElementById("described").textContent, error: document.getElementById("described").className,
                 class: document.getElementById("class").value, knobs, status: document.getElementById("status").textContent };
    })(%s)"""
    chosen = page.evaluate(ask % json.dumps("very short, bright snare"))
    assert chosen["said"] == "--label=snare --brightness=1 --length=-2" and chosen["error"] == ""
    assert chosen["class"] == "snare" and chosen["knobs"] == {"brightness": "1", "length": "-2", "attack": "0", "pitch": "0"}
    assert chosen["status"].startswith("snare s")  # and it played
    refused = page.evaluate(ask % json.dumps("short fat snare"))
    assert refused["error"] == "error" and "unknown word 'fat'" in refused["said"]
    assert (refused["class"], refused["knobs"]) == (chosen["class"], chosen["knobs"])  # nothing changed


def post(server, path, body):
    """(status, JSON answer) of a POST as the page sends it."""
    base, token, _ = server
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    call = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json",
                                                                   "X-Explorer-Token": token})
    try:
        with urllib.request.urlopen(call, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def announce(server, path, length):
    """(status, JSON answer) of a POST that says it holds ``length`` bytes and sends none: refused before reading."""
    base, token, _ = server
    connection = http.client.HTTPConnection(base.removeprefix("http://"), timeout=30)
    connection.putrequest("POST", path)
    for name, value in (("Content-Type", "application/json"), ("X-Explorer-Token", token),
                        ("Content-Length", str(length))):
        connection.putheader(name, value)
    connection.endheaders()
    response = connection.getresponse()
    answer = response.status, json.loads(response.read())
    connection.close()
    return answer


@pytest.mark.slow
def test_bad_bounces_and_descriptions_get_a_clear_error(server):
    silence = base64.b64encode(np.zeros(loop_samples(1, 120, 8000), "<f4").tobytes()).decode()
    good = {"bpm": 120, "swing": 50, "accent_db": 6, "bars": 1, "rows": [{"class": "kick", "steps": [1] * 16}],
            "audio": silence}
    assert post(server, "/api/bounce", good)[0] == 200
    cases = [
        (post(server, "/api/bounce", {**good, "bars": 2}), 400, "audio must hold 32000 samples (the bars at this tempo"),
        (post(server, "/api/bounce", {**good, "rows": [{"class": "cowbell", "steps": [0] * 16}]}), 400,
         "row 0: unknown class 'cowbell'; this model knows: clap, hihat, kick, snare, tom"),
        (post(server, "/api/bounce", {**good, "bpm": 250}), 400, "bpm must be a whole number from 60 to 200"),
        (post(server, "/api/bounce", {**good, "tempo": 1}), 400, "unknown field 'tempo'"),
        (announce(server, "/api/bounce", (16 << 20) + 1), 413, "at most 16777216 bytes"),
        (post(server, "/api/sound", b" " * 4097), 413, "at most 4096 bytes"),  # other calls keep their limit
        (post(server, "/api/describe", {"text": "short fat snare"}), 400, "cannot read 'short fat snare': unknown word 'fat'"),
        (post(server, "/api/describe", {"text": 5}), 400, "text must be a description of at most 200 characters"),
    ]
    for (status, body), expected_status, message in cases:
        assert status == expected_status and message in body["error"], (status, body)
    assert post(server, "/api/describe", {"text": "dark kick"}) == (200, {
        "class": "kick", "knobs": {"brightness": -1.0, "length": 0.0, "attack": 0.0, "pitch": 0.0},
        "settings": "--label=kick --brightness=-1"})


@pytest.mark.slow
def test_the_sequencer_script_is_served_from_the_explorer_and_loads_nothing_from_elsewhere(server):
    base, token, _ = server
    with urllib.request.urlopen(f"{base}/sequencer.js", timeout=30) as response:
        script, kind = response.read().decode(), response.headers["Content-Type"]
    with urllib.request.urlopen(f"{base}/?token={token}", timeout=30) as response:
        policy, page_html = response.headers["Content-Security-Policy"], response.read().decode()
    assert kind == "text/javascript; charset=utf-8" and "class Sequencer" in script
    assert "script-src 'self' 'unsafe-inline'" in policy and "connect-src 'self'" in policy
    assert '<script src="/sequencer.js"></script>' in page_html
    assert "http:" not in script and "https:" not in script and "//cdn" not in script and "import(" not in script
