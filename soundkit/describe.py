"""A sound asked for in words: "short bright snare" becomes a class and knob settings.

``describe(text, classes)`` reads a description with a small vocabulary and
returns a ``Description``: the class (or group) it names and the knobs it turns,
in standard deviations of the training clips, as ``generate.py --describe`` and
the explorer's text box use them. Its ``settings`` are the same choice written as
options to reuse (``--label=snare --brightness=1 --length=-1``).

The vocabulary (lower or upper case, in any order):

- **a class** of the model, or a group (``bright-short`` or ``bright short``),
  also in the plural (``snares``); and the drum names the sample pack maps to
  General MIDI keys (``sample_pack.GM_KEYS``: bass drum and bd for a kick, hat and
  hi-hat for a hi-hat...), which name the model's class on that key;
- **a knob word** (``KNOB_WORDS``): bright / dark (brightness), long / short
  (length), sharp / soft (attack), high / low (pitch), and their synonyms;
- **a degree** just before a knob word (``DEGREES``): "a bit" (0.5), "very"
  (2), "extremely" (3); a knob word alone is ``PLAIN`` (1);
- **filler words** (``FILLER``): a, the, and, with, sound, drum...

A word outside it, a class the model does not know, two classes, a knob turned
both ways or a degree without its knob word is refused with a ``DescriptionError``
that names each such word: nothing is silently dropped.
"""

import re
from dataclasses import dataclass, field
from typing import Final

from soundkit.sample_pack import GM_KEYS, drum_keys
from soundkit.spectrogram import OFFERED_KNOBS

PLAIN: Final = 1.0  # standard deviations of the training clips for a knob word on its own
DEGREES: Final = {"a bit": 0.5, "a little": 0.5, "slightly": 0.5, "somewhat": 0.5,
                  "very": 2.0, "really": 2.0, "much": 2.0, "extremely": 3.0, "super": 3.0}
KNOB_WORDS: Final = {  # knob: (words that turn it up, words that turn it down)
    "brightness": (("bright", "brighter", "brilliant"), ("dark", "darker", "dull", "duller", "warm", "warmer",
                                                        "muffled")),
    "length": (("long", "longer", "ringing", "sustained"), ("short", "shorter", "tight", "tighter", "choked")),
    "attack": (("sharp", "sharper", "punchy", "punchier", "snappy", "snappier", "hard", "harder", "clicky"),
               ("soft", "softer", "gentle", "smooth")),
    "pitch": (("high", "higher", "high pitched", "tuned up"), ("low", "lower", "deep", "deeper", "low pitched",
                                                                "tuned down")),
}
FILLER: Final = ("a", "an", "the", "and", "with", "but", "sound", "sounds", "drum", "drums", "hit", "one", "sample")
EXTRA_DRUM_WORDS: Final = (("high hat", "hihats", "hi hats", "hats"), 42)  # "high hat" is no high pitch
LIMIT: Final = 3.0  # the knobs' range, as generate.py and the explorer take them

assert set(KNOB_WORDS) == set(OFFERED_KNOBS), "every knob has its words"


class DescriptionError(ValueError):
    """A description that cannot be read, with each word at fault named."""


@dataclass
class Description:
    """What a description asks for: a class ("" = any) and {knob: standard deviations} of the knobs it turns."""

    text: str
    label: str = ""
    knobs: dict = field(default_factory=dict)

    @property
    def settings(self):
        """The choice as options to reuse: ``--label=snare --brightness=1 --length=-1``."""
        return as_settings(self.label, self.knobs)


def as_settings(label, knobs):
    """``--label=... --knob=...`` of a class and the knobs that are not 0 (in OFFERED_KNOBS order)."""
    parts = [f"--label={label}"] if label else []
    parts += [f"--{name}={knobs[name]:g}" for name in OFFERED_KNOBS if knobs.get(name)]
    return " ".join(parts)


def words_of(text):
    """Lower-case words of ``text``: letters and digits; anything else (spaces, -, _, commas) separates."""
    return re.findall(r"[^\W_]+", str(text).lower())


def phrase(text):
    return " ".join(words_of(text))


