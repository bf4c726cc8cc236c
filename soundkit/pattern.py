"""A drum pattern of the explorer's step sequencer: when each step sounds, and the pattern as a MIDI file.

A pattern is one bar of 4/4 in ``STEPS`` sixteenths, a row per sound, each step
off, on or accented; a tempo, a swing and how much louder an accent is. The page
(``soundkit/sequencer.js``) plays it and renders its bounce with the same step
times (``step_seconds``) and levels (``plain_level``); here the server checks
what the page sends (``read_pattern``, ``read_audio``) and writes the pattern as a
Standard MIDI File (``midi_file``) on General MIDI drum keys, channel 10.
"""

import base64
import binascii
from dataclasses import dataclass
from typing import Final

import numpy as np

from soundkit.http_guard import shown

STEPS: Final = 16                   # sixteenths in the loop: one bar of 4/4
BEATS_PER_BAR: Final = 4
BPM_RANGE: Final = (60, 200)        # whole beats per minute
SWING_RANGE: Final = (50.0, 75.0)   # percent of a pair of sixteenths before the second one: 50 straight, 67 triplets
ACCENT_RANGE: Final = (0.0, 12.0)   # dB an accented step is louder than a plain one
MAX_BARS: Final = 8                 # a bounce repeats the loop this many times at most
MAX_ROWS: Final = 16
OFF, ON, ACCENT = 0, 1, 2            # what a step holds
TICKS_PER_QUARTER: Final = 960      # the MIDI file's resolution
DRUM_CHANNEL: Final = 9             # General MIDI's percussion channel, 10 counted from 1
NOTE_TICKS: Final = TICKS_PER_QUARTER // 8  # a drum note is held for half a sixteenth
VELOCITY_EXPONENT: Final = 2        # a MIDI velocity v plays at (v / 127) ** 2 of full level: 40 dB of range


@dataclass(frozen=True)
class Pattern:
    """A checked pattern: tempo (BPM), swing (%), accent (dB), bars to bounce, and rows of (class, steps)."""

    bpm: int
    swing: float
    accent_db: float
    bars: int
    rows: tuple


def step_seconds(step, bpm, swing):
    """Seconds from the start of the bar to sixteenth ``step`` (0 to 15).

    Every second sixteenth (1, 3, 5...) is late: it falls ``swing`` percent of the
    way through its pair of sixteenths (50: straight; 75: a dotted sixteenth and a
    thirty-second).

    Examples
    --------
    >>> step_seconds(4, 120, 50), step_seconds(1, 120, 75)
    (0.5, 0.1875)
    """
    sixteenth = 60.0 / bpm / 4
    return step * sixteenth + (step % 2) * (2 * swing / 100 - 1) * sixteenth


def loop_samples(bars, bpm, sample_rate):
    """Samples in ``bars`` bars of 4/4 at ``bpm``: bars x 4 beats x 60 / BPM seconds."""
    return round(bars * BEATS_PER_BAR * 60 / bpm * sample_rate)


def plain_level(accent_db):
    """Amplitude of a plain step, where an accented one plays at 1: ``accent_db`` below it."""
    return 10 ** (-accent_db / 20)


def velocity(step, accent_db):
    """MIDI velocity of a step that sounds: 127 accented, and the velocity of ``plain_level`` when plain."""
    if step == ACCENT:
        return 127
    return max(1, round(127 * plain_level(accent_db) ** (1 / VELOCITY_EXPONENT)))


def _number(request, name, low, high, whole=False):
    value = request.get(name)
    if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)) or not low <= value <= high:
        kind = "a whole number" if whole else "a number"
        raise ValueError(f"{name} must be {kind} from {low} to {high}, got {shown(value)}")
    return value


