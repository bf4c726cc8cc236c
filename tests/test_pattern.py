"""The sequencer's pattern: step times with swing, levels, the checks of what the page sends, the MIDI file."""

import base64
import io

import mido
import numpy as np
import pytest

from soundkit.pattern import (ACCENT, DRUM_CHANNEL, STEPS, TICKS_PER_QUARTER, Pattern, loop_samples, midi_file,
                              plain_level, read_audio, read_pattern, step_seconds, velocity)

KICK_AND_HAT = (("kick", (2, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 1)),
                ("hihat", (0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1)))
KEYS = {"kick": 36, "hihat": 42}


def test_straight_steps_are_sixteenths_and_swing_delays_every_second_one():
    assert [step_seconds(step, 120, 50) for step in (0, 1, 4, 15)] == [0.0, 0.125, 0.5, 1.875]
    assert step_seconds(1, 120, 75) == pytest.approx(0.1875)         # 75%: three quarters of the pair
    assert step_seconds(3, 90, 66) == pytest.approx(3 / 6 + 0.32 / 6)  # a sixteenth at 90 BPM is 1/6 s
    assert step_seconds(2, 90, 66) == pytest.approx(2 / 6)           # on-beat sixteenths never move


def test_a_loop_lasts_bars_times_4_beats_times_60_over_bpm():
    assert loop_samples(2, 120, 44100) == 176400
    assert loop_samples(3, 70, 8000) == 82286  # 10.2857 s


def test_a_plain_step_is_accent_db_below_an_accented_one_and_its_velocity_plays_at_that_level():
    assert 20 * np.log10(plain_level(6.0)) == pytest.approx(-6.0)
    assert velocity(ACCENT, 6.0) == 127 and velocity(1, 6.0) == 90 and velocity(1, 0.0) == 127
    assert (velocity(1, 12.0) / 127) ** 2 == pytest.approx(plain_level(12.0), rel=0.03)


def test_the_midi_file_reads_back_with_mido_on_channel_10_at_the_steps_times():
    pattern = Pattern(bpm=90, swing=66.0, accent_db=6.0, bars=2, rows=KICK_AND_HAT)
    song = mido.MidiFile(file=io.BytesIO(midi_file(pattern, KEYS, "groove")))
    assert (song.type, song.ticks_per_beat, len(song.tracks)) == (0, TICKS_PER_QUARTER, 1)
    meta = {message.type: message for message in song.tracks[0] if message.is_meta}
    assert meta["set_tempo"].tempo == round(60e6 / 90) and meta["track_name"].name == "groove"
    assert (meta["time_signature"].numerator, meta["time_signature"].denominator) == (4, 4)
    assert song.length == pytest.approx(2 * 4 * 60 / 90, abs=1e-4)
    now, notes = 0.0, []
    for message in song:  # mido turns ticks into seconds with the file's tempo
        now += message.time
        if message.type == "note_on":
            notes.append((round(now, 6), message.note, message.velocity, message.channel))
    expected = sorted((bar * 8 / 3 + step_seconds(step, 90, 66), KEYS[label], velocity(value, 6.0))
                      for bar in range(2) for label, steps in KICK_AND_HAT for step, value in enumerate(steps) if value)
    assert [(note, level) for _, note, level, _ in notes] == [(key, level) for _, key, level in expected]
    assert np.max(np.abs(np.array([n[0] for n in notes]) - [e[0] for e in expected])) < 0.001  # within 1 ms
    assert {channel for *_, channel in notes} == {DRUM_CHANNEL} == {9}


def test_every_note_is_released_before_the_file_ends_and_offs_come_before_ons_at_a_tick():
    pattern = Pattern(bpm=200, swing=75.0, accent_db=0.0, bars=1, rows=(("kick", (1,) * STEPS),))
    track = mido.MidiFile(file=io.BytesIO(midi_file(pattern, KEYS))).tracks[0]
    tick, events = 0, []
    for message in track:
        tick += message.time
        events.append((tick, message.type))
    ons = [t for t, kind in events if kind == "note_on"]
    offs = [t for t, kind in events if kind == "note_off"]
    assert len(ons) == len(offs) == STEPS and events[-1] == (4 * TICKS_PER_QUARTER, "end_of_track")
    assert all(off > on for on, off in zip(ons, offs))
    for at in set(ons) & set(offs):
        kinds = [kind for t, kind in events if t == at]
        assert kinds.index("note_off") < kinds.index("note_on")


def request(**changes):
    body = {"bpm": 120, "swing": 50, "accent_db": 6, "bars": 2,
            "rows": [{"class": "kick", "steps": [1] + [0] * 15}, {"class": "", "steps": [2] * 16}]}
    return {**body, **changes}


def test_a_page_request_reads_as_a_pattern():
    pattern = read_pattern(request(), ["kick", "snare", ""])
    assert pattern == Pattern(120, 50.0, 6.0, 2, (("kick", (1,) + (0,) * 15), ("", (2,) * 16)))


@pytest.mark.parametrize("changes, message", [
    ({"bpm": 59}, "bpm must be a whole number from 60 to 200, got 59"),
    ({"bpm": 120.5}, "bpm must be a whole number from 60 to 200, got 120.5"),
    ({"swing": 80}, "swing must be a number from 50.0 to 75.0, got 80"),
    ({"accent_db": True}, "accent_db must be a number from 0.0 to 12.0, got True"),
    ({"bars": 9}, "bars must be a whole number from 1 to 8, got 9"),
    ({"rows": []}, "rows must be a list of 1 to 16 rows, got []"),
    ({"rows": [{"class": "cowbell", "steps": [0] * 16}]}, "row 0: unknown class 'cowbell'; this model knows: kick, snare"),
    ({"rows": [{"class": "kick", "steps": [0] * 15}]}, "row 0: steps must be 16 of 0 (off), 1 (on) or 2 (accent)"),
    ({"rows": [{"class": "kick", "steps": [3] + [0] * 15}]}, "row 0: steps must be 16 of 0 (off)"),
    ({"rows": [{"class": "kick"}]}, "row 0 must be an object with class and steps"),
])
def test_a_bad_pattern_is_refused_with_what_is_wrong(changes, message):
    with pytest.raises(ValueError) as error:
        read_pattern(request(**changes), ["kick", "snare", ""])
    assert str(error.value).startswith(message)


def test_the_bounced_audio_must_be_finite_floats_of_the_loops_length():
    samples = np.linspace(-1, 1, 100, dtype="<f4")
    np.testing.assert_array_equal(read_audio(base64.b64encode(samples.tobytes()).decode(), 100), samples)
    for text, samples_wanted, message in [
            ("not base64!", 100, "audio must be base64 of little-endian 32-bit floats"),
            (base64.b64encode(samples.tobytes()).decode(), 99, "audio must hold 99 samples (the bars at this tempo "
                                                                 "and rate), got 100"),
            (base64.b64encode(np.array([np.nan], "<f4").tobytes()).decode(), 1, "audio holds NaN or infinite"),
            (None, 1, "audio must be base64")]:
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            read_audio(text, samples_wanted)
