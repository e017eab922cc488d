"""The SQL pass (grading.validation.aggregates): it counts what Great Expectations counts, on random
rows of every kind GX rejects, check by check; a batch is judged over every row while GX checks a
sample holding the offending rows (in the database on PostgreSQL, in pandas on DuckDB); and a SQL
form that drifts from GX's meaning stops the stage."""

from __future__ import annotations

import contextlib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from grading import demo, ledger
from grading.frames import read_frame
from grading.pipeline import Connections, extract_stage, validate_stage
from grading.validation import ValidationFailed, aggregates, check_frame
from grading.validation.suites import expectation_parameters, load_suite
from grading.warehouse import open_engine


def _orders(rng: np.random.Generator, rows: int) -> pd.DataFrame:
    """Orders with every fault the suite looks for, at random: duplicated and missing ids, unknown
    statuses, negative and huge amounts (on completed and other orders), margins above the amount,
    future and pre-1900 times, missing values everywhere."""
    ids = np.array([f"o{i}" for i in rng.integers(0, rows * 2, rows)], dtype=object)
    ids[rng.random(rows) < 0.02] = None
    times = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 400 * 24, rows), unit="h")
    times = times.where(rng.random(rows) > 0.03, pd.Timestamp("2031-05-01"))
    times = times.where(rng.random(rows) > 0.03, pd.Timestamp("1850-01-01"))
    times = times.where(rng.random(rows) > 0.02, pd.NaT)
    amount = np.round(rng.normal(100, 80, rows), 2)
    amount[rng.random(rows) < 0.02] = 20_000_000.0
    margin = np.round(amount * rng.uniform(-0.2, 1.3, rows), 2)
    frame = pd.DataFrame({
        "order_id": ids, "customer_id": np.where(rng.random(rows) < 0.02, None, [f"c{i}" for i in
                                                                                rng.integers(0, 50, rows)]),
        "order_ts": pd.Series(times).astype("datetime64[us]"),
        "status": rng.choice(["completed", "completed", "cancelled", "refunded", "lost", None], rows),
        "amount": pd.Series(amount).where(rng.random(rows) > 0.03),
        "margin": pd.Series(margin).where(rng.random(rows) > 0.03),
    })
    return frame.astype({"order_id": "string", "customer_id": "string", "status": "string"})


def _customers(rng: np.random.Generator, rows: int) -> pd.DataFrame:
    ids = pd.Series([f"c{i}" for i in rng.integers(0, rows * 3, rows)], dtype="string")
    ids[rng.random(rows) < 0.05] = None
    created = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 2_000, rows), unit="D")
    created = created.where(rng.random(rows) > 0.05, pd.Timestamp("1800-01-01"))
    return pd.DataFrame({"customer_id": ids, "region": rng.choice(["n", "s", None], rows),
                         "industry": "i", "channel": rng.choice(["web", "store"], rows),
                         "created_at": pd.Series(created).astype("datetime64[us]")})


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize(("table", "make"), [("orders", _orders), ("customers", _customers)])
def test_the_sql_pass_counts_every_check_as_great_expectations_does_on_random_rows(table, make, seed) -> None:
    """The reference is GX's pandas engine over the whole frame; the SQL pass must give every counted
    check the same verdict and the same number of rejected rows."""
    frame = make(np.random.default_rng(seed), 400)
    suite = load_suite(table)
    now = datetime.now(UTC).replace(tzinfo=None)  # as check_frame's clock
    checks = [c for c in suite.expectations if aggregates.counted(c)]
    assert {c.type for c in checks} >= {"expect_column_values_to_be_unique", "expect_column_values_to_not_be_null",
                                        "expect_column_values_to_be_between"}
    engine = sa.create_engine("duckdb:///:memory:")
    with engine.connect() as conn:
        conn.connection.driver_connection.register("frame", frame)
        conn.exec_driver_sql("CREATE TABLE rows AS SELECT row_number() OVER () AS gx_row, * FROM frame")
        counts = aggregates.count(conn, suite, checks, "rows", {}, expectation_parameters(suite, now))
    by_gx = {r.check.index: r for r in check_frame(table, frame)}
    assert any(not r.success for r in by_gx.values())  # the faults were found, or the comparison proves nothing
    for check in checks:
        assert (counts[check.index].success(check.kwargs.get("mostly")), counts[check.index].unexpected) == \
            (by_gx[check.index].success, by_gx[check.index].unexpected_count), (check.type, check.column)
    engine.dispose()


def _bad_orders(data: demo.DemoData) -> pd.DataFrame:
    customer = data.customers["customer_id"].iloc[0]
    return pd.DataFrame({
        "order_id": ["DUP1", "DUP1", "BAD1", "BAD2", "ODD1"], "customer_id": [customer] * 5,
        "order_ts": pd.to_datetime(["2024-06-30 10:00"] * 5),
        "status": ["completed"] * 4 + ["lost"], "amount": [1.0, 2.0, -5.0, -6.0, 7.0], "margin": [0.0] * 5,
    })


def _source(folder: Path, data: demo.DemoData, bad: pd.DataFrame) -> str:
    """A SQLite source of the demo ``data`` with the ``bad`` orders added."""
    url = f"sqlite:///{folder / 'source.sqlite'}"
    demo.write_source(data, url)
    with sa.create_engine(url).begin() as conn:
        bad.to_sql("orders", conn, if_exists="append", index=False)
    return url


