"""Rule files: load the YAML in include/rules/ and check it into the rule model (grading.rules.model).

Rules are data. A condition is a tree of ``all`` / ``any`` lists whose leaves compare one
feature with a literal (``{feature: orders_365d, op: "<", value: 5}``); operators come
from a fixed table, so no text from a rule file is ever executed. Every mistake is
reported with the file, the line, the rule and the field.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import date
from pathlib import Path
from typing import Any

from grading import yamlfile
from grading.catalog import load_catalogue
from grading.conditions import MEMBERSHIP, NULL_TESTS
from grading.errors import DataError
from grading.filecheck import FileChecker
from grading.qualification import REVIEWS, WINDOWS, Qualification
from grading.rules.model import (
    CANDIDATE_LISTS,
    OPERATORS,
    SEVERITIES,
    STRATEGIES,
    CandidateList,
    CandidateRules,
    Condition,
    Damping,
    ReviewPolicy,
    Rule,
    RuleFile,
    TierRules,
    WeightedFeature,
)
from grading.settings import include_dir


class RuleError(DataError, ValueError):
    """A rule file is not valid; the message names the file, line, rule and field."""


class RuleChecker(FileChecker):
    """Builds typed rules from parsed YAML, raising RuleError that points at the mistake."""

    error, scope = RuleError, "rule"

    def __init__(self, path: Path, features: Mapping[str, str] | Iterable[str]):
        super().__init__(path)
        # feature -> kind of value (number, text, time); a plain list of names is taken as numbers
        self.features = dict(features) if isinstance(features, Mapping) else dict.fromkeys(features, "number")

    def require(self, node: dict, key: str, kind: type | tuple[type, ...], rule: str | None = None) -> Any:
        if not isinstance(node, dict) or key not in node:
            self.fail(node, "is required", rule, key)
        value = node[key]
        if not isinstance(value, kind) or isinstance(value, bool) and bool not in _as_tuple(kind):
            names = " or ".join(t.__name__ for t in _as_tuple(kind))
            self.fail(node, f"must be {names}, got {type(value).__name__} {value!r}", rule, key)
        return value

    def header(self, doc: Any, raw: bytes, kind: str) -> RuleFile:
        if not isinstance(doc, dict):
            self.fail(doc, "a rule file must be a mapping with kind, version, effective_date, owner and description")
        found = self.require(doc, "kind", str)
        if found != kind:
            self.fail(doc, f"expected kind {kind!r}, found {found!r}", None, "kind")
        version = self.require(doc, "version", (str, int, float))
        effective = self.require(doc, "effective_date", date)
        return RuleFile(
            path=self.path, kind=kind, version=str(version), effective_date=effective,
            owner=self.require(doc, "owner", str), description=self.require(doc, "description", str),
            content_hash=hashlib.sha256(raw).hexdigest(), body=doc,
        )

    def condition(self, node: Any, rule: str, field_name: str = "when") -> Condition:
        if not isinstance(node, dict):
            self.fail(node, "a condition must be a mapping: all/any, or feature/op/value", rule, field_name)
        groups = [k for k in ("all", "any") if k in node]
        if not groups:
            return self.leaf(node, rule, field_name)
        if len(node) != 1:
            self.fail(node, "a group holds exactly one key, 'all' or 'any'", rule, field_name)
        children = node[groups[0]]
        if not isinstance(children, list) or not children:
            self.fail(node, f"'{groups[0]}' must be a non-empty list of conditions", rule, field_name)
        return Condition(combine=groups[0], children=tuple(self.condition(c, rule, groups[0]) for c in children))

    def leaf(self, node: dict, rule: str, field_name: str) -> Condition:
        """``{feature, op, value}``: a known feature, a known operator and a value of the feature's kind."""
        self.known_only(node, ("feature", "op", "value"), rule, field_name, "; a leaf has feature, op and value")
        feature = self.require(node, "feature", str, rule)
        if feature not in self.features:
            self.fail(node, f"unknown feature {feature!r}; known: {', '.join(sorted(self.features))}", rule, "feature")
        op = self.require(node, "op", str, rule)
        if op not in OPERATORS:
            self.fail(node, f"unknown operator {op!r}; use one of {', '.join(OPERATORS)}", rule, "op")
        if op in NULL_TESTS:
            if "value" in node:
                self.fail(node, f"{op} takes no value", rule, "value")
            return Condition(feature=feature, op=op)
        if "value" not in node:
            self.fail(node, f"{op} needs a value", rule, "value")
        value, kind = node["value"], self.features[feature]
        if op in MEMBERSHIP:
            if not isinstance(value, list) or not value:
                self.fail(node, f"{op} needs a non-empty list", rule, "value")
            for item in value:
                self.typed(node, item, feature, kind, rule)
            return Condition(feature=feature, op=op, value=tuple(value))
        if kind == "text" and op not in ("==", "!="):
            self.fail(node, f"{feature} holds text: compare it with ==, !=, in or not_in, not {op}", rule, "op")
        return Condition(feature=feature, op=op, value=self.typed(node, value, feature, kind, rule))

    def known_only(self, node: dict, allowed: Iterable[str], rule: str | None, field_name: str | None = None,
                   hint: str = "") -> None:
        """Fail on keys of ``node`` not in ``allowed``, listed sorted."""
        unknown = self.unknown_keys(node, allowed)
        if unknown:
            self.fail(node, f"unknown keys {sorted(unknown)}{hint}", rule, field_name)

    def typed(self, node: Any, value: Any, feature: str, kind: str, rule: str) -> Any:
        """``value`` if it is a value of ``feature``'s kind: a finite number, a text or a date."""
        if kind == "number":
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                quoted = isinstance(value, str) and re.fullmatch(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*", value)
                self.fail(node, f"{feature} is a number, so the value must be one, not {value!r}"
                          + (" (a quoted number is text: drop the quotes)" if quoted else ""), rule, "value")
            if not math.isfinite(value):
                self.fail(node, f"the value must be a finite number, not {value!r}", rule, "value")
        elif kind == "text" and not isinstance(value, str):
            self.fail(node, f"{feature} holds text, so the value must be text, not {value!r} (quote it)", rule, "value")
        elif kind == "time" and not isinstance(value, date):
            self.fail(node, f"{feature} is a time, so the value must be a date (2024-12-31), not {value!r}", rule,
                      "value")
        return value

    def rules(self, nodes: Any, section: str, need: tuple[str, ...] = ()) -> tuple[Rule, ...]:
        if nodes is None:
            return ()
        if not isinstance(nodes, list):
            self.fail(nodes, f"'{section}' must be a list of rules", None, section)
        built, seen = [], set()
        for node in nodes:
            name = self.require(node, "name", str)
            if name in seen:
                self.fail(node, "duplicate rule name", name, "name")
            seen.add(name)
            self.known_only(node, ("name", "description", "when", "tier", "action", "severity",
                                   *(("tiers",) if section == "elimination.rules" else ())), name)
            values = {k: self.require(node, k, str, name) for k in need}
            if "tiers" in node:
                tiers = node["tiers"]
                if not isinstance(tiers, list) or not tiers or not all(isinstance(t, str) for t in tiers):
                    self.fail(node, f"must be a non-empty list of tier names, got {tiers!r}", name, "tiers")
                values["tiers"] = tuple(tiers)
            severity = node.get("severity")
            if severity is not None and severity not in SEVERITIES:
                self.fail(node, f"must be one of {', '.join(SEVERITIES)}, got {severity!r}", name, "severity")
            built.append(Rule(name=name, when=self.condition(node.get("when"), name),
                              description=str(node.get("description", "")), severity=severity,
                              line=yamlfile.line_of(node), **values))
        return tuple(built)


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


# How a rule file's bytes are read: from disk, or from the copy a run pinned (grading.rules.pins).
Reader = Callable[[Path], bytes]


def parse_rule_file(path: Path, read: Reader = Path.read_bytes) -> tuple[Any, bytes]:
    """The YAML document of a rule file and its bytes; RuleError when it cannot be read or parsed."""
    try:
        raw = read(path)
    except FileNotFoundError:
        raise RuleError(f"{path}: no such rule file") from None
    except IsADirectoryError:
        raise RuleError(f"{path}: a folder, not a rule file") from None
    try:
        return yamlfile.load(path, raw), raw
    except yamlfile.YamlError as exc:
        raise RuleError(str(exc)) from None


def load_tier_rules(path: Path, features: Iterable[str], read: Reader = Path.read_bytes) -> TierRules:
    """Load and check a tier rule file against the features the pipeline computes."""
    doc, raw = parse_rule_file(path, read)
    check = RuleChecker(path, features)
    source = check.header(doc, raw, "tiers")
    tiers = check.require(doc, "tiers", list)
    if len(tiers) < 2 or len(set(tiers)) != len(tiers) or not all(isinstance(t, str) for t in tiers):
        check.fail(doc, "must list two or more distinct tier names, lowest first", None, "tiers")
    strategy = doc.get("strategy", "rules")
    if strategy not in STRATEGIES:
        check.fail(doc, f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}", None, "strategy")
    default = check.require(doc, "default", dict)
    default_tier = check.require(default, "tier", str, "default")
    if default_tier not in tiers:
        check.fail(default, f"tier {default_tier!r} is not one of {tiers}", "default", "tier")
    common = {"source": source, "tiers": tuple(tiers), "default_tier": default_tier,
              "default_name": str(default.get("name", "default")), "strategy": strategy,
              "damping": _damping(check, doc.get("damping")),
              "qualification": _qualification(check, doc.get("qualification"))}
    if strategy == "rules":
        rules = check.rules(doc.get("rules"), "rules", need=("tier",))
        for rule, node in zip(rules, doc.get("rules") or [], strict=True):
            if rule.tier not in tiers:
                check.fail(node, f"tier {rule.tier!r} is not one of {tiers}", rule.name, "tier")
        return TierRules(**common, rules=rules)
    if strategy == "weighted_score":
        return TierRules(**common, weights=_weights(check, doc), score_bands=_score_bands(check, doc, tiers))
    cluster = check.require(doc, "kmeans", dict)
    features = check.require(cluster, "features", list, "kmeans")
    for feature in features:
        if check.features.get(feature) != "number":
            check.fail(cluster, f"unknown or not numeric feature {feature!r}", "kmeans", "features")
    order_by = check.require(cluster, "order_by", str, "kmeans")
    if order_by not in check.features:
        check.fail(cluster, f"unknown feature {order_by!r}", "kmeans", "order_by")
    return TierRules(**common, cluster_features=tuple(features), cluster_order_by=order_by,
                     seed=int(check.require(cluster, "seed", int, "kmeans")))


def _damping(check: RuleChecker, node: Any) -> Damping:
    if node is None:
        return Damping()
    if not isinstance(node, dict):
        check.fail(node, "must be a mapping", "damping")
    after = node.get("downgrade_after_periods", 1)
    steps = node.get("max_steps_down")
    if not _whole(after, 1):
        check.fail(node, f"must be a whole number of periods, 1 or more, got {after!r}", "damping",
                   "downgrade_after_periods")
    if steps is not None and not _whole(steps, 1):
        check.fail(node, f"must be a whole number, 1 or more, got {steps!r}", "damping", "max_steps_down")
    return Damping(downgrade_after_periods=after, max_steps_down=steps)


def _whole(value: Any, lowest: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= lowest


def _qualification(check: RuleChecker, node: Any) -> Qualification:
    if node is None:
        return Qualification()
    if not isinstance(node, dict):
        check.fail(node, "must be a mapping with window, days, review and grace_days", "qualification")
    check.known_only(node, ("window", "days", "review", "grace_days"), "qualification")
    window = node.get("window", "rolling")
    if window not in WINDOWS:
        check.fail(node, f"unknown window {window!r}; use one of {', '.join(WINDOWS)}", "qualification", "window")
    days = node.get("days", 365)
    if "days" in node and window != "rolling":
        check.fail(node, f"days applies to a rolling window only, not to {window}", "qualification", "days")
    if not _whole(days, 1):
        check.fail(node, f"must be a whole number of days, 1 or more, got {days!r}", "qualification", "days")
    review = node.get("review", "every_period")
    if review not in REVIEWS:
        check.fail(node, f"unknown review {review!r}; use one of {', '.join(REVIEWS)}", "qualification", "review")
    grace = node.get("grace_days", 0)
    if not _whole(grace, 0):
        check.fail(node, f"must be a whole number of days, 0 or more, got {grace!r}", "qualification", "grace_days")
    return Qualification(window=window, days=days, review=review, grace_days=grace)


def _weights(check: RuleChecker, doc: dict) -> tuple[WeightedFeature, ...]:
    nodes = check.require(doc, "weights", list)
    terms = []
    for node in nodes:
        feature = check.require(node, "feature", str, "weights")
        if check.features.get(feature) != "number":
            check.fail(node, f"unknown or not numeric feature {feature!r}", "weights", "feature")
        weight = check.require(node, "weight", (int, float), "weights")
        if weight <= 0:
            check.fail(node, f"must be above 0, got {weight}", "weights", "weight")
        better = node.get("better", "higher")
        if better not in ("higher", "lower"):
            check.fail(node, f"must be 'higher' or 'lower', got {better!r}", "weights", "better")
        missing = node.get("missing", 0.0)
        if not isinstance(missing, (int, float)) or not 0 <= missing <= 1:
            check.fail(node, f"must be a percentile from 0 to 1, got {missing!r}", "weights", "missing")
        terms.append(WeightedFeature(feature, float(weight), better == "higher", float(missing)))
    if not terms:
        check.fail(doc, "needs at least one feature", None, "weights")
    return tuple(terms)


def _score_bands(check: RuleChecker, doc: dict, tiers: list[str]) -> tuple[tuple[str, float], ...]:
    node = check.require(doc, "score_bands", dict)
    bands = []
    for tier, lowest in node.items():
        if tier not in tiers:
            check.fail(node, f"tier {tier!r} is not one of {tiers}", "score_bands", tier)
        if not isinstance(lowest, (int, float)) or not 0 <= lowest <= 100:
            check.fail(node, f"lowest score must be from 0 to 100, got {lowest!r}", "score_bands", tier)
        bands.append((tier, float(lowest)))
    return tuple(sorted(bands, key=lambda band: -band[1]))


def _control_power(check: RuleChecker, node: dict, section: str) -> dict:
    """``control_power: {detect, expected_rate, max_share}`` of a list, checked (each a share)."""
    power = node.get("control_power")
    if power is None:
        return {}
    if "control_share" in node:
        check.fail(node, "give control_share or control_power, not both", section, "control_power")
    if not isinstance(power, dict):
        check.fail(node, "must be a mapping with detect (and expected_rate, max_share)", section, "control_power")
    check.known_only(power, ("detect", "expected_rate", "max_share"), None, f"{section}.control_power")
    values = {"detect": power.get("detect"), "expected_rate": power.get("expected_rate", 0.2),
              "max_share": power.get("max_share", 0.5)}
    for field, value in values.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < 1:
            check.fail(power, f"must be a share above 0 and below 1, got {value!r}", f"{section}.control_power",
                       field)
    return {"control_effect": float(values["detect"]), "control_expected_rate": float(values["expected_rate"]),
            "control_max_share": float(values["max_share"])}


def load_candidate_rules(path: Path, features: Iterable[str], read: Reader = Path.read_bytes) -> CandidateRules:
    """Load and check an elimination / win-back / core rule file (and its protected list)."""
    doc, raw = parse_rule_file(path, read)
    check = RuleChecker(path, features)
    source = check.header(doc, raw, "candidates")
    lists = {}
    for section in CANDIDATE_LISTS:
        node = check.require(doc, section, dict)
        check.known_only(node, ("rules", "exemptions", "churn_reasons", "unknown_reason_action", "confirm_periods",
                                "control_share", "control_power", "control_actions",
                                *(("review",) if section == "elimination"
                                                                      else ())), None, section)
        confirm = node.get("confirm_periods", 1)
        if not _whole(confirm, 1):
            check.fail(node, f"must be a whole number of periods, 1 or more, got {confirm!r}", section,
                       "confirm_periods")
        share = node.get("control_share", 0.0)
        if not isinstance(share, (int, float)) or isinstance(share, bool) or not 0 <= share < 1:
            check.fail(node, f"must be a share from 0 to below 1, got {share!r}", section, "control_share")
        actions = node.get("control_actions")
        if actions is not None and (not isinstance(actions, list) or not all(isinstance(a, str) for a in actions)):
            check.fail(node, "must be a list of action names", section, "control_actions")
        lists[section] = CandidateList(
            rules=check.rules(node.get("rules"), f"{section}.rules", need=("action",)),
            exemptions=check.rules(node.get("exemptions"), f"{section}.exemptions"),
            confirm_periods=confirm, control_share=float(share),
            control_actions=tuple(actions) if actions is not None else None,
            **_control_power(check, node, section),
        )
    win_back = doc["win_back"]
    reasons = check.rules(win_back.get("churn_reasons"), "win_back.churn_reasons", need=("action",))
    protected, protected_path = frozenset(), None
    if doc.get("protected_list") is not None:
        protected_path = yamlfile.inside(path.parent, str(doc["protected_list"]))
        if protected_path is None:
            check.fail(doc, f"{doc['protected_list']!r} is outside the folder of the rule file ({path.parent}); "
                            "name a file in that folder", None, "protected_list")
        try:
            lines = read(protected_path).decode("utf-8").splitlines()
        except (FileNotFoundError, IsADirectoryError):
            check.fail(doc, f"file {protected_path} does not exist", None, "protected_list")
        protected = frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))
    return CandidateRules(source=source, churn_reasons=reasons, protected_ids=protected,
                          protected_list=protected_path,
                          unknown_reason_action=str(win_back.get("unknown_reason_action", "personal_call")),
                          precedence=_precedence(check, doc), review=_review(check, doc["elimination"]), **lists)


