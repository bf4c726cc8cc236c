"""Command-line overrides for the capitalised settings at the top of each script.

Every script opens with its settings as plain constants (``EPOCHS = 60``). Any of
them can be changed from the command line as ``--lowercase_name=value``::

    python train.py --epochs=5 --batch_size=32
    python preprocess.py --audio_dir="my sounds" --preset=tutorial

Values are checked against the type of the default; an unknown name, a missing
``=`` or a value of the wrong type stops the script with a clear message.
``--preset=NAME`` first applies a named group of settings (see ``PRESETS``); the
explicit overrides after it win.
"""

import ast
import signal
import sys
from pathlib import Path
from types import SimpleNamespace

from soundkit.errors import PipelineError

# Named groups of settings. A script takes the names it knows and ignores the rest,
# so one preset can describe the whole pipeline.
PRESETS = {
    # The configuration of Valerio Velardo's tutorial "Generating Sound with Neural
    # Networks", for side-by-side comparisons.
    "tutorial": {
        "SAMPLE_RATE": 22050,
        "DURATION": 0.74,
        "ALIGN_ONSETS": False,
        "FADE_OUT": 0.0,
        "FRAME_SIZE": 512,
        "HOP_LENGTH": 256,
        "CONV_FILTERS": [512, 256, 128, 64, 32],
        "DECODER_FILTERS": [32, 64, 128, 256],  # the tutorial's decoder is not an exact mirror
        "DECODER_UPSAMPLING": "transpose",
        "ATTACK_FRAMES": 0,
        "ADVERSARIAL_EPOCHS": 0,
        "CONV_KERNELS": [3, 3, 3, 3, 3],
        "CONV_STRIDES": [[2, 2], [2, 2], [2, 2], [2, 2], [2, 1]],
        "LATENT_SPACE_DIM": 128,
        "NORMALIZATION": "batch",
        "RECONSTRUCTION_LOSS_WEIGHT": 1_000_000.0,
        "KL_WEIGHT": 1.0,
        "LEARNING_RATE": 0.0005,
        "BATCH_SIZE": 64,
        "LATENT_CLASSIFIER_WEIGHT": 0.0,
        "PHASE_METHOD": "zero_phase",
        "PRIOR": "standard",
    },
}


class ConfigError(ValueError):
    """A command-line override that cannot be applied."""


def assigned_names(path):
    """The names a Python file assigns at its top level (None when the file cannot be read)."""
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return None
    names = set()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, ast.AnnAssign) else []
        names.update(target.id for target in targets if isinstance(target, ast.Name))
    return names


def settings_of(namespace):
    """Return the capitalised settings (name -> value) of a module namespace.

    Only names the script assigns itself are settings: constants it imports
    (file names, the library's defaults) are not. Constants annotated
    ``typing.Final`` (file format versions, numerical floors) are fixed.
    """
    fixed = {name for name, annotation in namespace.get("__annotations__", {}).items()
             if "Final" in str(annotation)}
    own = assigned_names(namespace["__file__"]) if namespace.get("__file__") else None
    return {
        name: value
        for name, value in namespace.items()
        if name.isupper() and not name.startswith("_") and name not in fixed and (own is None or name in own)
        and isinstance(value, (bool, int, float, str, list, tuple, type(None)))
    }


def _convert(name, text, default):
    """Parse ``text`` into the type of ``default``, or raise ConfigError."""
    if isinstance(default, str):
        return text
    if isinstance(default, bool):
        lowered = text.lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ConfigError(f"--{name.lower()} expects true or false, got {text!r}")
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text
    if default is None:
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)):
        return type(default)(value)
    if type(value) is not type(default):
        raise ConfigError(
            f"--{name.lower()} expects a value of type {type(default).__name__} "
            f"(like {default!r}), got {text!r}"
        )
    return value


def _apply(settings, updates, source, strict=True):
    for name, value in updates.items():
        if name not in settings:
            if strict:
                known = ", ".join("--" + known.lower() for known in sorted(settings))
                raise ConfigError(f"unknown setting {source}{name.lower()}; known settings: {known}")
            continue
        settings[name] = value


