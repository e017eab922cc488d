"""The backtest (grading.backtest): the tier rules in force and a proposed file applied to the same
customers - per-tier customers and revenue, and who would move where - with the proposed file's own
qualification window, on a DuckDB warehouse that it leaves as it found it."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from grading.backtest import backtest, compare, latest_graded
from grading.rules.model import TierRules
from grading.rules.pins import load_rules
from grading.settings import include_dir
from grading.warehouse import open_engine
from tests.helpers import fingerprint, load_raw, scalar

AS_OF = date(2025, 1, 1)


def proposed_rules(tmp_path: Path, days: int = 365) -> TierRules:
    """The shipped tier file with gold from 5,000 instead of 10,000 (and a ``days`` rolling window)."""
    text = (include_dir() / "rules" / "tiers.yaml").read_text(encoding="utf-8")
    for old, new in (('version: "1.2.0"', 'version: "2.0.0"'), ("value: 10000}", "value: 5000}"),
                     ("days: 365", f"days: {days}")):
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "tiers_proposed.yaml"
    path.write_text(text, encoding="utf-8")
    return load_rules(tier_file=path, proposal=True)[0]


def test_compare_counts_customers_and_revenue_per_tier_under_both_files(tmp_path: Path) -> None:
    current, proposed = load_rules()[0], proposed_rules(tmp_path)
    spend = [0.0, 7_000.0, 12_000.0, 60_000.0]
    features = pd.DataFrame({"customer_id": list("abcd"), "monetary_365d": spend, "monetary_window": spend})

    result = compare(features, current, proposed)

    assert result["summary"].to_dict("records") == [
        {"tier": "normal", "customers_current": 2, "customers_proposed": 1, "revenue_current": 7000.0,
         "revenue_proposed": 0.0},
        {"tier": "gold", "customers_current": 1, "customers_proposed": 2, "revenue_current": 12000.0,
         "revenue_proposed": 19000.0},
        {"tier": "platinum", "customers_current": 1, "customers_proposed": 1, "revenue_current": 60000.0,
         "revenue_proposed": 60000.0},
    ]
    assert result["moves"].to_dict("records") == [{"current_tier": "normal", "proposed_tier": "gold",
                                                   "customers": 1}]
    assert result["movers"]["customer_id"].tolist() == ["b"]
    # the same file on both sides moves nobody
    assert compare(features, current, current)["moves"].empty


def test_compare_gives_the_proposed_rules_their_own_window(tmp_path: Path) -> None:
    current, proposed = load_rules()[0], proposed_rules(tmp_path)
    features = pd.DataFrame({"customer_id": ["a", "b"], "monetary_365d": [20_000.0, 3_000.0],
                             "monetary_window": [20_000.0, 3_000.0], "orders_window": [2, 1],
                             "window_start": pd.to_datetime(["2024-01-01"] * 2)})
    window = pd.DataFrame({"customer_id": ["b", "a"], "monetary_window": [6_000.0, 0.0], "orders_window": [1, 0],
                           "window_start": pd.to_datetime(["2024-10-01"] * 2)})  # in another order than features
    moved = compare(features, current, proposed, window)["movers"].set_index("customer_id")
    assert moved[["current_tier", "proposed_tier"]].to_dict("index") == {
        "a": {"current_tier": "gold", "proposed_tier": "normal"},
        "b": {"current_tier": "normal", "proposed_tier": "gold"}}


def test_a_backtest_on_an_ungraded_date_computes_features_and_writes_nothing(tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    created = pd.to_datetime(["2023-01-01"] * 4)
    load_raw(url,
             customers=pd.DataFrame({"customer_id": list("abcd"), "created_at": created, "region": "West",
                                     "industry": "retail", "channel": "web"}),
             orders=pd.DataFrame({"order_id": ["o1", "o2", "o3"], "customer_id": ["a", "b", "c"],
                                  "order_ts": pd.to_datetime(["2024-12-01", "2024-06-01", "2024-12-15"]),
                                  "status": "completed", "amount": [7_000.0, 20_000.0, 60_000.0],
                                  "margin": 1.0}))
    with open_engine(url) as engine:
        with engine.begin() as conn:
            for customer in "abcd":
                conn.execute(sa.text("INSERT INTO ops.customer_keys VALUES (:c, :k)"), {"c": customer,
                                                                                        "k": f"key-{customer}"})
        with pytest.raises(LookupError, match="nothing graded yet"):
            latest_graded(engine)
        before = fingerprint(url)
        # over the last 90 days only: b's June order no longer counts, a's December one makes gold
        result = backtest(engine, AS_OF, load_rules()[0], proposed_rules(tmp_path, days=90))
    assert result["movers"].sort_values("customer_key").to_dict("records") == [
        {"customer_key": "key-a", "current_tier": "normal", "proposed_tier": "gold", "monetary_365d": 7000.0},
        {"customer_key": "key-b", "current_tier": "gold", "proposed_tier": "normal", "monetary_365d": 20000.0}]
    meta = result["meta"].iloc[0]
    assert (meta["current_version"], meta["proposed_version"], meta["customers"], meta["movers"]) == \
        ("1.2.0", "2.0.0", 4, 2)
    assert fingerprint(url) == before
    assert scalar(url, "SELECT COUNT(*) FROM staging.customer_features") == 0
