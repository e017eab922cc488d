"""Checks of a rule set that no single condition shows: what can never match, and bands in the wrong shape.

Loading a rule file checks each condition on its own (features, operators, value types).
These checks look at the rules together, where first-match-wins makes mistakes silent:

- *errors* (the file is refused): a rule whose conditions contradict each other, a rule an
  earlier rule always wins over (a gold band listed before platinum makes platinum
  unreachable), a tier no rule can assign, and candidate rules naming a tier the tier file
  does not have or a tier rank it cannot reach;
- *warnings* (reported by ``rules check``, an error there with ``--strict``; a run logs
  them): value bands with a gap (values above the lowest band that no rule matches get the
  default tier), bands in the wrong order (a lower tier over higher values than a higher
  tier), and a lower tier listed first taking part of a higher tier's band.

The analysis covers rules that are conjunctions of numeric comparisons (``all`` of ``<``,
``<=``, ``>``, ``>=``, ``==`` on numbers, or one such leaf), which is how bands are written;
other rules are left alone rather than guessed at.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from grading.conditions import COMPARISONS
from grading.rules.model import CandidateRules, Condition, Rule, RuleFile, TierRules

# An interval of the real line: (low, low included, high, high included).
Interval = tuple[float, bool, float, bool]
EVERYTHING: tuple[Interval, ...] = ((-math.inf, False, math.inf, False),)
TIER_FEATURES = ("tier", "tier_year_ago")
RANK_FEATURES = ("tier_rank", "tier_rank_year_ago", "peak_tier_rank_recent")


@dataclass(frozen=True)
class Finding:
    severity: str  # "error" or "warning"
    source: RuleFile
    rule: str | None
    message: str

    def __str__(self) -> str:
        rule = f" rule {self.rule!r}:" if self.rule else ""
        return f"{self.source.path}:{rule} {self.message}"


# --------------------------------------------------------------------------------------
# Sets of numbers as sorted, disjoint intervals


def _empty(interval: Interval) -> bool:
    low, low_in, high, high_in = interval
    return low > high or (low == high and not (low_in and high_in))


def _intersect(a: tuple[Interval, ...], b: tuple[Interval, ...]) -> tuple[Interval, ...]:
    out = []
    for a_low, a_low_in, a_high, a_high_in in a:
        for b_low, b_low_in, b_high, b_high_in in b:
            low, low_in = max((a_low, not a_low_in), (b_low, not b_low_in))
            high, high_in = min((a_high, a_high_in), (b_high, b_high_in))
            piece = (low, not low_in, high, high_in)
            if not _empty(piece):
                out.append(piece)
    return tuple(sorted(out))


def _complement(a: tuple[Interval, ...]) -> tuple[Interval, ...]:
    out, low, low_in = [], -math.inf, False
    for a_low, a_low_in, a_high, a_high_in in sorted(a):
        piece = (low, low_in, a_low, not a_low_in)
        if not _empty(piece):
            out.append(piece)
        low, low_in = a_high, not a_high_in
    piece = (low, low_in, math.inf, False)
    if not _empty(piece):
        out.append(piece)
    return tuple(out)


def _minus(a: tuple[Interval, ...], b: tuple[Interval, ...]) -> tuple[Interval, ...]:
    return _intersect(a, _complement(b))


def _union(a: tuple[Interval, ...], b: tuple[Interval, ...]) -> tuple[Interval, ...]:
    return _complement(_intersect(_complement(a), _complement(b)))


def describe(intervals: tuple[Interval, ...]) -> str:
    """The set in words, e.g. ``[20000, 50000]`` or ``above 100000``."""
    def number(x: float) -> str:
        return f"{x:g}"

    parts = []
    for low, low_in, high, high_in in intervals:
        if low == high:
            parts.append(number(low))
        elif high == math.inf:
            parts.append(f"{'from' if low_in else 'above'} {number(low)}")
        elif low == -math.inf:
            parts.append(f"{'up to' if high_in else 'below'} {number(high)}")
        else:
            parts.append(f"{'[' if low_in else '('}{number(low)}, {number(high)}{']' if high_in else ')'}")
    return " and ".join(parts)


# --------------------------------------------------------------------------------------
# Rules as boxes: feature -> the set of its values the rule accepts


def _leaf(leaf: Condition) -> tuple[Interval, ...] | None:
    value = leaf.value
    if leaf.op not in COMPARISONS or leaf.op == "!=" or isinstance(value, bool) \
            or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return {"<": ((-math.inf, False, value, False),), "<=": ((-math.inf, False, value, True),),
            ">": ((value, False, math.inf, False),), ">=": ((value, True, math.inf, False),),
            "==": ((value, True, value, True),)}[leaf.op]


def box(condition: Condition) -> dict[str, tuple[Interval, ...]] | None:
    """The values each feature may take for the condition to hold; None if it is not a
    conjunction of numeric comparisons."""
    leaves = [condition] if condition.combine is None else \
        list(condition.children) if condition.combine == "all" and all(c.combine is None for c in condition.children) \
        else None
    if leaves is None:
        return None
    found: dict[str, tuple[Interval, ...]] = {}
    for leaf in leaves:
        accepted = _leaf(leaf)
        if accepted is None:
            return None
        found[leaf.feature] = _intersect(found.get(leaf.feature, EVERYTHING), accepted)
    return found


def _within(inner: dict[str, tuple[Interval, ...]], outer: dict[str, tuple[Interval, ...]]) -> bool:
    """Whether every customer ``inner`` accepts is accepted by ``outer`` too."""
    return all(_minus(inner.get(feature, EVERYTHING), values) == () for feature, values in outer.items())


# --------------------------------------------------------------------------------------
# The checks


def tier_findings(rules: TierRules) -> list[Finding]:
    """Dead rules, unreachable tiers and band shapes of a tier file."""
    source, found = rules.source, []
    if rules.strategy == "weighted_score":
        banded = {tier for tier, _ in rules.score_bands} | {rules.default_tier}
        return [Finding("error", source, None, f"tier {tier!r} has no score band and is not the default: no customer "
                        "can be in it") for tier in rules.tiers if tier not in banded]
    if rules.strategy != "rules":
        return found
    boxes = [box(rule.when) for rule in rules.rules]
    dead = set()
    for j, (rule, accepted) in enumerate(zip(rules.rules, boxes, strict=True)):
        if accepted is not None and any(values == () for values in accepted.values()):
            found.append(Finding("error", source, rule.name, "its conditions contradict each other: no customer can "
                                                             "meet them all"))
            dead.add(j)
            continue
        for i in range(j):
            if i not in dead and boxes[i] is not None and accepted is not None and _within(accepted, boxes[i]):
                found.append(Finding("error", source, rule.name, f"can never match: {rules.rules[i].name!r}, listed "
                                     "before it, matches every customer it would (rules are tried top to bottom; "
                                     "list the narrower rule first)"))
                dead.add(j)
                break
    assigned = {rule.tier for j, rule in enumerate(rules.rules) if j not in dead} | {rules.default_tier}
    found += [Finding("error", source, None, f"tier {tier!r} is never assigned: no rule that can match gives it and "
                      "it is not the default") for tier in rules.tiers if tier not in assigned]
    live = [(rule, accepted) for j, (rule, accepted) in enumerate(zip(rules.rules, boxes, strict=True))
            if j not in dead]
    features = {feature for _, accepted in live if accepted for feature in accepted}
    if live and all(accepted is not None and len(accepted) == 1 for _, accepted in live) and len(features) == 1:
        found += _band_findings(rules, [(rule, accepted[next(iter(features))]) for rule, accepted in live],
                                next(iter(features)))
    return found


def _band_findings(rules: TierRules, bands: list[tuple[Rule, tuple[Interval, ...]]], feature: str) -> list[Finding]:
    """Value bands on one feature: gaps, bands in the wrong order, a lower tier taking a higher one's values."""
    source, found = rules.source, []
    covered, effective = (), []
    for rule, values in bands:
        effective.append((rule, _minus(values, covered)))
        covered = _union(covered, values)
    lowest = min(values[0][0] for _, values in bands)
    gap = _minus(((lowest, True, math.inf, False),), covered)
    if gap and lowest > -math.inf:
        found.append(Finding("warning", source, None, f"values of {feature} {describe(gap)} match no rule and get the "
                             f"default tier {rules.default_tier!r}, though lower values reach a band"))
    for i, (lower, lower_values) in enumerate(bands):
        for higher, higher_values in bands[i + 1:]:
            if rules.rank(lower.tier) < rules.rank(higher.tier):
                taken = _intersect(lower_values, higher_values)
                if taken:
                    found.append(Finding("warning", source, higher.name, f"{lower.name!r} ({lower.tier}), listed "
                                         f"before it, takes {feature} {describe(taken)} that this rule "
                                         f"({higher.tier}) also covers"))
    for lower, lower_values in effective:
        for higher, higher_values in effective:
            if rules.rank(lower.tier) < rules.rank(higher.tier) and lower_values and higher_values \
                    and lower_values[-1][2] > higher_values[0][0]:
                found.append(Finding("warning", source, lower.name, f"gives the lower tier {lower.tier!r} values of "
                                     f"{feature} ({describe(lower_values)}) above some of the higher tier "
                                     f"{higher.tier!r} ({describe(higher_values)})"))
    return found


