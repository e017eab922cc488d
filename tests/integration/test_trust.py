"""Trustworthy batches: each way a careful operator broke the promise, as a test.

Nothing unvalidated is graded (a batch a fault left without a verdict is validated by the next
run), no row is silently lost (text timestamps compared as instants), a run grades with the
rule files it started with, periods graded out of order say so, and bad input stops the run
with a message naming table, column, rows and keys. Every case runs on both warehouses and
compares what is published with a clean run's tables. Kills of the worker at every stage are
in test_faults.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from grading import demo, pipeline
from grading.convert import SourceDataError
from grading.extract import extract
from grading.frames import read_frame
from grading.keys import pseudonym
from grading.ledger import BatchError, BatchInFlight
from grading.periods import PeriodOrderError
from grading.pipeline import Connections
from grading.settings import pseudonym_key
from grading.validation import ValidationFailed
from grading.warehouse import migrate, open_engine
from tests.helpers import (
    ROOT,
    Source,
    WarehouseCopies,
    extract_validated,
    fingerprint,
    pass_batch,
    scalar,
    source_with_a_bad_order,
)

P0, P1, P2 = date(2024, 10, 1), date(2024, 11, 1), date(2024, 12, 1)
KEY = b"test-key"


@dataclass
class Base:
    """A warehouse with P1 published from a source holding a completed order of -50 in
    November (older than a rerun's look-back), and what a clean run of P2 publishes."""

    kind: str
    folder: Path
    source: Source
    copies: WarehouseCopies
    clean: dict[str, str]
    bad: pd.Series

    def run(self, name: str, source: Source | None = None) -> tuple[str, Connections]:
        url = self.copies.copy("graded-p1", name)
        return url, Connections((source or self.source).url, url)


@pytest.fixture(scope="module", params=["duckdb", "postgresql"])
def base(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Base]:
    folder = tmp_path_factory.mktemp(f"trust-{request.param}")
    with pytest.MonkeyPatch.context() as env:
        source, bad = source_with_a_bad_order(env, folder, seed=31)
        with WarehouseCopies(request.param, folder) as copies:
            url = copies.create("p1")
            pipeline.run_grading(Connections(source.url, url), P1, run_id="p1")
            copies.keep("graded-p1", url)
            pipeline.run_grading(Connections(source.url, url), P2, run_id="clean")
            yield Base(request.param, folder, source, copies, fingerprint(url), bad)


def _graded(url: str, tables_out: tuple[str, ...] = ("validation_results", "run_rule_files")) -> dict[str, str]:
    """The fingerprint without the tables that record how each run went (several runs of one
    period leave several records) rather than what was graded."""
    return {name: text for name, text in fingerprint(url).items() if name not in tables_out}


def _monetary(url: str, customer_id: str, as_of: date) -> float:
    return float(scalar(url, "SELECT monetary_365d FROM marts.customer_features_snapshot WHERE as_of_date = :d "
                             "AND customer_key = :k", d=as_of, k=pseudonym(customer_id, pseudonym_key())))


def _published_p2(url: str) -> int:
    return scalar(url, "SELECT COUNT(*) FROM marts.customer_tier_snapshot WHERE as_of_date = :d", d=P2)


# --------------------------------------------------------------------------------------
# 1. A batch that never got a verdict is validated in full by the next run


def test_a_later_table_that_fails_to_convert_leaves_the_batch_to_be_validated_in_full(
    base: Base, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRADING_DATA_DOCS_DIR", "off")
    source = base.source.copy(tmp_path / "source.sqlite")
    survey = source.data.surveys.sort_values("survey_id")
    survey = survey[survey["responded_at"] >= "2024-11-01"].iloc[0]
    source.sql("UPDATE surveys SET csat = 4.5 WHERE survey_id = :k", k=survey["survey_id"])
    url, conns = base.run("convert", source)
    with pytest.raises(SourceDataError) as stopped:
        pipeline.run_grading(conns, P2, run_id="broken")
    assert str(stopped.value).startswith(f"source table surveys, column csat: 1 row(s) hold a value that is not a "
                                         f"whole number (e.g. survey_id {survey['survey_id']} = 4.5).")
    # the run's error is stored, and nothing of the period was published
    assert scalar(url, "SELECT message FROM audit.run_audit WHERE run_id = 'broken' AND stage = 'extract'") \
        == f"SourceDataError: {stopped.value}"
    assert _published_p2(url) == 0
    source.sql("UPDATE surveys SET csat = :v WHERE survey_id = :k", v=int(survey["csat"]), k=survey["survey_id"])
    summary = pipeline.run_grading(conns, P2, run_id="clean")
    assert summary["extract"]["rows"]["absorbed"] == 1
    assert _monetary(url, base.bad["customer_id"], P2) >= 0
    assert fingerprint(url) == base.clean


def test_a_lock_error_in_validation_leaves_the_batch_to_the_next_run(base: Base, tmp_path: Path) -> None:
    url, conns = base.run("lock")
    extracted = pipeline.extract_stage(conns, P2, "locked")
    with _locked(base.kind, url) as locked_url, pytest.raises(sa.exc.DBAPIError, match="lock"):
        pipeline.validate_stage(Connections(conns.source_url, locked_url), P2, "locked", extracted["batch"])
    # the abandoned run's batch holds the -50 order, never checked: the next run checks it
    pipeline.run_grading(conns, P2, run_id="clean")
    assert _monetary(url, base.bad["customer_id"], P2) >= 0
    assert fingerprint(url) == base.clean


@contextmanager
def _locked(kind: str, url: str) -> Iterator[str]:
    """The warehouse locked by another client; yields the URL a stage should then fail on."""
    if kind == "duckdb":  # another process holds the file open for writing
        path = sa.make_url(url).database
        holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
                                   "print('locked', flush=True); time.sleep(120)", path], stdout=subprocess.PIPE,
                                  text=True)
        try:
            assert holder.stdout.readline().strip() == "locked"
            yield url
        finally:
            holder.kill()
            holder.wait()
        return
    engine = sa.create_engine(url)
    conn = engine.connect()
    try:
        conn.execute(sa.text("LOCK TABLE raw.orders IN ACCESS EXCLUSIVE MODE"))
        yield sa.make_url(url).update_query_dict({"options": "-c lock_timeout=500"}).render_as_string(
            hide_password=False)
    finally:
        conn.rollback()
        conn.close()
        engine.dispose()


