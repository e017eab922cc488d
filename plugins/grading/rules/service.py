"""Service levels: what each tier is entitled to and what each list's action brings (include/rules/service_levels.yaml).

Customer-management practice grades customers in order to serve them differently: VIP
customers get round-the-clock service from a dedicated team, key customers a timely
response, normal customers the standard. The file is versioned, hashed and pinned per run
like the tier and candidate files (grading.rules.pins); it is checked against the tier file
it serves - every tier covered by exactly one level - with file:line errors.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from grading import yamlfile
from grading.rules.files import Reader, RuleChecker, RuleError, parse_rule_file
from grading.rules.model import RuleFile

FREQUENCIES = ("none", "yearly", "quarterly", "monthly", "weekly")
LEVEL_KEYS = ("name", "tiers", "label", "response_time_hours", "service_hours", "dedicated_account_manager",
              "support_channels", "visit_frequency", "review_frequency", "discount_policy", "credit_policy",
              "benefits")
ACTION_KEYS = ("owner", "contact_within_days", "offer")


@dataclass(frozen=True)
class ServiceLevel:
    name: str
    tiers: tuple[str, ...]
    label: str
    response_time_hours: float
    service_hours: str
    dedicated_account_manager: bool
    support_channels: tuple[str, ...]
    visit_frequency: str
    review_frequency: str
    discount_policy: str
    credit_policy: str
    benefits: tuple[str, ...]
    line: int = 0


@dataclass(frozen=True)
class ActionTreatment:
    """What a listed customer gets for an action: who acts, how soon and with what offer."""

    action: str
    owner: str
    contact_within_days: int
    offer: str


@dataclass(frozen=True)
class ServiceLevels:
    source: RuleFile
    levels: tuple[ServiceLevel, ...]
    actions: dict[str, ActionTreatment]

    def for_tier(self, tier: str) -> ServiceLevel | None:
        return next((level for level in self.levels if tier in level.tiers), None)

    def covering(self, tiers: Iterable[str]) -> dict[str, ServiceLevel]:
        """tier -> its level, for ``tiers`` (every one must be covered: see :func:`check_coverage`)."""
        return {tier: level for tier in tiers if (level := self.for_tier(tier)) is not None}


class _Checker(RuleChecker):
    scope = "level"  # messages name the level, then the action, being checked

    def __init__(self, path: Path):
        super().__init__(path, ())

    def texts(self, node: dict, key: str, scope: str, *, allow_empty: bool = False) -> tuple[str, ...]:
        value = node.get(key)
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value) \
                or (not value and not allow_empty):
            self.fail(node, f"must be a {'' if allow_empty else 'non-empty '}list of texts, got {value!r}", scope, key)
        return tuple(value)

    def number(self, node: dict, key: str, scope: str, *, whole: bool = False) -> float:
        value = self.require(node, key, (int, float), scope)
        if value <= 0 or (whole and not float(value).is_integer()):
            self.fail(node, f"must be a {'whole ' if whole else ''}number above 0, got {value!r}", scope, key)
        return value

    def choice(self, node: dict, key: str, scope: str, choices: tuple[str, ...]) -> str:
        value = self.require(node, key, str, scope)
        if value not in choices:
            self.fail(node, f"must be one of {', '.join(choices)}, got {value!r}", scope, key)
        return value

    def level(self, node: Any, seen: dict[str, str]) -> ServiceLevel:
        name = self.require(node, "name", str)
        self.keys(node, LEVEL_KEYS, name, "a service level", required=LEVEL_KEYS)
        tiers = self.texts(node, "tiers", name)
        for tier in tiers:
            if tier in seen:
                self.fail(node, f"tier {tier!r} is already covered by level {seen[tier]!r}", name, "tiers")
            seen[tier] = name
        return ServiceLevel(
            name=name, tiers=tiers, label=self.require(node, "label", str, name),
            response_time_hours=self.number(node, "response_time_hours", name),
            service_hours=self.require(node, "service_hours", str, name),
            dedicated_account_manager=self.require(node, "dedicated_account_manager", bool, name),
            support_channels=self.texts(node, "support_channels", name),
            visit_frequency=self.choice(node, "visit_frequency", name, FREQUENCIES),
            review_frequency=self.choice(node, "review_frequency", name, FREQUENCIES),
            discount_policy=self.require(node, "discount_policy", str, name),
            credit_policy=self.require(node, "credit_policy", str, name),
            benefits=self.texts(node, "benefits", name, allow_empty=True), line=yamlfile.line_of(node))

    def action(self, name: Any, node: Any, parent: dict) -> ActionTreatment:
        if not isinstance(node, dict):
            self.fail(parent, "must be a mapping with owner, contact_within_days and offer", str(name), key=name)
        self.keys(node, ACTION_KEYS, str(name), "an action", required=ACTION_KEYS)
        return ActionTreatment(action=str(name), owner=self.require(node, "owner", str, str(name)),
                               contact_within_days=int(self.number(node, "contact_within_days", str(name),
                                                                   whole=True)),
                               offer=self.require(node, "offer", str, str(name)))


def load_service_levels(path: Path, read: Reader = Path.read_bytes) -> ServiceLevels:
    """Load and check a service-level file; RuleError names the file, line, level and field."""
    doc, raw = parse_rule_file(path, read)
    check = _Checker(path)
    source = check.header(doc, raw, "service_levels")
    check.known_only(doc, ("kind", "version", "effective_date", "owner", "description", "levels", "actions"), None)
    nodes = check.require(doc, "levels", list)
    if not nodes:
        check.fail(doc, "must list at least one level", None, "levels")
    seen: dict[str, str] = {}
    levels = [check.level(node, seen) for node in nodes]
    names = [level.name for level in levels]
    for node, name in zip(nodes, names, strict=True):
        if names.count(name) > 1:
            check.fail(node, "duplicate level name", name, "name")
    actions_node = doc.get("actions") or {}
    if not isinstance(actions_node, dict):
        check.fail(doc, "must be a mapping of action name to its treatment", None, "actions")
    check.scope = "action"
    actions = {str(name): check.action(name, node, actions_node) for name, node in actions_node.items()}
    return ServiceLevels(source=source, levels=tuple(levels), actions=actions)


def check_coverage(levels: ServiceLevels, tiers: Iterable[str], actions: Iterable[str] = ()) -> list[str]:
    """Raise RuleError when a tier has no level; return warnings for actions without a treatment."""
    missing = [tier for tier in tiers if levels.for_tier(tier) is None]
    if missing:
        raise RuleError(f"{levels.source.path}: field 'levels': no service level covers tier(s) "
                        f"{', '.join(map(repr, missing))} of the tier file in force; add them to a level's tiers")
    return [f"{levels.source.path}: field 'actions': action {action!r} of the candidate rules has no treatment "
            "(owner, contact_within_days, offer); it is exported without one"
            for action in sorted(set(actions)) if action not in levels.actions]


def entitlements_frame(levels: ServiceLevels, tiers: tuple[str, ...]) -> pd.DataFrame:
    """One row per tier of ``tiers`` (lowest first) with its level's standard (marts.service_entitlements)."""
    rows = []
    for rank, tier in enumerate(tiers, start=1):
        level = levels.for_tier(tier)
        if level is None:
            check_coverage(levels, tiers)  # raises, naming every tier without a level
        rows.append({
            "tier": tier, "tier_rank": rank, "service_level": level.name, "label": level.label,
            "response_time_hours": float(level.response_time_hours), "service_hours": level.service_hours,
            "dedicated_account_manager": level.dedicated_account_manager,
            "support_channels": "; ".join(level.support_channels), "visit_frequency": level.visit_frequency,
            "review_frequency": level.review_frequency, "discount_policy": level.discount_policy,
            "credit_policy": level.credit_policy, "benefits": "; ".join(level.benefits),
            "rule_version": levels.source.version, "rules_sha256": levels.source.content_hash})
    return pd.DataFrame(rows)


def treatments_frame(levels: ServiceLevels) -> pd.DataFrame:
    """One row per action with its owner, contact deadline and offer (marts.action_treatments)."""
    return pd.DataFrame([{"action": t.action, "owner": t.owner, "contact_within_days": t.contact_within_days,
                          "offer": t.offer, "rule_version": levels.source.version,
                          "rules_sha256": levels.source.content_hash} for t in levels.actions.values()],
                        columns=["action", "owner", "contact_within_days", "offer", "rule_version", "rules_sha256"])
