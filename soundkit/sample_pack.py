"""A sample pack for samplers: the chosen WAVs, an SFZ file and a Decent Sampler preset, mapped to General MIDI drums.

``write_sample_pack`` copies the sounds into ``samples/`` named by class and
number (``snare_01.wav``) and writes two instruments that load them:

- ``<name>.sfz`` (sfizz, Sforzando and the many samplers that read SFZ): one
  ``<region>`` per sound, ``loop_mode=one_shot``; the sounds of a class share
  its key and take turns at random (``lorand``/``hirand``); an open hi-hat is
  choked by a closed one (``group``/``off_by``) when the pack has both;
- ``<name>.dspreset`` (Decent Sampler): the same mapping, a ``<group>`` per
  class with ``seqMode="random"``, choke with ``tags``/``silencedByTags``.

Keys follow the General MIDI drum map (``GM_KEYS``). A class whose name is
not in it gets the next free key from ``OTHER_KEYS`` (C4 = 60 upwards), in
the order of the classes, so every class has a key of its own.

Class names come from folder names and are not trusted: every sound gets a
file of its own even on a file system that ignores case (``Kick`` and ``kick``,
``hi hat`` and ``hi_hat``), and a name never reaches the SFZ or XML text with a
control character in it (``printable_label``).
"""

import re
import shutil
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Final

from soundkit.fileio import atomic_write_all, safe_name

# General MIDI percussion keys (channel 10), by the words a class name may hold.
GM_KEYS: Final = [
    (("open hihat", "open hi-hat", "open hat", "openhat", "ohh", "open_hh", "hihat open", "hh open"), 46),
    (("hihat", "hi-hat", "hi_hat", "hat", "hh", "closed"), 42),
    (("kick", "bass drum", "bassdrum", "bd"), 36),
    (("snare", "sd", "rim"), 38),
    (("clap", "handclap", "cp"), 39),
    (("ride",), 51),
    (("crash", "cymbal", "cym"), 49),
]
TOM_KEYS: Final = (41, 43, 45, 47, 48, 50)     # low floor tom ... high tom
OTHER_KEYS: Final = range(60, 128)             # classes the map does not name (and unlabelled sounds)
OPEN_HAT_KEY, CLOSED_HAT_KEY = 46, 42


def _words(name):
    return " " + re.sub(r"[^a-z0-9]+", " ", name.lower()).strip() + " "


def drum_keys(class_names):
    """MIDI key of each class name: General MIDI where the name says which drum it is, else ``OTHER_KEYS``.

    Tom classes share out ``TOM_KEYS`` from low to high in the order given
    (one tom class gets the middle tom, 45). Two classes never share a key.

    Examples
    --------
    >>> drum_keys(["hihat", "kick", "snare", "tom", "zap"])
    {'hihat': 42, 'kick': 36, 'snare': 38, 'tom': 45, 'zap': 60}
    """
    keys, used = {}, set()
    toms = [name for name in class_names if " tom" in _words(name)]
    if len(toms) == 1:
        keys[toms[0]] = 45
    else:
        for index, name in enumerate(toms):
            keys[name] = TOM_KEYS[round(index * (len(TOM_KEYS) - 1) / max(1, len(toms) - 1))]
    used.update(keys.values())
    for name in class_names:
        if name in keys:
            continue
        words = _words(name)
        key = next((key for aliases, key in GM_KEYS
                    if any(f" {alias} " in words for alias in aliases) and key not in used), None)
        if key is not None:
            keys[name] = key
            used.add(key)
    others = iter(key for key in OTHER_KEYS if key not in used)
    for name in class_names:
        if name not in keys:
            keys[name] = next(others)
    return {name: keys[name] for name in class_names}


def write_sample_pack(folder, sounds, name="pack"):
    """Write a pack of ``sounds`` into ``folder``: ``samples/*.wav``, ``<name>.sfz`` and ``<name>.dspreset``.

    Parameters
    ----------
    folder : path-like
        Made if missing; a pack already there is replaced once the new one is
        written whole (an error on the way leaves it as it was).
    sounds : list of (path, class name)
        WAV files and their classes ("" for a sound without one: it maps to
        the class "sound").
    name : str
        The instruments' file name (sanitised).

    Returns
    -------
    dict
        ``sfz`` and ``dspreset`` paths, ``samples`` (class -> list of paths in
        the pack) and ``keys`` (class -> MIDI key).
    """
    folder = Path(folder)
    samples_dir = folder / "samples"
    by_class = {}
    for path, label in sounds:
        by_class.setdefault(label or "sound", []).append(Path(path))
    keys = drum_keys(list(by_class))
    copied, writers = {}, {}
    for label, stem in sample_stems(by_class).items():
        paths = by_class[label]
        digits = max(2, len(str(len(paths))))
        copied[label] = [samples_dir / f"{stem}_{number:0{digits}d}.wav" for number in range(1, len(paths) + 1)]
        writers.update({target: _copier(path) for path, target in zip(paths, copied[label])})
    choke = OPEN_HAT_KEY in keys.values() and CLOSED_HAT_KEY in keys.values()
    stem = safe_name(name)
    sfz, dspreset = folder / f"{stem}.sfz", folder / f"{stem}.dspreset"
    writers[sfz] = _text_writer(sfz_text(copied, keys, folder, choke))
    writers[dspreset] = _text_writer(dspreset_text(copied, keys, folder, choke))
    # Every file is written whole under a temporary name before any is moved into place: an error or
    # a crash on the way leaves the previous pack as it was, and never a half-written WAV.
    atomic_write_all(writers)
    samples_dir.mkdir(parents=True, exist_ok=True)
    # The earlier pack's samples go, so none is left unreferenced. Names are compared casefolded: where
    # case is ignored, a new kick_01.wav may have replaced Kick_01.wav and still be listed by the old name.
    new_names = {path.name.casefold() for path in writers}
    for old in [path for path in samples_dir.iterdir() if path.name.casefold() not in new_names]:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        else:
            old.unlink()
    return {"sfz": sfz, "dspreset": dspreset, "samples": copied, "keys": keys}


