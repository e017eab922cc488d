"""Tiers: assign every customer a tier by the tier rule file, explain it, and damp changes.

Three strategies, chosen by the file's ``strategy``:

- ``rules``: conditions tried in file order, the first that holds assigns the tier (value
  bands, RFM score conditions, rules scoped to a region or industry);
- ``weighted_score``: a 0-100 score from the customer's percentile on each weighted
  feature (sales, profit contribution, cooperation history, satisfaction ...), cut into
  tiers by ``score_bands``;
- ``kmeans``: scikit-learn k-means (seeded) on chosen features, clusters ranked by their
  mean of ``order_by``; each tier holds as many customers as its cluster, taken by
  ``order_by`` value, so a higher tier never holds less value than a lower one (checked).

Every row records the rule (or score, or cluster) and the values that decided it. Damping
then carries the customer's tier state on from the previous period: upgrades are
immediate; downgrades wait for the qualification policy's review date (plus grace days,
grading.qualification) and ``downgrade_after_periods`` consecutive periods below, and drop
at most ``max_steps_down`` tiers.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from grading import periods
from grading.errors import DataError
from grading.features import RULE_FEATURES, features_at, load_features, stored_columns
from grading.frames import bulk_insert, read_frame
from grading.periods import PERIOD_STATE_LOCK
from grading.rules.compiled import tier_expressions
from grading.rules.model import TierRules, explain
from grading.warehouse import analyze, exclusive

TIER_COLUMNS = ("customer_id", "tier", "tier_rank", "tier_rule", "tier_reason", "rule_version")
STAGED_COLUMNS = (*TIER_COLUMNS, "assigned_tier", "periods_below", "tier_since", "review_date", "rules_sha256",
                  "spend_to_next_tier", "orders_to_next_tier", "spend_to_keep_tier")
# Smallest step of money and of order counts, for strict thresholds ("more than 50,000").
CENT = 0.01


# The value features a tier threshold may name, qualification window first.
SPEND_FEATURES = ("monetary_window", "monetary_365d")
ORDER_FEATURES = ("orders_window", "orders_365d")


def features_read(rules: TierRules) -> tuple[str, ...]:
    """The stored feature columns grading by ``rules`` reads: what its conditions, weights or
    clusters name, the value features distances and qualifying figures report, and tenure (for
    anniversary reviews). Reading only these keeps the million-customer frame, and DuckDB's join
    and sort behind it, narrow (at 100,000 customers the load took 113 instead of 202 MiB)."""
    named = rules.named_features() | {rules.cluster_order_by}
    return stored_columns(("customer_id", "tenure_days", *SPEND_FEATURES, *ORDER_FEATURES,
                           *sorted(n for n in named if n)))


def _floor(rules: TierRules, tier: str, features: tuple[str, ...]) -> tuple[str, float] | None:
    """The feature and the lowest value of it the first rule giving ``tier`` asks for (> or >=)."""
    for rule in rules.rules:
        if rule.tier != tier:
            continue
        for leaf in rule.when.leaves():
            if leaf.feature in features and leaf.op in (">", ">=") and isinstance(leaf.value, (int, float)):
                step = CENT if features == SPEND_FEATURES else 1
                return leaf.feature, float(leaf.value) + (step if leaf.op == ">" else 0)
        return None
    return None


def _needed(features: pd.DataFrame, rules: TierRules, tier: str,
            kinds: tuple[str, ...]) -> tuple[str, float, np.ndarray] | None:
    """The feature the first rule giving ``tier`` sets a floor on (of ``kinds``), that floor, and
    per customer what is still needed to reach it (0 when already enough, NaN when unknown)."""
    floor = _floor(rules, tier, kinds)
    if floor is None:
        return None
    values = pd.to_numeric(features[floor[0]]).astype(float).to_numpy()
    return floor[0], floor[1], np.round(np.maximum(floor[1] - values, 0), 2)


def distances(features: pd.DataFrame, held: pd.DataFrame, rules: TierRules) -> pd.DataFrame:
    """Per customer: spend and orders still needed to reach the next tier, and spend needed to
    keep the tier held at the next review (0 when already enough), in the feature the
    thresholds name (the qualification window's, or the 365-day one).

    Read from the value thresholds of the ``rules`` strategy (other conditions of a rule may
    apply as well); empty for the score and clustering strategies and at the top tier.
    """
    out = pd.DataFrame(index=held.index, columns=["spend_to_next_tier", "orders_to_next_tier", "spend_to_keep_tier"],
                       dtype="float64")
    if rules.strategy != "rules":
        return out
    for position, tier in enumerate(rules.tiers):
        here = (held["tier"] == tier).to_numpy()
        if position + 1 < len(rules.tiers):
            upper = rules.tiers[position + 1]
            for column, kinds in (("spend_to_next_tier", SPEND_FEATURES), ("orders_to_next_tier", ORDER_FEATURES)):
                needed = _needed(features, rules, upper, kinds)
                if needed is not None:
                    out.loc[here, column] = needed[2][here]
        keep = _needed(features, rules, tier, SPEND_FEATURES)
        if tier == rules.default_tier:
            out.loc[here, "spend_to_keep_tier"] = 0.0
        elif keep is not None:
            out.loc[here, "spend_to_keep_tier"] = keep[2][here]
    return out


def default_reasons(features: pd.DataFrame, rules: TierRules) -> pd.Series:
    """Why customers no rule matched hold the default tier, with their figures and the distance to
    the next tier up: the values its first rule looks at, what it asks for, and the spend and orders
    still missing (as :func:`distances` counts them), e.g. ``below_gold_band: no tier rule matched
    (monetary_window=1234.5); gold needs monetary_window >= 10000 (gold_band): 8765.50 more
    monetary_window``. Without a higher tier given by a rule, just ``no tier rule matched``.
    Built by Arrow: pandas string work on a million rows takes seconds."""
    plain = pd.Series(f"{rules.default_name}: no tier rule matched", index=features.index, dtype="string")
    rank = rules.rank(rules.default_tier)
    upper = rules.tiers[rank] if rank < len(rules.tiers) else None
    rule = next((r for r in rules.rules if r.tier == upper), None)
    if rules.strategy != "rules" or rule is None or features.empty:
        return plain
    pieces: list = [f"{rules.default_name}: no tier rule matched ("]
    for i, feature in enumerate(dict.fromkeys(leaf.feature for leaf in rule.when.leaves())):
        pieces += [f"{', ' if i else ''}{feature}=", pc.fill_null(_text(features[feature]), "missing")]
    pieces.append(f"); {upper} needs {rule.when.describe()} ({rule.name})")
    gaps = []
    for kinds, cents in ((SPEND_FEATURES, True), (ORDER_FEATURES, False)):
        needed = _needed(features, rules, upper, kinds)
        if needed is not None:
            line = pc.binary_join_element_wise(", ", _text(pd.Series(needed[2]), cents), f" more {needed[0]}", "")
            gaps.append(pc.if_else(pc.fill_null(pc.greater(needed[2], 0), False), line, ""))
    if gaps:
        missing = pc.binary_join_element_wise(*gaps, "")
        pieces.append(pc.if_else(pc.equal(missing, ""), "", pc.binary_join_element_wise(
            ": ", pc.utf8_slice_codeunits(missing, 2), "")))
    text = pc.binary_join_element_wise(*pieces, "") if len(pieces) > 2 else pa.array([pieces[0]] * len(features))
    return pd.Series(pd.arrays.ArrowStringArray(text), index=features.index, dtype="string")


def _text(values: pd.Series, cents: bool = False) -> pa.Array:
    """Values as Arrow strings (a million in a fraction of a second, where pandas takes seconds);
    with ``cents``, money with two decimals (1234.00). Missing values stay missing."""
    if not pd.api.types.is_numeric_dtype(values):
        return pa.array(values.astype("string").to_numpy(dtype=object, na_value=None), type=pa.string())
    numbers = pd.to_numeric(values).astype("float64").to_numpy()
    if not cents:
        return pc.cast(pa.array(numbers, from_pandas=True), pa.string())
    amount = np.round(numbers * 100)
    whole = pc.cast(pa.array(np.floor_divide(amount, 100), from_pandas=True).cast(pa.int64()), pa.string())
    part = pc.cast(pa.array(np.mod(amount, 100), from_pandas=True).cast(pa.int64()), pa.string())
    return pc.binary_join_element_wise(whole, pc.utf8_lpad(part, 2, "0"), ".")


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
    sizes = pd.Series(labels).value_counts().reindex(means.index).to_numpy()  # lowest-value cluster first
    # Clusters in several dimensions overlap in value (a recent, frequent small buyer beside a
    # large one), so the clusters set how many customers each tier holds, and value sets who:
    # the tiers are bands of order_by, cut where the clusters' sizes put them, ties upwards.
    value = order_by.fillna(-np.inf).to_numpy()
    ranked = np.sort(value)[::-1]
    tier_index = np.zeros(len(value), dtype=int)
    reached = 0
    for position in range(k - 1, 0, -1):  # the highest tier first
        reached += int(sizes[position])
        lowest = ranked[min(reached, len(ranked)) - 1]
        tier_index[(value >= lowest) & (tier_index == 0)] = position
    for position, cluster in enumerate(means.index):
        tier = rules.tiers[position]
        hit = pd.Series(tier_index == position, index=features.index) & out["tier"].isna()
        floor = value[tier_index == position].min() if (tier_index == position).any() else np.nan
        out.loc[hit, "tier"] = tier
        out.loc[hit, "tier_rule"] = f"kmeans_cluster_{position + 1}"
        out.loc[hit, "tier_reason"] = (f"kmeans_cluster_{position + 1}: cluster mean {rules.cluster_order_by}="
                                       f"{means[cluster]:.2f}, rank {position + 1} of {k}; tier holds the cluster's "
                                       f"{int(sizes[position]):,} customers by {rules.cluster_order_by}"
                                       + (f" (from {floor:.2f})" if np.isfinite(floor) else ""))
    check_value_order(out.loc[out["tier_rule"].str.startswith("kmeans_cluster_", na=False)], order_by, rules)


class TierSchemeError(DataError, ValueError):
    """The tiers do not rank customers by value the way the scheme promises."""


def check_value_order(assigned: pd.DataFrame, value: pd.Series, rules: TierRules) -> None:
    """Refuse tiers where a customer of a higher tier has a lower ``order_by`` value than one of a
    lower tier (the promise of the k-means strategy): the run fails rather than publish them."""
    frame = pd.DataFrame({"rank": assigned["tier"].map(rules.rank), "value": value.reindex(assigned.index)})
    bounds = frame.groupby("rank")["value"].agg(["min", "max"]).sort_index()
    for (low_rank, low), (high_rank, high) in zip(bounds.iterrows(), list(bounds.iterrows())[1:], strict=False):
        if high["min"] < low["max"]:
            raise TierSchemeError(
                f"{rules.source.path}: tier {rules.tiers[high_rank - 1]!r} holds a customer with "
                f"{rules.cluster_order_by}={high['min']:.2f}, below {low['max']:.2f} in the lower tier "
                f"{rules.tiers[low_rank - 1]!r}: a higher tier must never hold less value than a lower one")


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
    out.loc[rest, "tier_reason"] = default_reasons(features.loc[rest], rules)
    out["tier_rank"] = out["tier"].map({t: rules.rank(t) for t in rules.tiers}).astype("int64")
    out["rule_version"] = rules.source.version
    return out[list(TIER_COLUMNS)]


def tiers_as_of(conn: sa.Connection, day: date, rules: TierRules, columns: tuple[str, ...]) -> pd.DataFrame:
    """The features ``columns`` as of ``day`` (computed, not stored) with the tier and tier_rank
    ``rules`` give: in the warehouse where the rules compile to SQL, so only these columns are
    read, else over the features the rules read."""
    compiled = tier_expressions(rules, RULE_FEATURES, conn.dialect.name)
    if compiled is not None:
        frame = features_at(conn, [day], rules.qualification, columns,
                            (compiled.select_list("tier", "tier_rank"), compiled.params))[0]
    else:
        frame = features_at(conn, [day], rules.qualification, stored_columns((*columns, *features_read(rules))))[0]
        graded = assign_tiers(frame, rules)
        frame = frame[list(columns)].assign(tier=graded["tier"], tier_rank=graded["tier_rank"])
    return frame.astype({"tier": "string", "tier_rank": "int64"})


def damp(assigned: pd.DataFrame, previous: pd.DataFrame, rules: TierRules, as_of: date,
         started: pd.Series | None = None) -> pd.DataFrame:
    """Carry each customer's tier state from last period's ``previous`` to ``as_of``.

    ``previous`` has customer_id, tier, periods_below, tier_since and review_date of the
    prior period (empty for the first one; missing columns count as empty). ``started``
    holds the customers' start dates, aligned with ``assigned`` (needed by an anniversary
    review). Upgrades take effect at once. A downgrade takes effect only when the review
    date (plus the grace days) has come and the rules have assigned a lower tier in
    ``downgrade_after_periods`` consecutive periods, and then drops at most ``max_steps_down``
    tiers. Returns ``assigned`` with the held tier in ``tier``, the rules' own answer in
    ``assigned_tier``, the periods below, since when the tier is held and its next review.
    """
    policy, qualification = rules.damping, rules.qualification
    prior = previous.reindex(columns=["customer_id", "tier", "periods_below", "tier_since", "review_date"])
    prior = prior.set_index("customer_id").reindex(assigned["customer_id"])
    held = prior["tier"].map({t: rules.rank(t) for t in rules.tiers}).fillna(0).astype(int).to_numpy()
    before = pd.to_numeric(prior["periods_below"]).fillna(0).astype(int).to_numpy()
    review = pd.to_datetime(prior["review_date"]).to_numpy(dtype="datetime64[s]")
    new = assigned["tier_rank"].to_numpy()
    today = np.datetime64(as_of, "s")

    falling = new < held  # 0 = no tier last period: nothing to fall from
    count = np.where(falling, before + 1, 0)
    due_on = review + np.timedelta64(qualification.grace_days, "D")
    review_due = np.isnat(review) | (today >= due_on)
    waits = falling & ((count < policy.downgrade_after_periods) | ~review_due)
    steps = policy.max_steps_down or len(rules.tiers)
    final = np.where(waits, held, np.where(falling, np.maximum(new, held - steps), new))

    starts = started if started is not None else pd.Series(pd.NaT, index=assigned.index)
    next_review = qualification.next_review(as_of, starts.set_axis(assigned.index)).to_numpy(dtype="datetime64[s]")
    changed = final != held  # a new tier (or a first period) starts a new term
    passed = ~np.isnat(review) & (today >= review) & ~waits  # reviewed and kept: the next term starts
    since = np.where(changed, today, pd.to_datetime(prior["tier_since"]).to_numpy(dtype="datetime64[s]"))

    out = assigned.copy()
    out["assigned_tier"] = out["tier"]
    out["tier_rank"] = final
    out["tier"] = [rules.tiers[rank - 1] for rank in final]
    out["periods_below"] = np.where(waits, count, 0)
    out["tier_since"] = pd.Series(since, index=out.index).dt.date
    out["review_date"] = pd.Series(np.where(changed | passed, next_review, review), index=out.index).dt.date
    out["rules_sha256"] = rules.source.content_hash
    for column in ("spend_to_next_tier", "orders_to_next_tier", "spend_to_keep_tier"):
        out[column] = np.nan
    damped = final != new
    out.loc[damped, "tier_reason"] = [
        _damped_reason(wait, tier, rule_tier, n, due, reason, policy.downgrade_after_periods)
        for wait, tier, rule_tier, n, due, reason in zip(
            waits[damped], out.loc[damped, "tier"], out.loc[damped, "assigned_tier"], count[damped],
            pd.Series(due_on[damped]).dt.date.where(~review_due[damped]), out.loc[damped, "tier_reason"],
            strict=True)
    ]
    return out[list(STAGED_COLUMNS)]


def _damped_reason(wait: bool, tier: str, rule_tier: str, periods: int, review_on: date | None, reason: str,
                   after: int) -> str:
    if wait and pd.notna(review_on):
        return f"held at {tier} until the review on {review_on}: the rules assign {rule_tier} - {reason}"
    verb = "held at" if wait else "soft landing to"
    return f"{verb} {tier}: the rules assign {rule_tier} ({periods} of {after} period(s) below) - {reason}"


def previous_tiers(conn: sa.Connection, as_of: date) -> pd.DataFrame:
    """The staged tier state of the latest period before ``as_of`` (what damping carries on)."""
    return read_frame(conn, (
        "SELECT customer_id, tier, periods_below, tier_since, review_date FROM staging.customer_tiers "
        "WHERE as_of_date = (SELECT MAX(as_of_date) FROM staging.customer_tiers WHERE as_of_date < :as_of)"
    ), {"as_of": as_of})


def grade(warehouse: Engine, as_of: date, rules: TierRules, run_id: str = "tiers") -> pd.Series:
    """Replace the staging tier rows of ``as_of``; returns customers per (held) tier.

    The period's tier state and the predecessor it carried on from are written in one
    transaction, holding the period-state lock (grading.periods)."""
    with exclusive(warehouse, PERIOD_STATE_LOCK) as conn:
        features = load_features(conn, as_of, features_read(rules))
        started = pd.Timestamp(as_of) - pd.to_timedelta(features["tenure_days"], unit="D")
        tiers = damp(assign_tiers(features, rules), previous_tiers(conn, as_of), rules, as_of, started)
        tiers[["spend_to_next_tier", "orders_to_next_tier", "spend_to_keep_tier"]] = distances(features, tiers, rules)
        tiers["qualifying_spend"] = features["monetary_window"].astype("float64")
        tiers["qualifying_orders"] = features["orders_window"].astype("Int64")
        tiers = tiers.astype({"orders_to_next_tier": "Int64"})
        tiers.insert(0, "as_of_date", as_of)
        # digested before the write, the features let go: the write's memory (DuckDB's) and the
        # digest's are not held at once (at a million customers the stage peaked at 1.54 GiB so)
        del features
        digest = periods.frame_digest(tiers, ["customer_id"])
        conn.execute(sa.text("DELETE FROM staging.customer_tiers WHERE as_of_date = :as_of"), {"as_of": as_of})
        bulk_insert(conn, "staging.customer_tiers", tiers)
        periods.record_grade(conn, as_of, "tiers", run_id, datetime.now(UTC).replace(tzinfo=None), digest)
        analyze(conn, "staging.customer_tiers")
    return tiers["tier"].value_counts().reindex(list(rules.tiers), fill_value=0)
