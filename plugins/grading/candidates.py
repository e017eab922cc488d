"""Candidates: elimination (淘汰), win-back (挽回) and core (基盘) customers, by rule file.

Within a list, the first rule that holds gives the customer's reason, action and severity,
so each customer appears at most once per list; a customer meeting any exemption of the
list is not listed. Before the rules run, each customer's features are joined with what
the lists need from other periods: the tier and value a year earlier (graded here from the
features as of that date with the same tier rules), the best tier of the last periods,
and whether the customer is on the protected list.

Win-back candidates also get the likely reason they stopped (the first ``churn_reasons``
rule that holds, else "unknown"), its suggested action, and a priority: the value they
brought the year before times their likelihood of returning (1 - churn propensity).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from grading import periods
from grading.features import features_as_of, load_features
from grading.frames import bulk_insert, read_frame
from grading.periods import PERIOD_STATE_LOCK
from grading.rules.model import CandidateList, CandidateRules, TierRules, explain
from grading.tiers import assign_tiers
from grading.warehouse import analyze, exclusive

FLAG_COLUMNS = ("customer_id", "flag", "rule_name", "reason", "action", "severity", "previous_tier",
                "churn_reason", "priority", "value_before", "last_order_at", "rule_version", "rules_sha256",
                "periods_met", "control_group")
PENDING = "_pending"  # suffix of a guarded list's rows that have not met the criteria long enough yet
YEAR = timedelta(days=365)
RECENT_PERIODS = 4
# Used when no churn score exists (too little history to train): an even chance of return.
DEFAULT_RETURN_LIKELIHOOD = 0.5


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
            "customer_id": chosen["customer_id"], "flag": flag, "rule_name": rule.name,
            "reason": explain(rule, chosen), "action": rule.action, "severity": rule.severity,
            "rule_version": version,
        }, index=chosen.index))
    return pd.concat(parts) if parts else pd.DataFrame(columns=["customer_id", "flag"])


def churn_reasons(frame: pd.DataFrame, rules: CandidateRules) -> pd.DataFrame:
    """Per row: the likely churn reason (first matching rule, else unknown) and its suggested action."""
    reason = pd.Series("unknown", index=frame.index, dtype="string")
    action = pd.Series(rules.unknown_reason_action, index=frame.index, dtype="string")
    decided = pd.Series(False, index=frame.index)
    for rule in rules.churn_reasons:
        hit = rule.when.evaluate(frame) & ~decided
        reason[hit], action[hit] = rule.name, rule.action
        decided |= hit
    return pd.DataFrame({"churn_reason": reason, "reason_action": action})


def in_control_group(customer_ids: pd.Series, as_of: date, share: float) -> pd.Series:
    """Deterministic holdout: a hash of customer and period below ``share``. Reruns give the same groups."""
    def draw(customer_id: str) -> float:
        digest = hashlib.sha256(f"{customer_id}|{as_of.isoformat()}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    return customer_ids.map(draw) < share


def confirm(flags: pd.DataFrame, previous_met: pd.Series, rules: CandidateRules) -> pd.DataFrame:
    """Count consecutive periods each guarded list's rows have met a rule; rows short of the
    list's ``confirm_periods`` are renamed ``<list>_pending`` (kept in staging, not published)."""
    flags["periods_met"] = 1
    for name, rules_list in rules.lists().items():
        rows = flags["flag"] == name
        met = previous_met.get(name, pd.Series(dtype="int64"))
        before = pd.to_numeric(flags.loc[rows, "customer_id"].map(dict(met.items())), errors="coerce").fillna(0)
        flags.loc[rows, "periods_met"] = (before + 1).astype(int)
        short = rows & (flags["periods_met"] < rules_list.confirm_periods)
        flags.loc[short, "flag"] = name + PENDING
    return flags


def flag_candidates(graded: pd.DataFrame, rules: CandidateRules, as_of: date | None = None,
                    previous_met: dict[str, pd.Series] | None = None) -> pd.DataFrame:
    """Rows for every list (elimination, win_back, core) for ``graded`` customers.

    ``graded`` holds the features plus the columns of :func:`with_history`; ``previous_met``
    maps each list to the periods its customers had met it as of the previous period.
    """
    version = rules.source.version
    flags = pd.concat([_flag_list(graded, rules_list, name, version)
                       for name, rules_list in rules.lists().items()])
    flags["rules_sha256"] = rules.source.content_hash
    # True / False for rows eligible for the list's control draw; empty for the others.
    flags["control_group"] = pd.Series(pd.NA, index=flags.index, dtype="boolean")
    for name, rules_list in rules.lists().items():
        eligible = flags["flag"] == name
        if rules_list.control_actions is not None:
            eligible &= flags["action"].isin(rules_list.control_actions)
        if rules_list.control_share > 0 and eligible.any():
            flags.loc[eligible, "control_group"] = in_control_group(
                flags.loc[eligible, "customer_id"], as_of or date.min, rules_list.control_share)
    context = graded.loc[flags.index]
    flags["previous_tier"] = context.get("tier_year_ago", pd.Series(pd.NA, index=context.index))
    flags["value_before"] = context.get("monetary_year_ago", pd.Series(np.nan, index=context.index))
    flags["last_order_at"] = context.get("last_order_at", pd.Series(pd.NaT, index=context.index))
    why = churn_reasons(context, rules)
    likelihood = 1 - context.get("churn_propensity", pd.Series(np.nan, index=context.index)).astype(float)
    priority = (flags["value_before"].astype(float).fillna(0) * likelihood.fillna(DEFAULT_RETURN_LIKELIHOOD)).round(2)
    win_back = flags["flag"] == "win_back"
    flags["churn_reason"] = why["churn_reason"].where(win_back)
    flags["priority"] = priority.where(win_back)
    flags.loc[win_back, "action"] = why.loc[win_back, "reason_action"]
    flags = confirm(flags, previous_met or {}, rules)
    out = flags.reset_index(drop=True)[list(FLAG_COLUMNS)]
    return out.astype({"previous_tier": "string", "severity": "string", "churn_reason": "string",
                       "priority": "float64", "value_before": "float64", "control_group": "boolean"})


