"""Predicates (grading.validation.predicates): the SQL of each row-wise check selects exactly the rows
Great Expectations counts - bounds, value sets, column pairs and row_condition clauses included - run
on DuckDB against GX's own count; a check the SQL cannot express is refused."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from grading.validation import SuiteError, check_frame, load_suite, predicate
from grading.validation.results import CheckResult
from grading.validation.suites import Check, expectation_parameters
from grading.warehouse import open_engine
from tests.helpers import ROOT, load_raw

TS = pd.Timestamp("2024-01-01")
BEFORE_1900 = pd.Timestamp("1899-12-31 23:59:59")

# Rows on both sides of every row-level bound of the shipped suites, with missing values.
FRAMES = {
    "orders": pd.DataFrame({
        "order_id": [f"o{i:02d}" for i in range(1, 11)],
        "customer_id": ["c"] * 10,
        "order_ts": [TS, TS, pd.Timestamp("1900-01-01"), BEFORE_1900, TS, TS, TS, TS, TS, TS],
        "status": ["completed", "completed", "completed", "completed", "refunded", "lost", "completed", "completed",
                   "Completed", "cancelled"],
        "amount": [0.0, -0.01, 10_000_000.0, 10_000_000.01, -5.0, 5.0, 5.0, 5.0, -3.0, 3.0],
        "margin": [0.0, -0.01, 5.0, 10_000_000.02, 1.0, None, None, 10_000_000.01, -20_000_000.0, -10_000_000.0],
    }),
    "surveys": pd.DataFrame({
        "survey_id": ["s1", "s2", "s3", "s4", "s5", "s6"], "customer_id": ["c"] * 6,
        "responded_at": [TS] * 5 + [pd.Timestamp("1899-06-01")],
        "csat": pd.array([1, 0, 5, 6, None, 3], dtype="Int64"),
        "nps": pd.array([0, 10, 11, -1, None, 5], dtype="Int64"),
    }),
    "tickets": pd.DataFrame({
        "ticket_id": ["t1", "t2", "t3", "t4", "t5"], "customer_id": ["c"] * 5,
        "opened_at": [TS, TS, TS, TS, pd.Timestamp("1899-01-01")],
        "closed_at": [pd.Timestamp("2024-01-02"), None, TS, pd.Timestamp("2023-12-31"), pd.Timestamp("1899-01-02")],
        "category": ["complaint", "refund", "inquiry", "after-sales", "complaint"],
        "severity": ["low"] * 5, "resolved": [True] * 5,
    }),
    "interactions": pd.DataFrame({
        "interaction_id": ["i1", "i2", "i3", "i4"], "customer_id": ["c"] * 4,
        "ts": [TS, TS, pd.Timestamp("1899-01-01"), TS], "kind": ["call", None, "visit", None],
    }),
}


def selected(url: str, table: str, check: Check) -> tuple[int, tuple[str, ...]]:
    """How many rows of raw.``table`` the check's predicate selects, and the first five keys."""
    suite = load_suite(table)
    where, params = predicate(suite, check, expectation_parameters(suite, datetime.now(UTC).replace(tzinfo=None)))
    key = suite.spec.key
    with open_engine(url) as engine, engine.connect() as conn:
        keys = conn.execute(sa.text(f"SELECT r.{key} FROM raw.{table} AS r WHERE {where} ORDER BY 1"),  # noqa: S608 - test constants
                            params).scalars().all()
    return len(keys), tuple(keys[:5])


def row_level(results: list[CheckResult]) -> list[CheckResult]:
    return [r for r in results if r.check is not None and r.check.severity == "row"]


@pytest.mark.parametrize("table", list(FRAMES))
def test_each_row_level_check_selects_in_sql_exactly_the_rows_gx_counts(tmp_path: Path, table: str) -> None:
    url = f"duckdb:///{tmp_path}/w.duckdb"
    frame = FRAMES[table]
    load_raw(url, **{table: frame})
    checked = row_level(check_frame(table, frame))
    assert {r.check.index for r in checked} == {c.index for c in load_suite(table).expectations if c.severity == "row"}
    for result in checked:
        assert result.unexpected_count, f"{table}: {result.expectation} on {result.column} found nothing to compare"
        assert selected(url, table, result.check) == (result.unexpected_count, result.sample_keys), \
            f"{table}: {result.expectation} on {result.column}"


