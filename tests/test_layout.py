"""The package's layout as the README describes it: every module listed with its one job, in an order
in which every import points down (a module imports only modules listed below it), so there are no cycles."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "plugins" / "grading"
LISTED = re.compile(r"^ {2,}(?P<path>[a-z_/]+\.py) {2,}(?P<role>\S.*)$")


def listed_modules() -> list[str]:
    """Module paths (relative to plugins/grading) in the README's Layout section, top to bottom."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    package_block = section.split("The package, `plugins/grading/`", 1)[1].split("```")[1]
    return [m["path"] for line in package_block.splitlines() if (m := LISTED.match(line))]


def package_modules() -> set[str]:
    return {path.relative_to(PACKAGE).as_posix() for path in PACKAGE.rglob("*.py")
            if path.name != "__init__.py" and "__pycache__" not in path.parts}


def _dotted(relative: str) -> str:
    return "grading." + relative.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def imported_modules(relative: str) -> set[str]:
    """Package modules ``relative`` imports, anywhere in the file (deferred imports count too).

    Importing a subpackage means importing what its ``__init__`` imports.
    """
    path = PACKAGE / relative
    known = {_dotted(m): m for m in package_modules()}
    inits = {_dotted(p.relative_to(PACKAGE).as_posix()): p.relative_to(PACKAGE).as_posix()
             for p in PACKAGE.rglob("__init__.py") if p.parent != PACKAGE}
    here = _dotted(relative).rsplit(".", 1)[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = here.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            names.update(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known | inits else base
                         for alias in node.names)
    found: set[str] = set()
    for name in names:
        if name in known:
            found.add(known[name])
        elif name in inits:
            found.update(imported_modules(inits[name]))
    return found - {relative}


def test_the_layout_lists_every_module_of_the_package_once() -> None:
    listed = listed_modules()
    assert len(listed) == len(set(listed)), [m for m in listed if listed.count(m) > 1]
    assert set(listed) == package_modules(), {
        "listed but missing": sorted(set(listed) - package_modules()),
        "not listed": sorted(package_modules() - set(listed)),
    }


def test_every_import_points_down_the_layout() -> None:
    order = {module: position for position, module in enumerate(listed_modules())}
    upward = [f"{module} imports {imported} (listed above it)"
              for module in order for imported in sorted(imported_modules(module))
              if order.get(imported, len(order)) <= order[module]]
    assert upward == []


def test_the_import_check_sees_deferred_and_subpackage_imports() -> None:
    """The walk must see what it checks: an import inside a function and one through a subpackage."""
    assert "pipeline.py" in imported_modules("cli.py")  # imported inside the command functions
    assert any(module.startswith("validation/") for module in imported_modules("pipeline.py"))


def unit_test_file(module: str) -> Path:
    """tests/unit/ mirrors the package: plugins/grading/rules/pins.py is tested in tests/unit/rules/test_pins.py."""
    path = Path(module)
    return ROOT / "tests" / "unit" / path.parent / f"test_{path.name}"


def test_every_module_has_its_unit_test_file() -> None:
    missing = sorted(module for module in package_modules()
                     if module != "__main__.py" and not unit_test_file(module).is_file())
    assert missing == []
    strays = sorted(path.relative_to(ROOT / "tests" / "unit").as_posix()
                    for path in (ROOT / "tests" / "unit").rglob("test_*.py")
                    if path.name.removeprefix("test_") not in {Path(m).name for m in package_modules()})
    assert strays == []
