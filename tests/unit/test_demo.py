"""The demo generator: reproducible, and it plants the patterns grading must find; what already
holds a source where it would write (which `generate` leaves alone without --force); rewriting one."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from grading import demo


def test_same_seed_same_data_other_seed_other_data() -> None:
    a, b, c = demo.generate(300, seed=1), demo.generate(300, seed=1), demo.generate(300, seed=2)
    for name in a.tables():
        pd.testing.assert_frame_equal(a.tables()[name], b.tables()[name])
    assert not a.orders.equals(c.orders)


def test_planted_patterns() -> None:
    data = demo.generate(3000, seed=42)
    orders, tickets = data.orders, data.tickets
    assert set(orders["status"]) == {"completed", "cancelled", "refunded"}
    assert orders["order_id"].is_unique
    assert tickets["ticket_id"].is_unique
    assert set(orders["customer_id"]) <= set(data.customers["customer_id"])
    # Heavy tail: the top 10% of customers bring well over a third of revenue.
    revenue = orders[orders["status"] == "completed"].groupby("customer_id")["amount"].sum().sort_values()
    assert revenue.tail(len(revenue) // 10).sum() / revenue.sum() > 0.35
    # Some customers stopped buying: repeat buyers silent for the last 180 days of history.
    last = orders.groupby("customer_id")["order_ts"].agg(["max", "size"])
    assert ((last["size"] >= 3) & (last["max"] < pd.Timestamp("2024-07-04"))).mean() > 0.05
    # Seasonality: Q4 has more orders per day than Q1.
    month = orders["order_ts"].dt.month
    assert (month >= 10).sum() / 92 > (month <= 3).sum() / 90
    # Surveys stay on their scales; some tickets are still open.
    assert data.surveys["csat"].between(1, 5).all()
    assert data.surveys["nps"].between(0, 10).all()
    assert tickets["closed_at"].isna().any()
    assert (tickets["category"] == "complaint").mean() < 0.5


def test_an_existing_source_is_a_file_that_exists_or_a_database_with_the_demo_tables(tmp_path: Path,
                                                                                     pg_url: str) -> None:
    for url in (f"sqlite:///{tmp_path / 'source.sqlite'}", f"duckdb:///{tmp_path / 'source.duckdb'}"):
        path = Path(sa.make_url(url).database)
        assert demo.existing_source(url) is None
        assert not path.exists()  # asking did not create it
        path.write_bytes(b"")
        assert demo.existing_source(url) == f"the file {path}"
    assert demo.existing_source("sqlite://") is None  # in memory: nothing to overwrite

    assert demo.existing_source(pg_url) is None
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE unrelated (x INT)"))
    assert demo.existing_source(pg_url) is None
    demo.write_source(demo.generate(30, seed=1), pg_url)
    assert demo.existing_source(pg_url) == "table(s) customers, orders, tickets, surveys, interactions, order_lines"
    engine.dispose()


def test_writing_a_source_again_replaces_its_tables(tmp_path: Path) -> None:
    """On DuckDB too, whose SQLAlchemy dialect cannot reflect a table for pandas' own replace."""
    url = f"duckdb:///{tmp_path / 'source.duckdb'}"
    assert demo.write_source(demo.generate(40, seed=1), url)["customers"] == 40
    assert demo.write_source(demo.generate(25, seed=2), url)["customers"] == 25
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM customers")).scalar() == 25
    engine.dispose()


def test_order_lines_add_up_to_their_orders_and_carry_the_planted_pairs() -> None:
    data = demo.generate(customers=300, seed=3)
    lines, orders = data.order_lines, data.orders.set_index("order_id")
    assert lines["line_id"].is_unique
    totals = lines.groupby("order_id")["amount"].sum().round(2)
    assert totals.reindex(orders.index).sub(orders["amount"]).abs().max() < 0.005
    assert (lines["amount"] >= 0).all()
    by_order = lines.groupby("order_id")["category"].agg(set)
    assert by_order.map({"paper", "pens"}.issubset).mean() > 0.2
    customer = orders["customer_id"]
    premium = by_order.map({"printers", "toner"}.issubset)
    spend = orders.groupby("customer_id")["amount"].mean()
    big = set(spend[spend >= spend.quantile(0.8)].index)
    of_big = customer.loc[premium.index].isin(big)
    assert premium[of_big].mean() > 3 * premium[~of_big].mean()
