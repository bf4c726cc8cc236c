"""Shared fixtures: small audio files made on the spot, never downloaded."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

FSDD_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fsdd"


def tone(frequency=440.0, seconds=0.5, sample_rate=22050, amplitude=0.5, decay=4.0):
    """A decaying sine: a stand-in for a pitched one-shot."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (amplitude * np.sin(2 * np.pi * frequency * t) * np.exp(-decay * t)).astype(np.float32)


@pytest.fixture
def audio_folder(tmp_path):
    """A folder with a few valid one-shots in two class sub-folders."""
    folder = tmp_path / "audio"
    for label, frequencies in {"low": (110, 130, 150), "high": (1500, 1800, 2100)}.items():
        (folder / label).mkdir(parents=True)
        for frequency in frequencies:
            sf.write(folder / label / f"{label}_{frequency}.wav", tone(frequency), 22050)
    return folder


@pytest.fixture
def fsdd_dir():
    if not FSDD_DIR.is_dir():
        pytest.skip(f"the Free Spoken Digit Dataset is not at {FSDD_DIR}")
    return FSDD_DIR
