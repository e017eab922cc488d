"""Source mappings: point the pipeline at a real export by writing one YAML file.

Real data does not arrive in the canonical schema (grading.contract): a CRM or ERP export
has its own column names, date formats, encodings, one row per order *line*, status words
of its own, and often no customer table at all. A mapping file says, per canonical table,
where the rows come from (a table of a SQL source, or a file pattern of a CSV / Parquet
drop in a local folder or anywhere Airflow's ObjectStoragePath reaches) and how each
canonical column is made from the source's columns. Extraction then reads exactly the
rows of a data interval and hands canonical frames to grading.extract, which replaces the
interval in raw as it does for a canonical SQL source.

Like the rule files, a mapping is data: it is checked when loaded, every mistake names the
file, line, table and field, and nothing in it is ever evaluated as code. Expressions are
a closed set (column, value, multiply, add, concat, coalesce) applied column-wise with
pandas, so half a million export lines map in about a second.

The format is documented with an example per feature in include/mappings/README.md.
"""

from __future__ import annotations

import codecs
import hashlib
import logging
import operator
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import reduce
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from grading import source_window, yamlfile
from grading.contract import SOURCE_TABLES, VALUE_SETS, SourceTable
from grading.convert import FALSE_WORDS as _FALSE
from grading.convert import TRUE_WORDS as _TRUE
from grading.convert import SourceDataError
from grading.settings import include_dir

log = logging.getLogger(__name__)

KIND = "source_mapping"
SOURCE_TYPES = ("files", "sql")
FILE_FORMATS = ("csv", "parquet")
EXPRESSIONS = ("column", "value", "multiply", "add", "concat", "coalesce")
AGGREGATES = ("sum", "min", "max", "first", "last")
WHERE_OPS = ("==", "!=", "<", "<=", ">", ">=", "in", "not_in", "is_null", "not_null", "starts_with")
WHERE_TYPES = ("text", "number", "timestamp")
_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}
# Rows of files and SQL windows are read with this margin around the interval, then cut
# exactly after their times are converted to UTC (a local day may start up to 14 h off).
_MARGIN = timedelta(days=1)
# strftime directives a file name's {period:...} may use, with what they match and the
# period length they imply.
_PERIOD_DIRECTIVES = {
    "%Y": (r"\d{4}", "year"), "%y": (r"\d{2}", "year"), "%m": (r"\d{2}", "month"), "%b": (r"[A-Za-z]{3}", "month"),
    "%d": (r"\d{2}", "day"), "%j": (r"\d{3}", "day"), "%H": (r"\d{2}", "hour"),
}
_PERIOD_STEPS = {"year": pd.DateOffset(years=1), "month": pd.DateOffset(months=1),
                 "day": pd.DateOffset(days=1), "hour": pd.DateOffset(hours=1)}
_PERIOD = re.compile(r"\{period:([^{}]+)\}")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_OFFSET = r"(?:Z|[+-]\d{2}:?\d{2})$"
_COMPRESSION = {".gz": "gzip", ".gzip": "gzip", ".bz2": "bz2", ".zst": "zstd", ".lz4": "lz4"}


class MappingError(ValueError):
    """A mapping file is not valid; the message names the file, line, table and field."""


# --------------------------------------------------------------------------------------
# The mapping, as checked data


@dataclass(frozen=True)
class Expr:
    """How a value is made from a row: one of EXPRESSIONS, never text that is executed."""

    op: str
    column: str | None = None
    value: Any = None
    args: tuple[Expr, ...] = ()

    def columns(self) -> set[str]:
        if self.op == "column":
            return {self.column}
        return set().union(*(a.columns() for a in self.args)) if self.args else set()

    def describe(self) -> str:
        if self.op == "column":
            return repr(self.column)
        if self.op == "value":
            return f"value {self.value!r}"
        return f"{self.op}({', '.join(a.describe() for a in self.args)})"


@dataclass(frozen=True)
class ColumnMap:
    """One canonical column of a feed: its expression and how the result is cleaned up."""

    name: str
    kind: str  # timestamp, amount, integer, flag or text (grading.contract)
    expr: Expr
    line: int
    format: str | None = None
    timezone: str | None = None
    values: dict[str, Any] | None = None  # map:
    prefixes: tuple[tuple[str, Any], ...] = ()  # prefix_map:, longest prefix first
    default: Any = None
    has_default: bool = False
    aggregate: str | None = None
    absolute: bool = False
    prefix: str = ""
    separator: str = ""


@dataclass(frozen=True)
class Condition:
    """A row filter leaf: ``column op value`` or ``column op other`` (another column)."""

    column: str
    op: str
    value: Any = None
    other: str | None = None
    as_type: str = "text"
    format: str | None = None
    line: int = 0

    def columns(self) -> set[str]:
        return {self.column} | ({self.other} if self.other else set())


@dataclass(frozen=True)
class Join:
    """Columns looked up in another file or table by a key (a left join)."""

    source: str
    left: str
    right: str
    take: tuple[str, ...] = ()
    sum: tuple[str, ...] = ()
    line: int = 0

    @property
    def provides(self) -> tuple[str, ...]:
        return (*self.take, *self.sum)


@dataclass(frozen=True)
class ReadOptions:
    """How the files of a feed are parsed (ignored for SQL sources)."""

    format: str = "csv"
    encoding: str = "utf-8"
    delimiter: str = ","
    quote: str = '"'
    null_values: tuple[str, ...] = ("",)
    decimal: str = "."
    thousands: str | None = None


