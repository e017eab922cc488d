"""Suites: load include/expectations/<table>.json and check it against the canonical schema.

A suite holds a table's checks: Great Expectations expectations and the SQL checks of
grading.validation.checks, each with a severity (``critical`` or ``row``), an action and,
for a row-level check, the reason kept with each quarantined row. Everything is checked
here, before any data is touched.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from grading.contract import SOURCE_TABLES, SourceTable
from grading.errors import DataError
from grading.settings import include_dir

SEVERITIES = ("critical", "row")
# GX expectations that may be row-level: the quarantine moves their offending rows with SQL,
# so each needs a translation into a SQL predicate (see grading.validation.predicates).
ROW_LEVEL_GX = {
    "expect_column_values_to_be_between", "expect_column_values_to_be_in_set",
    "expect_column_values_to_not_be_null", "expect_column_pair_values_a_to_be_greater_than_b",
}
# Judged by GX on a sample of the batch on DuckDB: every row of a batch has the same columns.
COLUMN_SET = "expect_table_columns_to_match_set"
SQL_CHECKS = {
    "expect_columns_to_have_usable_types", "expect_column_values_to_reference_known_customers",
    "expect_keys_not_loaded_by_an_earlier_batch", "expect_event_time_not_before_customer_created",
    "expect_interval_not_empty", "expect_interval_volume_within_band", "expect_quarantined_share_at_most",
}
# The bound on row-level failures: more than this share of a table's batch quarantined stops
# the run (a suite may set its own in an expect_quarantined_share_at_most check).
QUARANTINE_SHARE = "expect_quarantined_share_at_most"
DEFAULT_MAX_QUARANTINE_SHARE = 0.05
DEFAULT_QUARANTINE_MIN_ROWS = 10  # up to this many rows may be quarantined whatever their share
# $PARAMETER earliest_time of the suites: an event time before it is not plausible.
EARLIEST_TIME = datetime(1900, 1, 1)
ROW_LEVEL_SQL = {"expect_column_values_to_reference_known_customers", "expect_event_time_not_before_customer_created"}
_DEFAULT_BOUND_ACTION = (
    "Most of the batch failed row-level checks, which points at a broken feed or mapping rather "
    "than a few bad rows: fix the source (or the mapping), then rerun the period.")


class SuiteError(DataError, ValueError):
    """A suite file is malformed; raised before any data is touched."""


@dataclass(frozen=True)
class Check:
    """One check of a suite: a GX expectation (``by_gx``) or a SQL check run here."""

    type: str
    kwargs: Mapping[str, Any]
    severity: str
    action: str
    reason: str
    by_gx: bool
    index: int  # position in its list, to find the check again from a GX result

    @property
    def column(self) -> str | None:
        return self.kwargs.get("column") or self.kwargs.get("column_A")

    def gx_config(self) -> dict[str, Any]:
        """The expectation as GX takes it; meta carries what the gate needs back from results."""
        return {"type": self.type, "kwargs": dict(self.kwargs),
                "meta": {"severity": self.severity, "action": self.action, "reason": self.reason,
                         "check": self.index}}


@dataclass(frozen=True)
class Suite:
    """A table's checks, loaded from its JSON file and checked against the canonical schema."""

    table: str
    name: str
    spec: SourceTable
    expectations: tuple[Check, ...]
    checks: tuple[Check, ...]
    future_tolerance: timedelta
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def row_level(self) -> list[Check]:
        return [c for c in (*self.expectations, *self.checks) if c.severity == "row"]


def suite_path(table: str) -> Path:
    return include_dir() / "expectations" / f"{table}.json"


def expectation_parameters(suite: Suite, now: datetime) -> dict[str, datetime]:
    """The values of the suites' ``{"$PARAMETER": name}`` bounds for a batch checked ``now``."""
    return {"future_limit": now + suite.future_tolerance, "earliest_time": EARLIEST_TIME}


def _check_meta(meta: Mapping[str, Any], fail: str) -> None:
    """A check's severity, action and (row-level) reason; ``fail`` prefixes the error."""
    severity = meta.get("severity")
    if severity not in SEVERITIES:
        raise SuiteError(f"{fail}severity must be one of {SEVERITIES}, not {severity!r}")
    if not meta.get("action"):
        raise SuiteError(f"{fail}meta.action (what to do when it fails) is required")
    if severity == "row" and not meta.get("reason"):
        raise SuiteError(f"{fail}a row-level check needs meta.reason (kept with each quarantined row)")


def _operators(condition: Any) -> set[str]:
    """The comparison operators a GX row_condition (comparison, nullity, and-groups) uses."""
    if not isinstance(condition, Mapping):
        return set()
    if condition.get("type") == "and":
        return set().union(*(_operators(c) for c in condition.get("conditions", [])))
    return {condition["operator"]} if condition.get("type") == "comparison" else set()


