"""The one YAML loader of the project's own files: rules, source mappings, service levels.

A safe loader (no object construction) whose mappings and lists remember where they start
and each key its line, so every checker can point at ``file:line``; a key given twice in one
mapping is an error, not a silent last-one-wins; a syntax error names ``file:line:column``.
Numbers follow YAML 1.2 (``5e4`` is 50000.0, not the text "5e4" of YAML 1.1).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from grading.errors import DataError


class YamlError(DataError, ValueError):
    """A file that is not valid YAML, or repeats a key; the message names file, line and column."""


class Node(dict):
    """A mapping that knows its line and each key's line (1-based)."""

    line: int = 0
    key_lines: dict


class Seq(list):
    """A list that knows its line (1-based)."""

    line: int = 0


class _Duplicate(Exception):
    def __init__(self, key: Any, mark: yaml.Mark, first: int):
        super().__init__(key)
        self.key, self.mark, self.first = key, mark, first


class _Loader(yaml.SafeLoader):
    """A safe loader with line-aware mappings and lists and YAML 1.2 floats."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> Node:
    loader.flatten_mapping(node)
    mapping, lines = Node(), {}
    for key_node, value_node in node.value:
        # YAML 1.1 reads the keys on/off/yes/no as booleans; a mapping's keys are names and
        # source values ("on:" of a join, "yes: true" of a value map), so keep the text.
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag == "tag:yaml.org,2002:bool":
            key = key_node.value
        else:
            key = loader.construct_object(key_node, deep=True)
        if key in mapping:
            raise _Duplicate(key, key_node.start_mark, lines[key])
        mapping[key] = loader.construct_object(value_node, deep=True)
        lines[key] = key_node.start_mark.line + 1
    mapping.line, mapping.key_lines = node.start_mark.line + 1, lines
    return mapping


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> Seq:
    items = Seq(loader.construct_object(child, deep=True) for child in node.value)
    items.line = node.start_mark.line + 1
    return items


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)
# YAML 1.2 floats: an exponent without a dot (5e4, 1E-3) is a number, as every other reader
# of the file (and its author) takes it; PyYAML's YAML 1.1 resolver reads it as text.
_FLOAT_12 = re.compile(r"^[-+]?(?:[0-9][0-9_]*)?(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list("-+0123456789."))


def line_of(node: Any, key: Any = None) -> int:
    """The line of ``node`` (or of its ``key``), 0 when unknown."""
    if key is not None and isinstance(node, Node):
        return node.key_lines.get(key, node.line)
    return getattr(node, "line", 0)


def load(path: Path, raw: bytes) -> Any:
    """The document in ``raw`` (the bytes of ``path``), with lines kept; YamlError on a mistake."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise YamlError(f"{path}: must be UTF-8 text ({exc})") from None
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except _Duplicate as dup:
        raise YamlError(f"{path}:{dup.mark.line + 1}:{dup.mark.column + 1}: key {dup.key!r} appears twice in one "
                        f"mapping (first on line {dup.first}); remove one") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        raise YamlError(f"{path}{where}: not valid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise YamlError(f"{path}: not valid YAML: {exc}") from None


def escapes(name: str) -> bool:
    """Whether a file name (or glob) given in a file would leave the folder it is read in:
    absolute, ``~``, or with a ``..`` part."""
    path = Path(name)
    return path.is_absolute() or name.startswith("~") or ".." in path.parts or ".." in name.split("/")


def inside(folder: Path, name: str) -> Path | None:
    """``folder / name`` when it stays inside ``folder`` (links followed), else None."""
    if escapes(name):
        return None
    target = (folder / name).resolve()
    return target if target.is_relative_to(folder.resolve()) else None