@dataclass(frozen=True)
class Feed:
    """One source of a canonical table: where its rows come from and how they map."""

    table: str
    source: str  # from: a file name or pattern, or a table name
    columns: dict[str, ColumnMap]
    line: int
    where: tuple[Condition, ...] = ()
    joins: tuple[Join, ...] = ()
    group_by: str | None = None
    timezone: str = "UTC"
    read: ReadOptions = field(default_factory=ReadOptions)

    @property
    def spec(self) -> SourceTable:
        return SOURCE_TABLES[self.table]

    def referenced(self) -> set[str]:
        """Every source column the feed names, before joins add theirs."""
        names = set().union(*(c.expr.columns() for c in self.columns.values()))
        names |= set().union(*(w.columns() for w in self.where)) if self.where else set()
        return names | {j.left for j in self.joins}

    def main_columns(self) -> set[str]:
        """The columns read from the feed's own file or table (the rest come from joins)."""
        return self.referenced() - {c for j in self.joins for c in j.provides}


@dataclass(frozen=True)
class SourceMapping:
    path: Path
    version: str
    description: str
    kind: str  # files or sql
    location: str | None
    connection: str | None
    feeds: dict[str, tuple[Feed, ...]]
    content_hash: str

    def sources(self) -> dict[tuple[str, ReadOptions], set[str]]:
        """Every file pattern or table read, with the union of the columns wanted from it."""
        wanted: dict[tuple[str, ReadOptions], set[str]] = {}
        for feeds in self.feeds.values():
            for feed in feeds:
                wanted.setdefault((feed.source, feed.read), set()).update(feed.main_columns())
                for join in feed.joins:
                    wanted.setdefault((join.source, feed.read), set()).update({join.right, *join.provides})
        return wanted


# --------------------------------------------------------------------------------------
# Loading and checking


_Node, _Seq, _line = yamlfile.Node, yamlfile.Seq, yamlfile.line_of


