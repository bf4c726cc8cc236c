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
import sys
from types import SimpleNamespace

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


class PipelineError(RuntimeError):
    """A problem the user can fix (bad input, mismatched files); printed without a traceback."""


class ConfigError(ValueError):
    """A command-line override that cannot be applied."""


def settings_of(namespace):
    """Return the capitalised settings (name -> value) of a module namespace.

    Constants annotated ``typing.Final`` (file format versions, numerical
    floors) are fixed, not settings.
    """
    fixed = {name for name, annotation in namespace.get("__annotations__", {}).items()
             if "Final" in str(annotation)}
    return {
        name: value
        for name, value in namespace.items()
        if name.isupper() and not name.startswith("_") and name not in fixed
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


def run_script(main):
    """Run ``main()``; print a ConfigError or PipelineError as one clear line and exit non-zero."""
    try:
        return main()
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2)
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1)
