"""The review's fairness check on data where the right answer is known, on both warehouses: a region
with half the others' top-tier chance at the same spend is flagged; regions that differ only in
spend are not (the crude ratio would flag them); a small group is "too few to tell"."""

from __future__ import annotations

import math
from datetime import date

import pandas as pd
import pytest

from grading.frames import bulk_insert, read_query_file
from grading.review.tables import FAIRNESS
from grading.warehouse import migrate, open_engine

SNAPSHOT = date(2025, 1, 1)
LEVELS = range(1, 11)  # ten spend levels, 1,000 to 10,000: one value band each


def customers(counts: dict[str, int], top_rate, eliminated_rate=lambda level: 0.5 if level <= 2 else 0.0) -> list:
    """``counts[region]`` customers at every level (or ``counts[region](level)``); the first
    ``rate * n`` of a region's customers at a level are in the top tier / on the elimination list."""
    rows = []
    for region, count in counts.items():
        for level in LEVELS:
            n = count(level) if callable(count) else count
            top, out = round(n * top_rate(region, level)), round(n * eliminated_rate(level))
            rows += [{"region": region, "value": 1000.0 * level, "top": i < top, "eliminated": i >= n - out}
                     for i in range(n)]
    return rows


def fairness(url: str, rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    keys = [f"k{i:04d}" for i in range(len(frame))]
    features = pd.DataFrame({
        "as_of_date": SNAPSHOT, "customer_key": keys, "region": frame["region"], "industry": "retail",
        "channel": "web", "tenure_days": 400, "recency_days": 10, "orders_365d": 3, "monetary_365d": frame["value"],
        "margin_365d": frame["value"] / 4, "refunds_365d": 0, "orders_lifetime": 3,
        "monetary_lifetime": frame["value"], "tickets_365d": 0, "complaints_365d": 0, "surveys_365d": 0,
        "r_score": 3, "f_score": 3, "m_score": 3})
    tiers = pd.DataFrame({
        "as_of_date": SNAPSHOT, "customer_key": keys, "tier": frame["top"].map({True: "platinum", False: "normal"}),
        "tier_rank": frame["top"].map({True: 3, False: 1}), "tier_rule": "r", "tier_reason": "r",
        "rule_version": "1"})
    out = [k for k, e in zip(keys, frame["eliminated"], strict=True) if e]
    listed = pd.DataFrame({"as_of_date": SNAPSHOT, "customer_key": out, "rule_name": "few_orders",
                           "reason": "r", "action": "reduce_service_level", "rule_version": "1"})
    with open_engine(url) as engine:
        migrate(engine)
        with engine.begin() as conn:
            bulk_insert(conn, "marts.customer_features_snapshot", features)
            bulk_insert(conn, "marts.customer_tier_snapshot", tiers)
            bulk_insert(conn, "marts.elimination_candidates", listed)
            result = read_query_file(conn, "review/fairness", {"quarter": "2024Q4", "snapshot": SNAPSHOT, **FAIRNESS})
    return result.set_index(["dimension", "group_value"])


def wilson(successes: int, n: int) -> tuple[float, float]:
    p, z = successes / n, 1.959964
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


def test_a_region_with_half_the_chance_at_the_same_spend_is_flagged(warehouse_url: str) -> None:
    # the same spend everywhere; in the top four levels 30% reach the top tier, in the North 15%
    rows = customers({r: 20 for r in ("North", "South", "East", "West")},
                     lambda region, level: 0.0 if level < 7 else 0.15 if region == "North" else 0.3)
    got = fairness(warehouse_url, rows).loc["region"]
    north = got.loc["North"]
    assert north["disparity"] == "look closer"
    assert north["top_tier_share"] == pytest.approx(12 / 200)
    assert north["top_tier_expected"] == pytest.approx(24 / 200)  # the rest's 30% in the four top bands
    assert north["top_tier_ratio"] == pytest.approx(0.5)
    assert (north["top_tier_low"], north["top_tier_high"]) == pytest.approx(wilson(12, 200), abs=1e-4)
    assert north["top_tier_high"] < north["top_tier_expected"]
    assert north["top_tier_z"] < -1.96
    assert north["elimination_z"] == pytest.approx(0.0, abs=1e-9)  # eliminated alike everywhere
    assert north["elimination_expected"] == pytest.approx(north["elimination_rate"])
    assert (got.drop(index="North")["disparity"] == "no clear difference").all()
    assert (got.drop(index="North")["top_tier_z"].abs() < 1.96).all()


def test_regions_differing_only_in_spend_are_not_flagged(warehouse_url: str) -> None:
    # the North is poorer and the South richer, but at every spend level each region has the same chance
    counts = {"North": lambda level: 30 if level < 8 else 10, "South": lambda level: 10 if level < 8 else 30,
              "East": 20, "West": 20}
    rows = customers(counts, lambda region, level: {8: 0.1, 9: 0.2, 10: 0.5}.get(level, 0.0))
    got = fairness(warehouse_url, rows)
    regions = got.loc["region"]
    crude = regions["top_tier_share"] / (sum(r["top"] for r in rows) / len(rows))
    assert crude["North"] < 0.8  # what the four-fifths rule of thumb flagged
    assert crude["South"] > 1.25
    assert (regions["disparity"] == "no clear difference").all()
    assert regions["top_tier_z"].abs().max() == pytest.approx(0.0, abs=1e-9)
    assert regions["top_tier_ratio"].to_numpy() == pytest.approx([1.0] * 4)
    assert regions.loc["North", "top_tier_expected"] == pytest.approx(8 / 240)
    # a group that is everyone has nothing to be compared with: no z, its own rate expected
    everyone = got.loc[("industry", "retail")]
    assert everyone["customers"] == len(rows)
    assert pd.isna(everyone["top_tier_z"])
    assert everyone["disparity"] == "no clear difference"
    assert everyone["top_tier_expected"] == pytest.approx(everyone["top_tier_share"])


def test_a_small_group_is_too_few_to_tell(warehouse_url: str) -> None:
    rows = customers({r: 40 for r in ("North", "South")}, lambda region, level: 0.3 if level >= 8 else 0.0)
    small = [{"region": "Islands", "value": 10000.0, "top": False, "eliminated": False}] * 20
    got = fairness(warehouse_url, rows + small).loc["region"]
    assert FAIRNESS["min_customers"] > 20
    assert got.loc["Islands", "customers"] == 20
    assert got.loc["Islands", "top_tier_share"] == 0.0
    assert got.loc["Islands", "top_tier_low"] == 0.0
    assert got.loc["Islands", "top_tier_high"] == pytest.approx(wilson(0, 20)[1], abs=1e-4)
    assert got.loc["Islands", "top_tier_z"] < -1.96  # none of its 20 at the top where 30% would be
    assert got.loc["Islands", "disparity"] == "too few to tell"
    assert set(got.drop(index="Islands")["disparity"]) == {"no clear difference"}
