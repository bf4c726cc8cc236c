"""The layout of the project, checked by parsing its imports: steps on top, a library beneath.

At the top level are the step scripts a user runs, plus ``autoencoder.py`` and
``soundgenerator.py`` (the names users of the tutorial know); everything the
steps share lives in the ``soundkit`` package beneath them. Steps import no step,
the benchmarks import only the library, and the imports have no cycle (see
../shared/STYLE.md, "How the house is laid out").
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "soundkit"
STEP_SCRIPTS = {"preprocess", "train", "generate", "plot_spectrograms", "evaluate", "explore"}
TOP_LEVEL_LIBRARY = {"autoencoder", "soundgenerator"}
LAZY_ALLOWED = {"autoencoder"}  # TensorFlow loads when a model is needed, not at import
MAX_FILE_LINES, MAX_FUNCTION_LINES = 500, 80


def module_name(path):
    relative = path.relative_to(ROOT).with_suffix("")
    return ".".join(relative.parts)


TOP_LEVEL = {path.stem: path for path in sorted(ROOT.glob("*.py"))}
LIBRARY = {module_name(path): path for path in sorted((ROOT / PACKAGE).glob("*.py")) if path.stem != "__init__"}
BENCHMARKS = {module_name(path): path for path in sorted((ROOT / "benchmarks").glob("*.py"))}
PROJECT = {**TOP_LEVEL, **LIBRARY}
SOURCES = [*TOP_LEVEL.values(), *LIBRARY.values(), *BENCHMARKS.values(), *sorted((ROOT / "tests").glob("*.py")),
           *sorted((ROOT / "data").glob("*.py"))]


def imports_of(path):
    """[(module imported, line number, at the top of the module?)] of the project's own modules."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = set(id(node) for node in tree.body)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = ([f"{node.module}.{alias.name}" for alias in node.names] if node.module == PACKAGE
                     else [node.module])
        else:
            continue
        found += [(name, node.lineno, id(node) in top) for name in names if name in PROJECT]
    return found


GRAPH = {name: imports_of(path) for name, path in {**PROJECT, **BENCHMARKS}.items()}


def test_the_top_level_holds_only_the_steps_and_the_two_tutorial_modules():
    assert set(TOP_LEVEL) == STEP_SCRIPTS | TOP_LEVEL_LIBRARY
    assert not [path.name for path in ROOT.glob("*.html")]
    assert {"folders", "fitted", "training", "spectrogram", "phase", "stft", "errors"} <= {
        name.split(".")[1] for name in LIBRARY}


@pytest.mark.parametrize("module", sorted(set(PROJECT) | set(BENCHMARKS)))
def test_no_module_imports_a_step_script(module):
    imported_steps = sorted({name for name, _, _ in GRAPH[module] if name in STEP_SCRIPTS and name != module})
    assert imported_steps == [], f"{module} imports the step script(s) {imported_steps}"


@pytest.mark.parametrize("module", sorted(LIBRARY))
def test_the_library_imports_only_the_library(module):
    outside = sorted({name for name, _, _ in GRAPH[module]} - set(LIBRARY) - TOP_LEVEL_LIBRARY)
    assert outside == [], f"{module} imports {outside}"


def test_the_import_graph_has_no_cycle():
    edges = {module: {name for name, _, _ in imports} - {module} for module, imports in GRAPH.items()}
    visiting, done, cycles = [], set(), []

    def visit(module):
        if module in done:
            return
        if module in visiting:
            cycles.append(visiting[visiting.index(module):] + [module])
            return
        visiting.append(module)
        for name in sorted(edges.get(module, ())):
            visit(name)
        visiting.pop()
        done.add(module)

    for module in sorted(edges):
        visit(module)
    assert cycles == []


@pytest.mark.parametrize("module", sorted(PROJECT))
def test_imports_of_the_project_sit_at_the_top_except_the_commented_lazy_tensorflow_one(module):
    lines = PROJECT[module].read_text(encoding="utf-8").splitlines()
    for name, line, at_top in GRAPH[module]:
        if not at_top:
            assert name in LAZY_ALLOWED, f"{module}:{line} imports {name} inside a function"
            assert "#" in lines[line - 1], f"{module}:{line}: the lazy import of {name} says why"


