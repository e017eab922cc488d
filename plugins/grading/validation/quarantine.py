"""Quarantine: move the rows of failed row-level checks from raw to ops.quarantine.

Each row goes with the check, the reason (with the offending values) and the row as JSON.
The share of a batch that would be quarantined is bounded (``expect_quarantined_share_at_most``):
much of a batch failing is a broken feed, not a few bad rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from grading.contract import SourceTable
from grading.validation.checks import Scope, batch_rows, offending
from grading.validation.predicates import predicate
from grading.validation.results import CheckResult, check_result
from grading.validation.suites import (
    DEFAULT_MAX_QUARANTINE_SHARE,
    DEFAULT_QUARANTINE_MIN_ROWS,
    QUARANTINE_SHARE,
    Check,
    Suite,
    expectation_parameters,
)


def _row_json(conn: Connection, spec: SourceTable) -> str:
    """The row's canonical columns as JSON text, built by the database (no rows pass through Python)."""
    function = "json_build_object" if conn.dialect.name == "postgresql" else "json_object"
    pairs = ", ".join(f"'{c}', r.{c}" for c in spec.columns)
    return f"CAST({function}({pairs}) AS VARCHAR)"


def _reason_sql(check: Check, suite: Suite) -> str:
    """The check's reason followed by the offending values, e.g. ``... (amount=-5.00)``."""
    columns = [check.kwargs[c] for c in ("column_A", "column_B") if c in check.kwargs] \
        or [check.column or suite.spec.key]
    values = " || ', ' || ".join(f"'{c}=' || COALESCE(CAST(r.{c} AS VARCHAR), 'null')" for c in columns)
    return f":reason || ' (' || {values} || ')'"


def quarantine_rows(conn: Connection, suites: Mapping[str, Suite], results: list[CheckResult], scope: Scope,
                    run_id: str, as_of: date, now: datetime) -> dict[str, int]:
    """Move the rows of failed row-level checks from raw to ops.quarantine; returns rows moved per table.

    Entries of re-extracted rows are replaced first, so a rerun of the period gives the same
    quarantine and a row fixed at the source leaves it.
    """
    moved = {}
    for table, suite in suites.items():
        key, batch = suite.spec.key, {"batch": scope.batch, "t": table}
        conn.execute(sa.text(
            f"DELETE FROM ops.quarantine WHERE source_table = :t AND row_key IN "  # noqa: S608 - contract identifiers
            f"(SELECT CAST({key} AS VARCHAR) FROM raw.{table} WHERE extracted_at = :batch)"), batch)
        for result in results:
            check = result.check
            if result.table != f"raw.{table}" or result.success or check is None or check.severity != "row":
                continue
            where, params = predicate(suite, check, expectation_parameters(suite, scope.now))
            conn.execute(sa.text(
                "INSERT INTO ops.quarantine (run_id, as_of_date, source_table, row_key, expectation, column_name, "  # noqa: S608
                "reason, row_json, extracted_at, quarantined_at) "
                f"SELECT :run_id, :as_of, :t, CAST(r.{key} AS VARCHAR), :expectation, :column, "
                f"{_reason_sql(check, suite)}, {_row_json(conn, suite.spec)}, r.extracted_at, :now "
                f"FROM raw.{table} AS r WHERE r.extracted_at = :batch AND ({where})"),
                {**params, **batch, "run_id": run_id, "as_of": as_of, "expectation": check.type,
                 "column": check.column, "reason": check.reason, "now": now})
            entered = conn.execute(sa.text(
                "SELECT COUNT(*) FROM ops.quarantine WHERE source_table = :t AND extracted_at = :batch "
                "AND expectation = :expectation AND run_id = :run_id AND COALESCE(column_name, '') = :column"),
                {**batch, "expectation": check.type, "run_id": run_id, "column": check.column or ""}).all()[0][0]
            if entered != result.unexpected_count:
                raise RuntimeError(
                    f"quarantine of raw.{table} by {check.type} on {check.column}: SQL selected {entered} row(s) "
                    f"but the check counted {result.unexpected_count}; nothing was moved")
        moved[table] = conn.execute(sa.text(
            f"DELETE FROM raw.{table} WHERE extracted_at = :batch AND {key} IN "  # noqa: S608 - identifiers from the contract
            "(SELECT row_key FROM ops.quarantine WHERE source_table = :t AND extracted_at = :batch)"), batch).rowcount
    return moved


def quarantine_bounds(conn: Connection, suites: Mapping[str, Suite], results: list[CheckResult],
                       scope: Scope) -> list[CheckResult]:
    """Each table's share of the batch that failed row-level checks, against its bound.

    A few bad rows are quarantined and the run goes on; much of a batch failing (a status
    upper-cased at the source, a rescaled score) is a broken feed, and quarantining it would
    publish a period graded on what is left. The check fails when more than ``max_share`` of
    the batch and more than ``min_rows`` rows would be quarantined (so a small daily batch
    may still lose a bad row or two). Rows failing several checks count once.
    """
    bounds = []
    for table, suite in suites.items():
        for check in (c for c in suite.checks if c.type == QUARANTINE_SHARE):
            failed = [r.check for r in results if r.table == f"raw.{table}" and not r.success
                      and r.check is not None and r.check.severity == "row"]
            rows = batch_rows(conn, table, scope.batch)
            limit = float(check.kwargs.get("max_share", DEFAULT_MAX_QUARANTINE_SHARE))
            allowed = int(check.kwargs.get("min_rows", DEFAULT_QUARANTINE_MIN_ROWS))
            count, keys = 0, ()
            if failed:
                parts, params = [], {}
                for row_check in failed:
                    where, bound = predicate(suite, row_check, expectation_parameters(suite, scope.now))
                    parts.append(f"({where})")
                    params.update(bound)
                count, keys = offending(conn, suite, check, scope, " OR ".join(parts), params)
            share = count / rows if rows else 0.0
            success = share <= limit or count <= allowed
            observed = (f"{count} of {rows} row(s) of the batch ({share:.1%}) failed row-level checks; at most "
                        f"{limit:.0%} may be quarantined (any share when {allowed} rows or fewer)")
            bounds.append(check_result(suite, check, success=success, unexpected=None, observed=observed,
                                       keys=() if success else keys))
    return bounds
