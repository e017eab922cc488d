"""The validate stage's verdict (grading.validation.gate): a rejected batch is re-read once the
source is fixed, a quarantined batch is graded without its bad rows, a rerun of the period gives
the same quarantine, a retried task keeps its batch's outcome, and on PostgreSQL the batch's rows
stay in the database.

The catalogue of bad inputs (tests/integration/test_validation_catalogue.py) checks one bad input
at a time; suites, GX, SQL checks and the quarantine have their own unit tests.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from grading import demo
from grading.contract import SOURCE_TABLES
from grading.frames import read_frame
from grading.pipeline import Connections, extract_stage, run_grading, validate_stage
from grading.validation import ValidationFailed
from grading.warehouse import open_engine
from tests.helpers import published, scalar


def _quarantine(url: str) -> pd.DataFrame:
    with open_engine(url) as engine, engine.connect() as conn:
        frame = read_frame(conn, "SELECT source_table, row_key, expectation, column_name, reason, row_json "
                                 "FROM ops.quarantine ORDER BY source_table, row_key, expectation")
    return frame.astype(str)


def test_a_rejected_batch_is_re_read_once_fixed_and_bad_rows_are_quarantined_idempotently(
    tmp_path: Path, warehouse_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = tmp_path / "docs"
    monkeypatch.setenv("GRADING_DATA_DOCS_DIR", str(docs))
    source_url = f"sqlite:///{tmp_path / 'source.sqlite'}"
    data = demo.generate(customers=200, seed=5)
    demo.write_source(data, source_url)
    conns = Connections(source_url=source_url, warehouse_url=warehouse_url)
    run_grading(conns, date(2024, 10, 1), run_id="first")
    before = published(warehouse_url)

    customer = data.customers["customer_id"].iloc[0]
    bad = pd.DataFrame({
        "order_id": ["BAD1", "DUP1", "DUP1", "ODD1"], "customer_id": [customer] * 4,
        # inside the look-back of the next extraction, so a rerun re-reads and re-checks them
        "order_ts": pd.to_datetime(["2024-12-30 10:00"] * 4), "status": ["completed", "completed", "completed", "lost"],
        "amount": [-5.0, 10.0, 11.0, 12.0], "margin": [-5.0, 1.0, 1.0, 1.0],
    })
    source = sa.create_engine(source_url)
    with source.begin() as conn:
        bad.to_sql("orders", conn, if_exists="append", index=False)

    # 1. A critical failure stops the run: nothing published, the batch's rows leave raw.
    with pytest.raises(ValidationFailed) as failure:
        run_grading(conns, date(2025, 1, 1), run_id="bad-run")
    message = str(failure.value)
    assert message.startswith("1 critical check(s) failed for as-of 2025-01-01; nothing was published")
    assert "\n- raw.orders.order_id: expect_column_values_to_be_unique failed in 2 row(s) (e.g. DUP1, DUP1). " \
           "An order id arrived more than once" in message
    assert "\nRow-level findings in the same batch (to fix too):\n" in message
    assert "- raw.orders.amount: expect_column_values_to_be_between failed in 1 row(s) (e.g. BAD1); " \
           "quarantine reason: completed order with a negative amount or one above 10,000,000." in message
    assert "- raw.orders.status: expect_column_values_to_be_in_set failed in 1 row(s) (e.g. ODD1); " in message
    assert all(published(warehouse_url)[t].equals(before[t]) for t in before)
    assert scalar(warehouse_url, "SELECT COUNT(*) FROM audit.validation_results "
                                 "WHERE run_id = 'bad-run' AND NOT success") == 3
    assert scalar(warehouse_url, "SELECT sample_keys FROM audit.validation_results WHERE run_id = 'bad-run' AND "
                                 "expectation = 'expect_column_values_to_be_unique' AND NOT success") == "DUP1, DUP1"
    assert scalar(warehouse_url, "SELECT status FROM audit.run_audit WHERE run_id = 'bad-run' "
                                 "AND stage = 'validate'") == "failed"
    assert scalar(warehouse_url, "SELECT COUNT(*) FROM raw.orders WHERE order_id IN ('BAD1', 'DUP1', 'ODD1')") == 0
    assert scalar(warehouse_url, "SELECT COUNT(*) FROM ops.quarantine") == 0

    # 2. Retrying the failed task (same batch) does not let the batch through.
    batch = scalar(warehouse_url, "SELECT MAX(extracted_at) FROM ops.validation_batches WHERE status = 'failed'")
    with pytest.raises(ValidationFailed, match="was rejected by run bad-run and its rows were removed from raw"):
        validate_stage(conns, date(2025, 1, 1), "bad-run", pd.Timestamp(batch).isoformat())

    # 3. Fixed at the source, the period passes: rows re-read from the rewound watermark, bad rows quarantined.
    with source.begin() as conn:
        conn.execute(sa.text("DELETE FROM orders WHERE order_id = 'DUP1'"))
    source.dispose()
    summary = run_grading(conns, date(2025, 1, 1), run_id="fixed-run")
    assert summary["validate"]["quarantined"]["orders"] == 2
    cutoff = pd.Timestamp("2025-01-01")
    graded = data.orders[data.orders["order_ts"] < cutoff]
    assert scalar(warehouse_url, "SELECT COUNT(*) FROM raw.orders") == len(graded)
    assert float(scalar(warehouse_url, "SELECT SUM(amount) FROM raw.orders")) == pytest.approx(
        graded["amount"].sum(), abs=0.01)
    quarantine = _quarantine(warehouse_url)
    assert quarantine[["source_table", "row_key", "expectation", "column_name"]].values.tolist() == [
        ["orders", "BAD1", "expect_column_values_to_be_between", "amount"],
        ["orders", "ODD1", "expect_column_values_to_be_in_set", "status"],
    ]
    assert quarantine["reason"].tolist() == [
        "completed order with a negative amount or one above 10,000,000 (amount=-5.00)",
        "unknown order status (expected completed, cancelled or refunded) (status=lost)",
    ]
    assert json.loads(quarantine["row_json"].iloc[0])["order_id"] == "BAD1"
    assert scalar(warehouse_url, "SELECT COUNT(*) FROM marts.customer_tier_snapshot "
                                 "WHERE as_of_date = '2025-01-01'") == 200
    assert all(published(warehouse_url, date(2024, 10, 1))[t].equals(before[t]) for t in before)

    # 4. A rerun of the period re-reads the bad rows and gives the same quarantine, replaced not doubled.
    run_grading(conns, date(2025, 1, 1), run_id="rerun")
    assert _quarantine(warehouse_url).equals(quarantine)
    assert scalar(warehouse_url, "SELECT MIN(run_id) || '/' || MAX(run_id) FROM ops.quarantine") == "rerun/rerun"

    # 5. Data Docs: one folder, every run's validation pages listed in its index.
    index = (docs / "index.html").read_text(encoding="utf-8")
    runs = {p.name for p in (docs / "validations" / "raw_orders").iterdir()}
    assert {"first", "bad-run", "fixed-run", "rerun"} <= runs
    assert "fixed-run" in index
    assert "bad-run" in index


def _gate(conns: Connections, run_id: str) -> dict:
    """Extract and validate one period, as the DAG's first two tasks do."""
    extracted = extract_stage(conns, date(2025, 1, 1), run_id)
    return validate_stage(conns, date(2025, 1, 1), run_id, extracted["batch"])