def _precedence(check: RuleChecker, doc: dict) -> tuple[str, ...]:
    order = doc.get("precedence", list(CandidateRules.precedence))
    if not isinstance(order, list) or sorted(order) != sorted(CANDIDATE_LISTS):
        check.fail(doc, f"must name each list once ({', '.join(CANDIDATE_LISTS)}), first the one that wins; "
                        f"got {order!r}", None, "precedence")
    return tuple(order)


def _review(check: RuleChecker, elimination: dict) -> ReviewPolicy:
    node = elimination.get("review")
    if node is None:
        return ReviewPolicy()
    check.keys(node, ("proposal_expiry_days", "material_change"), "elimination.review", "the review policy")
    expiry = node.get("proposal_expiry_days", ReviewPolicy.proposal_expiry_days)
    if expiry is not None and not _whole(expiry, 1):
        check.fail(node, f"must be a whole number of days, 1 or more (or null: never), got {expiry!r}",
                   "elimination.review", "proposal_expiry_days")
    changes = node.get("material_change", dict(ReviewPolicy.material_change))
    if not isinstance(changes, dict):
        check.fail(node, "must map features to the relative change that is material (0.25 = a quarter)",
                   "elimination.review", "material_change")
    snapshot = load_catalogue()["customer_features_snapshot"]["columns"]
    for feature, share in changes.items():
        if feature not in snapshot or check.features.get(feature) != "number":
            check.fail(changes, f"{feature!r} is not a numeric column of marts.customer_features_snapshot",
                       "elimination.review", "material_change", key=feature)
        if not isinstance(share, (int, float)) or isinstance(share, bool) or share <= 0:
            check.fail(changes, f"must be a share above 0, got {share!r}", "elimination.review", feature,
                       key=feature)
    return ReviewPolicy(proposal_expiry_days=expiry, material_change=tuple((str(f), float(s))
                                                                           for f, s in changes.items()))


def rules_dir() -> Path:
    return include_dir() / "rules"
