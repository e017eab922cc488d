"""Checks across the rules of a file: contradicting and dead rules, unreachable tiers, tiers a
weighted score cannot give, candidate rules naming tiers or ranks the tier file lacks (errors),
and value bands with gaps, overlaps or inversions (warnings)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from grading.features import RULE_FEATURES
from grading.rules import checks as rule_checks
from grading.rules.files import RuleError, load_candidate_rules, load_tier_rules
from grading.rules.pins import load_rules
from tests.helpers import ROOT


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    return path


BANDS = """\
kind: tiers
version: "3.0"
effective_date: 2020-01-01
owner: ops
description: bands
tiers: [normal, gold, platinum]
rules:
  - name: first_band
    tier: {first_tier}
    when: {{all: [{{feature: monetary_365d, op: ">=", value: {first}}}]}}
  - name: second_band
    tier: {second_tier}
    when: {{all: [{{feature: monetary_365d, op: ">=", value: {second}}}{second_cap}]}}
default: {{name: rest, tier: normal}}
"""


def bands(tmp_path: Path, first_tier="platinum", first=50000, second_tier="gold", second=10000, second_cap="") -> Path:
    return write(tmp_path, BANDS.format(first_tier=first_tier, first=first, second_tier=second_tier, second=second,
                                        second_cap=second_cap))


def test_a_band_after_a_wider_one_can_never_match_and_its_tier_is_unreachable(tmp_path: Path) -> None:
    """Gold (>= 10,000) listed before platinum (> 50,000): every platinum customer is caught by gold."""
    path = bands(tmp_path, first_tier="gold", first=10000, second_tier="platinum", second=50000)
    with pytest.raises(RuleError) as refused:
        load_rules(tier_file=path)
    assert str(refused.value).splitlines() == [
        f"{path}: rule 'second_band': can never match: 'first_band', listed before it, matches every customer it "
        "would (rules are tried top to bottom; list the narrower rule first)",
        f"{path}: tier 'platinum' is never assigned: no rule that can match gives it and it is not the default"]


def test_contradicting_conditions_are_refused(tmp_path: Path) -> None:
    path = bands(tmp_path, second_cap=', {feature: monetary_365d, op: "<", value: 5000}')
    with pytest.raises(RuleError, match=r"rule 'second_band': its conditions contradict each other"):
        load_rules(tier_file=path)


def test_band_gaps_overlaps_and_inversions_are_warnings(tmp_path: Path) -> None:
    from grading.rules import checks as rule_checks

    gap = load_tier_rules(bands(tmp_path, second_cap=', {feature: monetary_365d, op: "<", value: 20000}'),
                          RULE_FEATURES)
    assert [(f.severity, f.message) for f in rule_checks.check(gap)] == [
        ("warning", "values of monetary_365d [20000, 50000) match no rule and get the default tier 'normal', though "
                    "lower values reach a band")]
    inverted = load_tier_rules(bands(tmp_path, first_tier="gold", first=50000, second_tier="platinum", second=10000),
                               RULE_FEATURES)
    assert [(f.severity, f.rule, f.message) for f in rule_checks.check(inverted)] == [
        ("warning", "second_band", "'first_band' (gold), listed before it, takes monetary_365d from 50000 that this "
                                   "rule (platinum) also covers"),
        ("warning", "first_band", "gives the lower tier 'gold' values of monetary_365d (from 50000) above some of the "
                                  "higher tier 'platinum' ([10000, 50000))")]
    assert rule_checks.check(load_rules()[0]) == []  # the shipped bands are in order, without gaps


def test_candidate_rules_naming_a_tier_the_tier_file_lacks_are_refused(tmp_path: Path) -> None:
    shipped = (ROOT / "include" / "rules" / "candidates.yaml").read_text()
    assert "tier_year_ago, op: in, value: [gold, platinum]" in shipped
    path = tmp_path / "candidates.yaml"
    path.write_text(shipped.replace("value: [gold, platinum]", "value: [gold, diamond]"))
    (tmp_path / "protected_customers.txt").write_text("")
    with pytest.raises(RuleError, match=r"candidates\.yaml: rule '[a-z_]+': tier_year_ago compared with 'diamond', "
                                        r"not a tier of tiers\.yaml \(normal, gold, platinum\)"):
        load_rules(candidate_file=path)


def test_an_elimination_rule_listing_a_tier_the_tier_file_lacks_is_refused(tmp_path: Path) -> None:
    shipped = (ROOT / "include" / "rules" / "candidates.yaml").read_text()
    path = tmp_path / "candidates.yaml"
    path.write_text(shipped.replace("      action: end_relationship\n",
                                    "      action: end_relationship\n      tiers: [normal, vip]\n"))
    (tmp_path / "protected_customers.txt").write_text("")
    with pytest.raises(RuleError, match=r"candidates\.yaml: rule 'dormant_low_value': tiers names 'vip', not a tier "
                                        r"of tiers\.yaml \(normal, gold, platinum\)"):
        load_rules(candidate_file=path)


def test_a_candidate_rule_on_a_tier_rank_the_tiers_cannot_reach_is_an_error_listed_first(tmp_path: Path) -> None:
    shipped = (ROOT / "include" / "rules" / "candidates.yaml").read_text()
    assert '{feature: peak_tier_rank_recent, op: ">=", value: 2}' in shipped
    path = tmp_path / "candidates.yaml"
    path.write_text(shipped.replace('peak_tier_rank_recent, op: ">=", value: 2', 'peak_tier_rank_recent, op: ">", '
                                                                                 "value: 3"))
    (tmp_path / "protected_customers.txt").write_text("")
    candidates = load_candidate_rules(path, RULE_FEATURES)
    gap = load_tier_rules(bands(tmp_path, second_cap=', {feature: monetary_365d, op: "<", value: 20000}'),
                          RULE_FEATURES)
    findings = rule_checks.check(gap, candidates)
    assert [f.severity for f in findings] == ["error", "warning"]  # errors first
    assert str(findings[0]) == (f"{path}: rule 'likely_to_lapse': peak_tier_rank_recent > 3 can never hold: "
                                "tier ranks run from 1 to 3 in rules.yaml")
    assert rule_checks.errors(findings) == findings[:1]


def test_a_weighted_score_tier_without_a_band_is_unreachable(tmp_path: Path) -> None:
    text = BANDS.format(first_tier="platinum", first=50000, second_tier="gold", second=10000, second_cap="").replace(
        "rules:", "strategy: weighted_score\nweights:\n  - {feature: monetary_365d, weight: 1}\n"
                  "score_bands: {gold: 50}\nrules:")
    path = write(tmp_path, text)
    findings = rule_checks.tier_findings(load_tier_rules(path, RULE_FEATURES))
    assert [(f.severity, f.rule, f.message) for f in findings] == [
        ("error", None, "tier 'platinum' has no score band and is not the default: no customer can be in it")]
    with pytest.raises(RuleError, match=r"rules\.yaml: tier 'platinum' has no score band"):
        load_rules(tier_file=path)


def test_rules_that_are_not_numeric_conjunctions_are_left_alone(tmp_path: Path) -> None:
    """An ``any`` group is not analysed: no dead rule, unreachable tier or band warning is guessed."""
    text = BANDS.format(first_tier="gold", first=10000, second_tier="platinum", second=50000, second_cap="").replace(
        '{all: [{feature: monetary_365d, op: ">=", value: 50000}]}',
        '{any: [{feature: monetary_365d, op: ">=", value: 50000}, {feature: region, op: "==", value: North}]}')
    assert "any:" in text
    assert rule_checks.check(load_tier_rules(write(tmp_path, text), RULE_FEATURES)) == []


def test_describe_names_a_set_of_values() -> None:
    assert rule_checks.describe(((20000.0, True, 50000.0, False),)) == "[20000, 50000)"
    assert rule_checks.describe(((-math.inf, False, 5.0, True), (7.0, True, 7.0, True),
                                 (1e5, False, math.inf, False))) == "up to 5 and 7 and above 100000"
