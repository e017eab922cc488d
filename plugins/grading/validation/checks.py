"""Checks: the SQL checks GX cannot express across tables or batches, run on either warehouse.

Customers referenced, keys loaded by an earlier batch, rows older than their customer, an
empty period, the period's volume against the previous ones and the raw columns' types;
reported as results like GX's. (The share of the batch that row-level checks would
quarantine is judged by grading.validation.quarantine, once every check has run.)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from grading.validation.predicates import predicate
from grading.validation.results import SAMPLE_KEYS, CheckResult, check_result, sample
from grading.validation.suites import QUARANTINE_SHARE, ROW_LEVEL_SQL, Check, Suite, expectation_parameters

log = logging.getLogger("grading.validate")  # the stage's logger, under the name it had before the package


@dataclass(frozen=True)
class Scope:
    """What the SQL checks need to know about the batch under validation."""

    batch: datetime
    cutoff: datetime  # the as-of instant: rows before it belong to the run
    previous: datetime | None  # the as-of instant of the latest earlier validated period
    source: Engine | None
    now: datetime  # when the batch is checked: the $PARAMETER bounds follow from it


def _row(result: sa.CursorResult) -> sa.Row:
    """The single row of a result, fetched to the end: DuckDB refuses new work on a half-read result."""
    return result.all()[0]


def batch_rows(conn: Connection, table: str, batch: datetime) -> int:
    """How many rows of raw.``table`` the batch holds."""
    return conn.execute(sa.text(f"SELECT COUNT(*) FROM raw.{table} WHERE extracted_at = :batch"),  # noqa: S608 - identifiers from the contract
                        {"batch": batch}).all()[0][0]


def offending(conn: Connection, suite: Suite, check: Check, scope: Scope,
              where: str | None = None, params: Mapping[str, Any] | None = None) -> tuple[int, tuple[str, ...]]:
    """How many of the batch's rows a row-wise check rejects (or ``where`` selects, with
    ``params``), and a few of their keys."""
    if where is None:
        where, params = predicate(suite, check, expectation_parameters(suite, scope.now))
    base = f"FROM raw.{suite.table} AS r WHERE r.extracted_at = :batch AND ({where})"  # identifiers from the contract
    params = {**(params or {}), "batch": scope.batch}
    count = _row(conn.execute(sa.text(f"SELECT COUNT(*) {base}"), params))[0]
    keys = conn.execute(sa.text(f"SELECT r.{suite.spec.key} {base} ORDER BY 1 LIMIT {SAMPLE_KEYS}"), params) \
        .scalars().all() if count else []
    return int(count), sample(keys)


# Type families by the names information_schema gives on DuckDB and PostgreSQL.
_TYPE_FAMILIES = (
    ("timestamps", ("TIMESTAMP",)),
    ("amounts", ("NUMERIC", "DECIMAL", "DOUBLE", "REAL", "FLOAT")),
    ("integers", ("INTEGER", "BIGINT", "SMALLINT", "INT", "HUGEINT")),
    ("flags", ("BOOLEAN",)),
)
_TEXT_TYPES = ("VARCHAR", "CHARACTER VARYING", "TEXT", "STRING")


def _usable_types(conn: Connection, suite: Suite) -> str | None:
    """None if every canonical column exists in raw with a type of its family, else what is wrong."""
    spec = suite.spec
    found = {name: data_type.upper() for name, data_type in conn.execute(sa.text(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'raw' AND table_name = :t"), {"t": spec.name})}
    wrong = []
    for column in spec.columns:
        family, names = next(((attr, n) for attr, n in _TYPE_FAMILIES if column in getattr(spec, attr)),
                             ("texts", _TEXT_TYPES))
        if column not in found:
            wrong.append(f"{column} missing")
        elif not found[column].startswith(names):
            wrong.append(f"{column} is {found[column]}, not one of {family}' types {', '.join(names)}")
    return "; ".join(wrong) or None


def _source_has_rows(scope: Scope, table: str) -> bool | None:
    """Whether the source table holds any row; None when there is no source to ask."""
    if scope.source is None:
        return None
    try:
        with scope.source.connect() as conn:
            return bool(conn.execute(sa.select(sa.literal(1)).select_from(sa.table(table)).limit(1)).all())
    except sa.exc.SQLAlchemyError as exc:
        log.warning("could not count source table %s: %s", table, exc)
        return None


@dataclass(frozen=True)
class _Counts:
    """A table's rows by period, from one scan: what the emptiness and volume checks judge."""

    first: datetime | None  # earliest event time in raw
    total: int  # rows in raw
    batch: int  # rows of the batch under validation
    before_cutoff: int  # rows before the as-of instant
    in_period: int  # rows in [previous as-of, as-of); all before the as-of for a first period
    trailing: tuple[int, ...]  # rows in each period of the same length before it, latest first
    edges: tuple[datetime, ...]  # cutoff, period start, then the trailing periods' starts


