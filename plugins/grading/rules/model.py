"""The rule model: the typed, checked content of a rule file, and how a condition is evaluated.

grading.rules builds these from the YAML in include/rules/; grading.tiers, grading.candidates,
grading.criteria and grading.rules.checks read them. Operators mean what grading.conditions says.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from grading import conditions
from grading.conditions import COMPARISONS, MEMBERSHIP, NULL_TESTS
from grading.qualification import Qualification

OPERATORS = (*COMPARISONS, *MEMBERSHIP, *NULL_TESTS)


@dataclass(frozen=True)
class Condition:
    """A leaf (feature op value) or a group (``all``/``any`` of conditions)."""

    combine: str | None = None  # "all", "any" or None for a leaf
    children: tuple[Condition, ...] = ()
    feature: str | None = None
    op: str | None = None
    value: Any = None

    def leaves(self) -> Iterable[Condition]:
        if self.combine is None:
            yield self
        for child in self.children:
            yield from child.leaves()

    def evaluate(self, frame: pd.DataFrame) -> pd.Series:
        """Rows of ``frame`` meeting the condition; a missing value never meets a comparison."""
        if self.combine == "all":
            result = pd.Series(True, index=frame.index)
            for child in self.children:
                result &= child.evaluate(frame)
            return result
        if self.combine == "any":
            result = pd.Series(False, index=frame.index)
            for child in self.children:
                result |= child.evaluate(frame)
            return result
        return conditions.mask(frame[self.feature], self.op, self.value)

    def describe(self) -> str:
        """The condition in plain words, as the published criteria state it."""
        if self.combine is not None:
            joiner = " and " if self.combine == "all" else " or "
            return joiner.join(
                f"({c.describe()})" if c.combine is not None else c.describe() for c in self.children
            )
        if self.op in NULL_TESTS:
            return f"{self.feature} {'is missing' if self.op == 'is_null' else 'is present'}"
        if self.op in MEMBERSHIP:
            values = ", ".join(str(v) for v in self.value)
            return f"{self.feature} {'in' if self.op == 'in' else 'not in'} [{values}]"
        return f"{self.feature} {self.op} {self.value}"


@dataclass(frozen=True)
class Rule:
    name: str
    when: Condition
    description: str = ""
    tier: str | None = None
    action: str | None = None
    severity: str | None = None
    line: int = 0  # where the rule starts in its file
    # elimination rules: the tiers whose customers the rule may list; None = the lowest tier only
    tiers: tuple[str, ...] | None = None


@dataclass(frozen=True)
class RuleFile:
    path: Path
    kind: str
    version: str
    effective_date: date
    owner: str
    description: str
    content_hash: str
    body: dict = field(repr=False)


@dataclass(frozen=True)
class WeightedFeature:
    """One term of a weighted score: the customer's percentile on ``feature`` times ``weight``."""

    feature: str
    weight: float
    higher_is_better: bool = True
    missing: float = 0.0  # percentile given to customers without a value


@dataclass(frozen=True)
class Damping:
    """How tier changes are slowed: upgrades are immediate, downgrades wait.

    A customer assigned a lower tier than the one they hold keeps it until that has happened
    in ``downgrade_after_periods`` consecutive periods, and then drops at most
    ``max_steps_down`` tiers. The defaults (1 period, unlimited steps) mean no damping.
    """

    downgrade_after_periods: int = 1
    max_steps_down: int | None = None


STRATEGIES = ("rules", "weighted_score", "kmeans")


