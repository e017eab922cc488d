"""The warehouse model: migrations, atomic and concurrent publishing, the catalogue, BI access."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import pytest
import sqlalchemy as sa

from grading import demo
from grading.catalog import load_catalogue, published_columns, render_dictionary
from grading.frames import read_frame
from grading.pipeline import (
    Connections,
    features_stage,
    flags_stage,
    prepare_warehouse,
    publish_stage,
    run_grading,
    tiers_stage,
)
from grading.warehouse import migrate, migration_files, open_engine, run_sql_file
from tests.helpers import ROOT, extract_validated, published, scalar


def demo_connections(tmp_path: Path, warehouse_url: str, customers: int = 200) -> Connections:
    source_url = f"sqlite:///{tmp_path / 'source.sqlite'}"
    demo.write_source(demo.generate(customers=customers, seed=9), source_url)
    return Connections(source_url=source_url, warehouse_url=warehouse_url)


def load_period(conns: Connections, as_of: date, run_id: str) -> None:
    """The stages after extraction, as the DAG runs them."""
    features_stage(conns, as_of, run_id)
    tiers_stage(conns, as_of, run_id)
    flags_stage(conns, as_of, run_id)
    publish_stage(conns, as_of, run_id)


def test_an_older_warehouse_upgrades_in_place_and_keeps_its_data(warehouse_url: str) -> None:
    with open_engine(warehouse_url) as engine:
        assert migrate(engine, up_to="0001") == ["0001_initial.sql"]
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO marts.customer_tier_snapshot VALUES "
                                 "('2024-10-01', 'k1', 'gold', 2, 'gold_band', 'why', '1.0.0')"))
        later = [p.name for p in migration_files()][1:]
        assert later
        assert prepare_warehouse(engine) == later
        assert prepare_warehouse(engine) == []
    assert scalar(warehouse_url, "SELECT tier FROM marts.customer_tier_snapshot WHERE customer_key = 'k1'") == "gold"
    assert scalar(warehouse_url, "SELECT COUNT(*) FROM ops.schema_migrations") == len(migration_files())


def test_a_warehouse_graded_before_the_batch_ledger_registers_its_batches_and_periods(warehouse_url: str) -> None:
    """Upgrading: the stamps in raw become batches - passed where validation passed them, without
    a verdict otherwise (the next extraction takes those rows over and validates them) - and the
    graded and published periods are registered in date order, none stale."""
    from grading.periods import period_states

    passed, unchecked = "2024-10-01 01:00:00", "2024-11-01 01:00:00"
    with open_engine(warehouse_url) as engine:
        migrate(engine, up_to="0011")
        with engine.begin() as conn:
            for stamp, customer in ((passed, "C1"), (unchecked, "C2")):
                conn.execute(sa.text("INSERT INTO raw.customers (customer_id, created_at, extracted_at) "
                                     "VALUES (:c, '2024-01-01', :s)"), {"c": customer, "s": stamp})
            conn.execute(sa.text(
                "INSERT INTO ops.validation_batches (run_id, as_of_date, source_table, extracted_at, status, "
                "rows_checked, rows_quarantined, validated_at) VALUES ('old', '2024-10-01', 'customers', :s, "
                "'passed', 1, 0, :s)"), {"s": passed})
            for as_of in ("2024-10-01", "2024-11-01"):
                values = {"d": as_of}
                conn.execute(sa.text("INSERT INTO staging.customer_tiers (as_of_date, customer_id, tier, tier_rank, "
                                     "tier_rule, tier_reason, rule_version) VALUES (:d, 'C1', 'gold', 2, 'r', 'why', "
                                     "'1')"), values)
                conn.execute(sa.text("INSERT INTO marts.customer_tier_snapshot (as_of_date, customer_key, tier, "
                                     "tier_rank, tier_rule, tier_reason, rule_version) VALUES (:d, 'k1', 'gold', 2, "
                                     "'r', 'why', '1')"), values)
        prepare_warehouse(engine)
        with engine.connect() as conn:
            batches = dict(conn.execute(sa.text("SELECT CAST(batch_id AS VARCHAR), status FROM ops.batches")).all())
            states = period_states(conn)
            published = conn.execute(sa.text("SELECT COUNT(*) FROM marts.published_periods WHERE NOT stale")).scalar()
    assert {k[:19]: v for k, v in batches.items()} == {passed: "passed", unchecked: "extracted"}
    assert [(s.as_of, s.graded_after, s.stale) for s in states.values()] == [
        (date(2024, 10, 1), None, False), (date(2024, 11, 1), date(2024, 10, 1), False)]
    assert published == 2


def test_a_failed_publish_leaves_nothing_of_the_period_and_earlier_periods_untouched(
    tmp_path: Path, warehouse_url: str
) -> None:
    conns = demo_connections(tmp_path, warehouse_url)
    run_grading(conns, date(2024, 10, 1))
    before = published(warehouse_url)
    extract_validated(conns, date(2025, 1, 1), "r2")
    # The fault: the last table the publish writes has lost a column, so the transaction
    # fails after the snapshot and tier tables of the period were already written in it.
    with open_engine(warehouse_url) as engine, engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE marts.winback_candidates RENAME COLUMN reason TO reason_lost"))
    with pytest.raises(sa.exc.DBAPIError):
        load_period(conns, date(2025, 1, 1), "r2")
    with open_engine(warehouse_url) as engine, engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE marts.winback_candidates RENAME COLUMN reason_lost TO reason"))
    after = published(warehouse_url)
    assert all(after[t].equals(before[t]) for t in before)
    assert scalar(warehouse_url, "SELECT COUNT(*) FROM marts.customer_features_snapshot "
                                 "WHERE as_of_date = '2025-01-01'") == 0
    assert scalar(warehouse_url, "SELECT status FROM marts.run_audit WHERE run_id = 'r2' AND stage = 'publish'") \
        == "failed"


def test_two_periods_load_in_parallel_as_they_would_one_after_the_other(tmp_path: Path, warehouse_url: str) -> None:
    conns = demo_connections(tmp_path, warehouse_url)
    periods = [date(2024, 10, 1), date(2025, 1, 1)]
    extract_validated(conns, periods[-1], "extract")
    for as_of in periods:
        load_period(conns, as_of, f"serial-{as_of}")
    serial = published(warehouse_url)
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda d: load_period(conns, d, f"parallel-{d}"), periods))
    parallel = published(warehouse_url)
    assert all(parallel[t].equals(serial[t]) for t in serial)
    assert scalar(warehouse_url, "SELECT COUNT(DISTINCT as_of_date) FROM marts.customer_tier_snapshot") == 2
    assert scalar(warehouse_url, "SELECT COUNT(*) FROM marts.tier_history WHERE valid_to IS NULL") == 200


def test_tier_history_has_one_open_row_per_customer_and_follows_the_snapshots(
    tmp_path: Path, warehouse_url: str
) -> None:
    conns = demo_connections(tmp_path, warehouse_url)
    for as_of in (date(2024, 7, 1), date(2024, 10, 1), date(2025, 1, 1)):
        run_grading(conns, as_of)
    with open_engine(warehouse_url) as engine, engine.connect() as conn:
        snapshots = conn.execute(sa.text(
            "SELECT customer_key, as_of_date, tier FROM marts.customer_tier_snapshot ORDER BY 1, 2")).all()
        history = conn.execute(sa.text(
            "SELECT customer_key, tier, valid_from, valid_to FROM marts.tier_history ORDER BY 1, 3")).all()
    # Replay the history: each snapshot must fall in exactly one stretch with its tier.
    for key, as_of, tier in snapshots:
        held = [h for h in history if h[0] == key and h[2] <= as_of and (h[3] is None or as_of < h[3])]
        assert [h[1] for h in held] == [tier]
    open_rows = [h for h in history if h[3] is None]
    assert len(open_rows) == len({h[0] for h in history})


def test_tier_history_carried_forward_by_each_period_is_the_history_rebuilt_from_every_snapshot(
    tmp_path: Path, warehouse_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    conns = demo_connections(tmp_path, warehouse_url)
    extract_validated(conns, date(2025, 4, 1), "extract")

    def history(conn: sa.Connection) -> pd.DataFrame:
        return read_frame(conn, "SELECT * FROM marts.tier_history ORDER BY customer_key, valid_from")

    def check(expected_how: str) -> None:
        assert [r.getMessage() for r in caplog.records if "tier history" in r.getMessage()][-1:] == \
            [f"tier history: {expected_how}"]
        with open_engine(warehouse_url) as engine, engine.connect() as conn:
            kept = history(conn)
            run_sql_file(conn, "publish/tier_history_rebuild")
            rebuilt = history(conn)
            conn.rollback()
        pd.testing.assert_frame_equal(kept, rebuilt)

    with caplog.at_level("INFO", logger="grading.publish"):
        for as_of in (date(2024, 10, 1), date(2025, 1, 1)):
            load_period(conns, as_of, f"run-{as_of}")
            check("append")
        # An operator reruns the latest period after regrading some of its customers (some into
        # a new tier, some back into their previous one): what its first publish opened and
        # closed is taken back before the new tiers are applied.
        with open_engine(warehouse_url) as engine, engine.begin() as conn:
            regraded = conn.execute(sa.text(
                "UPDATE staging.customer_tiers SET tier = 'regraded' "
                "WHERE as_of_date = '2025-01-01' AND customer_id IN (SELECT customer_id FROM staging.customer_tiers "
                "WHERE as_of_date = '2025-01-01' ORDER BY customer_id LIMIT 60)")).rowcount
            reverted = conn.execute(sa.text(
                "UPDATE staging.customer_tiers AS t SET tier = p.tier FROM staging.customer_tiers AS p "
                "WHERE t.as_of_date = '2025-01-01' AND p.as_of_date = '2024-10-01' AND p.customer_id = t.customer_id "
                "AND t.tier NOT IN (p.tier, 'regraded')")).rowcount
        assert regraded == 60
        assert reverted > 0
        publish_stage(conns, date(2025, 1, 1), "rerun")
        check("append")
        load_period(conns, date(2024, 7, 1), "backfill")  # earlier than the latest: rebuilt
        check("rebuild")
        load_period(conns, date(2025, 4, 1), "run-2025-04-01")
        check("append")
    with open_engine(warehouse_url) as engine, engine.connect() as conn:
        kept = history(conn)
    assert (kept["tier"] == "regraded").sum() == 60
    assert kept.groupby("customer_key").size().max() >= 3, "the demo data should change some tiers"


def test_postgresql_knows_the_size_of_every_table_a_run_loaded(tmp_path: Path, pg_url: str) -> None:
    # The planner sizes its plans on the statistics (reltuples: -1 until a table is analyzed);
    # every stage refreshes those of the tables it loaded, whether or not autovacuum runs.
    conns = demo_connections(tmp_path, pg_url)
    for as_of in (date(2024, 10, 1), date(2025, 1, 1)):
        run_grading(conns, as_of)
    loaded = ("raw.orders", "raw.customers", "ops.customer_keys", "staging.customer_features",
              "staging.customer_tiers", "staging.customer_flags",
              "marts.customer_tier_snapshot", "marts.tier_history", "marts.winback_candidates")
    for table in loaded:
        rows = scalar(pg_url, f"SELECT COUNT(*) FROM {table}")  # noqa: S608 - names of this test
        assert scalar(pg_url, "SELECT reltuples FROM pg_class WHERE oid = CAST(:t AS regclass)", t=table) == rows, table
        assert rows > 0, table
    # ... and reads or replaces one period of them by index, not by scanning the history
    assert scalar(pg_url, "SELECT COUNT(*) FROM pg_indexes WHERE schemaname IN ('staging', 'marts') "
                          "AND indexdef LIKE '%(as_of_date)'") == 9


def test_the_catalogue_documents_exactly_the_published_columns(tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    with open_engine(url) as engine:
        prepare_warehouse(engine)
        with engine.connect() as conn:
            columns = published_columns(conn)
            dictionary = render_dictionary(conn)
    catalogue = load_catalogue()
    assert set(catalogue) == set(columns)
    for relation, pairs in columns.items():
        assert list(catalogue[relation]["columns"]) == [c for c, _ in pairs], relation
    committed = (ROOT / "docs" / "data-dictionary.md").read_text(encoding="utf-8")
    assert committed == dictionary, "docs/data-dictionary.md is stale: run python -m grading docs"


def test_column_comments_reach_postgresql(pg_url: str) -> None:
    with open_engine(pg_url) as engine:
        prepare_warehouse(engine)
    comment = scalar(pg_url, "SELECT col_description('marts.customer_tier_snapshot'::regclass, 3)")
    assert comment == load_catalogue()["customer_tier_snapshot"]["columns"]["tier"]


def test_bi_role_reads_every_published_relation_and_nothing_else(tmp_path: Path, pg_url: str) -> None:
    from grading.access import create_bi_role

    conns = demo_connections(tmp_path, pg_url, customers=50)
    run_grading(conns, date(2025, 1, 1))
    role = f"bi_test_{uuid.uuid4().hex[:8]}"
    with open_engine(pg_url) as engine:
        create_bi_role(engine, role)
        create_bi_role(engine, role)  # rerunnable
    as_role = sa.make_url(pg_url).set(username=role).render_as_string(hide_password=False)
    try:
        with open_engine(as_role) as engine, engine.connect() as conn:
            for relation in load_catalogue():
                conn.execute(sa.text(f"SELECT * FROM marts.{relation} LIMIT 1"))  # noqa: S608
            for forbidden in ("SELECT * FROM raw.orders", "SELECT * FROM ops.customer_keys",
                              "SELECT * FROM staging.customer_features",
                              "INSERT INTO marts.run_audit (run_id) VALUES ('x')",
                              "DELETE FROM marts.customer_tier_snapshot", "CREATE TABLE marts.mine (a int)",
                              "CREATE TEMPORARY TABLE scratch (a int)"):
                with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
                    conn.execute(sa.text(forbidden))
                conn.rollback()
    finally:
        with open_engine(pg_url) as engine, engine.begin() as conn:
            conn.execute(sa.text(f'DROP OWNED BY "{role}"'))
            conn.execute(sa.text(f'DROP ROLE "{role}"'))


def test_bi_role_names_are_checked(pg_url: str) -> None:
    from grading.access import create_bi_role

    with open_engine(pg_url) as engine, pytest.raises(ValueError, match="role name must match"):
        create_bi_role(engine, 'x"; DROP TABLE marts.run_audit; --')


# read_frame: PostgreSQL results come through COPY + pyarrow and must look like DuckDB's fetch_df()

_TYPED_TABLE = """CREATE TABLE t (id INTEGER, s VARCHAR, i INTEGER, b BIGINT, sm SMALLINT, d DOUBLE PRECISION,
    r REAL, n NUMERIC(14, 2), bo BOOLEAN, dt DATE, ts TIMESTAMP, tz TIMESTAMPTZ)"""
_TYPED_ROWS = """INSERT INTO t VALUES
    (1, 'a', 1, 9007199254740993, 3, 1.5, 2.5, 123456789012.34, TRUE, '2024-01-02',
     '2024-01-02 03:04:05.123456', '2024-01-02 03:04:05.123456+00'),
    (2, '', -2, -5, -3, -0.25, 0.5, -0.01, FALSE, '1999-12-31', '1999-12-31 23:59:59', '1999-12-31 22:00:00+00'),
    (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"""


def _same_dtype(pg, duck) -> bool:
    # the tz-aware column: DuckDB names the session's zone (Etc/UTC here), PostgreSQL's is read as UTC
    if isinstance(pg, pd.DatetimeTZDtype) and isinstance(duck, pd.DatetimeTZDtype):
        return pg.unit == duck.unit
    return pg == duck


@pytest.mark.parametrize("where", ["TRUE", "s IS NOT NULL", "FALSE"], ids=["with-nulls", "no-nulls", "empty"])
def test_read_frame_gives_postgresql_the_dtypes_and_values_of_duckdb(tmp_path: Path, pg_url: str, where: str) -> None:
    frames = {}
    for url in (f"duckdb:///{tmp_path / 'w.duckdb'}", pg_url):
        with open_engine(url) as engine, engine.begin() as conn:
            conn.execute(sa.text(_TYPED_TABLE))
            conn.execute(sa.text(_TYPED_ROWS))
            frames[engine.dialect.name] = read_frame(conn, f"SELECT * FROM t WHERE {where} ORDER BY id")  # noqa: S608
    pg, duck = frames["postgresql"], frames["duckdb"]
    assert list(pg.columns) == list(duck.columns)
    differ = {c: (str(pg[c].dtype), str(duck[c].dtype))
              for c in pg.columns if not _same_dtype(pg[c].dtype, duck[c].dtype)}
    # DuckDB gives an empty VARCHAR column as object; PostgreSQL keeps pandas' str
    assert differ == ({"s": ("str", "object")} if where == "FALSE" else {})
    for frame in (pg, duck):
        frame["tz"] = frame["tz"].dt.tz_convert("UTC")
    pd.testing.assert_frame_equal(pg, duck, check_dtype=False)
    assert len(pg) == {"TRUE": 3, "s IS NOT NULL": 2, "FALSE": 0}[where]
    if where == "TRUE":
        assert pg["b"].iloc[0] == 9007199254740993  # exact: not through float64
        assert pg["s"].tolist()[:2] == ["a", ""]
        assert pd.isna(pg["s"].iloc[2])


def test_read_frame_on_postgresql_keeps_text_floats_and_parameters_intact(pg_url: str) -> None:
    texts = ["", "NULL", "NA", "nan", 'say "hi", twice', "two\nlines\r\nand a \\ backslash", "Zürich 東京 🙂"]
    with open_engine(pg_url) as engine, engine.begin() as conn:
        conn.execute(sa.text("SET TimeZone = 'America/New_York'"))
        conn.execute(sa.text("CREATE TABLE t (k INTEGER, s TEXT, f DOUBLE PRECISION, ts TIMESTAMPTZ)"))
        for k, s in enumerate(texts):
            conn.execute(sa.text("INSERT INTO t VALUES (:k, :s, NULL, NULL)"), {"k": k, "s": s})
        conn.execute(sa.text("INSERT INTO t VALUES (10, NULL, 'Infinity', '2024-07-01 12:00:00.000001+02'), "
                             "(11, NULL, '-Infinity', NULL), (12, NULL, 'NaN', NULL), (13, NULL, 1e-300, NULL)"))
        # uncommitted rows of the open transaction are read, through the same connection
        frame = read_frame(conn, "SELECT * FROM t ORDER BY k")
        assert frame["s"].iloc[:len(texts)].tolist() == texts
        assert frame["s"].iloc[len(texts):].isna().all()
        floats = frame.set_index("k")["f"]
        assert floats[10] == np.inf
        assert floats[11] == -np.inf
        assert np.isnan(floats[12])
        assert floats[13] == 1e-300
        assert frame.set_index("k")["ts"][10] == pd.Timestamp("2024-07-01 10:00:00.000001", tz="UTC")
        # values are bound by the driver: quotes, percent signs and a newline in a comment line stay values
        sql = "-- :s names the text\nSELECT k, s, 7 % 3 AS m FROM t WHERE s = :s OR k = ANY(:ks) ORDER BY k"
        picked = read_frame(conn, sql, {"s": 'say "hi", twice', "ks": [0, 1], "unused": 1})
        assert picked["k"].tolist() == [0, 1, 4]
        assert picked["m"].tolist() == [1, 1, 1]
        evil = "x'); DROP TABLE t; --\n%s %(k)s"
        assert read_frame(conn, "SELECT :v AS v", {"v": evil})["v"].tolist() == [evil]
        assert read_frame(conn, "SELECT '100%' AS p")["p"].tolist() == ["100%"]


def test_read_frame_on_postgresql_falls_back_to_rows_for_what_arrow_is_not_given(pg_url: str) -> None:
    with open_engine(pg_url) as engine, engine.begin() as conn:
        frame = read_frame(conn, "SELECT 1 AS k, CAST('{\"a\": 1}' AS JSONB) AS j, ARRAY[1, 2] AS a, "
                                 "INTERVAL '1 day' AS i")
        assert frame.iloc[0].to_dict() == {"k": 1, "j": {"a": 1}, "a": [1, 2], "i": timedelta(days=1)}
        # dates written in a style Arrow does not parse: read again as rows after the COPY
        conn.execute(sa.text("SET DateStyle = 'SQL, DMY'"))
        dates = read_frame(conn, "SELECT CAST(d AS DATE) AS d FROM (VALUES ('2024-01-02'), ('2024-12-31')) AS v (d)")
        assert dates["d"].tolist() == [date(2024, 1, 2), date(2024, 12, 31)]
        with pytest.raises(sa.exc.DataError, match="division by zero"):
            read_frame(conn, "SELECT 1 / (k - k) AS boom FROM (VALUES (1)) AS v (k)")


def test_postgresql_sessions_get_the_work_mem_setting_unless_the_url_sets_it(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert scalar(pg_url, "SHOW work_mem") == "64MB"
    monkeypatch.setenv("GRADING_PG_WORK_MEM", "32MB")
    assert scalar(pg_url, "SHOW work_mem") == "32MB"
    assert scalar(f"{pg_url}?options=-c%20work_mem%3D5MB", "SHOW work_mem") == "5MB"
    monkeypatch.setenv("GRADING_PG_WORK_MEM", "32MB; DROP TABLE x")
    with pytest.raises(ValueError, match="GRADING_PG_WORK_MEM must be a size"):
        scalar(pg_url, "SHOW work_mem")


def test_a_numeric_sum_read_back_is_written_into_a_bigint_column(pg_url: str) -> None:
    from grading.frames import bulk_insert

    with open_engine(pg_url) as engine, engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (k BIGINT, n BIGINT, f DOUBLE PRECISION)"))
        conn.execute(sa.text("INSERT INTO t VALUES (1, 5, 0.5), (1, 9007199254740993, 0.25), (2, NULL, NULL)"))
        sums = read_frame(conn, "SELECT k, SUM(n) AS n, SUM(f) AS f FROM t GROUP BY k ORDER BY k")
        assert str(sums["n"].dtype) == "float64"  # NUMERIC, as DuckDB gives its HUGEINT
        conn.execute(sa.text("CREATE TABLE totals (k BIGINT, n BIGINT, f DOUBLE PRECISION)"))
        bulk_insert(conn, "totals", sums)
        rows = conn.execute(sa.text("SELECT k, n, f FROM totals ORDER BY k")).all()
        assert rows == [(1, 9007199254740998, 0.75), (2, None, None)]
    with open_engine(pg_url) as engine, engine.connect() as conn, \
            pytest.raises(psycopg.errors.InvalidTextRepresentation, match="bigint"):
        bulk_insert(conn, "totals", pd.DataFrame({"k": [3], "n": [1.5], "f": [1.0]}))  # not whole: refused


def test_bulk_insert_keeps_empty_texts_apart_from_nulls(warehouse_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from grading import frames
    from grading.frames import bulk_insert

    monkeypatch.setattr(frames, "_COPY_SLICE_ROWS", 3)  # PostgreSQL's COPY gets the rows in three slices

    texts = ["", None, "NULL", 'say "hi", twice', "two\nlines", "a \\ backslash", "Zürich 東京", "\\N"]
    frame = pd.DataFrame({
        "k": range(len(texts)),
        "s": pd.Series(texts, dtype=object),
        "f": [0.5, np.nan, 1.0, None, 2.0, 3.0, 4.0, 0.1 + 0.2],
        "n": pd.array([1, None, 3, 4, 5, 6, 7, 2**53 + 1], dtype="Int64"),
        "d": pd.to_datetime(["2024-01-02", None, "2024-03-04", "2024-05-06", None, "2024-07-08", "2024-09-10",
                             "2024-12-31"]),
    })
    with open_engine(warehouse_url) as engine, engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (k INTEGER, s TEXT, f DOUBLE PRECISION, n BIGINT, d DATE)"))
        assert bulk_insert(conn, "t", frame) == len(texts)
        rows = conn.execute(sa.text("SELECT k, s, f, n, d FROM t ORDER BY k")).all()
    assert [row.s for row in rows] == texts
    assert [row.f for row in rows] == [0.5, None, 1.0, None, 2.0, 3.0, 4.0, 0.1 + 0.2]
    assert [row.n for row in rows] == [1, None, 3, 4, 5, 6, 7, 2**53 + 1]
    assert [row.d for row in rows][:3] == [date(2024, 1, 2), None, date(2024, 3, 4)]
    assert rows[4].d is None


def test_a_computed_frame_is_the_query_s_frame_and_leaves_duckdb_as_it_was(warehouse_url: str) -> None:
    from grading.frames import read_computed_frame

    sql = ("SELECT k % 3 AS g, COUNT(*) AS n, SUM(k) AS total, MAX(s) AS s FROM t "
           "WHERE k >= :low GROUP BY k % 3 ORDER BY g")
    with open_engine(warehouse_url) as engine, engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (k INTEGER, s TEXT)"))
        conn.execute(sa.text("INSERT INTO t SELECT k, 'row ' || CAST(k AS TEXT) "
                             "FROM generate_series(1, 1000) AS g (k)"))
        duckdb = conn.dialect.name == "duckdb"
        limit = duckdb and conn.exec_driver_sql("SELECT current_setting('memory_limit')").scalar_one()
        computed = read_computed_frame(conn, sql, {"low": 10})  # the open transaction's rows are seen
        pd.testing.assert_frame_equal(computed, read_frame(conn, sql, {"low": 10}))
        assert computed["n"].tolist() == [330, 331, 330]
        assert not duckdb or conn.exec_driver_sql("SELECT current_setting('memory_limit')").scalar_one() == limit
        left = conn.exec_driver_sql("SELECT table_name FROM information_schema.tables "
                                    "WHERE table_name LIKE 'computed%%'").scalars().all()
        assert left == []  # the temporary table is gone


def test_a_failure_under_a_capped_duckdb_limit_is_the_error_raised(tmp_path: Path) -> None:
    from grading.frames import duckdb_memory_capped

    with open_engine(f"duckdb:///{tmp_path / 'w.duckdb'}") as engine:
        with engine.begin() as conn, pytest.raises(sa.exc.DBAPIError, match="boom"), \
                duckdb_memory_capped(conn, "64MiB"):
            conn.exec_driver_sql("SELECT error('boom')")
        with engine.connect() as conn:
            def limit() -> str:
                return conn.exec_driver_sql("SELECT current_setting('memory_limit')").scalar_one()

            configured = limit()
            with duckdb_memory_capped(conn, "64MiB"):
                assert limit() == "64.0 MiB"
            assert limit() == configured != "64.0 MiB"
            with pytest.raises(ValueError, match="not a DuckDB memory size"), duckdb_memory_capped(conn, "1; DROP"):
                pass


def test_publish_files_are_the_marts_relations_in_marts_yml_order(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    import yaml

    from grading.publish import LOADED_ELSEWHERE, PUBLISHED_TABLES, STEP_FILES, PublishFilesError, publish_files
    from grading.settings import include_dir

    listed, relations = list(load_catalogue()), publish_files()
    assert relations == [relation for relation in listed if relation not in LOADED_ELSEWHERE]
    files = {path.name.split(".")[0] for path in (include_dir() / "sql" / "publish").glob("*.sql")}
    assert files == {*relations, *STEP_FILES}
    assert set(PUBLISHED_TABLES) <= set(relations)
    assert relations.index("lost_customers") > relations.index("winback_candidates")  # reads it

    sql = tmp_path / "sql"
    shutil.copytree(include_dir() / "sql" / "publish", sql / "publish")
    shutil.copy(include_dir() / "sql" / "marts.yml", sql / "marts.yml")
    monkeypatch.setenv("GRADING_INCLUDE_DIR", str(tmp_path))
    assert publish_files() == relations
    (sql / "publish" / "core_customers.sql").rename(sql / "publish" / "core_customer.sql")  # missing and extra
    with pytest.raises(PublishFilesError, match=r"core_customers\.sql is missing.*core_customer\.sql loads no"):
        publish_files()
    (sql / "publish" / "core_customer.sql").rename(sql / "publish" / "core_customers.sql")
    catalogue = yaml.safe_load((sql / "marts.yml").read_text(encoding="utf-8"))
    catalogue["relations"] = {"lost_customers": catalogue["relations"].pop("lost_customers"), **catalogue["relations"]}
    (sql / "marts.yml").write_text(yaml.safe_dump(catalogue, sort_keys=False, allow_unicode=True), encoding="utf-8")
    with pytest.raises(PublishFilesError, match="lists lost_customers before customer_tier_snapshot"):
        publish_files()
