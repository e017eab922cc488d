"""The demo generator: reproducible, and it plants the patterns grading must find."""

from __future__ import annotations

import pandas as pd

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