def _leaves(rules: Iterable[Rule]) -> Iterable[tuple[Rule, Condition]]:
    for rule in rules:
        for leaf in rule.when.leaves():
            yield rule, leaf


def candidate_findings(candidates: CandidateRules, tiers: TierRules) -> list[Finding]:
    """Candidate rules that name a tier (or tier rank) the tier file cannot give."""
    found = []
    rules = [r for lst in candidates.lists().values() for r in (*lst.rules, *lst.exemptions)]
    for rule, leaf in _leaves([*rules, *candidates.churn_reasons]):
        if leaf.feature in TIER_FEATURES and leaf.value is not None:
            named = leaf.value if isinstance(leaf.value, tuple) else (leaf.value,)
            unknown = [v for v in named if v not in tiers.tiers]
            if unknown:
                found.append(Finding("error", candidates.source, rule.name, f"{leaf.feature} compared with "
                                     f"{', '.join(map(repr, unknown))}, not a tier of {tiers.source.path.name} "
                                     f"({', '.join(tiers.tiers)})"))
        if leaf.feature in RANK_FEATURES and _leaf(leaf) is not None:
            ranks = ((1.0, True, float(len(tiers.tiers)), True),)
            if _intersect(_leaf(leaf), ranks) == ():
                found.append(Finding("error", candidates.source, rule.name, f"{leaf.describe()} can never hold: tier "
                                     f"ranks run from 1 to {len(tiers.tiers)} in {tiers.source.path.name}"))
    for rule in candidates.elimination.rules:
        unknown = [t for t in rule.tiers or () if t not in tiers.tiers]
        if unknown:
            found.append(Finding("error", candidates.source, rule.name, f"tiers names {', '.join(map(repr, unknown))}, "
                                 f"not a tier of {tiers.source.path.name} ({', '.join(tiers.tiers)})"))
    return found


def check(tiers: TierRules, candidates: CandidateRules | None = None) -> list[Finding]:
    """Every finding of a tier file and, with it, a candidate file; errors first."""
    found = tier_findings(tiers) + (candidate_findings(candidates, tiers) if candidates else [])
    return sorted(found, key=lambda f: f.severity != "error")


def errors(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == "error"]

