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
import logging
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from grading import periods
from grading.features import load_features, stored_columns
from grading.frames import bulk_insert, read_frame
from grading.periods import PERIOD_STATE_LOCK
from grading.power import control_needed
from grading.rules.model import CandidateList, CandidateRules, TierRules, explain
from grading.tiers import tiers_as_of
from grading.warehouse import analyze, exclusive

log = logging.getLogger(__name__)

FLAG_COLUMNS = ("customer_id", "flag", "rule_name", "reason", "action", "severity", "previous_tier",
                "churn_reason", "priority", "value_before", "last_order_at", "rule_version", "rules_sha256",
                "periods_met", "control_group", "exemption")
PENDING = "_pending"  # suffix of a guarded list's rows that have not met the criteria long enough yet
EXEMPT = "_exempt"  # suffix of the rows of customers a rule met but an exemption kept off the list
YEAR = timedelta(days=365)
RECENT_PERIODS = 4
# What the lists compare with a year ago (with_history), besides the tier then
YEAR_AGO_COLUMNS = ("customer_id", "monetary_365d", "avg_order_value_365d", "m_score")
# What the lists read of this period's features besides what their rules name (with_history,
# flag_candidates: the last order and the average order compared with a year ago)
FLAG_COLUMNS_READ = ("customer_id", "last_order_at", "avg_order_value_365d")
# Used when no churn score exists (too little history to train): an even chance of return.
DEFAULT_RETURN_LIKELIHOOD = 0.5


def _exemption_masks(frame: pd.DataFrame, rules: CandidateList, listed_before: dict[str, pd.Series]
                     ) -> list[tuple[str, pd.Series, Callable[[pd.DataFrame], pd.Series]]]:
    """(name, applies, reason of the rows given) per exemption, in the order they are reported: a
    list of higher precedence first (one action per customer and period), then the list's own.
    Reasons are written for the exempted rows only: explaining every customer costs string work
    on the whole frame."""
    def listed_on(name: str) -> Callable[[pd.DataFrame], pd.Series]:
        return lambda rows: pd.Series(f"listed on {name} this period, which takes precedence", index=rows.index,
                                      dtype="string")

    def exempted_by(exemption) -> Callable[[pd.DataFrame], pd.Series]:
        return lambda rows: explain(exemption, rows)

    masks = [(f"listed_on_{name}", listed, listed_on(name)) for name, listed in listed_before.items()]
    return masks + [(e.name, e.when.evaluate(frame), exempted_by(e)) for e in rules.exemptions]


def _flag_list(frame: pd.DataFrame, rules: CandidateList, flag: str, version: str,
               listed_before: dict[str, pd.Series], lowest_tier: str | None = None) -> pd.DataFrame:
    """The list's rows: the first rule that holds lists a customer unless an exemption applies;
    customers a rule met but an exemption kept off are rows of flag ``<list>_exempt``.

    With ``lowest_tier`` (elimination), a rule lists only the tiers it names, by default the
    lowest: a customer of a higher tier whom no rule may list is kept off as ``higher_tier``.
    """
    taken = pd.Series(False, index=frame.index)
    met_first = pd.Series(pd.NA, index=frame.index, dtype="string")  # first rule met, tier aside
    rule_of = pd.Series(pd.NA, index=frame.index, dtype="string")
    by_name = {rule.name: rule for rule in rules.rules}
    reasons = pd.Series(pd.NA, index=frame.index, dtype="string")
    for rule in rules.rules:
        holds = rule.when.evaluate(frame)
        met_first = met_first.mask(met_first.isna() & holds, rule.name)
        allowed = frame["tier"].isin(rule.tiers or (lowest_tier,)) if lowest_tier else True
        hit = holds & allowed & ~taken
        taken |= hit
        rule_of[hit] = rule.name
        reasons[hit] = explain(rule, frame.loc[hit])
    exemption = pd.Series(pd.NA, index=frame.index, dtype="string")
    exemption_reason = pd.Series(pd.NA, index=frame.index, dtype="string")
    for name, applies, why in _exemption_masks(frame, rules, listed_before):
        fresh = taken & applies & exemption.isna()
        if fresh.any():
            exemption[fresh], exemption_reason[fresh] = name, why(frame.loc[fresh])
    if lowest_tier:
        kept_off = ~taken & met_first.notna()
        exemption[kept_off] = "higher_tier"
        exemption_reason[kept_off] = ("tier " + frame.loc[kept_off, "tier"].astype("string")
                                      + ": no rule met lists that tier (elimination lists the lowest tier, "
                                      + lowest_tier + ", unless a rule names another)")
        rule_of[kept_off] = met_first[kept_off]
        for name in met_first[kept_off].unique():
            rows = kept_off & (met_first == name)
            reasons[rows] = explain(by_name[name], frame.loc[rows])
    rows = rule_of.notna()
    chosen = frame.loc[rows]
    exempt = exemption[rows].notna()
    return pd.DataFrame({
        "customer_id": chosen["customer_id"],
        "flag": exempt.map({True: flag + EXEMPT, False: flag}),
        "rule_name": rule_of[rows],
        "reason": reasons[rows].where(~exempt, exemption_reason[rows] + "; met " + reasons[rows]),
        "action": rule_of[rows].map({r.name: r.action for r in rules.rules}),
        "severity": rule_of[rows].map({r.name: r.severity for r in rules.rules}),
        "rule_version": version,
        "exemption": exemption[rows],
    }, index=chosen.index)


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


