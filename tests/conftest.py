"""Shared fixtures: small audio files made on the spot, never downloaded."""

import contextlib
import os
import threading

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

FSDD_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fsdd"
CHROMIUM = Path("/usr/bin/chromium")
BROWSER_TESTS = []  # the tests that got the browser, counted at the end of the run


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
def chromium(request):
    """Debian's headless Chromium, for the real-browser tests.

    Missing, the test is skipped, but with CI=true the run fails instead: CI must not be green
    without them (.ci/run installs Chromium).
    """
    if not CHROMIUM.exists():
        message = f"no headless browser at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}: with CI=true the browser tests must run")
        pytest.skip(message)
    BROWSER_TESTS.append(request.node.nodeid)
    return CHROMIUM


def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line(f"real-browser tests run in headless Chromium: {len(BROWSER_TESTS)}")


@pytest.fixture
def fsdd_dir():
    if not FSDD_DIR.is_dir():
        pytest.skip(f"the Free Spoken Digit Dataset is not at {FSDD_DIR}")
    return FSDD_DIR


# A tiny project: synthesized drums at a low rate, small spectrograms, a tiny model.
SAMPLE_RATE, DURATION, FRAME_SIZE, HOP_LENGTH = 8000, 0.3, 128, 32
TINY_MODEL = ["--conv_filters=[4, 8]", "--conv_kernels=[3, 3]", "--conv_strides=[2, 2]",
              "--latent_space_dim=4", "--batch_size=8", "--adversarial_epochs=0", "--attack_frames=0", "--verbose=0"]
# (the decoder's attack head and second stage have tests of their own: tests/test_autoencoder.py and
# tests/test_adversarial.py, which trains with both through train.py)


def run_preprocess(audio_dir, spectrograms_dir, *extra):
    """Preprocess at 22050 Hz and 0.74 s, in this process: for tests about bad input, not chosen settings."""
    import preprocess
    from soundkit.configurator import configure

    config = configure(vars(preprocess), [f"--audio_dir={audio_dir}", f"--spectrograms_dir={spectrograms_dir}",
                                          "--num_workers=1", "--sample_rate=22050", "--duration=0.74", *extra])
    preprocess.validate(config)
    return preprocess.preprocess_folder(config)[1]


def skip_reasons(report):
    """File name -> reason, for every skipped file or folder of a preprocess.py report."""
    return {Path(item["file"]).name: item["reason"] for item in report["files_skipped"]}


def preprocess_args(audio, spectrograms):
    """preprocess.py arguments for the tiny project's spectrogram settings."""
    return [f"--audio_dir={audio}", f"--spectrograms_dir={spectrograms}", f"--sample_rate={SAMPLE_RATE}",
            f"--duration={DURATION}", f"--frame_size={FRAME_SIZE}", f"--hop_length={HOP_LENGTH}", "--num_workers=1"]


def tiny_project(root, epochs, *train_args):
    """Write 20 drum clips (5 class folders x 4) under ``root``, preprocess them and train a tiny model.

    Returns train.py's history; the folders are root/audio, root/spectrograms and root/model.
    """
    import preprocess
    import train
    from data.synthesize_drums import write_demo_drums

    write_demo_drums(root / "audio", clips_per_class=4, sample_rate=SAMPLE_RATE, duration=DURATION)
    preprocess.main(preprocess_args(root / "audio", root / "spectrograms"))
    return train.main([f"--spectrograms_dir={root / 'spectrograms'}", f"--model_dir={root / 'model'}",
                       f"--epochs={epochs}", "--validation_fraction=0.2", *TINY_MODEL, *train_args])


# Trained once per test session and shared: tests that change the folder copy it first (copy_project).
@pytest.fixture(scope="session")
def labelled_project(tmp_path_factory):
    """(root, history): a tiny unconditional model with its latent classifier, trained on 20 labelled clips.

    Its decoder is the transposed one: in 8 epochs on 20 clips its knobs follow their descriptors, which the
    explorer's knob tests need (with the default bilinear decoder the brightness knob follows less often,
    on real kits too: README, "Known limits"). The other tiny projects use the default decoder.
    """
    root = tmp_path_factory.mktemp("labelled_project")
    return root, tiny_project(root, 8, "--learning_rate=0.005", "--decoder_upsampling=transpose")


@pytest.fixture(scope="session")
def conditional_project(tmp_path_factory):
    """root of a tiny class-conditional model trained for a few epochs on 20 drum clips (5 class folders x 4)."""
    root = tmp_path_factory.mktemp("conditional_project")
    tiny_project(root, 4, "--conditional=true")
    return root


@contextlib.contextmanager
def running_explorer(project, tmp_path_factory, name, *settings):
    """explore.py serving a private copy of a tiny project on a free port, in a thread of this process:
    yields (address, token, the copy's root, its configuration); kept sounds go to root/kept."""
    import explore
    from soundkit.configurator import configure

    root = copy_project(project, tmp_path_factory.mktemp(name) / "project")
    config = configure(vars(explore), [f"--model_dir={root / 'model'}", f"--spectrograms_dir={root / 'spectrograms'}",
                                       "--port=0", f"--keep_dir={root / 'kept'}", *settings])
    running = explore.serve(config)
    threading.Thread(target=running.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{running.server_address[1]}", running.token, root, config
    finally:
        running.shutdown()
        running.server_close()


def copy_project(root, destination):
    """A private copy of a shared tiny project, for a test that changes its files."""
    import shutil

    shutil.copytree(root, destination, symlinks=True)
    return destination
