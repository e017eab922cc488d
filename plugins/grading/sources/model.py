"""The source mapping as checked data: its dataclasses, vocabulary and error.

A SourceMapping is what grading.sources.checker builds from a mapping file and what the
readers (grading.sources.files, .values, .mapped) follow; nothing here reads a file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grading.conditions import MEMBERSHIP, NULL_TESTS, TEXT_TESTS
from grading.contract import SOURCE_TABLES, SourceTable
from grading.errors import DataError

KIND = "source_mapping"
SOURCE_TYPES = ("files", "sql")
FILE_FORMATS = ("csv", "parquet")
EXPRESSIONS = ("column", "value", "multiply", "add", "concat", "coalesce")
AGGREGATES = ("sum", "min", "max", "first", "last")
# the operators of grading.conditions a where: may use, in the order messages list them
WHERE_OPS = ("==", "!=", "<", "<=", ">", ">=", *MEMBERSHIP, *NULL_TESTS, *TEXT_TESTS)
WHERE_TYPES = ("text", "number", "timestamp")
# strftime directives a file name's {period:...} may use, with what they match and the
# period length they imply.
PERIOD_DIRECTIVES = {
    "%Y": (r"\d{4}", "year"), "%y": (r"\d{2}", "year"), "%m": (r"\d{2}", "month"), "%b": (r"[A-Za-z]{3}", "month"),
    "%d": (r"\d{2}", "day"), "%j": (r"\d{3}", "day"), "%H": (r"\d{2}", "hour"),
}
PERIOD = re.compile(r"\{period:([^{}]+)\}")


class MappingError(DataError, ValueError):
    """A mapping file is not valid; the message names the file, line, table and field."""



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
    """A checked mapping file: its source, and the feeds of each canonical table it fills."""

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

