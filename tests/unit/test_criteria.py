"""The published criteria document states every rule of the files in force, with its thresholds."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

from grading import criteria
from grading.criteria import _number
from grading.rules.pins import load_rules
from grading.settings import include_dir


def _thresholds_and_names():
    tier_rules, candidate_rules = load_rules()
    rules = [*tier_rules.rules, *candidate_rules.churn_reasons]
    for rules_list in candidate_rules.lists().values():
        rules += [*rules_list.rules, *rules_list.exemptions]
    values = set()
    for rule in rules:
        for leaf in rule.when.leaves():
            for value in leaf.value if isinstance(leaf.value, tuple) else (leaf.value,):
                if value is not None:
                    values.add(_number(value))
    return tier_rules, candidate_rules, {r.name for r in rules}, values


def test_markdown_and_html_state_every_rule_and_threshold(tmp_path: Path) -> None:
    tier_rules, candidate_rules, names, values = _thresholds_and_names()
    assert {"50,000", "10,000", "5", "2", "180", "0.8", "730", "2,000", "-0.2"} <= values
    markdown, page = criteria.write(tier_rules, candidate_rules, tmp_path)
    for text in (markdown.read_text(encoding="utf-8"), page.read_text(encoding="utf-8")):
        for name in names | {"below_gold_band", "unknown"}:
            assert name in text, name
        for value in values:
            assert value in text, value
        assert "2 consecutive periods" in text
        assert "at most 1 tier(s) at a time" in text
        assert "Qualifying spend over the last 365 days; downgrades at any run" in text  # qualification stated
        assert tier_rules.source.content_hash[:12] in text
        assert candidate_rules.source.version in text


def test_a_review_date_policy_is_stated(tmp_path: Path) -> None:
    from grading.features import RULE_FEATURES
    from grading.rules.files import load_tier_rules

    calendar = load_tier_rules(include_dir() / "rules" / "examples" / "tiers_calendar_year.yaml", RULE_FEATURES)
    markdown, _ = criteria.write(calendar, load_rules()[1], tmp_path)
    assert ("Qualifying spend over the calendar year (to date); downgrades only at the calendar year review "
            "date plus 31 days' grace") in markdown.read_text(encoding="utf-8")


def test_the_html_page_is_well_formed_and_self_contained(tmp_path: Path) -> None:
    tier_rules, candidate_rules, *_ = _thresholds_and_names()
    page = criteria.to_html(tier_rules, candidate_rules)

    class Checker(HTMLParser):
        def __init__(self):
            super().__init__()
            self.stack, self.sections, self.external = [], 0, []

        def handle_starttag(self, tag, attrs):
            if tag not in ("meta", "br"):
                self.stack.append(tag)
            self.sections += tag == "section"
            self.external += [v for k, v in attrs if k in ("src", "href")]

        def handle_endtag(self, tag):
            assert self.stack.pop() == tag

    checker = Checker()
    checker.feed(page)
    assert checker.stack == []
    assert checker.sections == 6
    assert checker.external == []


def test_other_strategies_are_described(tmp_path: Path) -> None:
    for example, phrase in (("tiers_weighted_score.yaml", "weighted score at least 90"),
                            ("tiers_kmeans.yaml", "k-means on recency_days, orders_365d, monetary_365d")):
        tier_rules, candidate_rules = load_rules(tier_file=include_dir() / "rules" / "examples" / example,
                                                 proposal=True)
        assert phrase in criteria.to_markdown(tier_rules, candidate_rules)


def test_the_service_standards_and_the_treatments_are_shown() -> None:
    from grading.rules.pins import load_service

    rules = load_rules()
    markdown = criteria.to_markdown(*rules, load_service(rules))
    assert "## Service standards per tier" in markdown
    assert "| platinum | 白金 / VIP - dedicated team, 24-hour service | within 2 h | 24/7 | dedicated |" in markdown
    assert "| contact_and_offer | sales | 14 days |" in markdown
    assert "service_levels.yaml: version 1.0.0" in markdown
    assert "taken in this order: core, win_back, elimination. Elimination lists normal customers only" in markdown
