"""The quarterly review's evaluation tables: checked against pandas, backfill equals one-by-one,
and backtests (on the graded warehouse of tests/conftest.py)."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from grading.frames import read_frame
from grading.keys import pseudonym
from grading.pipeline import prepare_warehouse
from grading.review.quarters import Quarter
from grading.review.tables import EVALUATIONS, build_review
from grading.rules.pins import load_rules
from grading.settings import include_dir, pseudonym_key
from grading.warehouse import open_engine
from tests.helpers import normalised

QUARTERS = [Quarter(2024, n) for n in (1, 2, 3, 4)]


def review_tables(url: str) -> dict[str, pd.DataFrame]:
    with open_engine(url) as engine, engine.connect() as conn:
        return {name: normalised(read_frame(conn, f"SELECT * FROM marts.review_{name}"))  # noqa: S608
                for name in [*EVALUATIONS, "drift", "uplift", "scheme"]}


def test_review_figures_match_pandas(reviewed_warehouse) -> None:
    data, url, _ = reviewed_warehouse
    keys = {pseudonym(c, pseudonym_key()): c for c in data.customers["customer_id"]}
    with open_engine(url) as engine, engine.connect() as conn:
        tiers = read_frame(conn, "SELECT as_of_date, customer_key, tier FROM marts.customer_tier_snapshot")
        features = read_frame(conn, "SELECT as_of_date, customer_key, orders_365d "
                                    "FROM marts.customer_features_snapshot")
        winback = read_frame(conn, "SELECT as_of_date, customer_key, churn_reason FROM marts.winback_candidates")
        review = {n: read_frame(conn, f"SELECT * FROM marts.review_{n} WHERE quarter = '2024Q4'")  # noqa: S608
                  for n in ("tier_distribution", "retention", "winback", "tier_migration")}
    for frame in (tiers, features, winback):
        frame["customer_id"] = frame["customer_key"].map(keys)
        frame["as_of_date"] = pd.to_datetime(frame["as_of_date"]).dt.date
    q4 = Quarter(2024, 4)
    orders = data.orders[(data.orders["status"] == "completed") & (data.orders["order_ts"] >= str(q4.start))
                         & (data.orders["order_ts"] < str(q4.end))]
    buyers = set(orders["customer_id"])

    now = tiers[tiers["as_of_date"] == date(2025, 1, 1)].set_index("customer_id")["tier"]
    revenue = orders.groupby("customer_id")["amount"].sum().reindex(now.index, fill_value=0).groupby(now).sum()
    dist = review["tier_distribution"].set_index("tier")
    assert dist["customers"].to_dict() == now.value_counts().to_dict()
    assert dist["revenue"].to_dict() == pytest.approx(revenue.to_dict(), abs=0.01)

    before = tiers[tiers["as_of_date"] == date(2024, 10, 1)].merge(
        features[features["as_of_date"] == date(2024, 10, 1)], on=["customer_id", "as_of_date", "customer_key"])
    active = before[before["orders_365d"] > 0]
    retained = active.assign(kept=active["customer_id"].isin(buyers)).groupby("tier")["kept"].agg(["size", "sum"])
    got = review["retention"].set_index("tier")
    assert got["active_customers"].to_dict() == retained["size"].to_dict()
    assert got["retained"].to_dict() == retained["sum"].to_dict()

    listed = winback[winback["as_of_date"] == date(2024, 10, 1)]
    returned = listed.assign(back=listed["customer_id"].isin(buyers)).groupby("churn_reason")["back"].agg(
        ["size", "sum"])
    got = review["winback"].set_index("churn_reason")
    assert got["candidates"].to_dict() == returned["size"].to_dict()
    assert got["returned"].to_dict() == returned["sum"].to_dict()

    moved = review["tier_migration"]
    assert moved["customers"].sum() == len(now)
    assert set(moved["movement"]) <= {"new", "upgrade", "downgrade", "same"}


def test_backfilling_four_quarters_equals_reviewing_them_one_by_one(reviewed_warehouse) -> None:
    _, url, tmp = reviewed_warehouse
    one_by_one = review_tables(url)
    with open_engine(url) as engine:
        prepare_warehouse(engine)
        for quarter in QUARTERS:
            build_review(engine, quarter)
    backfilled = review_tables(url)
    assert set(one_by_one["tier_distribution"]["quarter"]) == {str(q) for q in QUARTERS}
    for name, frame in one_by_one.items():
        assert backfilled[name].equals(frame), name


def test_backtest_compares_rules_without_publishing(reviewed_warehouse) -> None:
    from grading import backtest

    _, url, _ = reviewed_warehouse
    current, _ = load_rules()
    proposed, _ = load_rules(tier_file=include_dir() / "rules" / "examples" / "tiers_rfm_by_region.yaml",
                             proposal=True)
    with open_engine(url) as engine:
        before = review_tables(url)
        result = backtest.backtest(engine, date(2025, 1, 1), current, proposed)
        same = backtest.backtest(engine, date(2025, 1, 1), current, current)
    summary = result["summary"].set_index("tier")
    assert summary["customers_current"].sum() == summary["customers_proposed"].sum() == 800
    assert result["moves"]["customers"].sum() == len(result["movers"]) > 0
    assert result["movers"]["customer_key"].str.fullmatch(r"[0-9a-f]{32}").all()
    assert same["moves"].empty
    assert (same["summary"]["customers_current"] == same["summary"]["customers_proposed"]).all()
    assert all(review_tables(url)[n].equals(before[n]) for n in before)
