"""Elimination, win-back and core lists by the shipped rules, on crafted customers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from grading.candidates import flag_candidates
from grading.rules.pins import load_rules

# A healthy, ordinary customer: on no list. Each case below changes only what it needs.
BASE = {
    "tenure_days": 400, "orders_365d": 10, "complaints_365d": 0, "recency_days": 10, "monetary_365d": 5000.0,
    "monetary_lifetime": 9000.0, "csat_mean_365d": 4.0, "tickets_365d": 1, "surveys_365d": 1, "open_tickets": 0,
    "refunds_365d": 0, "active_quarters_4": 2, "churn_propensity": 0.2, "tier": "normal", "tier_rank": 1,
    "tier_year_ago": "normal", "peak_tier_rank_recent": 1, "monetary_year_ago": 3000.0, "aov_change_year": 0.0,
    "is_protected": 0, "last_order_at": pd.Timestamp("2024-12-20"),
}


def graded(**customers: dict) -> pd.DataFrame:
    frame = pd.DataFrame([{"customer_id": cid, **BASE, **values} for cid, values in customers.items()])
    return frame.astype({"tier_year_ago": "string"})


def met_before(frame: pd.DataFrame) -> dict[str, pd.Series]:
    """As if every customer had met every list's criteria last period (elimination needs two in a row)."""
    return {name: pd.Series(1, index=frame["customer_id"]) for name in ("elimination", "win_back", "core")}


def lists_of(frame: pd.DataFrame) -> dict[str, dict[str, str]]:
    _, rules = load_rules()
    flags = flag_candidates(frame, rules, previous_met=met_before(frame))
    return {name: dict(zip(rows["customer_id"], rows["rule_name"], strict=True))
            for name, rows in flags.groupby("flag")}


def test_each_elimination_rule_and_exemption() -> None:
    frame = graded(
        healthy={},
        complainer={"orders_365d": 4, "complaints_365d": 3},
        five_orders={"orders_365d": 5, "complaints_365d": 3},           # not fewer than 5
        two_complaints={"orders_365d": 4, "complaints_365d": 2},        # not more than 2
        unhappy_small={"monetary_365d": 1500.0, "csat_mean_365d": 2.5},
        unhappy_but_big={"monetary_365d": 2000.0, "csat_mean_365d": 2.5},  # not under 2,000
        no_survey_small={"monetary_365d": 1500.0, "csat_mean_365d": np.nan},  # missing CSAT: not below 3
        dormant_silent={"recency_days": 400, "monetary_lifetime": 800.0, "tickets_365d": 0, "monetary_365d": 0.0,
                        "orders_365d": 0},
        dormant_but_talking={"recency_days": 400, "monetary_lifetime": 800.0, "tickets_365d": 2, "monetary_365d": 0.0,
                             "orders_365d": 0},                          # contact and no complaint: kept
        new_complainer={"orders_365d": 0, "complaints_365d": 7, "tenure_days": 89},
        complainer_waiting={"orders_365d": 0, "complaints_365d": 7, "open_tickets": 1},
        protected_complainer={"orders_365d": 0, "complaints_365d": 7, "is_protected": 1},
    )
    assert lists_of(frame)["elimination"] == {
        "complainer": "few_orders_many_complaints",
        "unhappy_small": "low_value_low_satisfaction",
        "dormant_silent": "dormant_low_value",
    }


def test_elimination_carries_action_severity_and_the_values_that_triggered() -> None:
    _, rules = load_rules()
    frame = graded(x={"orders_365d": 1, "complaints_365d": 4})
    flags = flag_candidates(frame, rules, previous_met=met_before(frame))
    row = flags[flags["flag"] == "elimination"].iloc[0]
    assert (row["action"], row["severity"]) == ("reduce_service_level", "high")
    assert row["reason"] == "few_orders_many_complaints: orders_365d=1 (< 5); complaints_365d=4 (> 2)"


def test_win_back_rules() -> None:
    frame = graded(
        lapsed_gold={"tier_year_ago": "gold", "recency_days": 180},
        lapsed_platinum={"tier_year_ago": "platinum", "recency_days": 400},
        recent_gold={"tier_year_ago": "gold", "recency_days": 179},
        lapsed_normal={"tier_year_ago": "normal", "recency_days": 300},
        not_a_customer_then={"tier_year_ago": None, "recency_days": 300},
        slipping_gold={"peak_tier_rank_recent": 2, "churn_propensity": 0.85},
        slipping_normal={"peak_tier_rank_recent": 1, "churn_propensity": 0.95},
    )
    assert lists_of(frame)["win_back"] == {"lapsed_gold": "lapsed_valuable", "lapsed_platinum": "lapsed_valuable",
                                           "slipping_gold": "likely_to_lapse"}


