"""The lock, constraints.txt: every package requirements-dev.txt resolves to (requirements.txt's
runtime set with it), transitive dependencies included, each at one version.

    .venv/bin/python scripts/lock.py           regenerate constraints.txt from the pins (asks the package index)
    .venv/bin/python scripts/lock.py --check   offline: the lock agrees with the pins and with this environment

Regenerating resolves the pins afresh with pip's resolver (``pip install --dry-run --ignore-installed
--report``) for the running interpreter, so run it with the project's Python 3.11 on Linux; versions of
unpinned transitive dependencies may move to newer releases, so review the diff. The lock's header
records a digest of the pins it was made from; ``--check`` (and tests/test_packaging.py, in CI) fails
when a pin was edited without regenerating, or when the environment differs from the lock.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = "constraints.txt"
REQUIREMENTS = ("requirements.txt", "requirements-dev.txt")
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?P<extras>\[[^\]]*\])?==(?P<version>[^\s;#]+)$")
LOCKED = re.compile(r"^(?P<name>[a-z0-9][a-z0-9-]*)==(?P<version>\S+)$")
DIGEST = re.compile(r"^# pins-digest: (?P<digest>sha256:[0-9a-f]{64})$", re.M)
# Not resolved into the lock: the installer itself and this project.
UNLOCKED = {"pip", "customer-grading"}


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them (PyYAML, pyyaml and py_yaml are one)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_lines(path: Path) -> list[str]:
    """The requirement lines of a requirements file, comments and blank lines dropped; ``-r`` lines kept."""
    lines = (line.split(" #", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def read_pins(root: Path) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """{normalized name: (version, file)} of every pin in requirements*.txt, and the problems found.

    Every requirement must be an exact pin (name[extras]==version), each package pinned once.
    """
    pins: dict[str, tuple[str, str]] = {}
    problems = []
    for name in REQUIREMENTS:
        for line in requirement_lines(root / name):
            if line.startswith(("-r ", "--requirement ")):
                continue
            match = PIN.match(line)
            if not match:
                problems.append(f"{name}: {line!r} is not an exact pin (name==version)")
                continue
            key = normalize(match["name"])
            if key in pins:
                problems.append(f"{name}: {match['name']} is pinned twice (also in {pins[key][1]})")
            pins[key] = (match["version"], name)
    return pins, problems


def pins_digest(root: Path) -> str:
    """sha256 of the requirement lines of both files, each sorted: the lock's input."""
    text = "\n".join(f"{name}:{line}" for name in REQUIREMENTS for line in sorted(requirement_lines(root / name)))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def read_lock(path: Path) -> tuple[dict[str, str], str | None, list[str]]:
    """{normalized name: version} of the lock, its recorded pins digest, and malformed lines."""
    text = path.read_text(encoding="utf-8")
    entries, problems = {}, []
    for line in requirement_lines(path):
        match = LOCKED.match(line)
        if not match:
            problems.append(f"{path.name}: {line!r} is not a locked pin (normalized-name==version)")
            continue
        entries[match["name"]] = match["version"]
    digest = DIGEST.search(text)
    return entries, digest["digest"] if digest else None, problems


def installed_versions() -> dict[str, str]:
    from importlib.metadata import distributions

    return {normalize(dist.metadata["Name"]): dist.version for dist in distributions()}


def check(root: Path = ROOT, installed: dict[str, str] | None = None) -> list[str]:
    """What keeps the lock from matching the pins (and ``installed``, when given); [] when in sync."""
    pins, problems = read_pins(root)
    lock, digest, malformed = read_lock(root / LOCK)
    problems += malformed
    for name, (version, source) in sorted(pins.items()):
        if name not in lock:
            problems.append(f"{source} pins {name}=={version}, which {LOCK} does not hold")
        elif lock[name] != version:
            problems.append(f"{source} pins {name}=={version}, {LOCK} holds {name}=={lock[name]}")
    if digest != pins_digest(root):
        problems.append(f"{LOCK} was generated from other pins than requirements*.txt hold now")
    if problems:
        problems.append("regenerate the lock: .venv/bin/python scripts/lock.py")
    if installed is not None:
        drift = [f"{name}=={version} is locked, this environment has "
                 + (f"{name}=={installed[name]}" if name in installed else "none")
                 for name, version in sorted(lock.items()) if installed.get(name) != version]
        if drift:
            problems += [*drift, "sync the environment: scripts/setup.sh"]
    return problems


def resolve(root: Path) -> dict[str, str]:
    """{normalized name: version} pip resolves requirements-dev.txt to, ignoring what is installed."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                        "--disable-pip-version-check", "--report", str(report), "-r", "requirements-dev.txt"],
                       cwd=root, check=True)
        installs = json.loads(report.read_text(encoding="utf-8"))["install"]
    return {normalize(item["metadata"]["name"]): item["metadata"]["version"] for item in installs}


def render(resolved: dict[str, str], digest: str) -> str:
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    header = f"""\
# The lock: every package requirements-dev.txt resolves to (requirements.txt's runtime set
# included), transitive dependencies too, each at one version; resolved for CPython {python}
# on {platform.system()} {platform.machine()}. Generated from the pins by scripts/lock.py; do not edit by hand.
# After editing a pin in requirements*.txt, regenerate it and commit both:
#   .venv/bin/python scripts/lock.py
# CI (scripts/lock.py --check, tests/test_packaging.py) fails while the two disagree. Use it as
# a constraints file: pip install -r requirements.txt -c {LOCK}
# pins-digest: {digest}
"""
    return header + "".join(f"{name}=={version}\n" for name, version in sorted(resolved.items())
                            if name not in UNLOCKED)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/lock.py", description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="only check the lock (offline); exit 1 when out of sync")
    args = parser.parse_args(argv)
    if args.check:
        problems = check(ROOT, installed_versions())
        for problem in problems:
            print(problem, file=sys.stderr)
        if not problems:
            print(f"{LOCK} is in sync with requirements*.txt and this environment")
        return 1 if problems else 0
    if sys.version_info[:2] != (3, 11):
        print(f"the lock is for Python 3.11; this is {platform.python_version()} ({sys.executable})", file=sys.stderr)
        return 2
    pins, problems = read_pins(ROOT)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    resolved = resolve(ROOT)
    wrong = [f"{name}: pinned {version}, resolved {resolved.get(name)}"
             for name, (version, _) in pins.items() if resolved.get(name) != version]
    if wrong:  # pip honours == pins, so this means a name in the files differs from its distribution's
        print("\n".join(wrong), file=sys.stderr)
        return 1
    (ROOT / LOCK).write_text(render(resolved, pins_digest(ROOT)), encoding="utf-8")
    print(f"wrote {LOCK}: {len(resolved) - len(UNLOCKED & resolved.keys())} packages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
