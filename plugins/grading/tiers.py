"""Tiers: assign every customer a tier by the tier rule file, explain it, and damp changes.

Three strategies, chosen by the file's ``strategy``:

- ``rules``: conditions tried in file order, the first that holds assigns the tier (value
  bands, RFM score conditions, rules scoped to a region or industry);
- ``weighted_score``: a 0-100 score from the customer's percentile on each weighted
  feature (sales, profit contribution, cooperation history, satisfaction ...), cut into
  tiers by ``score_bands``;
- ``kmeans``: scikit-learn k-means (seeded) on chosen features, clusters ranked by their
  mean of ``order_by`` and mapped onto the tiers lowest first.

Every row records the rule (or score, or cluster) and the values that decided it. Damping
then compares with the customer's previous period: upgrades are immediate, downgrades wait
``downgrade_after_periods`` consecutive periods and drop at most ``max_steps_down`` tiers.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from grading.features import load_features
from grading.rules import TierRules, explain
from grading.warehouse import bulk_insert, read_frame

TIER_COLUMNS = ("customer_id", "tier", "tier_rank", "tier_rule", "tier_reason", "rule_version")
STAGED_COLUMNS = (*TIER_COLUMNS, "assigned_tier", "periods_below", "rules_sha256", "spend_to_next_tier",
                  "orders_to_next_tier", "spend_to_keep_tier")
# Smallest step of money and of order counts, for strict thresholds ("more than 50,000").
CENT = 0.01


def _floor(rules: TierRules, tier: str, feature: str) -> float | None:
    """The lowest value of ``feature`` the first rule giving ``tier`` asks for (> or >= comparisons)."""
    for rule in rules.rules:
        if rule.tier != tier:
            continue
        for leaf in rule.when.leaves():
            if leaf.feature == feature and leaf.op in (">", ">=") and isinstance(leaf.value, (int, float)):
                step = CENT if feature == "monetary_365d" else 1
                return float(leaf.value) + (step if leaf.op == ">" else 0)
        return None
    return None


def distances(features: pd.DataFrame, held: pd.DataFrame, rules: TierRules) -> pd.DataFrame:
    """Per customer: spend and orders (365-day window) still needed to reach the next tier, and
    spend needed to keep the tier held at the next review (0 when already enough).

    Read from the value thresholds of the ``rules`` strategy (other conditions of a rule may
    apply as well); empty for the score and clustering strategies and at the top tier.
    """
    out = pd.DataFrame(index=held.index, columns=["spend_to_next_tier", "orders_to_next_tier", "spend_to_keep_tier"],
                       dtype="float64")
    if rules.strategy != "rules":
        return out
    spend = features["monetary_365d"].astype(float).to_numpy()
    orders = features["orders_365d"].astype(float).to_numpy()
    for position, tier in enumerate(rules.tiers):
        here = (held["tier"] == tier).to_numpy()
        if position + 1 < len(rules.tiers):
            upper = rules.tiers[position + 1]
            for column, values, feature in (("spend_to_next_tier", spend, "monetary_365d"),
                                            ("orders_to_next_tier", orders, "orders_365d")):
                floor = _floor(rules, upper, feature)
                if floor is not None:
                    out.loc[here, column] = np.round(np.maximum(floor - values[here], 0), 2)
        keep = _floor(rules, tier, "monetary_365d") if tier != rules.default_tier else 0.0
        if keep is not None:
            out.loc[here, "spend_to_keep_tier"] = np.round(np.maximum(keep - spend[here], 0), 2)
    return out


def percentile(values: pd.Series) -> pd.Series:
    """Share of customers whose value is at most this one (ties share), as the R/F/M scores use."""
    return values.rank(method="max", pct=True)


def _by_rules(features: pd.DataFrame, rules: TierRules, out: pd.DataFrame) -> None:
    for rule in rules.rules:
        hit = rule.when.evaluate(features) & out["tier"].isna()
        out.loc[hit, "tier"] = rule.tier
        out.loc[hit, "tier_rule"] = rule.name
        out.loc[hit, "tier_reason"] = explain(rule, features.loc[hit])


def weighted_score(features: pd.DataFrame, rules: TierRules) -> pd.Series:
    """0-100: the weighted mean of each feature's percentile among all customers."""
    total = pd.Series(0.0, index=features.index)
    for term in rules.weights:
        values = pd.to_numeric(features[term.feature], errors="coerce")
        share = percentile(values if term.higher_is_better else -values).fillna(term.missing)
        total += term.weight * share
    return (100 * total / sum(t.weight for t in rules.weights)).round(2)


def _by_score(features: pd.DataFrame, rules: TierRules, out: pd.DataFrame) -> None:
    score = weighted_score(features, rules)
    terms = ", ".join(f"{t.feature} x{t.weight:g}" for t in rules.weights)
    for tier, lowest in rules.score_bands:
        hit = (score >= lowest) & out["tier"].isna()
        out.loc[hit, "tier"] = tier
        out.loc[hit, "tier_rule"] = f"score_band_{tier}"
        out.loc[hit, "tier_reason"] = (f"score_band_{tier}: weighted_score=" + score[hit].astype("string")
                                       + f" (>= {lowest:g}; {terms})")