@pytest.mark.parametrize(("signals", "reason", "action"), [
    ({"complaints_365d": 2}, "service", "apologise_and_fix_service_issue"),
    ({"csat_mean_365d": 2.0}, "service", "apologise_and_fix_service_issue"),
    ({"refunds_365d": 1}, "product_or_price", "offer_price_or_product_alternative"),
    ({"aov_change_year": -0.25}, "product_or_price", "offer_price_or_product_alternative"),
    ({"tickets_365d": 0, "surveys_365d": 0}, "engagement", "re_engage_with_account_manager"),
    ({}, "unknown", "personal_call"),
    ({"complaints_365d": 1, "refunds_365d": 1}, "service", "apologise_and_fix_service_issue"),  # first wins
])
def test_churn_reason_and_suggested_action(signals: dict, reason: str, action: str) -> None:
    _, rules = load_rules()
    lapsed = {"tier_year_ago": "gold", "recency_days": 250, **signals}
    flags = flag_candidates(graded(x=lapsed), rules)
    row = flags[flags["flag"] == "win_back"].iloc[0]
    assert (row["churn_reason"], row["action"]) == (reason, action)


def test_win_back_priority_is_past_value_times_likelihood_of_return() -> None:
    _, rules = load_rules()
    frame = graded(a={"tier_year_ago": "gold", "recency_days": 250, "monetary_year_ago": 20000.0,
                      "churn_propensity": 0.75},
                   b={"tier_year_ago": "gold", "recency_days": 250, "monetary_year_ago": 20000.0,
                      "churn_propensity": np.nan})  # no model this run: an even chance
    flags = flag_candidates(frame, rules).set_index("customer_id")
    assert flags.loc["a", "priority"] == 5000.0
    assert flags.loc["b", "priority"] == 10000.0
    assert flags.loc["a", "previous_tier"] == "gold"
    assert flags.loc["a", "value_before"] == 20000.0


def test_core_customers() -> None:
    frame = graded(
        core={"tenure_days": 800, "active_quarters_4": 4, "csat_mean_365d": 4.5},
        too_new={"tenure_days": 700, "active_quarters_4": 4, "csat_mean_365d": 4.5},
        gap_quarter={"tenure_days": 800, "active_quarters_4": 3, "csat_mean_365d": 4.5},
        lukewarm={"tenure_days": 800, "active_quarters_4": 4, "csat_mean_365d": 3.9},
        complaining={"tenure_days": 800, "active_quarters_4": 4, "csat_mean_365d": 4.5, "complaints_365d": 2},
    )
    assert lists_of(frame)["core"] == {"core": "long_steady_satisfied"}


def test_the_protected_list_is_read_from_its_file(tmp_path) -> None:
    from grading.features import RULE_FEATURES
    from grading.rules.files import load_candidate_rules, rules_dir

    (tmp_path / "candidates.yaml").write_text((rules_dir() / "candidates.yaml").read_text())
    (tmp_path / "protected_customers.txt").write_text("# strategic\nC0000042\n\n C0000043 \n")
    rules = load_candidate_rules(tmp_path / "candidates.yaml", RULE_FEATURES)
    assert rules.protected_ids == {"C0000042", "C0000043"}


def test_elimination_waits_for_a_second_period() -> None:
    _, rules = load_rules()
    frame = graded(x={"orders_365d": 1, "complaints_365d": 4})
    first = flag_candidates(frame, rules)  # nothing met last period
    assert first.loc[first["customer_id"] == "x", "flag"].tolist()[0] == "elimination_pending"


def test_one_list_per_customer_in_the_order_of_precedence_and_the_exemption_recorded() -> None:
    """A lapsed gold customer who complained is won back (apologise and fix), not also eliminated."""
    frame = graded(lapsed_complainer={"tier_year_ago": "gold", "recency_days": 200, "orders_365d": 0,
                                      "complaints_365d": 3, "monetary_365d": 0.0})
    _, rules = load_rules()
    flags = flag_candidates(frame, rules, previous_met=met_before(frame), lowest_tier="normal")
    assert flags[["flag", "rule_name", "action", "exemption"]].astype(object).where(flags[[
        "flag", "rule_name", "action", "exemption"]].notna(), None).values.tolist() == [
        ["win_back", "lapsed_valuable", "apologise_and_fix_service_issue", None],
        ["elimination_exempt", "few_orders_many_complaints", "reduce_service_level", "listed_on_win_back"],
    ]
    assert flags["reason"].iloc[1].startswith("listed on win_back this period, which takes precedence; met "
                                              "few_orders_many_complaints: orders_365d=0 (< 5)")


