"""Rule files: the shipped files load, and each kind of mistake names the file, line, rule and field."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from grading.features import RULE_FEATURES
from grading.rules.files import RuleError, load_candidate_rules, load_tier_rules
from grading.rules.pins import load_rules
from tests.helpers import ROOT

VALID_TIERS = """\
kind: tiers
version: "2.0"
effective_date: 2025-01-01
owner: ops
description: test
tiers: [normal, gold]
rules:
  - name: gold_band
    tier: gold
    when:
      all:
        - {feature: monetary_365d, op: ">=", value: 10000}
default: {name: rest, tier: normal}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    return path


def test_shipped_rule_files_load() -> None:
    tier_rules, candidate_rules = load_rules()
    assert tier_rules.tiers == ("normal", "gold", "platinum")
    assert [r.name for r in tier_rules.rules] == ["platinum_band", "gold_band"]
    assert [r.name for r in candidate_rules.elimination.rules] == [
        "few_orders_many_complaints", "low_value_low_satisfaction", "dormant_low_value"]
    assert [r.name for r in candidate_rules.churn_reasons] == ["service", "product_or_price", "engagement"]
    assert len(tier_rules.source.content_hash) == 64


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("{feature: monetary_365d, op: \">=\", value: 10000}", "{feature: revenue, op: \">=\", value: 10000}",
     r"rules\.yaml:12: rule 'gold_band': field 'feature': unknown feature 'revenue'"),
    ("op: \">=\"", "op: \"=>\"", r":12: rule 'gold_band': field 'op': unknown operator '=>'"),
    ("value: 10000", "value: [1, 2]", r":12: rule 'gold_band': field 'value': monetary_365d is a number, so the "
                                      r"value must be one, not \[1, 2\]"),
    ("    tier: gold\n", "    tier: diamond\n", r":8: rule 'gold_band': field 'tier': tier 'diamond' is not one of"),
    ("version: \"2.0\"\n", "", r":1: field 'version': is required"),
    ("kind: tiers", "kind: candidates", r"field 'kind': expected kind 'tiers'"),
    ("      all:\n", "      every:\n", r"rule 'gold_band': field 'when': unknown keys \['every'\]"),
    ("default: {name: rest, tier: normal}", "default: {name: rest, tier: bronze}",
     r"rule 'default': field 'tier': tier 'bronze' is not one of"),
    ("tiers: [normal, gold]", "tiers: [normal, normal]", r"field 'tiers': must list two or more distinct"),
    ("effective_date: 2025-01-01", "effective_date: soon", r"field 'effective_date': must be date"),
])
def test_each_mistake_points_at_file_line_rule_and_field(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert old in VALID_TIERS
    path = write(tmp_path, VALID_TIERS.replace(old, new))
    with pytest.raises(RuleError, match=expected) as info:
        load_tier_rules(path, RULE_FEATURES)
    assert str(path) in str(info.value)


def test_duplicate_rule_names_are_refused(tmp_path: Path) -> None:
    text = VALID_TIERS.replace("default:", """  - name: gold_band
    tier: gold
    when: {all: [{feature: orders_365d, op: ">", value: 10}]}
default:""")
    with pytest.raises(RuleError, match=r":13: rule 'gold_band': field 'name': duplicate rule name"):
        load_tier_rules(write(tmp_path, text), RULE_FEATURES)


def test_broken_yaml_reports_the_line(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match=r"rules\.yaml:\d+:\d+: not valid YAML"):
        load_tier_rules(write(tmp_path, VALID_TIERS.replace("tiers: [normal, gold]", "tiers: [normal, gold")),
                        RULE_FEATURES)


def test_python_in_a_value_is_data_not_code(tmp_path: Path) -> None:
    """A hostile value is data: refused on load as text where a number belongs, never executed."""
    text = VALID_TIERS.replace("value: 10000", "value: \"__import__('os').system('touch pwned')\"")
    with pytest.raises(RuleError, match=r"rules\.yaml:\d+: rule 'gold_band': field 'value': monetary_365d is a "
                                        r"number, so the value must be one, not \"__import__"):
        load_tier_rules(write(tmp_path, text), RULE_FEATURES)
    rules = load_tier_rules(write(tmp_path, VALID_TIERS), RULE_FEATURES)
    frame = pd.DataFrame({"customer_id": ["a"], "monetary_365d": [20000.0]})
    assert rules.rules[0].when.evaluate(frame).tolist() == [True]
    assert not (tmp_path / "pwned").exists()
    assert not Path("pwned").exists()


def test_candidate_rules_need_an_action(tmp_path: Path) -> None:
    text = """\
kind: candidates
version: 1
effective_date: 2025-01-01
owner: ops
description: test
elimination:
  rules:
    - name: rare_buyers
      when: {all: [{feature: orders_365d, op: "<", value: 5}]}
win_back: {rules: []}
"""
    with pytest.raises(RuleError, match=r":8: rule 'rare_buyers': field 'action': is required"):
        load_candidate_rules(write(tmp_path, text), RULE_FEATURES)


@pytest.mark.parametrize(("extra", "expected"), [
    ("strategy: magic\n", r"field 'strategy': unknown strategy 'magic'"),
    ("damping: {downgrade_after_periods: 0}\n", r"rule 'damping': field 'downgrade_after_periods': must be a whole"),
    ("damping: {max_steps_down: -1}\n", r"rule 'damping': field 'max_steps_down': must be a whole number"),
    ("qualification: {window: fiscal_year}\n", r"rule 'qualification': field 'window': unknown window 'fiscal_year'"),
    ("qualification: {window: calendar_year, days: 90}\n",
     r"rule 'qualification': field 'days': days applies to a rolling window only"),
    ("qualification: {window: rolling, days: 0}\n", r"rule 'qualification': field 'days': must be a whole number"),
    ("qualification: {review: monthly}\n", r"rule 'qualification': field 'review': unknown review 'monthly'"),
    ("qualification: {grace_days: -3}\n", r"rule 'qualification': field 'grace_days': must be a whole number"),
    ("qualification: {window: rolling, within: 3}\n", r"rule 'qualification': unknown keys \['within'\]"),
])
def test_strategy_and_damping_mistakes(tmp_path: Path, extra: str, expected: str) -> None:
    with pytest.raises(RuleError, match=expected):
        load_tier_rules(write(tmp_path, VALID_TIERS + extra), RULE_FEATURES)


def test_weighted_score_mistakes(tmp_path: Path) -> None:
    text = VALID_TIERS.replace("rules:", "strategy: weighted_score\nweights:\n  - {feature: monetary_365d, weight: 0}\n"
                                         "score_bands: {gold: 50}\nrules:")
    with pytest.raises(RuleError, match=r"rule 'weights': field 'weight': must be above 0"):
        load_tier_rules(write(tmp_path, text), RULE_FEATURES)
    text = VALID_TIERS.replace("rules:", "strategy: weighted_score\nweights:\n  - {feature: monetary_365d, weight: 1}\n"
                                         "score_bands: {diamond: 50}\nrules:")
    with pytest.raises(RuleError, match=r"rule 'score_bands': field 'diamond': tier 'diamond' is not one of"):
        load_tier_rules(write(tmp_path, text), RULE_FEATURES)


# --------------------------------------------------------------------------------------
# A rule file cannot silently mis-grade (issue 19)

@pytest.mark.parametrize(("value", "expected"), [
    ('"fifty"', r"field 'value': monetary_365d is a number, so the value must be one, not 'fifty'$"),
    ('"50000"', r"field 'value': monetary_365d is a number, so the value must be one, not '50000' \(a quoted number "
                r"is text: drop the quotes\)"),
    ('"1; DROP TABLE audit.run_audit"', r"field 'value': monetary_365d is a number, so the value must be one, not "
                                        r"'1; DROP TABLE audit.run_audit'"),
    ("1.0e+400", r"field 'value': the value must be a finite number, not inf"),
    (".nan", r"field 'value': the value must be a finite number, not nan"),
    ("true", r"field 'value': monetary_365d is a number, so the value must be one, not True"),
])
def test_a_comparison_value_must_be_of_the_feature_s_kind(tmp_path: Path, value: str, expected: str) -> None:
    with pytest.raises(RuleError, match=r"rules\.yaml:12: rule 'gold_band': " + expected):
        load_tier_rules(write(tmp_path, VALID_TIERS.replace("value: 10000", f"value: {value}")), RULE_FEATURES)


def test_an_exponent_without_a_dot_is_a_number(tmp_path: Path) -> None:
    """YAML 1.1 reads 5e4 as the text "5e4"; the rule loader reads it as the number its author wrote."""
    rules = load_tier_rules(write(tmp_path, VALID_TIERS.replace("value: 10000", "value: 1e4")), RULE_FEATURES)
    assert rules.rules[0].when.children[0].value == 10000.0


@pytest.mark.parametrize(("leaf", "expected"), [
    ('{feature: region, op: "==", value: 5}', r"field 'value': region holds text, so the value must be text, not 5"),
    ('{feature: region, op: ">", value: North}', r"field 'op': region holds text: compare it with ==, !=, in or "
                                                 r"not_in, not >"),
    ("{feature: region, op: in, value: [North, 7]}", r"field 'value': region holds text, so the value must be text, "
                                                     r"not 7"),
    ('{feature: orders_365d, op: "==", value: "5"}', r"field 'value': orders_365d is a number, so the value must be "
                                                     r"one, not '5'"),
    ('{feature: last_order_at, op: "<", value: 5}', r"field 'value': last_order_at is a time, so the value must be a "
                                                    r"date"),
])
def test_text_numbers_and_times_compare_only_with_their_kind(tmp_path: Path, leaf: str, expected: str) -> None:
    text = VALID_TIERS.replace('{feature: monetary_365d, op: ">=", value: 10000}', leaf)
    with pytest.raises(RuleError, match=r"rules\.yaml:12: rule 'gold_band': " + expected):
        load_tier_rules(write(tmp_path, text), RULE_FEATURES)


def test_a_key_twice_in_one_mapping_is_refused_not_overwritten(tmp_path: Path) -> None:
    text = VALID_TIERS.replace("value: 10000}", "value: 10000, value: 100}")
    with pytest.raises(RuleError, match=r"rules\.yaml:12:\d+: key 'value' appears twice in one mapping \(first on line "
                                        r"12\); remove one"):
        load_tier_rules(write(tmp_path, text), RULE_FEATURES)


def test_paths_in_rule_files_stay_in_their_folder(tmp_path: Path) -> None:
    shipped = (ROOT / "include" / "rules" / "candidates.yaml").read_text()
    path = tmp_path / "candidates.yaml"
    path.write_text(shipped.replace("protected_list: protected_customers.txt",
                                    "protected_list: ../../../../etc/passwd"))
    with pytest.raises(RuleError, match=r"field 'protected_list': '../../../../etc/passwd' is outside the folder of "
                                        r"the rule file"):
        load_candidate_rules(path, RULE_FEATURES)


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("precedence: [core, win_back, elimination]", "precedence: [core, win_back]",
     r"field 'precedence': must name each list once \(elimination, win_back, core\)"),
    ("    proposal_expiry_days: 180", "    proposal_expiry_days: 0",
     r"rule 'elimination.review': field 'proposal_expiry_days': must be a whole number of days"),
    ("material_change: {monetary_365d: 0.25,", "material_change: {tier_year_ago: 0.25,",
     r"'tier_year_ago' is not a numeric column of marts.customer_features_snapshot"),
    ("material_change: {monetary_365d: 0.25,", "material_change: {monetary_365d: -1,",
     r"rule 'elimination.review': field 'monetary_365d': must be a share above 0"),
    ("      action: end_relationship\n", "      action: end_relationship\n      tiers: gold\n",
     r"rule 'dormant_low_value': field 'tiers': must be a non-empty list of tier names"),
    ("      action: contact_and_offer\n", "      action: contact_and_offer\n      tiers: [gold]\n",
     r"rule 'lapsed_valuable': unknown keys \['tiers'\]"),
])
def test_precedence_review_policy_and_elimination_tiers_are_checked(tmp_path: Path, old: str, new: str,
                                                                     expected: str) -> None:
    shipped = (ROOT / "include" / "rules" / "candidates.yaml").read_text()
    assert old in shipped
    path = tmp_path / "candidates.yaml"
    path.write_text(shipped.replace(old, new, 1))
    (tmp_path / "protected_customers.txt").write_text("")
    with pytest.raises(RuleError, match=expected):
        load_candidate_rules(path, RULE_FEATURES)