class _Checker:
    """Builds a SourceMapping from parsed YAML, raising MappingError that points at the mistake."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, node: Any, message: str, table: str | None = None, field_name: str | None = None,
             key: Any = None) -> None:
        line = _line(node, key)
        parts = [f"{self.path}:{line}" if line else str(self.path)]
        if table:
            parts.append(f"table {table!r}")
        if field_name:
            parts.append(f"field {field_name!r}")
        raise MappingError(": ".join(parts) + f": {message}")

    def keys(self, node: Any, allowed: Iterable[str], table: str | None, what: str,
             required: Iterable[str] = ()) -> None:
        if not isinstance(node, dict):
            self.fail(node, f"{what} must be a mapping", table)
        unknown = [k for k in node if k not in allowed]
        if unknown:
            self.fail(node, f"unknown key(s) {', '.join(map(repr, unknown))} in {what}; "
                            f"known: {', '.join(allowed)}", table, str(unknown[0]), key=unknown[0])
        for key in required:
            if key not in node:
                self.fail(node, f"is required in {what}", table, key)

    def text(self, node: dict, key: str, table: str | None = None, default: str | None = None) -> str | None:
        if key not in node:
            return default
        value = node[key]
        if not isinstance(value, str) or not value:
            self.fail(node, f"must be a non-empty text, got {value!r}", table, key, key=key)
        return value

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
        self.keys(source, ("type", "location", "connection", "format", "encoding", "delimiter", "quote",
                           "null_values", "decimal", "thousands", "timezone"), None, "source", required=("type",))
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
        file_keys = ("format", "encoding", "delimiter", "quote", "null_values", "decimal", "thousands")
        self.keys(node, ("from", "columns", "where", "join", "group_by", "timezone", "description", *file_keys),
                  table, "a feed", required=("from", "columns"))
        source = self.text(node, "from", table)
        if kind == "files":
            self.inside_location(node, source, table, "from")
            self.period_pattern(node, source, table)
        elif _PERIOD.search(source):
            self.fail(node, "{period:...} applies to file patterns only", table, "from", key="from")
        if kind == "sql" and any(k in node for k in file_keys if k not in ("decimal", "thousands")):
            self.fail(node, "file options (format, encoding, delimiter, quote, null_values) apply to file sources "
                            "only", table)
        spec = SOURCE_TABLES[table]
        columns_node = node["columns"]
        if not isinstance(columns_node, dict) or not columns_node:
            self.fail(node, "must map canonical columns to source columns", table, "columns", key="columns")
        feed_zone = self.timezone(node, "timezone", table, timezone)
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
        group_by = self.text(node, "group_by", table)
        if group_by is not None and group_by not in columns:
            self.fail(node, f"must name one of the feed's canonical columns ({', '.join(columns)}), "
                            f"e.g. order_id for order lines", table, "group_by", key="group_by")
        for column in columns.values():
            if column.aggregate and not group_by:
                self.fail(columns_node, "aggregate needs group_by on the feed", table, column.name,
                          key=column.name)
        where = node.get("where", [])
        if isinstance(where, dict):
            where = [where]
        if not isinstance(where, list):
            self.fail(node, "must be a list of conditions (all must hold)", table, "where", key="where")
        joins = node.get("join", [])
        if isinstance(joins, dict):
            joins = [joins]
        if not isinstance(joins, list):
            self.fail(node, "must be a list of lookups", table, "join", key="join")
        return Feed(table=table, source=source, columns=columns, line=_line(node), group_by=group_by,
                    where=tuple(self.condition(table, w) for w in where),
                    joins=tuple(self.join(table, j, kind) for j in joins),
                    timezone=feed_zone, read=self.read_options(node, table, options))

    def inside_location(self, node: dict, pattern: str, table: str, field_name: str) -> None:
        """A file pattern must stay inside the source location (no absolute path, ~ or ..)."""
        if yamlfile.escapes(pattern):
            self.fail(node, f"{pattern!r} leaves the source location: name files inside it (location: sets the "
                            "folder)", table, field_name, key="from")

    def period_pattern(self, node: dict, source: str, table: str) -> None:
        found = _PERIOD.findall(source)
        if len(found) > 1:
            self.fail(node, "a file pattern holds at most one {period:...}", table, "from", key="from")
        if found:
            directives = re.findall(r"%.", found[0])
            unknown = [d for d in directives if d not in _PERIOD_DIRECTIVES]
            if unknown or not any(d in directives for d in ("%Y", "%y")):
                self.fail(node, f"{{period:{found[0]}}} must use {' '.join(_PERIOD_DIRECTIVES)} and include a "
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
        aggregate = self.text(options, "aggregate", table)
        if aggregate is not None and aggregate not in AGGREGATES:
            self.fail(options, f"unknown aggregate {aggregate!r}; use one of {', '.join(AGGREGATES)}", table,
                      f"{name}.aggregate", key="aggregate")
        if aggregate == "sum" and kind not in ("amount", "integer"):
            self.fail(options, f"sum applies to numbers, not {kind}", table, f"{name}.aggregate", key="aggregate")
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
        allowed_values = VALUE_SETS.get((table, name))
        if allowed_values:
            offered = [*(values or {}).values(), *(v for _, v in (prefixes or {}).items())]
            offered += [default] if has_default else []
            offered += [expr.value] if expr.op == "value" else []
            for item in offered:
                if item not in allowed_values:
                    self.fail(options or parent, f"{item!r} is not a {name}; use one of {', '.join(allowed_values)}",
                              table, name, key=None if options else name)
        return ColumnMap(
            name=name, kind=kind, expr=expr, line=line, format=fmt, timezone=zone, values=values,
            prefixes=tuple(sorted((prefixes or {}).items(), key=lambda kv: -len(kv[0]))), default=default,
            has_default=has_default, aggregate=aggregate, absolute=absolute, prefix=prefix, separator=separator,
        )

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
        if op in ("is_null", "not_null"):
            if has_value or other:
                self.fail(node, f"{op} takes no value", table, "where.value")
        elif op in ("in", "not_in"):
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
        if _PERIOD.search(source):
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


# --------------------------------------------------------------------------------------
# Reading files and tables


def _row_label(frame: pd.DataFrame, mask: pd.Series) -> str:
    """Where the first row of ``mask`` came from: 'orders.csv row 17' (data rows, after the header)."""
    first = mask[mask].index[0]
    return f"{frame.at[first, '__file']} row {int(frame.at[first, '__row'])}"


def _first_value(values: pd.Series, mask: pd.Series) -> Any:
    return values[mask].iloc[0]


@dataclass(frozen=True)
class _File:
    name: str  # relative to the location, with forward slashes
    path: Any  # pathlib.Path or ObjectStoragePath
    period: tuple[pd.Timestamp, pd.Timestamp] | None


class _FileStore:
    """The files of a drop: a local folder (pathlib) or a URL through Airflow's ObjectStoragePath."""

    def __init__(self, location: str, connection: str | None):
        self.location = location
        if "://" in location:
            from airflow.sdk import ObjectStoragePath  # only remote drops pay for the import

            self.root = ObjectStoragePath(location, conn_id=connection)
            self.remote = True
        else:
            self.root = Path(location)
            self.remote = False
            if not self.root.is_dir():
                raise SourceDataError(f"source location {location} is not a folder")

    def _name(self, path: Any) -> str:
        if self.remote:
            return path.path[len(self.root.path):].lstrip("/")
        return path.relative_to(self.root).as_posix()

    def files(self, pattern: str) -> list[_File]:
        """Every file matching ``pattern`` (a glob, optionally with one {period:FORMAT}), sorted by name."""
        match = _PERIOD.search(pattern)
        glob = _PERIOD.sub("*", pattern)
        regex, fmt = None, None
        if match:
            fmt = match.group(1)
            piece = re.sub(r"%.", lambda d: _PERIOD_DIRECTIVES[d.group(0)][0], re.escape(fmt))
            regex = re.compile(_glob_regex(pattern[:match.start()]) + f"(?P<period>{piece})"
                               + _glob_regex(pattern[match.end():]) + r"\Z")
            unit = min((_PERIOD_DIRECTIVES[d][1] for d in re.findall(r"%.", fmt)),
                       key=("hour", "day", "month", "year").index)
        if yamlfile.escapes(pattern):
            raise SourceDataError(f"file pattern {pattern!r} leaves the source location {self.location}")
        found = []
        for path in self.root.glob(glob):
            if not self.remote and not path.resolve().is_relative_to(self.root.resolve()):
                raise SourceDataError(f"{self._name(path)} leads outside the source location {self.location} "
                                      "(a link?): files are read from inside it only")
            name = self._name(path)
            period = None
            if regex is not None:
                hit = regex.match(name)
                if not hit:
                    continue
                try:
                    begin = pd.Timestamp(datetime.strptime(hit.group("period"), fmt))
                except ValueError:
                    log.warning("skipping %s: %r does not match {period:%s}", name, hit.group("period"), fmt)
                    continue
                period = (begin, begin + _PERIOD_STEPS[unit])
            found.append(_File(name, path, period))
        return sorted(found, key=lambda f: f.name)

    def open(self, file: _File) -> Any:
        """A readable binary stream, decompressed by the file name's suffix."""
        import pyarrow as pa

        compression = _COMPRESSION.get(Path(file.name).suffix.lower())
        if not self.remote:
            return pa.input_stream(str(file.path), compression=compression)
        return pa.input_stream(file.path.open("rb"), compression=compression)


