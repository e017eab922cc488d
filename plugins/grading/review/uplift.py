"""Testing the scheme: did acting on a list work, and do the tiers predict value?

Uplift: treated candidates against the held-out control group.

For each list, overall and per churn reason (or rule) and per tier: the return rate (an
order during the quarter) of the treated and of the control group, their difference, and
its 95% confidence interval (normal approximation for a difference of two proportions).
The verdict says plainly when the groups are too small or the difference is not
significant — a review must not read noise as success. Next to every uplift stands the
minimum detectable effect (MDE): the smallest uplift these group sizes would find significant
at 95 % with 80 % power, so "no significant difference" can be read as "no effect of at least
that size" - and the control group a list would need to detect the target effect
(GRADING_UPLIFT_TARGET_EFFECT, 5 points by default), or that it is too small to hold one.

Scheme checks: revenue per customer in the quarter after grading should rise with the
tier (monotonic); lift is a tier's revenue per customer over everyone's; the normalised
Gini says how well ordering customers by tier ranks them by that revenue (1 = as well as
knowing the revenue in advance, 0 = no better than chance).
"""

from __future__ import annotations

import math

import pandas as pd

from grading.power import Z95, control_needed, minimum_detectable_effect

MIN_GROUP = 10  # below this many customers in either group, say "too few to tell"

def sizing(listed_n: int, control_n: int, rate: float, effect: float) -> tuple[int | None, str]:
    """The control group needed for ``effect`` and a sentence saying whether this one had it."""
    needed = control_needed(listed_n, rate, effect)
    if needed is None:
        return None, f"too small to hold a control group that could detect {effect * 100:g} points"
    if control_n >= needed:
        return needed, f"control group large enough to detect {effect * 100:g} points (needs {needed})"
    return needed, f"control group too small to detect {effect * 100:g} points: needs {needed}, had {control_n}"


def compare_groups(treated_n: int, treated_hits: int, control_n: int, control_hits: int,
                   target_effect: float = 0.05) -> dict:
    """Rates, uplift, 95% interval, minimum detectable effect, control sizing and a verdict for one segment."""
    pooled = (treated_hits + control_hits) / (treated_n + control_n) if treated_n + control_n else 0.0
    needed, note = sizing(treated_n + control_n, control_n, pooled, target_effect)
    out = {"treated": treated_n, "treated_returned": treated_hits, "control": control_n,
           "control_returned": control_hits, "treated_rate": None, "control_rate": None, "uplift": None,
           "ci_low": None, "ci_high": None,
           "min_detectable_effect": minimum_detectable_effect(treated_n, control_n, pooled),
           "control_needed": needed, "sizing": note}
    if treated_n == 0 or control_n == 0:
        return out | {"verdict": "no control group" if control_n == 0 else "no treated customers"}
    p1, p0 = treated_hits / treated_n, control_hits / control_n
    spread = Z95 * math.sqrt(p1 * (1 - p1) / treated_n + p0 * (1 - p0) / control_n)
    out |= {"treated_rate": p1, "control_rate": p0, "uplift": p1 - p0, "ci_low": p1 - p0 - spread,
            "ci_high": p1 - p0 + spread}
    if min(treated_n, control_n) < MIN_GROUP:
        verdict = f"too few customers to tell (fewer than {MIN_GROUP} in a group)"
    elif out["ci_low"] > 0:
        verdict = "acting raised the return rate (significant at 95%)"
    elif out["ci_high"] < 0:
        verdict = "acting lowered the return rate (significant at 95%)"
    else:
        verdict = "no significant difference: the 95% interval includes 0"
    return out | {"verdict": verdict}


def uplift_table(rows: pd.DataFrame, quarter: str, target_effect: float = 0.05) -> pd.DataFrame:
    """Aggregate candidate rows (list, reason, tier, control_group, returned, revenue) by segment."""
    records = []
    for list_name, listed in rows.groupby("list", sort=True):
        segments = [("all", "all", listed)]
        segments += [("reason", str(key), group) for key, group in listed.groupby("reason", sort=True)]
        segments += [("tier", str(key), group) for key, group in listed.groupby("tier", sort=True)]
        for segment_type, segment, group in segments:
            control = group["control_group"].astype(bool)
            treated, held = group[~control], group[control]
            stats = compare_groups(len(treated), int(treated["returned"].sum()), len(held), int(held["returned"].sum()),
                                   target_effect)
            records.append({"quarter": quarter, "list": list_name, "segment_type": segment_type, "segment": segment,
                            **stats, "treated_revenue": float(treated["revenue"].sum()),
                            "control_revenue": float(held["revenue"].sum())})
    columns = ["quarter", "list", "segment_type", "segment", "treated", "treated_returned", "control",
               "control_returned", "treated_rate", "control_rate", "uplift", "ci_low", "ci_high",
               "treated_revenue", "control_revenue", "verdict", "min_detectable_effect", "control_needed", "sizing"]
    return pd.DataFrame(records, columns=columns).astype(
        {c: "float64" for c in ("treated_rate", "control_rate", "uplift", "ci_low", "ci_high",
                                "min_detectable_effect")} | {"control_needed": "Int64"})


def normalised_gini(score: pd.Series, actual: pd.Series) -> float | None:
    """Gini of ``actual`` when customers are ordered by ``score`` (ties share their block's
    average, so the order inside a tier does not matter), divided by the best possible Gini."""
    total = float(actual.sum())
    if total <= 0 or len(actual) < 2:
        return None

    def gini(order_by: pd.Series) -> float:
        frame = pd.DataFrame({"key": order_by, "value": actual})
        blocks = frame.groupby("key", sort=True)["value"].agg(["sum", "size"]).iloc[::-1]  # best first
        share_customers = blocks["size"].cumsum() / len(frame)
        share_value = blocks["sum"].cumsum() / total
        previous_x = share_customers.shift(fill_value=0.0)
        previous_y = share_value.shift(fill_value=0.0)
        area = ((share_customers - previous_x) * (share_value + previous_y) / 2).sum()  # trapezoids
        return float(area - 0.5)

    best = gini(actual.rank(method="first"))
    return gini(score) / best if best > 0 else None


def scheme_checks(base: pd.DataFrame, quarter: str) -> pd.DataFrame:
    """Per tier: customers, revenue per customer next quarter, lift; plus monotonicity and Gini."""
    per_tier = base.groupby(["tier", "tier_rank"], as_index=False).agg(
        customers=("customer_key", "size"), revenue=("revenue", "sum")).sort_values("tier_rank")
    per_tier["revenue_per_customer"] = per_tier["revenue"] / per_tier["customers"]
    overall = base["revenue"].sum() / len(base) if len(base) else 0.0
    per_tier["lift"] = per_tier["revenue_per_customer"] / overall if overall > 0 else None
    steps = per_tier["revenue_per_customer"].diff().dropna()
    per_tier["monotonic"] = bool((steps > 0).all())
    per_tier["gini"] = normalised_gini(base["tier_rank"], base["revenue"])
    per_tier.insert(0, "quarter", quarter)
    return per_tier.drop(columns="revenue").astype({"lift": "float64", "gini": "float64"})