def test_the_package_imports_from_a_fresh_clone_without_installing(tmp_path):
    """From any working folder, with the project folder on the path as the scripts put it."""
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); import soundkit.folders, soundkit.fitted, "
            "soundkit.sounds; print(soundkit.folders.__file__)")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).parent == ROOT / PACKAGE


@pytest.mark.parametrize("path", SOURCES, ids=lambda path: path.relative_to(ROOT).as_posix())
def test_files_stay_under_500_lines_and_functions_under_80(path):
    text = path.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MAX_FILE_LINES
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines)" for node in ast.walk(ast.parse(text))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == []


@pytest.mark.parametrize("path", sorted([*(ROOT / PACKAGE).glob("*.html"), *(ROOT / PACKAGE).glob("*.js")]),
                         ids=lambda path: path.relative_to(ROOT).as_posix())
def test_the_pages_and_scripts_of_the_library_stay_under_500_lines(path):
    assert len(path.read_text(encoding="utf-8").splitlines()) <= MAX_FILE_LINES


def test_a_long_function_is_caught(tmp_path):
    """The size rule above can fail: an 81-line function is reported."""
    body = "\n".join(f"    x{index} = {index}" for index in range(80))
    tree = ast.parse(f"def long():\n{body}\n")
    node = tree.body[0]
    assert node.end_lineno - node.lineno + 1 == 81 > MAX_FUNCTION_LINES


@pytest.mark.parametrize("literal", ['"model.keras"', '"training.json"', '"clips.json"', '"latent_prior.json"'])
def test_each_file_name_of_the_folders_is_written_once_in_folders_py(literal):
    holders = sorted(name for name, path in PROJECT.items() if literal in path.read_text(encoding="utf-8"))
    assert holders == [f"{PACKAGE}.folders"]


def test_reading_a_model_folder_fits_nothing():
    """folders.py is the on-disk contract: fitting lives in fitted.py, as explicit fit-and-save calls."""
    source = LIBRARY[f"{PACKAGE}.folders"].read_text(encoding="utf-8")
    assert "Knobs.fit(" not in source and "fit_latent_prior(" not in source and "encode_rows(" not in source
    assert {name for name, _, _ in GRAPH[f"{PACKAGE}.folders"]} <= {f"{PACKAGE}.{name}" for name in (
        "errors", "fileio", "latent_space", "spectrogram")} | {"autoencoder"}


def test_pipeline_error_lives_in_the_library_and_a_sound_generator_is_made_from_params_once():
    errors = [name for name, path in PROJECT.items() if "class PipelineError" in path.read_text(encoding="utf-8")]
    assert errors == [f"{PACKAGE}.errors"]
    spelled_out = [name for name, path in {**PROJECT, **BENCHMARKS}.items()
                   if 'SoundGenerator(params["sample_rate"]' in path.read_text(encoding="utf-8")]
    assert spelled_out == []


def test_denormalisation_and_the_phase_defaults_are_defined_once():
    definitions = {}
    for name, path in PROJECT.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and "denormalise" in node.name:
                definitions.setdefault("denormalise", []).append(name)
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name) and target.id in (
                            "DEFAULT_PHASE_METHOD", "DEFAULT_N_ITER", "DEFAULT_MOMENTUM"):
                        definitions.setdefault(target.id, []).append(name)
    # SoundGenerator.denormalise checks shapes and hands the arithmetic to MinMaxNormaliser.denormalise.
    assert sorted(definitions["denormalise"]) == sorted([f"{PACKAGE}.spectrogram", "soundgenerator"])
    assert "MinMaxNormaliser().denormalise(" in PROJECT["soundgenerator"].read_text(encoding="utf-8")
    for name in ("DEFAULT_PHASE_METHOD", "DEFAULT_N_ITER", "DEFAULT_MOMENTUM"):
        assert definitions[name] == [f"{PACKAGE}.phase"]
    for script in ("generate", "evaluate"):
        text = PROJECT[script].read_text(encoding="utf-8")
        assert "PHASE_METHOD = DEFAULT_PHASE_METHOD" in text and "GRIFFIN_LIM_ITERATIONS = DEFAULT_N_ITER" in text