def test_elimination_lists_the_lowest_tier_unless_a_rule_names_another() -> None:
    from dataclasses import replace

    frame = graded(gold_complainer={"tier": "gold", "tier_rank": 2, "orders_365d": 4, "complaints_365d": 3},
                   normal_complainer={"orders_365d": 4, "complaints_365d": 3},
                   new_complainer={"orders_365d": 4, "complaints_365d": 3, "tenure_days": 10})
    _, rules = load_rules()
    flags = flag_candidates(frame, rules, previous_met=met_before(frame), lowest_tier="normal").set_index(
        "customer_id")
    assert flags["flag"].to_dict() == {"normal_complainer": "elimination", "gold_complainer": "elimination_exempt",
                                       "new_complainer": "elimination_exempt"}
    assert flags.loc["gold_complainer", "exemption"] == "higher_tier"
    assert flags.loc["gold_complainer", "reason"].startswith("tier gold: no rule met lists that tier")
    assert flags.loc["new_complainer", "exemption"] == "new_customer"
    assert flags.loc["new_complainer", "reason"].startswith("new_customer: tenure_days=10 (< 90); met few_orders")
    # a rule that names gold lists gold customers
    first = replace(rules.elimination.rules[0], tiers=("normal", "gold"))
    explicit = replace(rules, elimination=replace(rules.elimination, rules=(first, *rules.elimination.rules[1:])))
    flags = flag_candidates(frame, explicit, previous_met=met_before(frame), lowest_tier="normal")
    assert set(flags.loc[flags["flag"] == "elimination", "customer_id"]) == {"normal_complainer", "gold_complainer"}


def test_a_control_group_sized_by_power_holds_out_what_the_effect_needs_or_none_with_a_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    import logging
    from dataclasses import replace

    from grading.candidates import control_share
    from grading.power import control_needed
    from grading.rules.model import CandidateList

    powered = CandidateList(rules=(), exemptions=(), control_effect=0.05, control_expected_rate=0.2,
                            control_max_share=0.5)
    assert control_share(powered, "win_back", 20_000) == control_needed(20_000, 0.2, 0.05) / 20_000
    assert 0.02 < control_share(powered, "win_back", 20_000) < 0.03  # about 516 of 20,000
    with caplog.at_level(logging.WARNING, logger="grading.candidates"):
        assert control_share(powered, "win_back", 800) == 0.0
    assert "win_back: 800 customers cannot hold a control group that detects an uplift of 5 points" in caplog.text
    # a list that could, but only by holding out more than max_share of it, holds none either
    assert control_share(replace(powered, control_max_share=0.1), "win_back", 5_000) == 0.0
    assert control_share(CandidateList(rules=(), exemptions=(), control_share=0.1), "win_back", 5) == 0.1


def test_the_lists_drawn_from_the_columns_their_rules_read_are_the_lists_drawn_from_every_feature(
        reviewed_warehouse) -> None:
    """candidates.flag loads features_read(rules), not the whole snapshot (35 columns at a million
    customers): over a graded period of the demo warehouse both give the same rows, and the
    columns read are fewer."""
    from grading.candidates import (
        YEAR,
        YEAR_AGO_COLUMNS,
        features_read,
        peak_tier_rank_recent,
        periods_met_before,
        with_history,
    )
    from grading.features import FEATURE_COLUMNS, load_features
    from grading.frames import read_frame
    from grading.tiers import tiers_as_of
    from grading.warehouse import open_engine

    _, url, _ = reviewed_warehouse
    tier_rules, rules = load_rules()
    assert len(features_read(rules)) < len(FEATURE_COLUMNS) - 10
    with open_engine(url) as engine, engine.connect() as conn:
        as_of = conn.exec_driver_sql("SELECT MAX(as_of_date) FROM staging.customer_features").scalar_one()
        current = read_frame(conn, "SELECT customer_id, tier, tier_rank FROM staging.customer_tiers "
                                   "WHERE as_of_date = :as_of", {"as_of": as_of})
        year_ago = tiers_as_of(conn, as_of - YEAR, tier_rules, YEAR_AGO_COLUMNS)
        drawn = []
        for columns in (None, features_read(rules)):
            graded = with_history(load_features(conn, as_of, columns), current, year_ago, year_ago,
                                  peak_tier_rank_recent(conn, as_of), rules.protected_ids)
            drawn.append(flag_candidates(graded, rules, as_of, periods_met_before(conn, as_of), tier_rules.tiers[0]))
    assert set(drawn[0]["flag"]) >= {"core", "win_back"}
    pd.testing.assert_frame_equal(drawn[1], drawn[0])
