"""requirements.txt installs on Linux, macOS and Windows, with Python 3.11, 3.12 and 3.13.

pip is asked what it would install for another machine (``--dry-run --platform
... --python-version ...``) and installs nothing. pip evaluates environment
markers (``; sys_platform == "darwin"``) for the machine it runs on, never for
``--platform``, so each line's marker is evaluated here for the target machine
and only the lines it selects are handed to pip, without their markers.

Only the pinned packages are resolved (``--no-deps``): their own dependencies'
markers would again be evaluated for this machine, not the target. pip reads
each wheel's metadata from the index (PEP 658) or, where the index does not
serve it, from a few byte ranges of the wheel (``fast-deps``): no wheel is
downloaded whole. These tests need PyPI; they are skipped when it cannot be reached.
"""

import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REQUIREMENTS = Path(__file__).resolve().parents[1] / "requirements.txt"
PYTHONS = ["3.11", "3.12", "3.13"]
# Per system: what its Python reports to environment markers, and the wheel platform tags it accepts.
SYSTEMS = {
    "linux-x86_64": (  # glibc 2.28 or newer (Debian 10, RHEL 8, Ubuntu 20.04 and later)
        {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix", "platform_machine": "x86_64"},
        [f"manylinux_2_{minor}_x86_64" for minor in range(28, 16, -1)] + ["manylinux2014_x86_64"]),
    "macos-arm64": (  # macOS 12 or newer on Apple silicon; pip also accepts wheels for older macOS
        {"sys_platform": "darwin", "platform_system": "Darwin", "os_name": "posix", "platform_machine": "arm64"},
        ["macosx_12_0_arm64"]),
    "windows-amd64": (
        {"sys_platform": "win32", "platform_system": "Windows", "os_name": "nt", "platform_machine": "AMD64"},
        ["win_amd64"]),
}
# What pip prints when it cannot reach the index (it then reports "no matching distribution" too).
CONNECTION_TROUBLE = re.compile(r"connection broken by|Could not fetch URL|NewConnectionError|NameResolutionError"
                                r"|ProxyError|SSLError|timed out", re.IGNORECASE)
PIP_SECONDS = 180                       # per resolution; one usually takes a few seconds


def marker_environment(system, python):
    """The values environment markers see on ``system`` with CPython ``python`` ("3.12")."""
    environment = default_environment()
    environment.update(SYSTEMS[system][0], python_version=python, python_full_version=f"{python}.0",
                       implementation_name="cpython", platform_python_implementation="CPython",
                       platform_release="", platform_version="")
    return environment


def selected_requirements(requirements_file, environment):
    """The lines of ``requirements_file`` whose marker holds in ``environment``, without their markers."""
    selected = []
    for line in Path(requirements_file).read_text(encoding="utf-8").splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        assert not line.startswith("-"), f"pip options in requirements files are not checked here: {line!r}"
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate(environment):
            requirement.marker = None
            selected.append(str(requirement))
    return selected


def resolve(requirements_file, system, python, workdir):
    """Ask pip what it would install from ``requirements_file`` on ``system`` with ``python``.

    Returns (selected requirement lines, pip's exit status, its error output,
    {canonical name: wheel file name} of what it would install).
    """
    workdir.mkdir(parents=True)
    lines = selected_requirements(requirements_file, marker_environment(system, python))
    (workdir / "requirements.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-deps",
               "--only-binary=:all:", "--implementation=cp", f"--python-version={python}",
               *[f"--platform={platform}" for platform in SYSTEMS[system][1]],
               f"--target={workdir / 'target'}", "--use-feature=fast-deps", "--quiet", "--retries=1",
               "--timeout=30", f"--report={workdir / 'report.json'}", "-r", str(workdir / "requirements.txt")]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=PIP_SECONDS)
    wheels = {}
    if completed.returncode == 0:
        report = json.loads((workdir / "report.json").read_text(encoding="utf-8"))
        wheels = {canonicalize_name(item["metadata"]["name"]): item["download_info"]["url"].rsplit("/", 1)[-1]
                  for item in report["install"]}
    return lines, completed.returncode, completed.stderr, wheels


@pytest.fixture(scope="module")
def resolutions(tmp_path_factory):
    """Every resolution the tests below look at, run in parallel (pip mostly waits for the network).

    Keys: (system, python) for requirements.txt; "unmarked" for a copy that pins
    tensorflow-cpu for every system, resolved for macOS.
    """
    root = tmp_path_factory.mktemp("resolve")
    unmarked = root / "unmarked.txt"
    unmarked.write_text("tensorflow-cpu==2.21.0\n", encoding="utf-8")
    jobs = {(system, python): (REQUIREMENTS, system, python) for system in SYSTEMS for python in PYTHONS}
    jobs["unmarked"] = (unmarked, "macos-arm64", "3.12")
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = {key: pool.submit(resolve, file, system, python, root / re.sub(r"\W", "_", str(key)))
                   for key, (file, system, python) in jobs.items()}
        results = {key: future.result() for key, future in futures.items()}
    for _, returncode, stderr, _ in results.values():
        trouble = CONNECTION_TROUBLE.search(stderr)
        if returncode != 0 and trouble:
            line = next(line for line in stderr.splitlines() if trouble.group(0) in line)
            pytest.skip(f"PyPI cannot be reached, so requirements.txt cannot be resolved for other systems "
                        f"(pip: {line[line.index(trouble.group(0)):].strip()[:300]})")
    return results


def test_macos_gets_tensorflow_and_linux_and_windows_get_tensorflow_cpu():
    for system in SYSTEMS:
        names = {Requirement(line).name for line in selected_requirements(REQUIREMENTS,
                                                                          marker_environment(system, "3.12"))}
        wanted, unwanted = ("tensorflow", "tensorflow-cpu") if system.startswith("macos") else \
            ("tensorflow-cpu", "tensorflow")
        assert wanted in names and unwanted not in names, system
        assert {"keras", "numpy", "librosa"} <= names, system


@pytest.mark.network
@pytest.mark.parametrize("python", PYTHONS)
@pytest.mark.parametrize("system", SYSTEMS)
def test_every_pin_has_a_wheel_for_the_system_and_python(resolutions, system, python):
    lines, returncode, stderr, wheels = resolutions[system, python]
    assert returncode == 0, f"pip cannot install requirements.txt on {system} with Python {python}:\n{stderr}"
    for line in lines:
        requirement = Requirement(line)
        wheel = wheels.get(canonicalize_name(requirement.name))
        assert wheel and wheel.endswith(".whl"), f"{line}: nothing to install on {system}, Python {python}"
        assert requirement.specifier.contains(wheel.split("-")[1]), f"{line}: pip chose {wheel}"


@pytest.mark.network
def test_the_check_fails_when_tensorflow_cpu_is_pinned_for_macos_too(resolutions):
    lines, returncode, stderr, _ = resolutions["unmarked"]
    assert lines == ["tensorflow-cpu==2.21.0"]
    assert returncode != 0
    assert "No matching distribution found for tensorflow-cpu==2.21.0" in stderr
