"""Expectation suites (grading.validation.suites): every source table has one whose checks say what
to do, a broken suite is refused naming file and check before any data is touched, and the bound on
the quarantined share is added, or checked, wherever rows may be quarantined."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from grading.contract import SOURCE_TABLES
from grading.validation import SuiteError, check_frame, load_suite, load_suites, predicate
from grading.validation.suites import (
    DEFAULT_MAX_QUARANTINE_SHARE,
    DEFAULT_QUARANTINE_MIN_ROWS,
    EARLIEST_TIME,
    QUARANTINE_SHARE,
    expectation_parameters,
)
from tests.helpers import ROOT

EditSuite = Callable[[str, Callable[[dict], object]], Path]


def test_every_source_table_has_a_suite_with_actions() -> None:
    suites = load_suites()
    assert set(suites) == set(SOURCE_TABLES)
    for suite in suites.values():
        checks = [*suite.expectations, *suite.checks]
        assert all(c.action for c in checks)
        assert all(c.reason for c in suite.row_level)
        for check in suite.row_level:  # the quarantine can select each row-level check's rows in SQL
            assert predicate(suite, check)[0]
    interactions = suites["interactions"]
    assert {c.type for c in interactions.row_level} == {
        "expect_column_values_to_not_be_null", "expect_column_values_to_reference_known_customers",
        "expect_event_time_not_before_customer_created", "expect_column_values_to_be_between"}
    frame = pd.DataFrame({"interaction_id": ["i1", "i2", "i2"], "customer_id": ["c", "c", "c"],
                          "ts": pd.to_datetime(["2024-01-01"] * 3), "kind": ["call", None, "visit"]})
    failed = {(r.column, r.expectation, r.severity, r.unexpected_count)
              for r in check_frame("interactions", frame) if not r.success}
    assert failed == {("interaction_id", "expect_column_values_to_be_unique", "critical", 2),
                      ("kind", "expect_column_values_to_not_be_null", "row", 1)}


@pytest.mark.parametrize(("change", "error"), [
    (lambda s: s["expectations"][1]["meta"].update(severity="fatal"),
     "expectations[1] expect_column_values_to_not_be_null: severity must be one of ('critical', 'row'), not 'fatal'"),
    (lambda s: s["expectations"][5]["meta"].pop("reason"),
     "expectations[5] expect_column_values_to_be_in_set: a row-level check needs meta.reason"),
    (lambda s: s["expectations"][2]["meta"].update(severity="row", reason="dup"),
     "expectations[2] expect_column_values_to_be_unique: expect_column_values_to_be_unique cannot be row-level"),
    (lambda s: s["expectations"][4]["kwargs"].update(column="total"),
     "expectations[4] expect_column_values_to_be_between: column 'total' is not a column of raw.orders"),
    (lambda s: s["checks"].append({"type": "expect_the_moon", "meta": {"severity": "critical", "action": "x"}}),
     "checks[7] expect_the_moon: unknown check 'expect_the_moon'"),
])
def test_a_broken_suite_is_refused_with_file_and_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        change, error: str) -> None:
    shutil.copytree(ROOT / "include" / "expectations", tmp_path / "expectations")
    path = tmp_path / "expectations" / "orders.json"
    spec = json.loads(path.read_text(encoding="utf-8"))
    change(spec)
    path.write_text(json.dumps(spec), encoding="utf-8")
    monkeypatch.setenv("GRADING_INCLUDE_DIR", str(tmp_path))
    with pytest.raises(SuiteError) as refused:
        load_suites()
    assert str(refused.value).startswith(f"{path}: {error}")


@pytest.fixture
def edit_suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> EditSuite:
    """Copies of the shipped suites in an include folder of the test's own; returns an editor of one of them."""
    shutil.copytree(ROOT / "include" / "expectations", tmp_path / "expectations")
    monkeypatch.setenv("GRADING_INCLUDE_DIR", str(tmp_path))

    def edit(table: str, change: Callable[[dict], object]) -> Path:
        path = tmp_path / "expectations" / f"{table}.json"
        spec = json.loads(path.read_text(encoding="utf-8"))
        change(spec)
        path.write_text(json.dumps(spec), encoding="utf-8")
        return path

    return edit


def _bounds(table: str) -> list[dict]:
    return [dict(c.kwargs) for c in load_suite(table).checks if c.type == QUARANTINE_SHARE]


def test_a_suite_with_row_level_checks_always_has_a_quarantine_bound(edit_suite: EditSuite) -> None:
    assert not load_suite("customers").row_level
    assert _bounds("customers") == []  # nothing can be quarantined: nothing to bound
    edit_suite("surveys", lambda s: s["checks"].remove(next(c for c in s["checks"] if c["type"] == QUARANTINE_SHARE)))
    assert _bounds("surveys") == [{"max_share": DEFAULT_MAX_QUARANTINE_SHARE, "min_rows": DEFAULT_QUARANTINE_MIN_ROWS}]
    bound = next(c for c in load_suite("surveys").checks if c.type == QUARANTINE_SHARE)
    assert bound.severity == "critical"
    assert "broken feed or mapping" in bound.action


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"max_share": 1.5}, "max_share must be a share from 0 to 1"),
    ({"max_share": True}, "max_share must be a share from 0 to 1"),
    ({"min_rows": -1}, "min_rows must be a whole number, 0 or more"),
    ({"min_rows": 2.5}, "min_rows must be a whole number, 0 or more"),
])
def test_a_quarantine_bound_out_of_range_is_refused(edit_suite: EditSuite, kwargs: dict, error: str) -> None:
    def change(spec: dict) -> None:
        next(c for c in spec["checks"] if c["type"] == QUARANTINE_SHARE)["kwargs"] = kwargs

    path = edit_suite("tickets", change)
    with pytest.raises(SuiteError) as refused:
        load_suite("tickets")
    assert str(refused.value) == f"{path}: checks[6] {QUARANTINE_SHARE}: {error}"


def test_a_missing_or_unreadable_suite_is_named(edit_suite: EditSuite, tmp_path: Path) -> None:
    (tmp_path / "expectations" / "surveys.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(SuiteError, match=r"surveys\.json: cannot read the suite: "):
        load_suites()
    (tmp_path / "expectations" / "surveys.json").unlink()
    (tmp_path / "expectations" / "tickets.json").unlink()
    folder = re.escape(str(tmp_path / "expectations"))
    with pytest.raises(SuiteError, match=rf"^no expectation suite for tickets, surveys in {folder}$"):
        load_suites()


def test_parameter_bounds_follow_the_time_of_the_check_and_the_suites_tolerance(edit_suite: EditSuite) -> None:
    now = datetime(2025, 1, 1, 12)
    assert expectation_parameters(load_suite("orders"), now) == {
        "future_limit": now + timedelta(hours=24), "earliest_time": EARLIEST_TIME}
    edit_suite("orders", lambda s: s["meta"].update(future_tolerance_hours=1.5))
    assert expectation_parameters(load_suite("orders"), now)["future_limit"] == datetime(2025, 1, 1, 13, 30)
