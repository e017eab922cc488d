"""Checking a mapping file: from the YAML a user wrote to a SourceMapping, or a MappingError
that names the file, line, table and field of the mistake. Also where shipped mappings live.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import re
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from grading import yamlfile
from grading.conditions import MEMBERSHIP, NULL_TESTS
from grading.contract import SOURCE_TABLES, VALUE_SETS, SourceTable
from grading.filecheck import FileChecker
from grading.settings import include_dir
from grading.sources.model import (
    AGGREGATES,
    EXPRESSIONS,
    FILE_FORMATS,
    KIND,
    PERIOD,
    PERIOD_DIRECTIVES,
    SOURCE_TYPES,
    WHERE_OPS,
    WHERE_TYPES,
    ColumnMap,
    Condition,
    Expr,
    Feed,
    Join,
    MappingError,
    ReadOptions,
    SourceMapping,
)

_FILE_KEYS = ("format", "encoding", "delimiter", "quote", "null_values", "decimal", "thousands")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_line = yamlfile.line_of


class _Checker(FileChecker):
    """Builds a SourceMapping from parsed YAML, raising MappingError that points at the mistake."""

    error, scope = MappingError, "table"

    def timezone(self, node: dict, key: str, table: str | None, default: str) -> str:
        name = self.text(node, key, table, default)
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            self.fail(node, f"unknown time zone {name!r}; use an IANA name such as UTC or Europe/London",
                      table, key, key=key)
        return name

    def read_options(self, node: dict, table: str | None, base: ReadOptions) -> ReadOptions:
        fmt = self.text(node, "format", table, base.format)
        if fmt not in FILE_FORMATS:
            self.fail(node, f"unknown format {fmt!r}; use one of {', '.join(FILE_FORMATS)}", table, "format",
                      key="format")
        encoding = self.text(node, "encoding", table, base.encoding)
        try:
            codecs.lookup(encoding)
        except LookupError:
            self.fail(node, f"unknown encoding {encoding!r}; e.g. utf-8, utf-8-sig (with a byte-order mark), "
                            "latin-1, cp1252, utf-16", table, "encoding", key="encoding")
        single = {}
        for key in ("delimiter", "quote", "decimal"):
            single[key] = self.text(node, key, table, getattr(base, key))
            if len(single[key]) != 1:
                self.fail(node, f"must be one character, got {single[key]!r}", table, key, key=key)
        thousands = self.text(node, "thousands", table, base.thousands)
        nulls = node.get("null_values", list(base.null_values))
        if not isinstance(nulls, list) or not all(isinstance(v, str) for v in nulls):
            self.fail(node, "must be a list of texts, e.g. [\"\", NULL, n/a]", table, "null_values",
                      key="null_values")
        return ReadOptions(format=fmt, encoding=encoding, delimiter=single["delimiter"], quote=single["quote"],
                           null_values=tuple(nulls), decimal=single["decimal"], thousands=thousands)

    def location(self, node: dict) -> str:
        raw = self.text(node, "location", None)

        def expand(match: re.Match) -> str:
            name, default = match.group(1), match.group(2)
            value = os.environ.get(name) or default
            if value is None:
                self.fail(node, f"environment variable {name} is not set and has no default "
                                f"(write ${{{name}:-default}})", None, "location", key="location")
            return value

        expanded = _ENV.sub(expand, raw)
        if "://" in expanded:
            return expanded.rstrip("/")
        folder = Path(expanded).expanduser()
        return str(folder if folder.is_absolute() else (self.path.parent / folder).resolve())

    def mapping(self, doc: Any, raw: bytes) -> SourceMapping:
        self.keys(doc, ("kind", "version", "description", "owner", "source", "tables"), None,
                  "a mapping file", required=("kind", "version", "source", "tables"))
        if doc["kind"] != KIND:
            self.fail(doc, f"expected kind {KIND!r}, found {doc['kind']!r}", None, "kind", key="kind")
        version = doc["version"]
        if not isinstance(version, (str, int, float)) or isinstance(version, bool):
            self.fail(doc, f"must be a text or a number, got {version!r}", None, "version", key="version")
        source = doc["source"]
        self.keys(source, ("type", "location", "connection", *_FILE_KEYS, "timezone"), None, "source",
                  required=("type",))
        kind = source["type"]
        if kind not in SOURCE_TYPES:
            self.fail(source, f"unknown source type {kind!r}; use files or sql", None, "type", key="type")
        if kind == "files" and "location" not in source:
            self.fail(source, "is required for a file source: a folder, or a URL such as s3://bucket/exports",
                      None, "location")
        if kind == "sql":
            for key in ("location", "format", "encoding", "delimiter", "quote", "null_values"):
                if key in source:
                    self.fail(source, "applies to file sources only", None, key, key=key)
        location = self.location(source) if kind == "files" else None
        connection = self.text(source, "connection", None)
        timezone = self.timezone(source, "timezone", None, "UTC")
        options = self.read_options(source, None, ReadOptions())
        tables = doc["tables"]
        if not isinstance(tables, dict) or not tables:
            self.fail(doc, "must map one or more of " + ", ".join(SOURCE_TABLES), None, "tables", key="tables")
        feeds: dict[str, tuple[Feed, ...]] = {}
        for table, node in tables.items():
            if table not in SOURCE_TABLES:
                self.fail(tables, f"unknown table {table!r}; a mapping feeds {', '.join(SOURCE_TABLES)}",
                          None, None, key=table)
            items = node if isinstance(node, list) else [node]
            if not items:
                self.fail(tables, "needs one feed, or a list of feeds", table, None, key=table)
            feeds[table] = tuple(self.feed(table, item, kind, timezone, options) for item in items)
        return SourceMapping(path=self.path, version=str(version), description=str(doc.get("description", "")),
                             kind=kind, location=location, connection=connection, feeds=feeds,
                             content_hash=hashlib.sha256(raw).hexdigest())

    def feed(self, table: str, node: Any, kind: str, timezone: str, options: ReadOptions) -> Feed:
        self.keys(node, ("from", "columns", "where", "join", "group_by", "timezone", "description", *_FILE_KEYS),
                  table, "a feed", required=("from", "columns"))
        source = self.feed_source(node, table, kind)
        columns_node = node["columns"]
        if not isinstance(columns_node, dict) or not columns_node:
            self.fail(node, "must map canonical columns to source columns", table, "columns", key="columns")
        feed_zone = self.timezone(node, "timezone", table, timezone)
        columns = self.columns(table, columns_node)
        group_by = self.group_by(node, table, columns, columns_node)
        where = self.listed(node, "where", table, "must be a list of conditions (all must hold)")
        joins = self.listed(node, "join", table, "must be a list of lookups")
        return Feed(table=table, source=source, columns=columns, line=_line(node), group_by=group_by,
                    where=tuple(self.condition(table, w) for w in where),
                    joins=tuple(self.join(table, j, kind) for j in joins),
                    timezone=feed_zone, read=self.read_options(node, table, options))

    def feed_source(self, node: dict, table: str, kind: str) -> str:
        """A feed's from: a file pattern inside the location, or a table; file options on files only."""
        source = self.text(node, "from", table)
        if kind == "files":
            self.inside_location(node, source, table, "from")
            self.period_pattern(node, source, table)
        elif PERIOD.search(source):
            self.fail(node, "{period:...} applies to file patterns only", table, "from", key="from")
        if kind == "sql" and any(k in node for k in _FILE_KEYS if k not in ("decimal", "thousands")):
            self.fail(node, "file options (format, encoding, delimiter, quote, null_values) apply to file sources "
                            "only", table)
        return source

    def columns(self, table: str, columns_node: dict) -> dict[str, ColumnMap]:
        """The canonical columns of a feed, every one raw requires included."""
        spec = SOURCE_TABLES[table]
        columns = {}
        for name, value in columns_node.items():
            if name not in spec.columns:
                self.fail(columns_node, f"{table} has no column {name!r}; its columns are "
                                        f"{', '.join(spec.columns)}", table, str(name), key=name)
            columns[name] = self.column(table, spec, name, value, columns_node)
        for name in spec.not_null:
            if name not in columns:
                self.fail(columns_node, f"missing {name!r}: raw.{table}.{name} is required; map a source column "
                                        f"or give a constant ({{value: ...}})", table, "columns")
        return columns

    def group_by(self, node: dict, table: str, columns: dict[str, ColumnMap], columns_node: dict) -> str | None:
        """A feed's group_by: one of its canonical columns, required by any column's aggregate."""
        group_by = self.text(node, "group_by", table)
        if group_by is not None and group_by not in columns:
            self.fail(node, f"must name one of the feed's canonical columns ({', '.join(columns)}), "
                            f"e.g. order_id for order lines", table, "group_by", key="group_by")
        for column in columns.values():
            if column.aggregate and not group_by:
                self.fail(columns_node, "aggregate needs group_by on the feed", table, column.name,
                          key=column.name)
        return group_by

    def listed(self, node: dict, key: str, table: str, message: str) -> list:
        """``node[key]`` as a list: absent is empty, a single mapping is a list of one."""
        items = node.get(key, [])
        if isinstance(items, dict):
            items = [items]
        if not isinstance(items, list):
            self.fail(node, message, table, key, key=key)
        return items

    def inside_location(self, node: dict, pattern: str, table: str, field_name: str) -> None:
        """A file pattern must stay inside the source location (no absolute path, ~ or ..)."""
        if yamlfile.escapes(pattern):
            self.fail(node, f"{pattern!r} leaves the source location: name files inside it (location: sets the "
                            "folder)", table, field_name, key="from")

    def period_pattern(self, node: dict, source: str, table: str) -> None:
        found = PERIOD.findall(source)
        if len(found) > 1:
            self.fail(node, "a file pattern holds at most one {period:...}", table, "from", key="from")
        if found:
            directives = re.findall(r"%.", found[0])
            unknown = [d for d in directives if d not in PERIOD_DIRECTIVES]
            if unknown or not any(d in directives for d in ("%Y", "%y")):
                self.fail(node, f"{{period:{found[0]}}} must use {' '.join(PERIOD_DIRECTIVES)} and include a "
                                "year (%Y or %y), e.g. orders_{period:%Y-%m}.csv", table, "from", key="from")

    def expr(self, value: Any, parent: Any, table: str, name: str, top: bool = False) -> Expr:
        if isinstance(value, str):
            return Expr("column", column=value)
        if isinstance(value, (bool, int, float)) or value is None:
            self.fail(parent, f"YAML read this column name as {value!r}: quote it (e.g. \"no\", \"2024\")",
                      table, name, key=name if top else None)
        if not isinstance(value, dict):
            self.fail(parent, f"must be a source column name or a mapping with one of {', '.join(EXPRESSIONS)}, "
                              f"got {value!r}", table, name, key=name if top else None)
        ops = [k for k in EXPRESSIONS if k in value]
        if len(ops) != 1:
            self.fail(value, f"needs exactly one of {', '.join(EXPRESSIONS)}", table, name)
        op = ops[0]
        if op == "column":
            if not isinstance(value["column"], str) or not value["column"]:
                self.fail(value, f"must name a source column, got {value['column']!r} (quote names YAML reads as "
                                 "booleans or numbers, e.g. \"no\")", table, name, key="column")
            return Expr("column", column=value["column"])
        if op == "value":
            constant = value["value"]
            if not isinstance(constant, (str, int, float, bool, date)):
                self.fail(value, f"a constant must be a text, number, boolean or date, got {constant!r}", table,
                          name, key="value")
            return Expr("value", value=constant)
        args = value[op]
        if not isinstance(args, list) or len(args) < 2:
            self.fail(value, f"{op} needs a list of two or more operands", table, name, key=op)
        if not top and set(value) - {op}:
            self.fail(value, "an operand holds only an expression, no options", table, name)
        return Expr(op, args=tuple(self.expr(a, value, table, name) for a in args))

    def column(self, table: str, spec: SourceTable, name: str, value: Any, parent: dict) -> ColumnMap:
        kind = spec.kind(name)
        line = _line(parent, name)
        expr = self.expr(value, parent, table, name, top=True)
        options = value if isinstance(value, dict) else {}
        allowed = {*EXPRESSIONS, "format", "timezone", "map", "prefix_map", "default", "aggregate", "absolute",
                   "prefix", "separator"}
        self.keys(options, sorted(allowed), table, f"column {name!r}")
        only = {"format": ("timestamp",), "timezone": ("timestamp",), "absolute": ("amount",),
                "prefix": ("text",), "map": ("text", "flag", "amount", "integer"),
                "prefix_map": ("text", "flag", "amount", "integer")}
        for key, kinds in only.items():
            if key in options and kind not in kinds:
                self.fail(options, f"does not apply to {table}.{name} ({kind})", table, f"{name}.{key}", key=key)
        if "separator" in options and expr.op != "concat":
            self.fail(options, "separator goes with concat", table, f"{name}.separator", key="separator")
        fmt = self.text(options, "format", table)
        if fmt is not None and "%" not in fmt:
            self.fail(options, f"a format uses strftime codes, e.g. \"%d/%m/%y\" or \"%Y-%m-%d %H:%M:%S\"; "
                               f"got {fmt!r}", table, f"{name}.format", key="format")
        zone = self.timezone(options, "timezone", table, "") if "timezone" in options else None
        values = self.value_map(options, "map", table, name, kind)
        prefixes = self.value_map(options, "prefix_map", table, name, kind)
        aggregate = self.aggregate(options, table, name, kind)
        absolute = options.get("absolute", False)
        if not isinstance(absolute, bool):
            self.fail(options, "must be true or false", table, f"{name}.absolute", key="absolute")
        prefix = self.text(options, "prefix", table, "")
        separator = options.get("separator", "")
        if not isinstance(separator, str):
            self.fail(options, "must be a text", table, f"{name}.separator", key="separator")
        has_default = "default" in options
        default = options.get("default")
        if has_default and not isinstance(default, (str, int, float, bool, date)):
            self.fail(options, f"a default must be a text, number, boolean or date, got {default!r}", table,
                      f"{name}.default", key="default")
        offered = [*(values or {}).values(), *(v for _, v in (prefixes or {}).items())]
        offered += [default] if has_default else []
        offered += [expr.value] if expr.op == "value" else []
        self.value_set(offered, options or parent, table, name, key=None if options else name)
        return ColumnMap(
            name=name, kind=kind, expr=expr, line=line, format=fmt, timezone=zone, values=values,
            prefixes=tuple(sorted((prefixes or {}).items(), key=lambda kv: -len(kv[0]))), default=default,
            has_default=has_default, aggregate=aggregate, absolute=absolute, prefix=prefix, separator=separator,
        )

    def aggregate(self, options: dict, table: str, name: str, kind: str) -> str | None:
        """How a column's lines combine under group_by: one of AGGREGATES; sum for numbers only."""
        aggregate = self.text(options, "aggregate", table)
        if aggregate is not None and aggregate not in AGGREGATES:
            self.fail(options, f"unknown aggregate {aggregate!r}; use one of {', '.join(AGGREGATES)}", table,
                      f"{name}.aggregate", key="aggregate")
        if aggregate == "sum" and kind not in ("amount", "integer"):
            self.fail(options, f"sum applies to numbers, not {kind}", table, f"{name}.aggregate", key="aggregate")
        return aggregate

    def value_set(self, offered: list, node: Any, table: str, name: str, key: Any) -> None:
        """Constants a column's options give must be values of its value set (grading.contract), if any."""
        allowed = VALUE_SETS.get((table, name))
        for item in offered if allowed else ():
            if item not in allowed:
                self.fail(node, f"{item!r} is not a {name}; use one of {', '.join(allowed)}", table, name, key=key)

    def value_map(self, options: dict, key: str, table: str, name: str, kind: str) -> dict[str, Any] | None:
        if key not in options:
            return None
        node = options[key]
        if not isinstance(node, dict) or not node:
            self.fail(options, "must map source values to canonical values", table, f"{name}.{key}", key=key)
        out = {}
        for source_value, target in node.items():
            if source_value is None:
                self.fail(node, "YAML read a key as null: quote it (\"null\": ..., \"~\": ...)", table,
                          f"{name}.{key}", key=source_value)
            if kind == "text" and not isinstance(target, (str, int, float)) or isinstance(target, list | dict):
                self.fail(node, f"maps to a {kind} value, got {target!r}", table, f"{name}.{key}", key=source_value)
            out[str(source_value)] = str(target) if kind == "text" else target
        return out

    def condition(self, table: str, node: Any) -> Condition:
        self.keys(node, ("column", "op", "value", "other", "as", "format"), table, "a where condition",
                  required=("column", "op"))
        column = self.text(node, "column", table)
        op = node["op"]
        if op not in WHERE_OPS:
            self.fail(node, f"unknown operator {op!r}; use one of {', '.join(WHERE_OPS)}", table, "where.op",
                      key="op")
        as_type = self.text(node, "as", table, "text")
        if as_type not in WHERE_TYPES:
            self.fail(node, f"unknown type {as_type!r}; use one of {', '.join(WHERE_TYPES)}", table, "where.as",
                      key="as")
        fmt = self.text(node, "format", table)
        if fmt is not None and as_type != "timestamp":
            self.fail(node, "format goes with as: timestamp", table, "where.format", key="format")
        other = self.text(node, "other", table)
        has_value = "value" in node
        if op in NULL_TESTS:
            if has_value or other:
                self.fail(node, f"{op} takes no value", table, "where.value")
        elif op in MEMBERSHIP:
            if not isinstance(node.get("value"), list) or not node["value"] or other:
                self.fail(node, f"{op} needs a non-empty list value", table, "where.value")
        elif has_value == bool(other):
            self.fail(node, f"{op} needs either value (a constant) or other (a column)", table, "where.value")
        if op == "starts_with" and not isinstance(node.get("value"), str):
            self.fail(node, "starts_with needs a text value", table, "where.value")
        value = node.get("value")
        if isinstance(value, list):
            value = tuple(str(v) if as_type == "text" else v for v in value)
        elif as_type == "text" and value is not None:
            value = str(value)
        return Condition(column=column, op=op, value=value, other=other, as_type=as_type, format=fmt,
                         line=_line(node))

    def join(self, table: str, node: Any, kind: str) -> Join:
        self.keys(node, ("from", "on", "take", "sum"), table, "a join", required=("from", "on"))
        source = self.text(node, "from", table)
        if kind == "files":
            self.inside_location(node, source, table, "join.from")
        if PERIOD.search(source):
            self.fail(node, "a lookup reads all its files; {period:...} applies to feeds", table, "join.from",
                      key="from")
        on = node["on"]
        if isinstance(on, str):
            left = right = on
        elif isinstance(on, dict) and set(on) == {"left", "right"} and all(isinstance(v, str) for v in on.values()):
            left, right = on["left"], on["right"]
        else:
            self.fail(node, "must be a column name, or {left: column here, right: column there}", table,
                      "join.on", key="on")
        lists = {}
        for key in ("take", "sum"):
            items = node.get(key, [])
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                self.fail(node, "must be a list of column names", table, f"join.{key}", key=key)
            lists[key] = tuple(items)
        if not lists["take"] and not lists["sum"]:
            self.fail(node, "needs take (columns to copy) or sum (columns to add up per key)", table, "join")
        return Join(source=source, left=left, right=right, take=lists["take"], sum=lists["sum"], line=_line(node))


def load_mapping(path: Path | str) -> SourceMapping:
    """Load and check a mapping file; a mistake raises MappingError naming file, line, table and field."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise MappingError(f"{path}: no such mapping file (mappings shipped: "
                           f"{', '.join(p.stem for p in sorted(mappings_dir().glob('*.yaml')))})") from None
    try:
        doc = yamlfile.load(path, raw)
    except yamlfile.YamlError as exc:
        raise MappingError(str(exc)) from None
    return _Checker(path).mapping(doc, raw)


def mappings_dir() -> Path:
    """The shipped mappings (include/mappings/), where a bare GRADING_SOURCE_MAPPING name is looked up."""
    return include_dir() / "mappings"
