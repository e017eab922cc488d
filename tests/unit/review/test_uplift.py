"""Testing the scheme: uplift of treated candidates against the control group (rates, 95%
interval, verdict) by list and segment, and whether the tiers predict next quarter's revenue
(per-tier revenue and lift, monotonicity, normalised Gini)."""

from __future__ import annotations

import pandas as pd
import pytest

from grading.review.uplift import compare_groups, normalised_gini, scheme_checks, uplift_table


def test_scheme_checks_on_a_crafted_case() -> None:
    base = pd.DataFrame({"customer_key": list("abcdef"), "tier": ["normal"] * 3 + ["gold"] * 2 + ["platinum"],
                         "tier_rank": [1, 1, 1, 2, 2, 3], "revenue": [0.0, 10.0, 20.0, 50.0, 70.0, 300.0]})
    checks = scheme_checks(base, "2024Q4").set_index("tier")
    assert checks["revenue_per_customer"].to_dict() == {"normal": 10.0, "gold": 60.0, "platinum": 300.0}
    assert checks.loc["platinum", "lift"] == pytest.approx(300 / (450 / 6))
    assert checks["monotonic"].all()
    assert normalised_gini(base["revenue"], base["revenue"]) == pytest.approx(1.0)
    assert 0.8 < checks["gini"].iloc[0] < 1.0  # the tiers order customers almost as well as the revenue
    shuffled = base.assign(tier_rank=[3, 2, 2, 1, 1, 1])
    assert normalised_gini(shuffled["tier_rank"], shuffled["revenue"]) < 0
    assert not scheme_checks(base.assign(revenue=[90.0, 90.0, 90.0, 1.0, 1.0, 1.0]), "q")["monotonic"].any()


def test_a_significantly_lower_return_rate_and_a_missing_treated_group_are_said_plainly() -> None:
    lowered = compare_groups(100, 10, 100, 30)
    assert lowered["uplift"] == pytest.approx(-0.2)
    assert lowered["ci_high"] < 0
    assert lowered["verdict"] == "acting lowered the return rate (significant at 95%)"
    nobody = compare_groups(0, 0, 12, 3)
    assert nobody["verdict"] == "no treated customers"
    assert (nobody["treated_rate"], nobody["control_rate"], nobody["uplift"]) == (None, None, None)
    small = compare_groups(9, 9, 50, 0)  # a large difference, but 9 treated customers
    assert small["uplift"] == 1.0
    assert small["verdict"] == "too few customers to tell (fewer than 10 in a group)"


def test_uplift_is_reported_per_list_overall_by_reason_and_by_tier() -> None:
    rows = pd.DataFrame({
        "list": ["win_back"] * 4 + ["core"] * 2,
        "reason": ["service", "service", "engagement", "engagement", "nurture", "nurture"],
        "tier": ["gold", "normal", "gold", "gold", "platinum", "platinum"],
        "control_group": [False, True, False, True, False, False],
        "returned": [1, 0, 0, 1, 1, 0],
        "revenue": [10.0, 0.0, 0.0, 7.5, 3.0, 0.0],
    })
    table = uplift_table(rows, "2024Q4")
    assert table[["list", "segment_type", "segment"]].values.tolist() == [
        ["core", "all", "all"], ["core", "reason", "nurture"], ["core", "tier", "platinum"],
        ["win_back", "all", "all"], ["win_back", "reason", "engagement"], ["win_back", "reason", "service"],
        ["win_back", "tier", "gold"], ["win_back", "tier", "normal"]]
    assert (table["quarter"] == "2024Q4").all()
    by = table.set_index(["list", "segment_type", "segment"])
    assert by.loc[("win_back", "tier", "gold"), ["treated", "treated_returned", "control", "control_returned"]] \
        .tolist() == [2, 1, 1, 1]
    assert by.loc[("win_back", "all", "all"), "control_revenue"] == 7.5
    assert by.loc[("core", "all", "all"), "verdict"] == "no control group"
    assert pd.isna(by.loc[("core", "all", "all"), "uplift"])  # stored as a missing number, not text


def test_gini_and_lift_are_undefined_without_revenue() -> None:
    nothing = pd.DataFrame({"customer_key": ["a", "b", "c"], "tier": ["normal", "gold", "gold"],
                            "tier_rank": [1, 2, 2], "revenue": [0.0, 0.0, 0.0]})
    assert normalised_gini(nothing["tier_rank"], nothing["revenue"]) is None
    assert normalised_gini(pd.Series([1]), pd.Series([5.0])) is None  # one customer ranks nothing
    checks = scheme_checks(nothing, "2024Q4")
    assert checks["lift"].isna().all()
    assert checks["gini"].isna().all()
    assert not checks["monotonic"].any()  # flat revenue does not rise with the tier


def test_each_segment_says_whether_its_control_group_could_detect_the_target_effect() -> None:
    small = compare_groups(45, 10, 5, 1)
    assert small["control_needed"] is None
    assert small["sizing"] == "too small to hold a control group that could detect 5 points"
    big = compare_groups(9000, 1900, 1000, 180, target_effect=0.05)
    assert big["control_needed"] <= 1000
    assert big["sizing"].startswith("control group large enough to detect 5 points")
    assert big["min_detectable_effect"] < 0.05




def test_every_uplift_row_carries_its_mde_and_sizing() -> None:
    rows = pd.DataFrame({"list": ["win_back"] * 40, "reason": ["service"] * 40, "tier": ["gold"] * 40,
                         "control_group": [i % 4 == 0 for i in range(40)], "returned": [i % 3 == 0 for i in range(40)],
                         "revenue": [1.0] * 40})
    table = uplift_table(rows, "2024Q4", target_effect=0.10)
    assert table["min_detectable_effect"].notna().all()
    assert table["sizing"].str.contains("10 points").all()