def configure(namespace, argv=None):
    """Apply ``--name=value`` overrides to the settings of ``namespace``.

    Parameters
    ----------
    namespace : dict
        Usually ``globals()`` of the calling script; only its capitalised names
        of simple types are settings. It is not modified.
    argv : list of str, optional
        The arguments; ``sys.argv[1:]`` when None.

    Returns
    -------
    SimpleNamespace
        The effective settings, with the same capitalised names.

    Raises
    ------
    ConfigError
        For an unknown setting or preset, a malformed argument or a wrongly typed value.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    settings = settings_of(namespace)
    overrides = {}
    preset = None
    for argument in argv:
        if argument in ("-h", "--help"):
            print("Settings (override with --name=value):")
            for name, value in settings.items():
                print(f"  --{name.lower()}={value!r}")
            print("  --preset=" + "|".join(PRESETS))
            raise SystemExit(0)
        if not argument.startswith("--") or "=" not in argument:
            raise ConfigError(f"expected --name=value, got {argument!r}")
        key, text = argument[2:].split("=", 1)
        if key == "preset":
            if text not in PRESETS:
                raise ConfigError(f"unknown preset {text!r}; known presets: {', '.join(PRESETS)}")
            preset = text
            continue
        name = key.upper()
        if name not in settings:
            _apply(settings, {name: None}, "--")
        overrides[name] = _convert(name, text, settings[name])
    if preset is not None:
        _apply(settings, PRESETS[preset], "", strict=False)
    _apply(settings, overrides, "--")
    return SimpleNamespace(**settings)


def require(checks):
    """Raise PipelineError with the message of the first (ok, message) check that fails."""
    for ok, message in checks:
        if not ok:
            raise PipelineError(message)


def restore_ctrl_c():
    """Give SIGINT its default meaning (KeyboardInterrupt) back when the process started with it ignored.

    A background job of a non-interactive shell (``cmd &`` in a script, some CI
    runners, ``nohup``) starts with SIGINT ignored, and Python then never raises
    KeyboardInterrupt: Ctrl-C or ``kill -INT`` would not stop training cleanly.
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def run_script(main):
    """Run ``main()``; print a ConfigError or PipelineError as one clear line and exit non-zero."""
    restore_ctrl_c()
    try:
        return main()
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None


PROJECT_DIR = Path(__file__).resolve().parents[1]


def run_step(script, arguments=(), capture=False):
    """Run a step script (``"train.py"``...) in its own process, as a user would; raise on failure.

    For benchmarks and tools: a step is never imported, so the library stays
    beneath the steps. Returns the ``subprocess.CompletedProcess`` (its output
    as text when ``capture``); a step that fails raises ``PipelineError`` with
    the end of what it printed.
    """
    import subprocess  # only tools run steps

    command = [sys.executable, str(PROJECT_DIR / script), *map(str, arguments)]
    result = subprocess.run(command, cwd=PROJECT_DIR, text=True,
                            stdout=subprocess.PIPE if capture else None, stderr=subprocess.PIPE if capture else None)
    if result.returncode != 0:
        tail = ((result.stderr or "") + (result.stdout or "")).strip()[-2000:]
        raise PipelineError(f"{script} exited with {result.returncode}" + (f": {tail}" if tail else ""))
    return result


def step_settings(script):
    """Return the default settings (name -> value) of a step script, read from its source, not imported.

    For benchmarks and tools that need a step's settings (``configure(step_settings("train.py"), argv)``)
    without importing the step. The settings are the capitalised names the script assigns at its top
    level to a literal (``EPOCHS = 150``, ``CONV_STRIDES = [2, 2]``); names annotated ``typing.Final``
    are fixed, not settings, and a setting computed from the library (``GRIFFIN_LIM_ITERATIONS =
    DEFAULT_N_ITER``) is left out: read that one from the library.

    Parameters
    ----------
    script : str or Path
        The step's file, relative to the project folder (``"train.py"``) or absolute.

    Returns
    -------
    dict
        The settings in the order the script assigns them.
    """
    tree = ast.parse((PROJECT_DIR / script).read_text(encoding="utf-8"))
    settings = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            if "Final" in ast.unparse(node.annotation):
                continue
            target = node.target
        else:
            continue
        if not isinstance(target, ast.Name) or not target.id.isupper() or target.id.startswith("_"):
            continue
        try:
            settings[target.id] = ast.literal_eval(node.value)
        except (ValueError, TypeError, SyntaxError):  # not a literal: computed from the library
            continue
    return settings
