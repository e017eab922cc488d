"""The lost-customer register across consecutive periods: active -> lost -> won back."""

from __future__ import annotations

from datetime import date

import pandas as pd

from grading.extract import register_customer_keys
from grading.frames import read_frame
from grading.pipeline import Connections, churn_stage, features_stage, flags_stage, publish_stage, tiers_stage
from grading.warehouse import open_engine
from tests.helpers import load_raw, normalised

P1, P2, P3 = date(2024, 4, 1), date(2024, 7, 1), date(2024, 10, 1)


def _orders() -> pd.DataFrame:
    rows = []
    for customer in ("W", "V"):  # 1,500 a month from August 2022 to December 2023: gold a year before P2
        for month in pd.date_range("2022-08-01", "2023-12-01", freq="MS") + pd.Timedelta(days=14):
            rows.append((f"{customer}-{month:%Y%m}", customer, month, "completed", 1500.0, 300.0))
    # W comes back in August 2024 and orders again in September
    rows += [("W-back-1", "W", pd.Timestamp("2024-08-10 09:00"), "completed", 3000.0, 500.0),
             ("W-back-2", "W", pd.Timestamp("2024-09-10 09:00"), "completed", 1000.0, 200.0)]
    return pd.DataFrame(rows, columns=["order_id", "customer_id", "order_ts", "status", "amount", "margin"])


def _grade(conns: Connections, as_of: date) -> None:
    run_id = f"r-{as_of}"
    for stage in (features_stage, churn_stage, tiers_stage, flags_stage, publish_stage):
        stage(conns, as_of, run_id)


def _register(url: str) -> pd.DataFrame:
    with open_engine(url) as engine, engine.connect() as conn:
        frame = read_frame(conn, "SELECT k.customer_id, l.* FROM marts.lost_customers AS l "
                                 "JOIN ops.customer_keys AS k ON k.customer_key = l.customer_key")
    return frame.set_index("customer_id")


def test_register_follows_active_lost_won_back_and_survives_a_rerun(warehouse_url: str) -> None:
    orders = _orders()
    assert orders[orders["order_id"].str.match(r"[WV]-\d+$")]["order_ts"].max() == pd.Timestamp("2023-12-15")
    assert len(orders) == 2 * 17 + 2
    customers = pd.DataFrame({"customer_id": ["W", "V"], "created_at": pd.Timestamp("2022-01-01"),
                              "region": "North", "industry": "retail", "channel": "direct"})
    load_raw(warehouse_url, customers=customers, orders=orders)
    with open_engine(warehouse_url) as engine:
        register_customer_keys(engine, b"key")
    conns = Connections(source_url="sqlite://", warehouse_url=warehouse_url)

    _grade(conns, P1)  # 108 days since the last order: still active
    assert _register(warehouse_url).empty

    _grade(conns, P2)  # 199 days: both lost
    lost = _register(warehouse_url)
    assert set(lost.index) == {"W", "V"}
    assert set(lost["status"]) == {"lost"}
    assert pd.Timestamp(lost.loc["W", "lost_as_of"]).date() == P2
    assert lost.loc["W", "tier_before"] == "gold"
    assert lost.loc["W", "value_before"] == 16500.0
    assert lost.loc["W", "churn_reason"] == "engagement"  # no ticket, no survey in their last year
    assert lost.loc["W", "suggested_action"] == "re_engage_with_account_manager"

    _grade(conns, P3)  # W ordered in August and September: won back; V still lost
    after = _register(warehouse_url)
    assert after.loc["W", "status"] == "won_back"
    assert after.loc["V", "status"] == "lost"
    assert after.loc["W", "won_back_at"] == pd.Timestamp("2024-08-10 09:00")
    assert after.loc["W", "revenue_since_won_back"] == 4000.0
    assert str(pd.Timestamp(after.loc["V", "lost_as_of"]).date()) == "2024-07-01"  # one loss, first flagged in P2

    _grade(conns, P2)  # rerun the middle period: the register is rebuilt the same
    assert normalised(_register(warehouse_url).reset_index()).equals(normalised(after.reset_index()))
