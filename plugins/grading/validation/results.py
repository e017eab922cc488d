"""Results: what a check found on a batch, stored in audit.validation_results and summarised.

GX and SQL checks alike end as a CheckResult: a line of the stored results, with a few
offending keys (customers' as pseudonyms) and a message saying what to do.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from grading import privacy
from grading.frames import bulk_insert, read_frame
from grading.keys import pseudonym
from grading.settings import pseudonym_key
from grading.validation.suites import Check, Suite

log = logging.getLogger("grading.validate")  # the stage's logger, under the name it had before the package

SAMPLE_KEYS = 5


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check on one batch, GX or SQL alike: what is stored and reported."""

    suite: str
    table: str
    expectation: str
    column: str | None
    severity: str
    success: bool
    unexpected_count: int | None
    observed_value: str | None
    sample_keys: tuple[str, ...]
    action: str = ""
    reason: str = ""
    check: Check | None = field(default=None, compare=False, repr=False)

    def message(self) -> str:
        """Table, column, check, rows, a few keys and what to do, in one line."""
        where = f"{self.table}.{self.column}" if self.column else self.table
        count = f" in {self.unexpected_count} row(s)" if self.unexpected_count else ""
        keys = f" (e.g. {', '.join(self.sample_keys)})" if self.sample_keys else ""
        observed = f"; observed {self.observed_value}" if self.observed_value and not self.unexpected_count else ""
        quarantined = f"; quarantine reason: {self.reason}" if self.severity == "row" and self.unexpected_count else ""
        lookup = (" Keys of raw.customers are shown as pseudonymous customer_key: find the source ids with "
                  "SELECT customer_id FROM ops.customer_keys WHERE customer_key IN (...).") \
            if self.sample_keys and self.table == "raw.customers" else ""
        action = f" {self.action}" if self.action else ""
        return f"{where}: {self.expectation} failed{count}{keys}{observed}{quarantined}.{action}{lookup}"


@dataclass(frozen=True)
class ValidationReport:
    """What the validate stage found for one batch."""

    results: list[CheckResult]
    quarantined: dict[str, int]
    data_docs: str | None
    seconds: float
    rows: dict[str, int] = field(default_factory=dict)  # rows of the batch per table

    @property
    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if not r.success]


def sample(values: Iterator[Any]) -> tuple[str, ...]:
    """A few keys, sorted so messages do not depend on row order or engine."""
    return tuple(sorted(str(v) for v in values if v is not None and not pd.isna(v))[:SAMPLE_KEYS])


def _protect_keys(table: str, keys: tuple[str, ...]) -> tuple[str, ...]:
    """Customer ids leave the pipeline only as pseudonyms: marts are BI-readable."""
    if table != "customers":
        return keys
    secret = pseudonym_key()
    return tuple(pseudonym(k, secret) for k in keys)


def check_result(suite: Suite, check: Check, *, success: bool, unexpected: int | None, observed: str | None,
                 keys: tuple[str, ...], pseudonymised: bool = False) -> CheckResult:
    """A check's result; ``keys`` of customers are pseudonymised here unless they already are."""
    return CheckResult(
        suite=suite.name, table=f"raw.{suite.table}", expectation=check.type, column=check.column,
        severity=check.severity, success=success, unexpected_count=unexpected,
        observed_value=None if observed is None else observed[:500],
        sample_keys=keys if pseudonymised else _protect_keys(suite.table, keys),
        action=check.action, reason=check.reason, check=check,
    )


def _table_outcome(failed: list[CheckResult], quarantined: int, rejected: bool) -> str:
    critical = sum(r.severity == "critical" for r in failed)
    if critical:
        return f"failed ({critical} critical)"
    if rejected:
        return "passed, batch rejected for another table"
    return f"passed, {quarantined:,} row(s) quarantined" if failed else "passed"


def log_summary(report: ValidationReport, batch: datetime, rejected: bool = False) -> None:
    """The stage's result for the task log: a line per table (rows, checks, failures, outcome),
    one for the batch, and for a batch that passed a line per failed check (a rejected batch's
    are in the error raised)."""
    for table, rows in report.rows.items():
        mine = [r for r in report.results if r.table == f"raw.{table}"]
        failed = [r for r in mine if not r.success]
        log.info("validate: raw.%s %s rows, %d checks, %d failed -> %s", table, f"{rows:,}", len(mine), len(failed),
                 _table_outcome(failed, report.quarantined.get(table, 0), rejected))
    moved = sum(report.quarantined.values())
    critical = sum(not r.success and r.severity == "critical" for r in report.results)
    verdict = f"rejected: {critical} critical check(s) failed, its rows were removed from raw" if rejected \
        else f"passed: {moved:,} row(s) quarantined in ops.quarantine"
    log.log(logging.ERROR if rejected else logging.INFO,
            "validate: batch %s %s; %d checks, %d failed, in %.1fs; results in audit.validation_results; "
            "Data Docs: %s", batch, verdict, len(report.results), len(report.failed), report.seconds,
            report.data_docs or "not written")
    if not rejected:
        for result in report.failed:
            log.warning("%s", result.message())


def store_results(conn: Connection, as_of: date, run_id: str, results: list[CheckResult]) -> None:
    """Replace the run's rows of audit.validation_results (a retried task writes them once)."""
    now = datetime.now(UTC).replace(tzinfo=None)

    def shown(text: str | None) -> str | None:  # marts are BI-readable: no identifying value
        return privacy.redact(conn, text)

    frame = pd.DataFrame({
        "run_id": run_id, "as_of_date": as_of,
        "suite": [r.suite for r in results], "expectation": [r.expectation for r in results],
        "column_name": pd.Series([r.column for r in results], dtype="string"),
        "severity": [r.severity for r in results], "success": [r.success for r in results],
        "unexpected_count": pd.Series([r.unexpected_count for r in results], dtype="Int64"),
        "observed_value": pd.Series([shown(r.observed_value) for r in results], dtype="string"),
        "validated_at": now,
        "sample_keys": pd.Series([", ".join(r.sample_keys) or None for r in results], dtype="string"),
        "message": pd.Series([None if r.success else shown(r.message()[:4000]) for r in results], dtype="string"),
    })
    conn.execute(sa.text("DELETE FROM audit.validation_results WHERE run_id = :run_id"), {"run_id": run_id})
    bulk_insert(conn, "audit.validation_results", frame)


def stored_results(warehouse: Engine, run_id: str) -> list[CheckResult]:
    """A run's results read back from audit.validation_results."""
    with warehouse.connect() as conn:
        frame = read_frame(conn, "SELECT * FROM audit.validation_results WHERE run_id = :run_id", {"run_id": run_id})
    return [CheckResult(
        suite=row.suite, table="raw." + row.suite.removeprefix("raw_"), expectation=row.expectation,
        column=None if pd.isna(row.column_name) else row.column_name, severity=row.severity,
        success=bool(row.success),
        unexpected_count=None if pd.isna(row.unexpected_count) else int(row.unexpected_count),
        observed_value=None if pd.isna(row.observed_value) else row.observed_value,
        sample_keys=tuple(row.sample_keys.split(", ")) if isinstance(row.sample_keys, str) else (),
    ) for row in frame.itertuples()]
