"""The batch ledger: one lifecycle for every extract batch, so nothing unvalidated is graded.

A batch is what one extraction wrote into raw, every row stamped with its ``batch_id``
(``raw.<table>.extracted_at``). Its life in ``ops.batches``:

    extracting -> extracted -> passed -> published
                           \\-> rejected
    (extracting or extracted) -> absorbed (into a later batch)

- Extraction opens the batch before it writes a row, records the window it read of each
  table in the same transaction as the table's rows (``ops.batch_windows``), and marks the
  batch extracted once every table is in.
- Validation gives the verdict. *Passed* moves each table's extraction watermark to the end
  of the windows the batch read: watermarks move only here. *Rejected* removes the batch's
  rows and rewinds the watermarks to where its windows began, so the next run reads them again.
- A batch left without a verdict - a killed worker, a table that failed to convert, a lock
  error - is *absorbed* by the next extraction, whatever its period: the rows it left in raw
  are stamped with the new batch, so they are validated with it, in full, before anything
  grades on them. Its windows count as the new batch's.
- The stages that read raw (features, churn, flags, publish) run only while no batch is in
  flight, and fail if one was opened or given a verdict while they read (``settled``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from grading.contract import SOURCE_TABLES

log = logging.getLogger(__name__)

# Held for a whole extraction (grading.warehouse.held_lock): two extractions never interleave,
# and a verdict (grading.validation.gate) waits for a running extraction.
EXTRACTION_LOCK = "grading.batch"
VALIDATED = ("passed", "published")


class BatchError(RuntimeError):
    """The batch cannot be validated as asked: unknown, never completed, or taken over by another."""


class BatchInFlight(RuntimeError):
    """A batch without a verdict is in raw (or one arrived meanwhile): grading now would read
    unvalidated rows. Transient: the task retries once the batch has its verdict."""


@dataclass(frozen=True)
class Batch:
    batch_id: datetime
    run_id: str
    as_of: date
    status: str
    absorbed_into: datetime | None
    updated_at: datetime

    def describe(self) -> str:
        return f"batch {self.batch_id.isoformat(sep=' ')} of run {self.run_id} (as of {self.as_of}, {self.status})"


def _stamp(value) -> datetime | None:
    return None if value is None or pd.isna(value) else pd.Timestamp(value).to_pydatetime()


def _batches(conn: Connection, where: str, params: dict) -> list[Batch]:
    rows = conn.execute(sa.text(
        "SELECT batch_id, run_id, as_of_date, status, absorbed_into, updated_at FROM ops.batches "  # noqa: S608 - fixed clauses
        f"WHERE {where} ORDER BY batch_id"), params).all()
    return [Batch(_stamp(r[0]), r[1], pd.Timestamp(r[2]).date(), r[3], _stamp(r[4]), _stamp(r[5])) for r in rows]


def get(conn: Connection, batch_id: datetime) -> Batch | None:
    found = _batches(conn, "batch_id = :b", {"b": batch_id})
    return found[0] if found else None


def in_flight(conn: Connection) -> list[Batch]:
    """Batches in raw that have no verdict yet."""
    return _batches(conn, "status IN ('extracting', 'extracted')", {})


def open_batch(warehouse: Engine, batch_id: datetime, run_id: str, as_of: date, now: datetime) -> list[Batch]:
    """Record ``batch_id`` as extracting, first absorbing every batch left without a verdict.

    Call it holding EXTRACTION_LOCK (``grading.warehouse.held_lock``), so
    no other extraction is writing meanwhile. Returns the batches absorbed; what a killed
    extraction left behind under their names (DuckDB staging tables, PostgreSQL batch views)
    is dropped.
    """
    with warehouse.begin() as conn:
        absorbed = in_flight(conn)
        if absorbed:
            ids = sa.bindparam("ids", [b.batch_id for b in absorbed], expanding=True)
            for table in SOURCE_TABLES:
                conn.execute(sa.text(f"UPDATE raw.{table} SET extracted_at = :new "  # noqa: S608 - contract names
                                     "WHERE extracted_at IN :ids").bindparams(ids), {"new": batch_id})
            conn.execute(sa.text("UPDATE ops.batches SET status = 'absorbed', absorbed_into = :new, updated_at = :now "
                                 "WHERE batch_id IN :ids").bindparams(ids), {"new": batch_id, "now": now})
            for batch in absorbed:
                log.warning("%s had no verdict: its rows in raw are now part of batch %s and are validated with it",
                            batch.describe(), batch_id.isoformat(sep=" "))
                _drop_leftovers(conn, batch.batch_id)
        conn.execute(sa.text(
            "INSERT INTO ops.batches (batch_id, run_id, as_of_date, status, started_at, updated_at) "
            "VALUES (:b, :run, :as_of, 'extracting', :now, :now)"), {"b": batch_id, "run": run_id, "as_of": as_of,
                                                                      "now": now})
    return absorbed


def _drop_leftovers(conn: Connection, batch_id: datetime) -> None:
    """What a killed worker can leave behind named after its batch: a validation's GX view, and
    the staging table of an extraction by a version before extraction streamed into raw."""
    stamp = f"{batch_id:%Y%m%d%H%M%S%f}"
    for table in SOURCE_TABLES:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS staging.extract_{table}_{stamp}")
        conn.exec_driver_sql(f"DROP VIEW IF EXISTS ops.gx_batch_{table}_{stamp}")


def record_window(conn: Connection, batch_id: datetime, table: str, start: datetime | None, end: datetime,
                  rows: int) -> None:
    """The window a batch read of one table; call it in the transaction that writes the rows."""
    conn.execute(sa.text("INSERT INTO ops.batch_windows (batch_id, source_table, window_start, window_end, "
                         "rows_extracted) VALUES (:b, :t, :start, :end, :rows)"),
                 {"b": batch_id, "t": table, "start": start, "end": end, "rows": rows})


def set_status(conn: Connection, batch_id: datetime, status: str, now: datetime, message: str | None = None) -> None:
    conn.execute(sa.text("UPDATE ops.batches SET status = :s, updated_at = :now, message = :m WHERE batch_id = :b"),
                 {"s": status, "now": now, "m": message, "b": batch_id})


def mark_extracted(warehouse: Engine, batch_id: datetime, now: datetime) -> None:
    with warehouse.begin() as conn:
        set_status(conn, batch_id, "extracted", now)


def require_extracted(conn: Connection, batch_id: datetime) -> Batch:
    """The batch, if it may be validated now; BatchError naming what happened to it otherwise.

    A batch that already has a verdict is returned as it is (a retried task keeps the verdict).
    """
    batch = get(conn, batch_id)
    if batch is None:
        raise BatchError(f"batch {batch_id.isoformat(sep=' ')} is not in the ledger (ops.batches): no extraction "
                         "wrote it; rerun the period, extraction included")
    if batch.status == "extracting":
        raise BatchError(f"the extraction of {batch.describe()} did not complete; rerun the period, extraction "
                         "included (the next extraction takes its rows over)")
    if batch.status == "absorbed":
        raise BatchError(f"{batch.describe()} was taken over by batch {batch.absorbed_into} of a later "
                         "extraction before it was validated: its rows are validated with that batch. This run "
                         "cannot go on; rerun the period")
    return batch


def _covered(conn: Connection, batch_id: datetime) -> list[datetime]:
    """The batch and every batch absorbed into it, however many hands its rows went through."""
    children: dict[datetime, list[datetime]] = {}
    for child, parent in conn.execute(sa.text(
            "SELECT batch_id, absorbed_into FROM ops.batches WHERE absorbed_into IS NOT NULL")).all():
        children.setdefault(_stamp(parent), []).append(_stamp(child))
    covered, todo = [], [batch_id]
    while todo:
        current = todo.pop()
        covered.append(current)
        todo += children.get(current, [])
    return covered


def windows(conn: Connection, batch_id: datetime) -> dict[str, list[tuple[datetime | None, datetime]]]:
    """Per source table, the windows the batch's rows were read from (its own and absorbed ones)."""
    ids = sa.bindparam("ids", _covered(conn, batch_id), expanding=True)
    found: dict[str, list[tuple[datetime | None, datetime]]] = {}
    for table, start, end in conn.execute(sa.text(
            "SELECT source_table, window_start, window_end FROM ops.batch_windows WHERE batch_id IN :ids")
            .bindparams(ids)).all():
        found.setdefault(table, []).append((_stamp(start), _stamp(end)))
    return found