def class_phrases(classes):
    """({phrase: class of the model}, {phrase: drum name the model has no class for})."""
    keys = drum_keys(list(classes))
    on_key = {key: name for name, key in keys.items()}
    known, missing = {}, {}
    for aliases, key in [*GM_KEYS, EXTRA_DRUM_WORDS]:
        for alias in aliases:
            if key in on_key:
                known[phrase(alias)] = on_key[key]
            else:
                missing[phrase(alias)] = phrase(aliases[0])
    for name in classes:  # the model's own names (and groups') come first
        known[phrase(name)] = known[phrase(name) + "s"] = name
    return known, missing


def vocabulary(classes):
    """One line naming the words understood, for messages."""
    knob_words = ", ".join(f"{up[0]}/{down[0]}" for up, down in KNOB_WORDS.values())
    return f"words: {', '.join(classes) or '(no classes)'}; {knob_words}; a bit, very, extremely; and synonyms"


def _meanings(classes):
    """{phrase: (kind, value)} of every phrase of the vocabulary, kind one of class/missing/knob/degree/filler."""
    known, missing = class_phrases(classes)
    meanings = {word: ("filler", None) for word in FILLER}
    meanings.update({word: ("missing", name) for word, name in missing.items()})
    for knob, (up, down) in KNOB_WORDS.items():
        meanings.update({word: ("knob", (knob, 1.0)) for word in up})
        meanings.update({word: ("knob", (knob, -1.0)) for word in down})
    meanings.update({word: ("degree", amount) for word, amount in DEGREES.items()})
    meanings.update({word: ("class", name) for word, name in known.items()})
    return meanings


def _tokens(text, meanings):
    """[(phrase, kind, value)] of ``text``, the longest known phrase first; unknown words get kind None."""
    words, longest = words_of(text), max(len(key.split()) for key in meanings)
    tokens, start = [], 0
    while start < len(words):
        for size in range(min(longest, len(words) - start), 0, -1):
            candidate = " ".join(words[start:start + size])
            if candidate in meanings:
                tokens.append((candidate, *meanings[candidate]))
                start += size
                break
        else:
            tokens.append((words[start], None, None))
            start += 1
    return tokens


def describe(text, classes):
    """A ``Description`` of ``text`` for a model of ``classes`` (its classes or groups; [] for none).

    Parameters
    ----------
    text : str
        For example "short bright snare", "a bit darker, very long tom", "bass drum, low".
    classes : list of str
        The model's classes (``ModelFolder.classes``), which class words must name.

    Returns
    -------
    Description

    Raises
    ------
    DescriptionError
        Naming every word it cannot use, and why (see the module's docstring).

    Examples
    --------
    >>> describe("short bright snare", ["kick", "snare"]).settings
    '--label=snare --brightness=1 --length=-1'
    >>> describe("a bit darker bass drum", ["kick", "snare"]).settings
    '--label=kick --brightness=-0.5'
    """
    tokens = _tokens(text, _meanings(classes))
    if not [token for token in tokens if token[1] != "filler"]:
        raise DescriptionError(f"describe a sound, e.g. \"short bright {classes[0] if classes else 'one'}\" "
                               f"({vocabulary(classes)})")
    problems, labels, knobs, said = [], {}, {}, {}
    unknown = [word for word, kind, _ in tokens if kind is None]
    if unknown:
        problems.append(f"unknown word{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}")
    for index, (word, kind, value) in enumerate(tokens):
        if kind == "missing":
            problems.append(f"this model has no {value}" + ("" if word == value else f" ({word!r})"))
        elif kind == "class":
            labels.setdefault(value, word)
        elif kind == "degree" and next((k for _, k, _ in tokens[index + 1:] if k != "degree"), None) != "knob":
            problems.append(f"{word!r} goes just before a knob word (e.g. '{word} {KNOB_WORDS['brightness'][0][0]}')")
        elif kind == "knob":
            knob, sign = value
            amount = sign * (tokens[index - 1][2] if index and tokens[index - 1][1] == "degree" else PLAIN)
            if knob in knobs and knobs[knob] * amount < 0:
                problems.append(f"{said[knob]!r} and {word!r} turn {knob} both ways")
            elif abs(amount) > abs(knobs.get(knob, 0.0)):
                knobs[knob], said[knob] = amount, word
    if len(labels) > 1:
        problems.append(f"it names {len(labels)} classes ({', '.join(map(repr, labels.values()))}): pick one")
    if problems:
        raise DescriptionError(f"cannot read {text!r}: {'; '.join(problems)} ({vocabulary(classes)})")
    return Description(str(text), next(iter(labels), ""), {name: knobs[name] for name in OFFERED_KNOBS
                                                            if name in knobs})