def _glob_regex(glob: str) -> str:
    out, i = [], 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out.append(r"(?:.*/)?")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return "".join(out)


def _arrow_encoding(encoding: str) -> str:
    """Arrow reads UTF-8 natively and skips a byte-order mark itself; other encodings are transcoded."""
    name = codecs.lookup(encoding).name
    return "utf8" if name in ("utf-8", "utf-8-sig") else name


def _encoding_problem(store: _FileStore, file: _File, encoding: str) -> str:
    """Find where a file stops being ``encoding``: the line and the offending bytes."""
    if codecs.lookup(encoding).name == "utf-8-sig":  # a byte-order mark is valid UTF-8; keep offsets exact
        encoding = "utf-8"
    decoder = codecs.getincrementaldecoder(encoding)()
    newline = b"\n"
    line, offset = 1, 0
    with store.open(file) as stream:
        while chunk := stream.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                bad = chunk[exc.start:exc.start + 4].hex(" ")
                at = line + chunk[:exc.start].count(newline)
                return f"line {at} (byte offset {offset + exc.start}, bytes {bad}) is not valid {encoding}"
            line += chunk.count(newline)
            offset += len(chunk)
    return f"it is not valid {encoding}"


def _read_file(store: _FileStore, file: _File, columns: list[str], options: ReadOptions,
               lines: dict[str, str]) -> pd.DataFrame:
    """The named columns of one CSV or Parquet file as text (CSV) or native types (Parquet)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    try:
        if options.format == "parquet":
            with store.open(file) as stream:
                names = pq.read_schema(stream).names
                _check_columns(file.name, names, columns, lines)
            with store.open(file) as stream:
                frame = pq.read_table(stream, columns=columns).to_pandas()
        else:
            read = pacsv.ReadOptions(encoding=_arrow_encoding(options.encoding))
            parse = pacsv.ParseOptions(delimiter=options.delimiter, quote_char=options.quote, newlines_in_values=True)
            convert = pacsv.ConvertOptions(
                include_columns=columns, column_types={c: pa.string() for c in columns},
                null_values=list(options.null_values), strings_can_be_null=True, quoted_strings_can_be_null=True,
            )
            with store.open(file) as stream:
                table = pacsv.read_csv(stream, read_options=read, parse_options=parse, convert_options=convert)
            frame = table.to_pandas()
    except KeyError:  # pyarrow: a column in include_columns is not in the file
        with store.open(file) as stream:
            names = pacsv.open_csv(stream, read_options=pacsv.ReadOptions(
                encoding=_arrow_encoding(options.encoding)), parse_options=pacsv.ParseOptions(
                delimiter=options.delimiter, quote_char=options.quote, newlines_in_values=True)).schema.names
        _check_columns(file.name, names, columns, lines)
        raise
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        if "UTF8" in str(exc) or isinstance(exc, UnicodeDecodeError) or "decode" in str(exc):
            where = _encoding_problem(store, file, options.encoding)
            raise SourceDataError(
                f"{file.name}: declared encoding {options.encoding}, but {where}. Declare the file's real "
                "encoding in the mapping (encoding: latin-1, cp1252, utf-16, ...)") from exc
        raise SourceDataError(f"{file.name}: not a {options.format.upper()} file the mapping can read "
                              f"(delimiter {options.delimiter!r}): {exc}") from exc
    if options.format == "csv":
        for column in columns:  # exports pad values with blanks; an all-blank value is missing
            stripped = frame[column].str.strip()
            frame[column] = stripped.where(stripped != "")
    frame["__file"] = file.name
    frame["__row"] = np.arange(1, len(frame) + 1, dtype="int64")
    return frame


def _check_columns(where: str, names: list[str], wanted: Iterable[str], lines: dict[str, str]) -> None:
    missing = [c for c in wanted if c not in names]
    if not missing:
        return
    column = missing[0]
    near = [n for n in names if n.strip().lower() == column.strip().lower()]
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    bom = " The first header starts with a byte-order mark: declare encoding: utf-8-sig." \
        if names and names[0].startswith("\ufeff") else ""
    raise SourceDataError(f"{where}: the mapping names column {column!r}{hint} ({lines.get(column, 'mapping')}), "
                          f"which it does not have. Its columns: {', '.join(names)}.{bom}")


# --------------------------------------------------------------------------------------
# Turning source values into canonical ones (vectorised; per-row Python never runs)


class _Rows:
    """A source frame under mapping, with what error messages need to point at a row."""

    def __init__(self, frame: pd.DataFrame, mapping: SourceMapping, feed: Feed):
        self.frame, self.mapping, self.feed = frame, mapping, feed

    def where_in_mapping(self, column: ColumnMap) -> str:
        return f"{self.mapping.path.name}:{column.line}"

    def fail(self, mask: pd.Series, values: pd.Series, label: str, problem: str, hint: str = "") -> None:
        count = int(mask.sum())
        value = _first_value(values, mask)
        raise SourceDataError(
            f"{_row_label(self.frame, mask)}: {label}: {value!r} {problem}"
            f"{f' ({count} rows like this)' if count > 1 else ''}. {hint}".rstrip()
        )


def _text(values: pd.Series) -> pd.Series:
    """Text as the warehouse stores it: integral floats without '.0', blanks as missing."""
    if pd.api.types.is_float_dtype(values) and (values.dropna() % 1 == 0).all():
        values = values.astype("Int64")
    if pd.api.types.is_datetime64_any_dtype(values):
        values = values.dt.strftime("%Y-%m-%d %H:%M:%S")
    out = values.astype("string").str.strip()
    return out.where(out != "")


def _numbers(rows: _Rows, values: pd.Series, label: str) -> pd.Series:
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        return values.astype("float64")
    text = _text(values)
    options = rows.feed.read
    cleaned = text
    if options.thousands:
        cleaned = cleaned.str.replace(options.thousands, "", regex=False)
    if options.decimal != ".":
        cleaned = cleaned.str.replace(options.decimal, ".", regex=False)
    numbers = _fast_numbers(cleaned)
    if numbers is None:  # a value is not a number: find and name it
        numbers = pd.to_numeric(cleaned, errors="coerce").astype("float64")
    bad = numbers.isna() & text.notna()
    if bad.any():
        rows.fail(bad, text, label, "is not a number",
                  "Check the column, or declare decimal: / thousands: for this export.")
    return numbers


def _fast_numbers(text: pd.Series) -> pd.Series | None:
    """Arrow's text-to-number cast: several times faster than pd.to_numeric; None if a value is not a number."""
    import pyarrow as pa
    import pyarrow.compute as pac

    try:
        cast = pac.cast(pa.array(text, type=pa.string(), from_pandas=True), pa.float64())
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        return None
    return pd.Series(cast.to_numpy(zero_copy_only=False), index=text.index, dtype="float64")


