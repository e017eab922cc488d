"""The mechanics shared by the checkers of the project's own YAML files (rules, mappings).

A checker turns a document read by grading.yamlfile into typed data and stops at the first
mistake, with a message that points at it: ``file:line: <scope> 'name': field 'x': problem``.
Subclasses say which error they raise and what their scope is called (a rule, a table).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, NoReturn

from grading import yamlfile


class FileChecker:
    """Base of a checker of one file: failing at file:line, checking a mapping's keys and texts."""

    error: type[Exception] = ValueError  # what fail() raises
    scope: str = "item"  # how messages name the part of the file being checked

    def __init__(self, path: Path):
        self.path = path

    def fail(self, node: Any, message: str, scope: str | None = None, field_name: str | None = None,
             key: Any = None) -> NoReturn:
        """Raise the checker's error at ``node``'s line (or its ``key``'s), naming scope and field."""
        line = yamlfile.line_of(node, key)
        parts = [f"{self.path}:{line}" if line else str(self.path)]
        if scope:
            parts.append(f"{self.scope} {scope!r}")
        if field_name:
            parts.append(f"field {field_name!r}")
        raise self.error(": ".join(parts) + f": {message}")

    @staticmethod
    def unknown_keys(node: dict, allowed: Iterable[str]) -> list[Any]:
        """The keys of ``node`` not in ``allowed``, in the file's order."""
        allowed = set(allowed)
        return [key for key in node if key not in allowed]

    def keys(self, node: Any, allowed: Iterable[str], scope: str | None, what: str,
             required: Iterable[str] = ()) -> None:
        """``node`` must be a mapping with only ``allowed`` keys and every ``required`` one."""
        if not isinstance(node, dict):
            self.fail(node, f"{what} must be a mapping", scope)
        allowed = tuple(allowed)
        unknown = self.unknown_keys(node, allowed)
        if unknown:
            self.fail(node, f"unknown key(s) {', '.join(map(repr, unknown))} in {what}; "
                            f"known: {', '.join(allowed)}", scope, str(unknown[0]), key=unknown[0])
        for key in required:
            if key not in node:
                self.fail(node, f"is required in {what}", scope, key)

    def text(self, node: dict, key: str, scope: str | None = None, default: str | None = None) -> str | None:
        """``node[key]``, which must be a non-empty text; ``default`` when the key is absent."""
        if key not in node:
            return default
        value = node[key]
        if not isinstance(value, str) or not value:
            self.fail(node, f"must be a non-empty text, got {value!r}", scope, key, key=key)
        return value
