"""Band thresholds proposed for a target distribution: exact on values whose answer is known,
by customers and by revenue, rounded for people, refused when the data cannot make the tiers."""

from __future__ import annotations

import pandas as pd
import pytest

from grading import calibrate
from grading.calibrate import Target

TIERS = ["normal", "gold", "platinum"]


def test_by_customers_the_thresholds_make_exactly_the_target_shares() -> None:
    values = pd.Series(range(1, 1001), dtype=float)  # 1..1000: the top 5 % are 951..1000
    thresholds = calibrate.propose_thresholds(values, Target.parse("80/15/5", TIERS), rounded=False)
    assert thresholds == [801.0, 951.0]
    table = calibrate.distribution(values, thresholds, TIERS)
    assert table["customers"].tolist() == [800, 150, 50]
    assert table["customer_share"].round(3).tolist() == [0.8, 0.15, 0.05]
    assert table["from_value"].tolist() == [0.0, 801.0, 951.0]


def test_by_revenue_the_top_tiers_hold_their_share_of_revenue() -> None:
    """Ten customers of 1,000 and ninety of 10: the ten bring 10,000 of 10,900 (92 %)."""
    values = pd.Series([1000.0] * 10 + [10.0] * 90)
    thresholds = calibrate.propose_thresholds(values, Target.parse("8/2/90", TIERS, by="revenue"), rounded=False)
    table = calibrate.distribution(values, thresholds, TIERS).set_index("tier")
    assert table.loc["platinum", "customers"] == 10  # the fewest customers reaching 90 % of revenue
    assert table.loc["platinum", "revenue_share"] == pytest.approx(10000 / 10900)
    assert table["customers"].sum() == 100
    assert list(table["lowest"].dropna()) == sorted(table["lowest"].dropna())  # no higher tier starts lower


def test_thresholds_are_rounded_to_two_significant_figures_and_the_table_shows_what_that_makes() -> None:
    assert [calibrate.round_figure(v) for v in (12345, 951, 0.0456, 50275)] == [12000, 950, 0.046, 50000]
    values = pd.Series(range(1, 1001), dtype=float)
    thresholds = calibrate.propose_thresholds(values, Target.parse("80/15/5", TIERS))
    assert thresholds == [800.0, 950.0]
    assert calibrate.distribution(values, thresholds, TIERS)["customers"].tolist() == [799, 150, 51]


@pytest.mark.parametrize(("shares", "message"), [
    ("80/20", "2 share\\(s\\) given for 3 tiers"),
    ("80/15/15", "adding up to 100"),
    ("80/x/5", "numbers separated by '/'"),
    ("90/10/0", "positive percentages"),
])
def test_a_target_that_cannot_be_met_is_refused_with_the_reason(shares: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Target.parse(shares, TIERS)


def test_values_too_tied_to_make_the_tiers_are_refused() -> None:
    with pytest.raises(ValueError, match="too few or too tied to make 3 tiers"):
        calibrate.propose_thresholds(pd.Series([5.0] * 100), Target.parse("80/15/5", TIERS))


def test_the_candidate_keeps_the_policy_and_replaces_the_bands() -> None:
    current = {"kind": "tiers", "version": "1.2.0", "effective_date": "2010-01-01", "owner": "ops",
               "tiers": TIERS, "rules": [], "default": {"name": "x", "tier": "normal"},
               "damping": {"downgrade_after_periods": 2}, "qualification": {"window": "rolling", "days": 365}}
    doc = calibrate.candidate_document(current, [800.0, 950.0], "monetary_window", "1.2.0-c", "why")
    assert [(r["tier"], r["when"]["all"][0]["value"]) for r in doc["rules"]] == [("platinum", 950.0), ("gold", 800.0)]
    assert doc["damping"] == current["damping"]
    assert doc["qualification"] == current["qualification"]
    assert doc["default"] == {"name": "below_gold_band", "tier": "normal"}