def _timestamps(rows: _Rows, values: pd.Series, fmt: str | None, zone: str, label: str) -> pd.Series:
    """Naive UTC timestamps: parsed with ``fmt`` (ISO 8601 by default), local times taken in ``zone``."""
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = values
    else:
        text = _text(values)
        try:
            parsed = pd.to_datetime(text, format=fmt or "ISO8601", errors="coerce")
        except ValueError:  # offsets differ across rows (e.g. summer and winter time): convert each
            aware = text.str.contains(_OFFSET, regex=True).fillna(False).astype(bool)
            parsed = pd.Series(pd.NaT, index=text.index, dtype="datetime64[us]")
            parsed[aware] = pd.to_datetime(text[aware], format=fmt or "ISO8601", errors="coerce", utc=True) \
                .dt.tz_localize(None)
            naive = pd.to_datetime(text[~aware], format=fmt or "ISO8601", errors="coerce")
            parsed[~aware] = _localize(naive, zone)
            parsed = parsed.astype("datetime64[us]")
            zone = "UTC"
        bad = parsed.isna() & text.notna()
        if bad.any():
            rows.fail(bad, text, label, f"does not match the declared format {fmt or 'ISO 8601'!r}",
                      "Fix the value, or declare the column's format: (strftime codes, e.g. \"%d/%m/%y\").")
    if getattr(parsed.dt, "tz", None) is not None:
        return parsed.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[us]")
    return _localize(parsed, zone).astype("datetime64[us]")


def _localize(naive: pd.Series, zone: str) -> pd.Series:
    """Wall-clock times in ``zone`` to naive UTC, resolved like Python's zoneinfo (PEP 495, fold=0).

    A time that occurs twice when clocks go back is the first (summer-time) one; a time
    skipped when clocks go forward is read with the offset in force before the change.
    Both rules are what ``datetime(..., tzinfo=ZoneInfo(zone))`` does, so any plain-Python
    check of the results agrees.
    """
    naive = naive.astype("datetime64[us]")
    if zone in ("UTC", "Etc/UTC"):
        return naive
    first = np.ones(len(naive), dtype=bool)
    local = naive.dt.tz_localize(zone, ambiguous=first, nonexistent="NaT")
    utc = local.dt.tz_convert("UTC").dt.tz_localize(None)
    gap = utc.isna() & naive.notna()
    if gap.any():
        moved = naive[gap].dt.tz_localize(zone, ambiguous=first[gap.to_numpy()], nonexistent="shift_forward")
        before = moved - pd.Timedelta(1, "us")
        offset = before.dt.tz_localize(None) - before.dt.tz_convert("UTC").dt.tz_localize(None)
        utc[gap] = naive[gap] - offset
    return utc


def _flags(rows: _Rows, values: pd.Series, label: str) -> pd.Series:
    if pd.api.types.is_bool_dtype(values):
        return values.astype("boolean")
    text = _text(values).str.lower()
    out = pd.Series(pd.NA, index=values.index, dtype="boolean")
    out[text.isin(_TRUE).fillna(False).astype(bool)] = True
    out[text.isin(_FALSE).fillna(False).astype(bool)] = False
    bad = out.isna() & text.notna()
    if bad.any():
        rows.fail(bad, text, label, "is not a yes/no value",
                  f"Use {'/'.join(_TRUE)} or {'/'.join(_FALSE)}, or translate it with map:.")
    return out


def _evaluate(rows: _Rows, expr: Expr, label: str) -> pd.Series:
    frame = rows.frame
    if expr.op == "column":
        return frame[expr.column]
    if expr.op == "value":
        dtype = "string" if isinstance(expr.value, str) else None
        return pd.Series([expr.value] * len(frame), index=frame.index, dtype=dtype)
    parts = [_evaluate(rows, a, label) for a in expr.args]
    if expr.op in ("multiply", "add"):
        numbers = [_numbers(rows, p, label if a.op != "column" else f"column {a.column!r} of {label}")
                   for p, a in zip(parts, expr.args, strict=True)]
        return reduce(operator.mul if expr.op == "multiply" else operator.add, numbers)
    if expr.op == "concat":
        return reduce(lambda a, b: a + b, [_text(p) for p in parts])  # separator added by the caller
    result = parts[0]  # coalesce
    for part in parts[1:]:
        if result.dtype != part.dtype:
            result, part = result.astype(object), part.astype(object)
        result = result.where(result.notna(), part)
    return result


