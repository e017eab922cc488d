"""The batch ledger (grading.ledger) on a DuckDB warehouse: a batch left without a verdict is absorbed
by the next extraction, rows and windows included; the verdicts move the extraction watermarks
(passed: forward, rejected: back); only an extracted batch may be validated; and the stages that read
raw see a batch in flight, or one that arrived while they read."""

from __future__ import annotations

from datetime import date, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from grading import ledger
from grading.ledger import BatchError, BatchInFlight

AS_OF = date(2024, 10, 1)
CUTOFF = datetime(2024, 10, 1)
NOW = datetime(2024, 10, 1, 2, 0)


def extracted(migrated_warehouse: Engine, batch: datetime, run_id: str, customer: str,
              start: datetime | None = None, end: datetime = CUTOFF, complete: bool = True) -> list[ledger.Batch]:
    """An extraction as grading.extract does it: the batch opened, one customer row written with its
    window, the batch marked extracted (unless ``complete`` is False: a worker killed midway)."""
    absorbed = ledger.open_batch(migrated_warehouse, batch, run_id, AS_OF, batch)
    with migrated_warehouse.begin() as conn:
        conn.execute(sa.text("INSERT INTO raw.customers (customer_id, created_at, extracted_at) "
                             "VALUES (:c, '2024-01-01', :b)"), {"c": customer, "b": batch})
        ledger.record_window(conn, batch, "customers", start, end, 1)
    if complete:
        ledger.mark_extracted(migrated_warehouse, batch, batch)
    return absorbed


def test_the_next_extraction_absorbs_a_batch_left_without_a_verdict(migrated_warehouse: Engine) -> None:
    killed, later = datetime(2024, 10, 1, 1, 0), datetime(2024, 10, 1, 1, 30)
    extracted(migrated_warehouse, killed, "killed-run", "C1", end=datetime(2024, 9, 1), complete=False)

    absorbed = extracted(migrated_warehouse, later, "next-run", "C2", start=datetime(2024, 9, 1))

    assert [b.batch_id for b in absorbed] == [killed]
    with migrated_warehouse.connect() as conn:
        old = ledger.get(conn, killed)
        assert old is not None
        assert (old.status, old.absorbed_into) == ("absorbed", later)
        # the killed run's rows are now the new batch's, validated with it, and so are its windows
        stamps = conn.execute(sa.text("SELECT customer_id, extracted_at FROM raw.customers ORDER BY 1")).all()
        assert stamps == [("C1", later), ("C2", later)]
        assert sorted(ledger.windows(conn, later)["customers"], key=str) == [
            (None, datetime(2024, 9, 1)), (datetime(2024, 9, 1), CUTOFF)]
        with pytest.raises(BatchError, match=r"killed-run .* was taken over by batch 2024-10-01 01:30:00"):
            ledger.require_extracted(conn, killed)
        assert ledger.require_extracted(conn, later).status == "extracted"


def test_only_a_completed_extraction_can_be_validated(migrated_warehouse: Engine) -> None:
    running = datetime(2024, 10, 1, 1, 0)
    extracted(migrated_warehouse, running, "run", "C1", complete=False)
    with migrated_warehouse.begin() as conn:
        with pytest.raises(BatchError, match="is not in the ledger"):
            ledger.require_extracted(conn, datetime(2000, 1, 1))
        with pytest.raises(BatchError, match="did not complete; rerun the period"):
            ledger.require_extracted(conn, running)
        ledger.set_status(conn, running, "extracted", NOW)
        ledger.pass_batch(conn, running, NOW)
        # a retried validate task keeps the verdict it had
        assert ledger.require_extracted(conn, running).status == "passed"


def test_a_pass_moves_the_watermark_forward_and_a_rejection_winds_it_back(migrated_warehouse: Engine) -> None:
    first, rerun, bad, everything = (datetime(2024, 10, 1, h) for h in (1, 2, 3, 4))
    with migrated_warehouse.begin() as conn:
        assert ledger.watermark(conn, "customers") is None
    extracted(migrated_warehouse, first, "r1", "C1", start=None, end=CUTOFF)
    with migrated_warehouse.begin() as conn:
        moved = ledger.pass_batch(conn, first, NOW)
    assert moved["customers"] == CUTOFF
    assert moved["orders"] is None  # the batch read no orders window: that watermark stays unset

    # a rerun of an earlier period reads a window ending before the watermark: it stays
    extracted(migrated_warehouse, rerun, "r2", "C2", start=datetime(2024, 6, 1), end=datetime(2024, 7, 1))
    with migrated_warehouse.begin() as conn:
        assert ledger.pass_batch(conn, rerun, NOW)["customers"] == CUTOFF

    # a rejected batch that re-read from September: the next run reads from there again
    extracted(migrated_warehouse, bad, "r3", "C3", start=datetime(2024, 9, 1), end=datetime(2024, 11, 1))
    with migrated_warehouse.begin() as conn:
        assert ledger.reject_batch(conn, bad, NOW, "orders_amount_positive failed")["customers"] \
            == datetime(2024, 9, 1)
        assert ledger.watermark(conn, "customers") == datetime(2024, 9, 1)
        rejected = ledger.get(conn, bad)
        assert rejected is not None
        assert rejected.status == "rejected"

    # a rejected batch that read all history drops the watermark
    extracted(migrated_warehouse, everything, "r4", "C4", start=None, end=datetime(2024, 11, 1))
    with migrated_warehouse.begin() as conn:
        assert ledger.reject_batch(conn, everything, NOW, "x" * 5000)["customers"] is None
        assert ledger.watermark(conn, "customers") is None
        message = conn.execute(sa.text("SELECT message FROM ops.batches WHERE run_id = 'r4'")).scalar_one()
    assert message == "x" * 4000  # the message is kept, cut to the column's size


def test_stages_reading_raw_see_a_batch_in_flight_and_one_that_arrived_meanwhile(migrated_warehouse: Engine) -> None:
    first, second = datetime(2024, 10, 1, 1, 0), datetime(2024, 10, 1, 3, 0)
    extracted(migrated_warehouse, first, "r1", "C1")
    with migrated_warehouse.begin() as conn:
        with pytest.raises(BatchInFlight, match=r"batch 2024-10-01 01:00:00 of run r1 .* has no verdict yet"):
            ledger.settled(conn)
        ledger.pass_batch(conn, first, NOW)
        token = ledger.settled(conn)
        ledger.mark_published(conn, "r1", NOW)  # publishing changes nothing in raw: the token holds
        ledger.unchanged(conn, token, "features")
        published = ledger.get(conn, first)
        assert published is not None
        assert published.status == "published"

    extracted(migrated_warehouse, second, "r2", "C2")
    with migrated_warehouse.begin() as conn:
        ledger.pass_batch(conn, second, datetime(2024, 10, 1, 4, 0))
        with pytest.raises(BatchInFlight, match="while the flags stage read raw"):
            ledger.unchanged(conn, token, "flags")
