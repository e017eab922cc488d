"""The rule model: how a condition (a leaf or an all/any group) is evaluated over the features
frame and stated in plain words, and the ranks a tier file gives its tiers."""

from __future__ import annotations

import pandas as pd
import pytest

from grading.rules.model import Condition
from grading.rules.pins import load_rules


def leaf(feature: str, op: str, value: object = None) -> Condition:
    return Condition(feature=feature, op=op, value=value)


# (big spender with few orders) or a northern customer: the shape of a nested rule
NESTED = Condition(combine="any", children=(
    Condition(combine="all", children=(leaf("monetary_365d", ">=", 10000), leaf("orders_365d", "<", 3))),
    leaf("region", "in", ("North",)),
))


def test_conditions_treat_missing_values_as_not_meeting_a_comparison() -> None:
    tier_rules, _ = load_rules()
    frame = pd.DataFrame({"customer_id": ["a", "b"], "monetary_window": [60000.0, float("nan")]})
    assert tier_rules.rules[0].when.evaluate(frame).tolist() == [True, False]


def test_all_needs_every_child_and_any_needs_one() -> None:
    frame = pd.DataFrame({
        "monetary_365d": [20000.0, 20000.0, 500.0, float("nan"), 500.0],
        "orders_365d": [1, 5, 1, 1, 1],
        "region": ["South", "South", "North", None, "South"],
    })
    assert NESTED.evaluate(frame).tolist() == [True, False, True, False, False]
    assert NESTED.children[0].evaluate(frame).tolist() == [True, False, False, False, False]


@pytest.mark.parametrize(("op", "value", "expected"), [
    ("not_in", ("North",), [False, True, False]),   # a missing region is not "outside the list"
    ("is_null", None, [False, False, True]),
    ("not_null", None, [True, True, False]),
    ("!=", "North", [False, True, False]),  # like SQL's <>: a missing region is not "other than North"
])
def test_membership_null_tests_and_not_equal_on_a_missing_value(op: str, value: object, expected: list[bool]) -> None:
    frame = pd.DataFrame({"region": ["North", "South", None]})
    assert leaf("region", op, value).evaluate(frame).tolist() == expected


def test_describe_states_the_condition_in_plain_words() -> None:
    assert NESTED.describe() == "(monetary_365d >= 10000 and orders_365d < 3) or region in [North]"
    assert leaf("last_order_at", "is_null").describe() == "last_order_at is missing"
    assert leaf("last_order_at", "not_null").describe() == "last_order_at is present"
    assert leaf("region", "not_in", ("North", "East")).describe() == "region not in [North, East]"
    assert [c.feature for c in NESTED.leaves()] == ["monetary_365d", "orders_365d", "region"]


def test_tiers_rank_from_the_lowest_and_candidate_lists_are_named() -> None:
    tiers, candidates = load_rules()
    assert [tiers.rank(t) for t in ("normal", "gold", "platinum")] == [1, 2, 3]
    with pytest.raises(ValueError, match="not in tuple"):
        tiers.rank("diamond")
    assert list(candidates.lists()) == ["core", "win_back", "elimination"]  # the file's precedence
    assert candidates.lists()["elimination"] is candidates.elimination


def test_a_candidate_file_names_the_features_of_its_rules_exemptions_and_churn_reasons() -> None:
    _, candidates = load_rules()
    named = candidates.named_features()
    leaves = {leaf.feature for rules in (candidates.churn_reasons, *(
        (*kept.rules, *kept.exemptions) for kept in candidates.lists().values())) for rule in rules
        for leaf in rule.when.leaves()}
    assert named == leaves
    assert {"complaints_365d", "tier_year_ago", "is_protected"} <= named  # a history column and a flag too
