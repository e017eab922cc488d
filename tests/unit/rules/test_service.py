"""Service levels (grading.rules.service): the shipped standards, and mistakes reported at file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from grading.rules.files import RuleError
from grading.rules.service import check_coverage, entitlements_frame, load_service_levels, treatments_frame
from tests.helpers import ROOT

SHIPPED = ROOT / "include" / "rules" / "service_levels.yaml"


def test_the_shipped_file_covers_both_tier_schemes_with_the_articles_standards() -> None:
    levels = load_service_levels(SHIPPED)
    platinum, gold, normal = (levels.for_tier(t) for t in ("platinum", "gold", "normal"))
    assert levels.for_tier("vip") is platinum
    assert levels.for_tier("key") is gold
    assert platinum.service_hours == "24/7"
    assert platinum.dedicated_account_manager
    assert platinum.response_time_hours < gold.response_time_hours < normal.response_time_hours
    assert check_coverage(levels, ("normal", "gold", "platinum"), ("contact_and_offer",)) == []
    frame = entitlements_frame(levels, ("normal", "gold", "platinum"))
    assert frame[["tier", "tier_rank", "service_level"]].values.tolist() == [
        ["normal", 1, "standard_service"], ["gold", 2, "gold_service"], ["platinum", 3, "platinum_service"]]
    assert frame["rules_sha256"].nunique() == 1
    assert len(frame["rules_sha256"].iloc[0]) == 64
    assert treatments_frame(levels).set_index("action").loc["contact_and_offer", "contact_within_days"] == 14


def test_a_tier_without_a_level_is_an_error_and_an_action_without_a_treatment_a_warning() -> None:
    levels = load_service_levels(SHIPPED)
    with pytest.raises(RuleError, match=r"no service level covers tier\(s\) 'diamond'"):
        check_coverage(levels, ("normal", "diamond"))
    (warning,) = check_coverage(levels, ("normal",), ("send_flowers",))
    assert "action 'send_flowers' of the candidate rules has no treatment" in warning


def write(tmp_path: Path, old: str, new: str) -> Path:
    path = tmp_path / "service_levels.yaml"
    text = SHIPPED.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), start=1) if text in line)


@pytest.mark.parametrize(("old", "new", "message"), [
    ("    response_time_hours: 2\n", "    response_time_hours: -2\n",
     r"level 'platinum_service': field 'response_time_hours': must be a number above 0, got -2"),
    ("    visit_frequency: monthly\n", "    visit_frequency: daily\n",
     r"level 'platinum_service': field 'visit_frequency': must be one of none, yearly, quarterly, monthly, weekly"),
    ("    tiers: [gold, key]\n", "    tiers: [gold, vip]\n",
     r"level 'gold_service': field 'tiers': tier 'vip' is already covered by level 'platinum_service'"),
    ("    dedicated_account_manager: true\n", "    dedicated_account_manager: yes please\n",
     r"level 'platinum_service': field 'dedicated_account_manager': must be bool"),
    ("    benefits: []\n", "    benefits: []\n    perks: [cake]\n",
     r"level 'standard_service': field 'perks': unknown key\(s\) 'perks' in a service level"),
    ("contact_within_days: 14, offer: Personal call and", "contact_within_days: 1.5, offer: Personal call and",
     r"action 'contact_and_offer': field 'contact_within_days': must be a whole number above 0"),
])
def test_mistakes_name_the_file_line_level_and_field(tmp_path: Path, old: str, new: str, message: str) -> None:
    path = write(tmp_path, old, new)
    with pytest.raises(RuleError, match=message) as caught:
        load_service_levels(path)
    assert str(caught.value).startswith(f"{path}:")


def test_a_missing_field_and_a_wrong_kind_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "    credit_policy: Payment on order.\n", "")
    with pytest.raises(RuleError, match=r"level 'standard_service': field 'credit_policy': is required"):
        load_service_levels(path)
    path = write(tmp_path, "kind: service_levels", "kind: tiers")
    with pytest.raises(RuleError, match="expected kind 'service_levels', found 'tiers'"):
        load_service_levels(path)
