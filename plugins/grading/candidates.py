"""Candidates: flag customers for elimination (淘汰) and win-back (挽回) by rule files.

Within a list, the first rule that holds gives the customer's reason and action, so each
customer appears at most once per list; a customer meeting any exemption of the list is
not listed. Win-back rules may look at the tier the customer had a year earlier, which
is graded here from the features as of that date with the same tier rules.
"""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from grading.features import features_as_of, load_features
from grading.rules import CandidateList, CandidateRules, TierRules, explain
from grading.tiers import assign_tiers
from grading.warehouse import bulk_insert, read_frame

FLAG_COLUMNS = ("customer_id", "flag", "rule_name", "reason", "action", "previous_tier", "rule_version")
YEAR = timedelta(days=365)


def _flag_list(frame: pd.DataFrame, rules: CandidateList, flag: str, version: str) -> pd.DataFrame:
    exempt = pd.Series(False, index=frame.index)
    for exemption in rules.exemptions:
        exempt |= exemption.when.evaluate(frame)
    taken = exempt.copy()
    parts = []
    for rule in rules.rules:
        hit = rule.when.evaluate(frame) & ~taken
        taken |= hit
        chosen = frame.loc[hit]
        parts.append(pd.DataFrame({
            "customer_id": chosen["customer_id"],
            "flag": flag,
            "rule_name": rule.name,
            "reason": explain(rule, chosen),
            "action": rule.action,
            "previous_tier": chosen["tier_year_ago"] if "tier_year_ago" in chosen else pd.NA,
            "rule_version": version,
        }))
    return pd.concat(parts) if parts else pd.DataFrame(columns=list(FLAG_COLUMNS))


def flag_candidates(graded: pd.DataFrame, rules: CandidateRules) -> pd.DataFrame:
    """Elimination and win-back rows for ``graded`` (features plus tier and tier_year_ago)."""
    version = rules.source.version
    flags = pd.concat([
        _flag_list(graded, rules.elimination, "elimination", version),
        _flag_list(graded, rules.win_back, "win_back", version),
    ], ignore_index=True)
    return flags[list(FLAG_COLUMNS)].astype({"previous_tier": "string"})


def with_tiers(features: pd.DataFrame, current: pd.DataFrame, year_ago: pd.DataFrame) -> pd.DataFrame:
    """Features joined with the current tier and the tier of a year earlier (missing if not a customer then)."""
    graded = features.merge(current[["customer_id", "tier", "tier_rank"]], on="customer_id", how="left")
    earlier = year_ago[["customer_id", "tier", "tier_rank"]].rename(
        columns={"tier": "tier_year_ago", "tier_rank": "tier_rank_year_ago"})
    return graded.merge(earlier, on="customer_id", how="left")


def flag(warehouse: Engine, as_of: date, tier_rules: TierRules, rules: CandidateRules) -> dict[str, int]:
    """Replace the staging flags of ``as_of``; returns the number of customers per list."""
    with warehouse.begin() as conn:
        features = load_features(conn, as_of)
        current = read_frame(conn, "SELECT customer_id, tier, tier_rank FROM staging.customer_tiers "
                                   "WHERE as_of_date = :as_of", {"as_of": as_of})
        year_ago = assign_tiers(features_as_of(conn, as_of - YEAR), tier_rules)
        flags = flag_candidates(with_tiers(features, current, year_ago), rules)
        flags.insert(0, "as_of_date", as_of)
        conn.execute(sa.text("DELETE FROM staging.customer_flags WHERE as_of_date = :as_of"), {"as_of": as_of})
        bulk_insert(conn, "staging.customer_flags", flags)
    counts = flags["flag"].value_counts()
    return {name: int(counts.get(name, 0)) for name in ("elimination", "win_back")}