def _results(url: str, run_id: str) -> dict:
    with open_engine(url) as engine, engine.connect() as conn:
        rows = read_frame(conn, "SELECT suite, column_name, expectation, success, unexpected_count, sample_keys "
                                "FROM audit.validation_results WHERE run_id = :run", {"run": run_id})
    return {tuple(r[:3]): tuple(r[3:]) for r in rows.itertuples(index=False)}


def test_a_batch_is_judged_on_every_row_while_gx_checks_a_small_sample(
    tmp_path: Path, warehouse_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With GX shown 20 sampled rows (plus the offending ones) the verdict, counts and keys are those of the
    whole batch: the same as with a sample holding every row. (A rejected batch is removed from raw, so the
    same warehouse extracts and judges the same rows again.)"""
    monkeypatch.setenv("GRADING_DATA_DOCS_DIR", "off")
    data = demo.generate(customers=150, seed=9)
    conns = Connections(_source(tmp_path, data, _bad_orders(data)), warehouse_url)

    def judged(sample_rows: str) -> dict:
        monkeypatch.setenv("GRADING_VALIDATE_SAMPLE_ROWS", sample_rows)
        run_id = f"sampled-{sample_rows}"
        extracted = extract_stage(conns, date(2025, 1, 1), run_id)
        with pytest.raises(ValidationFailed):
            validate_stage(conns, date(2025, 1, 1), run_id, extracted["batch"])
        return _results(conns.warehouse_url, run_id)

    small, everything = judged("20"), judged("1000000")
    assert small == everything
    assert small[("raw_orders", "order_id", "expect_column_values_to_be_unique")][:2] == (False, 2)
    assert small[("raw_orders", "amount", "expect_column_values_to_be_between")] == (False, 2, "BAD1, BAD2")
    assert small[("raw_orders", "status", "expect_column_values_to_be_in_set")] == (False, 1, "ODD1")
    assert small[("raw_orders", "customer_id", "expect_column_values_to_not_be_null")][:2] == (True, 0)


def test_a_sql_form_that_drifts_from_great_expectations_stops_the_stage_before_any_verdict(
    tmp_path: Path, warehouse_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A translation that rejects fewer rows than GX would pass rows GX rejects: the stage must say so and
    give the batch no verdict (nothing quarantined, nothing stored, the batch still waiting)."""
    monkeypatch.setenv("GRADING_DATA_DOCS_DIR", "off")
    data = demo.generate(customers=150, seed=9)
    source = _source(tmp_path, data, _bad_orders(data).query("order_id != 'DUP1'"))
    honest = aggregates.predicate

    def drifted(suite, check, parameters=None):
        if check.column == "amount":  # "negative" misread as "below -1000"
            return "r.amount < -1000", {}
        return honest(suite, check, parameters)

    monkeypatch.setattr(aggregates, "predicate", drifted)
    conns = Connections(source, warehouse_url)
    extracted = extract_stage(conns, date(2025, 1, 1), "drift")
    with pytest.raises(aggregates.ChecksDisagree) as error:
        validate_stage(conns, date(2025, 1, 1), "drift", extracted["batch"])
    message = str(error.value)
    assert message.startswith("raw.orders: on the same ")
    assert "expect_column_values_to_be_between on amount: Great Expectations rejects 2 row(s), the SQL form 0" \
        in message
    assert "grading.validation.predicates" in message
    assert "nothing was published" in message
    with open_engine(conns.warehouse_url) as engine, engine.connect() as conn:
        assert ledger.require_extracted(conn, extracted["batch"]).status == "extracted"
        assert conn.execute(sa.text("SELECT COUNT(*) FROM ops.quarantine")).scalar_one() == 0
        assert conn.execute(sa.text("SELECT COUNT(*) FROM audit.validation_results")).scalar_one() == 0
    monkeypatch.setattr(aggregates, "predicate", honest)  # fixed: the same batch now gets its verdict
    validate_stage(conns, date(2025, 1, 1), "drift", extracted["batch"])
    assert _results(conns.warehouse_url, "drift")[("raw_orders", "amount", "expect_column_values_to_be_between")] \
        == (False, 2, "BAD1, BAD2")


def test_offending_rows_beyond_the_sample_are_all_counted_and_the_first_keys_shown(
    tmp_path: Path, warehouse_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More offending rows than GX is shown (FAILING_ROWS): the count is the batch's, the keys its first."""
    monkeypatch.setenv("GRADING_DATA_DOCS_DIR", "off")
    monkeypatch.setenv("GRADING_VALIDATE_SAMPLE_ROWS", "5")
    data = demo.generate(customers=150, seed=9)
    many = aggregates.FAILING_ROWS * 2 + 3
    customer = data.customers["customer_id"].iloc[0]
    odd = pd.DataFrame({"order_id": [f"ODD{i:03d}" for i in range(many)], "customer_id": customer,
                        "order_ts": pd.Timestamp("2024-06-30 10:00") + pd.Series([timedelta(minutes=i)
                                                                                   for i in range(many)]),
                        "status": "lost", "amount": 1.0, "margin": 0.0})
    conns = Connections(_source(tmp_path, data, odd), warehouse_url)
    extracted = extract_stage(conns, date(2025, 1, 1), "many")
    with contextlib.suppress(ValidationFailed):  # the quarantine bound may stop it; the counts are stored anyway
        validate_stage(conns, date(2025, 1, 1), "many", extracted["batch"])
    found = _results(conns.warehouse_url, "many")[("raw_orders", "status", "expect_column_values_to_be_in_set")]
    assert found == (False, many, "ODD000, ODD001, ODD002, ODD003, ODD004")
