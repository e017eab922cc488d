"""Elimination and win-back flags by the shipped rules, on crafted customers."""

from __future__ import annotations

import pandas as pd

from grading.candidates import flag_candidates
from grading.pipeline import load_rules

BASE = {"tenure_days": 400, "orders_365d": 10, "complaints_365d": 0, "recency_days": 10,
        "tier_year_ago": "normal", "tier": "normal"}


def graded(**customers: dict) -> pd.DataFrame:
    rows = [{"customer_id": cid, **BASE, **values} for cid, values in customers.items()]
    frame = pd.DataFrame(rows)
    frame["tier_year_ago"] = frame["tier_year_ago"].astype("string")
    return frame


def flags_of(frame: pd.DataFrame) -> dict[str, set[str]]:
    _, rules = load_rules()
    flags = flag_candidates(frame, rules)
    return {name: set(flags.loc[flags["flag"] == name, "customer_id"]) for name in ("elimination", "win_back")}


def test_elimination_needs_few_orders_and_many_complaints() -> None:
    frame = graded(
        flagged={"orders_365d": 4, "complaints_365d": 3},
        five_orders={"orders_365d": 5, "complaints_365d": 3},        # not fewer than 5
        two_complaints={"orders_365d": 4, "complaints_365d": 2},     # not more than 2
        no_orders={"orders_365d": 0, "complaints_365d": 7},
        new_customer={"orders_365d": 0, "complaints_365d": 7, "tenure_days": 89},  # exempt
        just_not_new={"orders_365d": 0, "complaints_365d": 7, "tenure_days": 90},
    )
    assert flags_of(frame)["elimination"] == {"flagged", "no_orders", "just_not_new"}


def test_win_back_needs_a_valuable_past_and_180_quiet_days() -> None:
    frame = graded(
        lapsed_gold={"tier_year_ago": "gold", "recency_days": 180},
        lapsed_platinum={"tier_year_ago": "platinum", "recency_days": 400},
        recent_gold={"tier_year_ago": "gold", "recency_days": 179},
        lapsed_normal={"tier_year_ago": "normal", "recency_days": 300},
        not_a_customer_then={"tier_year_ago": None, "recency_days": 300},
        never_ordered={"tier_year_ago": "gold", "recency_days": None},
    )
    assert flags_of(frame)["win_back"] == {"lapsed_gold", "lapsed_platinum"}


def test_each_flag_carries_reason_action_and_version() -> None:
    _, rules = load_rules()
    flags = flag_candidates(graded(x={"orders_365d": 1, "complaints_365d": 4, "tier_year_ago": "gold",
                                      "recency_days": 200}), rules).set_index("flag")
    assert flags.loc["elimination", "reason"] == (
        "few_orders_many_complaints: orders_365d=1 (< 5); complaints_365d=4 (> 2)")
    assert flags.loc["elimination", "action"] == "reduce_service_level"
    assert flags.loc["win_back", "previous_tier"] == "gold"
    assert flags.loc["win_back", "reason"] == (
        "lapsed_valuable: tier_year_ago=gold (in [gold, platinum]); recency_days=200 (>= 180)")
    assert set(flags["rule_version"]) == {"1.0.0"}