def _counts(conn: Connection, suite: Suite, scope: Scope) -> _Counts:
    trailing = max((int(c.kwargs.get("trailing_intervals", 3)) for c in suite.checks
                    if c.type == "expect_interval_volume_within_band"), default=0)
    ts, edges = suite.spec.event_time, [scope.cutoff]
    columns = [f"MIN({ts})", "COUNT(*)", "COUNT(CASE WHEN extracted_at = :batch THEN 1 END)",
               f"COUNT(CASE WHEN {ts} < :e0 THEN 1 END)"]
    if scope.previous is not None:
        length = scope.cutoff - scope.previous
        edges = [scope.cutoff - i * length for i in range(trailing + 2)]
        columns += [f"COUNT(CASE WHEN {ts} >= :e{i + 1} AND {ts} < :e{i} THEN 1 END)" for i in range(trailing + 1)]
    row = conn.execute(sa.text(f"SELECT {', '.join(columns)} FROM raw.{suite.table}"),  # noqa: S608 - identifiers from the contract
                       {"batch": scope.batch, **{f"e{i}": e for i, e in enumerate(edges)}}).all()[0]
    first = None if row[0] is None else pd.Timestamp(row[0]).to_pydatetime()
    values = [int(v or 0) for v in row[1:]]
    in_period = values[3] if scope.previous is not None else values[2]
    return _Counts(first, values[0], values[1], values[2], in_period, tuple(values[4:]), tuple(edges))


def _not_empty(suite: Suite, check: Check, scope: Scope, counts: _Counts) -> tuple[bool, str]:
    """An empty period is a broken feed when the source (or an earlier period) had rows.

    ``scope: interval`` looks at the period since the latest earlier validated as-of date
    (all history for the first run); ``history`` at everything before the as-of date.
    """
    interval = check.kwargs.get("scope", "interval") == "interval" and scope.previous is not None
    rows = counts.in_period if interval else counts.before_cutoff
    earlier = counts.before_cutoff - counts.in_period if interval else 0
    period = f"in [{scope.previous:%Y-%m-%d %H:%M}, {scope.cutoff:%Y-%m-%d %H:%M})" if interval \
        else f"before {scope.cutoff:%Y-%m-%d}"
    if rows:
        return True, f"{rows} row(s) {period}"
    source = _source_has_rows(scope, suite.spec.name)
    if source or earlier:
        evidence = "the source table has rows" if source else f"earlier periods hold {earlier} row(s)"
        return False, f"0 rows {period} although {evidence}"
    return True, f"0 rows {period}; the source table is empty too"


def _volume(check: Check, scope: Scope, counts: _Counts) -> tuple[bool, str]:
    """The period's rows against the average of the previous periods of the same length.

    The period is the time since the latest earlier validated as-of date, so the band
    follows the schedule (monthly runs compare months). Periods before the table's first
    row do not count, and a small trailing average (min_rows) is too noisy to judge.
    """
    if scope.previous is None:
        return True, "not checked: no earlier validated period to compare with"
    k, edges = check.kwargs, counts.edges
    trailing = int(k.get("trailing_intervals", 3))
    length, current = scope.cutoff - scope.previous, counts.in_period
    period = f"{current} rows in [{edges[1]:%Y-%m-%d}, {edges[0]:%Y-%m-%d})"
    if current == 0:
        return True, f"{period}; see expect_interval_not_empty"
    complete = [c for c, start in zip(counts.trailing[:trailing], edges[2:2 + trailing], strict=True)
                if counts.first is not None and start >= counts.first]
    if not complete:
        return True, f"{period}; not checked: no complete earlier period of {length.days} days"
    average = sum(complete) / len(complete)
    if average < float(k.get("min_rows", 100)):
        return True, f"{period}; not checked: trailing average {average:.1f} is below min_rows {k.get('min_rows', 100)}"
    ratio = current / average
    low, high = float(k.get("min_ratio", 0.7)), float(k.get("max_ratio", 2.0))
    return low <= ratio <= high, (f"{period} vs a trailing average of {average:.1f} over {len(complete)} "
                                  f"period(s) of {length.days} days: ratio {ratio:.2f}, band [{low}, {high}]")


def run_checks(conn: Connection, suites: Mapping[str, Suite], scope: Scope) -> list[CheckResult]:
    """Every suite's SQL checks over the batch, as results like GX's."""
    results = []
    for suite in suites.values():
        counts = _counts(conn, suite, scope)
        for check in suite.checks:
            if check.type == QUARANTINE_SHARE:
                continue  # judged once every row-level check has run (grading.validation.quarantine.quarantine_bounds)
            if check.type in ROW_LEVEL_SQL or check.type == "expect_keys_not_loaded_by_an_earlier_batch":
                where = None
                if check.type == "expect_keys_not_loaded_by_an_earlier_batch" and \
                        conn.dialect.name == "postgresql" and counts.batch * 4 < counts.total:
                    # A batch small against what is loaded: probe the key index once per batch row,
                    # instead of the semi-join PostgreSQL would plan (hashing every loaded row).
                    where = (f"(SELECT COUNT(*) FROM raw.{suite.table} AS o WHERE o.{suite.spec.key} = "  # noqa: S608
                             f"r.{suite.spec.key} AND o.extracted_at <> :batch) > 0")
                count, keys = offending(conn, suite, check, scope, where)
                results.append(check_result(suite, check, success=count == 0, unexpected=count, observed=None,
                                            keys=keys))
                continue
            if check.type == "expect_columns_to_have_usable_types":
                wrong = _usable_types(conn, suite)
                success, observed = wrong is None, wrong or "every canonical column has a usable type"
            elif check.type == "expect_interval_not_empty":
                success, observed = _not_empty(suite, check, scope, counts)
            else:
                success, observed = _volume(check, scope, counts)
            results.append(check_result(suite, check, success=success, unexpected=None, observed=observed, keys=()))
    return results
