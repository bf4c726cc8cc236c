"""Small file helpers shared by the scripts: atomic writes, JSON, safe output names."""

import csv
import json
import os
import re
import tempfile
import unicodedata
from pathlib import Path

import numpy as np

MAX_NAME_BYTES = 200                    # of a name made by safe_name; file systems allow 255 with the extension


def atomic_write(path, write):
    """Call ``write(tmp_path)`` and move the result onto ``path`` in one step.

    A crash while writing leaves the previous file (if any) untouched: readers see
    either the old or the new file, never a half-written one.
    """
    return atomic_write_all({path: write})[0]


def write_csv(path, rows):
    """Write dicts as a CSV table, atomically: one column per key any row has (blank where a row lacks it)."""
    names = list(dict.fromkeys(name for row in rows for name in row))

    def write(tmp_name):
        with open(tmp_name, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=names)
            writer.writeheader()
            writer.writerows(rows)

    return atomic_write(path, write)


def read_csv(path):
    """A CSV table with a header row, as a list of dicts (values as text)."""
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def atomic_write_all(writers):
    """Write several files so that an error leaves all the previous ones untouched.

    Every file is first written completely under a temporary name next to its
    final place (``write(tmp_path)``, then flushed to disk); only when all of them
    are written are they moved into place, in the order given, each in one step.
    An exception or Ctrl-C while writing removes the temporary files and changes
    nothing else. Put the file that indexes the others last.

    Parameters
    ----------
    writers : dict
        Final path -> function that writes the file's content to the path it is given.

    Returns
    -------
    list of Path
        The final paths, in order.
    """
    staged = []
    try:
        for path, write in writers.items():
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, tmp_name = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp" + path.suffix,
                                                dir=path.parent)
            os.close(handle)
            staged.append((tmp_name, path))
            write(tmp_name)
            with open(tmp_name, "rb+") as written:
                os.fsync(written.fileno())
        for tmp_name, path in staged:
            os.replace(tmp_name, path)
    finally:
        for tmp_name, _ in staged:
            if os.path.exists(tmp_name):
                os.remove(tmp_name)
    return [path for _, path in staged]


def json_writer(data, item_per_line=False):
    """A writer for ``atomic_write``/``atomic_write_all`` that writes ``data`` as indented JSON.

    With ``item_per_line`` the list ``data`` is written one compact item per line:
    as easy to read, and several times faster to write for long lists.
    """
    def write(tmp_name):
        with open(tmp_name, "w", encoding="utf-8") as file:
            if item_per_line:
                items = (json.dumps(item, ensure_ascii=False, default=_to_builtin) for item in data)
                file.write("[\n  " + ",\n  ".join(items) + "\n]\n")
            else:
                json.dump(data, file, indent=2, ensure_ascii=False, default=_to_builtin)
                file.write("\n")
    return write


def write_json(path, data):
    """Write ``data`` as indented JSON, atomically."""
    return atomic_write(path, json_writer(data))


def file_sha256(path):
    """Hex SHA-256 of a file's bytes: ties a file written later to the exact model it describes."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_json(path):
    """Read a JSON file written by ``write_json``."""
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def _to_builtin(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def printable(text):
    """Return ``text`` with any undecodable bytes of a file name written as ``\\xNN``.

    File names on Linux may hold bytes that are not UTF-8; Python keeps them as
    lone surrogates, which cannot be printed or written to JSON.

    Examples
    --------
    >>> printable(os.fsdecode(b"kick\\xff.wav"))
    'kick\\\\xff.wav'
    """
    text = str(text)
    try:
        raw = os.fsencode(text)
    except UnicodeEncodeError:  # a lone surrogate that stands for no byte (valid JSON: "\ud800")
        raw = text.encode("utf-8", "surrogatepass")
    return raw.decode("utf-8", "backslashreplace")


WINDOWS_RESERVED = frozenset(["CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
                              *(f"LPT{i}" for i in range(1, 10))])


def safe_name(text, max_length=80):
    """Turn any text (a clip id, a label) into a file name that stays inside its folder.

    Accents are kept, separators and characters that are unsafe on common file
    systems become ``_``, and names like ``..`` cannot escape. The result is at
    most ``max_length`` characters and ``MAX_NAME_BYTES`` bytes of UTF-8, never
    empty, never starts with a dot, and is never a name Windows reserves
    (``CON``, ``NUL``, ``COM1``...: an underscore is added).

    Examples
    --------
    >>> safe_name("kick/../../etc passwd")
    'kick_.._.._etc_passwd'
    >>> safe_name("..")
    'clip'
    """
    text = unicodedata.normalize("NFC", printable(text))
    text = re.sub(r"[^\w.\-]+", "_", text).strip("._")
    text = text[:max_length]
    while len(text.encode("utf-8")) > MAX_NAME_BYTES:
        text = text[:-1]
    text = text.rstrip("._") or "clip"
    base = text.split(".")[0]
    if base.upper() in WINDOWS_RESERVED:  # CON.wav cannot be made on Windows, whatever its extension
        text = base + "_" + text[len(base):]
    return text


def first_line(error):
    """The first line of an exception's message (its type's name when it has none), for one-line reports."""
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