def read_pattern(request, classes):
    """The ``Pattern`` of a request from the page; ValueError naming what is wrong.

    ``request`` holds bpm, swing, accent_db, bars and rows: [{"class": one of
    ``classes`` or "", "steps": STEPS of OFF, ON or ACCENT}].
    """
    rows = request.get("rows")
    if not isinstance(rows, list) or not 1 <= len(rows) <= MAX_ROWS:
        raise ValueError(f"rows must be a list of 1 to {MAX_ROWS} rows, got {shown(rows)}")
    checked = []
    for index, row in enumerate(rows):
        if not isinstance(row, dict) or set(row) != {"class", "steps"}:
            raise ValueError(f"row {index} must be an object with class and steps, got {shown(row)}")
        if row["class"] not in classes or not isinstance(row["class"], str):
            raise ValueError(f"row {index}: unknown class {shown(row['class'])}; this model knows: "
                             f"{', '.join(name for name in classes if name) or 'none'}")
        steps = row["steps"]
        if not isinstance(steps, list) or len(steps) != STEPS or any(
                isinstance(step, bool) or step not in (OFF, ON, ACCENT) for step in steps):
            raise ValueError(f"row {index}: steps must be {STEPS} of {OFF} (off), {ON} (on) or {ACCENT} (accent), "
                             f"got {shown(steps)}")
        checked.append((row["class"], tuple(steps)))
    return Pattern(_number(request, "bpm", *BPM_RANGE, whole=True), float(_number(request, "swing", *SWING_RANGE)),
                   float(_number(request, "accent_db", *ACCENT_RANGE)), _number(request, "bars", 1, MAX_BARS, True),
                   tuple(checked))


def read_audio(text, samples):
    """Mono float samples from base64 of little-endian float32 (as the page sends its bounce); ValueError
    unless there are exactly ``samples`` of them, all finite."""
    try:
        audio = np.frombuffer(base64.b64decode(text, validate=True), dtype="<f4") if isinstance(text, str) else None
    except (binascii.Error, ValueError):
        audio = None
    if audio is None:
        raise ValueError("audio must be base64 of little-endian 32-bit floats")
    if len(audio) != samples:
        raise ValueError(f"audio must hold {samples} samples (the bars at this tempo and rate), got {len(audio)}")
    if not np.all(np.isfinite(audio)):
        raise ValueError("audio holds NaN or infinite samples")
    return audio.astype(np.float32)


def _variable_length(value):
    """A MIDI variable-length quantity: 7 bits a byte, the high bit set on all but the last."""
    data = [value & 0x7F]
    while value > 0x7F:
        value >>= 7
        data.insert(0, (value & 0x7F) | 0x80)
    return bytes(data)


def note_events(pattern, keys):
    """[(tick, status, key, velocity)] of the pattern's notes over its bars, note-offs first at a tick."""
    sixteenth = TICKS_PER_QUARTER // 4
    swing_ticks = round((2 * pattern.swing / 100 - 1) * sixteenth)
    events = []
    for bar in range(pattern.bars):
        for label, steps in pattern.rows:
            for step, value in enumerate(steps):
                if value == OFF:
                    continue
                tick = (bar * STEPS + step) * sixteenth + (step % 2) * swing_ticks
                key = keys[label]
                events.append((tick, 0x90 | DRUM_CHANNEL, key, velocity(value, pattern.accent_db)))
                events.append((tick + NOTE_TICKS, 0x80 | DRUM_CHANNEL, key, 0))
    return sorted(events, key=lambda event: (event[0], event[1] & 0xF0 == 0x90, event[2]))


def midi_file(pattern, keys, name="pattern"):
    """The bytes of a Standard MIDI File (format 0) of ``pattern``: its tempo, 4/4, and each row's notes on
    its key (``keys``: {class: MIDI key}) on channel 10, repeated for its bars."""
    title = name.encode("utf-8")[:120]
    track = b"\x00\xff\x03" + _variable_length(len(title)) + title
    track += b"\x00\xff\x51\x03" + round(60_000_000 / pattern.bpm).to_bytes(3, "big")
    track += b"\x00\xff\x58\x04\x04\x02\x18\x08"  # 4/4, a click every quarter, 8 thirty-seconds a quarter
    now = 0
    for tick, status, key, level in note_events(pattern, keys):
        track += _variable_length(tick - now) + bytes([status, key, level])
        now = tick
    end = pattern.bars * BEATS_PER_BAR * TICKS_PER_QUARTER
    track += _variable_length(max(0, end - now)) + b"\xff\x2f\x00"
    header = b"MThd" + (6).to_bytes(4, "big") + (0).to_bytes(2, "big") + (1).to_bytes(2, "big")
    return header + TICKS_PER_QUARTER.to_bytes(2, "big") + b"MTrk" + len(track).to_bytes(4, "big") + track
