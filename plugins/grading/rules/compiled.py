"""Tier rules compiled to SQL: the tier, its rank, the rule and the reason as expressions.

The ``rules`` strategy of a tier file (first matching rule wins) becomes CASE expressions that
the warehouse evaluates where the features are, so a million customers are graded without
their features being read into pandas first. Every value of the file is a bound parameter;
feature names are placed in the SQL only once checked to be plain names (the rule checker
accepts only known features).

The reference is grading.rules.model: a condition means what grading.conditions says (a
missing value never meets a comparison, ``not_in`` never holds for a missing value) and the
reason reads as :func:`grading.rules.model.explain` writes it, down to how a number is shown
(as Python shows a float: 12000.0, 0.30000000000000004, 1e-05). DuckDB casts a DOUBLE to text
that way; PostgreSQL drops the ``.0`` of a whole number, which is added back for values under
10^15 (at and above it PostgreSQL writes an exponent where Python does not, from 10^16). Rules
naming a time feature are not compiled (:func:`tier_expressions` gives None): pandas shows a
column's timestamps at one common precision, SQL each at its own. tests/unit/rules/
test_compiled.py checks the compiled expressions against the reference on random customers on
both warehouses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from grading.conditions import SQL_COMPARISONS, SQL_NULL_TESTS
from grading.rules.model import Condition, Rule, TierRules

_NAME = re.compile(r"[a-z_][a-z0-9_]*")


@dataclass
class _Params:
    """Bound parameters of one compiled statement, named ``tr_<n>`` so they never meet the
    statement's own (``as_of``, the window's)."""

    values: dict[str, Any] = field(default_factory=dict)

    def bind(self, value: Any) -> str:
        name = f"tr_{len(self.values)}"
        self.values[name] = value
        return f":{name}"

    def text(self, value: str) -> str:
        """A text parameter, typed: PostgreSQL cannot infer the type of a bare parameter in
        ``||`` or in a CASE whose every branch is one."""
        return f"CAST({self.bind(value)} AS VARCHAR)"


@dataclass(frozen=True)
class TierExpressions:
    """SQL expressions over a relation holding the features the rules name.

    ``tier`` and ``tier_rank`` give the default tier where no rule holds; ``tier_rule`` and
    ``tier_reason`` are NULL there (the default's reason needs the distance to the next tier,
    which grading.tiers.default_reasons words).
    """

    tier: str
    tier_rank: str
    tier_rule: str
    tier_reason: str
    params: dict[str, Any]

    def select_list(self, *names: str) -> str:
        """``expr AS name, ...`` for ``names`` (all four when none are given)."""
        return ", ".join(f"{getattr(self, n)} AS {n}" for n in names or ("tier", "tier_rank", "tier_rule",
                                                                         "tier_reason"))


def _column(feature: str | None) -> str:
    if feature is None or not _NAME.fullmatch(feature):
        raise ValueError(f"not a feature name: {feature!r}")
    return feature


def condition_sql(condition: Condition, params: _Params) -> str:
    """``condition`` as a SQL boolean: NULL (never TRUE) where the reference says False."""
    if condition.combine is not None:
        joiner = " AND " if condition.combine == "all" else " OR "
        return "(" + joiner.join(condition_sql(child, params) for child in condition.children) + ")"
    column, op = _column(condition.feature), condition.op
    if op in SQL_NULL_TESTS:
        return f"({column} {SQL_NULL_TESTS[op]})"
    if op in ("in", "not_in"):
        listed = ", ".join(params.bind(v) for v in condition.value)
        # NOT IN over a NULL is NULL: a missing value is not "outside the list", as in the reference
        return f"({column} {'IN' if op == 'in' else 'NOT IN'} ({listed}))"
    return f"({column} {SQL_COMPARISONS[op]} {params.bind(condition.value)})"


def shown(feature: str, kind: str, dialect: str) -> str:
    """The feature's value as text, as the reference shows it (pandas' ``astype("string")``)."""
    column = _column(feature)
    if kind == "text" or dialect != "postgresql":
        return f"CAST({column} AS VARCHAR)"
    # PostgreSQL writes 12000 for 12000.0; an integer column is shown without a fraction
    return (f"CASE WHEN pg_typeof({column}) IN ('double precision'::regtype, 'real'::regtype) "
            f"AND {column} = trunc({column}) AND abs({column}) < 1e15 "
            f"THEN CAST(CAST(trunc({column}) AS NUMERIC) AS VARCHAR) || '.0' ELSE CAST({column} AS VARCHAR) END")


def reason_sql(rule: Rule, kinds: dict[str, str], dialect: str, params: _Params) -> str:
    """The rule's reason for a customer it holds for: its name, then every leaf that held with
    the value that met it, e.g. ``gold_band: monetary_window=12000.0 (>= 10000)``."""
    parts = [params.text(f"{rule.name}:")]
    for leaf in rule.when.leaves():
        said = leaf.describe().removeprefix(leaf.feature or "").strip()
        value = f"COALESCE({shown(leaf.feature, kinds[leaf.feature], dialect)}, 'missing')"
        part = f"{params.text(f' {leaf.feature}=')} || {value} || {params.text(f' ({said});')}"
        parts.append(f"CASE WHEN {condition_sql(leaf, params)} THEN {part} ELSE '' END")
    # the reference strips the last leaf's ';' (rstrip: every trailing one)
    return f"RTRIM({' || '.join(parts)}, ';')"


def tier_expressions(rules: TierRules, kinds: dict[str, str], dialect: str) -> TierExpressions | None:
    """The ``rules`` strategy of ``rules`` as SQL (``kinds``: feature -> number, text or time,
    as grading.features.RULE_FEATURES); None for the score and clustering strategies and for
    rules naming a time, which grading.tiers evaluates in pandas."""
    if rules.strategy != "rules" or any(kinds.get(leaf.feature) not in ("number", "text")
                                        for rule in rules.rules for leaf in rule.when.leaves()):
        return None
    params = _Params()
    matched = [(rule, condition_sql(rule.when, params)) for rule in rules.rules]

    def first_match(value_of, default: str) -> str:
        whens = " ".join(f"WHEN {held} THEN {value_of(rule)}" for rule, held in matched)
        return f"CASE {whens} ELSE {default} END" if whens else default

    return TierExpressions(
        tier=first_match(lambda r: params.text(r.tier), params.text(rules.default_tier)),
        tier_rank=first_match(lambda r: params.bind(rules.rank(r.tier)), params.bind(rules.rank(rules.default_tier))),
        tier_rule=first_match(lambda r: params.text(r.name), "CAST(NULL AS VARCHAR)"),
        tier_reason=first_match(lambda r: reason_sql(r, kinds, dialect, params), "CAST(NULL AS VARCHAR)"),
        params=params.values,
    )
