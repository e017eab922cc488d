"""DataFrames in and out of the warehouse (grading.frames): read_frame giving PostgreSQL the dtypes and
values of DuckDB, bulk_insert keeping texts, NULLs and integers intact, computed frames and the DuckDB
memory cap, and read_query_file choosing a SQL file's dialect variant."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
import pytest
import sqlalchemy as sa

from grading import frames
from grading.frames import (
    append_batches,
    bulk_insert,
    duckdb_memory_capped,
    read_computed_frame,
    read_computed_frames,
    read_computed_table,
    read_frame,
    read_query_file,
)
from grading.warehouse import open_engine

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


def test_a_numeric_sum_read_back_is_written_into_a_bigint_column(pg_url: str) -> None:
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


@pytest.mark.parametrize("given", ["frame", "arrow"])
def test_bulk_insert_keeps_empty_texts_apart_from_nulls(warehouse_url: str, monkeypatch: pytest.MonkeyPatch,
                                                        given: str) -> None:
    """The same through either COPY path on PostgreSQL: DuckDB-written slices of a frame, pyarrow's CSV of a batch."""
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
    rows_given = frame if given == "frame" else pa.RecordBatch.from_pandas(frame, preserve_index=False)
    with open_engine(warehouse_url) as engine, engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (k INTEGER, s TEXT, f DOUBLE PRECISION, n BIGINT, d DATE)"))
        assert bulk_insert(conn, "t", rows_given) == len(texts)
        rows = conn.execute(sa.text("SELECT k, s, f, n, d FROM t ORDER BY k")).all()
    assert [row.s for row in rows] == texts
    assert [row.f for row in rows] == [0.5, None, 1.0, None, 2.0, 3.0, 4.0, 0.1 + 0.2]
    assert [row.n for row in rows] == [1, None, 3, 4, 5, 6, 7, 2**53 + 1]
    assert [row.d for row in rows][:3] == [date(2024, 1, 2), None, date(2024, 3, 4)]
    assert rows[4].d is None


def test_a_computed_frame_is_the_query_s_frame_and_leaves_duckdb_as_it_was(warehouse_url: str) -> None:
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
        table = read_computed_table(conn, sql, {"low": 10})  # the same rows, as Arrow
        assert table.to_pydict() == {c: computed[c].tolist() for c in computed.columns}
        assert not duckdb or conn.exec_driver_sql("SELECT current_setting('memory_limit')").scalar_one() == limit
        left = conn.exec_driver_sql("SELECT table_name FROM information_schema.tables "
                                    "WHERE table_name LIKE 'computed%%'").scalars().all()
        assert left == []  # the temporary table is gone


def test_a_failure_under_a_capped_duckdb_limit_is_the_error_raised(tmp_path: Path) -> None:
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


def test_read_query_file_prefers_the_dialect_variant_and_binds_parameters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sql = tmp_path / "sql" / "probe"
    sql.mkdir(parents=True)
    (sql / "pick.sql").write_text("SELECT 'generic' AS flavour, CAST(:n AS INTEGER) + 1 AS n\n", encoding="utf-8")
    (sql / "pick.duckdb.sql").write_text("-- :n is the number\nSELECT 'duckdb' AS flavour, CAST(:n AS INTEGER) + 1 "
                                         "AS n\n", encoding="utf-8")
    (sql / "only.sql").write_text("SELECT 'generic' AS flavour\n", encoding="utf-8")
    monkeypatch.setenv("GRADING_INCLUDE_DIR", str(tmp_path))
    with open_engine(f"duckdb:///{tmp_path / 'w.duckdb'}") as engine, engine.connect() as conn:
        assert read_query_file(conn, "probe/pick", {"n": 41}).to_dict("records") == [{"flavour": "duckdb", "n": 42}]
        assert read_query_file(conn, "probe/only")["flavour"].tolist() == ["generic"]
        with pytest.raises(FileNotFoundError, match="no SQL file for 'probe/missing'"):
            read_query_file(conn, "probe/missing")


def test_computed_frames_come_back_in_the_order_of_their_queries(tmp_path: Path) -> None:
    with open_engine(f"duckdb:///{tmp_path / 'w.duckdb'}") as engine, engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (k INTEGER)"))
        conn.execute(sa.text("INSERT INTO t SELECT k FROM generate_series(1, 10) AS g (k)"))
        small, count, empty = read_computed_frames(conn, [
            ("SELECT k FROM t WHERE k <= :n ORDER BY k", {"n": 3}),
            ("SELECT COUNT(*) AS n FROM t WHERE k > :n", {"n": 3}),
            ("SELECT k FROM t WHERE k > 100", None),
        ])
        assert small["k"].tolist() == [1, 2, 3]
        assert count["n"].tolist() == [7]
        assert empty.empty
        assert list(empty.columns) == ["k"]


def _batches(*starts: int) -> list[pa.RecordBatch]:
    return [pa.RecordBatch.from_pydict({"k": list(range(start, start + 3)), "s": ["a", None, ""]}) for start in starts]


def test_append_batches_writes_a_stream_in_one_statement_and_counts_it(warehouse_url: str) -> None:
    schema = pa.schema([("k", pa.int64()), ("s", pa.string())])
    with open_engine(warehouse_url) as engine, engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (k BIGINT, s TEXT)"))
        assert append_batches(conn, "t", schema, iter(_batches(0, 3, 6))) == 9
        assert append_batches(conn, "t", schema, iter([])) == 0
        rows = conn.execute(sa.text("SELECT k, s FROM t ORDER BY k")).all()
    assert [tuple(row) for row in rows] == [(k, ["a", None, ""][k % 3]) for k in range(9)]


def test_an_error_raised_while_streaming_is_raised_as_it_is_and_nothing_is_written(warehouse_url: str) -> None:
    """A source value refused in the third batch: the caller sees that error (not DuckDB's about a
    failed stream), and the statement's transaction keeps none of the batches before it."""
    schema = pa.schema([("k", pa.int64()), ("s", pa.string())])

    class Refused(ValueError):
        pass

    def stream():
        yield from _batches(0, 3)
        raise Refused("source table t, column s: 1 row(s) hold a NUL character")

    with open_engine(warehouse_url) as engine:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE t (k BIGINT, s TEXT)"))
        with pytest.raises(Refused, match="NUL character"), engine.begin() as conn:
            append_batches(conn, "t", schema, stream())
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT COUNT(*) FROM t")).scalar_one() == 0