def _orders_suite_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *expectations: dict) -> None:
    """The shipped suites, with ``expectations`` (row-level) added to raw.orders' suite."""
    shutil.copytree(ROOT / "include" / "expectations", tmp_path / "include" / "expectations")
    path = tmp_path / "include" / "expectations" / "orders.json"
    suite = json.loads(path.read_text(encoding="utf-8"))
    meta = {"severity": "row", "reason": "test", "action": "test"}
    suite["expectations"] += [{**e, "meta": meta} for e in expectations]
    path.write_text(json.dumps(suite), encoding="utf-8")
    monkeypatch.setenv("GRADING_INCLUDE_DIR", str(tmp_path / "include"))


def _comparison(column: str, operator: str, parameter: object) -> dict:
    return {"type": "comparison", "column": {"name": column}, "operator": operator, "parameter": parameter}


def test_row_conditions_and_strict_bounds_select_what_gx_counts(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"duckdb:///{tmp_path}/w.duckdb"
    frame = FRAMES["orders"]
    load_raw(url, orders=frame)  # migrated with the shipped include folder, before the suite is changed
    added = [
        {"type": "expect_column_values_to_be_between",
         "kwargs": {"column": "amount", "min_value": 0, "max_value": 5, "strict_min": True, "strict_max": True,
                    "row_condition": {"type": "and", "conditions": [
                        _comparison("status", "==", "completed"),
                        {"type": "nullity", "column": {"name": "margin"}, "is_null": False}]}}},
        {"type": "expect_column_values_to_be_between",
         "kwargs": {"column": "margin", "max_value": 1, "row_condition": _comparison("amount", ">=", 3)}},
        {"type": "expect_column_values_to_be_in_set",
         "kwargs": {"column": "status", "value_set": ["completed"],
                    "row_condition": {"type": "nullity", "column": {"name": "margin"}, "is_null": True}}},
        {"type": "expect_column_pair_values_a_to_be_greater_than_b",
         "kwargs": {"column_A": "amount", "column_B": "margin", "row_condition": _comparison("amount", "<", 5)}},
    ]
    _orders_suite_with(tmp_path, monkeypatch, *added)
    first = len(load_suite("orders").expectations) - len(added)
    checked = {r.check.index: r for r in row_level(check_frame("orders", frame))}
    for index in range(first, first + len(added)):
        result = checked[index]
        assert result.unexpected_count, f"added check {index - first} found nothing to compare"
        assert selected(url, "orders", result.check) == (result.unexpected_count, result.sample_keys), \
            f"added check {index - first}"


def test_a_not_equal_row_condition_is_refused_when_the_suite_loads(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """GX's pandas engine keeps a row whose column is missing under '!=' (NaN != x), its SQL engine and the
    predicate drop it (NULL <> x): the rows checked would depend on the warehouse, so the suite is refused."""
    _orders_suite_with(tmp_path, monkeypatch, {
        "type": "expect_column_values_to_be_between",
        "kwargs": {"column": "amount", "max_value": 4, "row_condition": {"type": "and", "conditions": [
            _comparison("status", "==", "completed"), _comparison("margin", "!=", 0)]}}})
    with pytest.raises(SuiteError, match=r"orders.json: expectations\[\d+\] .*a row_condition cannot use '!='"):
        load_suite("orders")


def test_checks_without_a_sql_translation_are_refused() -> None:
    suite = load_suite("orders")

    def check(type_: str, **kwargs: object) -> Check:
        return Check(type_, kwargs, "row", "act", "why", True, 99)

    with pytest.raises(SuiteError, match="expect_column_values_to_be_unique has no SQL translation"):
        predicate(suite, check("expect_column_values_to_be_unique", column="order_id"))
    with pytest.raises(SuiteError, match=r"unsupported row_condition .*'IN'"):
        predicate(suite, check("expect_column_values_to_not_be_null", column="margin",
                               row_condition=_comparison("status", "IN", ["completed"])))
    with pytest.raises(SuiteError, match="row_condition on unknown column 'total'"):
        predicate(suite, check("expect_column_values_to_not_be_null", column="margin",
                               row_condition=_comparison("total", "==", 1)))
    with pytest.raises(SuiteError, match=r"unknown \$PARAMETER 'late'; known: \['earliest_time', 'future_limit'\]"):
        predicate(suite, check("expect_column_values_to_be_between", column="order_ts",
                               max_value={"$PARAMETER": "late"}))
    with pytest.raises(SuiteError, match="expect_interval_not_empty is not a row-wise check"):
        predicate(suite, Check("expect_interval_not_empty", {}, "critical", "act", "", False, 4))