def _concat(rows: _Rows, expr: Expr, separator: str, label: str) -> pd.Series:
    parts = [_text(_evaluate(rows, a, label)) for a in expr.args]
    return reduce(lambda a, b: a + separator + b, parts)


def _translate(rows: _Rows, column: ColumnMap, values: pd.Series, label: str) -> pd.Series:
    """Apply map: / prefix_map: / default:; unlisted values pass through unless a default is given."""
    if not (column.values or column.prefixes or column.has_default):
        return values
    if not (column.values or column.prefixes):
        return values.where(values.notna(), column.default) if values.isna().any() else values
    text = _text(values)
    mapped = text.map(column.values) if column.values else pd.Series(None, index=text.index, dtype=object)
    mapped = mapped.astype(object)
    for prefix, target in column.prefixes:
        hit = mapped.isna() & text.str.startswith(prefix).fillna(False).astype(bool)
        mapped[hit] = target
    unlisted = mapped.isna() & text.notna()
    mapped[unlisted] = column.default if column.has_default else text[unlisted]
    if column.has_default:
        mapped[text.isna()] = column.default
    return mapped.where(mapped.notna(), None)


def _canonical(rows: _Rows, column: ColumnMap) -> pd.Series:
    """One canonical column of a feed, typed the way raw stores it."""
    expr = column.expr
    label = (f"column {expr.column!r} -> {rows.feed.table}.{column.name}" if expr.op == "column"
             else f"{expr.describe()} -> {rows.feed.table}.{column.name}")
    label += f" ({rows.where_in_mapping(column)})"
    values = _concat(rows, expr, column.separator, label) if expr.op == "concat" else _evaluate(rows, expr, label)
    values = _translate(rows, column, values, label)
    if column.kind == "timestamp":
        return _timestamps(rows, values, column.format, column.timezone or rows.feed.timezone, label)
    if column.kind == "amount":
        return _numbers(rows, values, label)
    if column.kind == "integer":
        numbers = _numbers(rows, values, label)
        bad = numbers.notna() & (numbers % 1 != 0)
        if bad.any():
            rows.fail(bad, numbers, label, "is not a whole number")
        return numbers.astype("Int64")
    if column.kind == "flag":
        return _flags(rows, values, label)
    text = _text(values)
    if column.prefix:
        text = column.prefix + text
    allowed = VALUE_SETS.get((rows.feed.table, column.name))
    if allowed:
        bad = text.notna() & ~text.isin(allowed).fillna(False).astype(bool)
        if bad.any():
            seen = ", ".join(repr(v) for v in text[bad].value_counts().index[:5])
            rows.fail(bad, text, label, f"is not a known {column.name}",
                      f"Unmapped values: {seen}. Translate them with map: (or prefix_map:, default:) onto "
                      f"{', '.join(allowed)}.")
    return text


def _condition(rows: _Rows, cond: Condition) -> pd.Series:
    def typed(values: pd.Series, name: str) -> pd.Series:
        label = f"where column {name!r} ({rows.mapping.path.name}:{cond.line})"
        if cond.as_type == "number":
            return _numbers(rows, values, label)
        if cond.as_type == "timestamp":
            return _timestamps(rows, values, cond.format, "UTC", label)
        return _text(values)

    left = typed(rows.frame[cond.column], cond.column)
    if cond.op == "is_null":
        return left.isna()
    if cond.op == "not_null":
        return left.notna()
    if cond.op in ("in", "not_in"):
        options = list(cond.value)
        if cond.as_type == "number":
            options = [float(v) for v in options]
        hit = left.isin(options).fillna(False).astype(bool)
        return hit if cond.op == "in" else ~hit & left.notna()
    if cond.op == "starts_with":
        return left.str.startswith(cond.value).fillna(False).astype(bool)
    if cond.other is not None:
        right = typed(rows.frame[cond.other], cond.other)
    else:
        right = cond.value
        if cond.as_type == "number":
            right = float(right)
        elif cond.as_type == "timestamp":
            right = pd.Timestamp(right)
    return pd.Series(_COMPARE[cond.op](left, right), index=left.index).fillna(False).astype(bool)


def _cents(values: pd.Series) -> pd.Series:
    """Round money to cents half-to-even, the way decimal.ROUND_HALF_EVEN does.

    raw stores NUMERIC(18, 2), so summed order lines must be rounded once. Half-to-even is
    unbiased: the rounded orders of Superstore add up to its published total (2,326,534.35),
    where rounding halves up would drift by 24 cents. Binary noise of the float sum is
    removed first (at 1e-4 cent), so a true half cent is recognised as one.
    """
    return pd.Series(np.rint(np.round(values.to_numpy(dtype="float64") * 100, 4)) / 100, index=values.index)


@dataclass
class MappedRows:
    """A canonical frame for one table and window, with the rows the mapping had to reject."""

    frame: pd.DataFrame
    rejected: Counter = field(default_factory=Counter)  # reason -> rows (within the window)
    notes: list[str] = field(default_factory=list)


