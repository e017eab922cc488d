"""The published criteria: every tier, elimination, win-back and core rule in plain language.

Customer-management practice asks that grading and elimination criteria be objective,
transparent and shared with staff and customers. This module renders the rule files in
force into one document, as Markdown and as self-contained HTML, so what is published is
exactly what the pipeline applies: the thresholds come from the files, never retyped.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

from grading.catalog import load_catalogue
from grading.rules.model import CandidateList, CandidateRules, Condition, Rule, TierRules
from grading.rules.service import ServiceLevels

WORDS = {"<": "less than", "<=": "at most", ">": "more than", ">=": "at least", "==": "exactly", "!=": "not",
         "in": "one of", "not_in": "none of", "is_null": "unknown", "not_null": "known"}
DERIVED = {
    "tier": "The customer's tier this period.",
    "tier_rank": "Position of the tier this period, 1 for the lowest.",
    "tier_year_ago": "The tier the customer's figures earned a year before the as-of date.",
    "tier_rank_year_ago": "Position of that tier, 1 for the lowest.",
    "peak_tier_rank_recent": "The best tier position held this period or in the 4 periods before.",
    "monetary_year_ago": "Amount of completed orders in the year before the last 365 days.",
    "aov_year_ago": "Average order value in that earlier year.",
    "m_score_year_ago": "Monetary score in that earlier year.",
    "aov_change_year": "Relative change of the average order value against that earlier year (-0.2 = a fifth lower).",
    "is_protected": "1 for customers on the protected list.",
}


def _number(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,}"


def plain(condition: Condition) -> str:
    """A condition in words: 'monetary_365d more than 50,000 and complaints_365d at most 1'."""
    if condition.combine is not None:
        joiner = " and " if condition.combine == "all" else " or "
        parts = [f"({plain(c)})" if c.combine is not None and len(c.children) > 1 else plain(c)
                 for c in condition.children]
        return joiner.join(parts)
    if condition.op in ("is_null", "not_null"):
        return f"{condition.feature} {WORDS[condition.op]}"
    if condition.op in ("in", "not_in"):
        return f"{condition.feature} {WORDS[condition.op]} {', '.join(_number(v) for v in condition.value)}"
    return f"{condition.feature} {WORDS[condition.op]} {_number(condition.value)}"


@dataclass
class Section:
    title: str
    intro: str = ""
    rows: list[tuple[str, ...]] = field(default_factory=list)
    header: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)


def _tier_section(rules: TierRules) -> Section:
    order = " < ".join(rules.tiers)
    section = Section("Tiers", f"Tiers from lowest to highest: {order}. Strategy: {rules.strategy}.",
                      header=("rule", "tier", "criterion", "explanation"))
    if rules.strategy == "rules":
        section.intro += " Rules are tried in this order; the first that holds gives the tier."
        section.rows = [(r.name, r.tier or "", plain(r.when), r.description) for r in rules.rules]
    elif rules.strategy == "weighted_score":
        terms = ", ".join(f"{t.feature} (weight {_number(t.weight)}, {'higher' if t.higher_is_better else 'lower'}"
                          f" is better)" for t in rules.weights)
        section.intro += (f" Score 0-100: the weighted mean of the customer's percentile among all customers on "
                          f"{terms}.")
        section.rows = [(f"score_band_{tier}", tier, f"weighted score at least {_number(lowest)}", "")
                        for tier, lowest in rules.score_bands]
    else:
        section.intro += (f" Customers are grouped by k-means on {', '.join(rules.cluster_features)} (seed "
                          f"{rules.seed}); groups are ranked by their mean {rules.cluster_order_by} onto the tiers.")
    section.rows.append((rules.default_name, rules.default_tier, "otherwise", "No rule above holds."))
    damping = rules.damping
    if damping.downgrade_after_periods > 1 or damping.max_steps_down:
        steps = f"at most {damping.max_steps_down} tier(s) at a time" if damping.max_steps_down else "to the new tier"
        section.notes.append(
            f"Upgrades take effect at once. A downgrade takes effect only after the criteria have placed the "
            f"customer lower in {damping.downgrade_after_periods} consecutive periods, and then {steps}.")
    qualification = rules.qualification
    note = qualification.describe()
    section.notes.append(f"Qualification: {note[0].upper()}{note[1:]} (monetary_window and orders_window "
                         f"are the completed orders of that window).")
    return section


def _list_section(title: str, intro: str, rules_list: CandidateList, with_severity: bool = False) -> Section:
    header = ("rule", "criterion", "action", *(("severity",) if with_severity else ()), "explanation")
    section = Section(title, intro, header=header)
    for rule in rules_list.rules:
        severity = (rule.severity or "",) if with_severity else ()
        section.rows.append((rule.name, plain(rule.when), rule.action or "", *severity, rule.description))
    for exemption in rules_list.exemptions:
        section.notes.append(f"Exempt ({exemption.name}): {plain(exemption.when)}. {exemption.description}")
    if rules_list.confirm_periods > 1:
        section.notes.append(f"A customer is listed only after meeting a criterion in {rules_list.confirm_periods} "
                             "consecutive periods, and each listing is reviewed and approved or rejected by a person.")
    if rules_list.control_effect is not None:
        which = f" of those with action {', '.join(rules_list.control_actions)}" if rules_list.control_actions else ""
        section.notes.append(
            f"A control group{which} is drawn at random (fixed per customer and period) and left alone, to measure "
            f"whether acting works; its size is what detecting a {rules_list.control_effect:.0%}-point change in the "
            f"return rate needs (expected rate {rules_list.control_expected_rate:.0%}), at most "
            f"{rules_list.control_max_share:.0%} of the list - none when the list is too small for that.")
    if rules_list.control_share > 0:
        which = f" of those with action {', '.join(rules_list.control_actions)}" if rules_list.control_actions else ""
        section.notes.append(f"{rules_list.control_share:.0%}{which} are drawn at random (fixed per customer and "
                             "period) into a control group that is left alone, to measure whether acting works.")
    return section


def _reasons_section(rules: CandidateRules) -> Section:
    section = Section("Likely reasons a customer stopped", "For win-back candidates; the first that holds is "
                      "reported with its suggested action.", header=("reason", "signal", "suggested action",
                                                                     "explanation"))
    section.rows = [(r.name, plain(r.when), r.action or "", r.description) for r in rules.churn_reasons]
    section.rows.append(("unknown", "otherwise", rules.unknown_reason_action, "No signal above."))
    return section


def features_named(tier_rules: TierRules, candidate_rules: CandidateRules) -> set[str]:
    """Every feature a criterion of the two files looks at."""
    rules: list[Rule] = list(candidate_rules.churn_reasons)
    for rules_list in candidate_rules.lists().values():
        rules += [*rules_list.rules, *rules_list.exemptions]
    return {leaf.feature for rule in rules for leaf in rule.when.leaves()} | tier_rules.named_features()


def _glossary(names: set[str]) -> Section:
    catalogue = load_catalogue()["customer_features_snapshot"]["columns"]
    section = Section("Figures used", "Every figure is computed as of the grading date from completed orders, "
                      "tickets and surveys before that date.", header=("figure", "meaning"))
    section.rows = [(n, catalogue.get(n) or DERIVED.get(n, "")) for n in sorted(names)]
    return section


def _service_sections(levels: ServiceLevels, tier_rules: TierRules) -> list[Section]:
    tiers = Section("Service standards per tier", "What each tier is entitled to.",
                    header=("tier", "service", "first response", "service hours", "account manager", "channels",
                            "visits", "reviews", "discount", "credit", "benefits"))
    for tier in reversed(tier_rules.tiers):
        level = levels.for_tier(tier)
        if level is None:
            continue
        tiers.rows.append((tier, level.label, f"within {_number(level.response_time_hours)} h", level.service_hours,
                           "dedicated" if level.dedicated_account_manager else "no",
                           ", ".join(level.support_channels), level.visit_frequency, level.review_frequency,
                           level.discount_policy, level.credit_policy, "; ".join(level.benefits)))
    actions = Section("What a listed customer gets", "Per action of the lists above: the team that acts, how "
                      "soon after the listing, and what the customer is offered or told.",
                      header=("action", "team", "within", "offer"))
    actions.rows = [(t.action, t.owner, f"{t.contact_within_days} days", t.offer) for t in levels.actions.values()]
    return [tiers, actions]


def build(tier_rules: TierRules, candidate_rules: CandidateRules,
          levels: ServiceLevels | None = None) -> list[Section]:
    sections = [
        _tier_section(tier_rules),
        _list_section("Elimination candidates (淘汰)", "Customers who meet a criterion are reviewed for the "
                      "action shown; the first criterion that holds is reported.", candidate_rules.elimination,
                      with_severity=True),
        _list_section("Win-back candidates (挽回)", "Once-valuable customers who stopped buying.",
                      candidate_rules.win_back),
        _reasons_section(candidate_rules),
        _list_section("Core customers (基盘客户)", "Long, steady and satisfied customers.", candidate_rules.core),
    ]
    if candidate_rules.protected_ids:
        sections[1].notes.append(f"{len(candidate_rules.protected_ids)} customer(s) on the protected list are "
                                 "never elimination candidates.")
    order = ", ".join(candidate_rules.precedence)
    sections[1].notes.append(f"A customer is on one list per period, taken in this order: {order}. Elimination "
                             f"lists {tier_rules.tiers[0]} customers only, unless a criterion names another tier.")
    if levels is not None:
        sections += _service_sections(levels, tier_rules)
    sections.append(_glossary(features_named(tier_rules, candidate_rules)))
    return sections


def _title(tier_rules: TierRules, candidate_rules: CandidateRules,
           levels: ServiceLevels | None = None) -> tuple[str, list[str]]:
    files = (tier_rules.source, candidate_rules.source, *((levels.source,) if levels else ()))
    facts = [f"{r.path.name}: version {r.version}, effective {r.effective_date}, owner {r.owner}, "
             f"sha256 {r.content_hash[:12]}" for r in files]
    return "Customer grading criteria", facts


def to_markdown(tier_rules: TierRules, candidate_rules: CandidateRules, levels: ServiceLevels | None = None) -> str:
    title, facts = _title(tier_rules, candidate_rules, levels)
    lines = [f"# {title}", "", *[f"- {f}" for f in facts], ""]
    for section in build(tier_rules, candidate_rules, levels):
        lines += [f"## {section.title}", "", section.intro, ""]
        if section.rows:
            lines += ["| " + " | ".join(section.header) + " |", "|" + "---|" * len(section.header)]
            lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in section.rows]
            lines.append("")
        lines += [f"- {note}" for note in section.notes]
        if section.notes:
            lines.append("")
    return "\n".join(lines)


def to_html(tier_rules: TierRules, candidate_rules: CandidateRules, levels: ServiceLevels | None = None) -> str:
    esc = html.escape
    title, facts = _title(tier_rules, candidate_rules, levels)
    body = [f"<h1>{esc(title)}</h1>", "<ul class='facts'>" + "".join(f"<li>{esc(f)}</li>" for f in facts) + "</ul>"]
    for section in build(tier_rules, candidate_rules, levels):
        body += [f"<section><h2>{esc(section.title)}</h2>", f"<p>{esc(section.intro)}</p>"]
        if section.rows:
            body.append("<table><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in section.header) + "</tr></thead>"
                        "<tbody>" + "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>"
                                            for row in section.rows) + "</tbody></table>")
        if section.notes:
            body.append("<ul>" + "".join(f"<li>{esc(n)}</li>" for n in section.notes) + "</ul>")
        body.append("</section>")
    style = ("body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}"
             "table{border-collapse:collapse;width:100%;margin:.5rem 0}th,td{border:1px solid #ccc;padding:.3rem .5rem;"
             "text-align:left;vertical-align:top}th{background:#f3f3f3}.facts{color:#555;font-size:.9rem}")
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{esc(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")


def write(tier_rules: TierRules, candidate_rules: CandidateRules, folder: Path,
          levels: ServiceLevels | None = None) -> list[Path]:
    """Write criteria.md and criteria.html into ``folder`` (with the service standards, given
    ``levels``); returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "criteria.md", folder / "criteria.html"]
    paths[0].write_text(to_markdown(tier_rules, candidate_rules, levels), encoding="utf-8")
    paths[1].write_text(to_html(tier_rules, candidate_rules, levels), encoding="utf-8")
    return paths
