"""Incremental extraction from a real SQLite source into both warehouses."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from grading import demo, ledger
from grading import extract as extract_module
from grading.contract import SOURCE_TABLES
from grading.convert import SourceDataError, to_canonical
from grading.extract import extract, extract_window, register_customer_keys
from grading.frames import read_frame
from grading.keys import pseudonym
from grading.warehouse import migrate, open_engine
from tests.helpers import pass_batch, scalar

KEY = b"test-key"


def test_extract_window_starts_at_the_watermark_less_the_look_back() -> None:
    cutoff, back = datetime(2025, 1, 1), timedelta(days=3)
    assert extract_window(None, cutoff, back) == (None, cutoff)
    assert extract_window(datetime(2024, 12, 1), cutoff, back) == (datetime(2024, 11, 28), cutoff)
    # Rerunning an earlier period re-reads only up to its own cutoff.
    assert extract_window(datetime(2025, 2, 1), cutoff, back) == (datetime(2024, 12, 29), cutoff)


def test_aware_timestamps_become_naive_utc() -> None:
    frame = pd.DataFrame({"survey_id": ["s"], "customer_id": ["c"], "responded_at": ["2024-12-31T23:30:00-02:00"],
                          "csat": [5], "nps": [9]})
    out = to_canonical(SOURCE_TABLES["surveys"], frame)
    assert out.loc[0, "responded_at"] == pd.Timestamp("2025-01-01 01:30:00")


def _source(tmp_path: Path) -> tuple[str, demo.DemoData]:
    data = demo.generate(customers=150, seed=11)
    url = f"sqlite:///{tmp_path / 'source.sqlite'}"
    demo.write_source(data, url)
    return url, data


def _raw_counts(url: str) -> dict[str, int]:
    return {t: scalar(url, f"SELECT COUNT(*) FROM raw.{t}") for t in SOURCE_TABLES}  # noqa: S608


def _expected_counts(data: demo.DemoData, cutoff: date) -> dict[str, int]:
    ts = pd.Timestamp(cutoff)
    return {name: int((frame[SOURCE_TABLES[name].event_time] < ts).sum()) for name, frame in data.tables().items()}


def test_incremental_extraction_replaces_its_window_and_never_duplicates(tmp_path: Path, warehouse_url: str) -> None:
    source_url, data = _source(tmp_path)
    with open_engine(source_url) as source, open_engine(warehouse_url) as warehouse:
        migrate(warehouse)
        # (cutoff, raw should then hold every source row before): rerunning the earlier period
        # re-reads its own window and leaves the later rows in place.
        steps = [(date(2024, 7, 1), date(2024, 7, 1)), (date(2025, 1, 1), date(2025, 1, 1)),
                 (date(2024, 7, 1), date(2025, 1, 1)), (date(2025, 1, 1), date(2025, 1, 1))]
        for cutoff, through in steps:
            batch = datetime.now()
            extract(source, warehouse, datetime.combine(cutoff, datetime.min.time()), KEY, batch=batch)
            pass_batch(warehouse, batch)
            assert _raw_counts(warehouse_url) == _expected_counts(data, through), f"after extracting to {cutoff}"
        assert scalar(warehouse_url, "SELECT COUNT(*) FROM ops.customer_keys") == 150
        assert scalar(warehouse_url, "SELECT COUNT(DISTINCT customer_key) FROM ops.customer_keys") == 150


def test_late_rows_inside_the_look_back_are_picked_up(tmp_path: Path, warehouse_url: str) -> None:
    source_url, data = _source(tmp_path)
    with open_engine(source_url) as source, open_engine(warehouse_url) as warehouse:
        migrate(warehouse)
        extract(source, warehouse, datetime(2024, 12, 1), KEY, batch=datetime(2024, 12, 1, 1))
        pass_batch(warehouse, datetime(2024, 12, 1, 1))
        with source.begin() as conn:  # an order dated two days before the last cutoff arrives late
            conn.execute(sa.text("INSERT INTO orders (order_id, customer_id, order_ts, status, amount, margin) "
                                 "VALUES ('LATE1', :c, :ts, 'completed', 10.0, 1.0)"),
                         {"c": data.customers["customer_id"].iloc[0], "ts": "2024-11-29 12:00:00.000000"})
        rows = extract(source, warehouse, datetime(2025, 1, 1), KEY, batch=datetime(2025, 1, 1, 1))
    assert scalar(warehouse_url, "SELECT COUNT(*) FROM raw.orders WHERE order_id = 'LATE1'") == 1
    assert rows["orders"] == _expected_counts(data, date(2025, 1, 1))["orders"] \
        - _expected_counts(data, date(2024, 11, 28))["orders"] + 1


@pytest.mark.parametrize("table", ["orders", "tickets"])
def test_rows_of_the_batch_are_stamped(tmp_path: Path, table: str) -> None:
    source_url, _ = _source(tmp_path)
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    batch = datetime(2025, 1, 2, 3, 4, 5, 678901)
    with open_engine(source_url) as source, open_engine(url) as warehouse:
        migrate(warehouse)
        extract(source, warehouse, datetime(2025, 1, 1), KEY, batch=batch)
    total = scalar(url, f"SELECT COUNT(*) FROM raw.{table}")  # noqa: S608
    assert scalar(url, f"SELECT COUNT(*) FROM raw.{table} WHERE extracted_at = :b", b=batch) == total > 0  # noqa: S608


def _extract_two_periods(source_url: str, url: str) -> None:
    """Extract up to 2024-07-01, pass that batch, then extract up to 2025-01-01 (the second batch unverdicted)."""
    with open_engine(source_url) as source, open_engine(url) as warehouse:
        migrate(warehouse)
        extract(source, warehouse, datetime(2024, 7, 1), KEY, batch=datetime(2024, 7, 1, 1))
        pass_batch(warehouse, datetime(2024, 7, 1, 1))
        extract(source, warehouse, datetime(2025, 1, 1), KEY, batch=datetime(2025, 1, 1, 1))


@pytest.mark.parametrize("source_kind", ["postgresql", "mariadb"])
def test_extracts_from_server_databases(tmp_path: Path, source_kind: str, request: pytest.FixtureRequest) -> None:
    """CRM and ERP data often lives in PostgreSQL or MySQL/MariaDB: extract from real servers."""
    source_url = request.getfixturevalue("pg_url" if source_kind == "postgresql" else "mariadb_url")
    data = demo.generate(customers=120, seed=13)
    demo.write_source(data, source_url)
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    _extract_two_periods(source_url, url)
    assert _raw_counts(url) == _expected_counts(data, date(2025, 1, 1))
    want = data.orders[data.orders["order_ts"] < "2025-01-01"]["amount"].sum()
    assert float(scalar(url, "SELECT SUM(amount) FROM raw.orders")) == pytest.approx(want, abs=0.01)


def test_a_duckdb_source_is_read_through_arrow_into_the_same_rows(tmp_path: Path) -> None:
    """A DuckDB source is read as Arrow batches, not through pd.read_sql: the raw rows must be
    exactly those a SQLite source of the same data gives."""
    data = demo.generate(customers=150, seed=21)
    raw = {}
    for kind in ("sqlite", "duckdb"):
        source_url = f"{kind}:///{tmp_path / f'source.{kind}'}"
        demo.write_source(data, source_url)
        url = f"duckdb:///{tmp_path / f'w_{kind}.duckdb'}"
        _extract_two_periods(source_url, url)
        with open_engine(url) as warehouse, warehouse.connect() as conn:
            raw[kind] = {t: read_frame(conn, f"SELECT * FROM raw.{t} ORDER BY {spec.key}")  # noqa: S608
                         for t, spec in SOURCE_TABLES.items()}
    assert {t: len(f) for t, f in raw["duckdb"].items()} == _expected_counts(data, date(2025, 1, 1))
    for table, frame in raw["sqlite"].items():
        pd.testing.assert_frame_equal(raw["duckdb"][table], frame, check_dtype=False)


def _drop(folder: Path, day: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "orders.csv").write_text(
        "Invoice,Client,Day,Total\n"
        "I1,c1,03/11/2024,10.00\n"
        "I2,,05/11/2024,99.00\n"
        f"I3,c2,{day},5.50\n", encoding="utf-8")
    (folder / "mapping.yaml").write_text(
        "kind: source_mapping\nversion: '1'\nsource: {type: files, location: .}\ntables:\n"
        "  customers:\n    from: orders.csv\n    group_by: customer_id\n"
        "    columns: {customer_id: Client, created_at: {column: Day, format: '%d/%m/%Y'}}\n"
        "  orders:\n    from: orders.csv\n"
        "    columns: {order_id: Invoice, customer_id: Client, order_ts: {column: Day, format: '%d/%m/%Y'},\n"
        "              status: {value: completed}, amount: Total}\n", encoding="utf-8")


def test_a_source_that_fails_to_map_leaves_raw_and_watermarks_as_they_were(tmp_path: Path) -> None:
    """A mapping error leaves raw as it was; on DuckDB the rows read so far were staged, and the
    staging table goes too."""
    from grading.sources import SourceDataError, load_mapping

    folder = tmp_path / "drop"
    _drop(folder, "20/12/2024")
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    with open_engine(url) as warehouse:
        migrate(warehouse)
        rows = extract(None, warehouse, datetime(2025, 1, 1), KEY, batch=datetime(2025, 1, 1, 1),
                       mapping=load_mapping(folder / "mapping.yaml"))
        assert (rows["orders"], rows["customers"]) == (2, 2)
        assert rows["rejected"] == {"customers": {"missing customer_id": 1}, "orders": {"missing customer_id": 1}}
        pass_batch(warehouse, datetime(2025, 1, 1, 1))
        _drop(folder, "2024-12-20")  # a date off the declared format arrives
        with pytest.raises(SourceDataError, match=r"orders.csv row 3: column 'Day' .*'2024-12-20' does not match"):
            extract(None, warehouse, datetime(2025, 2, 1), KEY, batch=datetime(2025, 2, 1, 1),
                    mapping=load_mapping(folder / "mapping.yaml"))
    assert scalar(url, "SELECT COUNT(*) FROM raw.orders") == 2
    assert scalar(url, "SELECT COUNT(*) FROM raw.customers") == 2
    assert str(scalar(url, "SELECT MAX(extracted_through) FROM ops.extract_watermarks")).startswith("2025-01-01")
    assert scalar(url, "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'staging' "
                       "AND table_name LIKE 'extract_%'") == 0


def test_extract_stage_reads_a_file_drop_without_a_source_database(tmp_path: Path, grading_home: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from grading.pipeline import Connections, extract_stage

    _drop(tmp_path / "drop", "20/12/2024")
    monkeypatch.setenv("GRADING_SOURCE_MAPPING", str(tmp_path / "drop" / "mapping.yaml"))
    monkeypatch.setenv("AIRFLOW_CONN_GRADING_SOURCE", "postgresql://nobody@127.0.0.1:1/none")  # never opened
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    monkeypatch.setenv("AIRFLOW_CONN_GRADING_WAREHOUSE", url)
    summary = extract_stage(Connections.resolve(), date(2025, 1, 1), "r1")
    assert summary["rows"]["orders"] == 2
    assert summary["rows"]["customer_keys_added"] == 2
    assert summary["rejected"] == {"customers": {"missing customer_id": 1}, "orders": {"missing customer_id": 1}}
    message = scalar(url, "SELECT message FROM audit.run_audit WHERE stage = 'extract'")
    assert message == ("rejected by the source mapping: customers 1 (missing customer_id); "
                       "orders 1 (missing customer_id)")


@pytest.mark.parametrize("key", [KEY, b"a pseudonym key longer than SHA-256's block of sixty-four bytes, hashed first"])
def test_customer_keys_computed_in_the_warehouse_are_the_pseudonyms_of_grading_keys(warehouse_url: str,
                                                                                 key: bytes) -> None:
    ids = ["C-00042", "Ä-1", "客户 7", "", "x" * 200, "c-00042"]
    with open_engine(warehouse_url) as warehouse:
        migrate(warehouse)
        with warehouse.begin() as conn:
            for i in ids:
                conn.execute(sa.text("INSERT INTO raw.customers (customer_id, created_at, extracted_at) "
                                     "VALUES (:i, '2024-01-01', '2024-01-02')"), {"i": i})
        assert register_customer_keys(warehouse, key) == len(ids)
        assert register_customer_keys(warehouse, key) == 0  # each customer keeps the key it was given
        with warehouse.connect() as conn:
            stored = dict(conn.execute(sa.text("SELECT customer_id, customer_key FROM ops.customer_keys")).all())
    assert stored == {i: pseudonym(i, key) for i in ids}


def test_a_value_refused_in_a_later_chunk_leaves_raw_and_the_watermark_as_they_were(
        tmp_path: Path, warehouse_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A typed source streams chunk by chunk into one statement: a value refused after several chunks
    were written (an amount too large for raw) stops the extraction with that error, and nothing of
    the window is kept."""
    monkeypatch.setattr(extract_module, "CHUNK_ROWS", 40)
    data = demo.generate(customers=150, seed=11)
    source_url = f"duckdb:///{tmp_path / 'source.duckdb'}"
    demo.write_source(data, source_url)
    with open_engine(source_url) as source, open_engine(warehouse_url) as warehouse:
        migrate(warehouse)
        extract(source, warehouse, datetime(2024, 7, 1), KEY, batch=datetime(2024, 7, 1, 1))
        pass_batch(warehouse, datetime(2024, 7, 1, 1))
        before = _raw_counts(warehouse_url)
        with source.begin() as conn:  # the window's last order in the source's own order: the last chunk read
            conn.execute(sa.text("UPDATE orders SET amount = 1e17 WHERE rowid = (SELECT MAX(rowid) FROM orders "
                                 "WHERE order_ts < '2025-01-01' AND order_ts >= '2024-06-28')"))
        with pytest.raises(SourceDataError, match=r"^source table orders, column amount: 1 row\(s\) hold an amount "
                                                  r"that is infinite or too large"):
            extract(source, warehouse, datetime(2025, 1, 1), KEY, batch=datetime(2025, 1, 1, 1))
        with warehouse.connect() as conn:
            assert str(ledger.watermark(conn, "orders")).startswith("2024-07-01")
    assert _raw_counts(warehouse_url)["orders"] == before["orders"]
    assert _expected_counts(data, date(2025, 1, 1))["orders"] - before["orders"] > 3 * 40  # several chunks
