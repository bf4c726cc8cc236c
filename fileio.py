"""Small file helpers shared by the scripts: atomic writes, JSON, safe output names."""

import json
import os
import re
import tempfile
import unicodedata
from pathlib import Path

import numpy as np


def atomic_write(path, write):
    """Call ``write(tmp_path)`` and move the result onto ``path`` in one step.

    A crash while writing leaves the previous file (if any) untouched: readers see
    either the old or the new file, never a half-written one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp" + path.suffix,
                                        dir=path.parent)
    os.close(handle)
    try:
        write(tmp_name)
        with open(tmp_name, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.remove(tmp_name)
    return path


def write_json(path, data):
    """Write ``data`` as indented JSON, atomically."""
    def write(tmp_name):
        with open(tmp_name, "w", encoding="utf-8") as file:
            json.dump(data, file, indent=2, ensure_ascii=False, default=_to_builtin)
            file.write("\n")
    return atomic_write(path, write)


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


def safe_name(text, max_length=80):
    """Turn any text (a clip id, a label) into a file name that stays inside its folder.

    Accents are kept, separators and characters that are unsafe on common file
    systems become ``_``, and names like ``..`` cannot escape.

    Examples
    --------
    >>> safe_name("kick/../../etc passwd")
    'kick_.._.._etc_passwd'
    """
    text = unicodedata.normalize("NFC", str(text))
    text = re.sub(r"[^\w.\-]+", "_", text).strip("._")
    return text[:max_length] or "clip"