def test_the_shipped_candidate_rules_carry_their_precedence_and_review_policy() -> None:
    rules = load_candidate_rules(ROOT / "include" / "rules" / "candidates.yaml", RULE_FEATURES)
    assert rules.precedence == ("core", "win_back", "elimination")
    assert rules.review.proposal_expiry_days == 180
    assert dict(rules.review.material_change) == {"monetary_365d": 0.25, "orders_365d": 0.5, "complaints_365d": 0.5}
    assert all(rule.tiers is None for rule in rules.elimination.rules)  # the lowest tier only


WIN_BACK_CONTROL = "  control_share: 0.1\n  rules:\n    - name: lapsed_valuable"


@pytest.mark.parametrize(("new", "expected"), [
    ("  control_power: {detect: 0.05, expected_rate: 0.2, max_share: 0.3}\n", None),
    ("  control_power: {detect: 5}\n", r"rule 'win_back.control_power': field 'detect': must be a share above 0"),
    ("  control_power: {detect: 0.05, rate: 0.2}\n", r"unknown keys \['rate'\]"),
    ("  control_share: 0.1\n  control_power: {detect: 0.05}\n", "give control_share or control_power, not both"),
])
def test_a_control_group_sized_by_power_is_checked(tmp_path: Path, new: str, expected: str | None) -> None:
    shipped = (ROOT / "include" / "rules" / "candidates.yaml").read_text()
    assert WIN_BACK_CONTROL in shipped
    path = tmp_path / "candidates.yaml"
    path.write_text(shipped.replace(WIN_BACK_CONTROL, new + "  rules:\n    - name: lapsed_valuable", 1))
    (tmp_path / "protected_customers.txt").write_text("")
    if expected:
        with pytest.raises(RuleError, match=expected):
            load_candidate_rules(path, RULE_FEATURES)
        return
    win_back = load_candidate_rules(path, RULE_FEATURES).win_back
    assert (win_back.control_effect, win_back.control_expected_rate, win_back.control_max_share) == (0.05, 0.2, 0.3)
