"""The Great Expectations gate: bad source rows stop the run before anything is published."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from grading import demo
from grading.pipeline import Connections, run_grading
from grading.validate import ValidationFailed, check_frame
from tests.helpers import published, scalar


def test_a_clean_frame_passes_every_check() -> None:
    frame = pd.DataFrame({"survey_id": ["s1", "s2"], "customer_id": ["c", "c"],
                          "responded_at": pd.to_datetime(["2024-01-01", "2024-02-01"]), "csat": [1, 5], "nps": [0, 10]})
    results = check_frame("surveys", frame)
    assert results and all(r.success for r in results)


def test_out_of_range_scores_are_reported_with_their_keys() -> None:
    frame = pd.DataFrame({"survey_id": ["s1", "s2", "s3"], "customer_id": ["c"] * 3,
                          "responded_at": pd.to_datetime(["2024-01-01"] * 3), "csat": [0, 6, 3], "nps": [11, 5, 5]})
    failed = {(r.column, r.unexpected_count, r.sample_keys) for r in check_frame("surveys", frame) if not r.success}
    assert failed == {("csat", 2, ("s1", "s2")), ("nps", 1, ("s1",))}


def test_missing_column_is_a_critical_failure() -> None:
    frame = pd.DataFrame({"order_id": ["o1"], "customer_id": ["c"], "order_ts": pd.to_datetime(["2024-01-01"]),
                          "status": ["completed"], "amount": [1.0]})  # no margin column
    failed = [r for r in check_frame("orders", frame) if not r.success]
    assert [r.expectation for r in failed] == ["expect_table_columns_to_match_set"]
    assert "raw.orders: expect_table_columns_to_match_set failed; observed" in failed[0].message()


def test_bad_rows_stop_the_run_and_earlier_periods_stay_untouched(
    tmp_path: Path, warehouse_url: str
) -> None:
    source_url = f"sqlite:///{tmp_path / 'source.sqlite'}"
    data = demo.generate(customers=200, seed=5)
    demo.write_source(data, source_url)
    conns = Connections(source_url=source_url, warehouse_url=warehouse_url)
    run_grading(conns, date(2024, 10, 1))
    before = published(warehouse_url)

    customer = data.customers["customer_id"].iloc[0]
    bad = pd.DataFrame({
        "order_id": ["BAD1", "DUP1", "DUP1", "ODD1"], "customer_id": [customer] * 4,
        "order_ts": pd.to_datetime(["2024-11-15 10:00"] * 4), "status": ["completed", "completed", "completed", "lost"],
        "amount": [-5.0, 10.0, 11.0, 12.0], "margin": [0.0, 1.0, 1.0, 1.0],
    })
    engine = sa.create_engine(source_url)
    with engine.begin() as conn:
        bad.to_sql("orders", conn, if_exists="append", index=False)
    engine.dispose()

    with pytest.raises(ValidationFailed) as failure:
        run_grading(conns, date(2025, 1, 1), run_id="bad-run")
    message = str(failure.value)
    assert "3 critical check(s) failed for as-of 2025-01-01; nothing was published" in message
    assert "raw.orders.amount: expect_column_values_to_be_between failed in 1 row(s) (e.g. BAD1)" in message
    assert "raw.orders.order_id: expect_column_values_to_be_unique failed in 2 row(s) (e.g. DUP1, DUP1)" in message
    assert "raw.orders.status: expect_column_values_to_be_in_set failed in 1 row(s) (e.g. ODD1)" in message

    after = published(warehouse_url)
    assert all(after[t].equals(before[t]) for t in before)
    assert scalar(warehouse_url, "SELECT COUNT(*) FROM marts.validation_results "
                                 "WHERE run_id = 'bad-run' AND NOT success") == 3
    assert scalar(warehouse_url, "SELECT status FROM marts.run_audit WHERE run_id = 'bad-run' "
                                 "AND stage = 'validate'") == "failed"
