"""Reading a mapped source (grading.sources.mapped) end to end: order lines grouped into orders and
customers derived from them, windows, joins and filters, file drops per period and SQL sources, into
both warehouses. (Checking a mapping file, converting values and reading files have their own tests.)"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from grading import demo
from grading.contract import SOURCE_TABLES
from grading.extract import extract
from grading.frames import read_frame
from grading.pipeline import Connections
from grading.settings import source_mapping
from grading.sources import MappedSource, SourceDataError, load_mapping, mappings_dir
from grading.warehouse import migrate, open_engine
from tests.helpers import LINES, LINES_MAPPING, mapping_file, scalar
from tests.helpers import MAPPING_CUTOFF as CUTOFF
from tests.helpers import read_mapped as read
from tests.helpers import write_source_file as write

KEY = b"test-key"


# ----------------------------------------------------------------------------------------
# The setting


def test_setting_names_a_shipped_mapping_or_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("GRADING_SOURCE_MAPPING", raising=False)
    assert source_mapping() is None
    assert Connections.resolve().source_mapping is None
    monkeypatch.setenv("GRADING_SOURCE_MAPPING", "superstore")
    assert source_mapping() == mappings_dir() / "superstore.yaml"
    monkeypatch.setenv("GRADING_SOURCE_MAPPING", str(tmp_path / "mine.yaml"))
    assert Connections.resolve().source_mapping == str(tmp_path / "mine.yaml")


# ----------------------------------------------------------------------------------------
# Order lines, derived customers, windows, joins and filters


def test_order_lines_become_orders_and_customers_are_derived(tmp_path: Path) -> None:
    write(tmp_path, "lines.csv", LINES)
    path = mapping_file(tmp_path, LINES_MAPPING)
    orders = read(path, "orders")
    assert orders.rejected == {"missing customer_id": 1}  # the line of A4 has no client
    got = orders.frame.set_index("order_id")
    assert list(got.index) == ["A1", "A2", "A3", "R1"]
    assert got.loc["A1", "customer_id"] == "c1"
    assert got.loc["A1", "order_ts"] == pd.Timestamp("2024-01-03")
    assert got.loc["A1", "amount"] == 2.12  # 2 x 1.0625 = 2.125 -> half to even
    assert got.loc["A1", "margin"] == -0.25  # negative margins kept
    assert got.loc["A2", "amount"] == 0.12
    assert got.loc["A3", "amount"] == 0.14
    assert (got.loc["R1", "status"], got.loc["R1", "amount"]) == ("refunded", 6.0)  # negative lines, positive refund
    assert pd.isna(got.loc["R1", "margin"])
    assert orders.frame.dtypes.astype(str).to_dict() == {
        "order_id": "string", "customer_id": "string", "order_ts": "datetime64[us]", "status": "string",
        "amount": "float64", "margin": "float64"}

    customers = read(path, "customers").frame.set_index("customer_id")
    assert customers["created_at"].to_dict() == {"c1": pd.Timestamp("2024-01-03"), "c2": pd.Timestamp("2024-01-04")}
    assert customers["region"].to_dict() == {"c1": "North", "c2": "East"}  # from the first line
    assert customers["industry"].isna().all()


def test_window_keeps_only_the_interval_and_counts_its_rejects(tmp_path: Path) -> None:
    write(tmp_path, "lines.csv", LINES)
    path = mapping_file(tmp_path, LINES_MAPPING)
    rows = read(path, "orders", start=datetime(2024, 2, 1), cutoff=datetime(2024, 2, 7))
    assert list(rows.frame["order_id"]) == ["A3", "R1"]
    assert rows.rejected == {}  # the line without a client is dated 7 February: outside [1 Feb, 7 Feb)
    customers = read(path, "customers", start=datetime(2024, 1, 4), cutoff=datetime(2024, 3, 1))
    assert list(customers.frame["customer_id"]) == ["c2"]  # c1 was first seen on 3 January


def test_expressions_joins_and_filters(tmp_path: Path) -> None:
    write(tmp_path, "orders.csv", """
    order_id,buyer,bought,promised,delivered,state
    o1,b1,2024-03-01 09:00:00,2024-03-05 00:00:00,2024-03-07 12:00:00,delivered
    o2,b2,2024-03-02 09:00:00,2024-03-06 00:00:00,2024-03-04 12:00:00,delivered
    o3,b1,2024-03-03 09:00:00,2024-03-08 00:00:00,,canceled
    """)
    write(tmp_path, "people.csv", "buyer,person\nb1,P1\nb2,P2\n")
    write(tmp_path, "payments.csv", "order_id,paid\no1,10.50\no1,4.50\no2,3.00\n")
    path = mapping_file(tmp_path, """
    tables:
      orders:
        from: orders.csv
        join:
          - {from: people.csv, on: buyer, take: [person]}
          - {from: payments.csv, on: order_id, sum: [paid]}
        columns:
          order_id: order_id
          customer_id: person
          order_ts: bought
          status: {column: state, map: {delivered: completed, canceled: cancelled}}
          amount: {coalesce: [paid, {multiply: [{value: 0}, {value: 1}]}]}
      tickets:
        from: orders.csv
        where: [{column: delivered, op: ">", other: promised, as: timestamp}]
        join: [{from: people.csv, on: buyer, take: [person]}]
        columns:
          ticket_id: {concat: [order_id, person], separator: "/"}
          customer_id: person
          opened_at: delivered
          category: {value: complaint}
    """)
    orders = read(path, "orders").frame.set_index("order_id")
    assert orders["customer_id"].to_dict() == {"o1": "P1", "o2": "P2", "o3": "P1"}
    assert orders["amount"].to_dict() == {"o1": 15.0, "o2": 3.0, "o3": 0.0}
    assert orders["status"].to_dict() == {"o1": "completed", "o2": "completed", "o3": "cancelled"}
    tickets = read(path, "tickets").frame
    assert tickets[["ticket_id", "customer_id"]].values.tolist() == [["o1/P1", "P1"]]


def test_an_ambiguous_lookup_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "o.csv", "id,buyer\no1,b1\n")
    write(tmp_path, "people.csv", "buyer,person\nb1,P1\nb1,P2\n")
    path = mapping_file(tmp_path, """
    tables:
      orders:
        from: o.csv
        join: [{from: people.csv, on: buyer, take: [person]}]
        columns: {order_id: id, customer_id: person, order_ts: {value: "2024-01-01"}, status: {value: completed},
                  amount: {value: 1}}
    """)
    # named by row, not by value: a join key may identify a person
    with pytest.raises(SourceDataError, match=r"people.csv: 2 rows share a value of 'buyer' \(the first: people.csv "
                                              r"row 1\)"):
        read(path, "orders")


# ----------------------------------------------------------------------------------------
# File drops per period, into the warehouse


def drop_periods(folder: Path) -> pd.DataFrame:
    """Monthly Parquet drops of order lines (two lines per order), Jan-Jun 2024, and the lines as one frame."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for month in range(1, 7):
        for n in range(1, 4):
            for part in (1, 2):
                lines.append({"invoice": f"{month}-{n}", "buyer": f"b{(month + n) % 4}", "qty": part,
                              "unit": 10.0 * month, "when": pd.Timestamp(2024, month, 2 * n, 10)})
    frame = pd.DataFrame(lines)
    for month, rows in frame.groupby(frame["when"].dt.month):
        rows.to_parquet(folder / f"sales_2024-{month:02d}.parquet", index=False)
    return frame


