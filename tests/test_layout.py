"""The layout of the project, checked by parsing its imports: step scripts are leaves, libraries beneath.

The step scripts are what a user runs; everything two steps share lives in a
library module beneath them (see ../shared/STYLE.md, "How the house is laid out").
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STEP_SCRIPTS = {"preprocess", "train", "generate", "plot_spectrograms", "evaluate", "explore"}
MODULES = {path.stem: path for path in sorted(ROOT.glob("*.py"))}
LAZY_ALLOWED = {"autoencoder"}  # TensorFlow loads when a model is needed, not at import


def imports_of(path):
    """[(module imported, line number, at the top of the module?)] of the project's own modules."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = set(id(node) for node in tree.body)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module.split(".")[0]]
        else:
            continue
        found += [(name, node.lineno, id(node) in top) for name in names if name in MODULES]
    return found


GRAPH = {name: imports_of(path) for name, path in MODULES.items()}


def test_the_project_has_the_modules_the_layout_names():
    assert STEP_SCRIPTS | {"autoencoder", "soundgenerator", "folders", "listening_page"} <= set(MODULES)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_a_step_script(module):
    imported_steps = sorted({name for name, _, _ in GRAPH[module] if name in STEP_SCRIPTS and name != module})
    assert imported_steps == [], f"{module}.py imports the step script(s) {imported_steps}"


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
        for name in sorted(edges[module]):
            visit(name)
        visiting.pop()
        done.add(module)

    for module in sorted(edges):
        visit(module)
    assert cycles == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_of_the_project_sit_at_the_top_except_the_commented_lazy_tensorflow_one(module):
    lines = MODULES[module].read_text(encoding="utf-8").splitlines()
    for name, line, at_top in GRAPH[module]:
        if not at_top:
            assert name in LAZY_ALLOWED, f"{module}.py:{line} imports {name} inside a function"
            assert "#" in lines[line - 1], f"{module}.py:{line}: the lazy import of {name} says why"


@pytest.mark.parametrize("module", ["generate", "preprocess", "soundgenerator", "plot_spectrograms"])
def test_the_step_modules_stay_under_500_lines(module):
    assert len(MODULES[module].read_text(encoding="utf-8").splitlines()) < 500


@pytest.mark.parametrize("literal", ['"model.keras"', '"training.json"', '"clips.json"', '"latent_prior.json"'])
def test_each_file_name_of_the_folders_is_written_once_in_folders_py(literal):
    holders = sorted(name for name, path in MODULES.items() if literal in path.read_text(encoding="utf-8"))
    assert holders == ["folders"]


def test_denormalisation_and_the_phase_defaults_are_defined_once():
    definitions = {}
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and "denormalise" in node.name:
                definitions.setdefault("denormalise", []).append(name)
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name) and target.id.startswith("DEFAULT_") and \
                            target.id in ("DEFAULT_PHASE_METHOD", "DEFAULT_N_ITER", "DEFAULT_MOMENTUM"):
                        definitions.setdefault(target.id, []).append(name)
    # SoundGenerator.denormalise checks shapes and hands the arithmetic to MinMaxNormaliser.denormalise.
    assert sorted(definitions["denormalise"]) == ["soundgenerator", "spectrogram"]
    source = MODULES["soundgenerator"].read_text(encoding="utf-8")
    assert "MinMaxNormaliser().denormalise(" in source
    for name in ("DEFAULT_PHASE_METHOD", "DEFAULT_N_ITER", "DEFAULT_MOMENTUM"):
        assert definitions[name] == ["phase"]
    for script in ("generate", "evaluate"):
        text = MODULES[script].read_text(encoding="utf-8")
        assert "PHASE_METHOD = DEFAULT_PHASE_METHOD" in text and "GRIFFIN_LIM_ITERATIONS = DEFAULT_N_ITER" in text