def periods_met_before(conn: Connection, as_of: date) -> dict[str, pd.Series]:
    """Per list, the consecutive periods each customer had met it at the previous graded period."""
    rows = read_frame(conn, (
        "SELECT flag, customer_id, periods_met FROM staging.customer_flags WHERE as_of_date = "
        "(SELECT MAX(as_of_date) FROM staging.customer_tiers WHERE as_of_date < :as_of)"
    ), {"as_of": as_of})
    rows["flag"] = rows["flag"].str.removesuffix(PENDING)
    return {name: group.set_index("customer_id")["periods_met"].astype(int) for name, group in rows.groupby("flag")}


def with_history(features: pd.DataFrame, current: pd.DataFrame, year_ago: pd.DataFrame,
                 year_ago_tiers: pd.DataFrame, peak_recent: pd.DataFrame, protected: frozenset[str]) -> pd.DataFrame:
    """Features joined with what the lists compare against: the tier now and a year ago, the value
    and average order a year ago, the best tier of recent periods, and the protected flag."""
    graded = features.merge(current[["customer_id", "tier", "tier_rank"]], on="customer_id", how="left")
    earlier = year_ago_tiers[["customer_id", "tier", "tier_rank"]].rename(
        columns={"tier": "tier_year_ago", "tier_rank": "tier_rank_year_ago"})
    before = year_ago[["customer_id", "monetary_365d", "avg_order_value_365d", "m_score"]].rename(columns={
        "monetary_365d": "monetary_year_ago", "avg_order_value_365d": "aov_year_ago", "m_score": "m_score_year_ago"})
    graded = graded.merge(earlier, on="customer_id", how="left").merge(before, on="customer_id", how="left")
    graded = graded.merge(peak_recent, on="customer_id", how="left")
    graded["peak_tier_rank_recent"] = graded[["peak_tier_rank_recent", "tier_rank"]].max(axis=1)
    graded["aov_change_year"] = (graded["avg_order_value_365d"] / graded["aov_year_ago"] - 1).where(
        graded["aov_year_ago"] > 0)
    graded["is_protected"] = graded["customer_id"].isin(protected).astype(int)
    return graded


def peak_tier_rank_recent(conn: Connection, as_of: date) -> pd.DataFrame:
    """The best tier rank each customer held in the last graded periods before ``as_of``."""
    return read_frame(conn, (
        "SELECT customer_id, MAX(tier_rank) AS peak_tier_rank_recent FROM staging.customer_tiers "
        "WHERE as_of_date < :as_of AND as_of_date IN (SELECT DISTINCT as_of_date FROM staging.customer_tiers "
        "WHERE as_of_date < :as_of ORDER BY as_of_date DESC LIMIT :periods) GROUP BY customer_id"
    ), {"as_of": as_of, "periods": RECENT_PERIODS})


def flag(warehouse: Engine, as_of: date, tier_rules: TierRules, rules: CandidateRules,
         run_id: str = "flags") -> dict[str, int]:
    """Replace the staging flags of ``as_of``; returns the number of customers per list.

    Written with the predecessor the confirmations carried on from, in one transaction that
    holds the period-state lock (grading.periods)."""
    with exclusive(warehouse, PERIOD_STATE_LOCK) as conn:
        # the year-ago features are computed first, before this period's frames are held
        # (the other way round the worker held a million-row frame during the feature query)
        year_ago = features_as_of(conn, as_of - YEAR, tier_rules.qualification)
        features = load_features(conn, as_of)
        current = read_frame(conn, "SELECT customer_id, tier, tier_rank FROM staging.customer_tiers "
                                   "WHERE as_of_date = :as_of", {"as_of": as_of})
        graded = with_history(features, current, year_ago, assign_tiers(year_ago, tier_rules),
                              peak_tier_rank_recent(conn, as_of), rules.protected_ids)
        flags = flag_candidates(graded, rules, as_of, periods_met_before(conn, as_of))
        flags.insert(0, "as_of_date", as_of)
        conn.execute(sa.text("DELETE FROM staging.customer_flags WHERE as_of_date = :as_of"), {"as_of": as_of})
        bulk_insert(conn, "staging.customer_flags", flags)
        periods.record_grade(conn, as_of, "flags", run_id, datetime.now(UTC).replace(tzinfo=None),
                             periods.frame_digest(flags, ["flag", "customer_id"]))
        analyze(conn, "staging.customer_flags")
    counts = flags["flag"].value_counts()
    return {name: int(counts.get(name, 0)) for name in rules.lists()}