class MappedSource:
    """Reads the tables of one mapping: a file drop, or a SQL source through ``engine``.

    One instance serves one extraction: each file is parsed once (the columns every feed
    needs from it) and shared by the tables that read it, e.g. orders and the customers
    derived from the same order lines.
    """

    def __init__(self, mapping: SourceMapping, engine: Engine | None = None):
        self.mapping = mapping
        self.engine = engine
        if mapping.kind == "sql" and engine is None:
            raise ValueError(f"{mapping.path}: a SQL mapping needs the source connection")
        self.store = _FileStore(mapping.location, mapping.connection) if mapping.kind == "files" else None
        self.wanted = mapping.sources()
        self._cache: dict[tuple[str, str, ReadOptions], pd.DataFrame] = {}
        self._lines = {}
        for feeds in mapping.feeds.values():
            for feed in feeds:
                for column in feed.columns.values():
                    for name in column.expr.columns():
                        self._lines.setdefault(name, f"{mapping.path.name}:{column.line}")
                for join in feed.joins:
                    for name in (join.left, join.right, *join.provides):
                        self._lines.setdefault(name, f"{mapping.path.name}:{join.line}")

    # -- reading ----------------------------------------------------------------------

    def _read(self, source: str, options: ReadOptions, window: tuple[datetime | None, datetime] | None = None,
              pushdown: str | None = None) -> pd.DataFrame:
        """The wanted columns of ``source``; with ``window``, only files (or rows) that can hold it."""
        columns = sorted(self.wanted[(source, options)])
        if self.store is not None:
            files = self.store.files(source)
            if not files:
                raise SourceDataError(f"no file matches {source!r} under {self.store.location} "
                                      f"({self.mapping.path.name})")
            if window is not None:
                start, cutoff = window
                files = [f for f in files if f.period is None or (
                    f.period[0] < pd.Timestamp(cutoff) + _MARGIN
                    and (start is None or f.period[1] > pd.Timestamp(start) - _MARGIN))]
            frames = []
            for file in files:
                key = (source, file.name, options)
                if key not in self._cache:
                    self._cache[key] = _read_file(self.store, file, columns, options, self._lines)
                frames.append(self._cache[key])
            if not frames:
                return pd.DataFrame({c: pd.Series(dtype="string") for c in [*columns, "__file"]}
                                    | {"__row": pd.Series(dtype="int64")})
            return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)
        if pushdown:
            return self._read_sql(source, columns, window, pushdown)
        key = (source, "", options)  # a whole table (a lookup, or an event time that needs parsing)
        if key not in self._cache:
            self._cache[key] = self._read_sql(source, columns, None, None)
        return self._cache[key]

    def _read_sql(self, table: str, columns: list[str], window: tuple[datetime | None, datetime] | None,
                  event_column: str | None) -> pd.DataFrame:
        schema, _, name = table.rpartition(".")
        declared = source_window.source_columns(self.engine, name, schema or None)
        if not declared:
            raise SourceDataError(f"the source database has no table {table!r} ({self.mapping.path.name})")
        _check_columns(f"table {table}", list(declared), columns, self._lines)
        query = sa.select(*(sa.column(c) for c in columns)).select_from(sa.table(name, schema=schema or None))
        if window is not None and event_column is not None:
            # with a margin, cut exactly once converted (_feed_rows); rows whose time cannot be
            # placed are read too, so they are counted as rejected instead of vanishing
            start, cutoff = window
            typed = source_window.is_typed(self.engine, declared.get(event_column, ""))
            where, _ = source_window.where_in_window(
                self.engine, sa.column(event_column), None if start is None else start - _MARGIN, cutoff + _MARGIN,
                typed)
            if where is not None:
                query = query.where(where)
        with self.engine.connect() as conn:
            frame = pd.read_sql(query, conn)
        frame["__file"] = f"table {table}"
        frame["__row"] = np.arange(1, len(frame) + 1, dtype="int64")
        return frame

    def _lookup(self, feed: Feed, join: Join) -> pd.DataFrame:
        right = self._read(join.source, feed.read)
        rows = _Rows(right, self.mapping, feed)
        frame = right[[join.right, *join.take]].copy()
        frame[join.right] = _text(frame[join.right])
        frame = frame[frame[join.right].notna()]
        if join.sum:
            sums = pd.DataFrame({c: _numbers(rows, right[c], f"column {c!r} of {join.source}") for c in join.sum})
            sums[join.right] = frame[join.right]
            added = sums.groupby(join.right, sort=False).sum(min_count=1)
            firsts = frame.groupby(join.right, sort=False)[list(join.take)].first() if join.take else None
            return added if firsts is None else firsts.join(added)
        duplicated = frame[join.right].duplicated(keep=False)
        if duplicated.any():  # named by row, not by value: a join key may identify a person
            raise SourceDataError(
                f"{join.source}: {int(duplicated.sum())} rows share a value of {join.right!r} (the first: "
                f"{_row_label(right, duplicated)}), "
                f"so the lookup of {feed.table} ({self.mapping.path.name}:{join.line}) is ambiguous; "
                "use sum: for columns to add up per key, or join on a unique column")
        return frame.set_index(join.right)

    # -- mapping ----------------------------------------------------------------------

    def _feed_rows(self, feed: Feed, start: datetime | None, cutoff: datetime) -> MappedRows:
        """Map one feed's rows, group its lines, and keep what falls in [start, cutoff)."""
        spec = feed.spec
        event_map = feed.columns[spec.event_time]
        pushdown = event_map.expr.column if (self.mapping.kind == "sql" and event_map.expr.op == "column"
                                             and event_map.format is None) else None
        frame = self._read(feed.source, feed.read, (start, cutoff), pushdown)
        frame = frame[[c for c in frame.columns if c in feed.main_columns() or c.startswith("__")]]
        for join in feed.joins:
            looked_up = self._lookup(feed, join)
            clash = [c for c in looked_up.columns if c in frame.columns]
            if clash:
                raise SourceDataError(f"{join.source}: column {clash[0]!r} is already in {feed.source}; "
                                      f"a join adds new columns only ({self.mapping.path.name}:{join.line})")
            keyed = frame.assign(__key=_text(frame[join.left]))
            frame = keyed.merge(looked_up, how="left", left_on="__key", right_index=True).drop(columns="__key")
        frame = frame.reset_index(drop=True)
        rows = _Rows(frame, self.mapping, feed)
        if feed.where:
            keep = reduce(operator.and_, (_condition(rows, c) for c in feed.where))
            frame = frame[keep].reset_index(drop=True)
            rows = _Rows(frame, self.mapping, feed)
        out = pd.DataFrame({name: _canonical(rows, column) for name, column in feed.columns.items()},
                           index=frame.index)
        out["__seq"] = np.arange(len(out))
        result = MappedRows(out)

        # Rows that cannot be keyed or placed are rejected and counted, never guessed at.
        event = out[spec.event_time]
        in_window = event.isna() | ((event < cutoff) & (event >= start if start is not None else True))
        keep = pd.Series(True, index=out.index)
        for name in spec.not_null:
            missing = out[name].isna() & keep
            if missing.any():
                counted = int((missing & in_window).sum())
                if counted:
                    result.rejected[f"missing {name}"] += counted
                    log.warning("%s: rejected %d row(s) of %s without %s (first: %s)", feed.table, counted,
                                feed.source, name, _row_label(frame, missing & in_window))
                keep &= ~missing
        out = out[keep]

        if feed.group_by:
            out = self._group(feed, out, result.notes)
        for name, column in feed.columns.items():
            if column.kind == "amount":
                values = out[name].abs() if column.absolute else out[name]
                out[name] = _cents(values)
        event = out[spec.event_time]
        window = event < cutoff
        if start is not None:
            window &= event >= start
        result.frame = out[window].drop(columns="__seq")
        return result

    def _group(self, feed: Feed, out: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
        """Lines to one row per group_by value: amounts add up, the event time is the earliest,
        other columns come from the earliest line (ties: the order of the source)."""
        spec, key = feed.spec, feed.group_by
        ordered = out.sort_values([spec.event_time, "__seq"], kind="stable")
        grouped = ordered.groupby(key, sort=False)
        how = {}
        for name, column in feed.columns.items():
            if name == key:
                continue
            default = "sum" if column.kind == "amount" else "min" if name == spec.event_time else "first"
            how[name] = column.aggregate or default
        plain = {name: (name, agg) for name, agg in how.items() if agg != "sum"}
        result = grouped.agg(**plain, __seq=("__seq", "min")) if plain else grouped.agg(__seq=("__seq", "min"))
        for name, agg in how.items():
            if agg == "sum":
                result[name] = grouped[name].sum(min_count=1)
        if "customer_id" in how and how["customer_id"] == "first":
            several = grouped["customer_id"].nunique()
            several = several[several > 1]
            if len(several):
                note = (f"{feed.table}: {len(several)} {key} value(s) have lines of several customers "
                        f"(e.g. {several.index[0]!r}); each was given the customer of its first line")
                notes.append(note)
                log.warning(note)
        result = result.reset_index()
        return result[[*feed.columns, "__seq"]]

    def has_rows(self, table: str) -> bool:
        """Whether the source holds any row for ``table`` at all (all time; False if it is not mapped).

        For checks that must tell a quiet period from a broken feed; reads the whole source,
        so call it only when a period came out empty.
        """
        return table in self.mapping.feeds and not self.read_table(table, None, _END_OF_TIME).frame.empty

    def read_table(self, table: str, start: datetime | None, cutoff: datetime,
                   known_customers: Callable[[], set[str]] | None = None) -> MappedRows:
        """The canonical rows of ``table`` whose event time falls in [start, cutoff).

        A table the mapping does not feed has no rows. Customers derived by grouping order
        lines are first seen at their earliest line; ``known_customers`` lists those raw
        already holds from before the window, so a window that reads only its own period's
        files never re-creates them.
        """
        spec = SOURCE_TABLES[table]
        feeds = self.mapping.feeds.get(table, ())
        combined = MappedRows(pd.DataFrame({c: pd.Series(dtype=_DTYPES[spec.kind(c)]) for c in spec.columns}))
        parts = []
        for feed in feeds:
            mapped = self._feed_rows(feed, start, cutoff)
            combined.rejected.update(mapped.rejected)
            combined.notes.extend(mapped.notes)
            parts.append(mapped.frame)
        if parts:
            frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0].reset_index(drop=True)
            for column in spec.columns:
                if column not in frame.columns:
                    frame[column] = pd.Series(index=frame.index, dtype=_DTYPES[spec.kind(column)])
            frame = frame[list(spec.columns)]
            if table == "customers" and known_customers is not None and any(f.group_by for f in feeds) \
                    and start is not None:
                frame = frame[~frame["customer_id"].isin(known_customers())]
            combined.frame = frame.astype({c: _DTYPES[spec.kind(c)] for c in spec.columns})
        return combined


_END_OF_TIME = datetime(9000, 1, 1)
_DTYPES = {"timestamp": "datetime64[us]", "amount": "float64", "integer": "Int64", "flag": "boolean",
           "text": "string"}