@dataclass(frozen=True)
class TierRules:
    source: RuleFile
    tiers: tuple[str, ...]  # lowest to highest
    default_tier: str
    default_name: str
    strategy: str = "rules"
    rules: tuple[Rule, ...] = ()  # strategy "rules": first match wins
    weights: tuple[WeightedFeature, ...] = ()  # strategy "weighted_score"
    score_bands: tuple[tuple[str, float], ...] = ()  # (tier, lowest score), highest tier first
    cluster_features: tuple[str, ...] = ()  # strategy "kmeans"
    cluster_order_by: str | None = None
    seed: int = 0
    damping: Damping = Damping()
    qualification: Qualification = Qualification()

    def rank(self, tier: str) -> int:
        return self.tiers.index(tier) + 1

    def named_features(self) -> set[str]:
        """The features the file's criteria look at: its conditions, weights and cluster features."""
        named = {leaf.feature for rule in self.rules for leaf in rule.when.leaves()}
        return named | {term.feature for term in self.weights} | set(self.cluster_features)


@dataclass(frozen=True)
class CandidateList:
    rules: tuple[Rule, ...]
    exemptions: tuple[Rule, ...]
    # Guarded lists: a customer is listed only after meeting a rule this many consecutive periods.
    confirm_periods: int = 1
    # Control group: this share of the list (only rows whose action is in control_actions,
    # when given) is held out, deterministically by customer and period.
    control_share: float = 0.0
    control_actions: tuple[str, ...] | None = None
    # Or sized by power (control_power): hold out what detecting this uplift at the expected
    # return rate needs (grading.power), at most control_max_share of the list; none, with a
    # warning, when the list is too small to hold such a group.
    control_effect: float | None = None
    control_expected_rate: float = 0.2
    control_max_share: float = 0.5


CANDIDATE_LISTS = ("elimination", "win_back", "core")
SEVERITIES = ("high", "medium", "low")


@dataclass(frozen=True)
class ReviewPolicy:
    """How reviewers' decisions on elimination candidates carry forward and proposals lapse.

    A decision (approved / rejected) stands for the customer's later listings until the facts
    change materially: another rule lists them, or a feature of ``material_change`` moves by
    more than its relative share of the value decided on. A proposal nobody decides expires
    ``proposal_expiry_days`` after the customer was first proposed (None: never).
    """

    proposal_expiry_days: int | None = 180
    material_change: tuple[tuple[str, float], ...] = (("monetary_365d", 0.25), ("orders_365d", 0.5),
                                                      ("complaints_365d", 0.5))


@dataclass(frozen=True)
class CandidateRules:
    source: RuleFile
    elimination: CandidateList
    win_back: CandidateList
    core: CandidateList
    churn_reasons: tuple[Rule, ...] = ()  # why a win-back candidate stopped; first match wins
    unknown_reason_action: str = "personal_call"
    protected_ids: frozenset[str] = frozenset()
    protected_list: Path | None = None
    # a customer a list names is left off the lists after it: one action per customer and period
    precedence: tuple[str, ...] = ("core", "win_back", "elimination")
    review: ReviewPolicy = ReviewPolicy()

    def lists(self) -> dict[str, CandidateList]:
        """Every list, in order of precedence."""
        return {name: getattr(self, name) for name in self.precedence}

    def named_features(self) -> set[str]:
        """The features the file's conditions look at: every list's rules and exemptions, and the
        churn reasons."""
        rules = [*self.churn_reasons, *(r for kept in self.lists().values() for r in (*kept.rules, *kept.exemptions))]
        return {leaf.feature for rule in rules for leaf in rule.when.leaves() if leaf.feature}


def explain(rule: Rule, frame: pd.DataFrame) -> pd.Series:
    """Per row: the rule and the values that decided it, e.g. 'gold_band: monetary_365d=12000.0 (>= 10000)'.

    Only the comparisons that held are shown, so an ``any`` group names the branch that fired.
    """
    text = pd.Series(f"{rule.name}:", index=frame.index, dtype="string")
    for leaf in rule.when.leaves():
        shown = frame[leaf.feature].astype("string").fillna("missing")
        part = f" {leaf.feature}=" + shown + f" ({leaf.describe().removeprefix(leaf.feature).strip()});"
        text = text + part.where(leaf.evaluate(frame), "")
    return text.str.rstrip(";")