def _by_clusters(features: pd.DataFrame, rules: TierRules, out: pd.DataFrame) -> None:
    from sklearn.cluster import KMeans

    matrix = features[list(rules.cluster_features)].apply(pd.to_numeric, errors="coerce").astype(float)
    matrix = matrix.fillna(matrix.max() + 1)  # e.g. no order yet: less recent than anyone
    matrix = np.log1p(matrix.clip(lower=0))  # spend and counts are heavy-tailed
    spread = matrix.std(ddof=0).replace(0, 1)
    scaled = ((matrix - matrix.mean()) / spread).to_numpy()
    k = len(rules.tiers)
    if len(features) < k:
        return  # too few customers to cluster: everyone gets the default tier
    labels = KMeans(n_clusters=k, random_state=rules.seed, n_init=10).fit_predict(scaled)
    order_by = pd.to_numeric(features[rules.cluster_order_by], errors="coerce")
    means = order_by.groupby(labels).mean().sort_values(kind="stable")
    tier_of_cluster = {cluster: rules.tiers[position] for position, cluster in enumerate(means.index)}
    for cluster, tier in tier_of_cluster.items():
        hit = pd.Series(labels == cluster, index=features.index) & out["tier"].isna()
        out.loc[hit, "tier"] = tier
        out.loc[hit, "tier_rule"] = f"kmeans_cluster_{rules.tiers.index(tier) + 1}"
        out.loc[hit, "tier_reason"] = (f"kmeans_cluster_{rules.tiers.index(tier) + 1}: cluster mean "
                                       f"{rules.cluster_order_by}={means[cluster]:.2f}, rank "
                                       f"{rules.tiers.index(tier) + 1} of {k}")


STRATEGY_FUNCTIONS = {"rules": _by_rules, "weighted_score": _by_score, "kmeans": _by_clusters}


def assign_tiers(features: pd.DataFrame, rules: TierRules) -> pd.DataFrame:
    """One row per customer of ``features``: tier, tier_rank, tier_rule, tier_reason, rule_version."""
    out = pd.DataFrame({"customer_id": features["customer_id"]}, index=features.index)
    for column in ("tier", "tier_rule", "tier_reason"):
        out[column] = pd.Series(pd.NA, index=features.index, dtype="string")
    STRATEGY_FUNCTIONS[rules.strategy](features, rules, out)
    rest = out["tier"].isna()
    out.loc[rest, "tier"] = rules.default_tier
    out.loc[rest, "tier_rule"] = rules.default_name
    out.loc[rest, "tier_reason"] = f"{rules.default_name}: no tier rule matched"
    out["tier_rank"] = out["tier"].map({t: rules.rank(t) for t in rules.tiers}).astype("int64")
    out["rule_version"] = rules.source.version
    return out[list(TIER_COLUMNS)]


def damp(assigned: pd.DataFrame, previous: pd.DataFrame, rules: TierRules) -> pd.DataFrame:
    """Apply the damping policy to this period's ``assigned`` tiers given last period's ``previous``.

    ``previous`` has customer_id, tier and periods_below of the prior period (empty for the
    first one). Returns ``assigned`` with the held tier in ``tier``, the rules' own answer in
    ``assigned_tier`` and the consecutive periods spent below the held tier.
    """
    policy = rules.damping
    prior = previous.set_index("customer_id").reindex(assigned["customer_id"])
    held = prior["tier"].map({t: rules.rank(t) for t in rules.tiers}).fillna(0).astype(int).to_numpy()
    before = prior["periods_below"].fillna(0).astype(int).to_numpy()
    new = assigned["tier_rank"].to_numpy()

    falling = new < held  # 0 = no tier last period: nothing to fall from
    count = np.where(falling, before + 1, 0)
    waits = falling & (count < policy.downgrade_after_periods)
    steps = policy.max_steps_down or len(rules.tiers)
    final = np.where(waits, held, np.where(falling, np.maximum(new, held - steps), new))

    out = assigned.copy()
    out["assigned_tier"] = out["tier"]
    out["tier_rank"] = final
    out["tier"] = [rules.tiers[rank - 1] for rank in final]
    out["periods_below"] = np.where(waits, count, 0)
    out["rules_sha256"] = rules.source.content_hash
    for column in ("spend_to_next_tier", "orders_to_next_tier", "spend_to_keep_tier"):
        out[column] = np.nan
    changed = final != new
    out.loc[changed, "tier_reason"] = [
        f"{'held at' if wait else 'soft landing to'} {tier}: the rules assign {rule_tier} "
        f"({n} of {policy.downgrade_after_periods} period(s) below) - {reason}"
        for wait, tier, rule_tier, n, reason in zip(
            waits[changed], out.loc[changed, "tier"], out.loc[changed, "assigned_tier"], count[changed],
            out.loc[changed, "tier_reason"], strict=True)
    ]
    return out[list(STAGED_COLUMNS)]


def previous_tiers(conn: sa.Connection, as_of: date) -> pd.DataFrame:
    """The staged tiers of the latest period before ``as_of`` (what damping compares with)."""
    return read_frame(conn, (
        "SELECT customer_id, tier, periods_below FROM staging.customer_tiers WHERE as_of_date = "
        "(SELECT MAX(as_of_date) FROM staging.customer_tiers WHERE as_of_date < :as_of)"
    ), {"as_of": as_of})


def grade(warehouse: Engine, as_of: date, rules: TierRules) -> pd.Series:
    """Replace the staging tier rows of ``as_of``; returns customers per (held) tier."""
    with warehouse.begin() as conn:
        features = load_features(conn, as_of)
        tiers = damp(assign_tiers(features, rules), previous_tiers(conn, as_of), rules)
        tiers[["spend_to_next_tier", "orders_to_next_tier", "spend_to_keep_tier"]] = distances(features, tiers, rules)
        tiers = tiers.astype({"orders_to_next_tier": "Int64"})
        tiers.insert(0, "as_of_date", as_of)
        conn.execute(sa.text("DELETE FROM staging.customer_tiers WHERE as_of_date = :as_of"), {"as_of": as_of})
        bulk_insert(conn, "staging.customer_tiers", tiers)
    return tiers["tier"].value_counts().reindex(list(rules.tiers), fill_value=0)
