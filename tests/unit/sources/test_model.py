"""The source mapping as checked data (grading.sources.model): what an expression reads and how
messages name it, which columns a feed reads from its own file, and which files a mapping reads."""

from __future__ import annotations

from pathlib import Path

from grading.contract import SOURCE_TABLES
from grading.sources import load_mapping
from grading.sources.model import Expr, ReadOptions
from tests.helpers import LINES_MAPPING, mapping_file


def test_an_expression_names_its_columns_and_describes_itself() -> None:
    expr = Expr("coalesce", args=(
        Expr("multiply", args=(Expr("column", column="Qty"), Expr("column", column="Price"))),
        Expr("value", value=0),
        Expr("column", column="Qty"),
    ))
    assert expr.columns() == {"Qty", "Price"}
    assert expr.describe() == "coalesce(multiply('Qty', 'Price'), value 0, 'Qty')"
    assert Expr("value", value="x").columns() == set()


def test_a_feed_reads_its_own_columns_and_takes_the_rest_from_its_joins(tmp_path: Path) -> None:
    mapping = load_mapping(mapping_file(tmp_path, """
    tables:
      orders:
        from: orders.csv
        where: [{column: state, op: "!=", value: test}]
        join:
          - {from: people.csv, on: {left: buyer, right: id}, take: [person]}
          - {from: payments.csv, on: order_id, sum: [paid]}
        columns:
          order_id: order_id
          customer_id: person
          order_ts: bought
          status: {value: completed}
          amount: {coalesce: [paid, total]}
    """))
    (feed,) = mapping.feeds["orders"]
    assert feed.spec is SOURCE_TABLES["orders"]
    assert feed.referenced() == {"order_id", "person", "bought", "paid", "total", "state", "buyer"}
    assert feed.main_columns() == {"order_id", "bought", "total", "state", "buyer"}  # person and paid: joined
    options = ReadOptions()
    assert mapping.sources() == {
        ("orders.csv", options): {"order_id", "bought", "total", "state", "buyer"},
        ("people.csv", options): {"id", "person"},
        ("payments.csv", options): {"order_id", "paid"},
    }


def test_tables_fed_by_one_file_share_one_read_of_every_column_they_need(tmp_path: Path) -> None:
    """Orders and the customers derived from the same order lines read lines.csv once (grading.sources.mapped)."""
    mapping = load_mapping(mapping_file(tmp_path, LINES_MAPPING))
    assert set(mapping.feeds) == {"customers", "orders"}
    assert mapping.sources() == {
        ("lines.csv", ReadOptions()): {"Order", "Client", "Day", "State", "Qty", "Price", "Profit", "Area"}}
