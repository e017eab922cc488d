"""Great Expectations (grading.validation.gx): a table's expectations run over a frame, row-level and
critical failures reported with their keys, timestamps beyond nanosecond range still checked, a
large DuckDB batch checked in parts with the same results, and where Data Docs go."""

from __future__ import annotations

import json
import shutil
from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from grading import demo
from grading.frames import read_frame
from grading.pipeline import Connections
from grading.validation import ValidationFailed, check_frame, data_docs_dir
from grading.warehouse import open_engine
from tests.helpers import ROOT, extract_validated


def test_a_clean_frame_passes_every_check() -> None:
    frame = pd.DataFrame({"survey_id": ["s1", "s2"], "customer_id": ["c", "c"],
                          "responded_at": pd.to_datetime(["2024-01-01", "2024-02-01"]), "csat": [1, 5], "nps": [0, 10]})
    results = check_frame("surveys", frame)
    assert results
    assert all(r.success for r in results)


def test_out_of_range_scores_are_row_level_and_reported_with_their_keys() -> None:
    frame = pd.DataFrame({"survey_id": ["s1", "s2", "s3"], "customer_id": ["c"] * 3,
                          "responded_at": pd.to_datetime(["2024-01-01"] * 3), "csat": [0, 6, 3], "nps": [11, 5, 5]})
    failed = {(r.column, r.severity, r.unexpected_count, r.sample_keys)
              for r in check_frame("surveys", frame) if not r.success}
    assert failed == {("csat", "row", 2, ("s1", "s2")), ("nps", "row", 1, ("s1",))}


def test_missing_column_is_a_critical_failure() -> None:
    frame = pd.DataFrame({"order_id": ["o1"], "customer_id": ["c"], "order_ts": pd.to_datetime(["2024-01-01"]),
                          "status": ["completed"], "amount": [1.0]})  # no margin column
    failed = [r for r in check_frame("orders", frame) if not r.success]
    assert [(r.expectation, r.severity) for r in failed if r.severity == "critical"] \
        == [("expect_table_columns_to_match_set", "critical")]
    # the checks that need the missing column cannot pass either
    assert {(r.expectation, r.check.kwargs.get("column_B", r.column)) for r in failed if r.severity == "row"} \
        == {("expect_column_pair_values_a_to_be_greater_than_b", "margin"), ("expect_column_values_to_be_between",
                                                                           "margin")}
    failed = [r for r in failed if r.severity == "critical"]
    assert failed[0].message().startswith("raw.orders: expect_table_columns_to_match_set failed; observed ")
    assert failed[0].message().endswith("Give the source table (or its mapping) every canonical column, "
                                        "then rerun the period.")


def test_future_times_are_found_in_microsecond_frames_even_beyond_nanosecond_range() -> None:
    """DuckDB hands timestamps over in microseconds; the gate hands GX nanoseconds where they fit
    (GX then compares vectorised), and a sentinel like 9999-12-31 must still be reported."""
    times = ["2024-01-01", "2030-01-01", "2024-02-01"]
    fits = pd.DataFrame({"order_id": ["o1", "o2", "o3"], "customer_id": ["c"] * 3,
                         "order_ts": pd.Series(pd.to_datetime(times)).astype("datetime64[us]"),
                         "status": ["completed"] * 3, "amount": [1.0] * 3, "margin": [0.0] * 3})
    beyond = fits.assign(order_ts=pd.Series([datetime(2024, 1, 1), datetime(2030, 1, 1), datetime(9999, 12, 31)],
                                            dtype="datetime64[us]"))
    for frame, late in ((fits, ("o2",)), (beyond, ("o2", "o3"))):
        failed = [r for r in check_frame("orders", frame) if not r.success]
        assert [(r.column, r.severity, r.unexpected_count, r.sample_keys) for r in failed] == [
            ("order_ts", "critical", len(late), late)]