def test_data_docs_default_to_the_grading_home_and_can_be_turned_off(
    tmp_path: Path, grading_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source_url = f"sqlite:///{tmp_path / 'source.sqlite'}"
    demo.write_source(demo.generate(customers=60, seed=3), source_url)
    conns = Connections(source_url, f"duckdb:///{tmp_path / 'w.duckdb'}")
    summary = _gate(conns, "docs")
    assert summary["data_docs"] == (grading_home / "data_docs" / "index.html").as_uri()
    assert (grading_home / "data_docs" / "validations" / "raw_customers" / "docs").is_dir()

    monkeypatch.setenv("GRADING_DATA_DOCS_DIR", "off")
    extracted = extract_stage(conns, date(2025, 1, 1), "no-docs")
    first = validate_stage(conns, date(2025, 1, 1), "no-docs", extracted["batch"])
    assert first["data_docs"] is None
    # A retried task after the batch passed keeps that outcome: no second validation, no second results.
    again = validate_stage(conns, date(2025, 1, 1), "no-docs", extracted["batch"])
    assert (again["checks"], again["failed"]) == (first["checks"], 0)
    assert scalar(conns.warehouse_url, "SELECT COUNT(*) FROM audit.validation_results WHERE run_id = 'no-docs'") \
        == first["checks"]
    assert scalar(conns.warehouse_url, "SELECT COUNT(*) FROM ops.validation_batches WHERE run_id = 'no-docs'") \
        == len(SOURCE_TABLES)
    assert not (grading_home / "data_docs" / "validations" / "raw_customers" / "no-docs").exists()


def test_validation_stays_in_the_database_on_postgresql(tmp_path: Path, pg_url: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """On PostgreSQL no batch rows reach Python: every statement returns a few rows at most.

    (A GX query asset would fail this: GX runs the bare query to learn its columns.)
    """
    from sqlalchemy import event

    monkeypatch.setenv("GRADING_DATA_DOCS_DIR", "off")
    source_url = f"sqlite:///{tmp_path / 'source.sqlite'}"
    demo.write_source(demo.generate(customers=60, seed=3), source_url)
    conns = Connections(source_url, pg_url)
    extracted = extract_stage(conns, date(2025, 1, 1), "pg")
    assert extracted["rows"]["orders"] > 100

    big: list[tuple[int, str]] = []

    def count_rows(conn, cursor, statement, parameters, context, executemany) -> None:
        if conn.dialect.name == "postgresql" and cursor.description and cursor.rowcount > 25:
            big.append((cursor.rowcount, statement[:200]))

    event.listen(sa.engine.Engine, "after_cursor_execute", count_rows)
    try:
        summary = validate_stage(conns, date(2025, 1, 1), "pg", extracted["batch"])
    finally:
        event.remove(sa.engine.Engine, "after_cursor_execute", count_rows)
    assert big == []
    assert summary["failed"] == 0
    assert scalar(pg_url, "SELECT COUNT(*) FROM audit.validation_results WHERE run_id = 'pg'") \
        == summary["checks"] > 40
    # GX's engines are disposed and its sample tables and batch views dropped; the indexes the gate needs exist.
    assert scalar(pg_url, "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database()") == 1
    assert scalar(pg_url, "SELECT COUNT(*) FROM pg_views WHERE schemaname = 'ops'") == 0
    assert scalar(pg_url, "SELECT COUNT(*) FROM pg_tables WHERE tablename LIKE 'gx_sample%'") == 0  # GX's samples
    assert scalar(pg_url, "SELECT COUNT(*) FROM pg_indexes WHERE schemaname = 'raw'") == 2 * len(SOURCE_TABLES)
