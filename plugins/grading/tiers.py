"""Tiers: assign every customer a tier by the tier rule file, with the reason.

Rules are tried in file order and the first that holds assigns the tier; customers
matched by none get the file's default tier. Each row records which rule decided and
the values that decided it, so any assignment can be explained to the customer.
"""

from __future__ import annotations

from datetime import date

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from grading.features import load_features
from grading.rules import TierRules, explain
from grading.warehouse import bulk_insert

TIER_COLUMNS = ("customer_id", "tier", "tier_rank", "tier_rule", "tier_reason", "rule_version")


def assign_tiers(features: pd.DataFrame, rules: TierRules) -> pd.DataFrame:
    """One row per customer of ``features``: tier, tier_rank, tier_rule, tier_reason, rule_version."""
    out = pd.DataFrame({"customer_id": features["customer_id"]}, index=features.index)
    out["tier"] = pd.Series(pd.NA, index=features.index, dtype="string")
    out["tier_rule"] = pd.Series(pd.NA, index=features.index, dtype="string")
    out["tier_reason"] = pd.Series(pd.NA, index=features.index, dtype="string")
    for rule in rules.rules:
        hit = rule.when.evaluate(features) & out["tier"].isna()
        out.loc[hit, "tier"] = rule.tier
        out.loc[hit, "tier_rule"] = rule.name
        out.loc[hit, "tier_reason"] = explain(rule, features.loc[hit])
    rest = out["tier"].isna()
    out.loc[rest, "tier"] = rules.default_tier
    out.loc[rest, "tier_rule"] = rules.default_name
    out.loc[rest, "tier_reason"] = f"{rules.default_name}: no tier rule matched"
    out["tier_rank"] = out["tier"].map({t: rules.rank(t) for t in rules.tiers}).astype("int64")
    out["rule_version"] = rules.source.version
    return out[list(TIER_COLUMNS)]


def grade(warehouse: Engine, as_of: date, rules: TierRules) -> pd.Series:
    """Replace the staging tier rows of ``as_of``; returns customers per tier."""
    with warehouse.begin() as conn:
        tiers = assign_tiers(load_features(conn, as_of), rules)
        tiers.insert(0, "as_of_date", as_of)
        conn.execute(sa.text("DELETE FROM staging.customer_tiers WHERE as_of_date = :as_of"), {"as_of": as_of})
        bulk_insert(conn, "staging.customer_tiers", tiers)
    return tiers["tier"].value_counts().reindex(list(rules.tiers), fill_value=0)