DROP_MAPPING = """
tables:
  customers:
    from: sales_{period:%Y-%m}.parquet
    group_by: customer_id
    columns: {customer_id: buyer, created_at: when}
  orders:
    from: sales_{period:%Y-%m}.parquet
    group_by: order_id
    columns: {order_id: invoice, customer_id: buyer, order_ts: when, status: {value: completed},
              amount: {multiply: [qty, unit]}}
"""


def test_file_drops_extract_per_interval_and_idempotently(tmp_path: Path, warehouse_url: str) -> None:
    lines = drop_periods(tmp_path / "drop")
    path = mapping_file(tmp_path, DROP_MAPPING, source="source: {type: files, location: drop, format: parquet}")
    mapping = load_mapping(path)
    orders = lines.groupby("invoice").agg(ts=("when", "min"), buyer=("buyer", "first"))
    first_seen = lines.groupby("buyer")["when"].min()
    with open_engine(warehouse_url) as warehouse:
        migrate(warehouse)
        # Forward, an earlier period again, forward again: raw always holds exactly what came before.
        mar, may, jul = datetime(2024, 3, 1), datetime(2024, 5, 1), datetime(2024, 7, 1)
        for cutoff, through in [(mar, mar), (may, may), (mar, may), (jul, jul)]:
            rows = extract(None, warehouse, cutoff, KEY, batch=datetime.now(), mapping=mapping)
            assert scalar(warehouse_url, "SELECT COUNT(*) FROM raw.orders") == int((orders["ts"] < through).sum())
            assert scalar(warehouse_url, "SELECT COUNT(*) FROM raw.customers") == int((first_seen < through).sum())
            assert rows["rejected"] == {}
    assert float(scalar(warehouse_url, "SELECT SUM(amount) FROM raw.orders")) == (lines["qty"] * lines["unit"]).sum()
    assert scalar(warehouse_url, "SELECT COUNT(DISTINCT customer_id) FROM raw.customers") == lines["buyer"].nunique()