def watermark(conn: Connection, table: str) -> datetime | None:
    """Rows of ``table`` before this instant are in raw and validated (None: nothing yet)."""
    value = conn.execute(sa.text("SELECT MAX(extracted_through) FROM ops.extract_watermarks WHERE source_table = :t"),
                         {"t": table}).all()[0][0]
    return _stamp(value)


def _set_watermark(conn: Connection, table: str, through: datetime | None, now: datetime) -> None:
    conn.execute(sa.text("DELETE FROM ops.extract_watermarks WHERE source_table = :t"), {"t": table})
    if through is not None:
        conn.execute(sa.text("INSERT INTO ops.extract_watermarks (source_table, extracted_through, updated_at) "
                             "VALUES (:t, :through, :now)"), {"t": table, "through": through, "now": now})


def pass_batch(conn: Connection, batch_id: datetime, now: datetime) -> dict[str, datetime | None]:
    """The verdict *passed*: each table's watermark moves to the end of the windows the batch read.

    A window that ends before the watermark (a rerun of an earlier period) leaves it where it is.
    Returns the watermarks.
    """
    moved = {}
    read = windows(conn, batch_id)
    for table in SOURCE_TABLES:
        current = watermark(conn, table)
        ends = [end for _, end in read.get(table, [])]
        moved[table] = max([current, *ends], key=lambda t: t or datetime.min) if ends else current
        if moved[table] != current:
            _set_watermark(conn, table, moved[table], now)
    set_status(conn, batch_id, "passed", now)
    return moved


