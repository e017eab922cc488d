"""Check results (grading.validation.results): one line a data engineer can act on, customers' keys
only as pseudonyms, and audit.validation_results replaced per run and read back as it was stored."""

from __future__ import annotations

import logging
from datetime import date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from grading.keys import pseudonym
from grading.settings import pseudonym_key
from grading.validation import CheckResult, load_suite, stored_results
from grading.validation.results import ValidationReport, check_result, log_summary, sample, store_results
from grading.warehouse import migrate, open_engine


def test_a_failure_reads_as_one_line_with_rows_keys_reason_and_action() -> None:
    suite = load_suite("orders")
    amount = next(c for c in suite.row_level if c.column == "amount")
    result = check_result(suite, amount, success=False, unexpected=2, observed="ignored", keys=("o1", "o4"))
    assert result.message() == (
        "raw.orders.amount: expect_column_values_to_be_between failed in 2 row(s) (e.g. o1, o4); quarantine reason: "
        f"{amount.reason}. {amount.action}")
    columns = suite.expectations[0]  # a table-level check: observed instead of rows
    result = check_result(suite, columns, success=False, unexpected=None, observed="['order_id']", keys=())
    assert result.message() == ("raw.orders: expect_table_columns_to_match_set failed; observed ['order_id']. "
                                f"{columns.action}")


def test_customer_keys_leave_only_as_pseudonyms_and_the_message_says_how_to_find_them() -> None:
    suite = load_suite("customers")
    unique = next(c for c in suite.expectations if c.type == "expect_column_values_to_be_unique")
    result = check_result(suite, unique, success=False, unexpected=2, observed=None, keys=("c1", "c2"))
    assert result.sample_keys == (pseudonym("c1", pseudonym_key()), pseudonym("c2", pseudonym_key()))
    assert "c1" not in result.message()
    assert "SELECT customer_id FROM ops.customer_keys WHERE customer_key IN (...)" in result.message()
    already = check_result(suite, unique, success=False, unexpected=2, observed=None, keys=("k1",),
                           pseudonymised=True)
    assert already.sample_keys == ("k1",)
    orders = load_suite("orders")  # other tables' keys are not customers: shown as they are
    assert check_result(orders, orders.expectations[2], success=False, unexpected=1, observed=None,
                        keys=("o1",)).sample_keys == ("o1",)


def test_a_sample_is_a_few_sorted_keys_without_missing_ones() -> None:
    assert sample(iter(["k9", None, "k1", float("nan"), "k5", "k3", "k2", "k4", 7])) == ("7", "k1", "k2", "k3", "k4")


def test_results_are_stored_once_per_run_redacted_and_read_back(tmp_path: Path) -> None:
    suite = load_suite("orders")
    status = next(c for c in suite.row_level if c.column == "status")
    results = [
        check_result(suite, status, success=False, unexpected=3, observed=None, keys=("o1", "o2", "o3")),
        check_result(suite, suite.expectations[0], success=True, unexpected=None,
                     observed="written by jane.doe@example.com", keys=()),
    ]
    with open_engine(f"duckdb:///{tmp_path}/w.duckdb") as warehouse:
        migrate(warehouse)
        for _ in range(2):  # a retried task writes the run's rows once
            with warehouse.begin() as conn:
                store_results(conn, date(2025, 1, 1), "run-1", results)
        back = stored_results(warehouse, "run-1")
        with warehouse.connect() as conn:
            stored = conn.execute(sa.text("SELECT expectation, message, observed_value "
                                          "FROM audit.validation_results ORDER BY expectation")).all()
        assert stored_results(warehouse, "other-run") == []
    assert sorted(back, key=lambda r: r.expectation) == [
        CheckResult("raw_orders", "raw.orders", "expect_column_values_to_be_in_set", "status", "row", False, 3,
                    None, ("o1", "o2", "o3")),
        CheckResult("raw_orders", "raw.orders", "expect_table_columns_to_match_set", None, "critical", True, None,
                    "written by <e-mail>", ()),  # marts are BI-readable: no e-mail address
    ]
    assert [row.expectation for row in stored] == ["expect_column_values_to_be_in_set",
                                                   "expect_table_columns_to_match_set"]
    assert stored[0].message.startswith("raw.orders.status: expect_column_values_to_be_in_set failed in 3 row(s)")
    assert stored[1].message is None  # a passed check has nothing to say
    assert stored[1].observed_value == "written by <e-mail>"


def test_the_summary_is_a_line_per_table_and_one_for_the_batch(caplog: pytest.LogCaptureFixture) -> None:
    orders, customers = load_suite("orders"), load_suite("customers")
    status = next(c for c in orders.row_level if c.column == "status")
    results = [check_result(orders, status, success=False, unexpected=2, observed=None, keys=("o1", "o2")),
               check_result(orders, orders.expectations[0], success=True, unexpected=None, observed=None, keys=()),
               check_result(customers, customers.expectations[0], success=True, unexpected=None, observed=None,
                            keys=())]
    batch = datetime(2025, 1, 1, 1, 2, 3)
    report = ValidationReport(results, {"customers": 0, "orders": 2}, "file:///docs/index.html", 1.25,
                              {"customers": 10, "orders": 12345})
    with caplog.at_level(logging.INFO, logger="grading.validate"):
        log_summary(report, batch)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", "validate: raw.customers 10 rows, 1 checks, 0 failed -> passed"),
        ("INFO", "validate: raw.orders 12,345 rows, 2 checks, 1 failed -> passed, 2 row(s) quarantined"),
        ("INFO", "validate: batch 2025-01-01 01:02:03 passed: 2 row(s) quarantined in ops.quarantine; 3 checks, "
                 "1 failed, in 1.2s; results in audit.validation_results; Data Docs: file:///docs/index.html"),
        ("WARNING", results[0].message()),
    ]
    caplog.clear()
    results[1] = check_result(orders, orders.expectations[0], success=False, unexpected=None, observed="[]", keys=())
    with caplog.at_level(logging.INFO, logger="grading.validate"):
        log_summary(ValidationReport(results, {}, None, 2.0, report.rows), batch, rejected=True)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", "validate: raw.customers 10 rows, 1 checks, 0 failed -> passed, batch rejected for another table"),
        ("INFO", "validate: raw.orders 12,345 rows, 2 checks, 2 failed -> failed (1 critical)"),
        ("ERROR", "validate: batch 2025-01-01 01:02:03 rejected: 1 critical check(s) failed, its rows were removed "
                  "from raw; 3 checks, 2 failed, in 2.0s; results in audit.validation_results; Data Docs: not written"),
    ]  # the failed checks themselves are in the error the stage raises
