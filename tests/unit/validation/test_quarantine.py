"""The quarantine (grading.validation.quarantine), on a DuckDB warehouse: rows of failed row-level
checks leave raw for ops.quarantine with their reason, values and row; a count that disagrees with
the check's moves nothing; and the share of a batch that may be quarantined is bounded."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from grading.frames import bulk_insert, read_frame
from grading.validation import load_suite
from grading.validation.checks import Scope
from grading.validation.quarantine import quarantine_bounds, quarantine_rows
from grading.validation.results import CheckResult, check_result
from grading.validation.suites import Suite
from grading.warehouse import open_engine
from tests.helpers import load_raw

BATCH = datetime(2000, 1, 1)  # the batch load_raw writes
SCOPE = Scope(batch=BATCH, cutoff=datetime(2025, 1, 1), previous=None, source=None, now=datetime(2025, 1, 1))


def orders(ids: list[str], status: list[str] | None = None, amount: list[float] | None = None,
           margin: list[float] | None = None) -> pd.DataFrame:
    n = len(ids)
    return pd.DataFrame({"order_id": ids, "customer_id": "c1", "order_ts": pd.Timestamp("2024-12-01"),
                         "status": status or ["completed"] * n, "amount": amount or [10.0] * n,
                         "margin": margin or [1.0] * n})


def failed(suite: Suite, *columns_and_counts: tuple[str, int]) -> list[CheckResult]:
    """Failed results of the suite's row-level checks on ``column`` (amount: the range and the pair check)."""
    return [check_result(suite, check, success=False, unexpected=count, observed=None, keys=())
            for column, count in columns_and_counts for check in suite.row_level if check.column == column]


def test_failed_rows_move_to_quarantine_with_their_reason_and_values(tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path}/w.duckdb"
    load_raw(url, orders=orders(["o1", "o2", "o3", "o4"], status=["completed", "lost", "completed", "completed"],
                                amount=[10.0, 10.0, -5.0, 10.0], margin=[1.0, 1.0, -1.0, 1.0]))
    with open_engine(url) as engine:
        with engine.begin() as conn:  # a later batch: not this validation's business
            bulk_insert(conn, "raw.orders", orders(["o9"], status=["lost"]).assign(extracted_at=datetime(2025, 1, 2)))
        suite = load_suite("orders")
        with engine.begin() as conn:
            moved = quarantine_rows(conn, {"orders": suite}, failed(suite, ("status", 1), ("amount", 1)), SCOPE,
                                    "run-1", date(2025, 1, 1), datetime(2025, 1, 2))
        with engine.connect() as conn:
            left = conn.execute(sa.text("SELECT order_id FROM raw.orders ORDER BY 1")).scalars().all()
            quarantine = read_frame(conn, "SELECT row_key, expectation, column_name, reason, row_json, run_id "
                                          "FROM ops.quarantine ORDER BY row_key, expectation")
    assert moved == {"orders": 2}  # o3 failed two checks: one row moved
    assert left == ["o1", "o4", "o9"]
    assert quarantine[["row_key", "expectation", "column_name"]].values.tolist() == [
        ["o2", "expect_column_values_to_be_in_set", "status"],
        ["o3", "expect_column_pair_values_a_to_be_greater_than_b", "amount"],
        ["o3", "expect_column_values_to_be_between", "amount"],
    ]
    assert quarantine["reason"].tolist() == [
        "unknown order status (expected completed, cancelled or refunded) (status=lost)",
        "completed order whose margin is larger than its amount (amount=-5.00, margin=-1.00)",
        "completed order with a negative amount or one above 10,000,000 (amount=-5.00)",
    ]
    row = json.loads(quarantine["row_json"].iloc[0])
    assert (row["order_id"], row["status"], row["customer_id"]) == ("o2", "lost", "c1")
    assert set(quarantine["run_id"]) == {"run-1"}


def test_a_count_that_disagrees_with_the_check_moves_nothing(tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path}/w.duckdb"
    load_raw(url, orders=orders(["o1", "o2"], status=["completed", "lost"]))
    suite = load_suite("orders")
    with open_engine(url) as engine:
        with pytest.raises(RuntimeError, match=r"^quarantine of raw.orders by expect_column_values_to_be_in_set on "
                                               r"status: SQL selected 1 row\(s\) but the check counted 3; nothing "
                                               r"was moved$"), engine.begin() as conn:
            quarantine_rows(conn, {"orders": suite}, failed(suite, ("status", 3)), SCOPE, "run-1",
                            date(2025, 1, 1), datetime(2025, 1, 2))
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT COUNT(*) FROM raw.orders")).scalar() == 2
            assert conn.execute(sa.text("SELECT COUNT(*) FROM ops.quarantine")).scalar() == 0


@pytest.mark.parametrize(("rows", "bad", "success"), [
    (100, 6, True),  # 6 %, but no more than 10 rows
    (100, 11, False),  # 11 % and 11 rows
    (300, 11, True),  # 3.7 %
])
def test_the_quarantined_share_of_a_batch_is_bounded(tmp_path: Path, rows: int, bad: int, success: bool) -> None:
    url = f"duckdb:///{tmp_path}/w.duckdb"
    ids = [f"o{n:03d}" for n in range(rows)]
    # each bad row fails two checks (a negative amount below its margin) and counts once
    load_raw(url, orders=orders(ids, amount=[-5.0] * bad + [10.0] * (rows - bad), margin=[-1.0] * bad
                                + [1.0] * (rows - bad)))
    suite = load_suite("orders")
    with open_engine(url) as engine, engine.connect() as conn:
        (bound,) = quarantine_bounds(conn, {"orders": suite}, failed(suite, ("amount", bad)), SCOPE)
    assert bound.expectation == "expect_quarantined_share_at_most"
    assert bound.success is success
    assert bound.observed_value == (f"{bad} of {rows} row(s) of the batch ({bad / rows:.1%}) failed row-level "
                                    "checks; at most 5% may be quarantined (any share when 10 rows or fewer)")
    assert bound.sample_keys == (() if success else tuple(ids[:5]))


def test_a_batch_without_row_level_failures_is_within_its_bound(tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path}/w.duckdb"
    load_raw(url, orders=orders(["o1", "o2"]))
    suites = {"orders": load_suite("orders"), "customers": load_suite("customers")}
    with open_engine(url) as engine, engine.connect() as conn:
        bounds = quarantine_bounds(conn, suites, [], SCOPE)
    assert [(b.table, b.success) for b in bounds] == [("raw.orders", True)]  # customers: nothing to bound
    assert bounds[0].observed_value.startswith("0 of 2 row(s) of the batch (0.0%)")
