"""Tier assignment by the shipped value bands, on hand-made features with the answers worked out."""

from __future__ import annotations

import pandas as pd

from grading.pipeline import load_rules
from grading.tiers import assign_tiers


def test_value_bands_at_their_edges() -> None:
    tier_rules, _ = load_rules()
    features = pd.DataFrame({
        "customer_id": ["zero", "just_under", "gold_floor", "gold_ceiling", "just_over", "whale"],
        "monetary_365d": [0.0, 9999.99, 10000.0, 50000.0, 50000.01, 1_000_000.0],
    })
    tiers = assign_tiers(features, tier_rules).set_index("customer_id")
    assert tiers["tier"].to_dict() == {
        "zero": "normal", "just_under": "normal", "gold_floor": "gold",
        "gold_ceiling": "gold", "just_over": "platinum", "whale": "platinum",
    }
    assert tiers["tier_rank"].to_dict() == {
        "zero": 1, "just_under": 1, "gold_floor": 2, "gold_ceiling": 2, "just_over": 3, "whale": 3,
    }
    assert tiers.loc["just_over", "tier_rule"] == "platinum_band"
    assert tiers.loc["just_over", "tier_reason"] == "platinum_band: monetary_365d=50000.01 (> 50000)"
    assert tiers.loc["zero", "tier_reason"] == "below_gold_band: no tier rule matched"
    assert set(tiers["rule_version"]) == {"1.0.0"}


def test_first_matching_rule_wins() -> None:
    """A platinum customer also meets the gold condition; the earlier rule decides."""
    tier_rules, _ = load_rules()
    tiers = assign_tiers(pd.DataFrame({"customer_id": ["p"], "monetary_365d": [75000.0]}), tier_rules)
    assert tiers["tier_rule"].tolist() == ["platinum_band"]