def _parse(item: Mapping[str, Any], fail: str, index: int, by_gx: bool, table: str, columns: set[str]) -> Check:
    """One entry of a suite's ``expectations`` (``by_gx``) or ``checks`` list of raw.``table`` as a Check."""
    kind, kwargs, meta = item.get("type"), item.get("kwargs") or {}, item.get("meta") or {}
    _check_meta(meta, fail)
    if not by_gx and kind not in SQL_CHECKS:
        raise SuiteError(f"{fail}unknown check {kind!r}; known: {sorted(SQL_CHECKS)}")
    if meta["severity"] == "row" and kind not in (ROW_LEVEL_GX if by_gx else ROW_LEVEL_SQL):
        raise SuiteError(f"{fail}{kind} cannot be row-level (its rows cannot be quarantined)")
    for name in ("column", "column_A", "column_B"):
        if name in kwargs and kwargs[name] not in columns:
            raise SuiteError(f"{fail}{name} {kwargs[name]!r} is not a column of raw.{table}")
    if "!=" in _operators(kwargs.get("row_condition")):
        raise SuiteError(f"{fail}a row_condition cannot use '!=': on a missing value GX's pandas engine (DuckDB "
                         "warehouse) holds it true and its SQL engine (PostgreSQL) false, so the rows checked would "
                         "depend on the warehouse; name the values to keep with == (or 'and' a nullity condition)")
    return Check(kind, kwargs, meta["severity"], meta["action"], meta.get("reason", ""), by_gx, index)


def _bounded(path: Path, expectations: tuple[Check, ...], checks: tuple[Check, ...]) -> tuple[Check, ...]:
    """``checks`` with a quarantine bound (the default one when a suite with row-level checks
    sets none), each bound's settings checked."""
    if any(c.severity == "row" for c in (*expectations, *checks)) and all(c.type != QUARANTINE_SHARE for c in checks):
        checks += (Check(QUARANTINE_SHARE, {"max_share": DEFAULT_MAX_QUARANTINE_SHARE,
                                            "min_rows": DEFAULT_QUARANTINE_MIN_ROWS}, "critical",
                         _DEFAULT_BOUND_ACTION, "", False, len(checks)),)
    for check in (c for c in checks if c.type == QUARANTINE_SHARE):
        share = check.kwargs.get("max_share", DEFAULT_MAX_QUARANTINE_SHARE)
        rows = check.kwargs.get("min_rows", DEFAULT_QUARANTINE_MIN_ROWS)
        if not isinstance(share, (int, float)) or isinstance(share, bool) or not 0 <= share <= 1:
            raise SuiteError(f"{path}: checks[{check.index}] {check.type}: max_share must be a share from 0 to 1")
        if not isinstance(rows, int) or isinstance(rows, bool) or rows < 0:
            raise SuiteError(f"{path}: checks[{check.index}] {check.type}: min_rows must be a whole number, 0 or more")
    return checks


def load_suite(table: str, spec: SourceTable | None = None) -> Suite:
    """Read and check include/expectations/<table>.json against the canonical schema.

    Checked here, before any data is touched, because a typo in a suite would otherwise
    show up as a failed check on good data, or - for row-level checks - as rows moved
    to quarantine for the wrong reason.
    """
    spec = spec or SOURCE_TABLES[table]
    path = suite_path(table)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SuiteError(f"{path}: cannot read the suite: {exc}") from exc
    columns = set(spec.columns)

    def parsed(key: str, by_gx: bool) -> tuple[Check, ...]:
        return tuple(_parse(item, f"{path}: {key}[{i}] {item.get('type')}: ", i, by_gx, table, columns)
                     for i, item in enumerate(raw.get(key, [])))

    expectations = parsed("expectations", True)
    checks = _bounded(path, expectations, parsed("checks", False))
    meta = raw.get("meta") or {}
    tolerance = timedelta(hours=float(meta.get("future_tolerance_hours", 24)))
    return Suite(table=table, name=raw.get("name") or f"raw_{table}", spec=spec, expectations=expectations,
                 checks=checks, future_tolerance=tolerance, meta=meta)


def load_suites() -> dict[str, Suite]:
    """The suite of every table of the canonical schema; a table without one is an error."""
    missing = [t for t in SOURCE_TABLES if not suite_path(t).exists()]
    if missing:
        raise SuiteError(f"no expectation suite for {', '.join(missing)} in {include_dir() / 'expectations'}")
    return {table: load_suite(table) for table in SOURCE_TABLES}