def sample_stems(by_class):
    """The file name stem of each class's samples: ``safe_name`` of the class, unique whatever the case.

    Two classes whose names sanitise to one stem, or differ only in case (one file
    on macOS and Windows), get ``_2``, ``_3``... on the later one, so no sound
    overwrites another.

    Examples
    --------
    >>> sample_stems({"hi hat": [], "hi_hat": [], "Kick": [], "kick": []})
    {'hi hat': 'hi_hat', 'hi_hat': 'hi_hat_2', 'Kick': 'Kick', 'kick': 'kick_2'}
    """
    stems, taken = {}, set()
    for label in by_class:
        base = stem = safe_name(label)
        number = 1
        while stem.casefold() in taken:
            number += 1
            stem = f"{base}_{number}"
        stems[label] = stem
        taken.add(stem.casefold())
    return stems


def _copier(source):
    return lambda tmp_name: shutil.copyfile(source, tmp_name)


def _text_writer(text):
    return lambda tmp_name: Path(tmp_name).write_text(text, encoding="utf-8", newline="\n")


def printable_label(label):
    """A class name as it may appear in a pack's text: each control character written as an escape (``\\n``).

    A newline in an SFZ comment would end it, and the rest of the name would be
    read as opcodes; XML 1.0 has no way to hold most control characters at all.

    Examples
    --------
    >>> printable_label("kick\\n<region>")
    'kick\\\\n<region>'
    """
    return "".join(char if char.isprintable() else ascii(char)[1:-1] for char in str(label))


def sfz_text(samples, keys, folder, choke):
    """The SFZ instrument: a ``<group>`` per class on its key, a ``<region>`` per sound (random round robin)."""
    lines = ["// Made by generate.py: General MIDI drum keys, one-shots, random round robin per key.",
             "<control>", "default_path=samples/", ""]
    for label, paths in samples.items():
        key = keys[label]
        # Only printable text, and no header brackets, goes into the comment line.
        comment = printable_label(label).replace("<", "_").replace(">", "_")
        lines.append(f"// {comment}: key {key}")
        group = f"<group> key={key} loop_mode=one_shot amp_velcurve_127=1"
        if choke and key == CLOSED_HAT_KEY:
            group += " group=1"
        elif choke and key == OPEN_HAT_KEY:
            group += " group=2 off_by=1"  # the closed hi-hat chokes the open one
        lines.append(group)
        for index, path in enumerate(paths):
            region = f"<region> sample={path.relative_to(folder / 'samples').as_posix()}"
            if len(paths) > 1:
                region += f" lorand={index / len(paths):.4f} hirand={(index + 1) / len(paths):.4f}"
            lines.append(region)
        lines.append("")
    return "\n".join(lines)


def dspreset_text(samples, keys, folder, choke):
    """The Decent Sampler preset (XML): a ``<group>`` per class, its sounds in random round robin."""
    root = ElementTree.Element("DecentSampler", minVersion="1.0.0")
    groups = ElementTree.SubElement(root, "groups")
    for label, paths in samples.items():
        key = keys[label]
        attributes = {"name": printable_label(label), "seqMode": "random" if len(paths) > 1 else "always",
                      "ampVelTrack": "1"}
        if choke and key == CLOSED_HAT_KEY:
            attributes["tags"] = "closed_hihat"
        elif choke and key == OPEN_HAT_KEY:
            attributes.update(silencedByTags="closed_hihat", silencingMode="fast")
        group = ElementTree.SubElement(groups, "group", attributes)
        for position, path in enumerate(paths, start=1):
            ElementTree.SubElement(group, "sample", {
                "path": path.relative_to(folder).as_posix(), "rootNote": str(key), "loNote": str(key),
                "hiNote": str(key), "seqPosition": str(position), "pitchKeyTrack": "0", "loopEnabled": "false"})
    ElementTree.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ElementTree.tostring(root, encoding="unicode") + "\n"