def control_share(rules_list: CandidateList, name: str, eligible: int) -> float:
    """The share of a list's eligible rows to hold out: ``control_share`` as written, or - with
    ``control_power`` - what detecting its effect needs (0, with a warning, when the list is too
    small to hold such a group within ``max_share``)."""
    if rules_list.control_effect is None:
        return rules_list.control_share
    if not eligible:
        return 0.0
    needed = control_needed(eligible, rules_list.control_expected_rate, rules_list.control_effect)
    if needed is None or needed / eligible > rules_list.control_max_share:
        log.warning("%s: %d customers cannot hold a control group that detects an uplift of %g points at a %.0f%% "
                    "return rate (needs %s, at most %.0f%% of the list): no control group drawn this period",
                    name, eligible, rules_list.control_effect * 100, rules_list.control_expected_rate * 100,
                    "more than the whole list" if needed is None else f"{needed:,}", rules_list.control_max_share * 100)
        return 0.0
    return needed / eligible


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
                    previous_met: dict[str, pd.Series] | None = None,
                    lowest_tier: str | None = None) -> pd.DataFrame:
    """Rows for every list (elimination, win_back, core) for ``graded`` customers.

    ``graded`` holds the features plus the columns of :func:`with_history`; ``previous_met``
    maps each list to the periods its customers had met it as of the previous period. Lists
    are filled in the rules' order of precedence: a customer one list names is exempt from
    the lists after it. With ``lowest_tier``, elimination rules list that tier only unless
    they name others.
    """
    version = rules.source.version
    parts, listed_before = [], {}
    for name, rules_list in rules.lists().items():  # in precedence order
        part = _flag_list(graded, rules_list, name, version, dict(listed_before),
                          lowest_tier if name == "elimination" else None)
        listed_before[name] = graded.index.isin(part.index[part["flag"] == name])
        parts.append(part)
    flags = pd.concat(parts)
    flags["rules_sha256"] = rules.source.content_hash
    # True / False for rows eligible for the list's control draw; empty for the others.
    flags["control_group"] = pd.Series(pd.NA, index=flags.index, dtype="boolean")
    for name, rules_list in rules.lists().items():
        eligible = flags["flag"] == name
        if rules_list.control_actions is not None:
            eligible &= flags["action"].isin(rules_list.control_actions)
        share = control_share(rules_list, name, int(eligible.sum()))
        if share > 0 and eligible.any():
            flags.loc[eligible, "control_group"] = in_control_group(
                flags.loc[eligible, "customer_id"], as_of or date.min, share)
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
                       "priority": "float64", "value_before": "float64", "control_group": "boolean",
                       "exemption": "string"})


def periods_met_before(conn: Connection, as_of: date) -> dict[str, pd.Series]:
    """Per list, the consecutive periods each customer had met it at the previous graded period."""
    rows = read_frame(conn, (
        "SELECT flag, customer_id, periods_met FROM staging.customer_flags WHERE as_of_date = "
        "(SELECT MAX(as_of_date) FROM staging.customer_tiers WHERE as_of_date < :as_of)"
    ), {"as_of": as_of})
    rows["flag"] = rows["flag"].str.removesuffix(PENDING)
    return {name: group.set_index("customer_id")["periods_met"].astype(int) for name, group in rows.groupby("flag")}


def pending_counts(conn: Connection, as_of: date) -> dict[str, int]:
    """Per list, the customers of ``as_of`` who meet its criteria but not yet for its
    ``confirm_periods`` (staging flags ``<list>_pending``: kept in staging, never published)."""
    rows = read_frame(conn, "SELECT flag, COUNT(*) AS n FROM staging.customer_flags WHERE as_of_date = :as_of "
                            "GROUP BY flag", {"as_of": as_of})
    return {flag.removesuffix(PENDING): int(n) for flag, n in rows.itertuples(index=False) if flag.endswith(PENDING)}


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


def features_read(rules: CandidateRules) -> tuple[str, ...]:
    """The stored feature columns drawing the lists by ``rules`` reads: what their conditions
    name and :data:`FLAG_COLUMNS_READ` (at a million customers the whole snapshot is 35 columns)."""
    return stored_columns((*FLAG_COLUMNS_READ, *sorted(rules.named_features())))


def flag(warehouse: Engine, as_of: date, tier_rules: TierRules, rules: CandidateRules,
         run_id: str = "flags") -> dict[str, int]:
    """Replace the staging flags of ``as_of``; returns the number of customers per list.

    Written with the predecessor the confirmations carried on from, in one transaction that
    holds the period-state lock (grading.periods)."""
    with exclusive(warehouse, PERIOD_STATE_LOCK) as conn:
        # the year-ago features are computed first, before this period's frames are held
        # (the other way round the worker held a million-row frame during the feature query)
        year_ago = tiers_as_of(conn, as_of - YEAR, tier_rules, YEAR_AGO_COLUMNS)
        features = load_features(conn, as_of, features_read(rules))
        current = read_frame(conn, "SELECT customer_id, tier, tier_rank FROM staging.customer_tiers "
                                   "WHERE as_of_date = :as_of", {"as_of": as_of})
        graded = with_history(features, current, year_ago, year_ago, peak_tier_rank_recent(conn, as_of),
                              rules.protected_ids)
        flags = flag_candidates(graded, rules, as_of, periods_met_before(conn, as_of), tier_rules.tiers[0])
        flags.insert(0, "as_of_date", as_of)
        conn.execute(sa.text("DELETE FROM staging.customer_flags WHERE as_of_date = :as_of"), {"as_of": as_of})
        bulk_insert(conn, "staging.customer_flags", flags)
        periods.record_grade(conn, as_of, "flags", run_id, datetime.now(UTC).replace(tzinfo=None),
                             periods.frame_digest(flags, ["flag", "customer_id"]))
        analyze(conn, "staging.customer_flags")
    counts = flags["flag"].value_counts()
    return {name: int(counts.get(name, 0)) for name in rules.lists()}