# --------------------------------------------------------------------------------------
# 3. A run grades with the rule files it started with


def test_a_rules_deploy_between_tasks_does_not_change_the_run(base: Base, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    include = tmp_path / "include"
    shutil.copytree(ROOT / "include", include)
    monkeypatch.setenv("GRADING_INCLUDE_DIR", str(include))
    tiers = include / "rules" / "tiers.yaml"
    pinned = tiers.read_bytes()
    url, conns = base.run("rules")
    extracted = pipeline.extract_stage(conns, P2, "clean")  # the run pins its rule files here
    # a deploy: gold from 100 instead of 10,000, version 9.9.9
    tiers.write_text(pinned.decode().replace("value: 10000", "value: 100").replace('version: "1.2.0"',
                                                                                      'version: "9.9.9"'))
    pipeline.validate_stage(conns, P2, "clean", extracted["batch"])
    for stage in ("features", "churn", "tiers", "flags"):
        getattr(pipeline, f"{stage}_stage")(conns, P2, "clean")
    pipeline.tiers_stage(conns, P2, "clean")  # a retried task keeps the pinned files too
    pipeline.flags_stage(conns, P2, "clean")
    pipeline.publish_stage(conns, P2, "clean")
    assert fingerprint(url) == base.clean
    with open_engine(url) as engine, engine.connect() as conn:
        pins = read_frame(conn, "SELECT role, content, content_sha256 FROM ops.run_rule_pins WHERE run_id = 'clean'")
    assert pins.set_index("role").loc["tiers", "content"].encode() == pinned
    # a run that starts after the deploy grades with the new file
    assert pipeline.run_grading(conns, P2, run_id="after-deploy")["tiers"]["rule_version"] == "9.9.9"


# --------------------------------------------------------------------------------------
# 4. Periods graded out of order say so, or refuse


def test_an_earlier_period_that_overtakes_a_later_one_stops_its_publish(base: Base) -> None:
    """P2 is graded up to its tiers on P1's state; P1 is then graded again, differently (a late
    order makes a customer gold), so P2's tiers no longer follow: its publish refuses. A rerun
    from its tiers task is refused too, as its features miss the late order P1's run validated;
    a rerun from its features task publishes what grading P1 then P2 in order publishes."""
    source = base.source.copy(base.folder / "late.sqlite")
    customer = base.source.data.customers.sort_values("customer_id").iloc[-1]["customer_id"]
    url, conns = base.run("overtaken", source)
    extract_validated(conns, P2, "p2")
    for stage in ("features", "churn", "tiers"):
        getattr(pipeline, f"{stage}_stage")(conns, P2, "p2")
    source.sql("INSERT INTO orders (order_id, customer_id, order_ts, status, amount, margin) "
               "VALUES ('LATE', :c, '2024-10-30 10:00:00', 'completed', 60000, 100)", c=customer)
    pipeline.run_grading(conns, P1, run_id="p1-again")
    pipeline.flags_stage(conns, P2, "p2")
    with pytest.raises(PeriodOrderError, match=r"2024-12-01 cannot be published: its tiers carried on from "
                                               r"2024-11-01, which has been graded again since"):
        pipeline.publish_stage(conns, P2, "p2")
    for stage in ("tiers", "flags"):
        getattr(pipeline, f"{stage}_stage")(conns, P2, "p2")
    with pytest.raises(PeriodOrderError, match=r"2024-12-01 cannot be published: run p1-again \(as of 2024-11-01\) "
                                               r"validated rows dated before 2024-12-01 after this period's features"):
        pipeline.publish_stage(conns, P2, "p2")
    for stage in ("features", "churn", "tiers", "flags", "publish"):
        getattr(pipeline, f"{stage}_stage")(conns, P2, "p2")
    reference = base.copies.copy("graded-p1", "overtaken-reference")
    pipeline.run_grading(Connections(source.url, reference), P1, run_id="p1-again")
    pipeline.run_grading(Connections(source.url, reference), P2, run_id="p2")
    assert _graded(url) == _graded(reference)
    assert scalar(url, "SELECT COUNT(*) FROM marts.published_periods WHERE stale") == 0


def test_regrading_an_earlier_period_marks_every_later_one_stale_until_they_are_regraded(base: Base) -> None:
    source = base.source.copy(base.folder / "backfill.sqlite")
    url, conns = base.run("backfill", source)
    pipeline.run_grading(conns, P2, run_id="p2")
    # the same data again: nothing changes downstream
    assert pipeline.run_grading(conns, P1, run_id="p1-same")["publish"]["stale_periods"] == []
    customer = base.source.data.customers.sort_values("customer_id").iloc[-1]["customer_id"]
    source.sql("INSERT INTO orders (order_id, customer_id, order_ts, status, amount, margin) "
               "VALUES ('LATE', :c, '2024-10-30 10:00:00', 'completed', 60000, 100)", c=customer)
    summary = pipeline.run_grading(conns, P1, run_id="p1-backfill")
    assert summary["publish"]["stale_periods"] == ["2024-12-01"]
    with open_engine(url) as engine, engine.connect() as conn:
        periods = read_frame(conn, "SELECT as_of_date, stale, stale_reason, graded_after "
                                   "FROM marts.published_periods ORDER BY as_of_date")
    assert periods["stale"].tolist() == [False, True]
    assert periods["stale_reason"].iloc[1] == ("its tiers carried on from 2024-11-01, which has been graded again "
                                               "since, differently")
    assert scalar(url, "SELECT message FROM audit.run_audit WHERE run_id = 'p1-backfill' AND stage = 'publish'") \
        .startswith("stale published periods (regrade them in date order): 2024-12-01: its tiers carried on")
    pipeline.run_grading(conns, P2, run_id="p2-again")
    assert scalar(url, "SELECT COUNT(*) FROM marts.published_periods WHERE stale") == 0


@pytest.mark.parametrize("base", ["postgresql"], indirect=True)  # DuckDB admits one grading at a time
def test_periods_started_out_of_order_at_the_same_time_never_publish_silently_wrong(base: Base) -> None:
    """P2 starts, then P1, concurrently. Whatever the interleaving, a published period that is
    not marked stale holds what in-order grading publishes for it; a run that cannot go on
    fails with a reason; rerunning the failed ones in date order gives the in-order tables."""
    source = base.source.copy(base.folder / "race.sqlite")
    customer = base.source.data.customers.sort_values("customer_id").iloc[-1]["customer_id"]
    source.sql("INSERT INTO orders (order_id, customer_id, order_ts, status, amount, margin) "
               "VALUES ('LATE', :c, '2024-10-30 10:00:00', 'completed', 60000, 100)", c=customer)
    url = base.copies.copy("graded-p1", "race")
    conns = Connections(source.url, url)
    reference = base.copies.copy("graded-p1", "race-reference")
    for as_of in (P1, P2):
        pipeline.run_grading(Connections(source.url, reference), as_of, run_id=f"in-order-{as_of}")
    failures: dict[date, Exception] = {}

    def grade(as_of: date) -> None:
        try:
            pipeline.run_grading(conns, as_of, run_id=f"race-{as_of}")
        except (PeriodOrderError, BatchError, BatchInFlight, ValidationFailed) as exc:
            failures[as_of] = exc

    later = threading.Thread(target=grade, args=(P2,))
    later.start()
    grade(P1)
    later.join()
    # A published period that is not marked stale, all of whose earlier runs went through,
    # holds exactly what grading in date order publishes.
    for as_of in (P1, P2):
        if not any(d in failures for d in (P1, P2) if d <= as_of) and _stale(url).get(as_of) is False:
            assert _period(url, as_of) == _period(reference, as_of), f"{as_of} published wrong, unmarked"
    # The operator reruns, in date order, each period whose run failed or that is marked stale.
    for as_of in (P1, P2):
        if as_of in failures or _stale(url).get(as_of):
            pipeline.run_grading(conns, as_of, run_id=f"in-order-{as_of}")
    assert _graded(url) == _graded(reference)


def _stale(url: str) -> dict[date, bool]:
    with open_engine(url) as engine, engine.connect() as conn:
        return {pd.Timestamp(d).date(): bool(stale) for d, stale in conn.execute(sa.text(
            "SELECT as_of_date, stale FROM marts.published_periods")).all()}


def _period(url: str, as_of: date) -> dict[str, str]:
    tables = ("customer_tier_snapshot", "elimination_candidates", "winback_candidates", "core_customers")
    with open_engine(url) as engine, engine.connect() as conn:
        return {t: read_frame(conn, f"SELECT * FROM marts.{t} WHERE as_of_date = :d", {"d": as_of})  # noqa: S608
                .drop(columns=["rule_version"], errors="ignore").sort_values("customer_key").to_csv(index=False)
                for t in tables}


# --------------------------------------------------------------------------------------
# 6. A customer without an id stops the run, and leaves nothing that blocks the next one


def test_a_customer_without_an_id_stops_the_run_and_the_fixed_source_goes_through(base: Base, tmp_path: Path) -> None:
    source = base.source.copy(tmp_path / "source.sqlite")
    source.sql("INSERT INTO customers (customer_id, created_at, region, industry, channel) "
               "VALUES (NULL, '2024-11-20 09:00:00', 'West', 'retail', 'online')")
    url, conns = base.run("null-id", source)
    with pytest.raises(ValidationFailed, match=r"raw\.customers\.customer_id: expect_column_values_to_not_be_null "
                                               r"failed in 1 row\(s\)"):
        pipeline.run_grading(conns, P2, run_id="null-id")
    source.sql("DELETE FROM customers WHERE customer_id IS NULL")
    pipeline.run_grading(conns, P2, run_id="clean")
    clean = {name: text for name, text in base.clean.items() if name not in ("validation_results", "run_rule_files")}
    assert _graded(url) == clean  # validation_results also holds the rejected run's findings


# --------------------------------------------------------------------------------------
# 8. Plausibility, on a first load (an incremental window never reaches 1899)


def test_implausible_rows_of_a_first_load_are_quarantined_or_stop_it(base: Base, tmp_path: Path) -> None:
    source = base.source.copy(tmp_path / "source.sqlite")
    customers = source.data.customers.sort_values("customer_id")
    late = customers[customers["created_at"] >= "2023-06-01"].iloc[0]
    source.sql("UPDATE orders SET order_ts = '1899-12-31 10:00:00' WHERE order_id = :k",
               k=source.order("2024-01-01", "2024-06-01")["order_id"])
    source.sql("INSERT INTO orders (order_id, customer_id, order_ts, status, amount, margin) VALUES "
               "('EARLY', :c, :ts, 'completed', 25, 5)", c=late["customer_id"],
               ts=(late["created_at"] - pd.Timedelta(days=3)).strftime("%Y-%m-%d %H:%M:%S"))
    url = base.copies.create(f"first-load-{tmp_path.name[-12:]}")
    summary = pipeline.run_grading(Connections(source.url, url), P1, run_id="first")
    assert summary["validate"]["quarantined"]["orders"] == 2
    reasons = set(read_frame_url(url, "SELECT reason FROM ops.quarantine")["reason"])
    assert {r.split(" (")[0] for r in reasons} == {"order_ts before 1900",
                                                   "order placed more than 24 hours before its customer was created"}
    source.sql("UPDATE customers SET created_at = '1850-01-01 00:00:00' WHERE customer_id = :k",
               k=customers.iloc[0]["customer_id"])
    url = base.copies.create(f"first-load-stop-{tmp_path.name[-12:]}")
    with pytest.raises(ValidationFailed, match=r"raw\.customers\.created_at: expect_column_values_to_be_between "
                                               r"failed in 1 row\(s\)"):
        pipeline.run_grading(Connections(source.url, url), P1, run_id="first")


def read_frame_url(url: str, sql: str) -> pd.DataFrame:
    with open_engine(url) as engine, engine.connect() as conn:
        return read_frame(conn, sql)


# --------------------------------------------------------------------------------------
# 2. Text timestamps are compared as instants, on every kind of source


def _text_source(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[str, demo.DemoData]:
    """Demo data whose orders keep their times as text (no fraction), on a source of ``kind``."""
    data = demo.generate(customers=120, seed=41)
    url = {"sqlite": f"sqlite:///{tmp_path / 'source.sqlite'}", "duckdb": f"duckdb:///{tmp_path / 'source.duckdb'}",
           "postgresql": None, "mariadb": None}[kind] or request.getfixturevalue(
        "pg_url" if kind == "postgresql" else "mariadb_url")
    text = data.orders.assign(order_ts=data.orders["order_ts"].dt.strftime("%Y-%m-%d %H:%M:%S"))
    tables = {**data.tables(), "orders": text}
    demo.write_source(demo.DemoData(**tables), url)
    with open_engine(url) as engine, engine.begin() as conn:
        if kind != "sqlite":  # every other database types the column from the frame's text: check it
            columns = {c["name"]: str(c["type"]).upper() for c in sa.inspect(conn).get_columns("orders")} \
                if kind != "duckdb" else dict(conn.execute(sa.text(
                    "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'orders'")).all())
            assert not str(columns["order_ts"]).startswith(("TIMESTAMP", "DATE")), columns
    return url, data


def _add_orders(source_url: str, data: demo.DemoData, times: dict[str, str]) -> None:
    """Completed orders of the first customer, by id, with their order times as text."""
    with open_engine(source_url) as engine, engine.begin() as conn:
        for order_id, text in times.items():
            conn.execute(sa.text("INSERT INTO orders (order_id, customer_id, order_ts, status, amount, margin) "
                                 "VALUES (:o, :c, :ts, 'completed', 1, 0)"),
                         {"o": order_id, "c": data.customers["customer_id"].iloc[0], "ts": text})


@pytest.mark.parametrize("kind", ["sqlite", "duckdb", "postgresql", "mariadb"])
def test_text_timestamps_are_read_as_the_instants_they_denote(kind: str, tmp_path: Path,
                                                             request: pytest.FixtureRequest) -> None:
    source_url, data = _text_source(kind, tmp_path, request)
    _add_orders(source_url, data, {
        "AT_START": "2024-12-29 00:00:00",  # the incremental run's look-back start
        "DATE_ONLY": "2024-12-29",
        "EAST": "2025-01-01T05:00:00+08:00",  # 2024-12-31 21:00 UTC: in both windows
        "AT_CUTOFF": "2025-02-01 00:00:00"})
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    with open_engine(source_url) as source, open_engine(url) as warehouse:
        migrate(warehouse)
        extract(source, warehouse, datetime(2025, 1, 1), KEY, batch=datetime(2025, 1, 1, 1))
        pass_batch(warehouse, datetime(2025, 1, 1, 1))
        # the next window starts at the look-back start, 2024-12-29 00:00
        rows = extract(source, warehouse, datetime(2025, 2, 1), KEY, batch=datetime(2025, 2, 1, 1))
    expected = int(((data.orders["order_ts"] >= "2024-12-29") & (data.orders["order_ts"] < "2025-02-01")).sum())
    assert rows["orders"] == expected + 3  # AT_START, DATE_ONLY, EAST; AT_CUTOFF belongs to the next period
    times = dict(read_frame_url(url, "SELECT order_id, order_ts FROM raw.orders WHERE order_id IN "
                                     "('AT_START', 'DATE_ONLY', 'EAST', 'AT_CUTOFF')").itertuples(index=False))
    assert {k: pd.Timestamp(v) for k, v in times.items()} == {
        "AT_START": pd.Timestamp("2024-12-29"), "DATE_ONLY": pd.Timestamp("2024-12-29"),
        "EAST": pd.Timestamp("2024-12-31 21:00")}
    assert scalar(url, "SELECT COUNT(*) FROM raw.orders") == int((data.orders["order_ts"] < "2025-01-01").sum()) + 3


@pytest.mark.parametrize("kind", ["sqlite", "duckdb", "postgresql", "mariadb"])
def test_a_text_timestamp_that_denotes_no_instant_stops_the_extraction(kind: str, tmp_path: Path,
                                                                      request: pytest.FixtureRequest) -> None:
    source_url, data = _text_source(kind, tmp_path, request)
    _add_orders(source_url, data, {"DMY": "15/11/2024 10:00:00", "EPOCH": "1731664800"})
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    with open_engine(source_url) as source, open_engine(url) as warehouse:
        migrate(warehouse)
        with pytest.raises(SourceDataError) as stop:
            extract(source, warehouse, datetime(2025, 1, 1), KEY, batch=datetime(2025, 1, 1, 1))
    assert str(stop.value).startswith("source table orders, column order_ts: 2 row(s) hold a value that is not a time")
    assert "order_id DMY = '15/11/2024 10:00:00'" in str(stop.value)
    assert "order_id EPOCH = '1731664800'" in str(stop.value)


def test_a_zoned_timestamp_column_is_compared_as_an_instant_whatever_the_server_time_zone(
    tmp_path: Path, pg_url: str
) -> None:
    """A timestamptz source in a database whose time zone is Asia/Shanghai: an order at 23:30 UTC
    on the last day belongs to the period, one at 00:00 UTC on the as-of date does not."""
    data = demo.generate(customers=80, seed=43)
    demo.write_source(data, pg_url)
    with open_engine(pg_url) as engine, engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE orders ALTER COLUMN order_ts TYPE TIMESTAMPTZ USING order_ts AT TIME ZONE "
                             "'UTC'"))
        conn.execute(sa.text(f"ALTER DATABASE \"{sa.make_url(pg_url).database}\" SET timezone = 'Asia/Shanghai'"))
        conn.execute(sa.text("INSERT INTO orders (order_id, customer_id, order_ts, status, amount, margin) VALUES "
                             "('LAST', :c, '2024-12-31 23:30:00+00', 'completed', 1, 0), "
                             "('NEXT', :c, '2025-01-01 00:00:00+00', 'completed', 1, 0)"),
                     {"c": data.customers["customer_id"].iloc[0]})
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    with open_engine(pg_url) as source, open_engine(url) as warehouse:
        migrate(warehouse)
        extract(source, warehouse, datetime(2025, 1, 1), KEY, batch=datetime(2025, 1, 1, 1))
    assert set(read_frame_url(url, "SELECT order_id FROM raw.orders WHERE order_id IN ('LAST', 'NEXT')")["order_id"]) \
        == {"LAST"}
    assert pd.Timestamp(scalar(url, "SELECT order_ts FROM raw.orders WHERE order_id = 'LAST'")) \
        == pd.Timestamp("2024-12-31 23:30")