def test_a_window_reads_only_the_files_of_its_period(tmp_path: Path) -> None:
    drop_periods(tmp_path / "drop")
    (tmp_path / "drop" / "sales_2024-01.parquet").write_bytes(b"not parquet")  # would fail if it were read
    path = mapping_file(tmp_path, DROP_MAPPING, source="source: {type: files, location: drop, format: parquet}")
    rows = read(path, "orders", datetime(2024, 4, 1), datetime(2024, 5, 1))
    assert sorted(rows.frame["order_id"]) == ["4-1", "4-2", "4-3"]
    with pytest.raises(SourceDataError, match="sales_2024-01.parquet"):
        read(path, "orders", None, datetime(2024, 5, 1))


def test_interactions_are_extracted_when_fed_and_empty_when_not(tmp_path: Path) -> None:
    write(tmp_path, "c.csv", "id,since,kind\nc1,2024-01-01,call\n")
    path = mapping_file(tmp_path, """
    tables:
      customers:
        from: c.csv
        columns: {customer_id: id, created_at: since}
      interactions:
        from: c.csv
        columns: {interaction_id: id, customer_id: id, ts: since, kind: kind}
    """)
    assert read(path, "interactions").frame["kind"].tolist() == ["call"]
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    with open_engine(url) as warehouse:
        migrate(warehouse)
        rows = extract(None, warehouse, CUTOFF, KEY, batch=datetime.now(), mapping=load_mapping(path))
        assert rows["interactions"] == 1
        assert rows["customers"] == 1
        unfed = mapping_file(tmp_path, """
        tables:
          customers:
            from: c.csv
            columns: {customer_id: id, created_at: since}
        """)
        again = extract(None, warehouse, CUTOFF, KEY, batch=datetime.now(), mapping=load_mapping(unfed))
        assert again["interactions"] == 0  # not fed: nothing extracted, and no error


# ----------------------------------------------------------------------------------------
# SQL sources


