"""Command-line overrides of the capitalised settings."""

import sys

import pytest

from soundkit.configurator import ConfigError, configure

SETTINGS = {"EPOCHS": 10, "LEARNING_RATE": 0.001, "AUDIO_DIR": "data/audio", "CONDITIONAL": False,
            "CONV_FILTERS": [16, 32], "HOP_LENGTH": 128, "lowercase_is_not_a_setting": 1}


def test_no_arguments_gives_the_defaults():
    config = configure(SETTINGS, [])
    assert config.EPOCHS == 10 and config.AUDIO_DIR == "data/audio"
    assert not hasattr(config, "lowercase_is_not_a_setting")


def test_overrides_are_parsed_to_the_type_of_the_default():
    config = configure(SETTINGS, ["--epochs=5", "--learning_rate=1e-4", "--audio_dir=my sounds",
                                  "--conditional=true", "--conv_filters=[8, 16, 32]"])
    assert config.EPOCHS == 5
    assert config.LEARNING_RATE == pytest.approx(1e-4)
    assert config.AUDIO_DIR == "my sounds"
    assert config.CONDITIONAL is True
    assert config.CONV_FILTERS == [8, 16, 32]


def test_an_int_is_accepted_for_a_float_setting():
    assert configure(SETTINGS, ["--learning_rate=1"]).LEARNING_RATE == 1.0
    assert isinstance(configure(SETTINGS, ["--learning_rate=1"]).LEARNING_RATE, float)


def test_unknown_setting_is_refused_with_the_known_names():
    with pytest.raises(ConfigError, match=r"unknown setting --epoch\b.*--epochs"):
        configure(SETTINGS, ["--epoch=3"])


def test_wrong_type_is_refused_naming_the_setting():
    with pytest.raises(ConfigError, match=r"--epochs expects a value of type int.*'five'"):
        configure(SETTINGS, ["--epochs=five"])
    with pytest.raises(ConfigError, match=r"--conditional expects true or false"):
        configure(SETTINGS, ["--conditional=maybe"])


def test_argument_without_value_is_refused():
    with pytest.raises(ConfigError, match="expected --name=value"):
        configure(SETTINGS, ["--epochs"])


def test_preset_applies_known_names_and_explicit_overrides_win():
    config = configure(SETTINGS, ["--preset=tutorial", "--epochs=2"])
    assert config.HOP_LENGTH == 256  # from the tutorial preset
    assert config.LEARNING_RATE == pytest.approx(0.0005)
    assert config.CONV_FILTERS == [512, 256, 128, 64, 32]
    assert config.EPOCHS == 2
    explicit = configure(SETTINGS, ["--hop_length=64", "--preset=tutorial"])
    assert explicit.HOP_LENGTH == 64


def test_unknown_preset_is_refused():
    with pytest.raises(ConfigError, match="unknown preset 'fast'.*tutorial"):
        configure(SETTINGS, ["--preset=fast"])


def test_settings_are_not_modified_in_place():
    configure(SETTINGS, ["--epochs=99"])
    assert SETTINGS["EPOCHS"] == 10


def test_constants_annotated_final_are_not_settings():
    namespace = {"EPOCHS": 3, "FORMAT_VERSION": 1, "__annotations__": {"FORMAT_VERSION": "Final"}}
    assert vars(configure(namespace, [])) == {"EPOCHS": 3}
    with pytest.raises(ConfigError, match="unknown setting --format_version"):
        configure(namespace, ["--format_version=2"])


@pytest.mark.skipif(sys.platform == "win32", reason="a POSIX signal disposition inherited from the parent")
@pytest.mark.parametrize("through_run_script", [True, False])
def test_ctrl_c_stops_a_script_started_with_sigint_ignored(through_run_script):
    """A background job of a non-interactive shell (``cmd &`` in a script, nohup) starts with SIGINT ignored.

    A step run through ``run_script`` takes Ctrl-C back and stops; without it the process ignores it (the
    control, showing the test can fail)."""
    import signal
    import subprocess
    import time
    from pathlib import Path

    body = "import time; time.sleep(60)"
    code = (f"from soundkit.configurator import run_script; run_script(lambda: exec({body!r}))"
            if through_run_script else body)
    process = subprocess.Popen([sys.executable, "-c", "import sys; print('ready', flush=True); " + code],
                               cwd=Path(__file__).resolve().parents[1], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        assert process.stdout.readline().strip() == "ready"
        time.sleep(0.5)  # into the sleep
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10 if through_run_script else 2)
        except subprocess.TimeoutExpired:
            pass
        if through_run_script:
            assert process.returncode is not None and process.returncode != 0
            assert "KeyboardInterrupt" in process.stderr.read()
        else:
            assert process.returncode is None  # still running: SIGINT was ignored
    finally:
        process.kill()
        process.wait()