def test_amounts_are_checked_on_completed_orders_only() -> None:
    frame = pd.DataFrame({"order_id": ["o1", "o2", "o3", "o4"], "customer_id": ["c"] * 4,
                          "order_ts": pd.to_datetime(["2024-01-01"] * 4),
                          "status": ["completed", "refunded", "completed", "completed"],
                          "amount": [-1.0, -1.0, 0.0, 10_000_001.0], "margin": [-1.0, -1.0, 0.0, 0.0]})
    failed = [r for r in check_frame("orders", frame) if not r.success]
    assert [(r.column, r.unexpected_count, r.sample_keys) for r in failed] == [("amount", 2, ("o1", "o4"))]


def test_an_expectation_without_a_sql_form_is_checked_by_gx_over_the_whole_batch(
    tmp_path: Path, warehouse_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An expectation the SQL pass cannot count (here uniqueness among completed orders, and a column
    maximum) is checked by GX over the whole batch: in the database on PostgreSQL, a part at a time on
    DuckDB, where a duplicate key must still meet its twin (parts split by a hash of the unique column) and
    counts and keys must add up across parts."""
    monkeypatch.setenv("GRADING_DATA_DOCS_DIR", "off")
    include = tmp_path / "include"
    shutil.copytree(ROOT / "include", include)
    suite = json.loads((include / "expectations" / "orders.json").read_text())
    meta = {"severity": "critical", "action": "Fix the source, then rerun the period."}
    suite["expectations"] += [
        {"type": "expect_column_values_to_be_unique", "meta": meta, "kwargs": {"column": "order_id", "row_condition": {
            "type": "comparison", "column": {"name": "status"}, "operator": "==", "parameter": "completed"}}},
        {"type": "expect_column_max_to_be_between", "kwargs": {"column": "amount", "max_value": 10**9}, "meta": meta}]
    (include / "expectations" / "orders.json").write_text(json.dumps(suite))
    monkeypatch.setenv("GRADING_INCLUDE_DIR", str(include))
    source_url = f"sqlite:///{tmp_path / 'source.sqlite'}"
    data = demo.generate(customers=150, seed=9)
    demo.write_source(data, source_url)
    customer = data.customers["customer_id"].iloc[0]
    bad = pd.DataFrame({
        "order_id": ["DUP1", "DUP1", "DUP2", "DUP2", "BAD1", "BAD2", "ODD1"], "customer_id": [customer] * 7,
        "order_ts": pd.to_datetime(["2024-06-30 10:00"] * 7),
        "status": ["completed"] * 6 + ["lost"], "amount": [1.0, 2.0, 3.0, 4.0, -5.0, -6.0, 7.0], "margin": [0.0] * 7,
    })
    with sa.create_engine(source_url).begin() as conn:
        bad.to_sql("orders", conn, if_exists="append", index=False)

    def failures(part_rows: str) -> dict:
        monkeypatch.setenv("GRADING_VALIDATE_PART_ROWS", part_rows)
        url = warehouse_url if part_rows == "0" else f"duckdb:///{tmp_path / f'w{part_rows}.duckdb'}"
        conns = Connections(source_url, url)
        with pytest.raises(ValidationFailed):
            extract_validated(conns, date(2025, 1, 1), "parts")
        with open_engine(conns.warehouse_url) as engine, engine.connect() as conn:
            rows = read_frame(conn, "SELECT suite, column_name, expectation, success, unexpected_count, sample_keys "
                                    "FROM audit.validation_results WHERE run_id = 'parts'")
        return [tuple(r) for r in rows.sort_values(["suite", "expectation", "column_name", "unexpected_count"])
                .astype(object).itertuples(index=False)]

    whole = failures("0")
    if warehouse_url.startswith("duckdb"):
        with caplog.at_level("INFO", logger="grading.validate"):
            assert failures("300") == whole
        assert any("parts split by order_id" in m for m in caplog.messages)
    unique = [r[3:5] for r in whole if r[:3] == ("raw_orders", "order_id", "expect_column_values_to_be_unique")]
    assert unique == [(False, 4), (False, 4)]  # the shipped check counted in SQL, the added one by GX in parts
    assert ("raw_orders", "amount", "expect_column_max_to_be_between", True) in [r[:4] for r in whole]
    assert ("raw_orders", "amount", "expect_column_values_to_be_between", False, 2, "BAD1, BAD2") in whole


def test_data_docs_go_to_the_set_folder_or_the_grading_home_or_nowhere(
    tmp_path: Path, grading_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GRADING_DATA_DOCS_DIR", raising=False)
    assert data_docs_dir() == grading_home / "data_docs"
    monkeypatch.setenv("GRADING_DATA_DOCS_DIR", str(tmp_path / "docs"))
    assert data_docs_dir() == tmp_path / "docs"
    for off in ("off", "OFF", "none", "false", "0", " off "):
        monkeypatch.setenv("GRADING_DATA_DOCS_DIR", off)
        assert data_docs_dir() is None, off


def test_a_customer_frame_is_checked_by_its_key_column() -> None:
    frame = pd.DataFrame({"customer_id": ["c1", None, "c3", "c3"], "region": ["n"] * 4, "industry": ["i"] * 4,
                          "channel": ["web"] * 4, "created_at": pd.to_datetime(["2024-01-01", "2024-01-02",
                                                                              "1850-01-01", "2024-01-03"])})
    failed = {(r.expectation, r.column): (r.severity, r.unexpected_count) for r in check_frame("customers", frame)
              if not r.success}
    assert failed == {
        ("expect_column_values_to_not_be_null", "customer_id"): ("critical", 1),
        ("expect_column_values_to_be_unique", "customer_id"): ("critical", 2),
        ("expect_column_values_to_be_between", "created_at"): ("critical", 1),  # before 1900: $PARAMETER bound
    }


def test_a_checks_gx_results_over_parts_merge_into_one_for_data_docs() -> None:
    """Data Docs show one result per check: a failure in any part fails it, rows and unexpected rows add up
    (a part that passed without detail counts its rows, none unexpected), sampled values pool."""
    from great_expectations.core.expectation_validation_result import ExpectationValidationResult
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    from grading.validation.gx import _merged_gx_result

    config = ExpectationConfiguration(type="expect_column_values_to_be_in_set",
                                      kwargs={"column": "status", "value_set": ["completed"]})
    passed = ExpectationValidationResult(success=True, expectation_config=config, result={
        "unexpected_count": 0, "unexpected_percent": 0.0, "partial_unexpected_list": []})
    failed = ExpectationValidationResult(success=False, expectation_config=config, result={
        "element_count": 200, "missing_count": 10, "unexpected_count": 2, "unexpected_percent": 2 / 190 * 100,
        "partial_unexpected_list": ["lost", "gone"], "partial_unexpected_counts": [{"value": "lost", "count": 1}],
        "partial_unexpected_index_list": [{"order_id": "o1"}, {"order_id": "o2"}]})
    assert _merged_gx_result([(failed, 200)]) is failed
    merged = _merged_gx_result([(passed, 300), (failed, 200), (failed, 200)])
    assert merged.success is False
    assert merged.expectation_config is config
    assert merged.result == {
        "element_count": 700, "unexpected_count": 4, "unexpected_percent": 4 / 680 * 100,
        "partial_unexpected_list": ["lost", "gone"] * 2,
        "partial_unexpected_index_list": [{"order_id": "o1"}, {"order_id": "o2"}] * 2}
    table = ExpectationConfiguration(type="expect_table_columns_to_match_set", kwargs={"column_set": ["a"]})
    first = ExpectationValidationResult(success=True, expectation_config=table, result={"observed_value": ["a"]})
    other = ExpectationValidationResult(success=False, expectation_config=table, result={"observed_value": ["b"]})
    assert _merged_gx_result([(first, 10), (other, 10)]).result == {"observed_value": ["b"]}
    assert _merged_gx_result([(first, 10), (first, 10)]).success is True