def test_sql_source_with_its_own_names_and_formats(tmp_path: Path, warehouse_url: str) -> None:
    source_url = f"sqlite:///{tmp_path / 'crm.sqlite'}"
    engine = sa.create_engine(source_url)
    with engine.begin() as conn:
        pd.DataFrame({"AccountNo": ["A-1", "A-2", "A-3"], "Opened": ["31.12.2023", "15.01.2024", "20.02.2024"],
                      "Branch": ["Nord", "Süd", "Nord"], "Email": ["x@y", "z@y", "q@y"]}) \
            .to_sql("Accounts", conn, index=False)
        pd.DataFrame({"Beleg": ["B1", "B2", "B3", "B4"], "Konto": ["A-1", "A-2", "A-1", "A-3"],
                      "Datum": ["2024-01-05 10:00:00", "2024-01-20 10:00:00", "2024-02-01 10:00:00",
                                "2024-03-01 10:00:00"],
                      "Art": ["RE", "RE", "GS", "RE"], "Betrag": ["1.234,50", "99,99", "10,00", "5,00"]}) \
            .to_sql("Belege", conn, index=False)
    engine.dispose()
    path = mapping_file(tmp_path, """
    tables:
      customers:
        from: Accounts
        columns: {customer_id: AccountNo, created_at: {column: Opened, format: "%d.%m.%Y"}, region: Branch}
      orders:
        from: Belege
        decimal: ","
        thousands: "."
        columns:
          order_id: Beleg
          customer_id: Konto
          order_ts: Datum
          status: {column: Art, map: {RE: completed, GS: refunded}}
          amount: Betrag
    """, source="source: {type: sql, timezone: Europe/Berlin}")
    mapping = load_mapping(path)
    with open_engine(source_url) as source, open_engine(warehouse_url) as warehouse:
        migrate(warehouse)
        extract(source, warehouse, datetime(2024, 2, 1), KEY, batch=datetime.now(), mapping=mapping)
        extract(source, warehouse, datetime(2024, 4, 1), KEY, batch=datetime.now(), mapping=mapping)
        with warehouse.connect() as conn:
            orders = read_frame(conn, "SELECT order_id, customer_id, order_ts, status, amount FROM raw.orders "
                                      "ORDER BY order_id")
            customers = read_frame(conn, "SELECT * FROM raw.customers ORDER BY customer_id")
    assert orders["order_id"].tolist() == ["B1", "B2", "B3", "B4"]
    assert [float(a) for a in orders["amount"]] == [1234.5, 99.99, 10.0, 5.0]
    assert orders["status"].tolist() == ["completed", "completed", "refunded", "completed"]
    assert pd.Timestamp(orders["order_ts"].iloc[0]) == pd.Timestamp("2024-01-05 09:00:00")  # Berlin winter time
    assert customers["customer_id"].tolist() == ["A-1", "A-2", "A-3"]
    assert pd.Timestamp(customers["created_at"].iloc[0]) == pd.Timestamp("2023-12-30 23:00:00")
    assert "Email" not in customers.columns
    assert "email" not in customers.columns


def test_sql_source_missing_column_is_named(tmp_path: Path) -> None:
    source_url = f"sqlite:///{tmp_path / 'crm.sqlite'}"
    engine = sa.create_engine(source_url)
    with engine.begin() as conn:
        pd.DataFrame({"id": ["1"], "opened": ["2024-01-01"]}).to_sql("accounts", conn, index=False)
    path = mapping_file(tmp_path, """
    tables:
      customers:
        from: accounts
        columns: {customer_id: id, created_at: Opened}
    """, source="source: {type: sql}")
    with pytest.raises(SourceDataError, match=r"table accounts: the mapping names column 'Opened' \(did you mean "
                                              r"'opened'\?\) \(mapping.yaml:8\)"):
        MappedSource(load_mapping(path), engine).read_table("customers", None, CUTOFF)
    engine.dispose()


def test_canonical_mapping_extracts_what_the_default_path_does(tmp_path: Path) -> None:
    """include/mappings/canonical.yaml over the demo source gives exactly the rows of the built-in path."""
    data = demo.generate(customers=120, seed=5)
    source_url = f"sqlite:///{tmp_path / 'source.sqlite'}"
    demo.write_source(data, source_url)
    mapping = load_mapping(mappings_dir() / "canonical.yaml")
    snapshots = []
    for name, use in (("default", None), ("mapped", mapping)):
        url = f"duckdb:///{tmp_path / f'{name}.duckdb'}"
        with open_engine(source_url) as source, open_engine(url) as warehouse:
            migrate(warehouse)
            for cutoff in (datetime(2024, 7, 1), datetime(2025, 1, 1)):
                extract(source, warehouse, cutoff, KEY, batch=datetime(2025, 1, 2), mapping=use)
            with warehouse.connect() as conn:
                snapshots.append({
                    t: read_frame(conn, f"SELECT * FROM raw.{t} ORDER BY {spec.key}")  # noqa: S608
                    for t, spec in SOURCE_TABLES.items()})
    for table in SOURCE_TABLES:
        pd.testing.assert_frame_equal(snapshots[0][table], snapshots[1][table], check_dtype=False)
        assert len(snapshots[0][table]) > 0


def test_has_rows_tells_a_mapped_table_with_data_from_one_without(tmp_path: Path) -> None:
    write(tmp_path, "lines.csv", LINES)
    source = MappedSource(load_mapping(mapping_file(tmp_path, LINES_MAPPING)))
    assert source.has_rows("orders")
    assert source.has_rows("customers")
    assert not source.has_rows("tickets")  # not in this export