def reject_batch(conn: Connection, batch_id: datetime, now: datetime, message: str) -> dict[str, datetime | None]:
    """The verdict *rejected* (the caller removes the rows): each table's watermark goes back to
    the earliest start of the windows the batch read, since its extraction replaced the rows
    there; a window over all history drops the watermark. Returns the watermarks."""
    rewound = {}
    read = windows(conn, batch_id)
    for table in SOURCE_TABLES:
        current, starts = watermark(conn, table), [start for start, _ in read.get(table, [])]
        if not starts:
            rewound[table] = current
            continue
        target = None if current is None or None in starts else min(current, *starts)
        if target != current:
            _set_watermark(conn, table, target, now)
        rewound[table] = target
    set_status(conn, batch_id, "rejected", now, message[:4000])
    return rewound


def settled(conn: Connection) -> tuple[int, datetime | None]:
    """A token of the ledger's state, when no batch is in flight; BatchInFlight otherwise.

    A stage that reads raw takes it at its start and compares it before its end (``unchanged``):
    equal tokens mean no batch was opened, absorbed or given a verdict meanwhile, so everything
    the stage read had passed validation.
    """
    waiting = in_flight(conn)
    if waiting:
        first = waiting[0]
        raise BatchInFlight(
            f"{first.describe()} has no verdict yet{f' (and {len(waiting) - 1} more)' if len(waiting) > 1 else ''}: "
            "grading now would read rows that were never validated. If that run is still going, this task succeeds "
            "once its validate task has finished (retry it then); if it died, rerun any period - its extraction "
            "takes the rows over and validates them.")
    count, latest = conn.execute(sa.text("SELECT COUNT(*), MAX(updated_at) FROM ops.batches")).all()[0]
    return int(count), _stamp(latest)


def unchanged(conn: Connection, token: tuple[int, datetime | None], stage: str) -> None:
    """Raise BatchInFlight if the ledger moved since ``token`` was taken (see ``settled``)."""
    if settled(conn) != token:
        raise BatchInFlight(f"a batch was extracted or validated while the {stage} stage read raw, so what it "
                            "read may mix validated and unvalidated rows; retry the task")


def mark_published(conn: Connection, run_id: str, now: datetime) -> None:
    """The run's validated batch has been published (the last state of its lifecycle).

    ``updated_at`` stays as it is: publishing changes nothing in raw, so stages of other runs
    reading raw meanwhile need not start over (see ``settled``)."""
    conn.execute(sa.text("UPDATE ops.batches SET status = 'published', published_at = :now "
                         "WHERE run_id = :run AND status = 'passed'"), {"run": run_id, "now": now})
