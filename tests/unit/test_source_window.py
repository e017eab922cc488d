"""Which source rows fall in an extraction window (grading.source_window), run for real: a SQLite
file whose event times are text of every shape, and a DuckDB file with zoned timestamp and date
columns compared as instants. Rows whose time cannot be placed are always selected too."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from grading import source_window
from grading.warehouse import open_engine

START, CUTOFF = datetime(2024, 5, 1), datetime(2024, 6, 1)

# order_id -> the event time as written to SQLite, and whether the SQL filter must select it
SQLITE_ROWS: dict[str, tuple[object, bool]] = {
    "first-instant": ("2024-05-01 00:00:00", True),
    "iso-t-zulu": ("2024-05-28T10:00:00Z", True),
    "date-only": ("2024-05-15", True),
    # 2024-06-01 00:30+02:00 is 2024-05-31 22:30 UTC: inside, although its text sorts after the cutoff
    "offset-inside": ("2024-06-01 00:30:00+02:00", True),
    # the margin of a day: selected here, cut exactly once converted
    "at-cutoff-micro": ("2024-06-01 00:00:00.000000", True),
    "day-before-start": ("2024-04-30 12:00:00.123456", True),
    "missing": (None, True),
    "other-format": ("15/11/2024", True),
    "epoch-seconds": (1716854400, True),
    "long-before": ("2024-04-29 23:59:59", False),
    "long-after": ("2024-06-02 12:00:00", False),
}


@pytest.fixture
def sqlite_source(tmp_path: Path) -> Iterator[Engine]:
    with open_engine(f"sqlite:///{tmp_path / 'source.sqlite'}") as engine:
        with engine.begin() as conn:
            # a TIMESTAMP declaration means nothing to SQLite: the column holds what was written
            conn.execute(sa.text("CREATE TABLE orders (order_id TEXT PRIMARY KEY, order_ts TIMESTAMP, amount REAL)"))
            conn.execute(sa.text("INSERT INTO orders VALUES (:k, :v, 1.0)"),
                         [{"k": k, "v": v} for k, (v, _) in SQLITE_ROWS.items()])
        yield engine


@pytest.fixture
def duckdb_source(tmp_path: Path) -> Iterator[Engine]:
    with open_engine(f"duckdb:///{tmp_path / 'source.duckdb'}") as engine:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE orders (order_id VARCHAR, order_ts TIMESTAMPTZ, placed DATE, "
                                 "note VARCHAR)"))
            conn.execute(sa.text(
                "INSERT INTO orders VALUES "
                "('a', '2024-06-01 01:00:00+02:00', '2024-05-31', 'x'), "  # 05-31 23:00 UTC: inside
                "('b', '2024-05-31 23:30:00-02:00', '2024-06-01', 'y'), "  # 06-01 01:30 UTC: after the cutoff
                "('c', NULL, NULL, NULL), "
                "('d', '2024-04-30 23:00:00-01:00', '2024-05-01', 'z'), "  # 05-01 00:00 UTC: the first instant
                "('e', '2024-05-01 00:30:00+01:00', '2024-04-30', 'w')"))  # 04-30 23:30 UTC: before the start
        yield engine


def _selected(engine: Engine, where: sa.ColumnElement) -> set[str]:
    query = sa.select(sa.column("order_id")).select_from(sa.table("orders")).where(where)
    with engine.connect() as conn:
        return set(conn.execute(query).scalars())


def test_declared_types_are_read_from_sqlite_and_duckdb(sqlite_source: Engine, duckdb_source: Engine) -> None:
    assert source_window.source_columns(sqlite_source, "orders") == {
        "order_id": "TEXT", "order_ts": "TIMESTAMP", "amount": "REAL"}
    assert source_window.source_columns(sqlite_source, "tickets") == {}
    declared = source_window.source_columns(duckdb_source, "orders")
    assert declared == {"order_id": "VARCHAR", "order_ts": "TIMESTAMP WITH TIME ZONE", "placed": "DATE",
                        "note": "VARCHAR"}
    assert source_window.source_columns(duckdb_source, "tickets") == {}
    # only a real timestamp or date column is compared in the source's own SQL; SQLite's never are
    assert [source_window.is_typed(duckdb_source, kind) for kind in declared.values()] == [False, True, True, False]
    assert not source_window.is_typed(sqlite_source, declared["order_ts"])


def test_sqlite_text_times_are_compared_as_instants_with_a_margin_and_unplaceable_rows_kept(
        sqlite_source: Engine) -> None:
    where, cut = source_window.where_in_window(sqlite_source, sa.column("order_ts"), START, CUTOFF, typed=False)
    assert cut  # the margin widens the filter: the rows must still be cut once converted
    assert _selected(sqlite_source, where) == {k for k, (_, hit) in SQLITE_ROWS.items() if hit}

    where, cut = source_window.where_in_window(sqlite_source, sa.column("order_ts"), None, CUTOFF, typed=False)
    assert cut
    assert _selected(sqlite_source, where) == set(SQLITE_ROWS) - {"long-after"}


@pytest.mark.parametrize("value", [45000, "now"], ids=["spreadsheet-serial-number", "word-now"])
def test_a_sqlite_value_that_is_no_time_is_always_selected(sqlite_source: Engine, value: object) -> None:
    with sqlite_source.begin() as conn:
        conn.execute(sa.text("INSERT INTO orders VALUES ('no-time', :v, 1.0)"), {"v": value})
    where, _ = source_window.where_in_window(sqlite_source, sa.column("order_ts"), START, CUTOFF, typed=False)
    assert "no-time" in _selected(sqlite_source, where)


@pytest.mark.parametrize("column", ["order_ts", "placed"])
def test_duckdb_typed_columns_select_exactly_the_window_as_instants_plus_nulls(
        duckdb_source: Engine, column: str) -> None:
    where, cut = source_window.where_in_window(duckdb_source, sa.column(column), START, CUTOFF, typed=True)
    assert not cut  # compared exactly in the source
    assert _selected(duckdb_source, where) == {"a", "c", "d"}
    where, _ = source_window.where_in_window(duckdb_source, sa.column(column), None, CUTOFF, typed=True)
    assert _selected(duckdb_source, where) == {"a", "c", "d", "e"}


def test_a_text_column_outside_sqlite_is_read_whole_and_cut_after_conversion(duckdb_source: Engine) -> None:
    assert source_window.where_in_window(duckdb_source, sa.column("note"), START, CUTOFF, typed=False) == (None, True)
