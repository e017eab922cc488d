"""Gate: the validate stage's entry point, which gives an extract batch its verdict.

Every check runs over the batch; a failed ``critical`` check stops the run before anything
is published: the batch's raw rows are removed and the tables' extraction watermarks
rewound, so no later run grades on rows that failed and the next run re-extracts them. A
failed ``row`` check moves the offending rows to ops.quarantine, and the run continues on
the good rows. The verdict - passed or rejected - is the batch's in the ledger
(grading.ledger): only a batch that extraction completed and nothing else took over is
validated, and only a passed one moves the extraction watermarks. The outcome of each batch
per table goes to ops.validation_batches, and every check's result to audit.validation_results
and to Data Docs (grading.validation.docs). The task log gets a line per table and one for
the batch, none of Great Expectations' own chatter.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, date, datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from grading import ledger
from grading.contract import SOURCE_TABLES
from grading.errors import DataError
from grading.frames import bulk_insert
from grading.validation.checks import Scope, batch_rows, run_checks
from grading.validation.docs import write_docs
from grading.validation.gx import data_docs_dir, quiet_gx_logging, run_expectations
from grading.validation.quarantine import quarantine_bounds, quarantine_rows
from grading.validation.results import CheckResult, ValidationReport, log_summary, store_results, stored_results
from grading.validation.suites import Suite, load_suites
from grading.warehouse import exclusive

log = logging.getLogger("grading.validate")  # the stage's logger, under the name it had before the package


class ValidationFailed(DataError, RuntimeError):
    """Critical checks failed: nothing of the period was published."""


def ensure_indexes(warehouse: Engine) -> list[str]:
    """Create the PostgreSQL indexes the gate relies on; returns the ones created.

    The batch is found by its stamp and loaded keys by key; without these indexes every
    metric query and the loaded-keys check scan the whole table (85 s instead of a few for a
    month's batch on 20M orders). Made here, after the first load, rather than in migration
    0011 with the period indexes: built once over loaded rows they cost about 40 s at 20M
    orders, while kept up to date through the first load they slowed extraction by half
    (100,000 customers: 14.8 -> 22.7 s). DuckDB needs none (it prunes by zone maps).
    """
    if warehouse.dialect.name != "postgresql":
        return []
    wanted = {f"{name}_{column}_idx": (name, column) for name, spec in SOURCE_TABLES.items()
              for column in ("extracted_at", spec.key)}
    with warehouse.connect() as conn:
        existing = set(conn.execute(sa.text("SELECT indexname FROM pg_indexes WHERE schemaname = 'raw'")).scalars())
    missing = [name for name in wanted if name not in existing]
    if missing:
        with exclusive(warehouse, "grading.validate.indexes") as conn:
            for name in missing:
                table, column = wanted[name]
                conn.execute(sa.text(f"CREATE INDEX IF NOT EXISTS {name} ON raw.{table} ({column})"))
        log.info("created indexes for validation: %s", ", ".join(missing))
    return missing


@contextmanager
def _gate(warehouse: Engine, batch: datetime) -> Iterator[Connection]:
    """The transaction that gives the verdict, holding the extraction lock.

    Quarantine and rejection rewrite raw rows and the watermarks, so they wait for a running
    extraction (which holds that lock throughout); the batch must still be waiting for its
    verdict when the lock is taken (another extraction may have taken it over meanwhile).
    """
    with exclusive(warehouse, "grading.validate", ledger.EXTRACTION_LOCK) as conn:
        if ledger.require_extracted(conn, batch).status != "extracted":
            raise ledger.BatchError(f"batch {batch} was given a verdict by another run meanwhile; rerun the period")
        yield conn


def _record(conn: Connection, rows: list[dict]) -> None:
    frame = pd.DataFrame(rows).astype({"rows_checked": "int64", "rows_quarantined": "int64",
                                       "extracted_through": "datetime64[us]", "message": "string"})
    bulk_insert(conn, "ops.validation_batches", frame)


def _reject(conn: Connection, suites: Mapping[str, Suite], scope: Scope, run_id: str, as_of: date,
            now: datetime, message: str) -> None:
    """Remove a failed batch from raw and rewind the watermarks, so nothing grades on it.

    Its extraction replaced the rows of the windows it read, so each table's watermark goes
    back to the earliest of those windows (grading.ledger.reject_batch); a window over all
    history drops it. The next extraction re-reads every removed row, as the source has it then.
    """
    rows = {table: batch_rows(conn, table, scope.batch) for table in suites}
    for table in suites:
        conn.execute(sa.text(f"DELETE FROM raw.{table} WHERE extracted_at = :batch"), {"batch": scope.batch})  # noqa: S608 - identifiers from the contract
    watermarks = ledger.reject_batch(conn, scope.batch, now, message)
    _record(conn, [{"run_id": run_id, "as_of_date": as_of, "source_table": table, "extracted_at": scope.batch,
                    "status": "failed", "rows_checked": int(rows[table]), "rows_quarantined": 0,
                    "extracted_through": watermarks[table], "message": message[:4000], "validated_at": now}
                   for table in suites])


def _accept(conn: Connection, suites: Mapping[str, Suite], results: list[CheckResult], scope: Scope,
            run_id: str, as_of: date, now: datetime) -> dict[str, int]:
    """Quarantine the row-level failures, record the batch as passed and move the watermarks."""
    checked = {table: batch_rows(conn, table, scope.batch) for table in suites}
    moved = quarantine_rows(conn, suites, results, scope, run_id, as_of, now)
    watermarks = ledger.pass_batch(conn, scope.batch, now)
    _record(conn, [{"run_id": run_id, "as_of_date": as_of, "source_table": table, "extracted_at": scope.batch,
                    "status": "passed", "rows_checked": checked[table], "rows_quarantined": moved[table],
                    "extracted_through": watermarks[table], "message": None, "validated_at": now}
                   for table in suites])
    return moved


def _previous_period(conn: Connection, as_of: datetime) -> datetime | None:
    """The as-of instant of the latest earlier period whose batch passed: the period's start."""
    value = conn.execute(sa.text(
        "SELECT MAX(as_of_date) FROM ops.validation_batches WHERE status = 'passed' AND as_of_date < :as_of"),
        {"as_of": as_of.date()}).all()[0][0]
    return None if value is None else datetime.combine(pd.Timestamp(value).date(), datetime.min.time())


def run(warehouse: Engine, as_of: date, batch: datetime, run_id: str,
        source: Engine | None = None) -> ValidationReport:
    """Validate extract ``batch``: store every result, quarantine bad rows, stop on a critical failure.

    ``source`` (optional) lets the emptiness check tell a quiet period from a broken feed.
    Raises ValidationFailed, with a message naming table, column, check, rows, keys and what
    to do, when a critical check fails; the batch's raw rows are then removed. All reads
    share one connection and all writes one transaction (results, quarantine or rejection,
    the batch's outcome), so a failure half-way leaves nothing half-written.
    """
    clock = time.perf_counter()
    quiet_gx_logging()  # before anything imports Great Expectations
    suites = load_suites()
    ensure_indexes(warehouse)
    now = datetime.now(UTC).replace(tzinfo=None)
    cutoff = datetime.combine(as_of, datetime.min.time())
    with warehouse.connect() as conn:
        prior = ledger.require_extracted(conn, batch)
        if prior.status == "extracted":  # otherwise it has its verdict already (a retried task)
            scope = Scope(batch=batch, cutoff=cutoff, previous=_previous_period(conn, cutoff), source=source,
                          now=now)
            checked = run_checks(conn, suites, scope)
            rows = {table: batch_rows(conn, table, batch) for table in suites}
        else:
            message = conn.execute(sa.text("SELECT message FROM ops.batches WHERE batch_id = :b"),
                                   {"b": batch}).scalar()
    if prior.status == "rejected":
        raise ValidationFailed(
            f"extract batch {batch} was rejected by run {prior.run_id} and its rows were removed from raw; "
            "rerun the whole period, extraction included, once the source is fixed. The checks said:\n"
            + (message or ""))
    if prior.status in ledger.VALIDATED:
        log.info("batch %s already passed validation in run %s; keeping that outcome", batch, prior.run_id)
        return ValidationReport(stored_results(warehouse, prior.run_id), {}, None, time.perf_counter() - clock)

    results, gx_results = run_expectations(warehouse, suites, batch, run_id, now)
    results += checked
    with warehouse.connect() as conn:
        results += quarantine_bounds(conn, suites, results, scope)
    critical = [r for r in results if not r.success and r.severity == "critical"]
    if critical:
        findings = [r for r in results if not r.success and r.severity == "row"]
        message = (
            f"{len(critical)} critical check(s) failed for as-of {as_of}; nothing was published, and the batch's "
            "raw rows were removed (the next run extracts them again). Fix the source rows (or the mapping) and "
            "rerun the period:\n- " + "\n- ".join(r.message() for r in critical))
        if findings:
            message += "\nRow-level findings in the same batch (to fix too):\n- " + \
                "\n- ".join(r.message() for r in findings)
        with _gate(warehouse, batch) as conn:
            store_results(conn, as_of, run_id, results)
            _reject(conn, suites, scope, run_id, as_of, now, message)
        docs = write_docs(warehouse, data_docs_dir(), suites, gx_results, results, run_id=run_id, batch=batch,
                          rows=rows, verdicts=dict.fromkeys(suites, "batch rejected"))
        log_summary(ValidationReport(results, {}, docs, time.perf_counter() - clock, rows), batch, rejected=True)
        raise ValidationFailed(message)

    with _gate(warehouse, batch) as conn:
        quarantined = _accept(conn, suites, results, scope, run_id, as_of, now)
        store_results(conn, as_of, run_id, results)
    verdicts = {table: "batch passed" + (f", {moved:,} row(s) quarantined" if moved else "")
                for table, moved in quarantined.items()}
    docs = write_docs(warehouse, data_docs_dir(), suites, gx_results, results, run_id=run_id, batch=batch,
                      rows=rows, verdicts=verdicts)
    report = ValidationReport(results, quarantined, docs, time.perf_counter() - clock, rows)
    log_summary(report, batch)
    return report