def test_a_file_drop_reads_text_times_as_instants_at_the_window_edges(tmp_path: Path) -> None:
    """The fifth kind of source: CSV files through a mapping, read with a margin and cut once converted."""
    from grading.sources import load_mapping

    (tmp_path / "orders.csv").write_text(
        "id,client,at,total\n"
        "OLD,c1,2024-12-20 08:00:00,5\n"
        "AT_START,c1,2024-12-29 00:00:00,1\n"  # the second window's look-back start
        "DATE_ONLY,c1,2024-12-29,1\n"
        "EAST,c1,2025-01-01T05:00:00+08:00,1\n"  # 2024-12-31 21:00 UTC
        "AT_CUTOFF,c1,2025-02-01 00:00:00,1\n", encoding="utf-8")
    (tmp_path / "mapping.yaml").write_text(
        "kind: source_mapping\nversion: '1'\nsource: {type: files, location: .}\ntables:\n"
        "  customers:\n    from: orders.csv\n    group_by: customer_id\n"
        "    columns: {customer_id: client, created_at: at}\n"
        "  orders:\n    from: orders.csv\n"
        "    columns: {order_id: id, customer_id: client, order_ts: at, status: {value: completed}, amount: total}\n",
        encoding="utf-8")
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    mapping = load_mapping(tmp_path / "mapping.yaml")
    with open_engine(url) as warehouse:
        migrate(warehouse)
        extract(None, warehouse, datetime(2025, 1, 1), KEY, batch=datetime(2025, 1, 1, 1), mapping=mapping)
        pass_batch(warehouse, datetime(2025, 1, 1, 1))
        rows = extract(None, warehouse, datetime(2025, 2, 1), KEY, batch=datetime(2025, 2, 1, 1), mapping=mapping)
    assert rows["orders"] == 3
    times = dict(read_frame_url(url, "SELECT order_id, order_ts FROM raw.orders").itertuples(index=False))
    assert {k: pd.Timestamp(v) for k, v in times.items()} == {
        "OLD": pd.Timestamp("2024-12-20 08:00"), "AT_START": pd.Timestamp("2024-12-29"),
        "DATE_ONLY": pd.Timestamp("2024-12-29"), "EAST": pd.Timestamp("2024-12-31 21:00")}
