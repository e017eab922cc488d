"""Tier assignment by the shipped value bands, on hand-made features with the answers worked out."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from grading.rules.pins import load_rules
from grading.tiers import assign_tiers


def test_value_bands_at_their_edges() -> None:
    tier_rules, _ = load_rules()
    features = pd.DataFrame({
        "customer_id": ["zero", "just_under", "gold_floor", "gold_ceiling", "just_over", "whale"],
        "monetary_window": [0.0, 9999.99, 10000.0, 50000.0, 50000.01, 1_000_000.0],
    })
    tiers = assign_tiers(features, tier_rules).set_index("customer_id")
    assert tiers["tier"].to_dict() == {
        "zero": "normal", "just_under": "normal", "gold_floor": "gold",
        "gold_ceiling": "gold", "just_over": "platinum", "whale": "platinum",
    }
    assert tiers["tier_rank"].to_dict() == {
        "zero": 1, "just_under": 1, "gold_floor": 2, "gold_ceiling": 2, "just_over": 3, "whale": 3,
    }
    assert tiers.loc["just_over", "tier_rule"] == "platinum_band"
    assert tiers.loc["just_over", "tier_reason"] == "platinum_band: monetary_window=50000.01 (> 50000)"
    assert tiers.loc["zero", "tier_reason"] == ("below_gold_band: no tier rule matched (monetary_window=0); gold "
                                                "needs monetary_window >= 10000 (gold_band): 10000.00 more "
                                                "monetary_window")
    assert tiers.loc["just_under", "tier_reason"].endswith(": 0.01 more monetary_window")
    assert set(tiers["rule_version"]) == {"1.2.0"}


def test_first_matching_rule_wins() -> None:
    """A platinum customer also meets the gold condition; the earlier rule decides."""
    tier_rules, _ = load_rules()
    tiers = assign_tiers(pd.DataFrame({"customer_id": ["p"], "monetary_window": [75000.0]}), tier_rules)
    assert tiers["tier_rule"].tolist() == ["platinum_band"]


def _rules(tmp_path, text: str):
    from grading.features import RULE_FEATURES
    from grading.rules.files import load_tier_rules

    path = tmp_path / "tiers.yaml"
    path.write_text(text)
    return load_tier_rules(path, RULE_FEATURES)


HEADER = """\
kind: tiers
version: t1
effective_date: 2025-01-01
owner: test
description: test
"""


def test_a_default_tier_reason_gives_the_figures_and_what_the_next_tier_needs(tmp_path) -> None:
    """The lowest tier a rule gives (silver) names the figures it looks at; the spend and orders missing
    are those of the distance-to-next-tier columns; nothing missing once only another condition fails."""
    rules = _rules(tmp_path, HEADER + """\
tiers: [normal, silver, gold]
rules:
  - {name: gold_band, tier: gold, when: {all: [{feature: monetary_365d, op: ">=", value: 50000}]}}
  - name: silver_band
    tier: silver
    when: {all: [{feature: monetary_365d, op: ">=", value: 5000}, {feature: orders_365d, op: ">", value: 3},
                 {feature: region, op: in, value: [North, South]}]}
default: {name: below_silver, tier: normal}
""")
    features = pd.DataFrame({"customer_id": ["small", "enough_but_west", "no_orders", "silver"],
                             "monetary_365d": [1234.5, 6000.0, None, 7000.0], "orders_365d": [3, 9, 0, 5],
                             "region": ["North", "West", None, "South"]})
    tiers = assign_tiers(features, rules).set_index("customer_id")
    needs = "silver needs monetary_365d >= 5000 and orders_365d > 3 and region in [North, South] (silver_band)"
    assert tiers["tier_reason"].to_dict() == {
        "small": "below_silver: no tier rule matched (monetary_365d=1234.5, orders_365d=3, region=North); "
                 f"{needs}: 3765.50 more monetary_365d, 1 more orders_365d",
        "enough_but_west": "below_silver: no tier rule matched (monetary_365d=6000, orders_365d=9, region=West); "
                           f"{needs}",
        "no_orders": "below_silver: no tier rule matched (monetary_365d=missing, orders_365d=0, region=missing); "
                     f"{needs}: 4 more orders_365d",
        "silver": "silver_band: monetary_365d=7000.0 (>= 5000); orders_365d=5 (> 3); region=South (in [North, South])"}


def test_weighted_score_by_hand(tmp_path) -> None:
    rules = _rules(tmp_path, HEADER + """\
strategy: weighted_score
tiers: [normal, gold, platinum]
weights:
  - {feature: monetary_365d, weight: 3}
  - {feature: complaints_365d, weight: 1, better: lower}
score_bands: {platinum: 90, gold: 50}
default: {name: rest, tier: normal}
""")
    features = pd.DataFrame({"customer_id": list("abcd"), "monetary_365d": [10.0, 20.0, 30.0, 40.0],
                             "complaints_365d": [3, 2, 1, 0]})
    # percentiles: monetary .25 .5 .75 1; fewer complaints better: .25 .5 .75 1 -> score (3p + 1p) / 4
    tiers = assign_tiers(features, rules).set_index("customer_id")
    assert tiers["tier"].to_dict() == {"a": "normal", "b": "gold", "c": "gold", "d": "platinum"}
    assert tiers.loc["d", "tier_reason"] == (
        "score_band_platinum: weighted_score=100.0 (>= 90; monetary_365d x3, complaints_365d x1)")
    assert tiers.loc["b", "tier_reason"].startswith("score_band_gold: weighted_score=50.0 (>= 50")


def test_kmeans_maps_clusters_onto_tiers_by_value_and_is_seeded(tmp_path) -> None:
    rules = _rules(tmp_path, HEADER + """\
strategy: kmeans
tiers: [normal, gold, platinum]
kmeans: {features: [monetary_365d, orders_365d], order_by: monetary_365d, seed: 7}
default: {name: rest, tier: normal}
""")
    values = [100, 120, 90, 110, 10_000, 12_000, 11_000, 200_000, 220_000, 210_000]
    orders = [1, 1, 1, 2, 8, 9, 10, 40, 45, 50]
    features = pd.DataFrame({"customer_id": [f"c{i}" for i in range(10)], "monetary_365d": values,
                             "orders_365d": orders})
    first, second = assign_tiers(features, rules), assign_tiers(features, rules)
    assert first.equals(second)
    assert first["tier"].tolist() == ["normal"] * 4 + ["gold"] * 3 + ["platinum"] * 3
    assert first["tier_reason"].iloc[-1].startswith("kmeans_cluster_3: cluster mean monetary_365d=210000.00, rank 3")


def test_rules_can_be_scoped_by_region() -> None:
    from grading.features import RULE_FEATURES
    from grading.rules.files import load_tier_rules
    from grading.settings import include_dir

    rules = load_tier_rules(include_dir() / "rules" / "examples" / "tiers_rfm_by_region.yaml", RULE_FEATURES)
    features = pd.DataFrame({"customer_id": ["west", "east"], "region": ["West", "East"],
                             "r_score": [5, 5], "f_score": [4, 4], "m_score": [4, 4]})
    tiers = assign_tiers(features, rules).set_index("customer_id")["tier"].to_dict()
    assert tiers == {"west": "gold", "east": "platinum"}  # the West needs M = 5 for platinum


def test_every_example_rule_file_loads() -> None:
    from grading.features import RULE_FEATURES
    from grading.rules.files import load_tier_rules
    from grading.settings import include_dir

    files = sorted((include_dir() / "rules" / "examples").glob("tiers_*.yaml"))
    assert len(files) >= 3
    assert {load_tier_rules(f, RULE_FEATURES).strategy for f in files} == {"rules", "weighted_score", "kmeans"}


def test_damping_over_a_sequence_of_periods() -> None:
    """Upgrades at once; a downgrade waits two periods below, then drops one tier at a time."""
    from grading.tiers import damp

    tier_rules, _ = load_rules()
    assert (tier_rules.damping.downgrade_after_periods, tier_rules.damping.max_steps_down) == (2, 1)
    value = {"normal": 0.0, "gold": 20_000.0, "platinum": 80_000.0}
    # customer x: platinum, then the rules say normal three times, then platinum again
    sequence = ["platinum", "normal", "normal", "normal", "normal", "platinum"]
    held, below, previous = [], [], pd.DataFrame(columns=["customer_id", "tier", "periods_below"])
    for assigned_tier in sequence:
        assigned = assign_tiers(pd.DataFrame({"customer_id": ["x"], "monetary_window": [value[assigned_tier]]}),
                                tier_rules)
        result = damp(assigned, previous, tier_rules, date(2025, 1, 1))
        held.append(result["tier"].iloc[0])
        below.append(int(result["periods_below"].iloc[0]))
        previous = result[["customer_id", "tier", "periods_below"]]
    assert held == ["platinum", "platinum", "gold", "gold", "normal", "platinum"]
    assert below == [0, 1, 0, 1, 0, 0]


def test_damped_rows_say_why() -> None:
    from grading.tiers import damp

    tier_rules, _ = load_rules()
    assigned = assign_tiers(pd.DataFrame({"customer_id": ["x"], "monetary_window": [500.0]}), tier_rules)
    previous = pd.DataFrame({"customer_id": ["x"], "tier": ["gold"], "periods_below": [0]})
    row = damp(assigned, previous, tier_rules, date(2025, 1, 1)).iloc[0]
    assert (row["tier"], row["assigned_tier"], row["periods_below"]) == ("gold", "normal", 1)
    assert row["tier_reason"] == ("held at gold: the rules assign normal (1 of 2 period(s) below) - "
                                  "below_gold_band: no tier rule matched (monetary_window=500); gold needs "
                                  "monetary_window >= 10000 (gold_band): 9500.00 more monetary_window")


def test_distance_to_the_next_tier_and_to_keep_the_current_one() -> None:
    from grading.tiers import damp, distances

    tier_rules, _ = load_rules()
    features = pd.DataFrame({"customer_id": ["n", "g", "p", "held"], "orders_window": [1, 3, 9, 2],
                             "monetary_window": [4000.0, 30000.0, 90000.0, 7000.0]})
    previous = pd.DataFrame({"customer_id": ["held"], "tier": ["gold"], "periods_below": [0]})
    held = damp(assign_tiers(features, tier_rules), previous, tier_rules, date(2025, 1, 1))
    got = distances(features, held, tier_rules).set_index(features["customer_id"])
    assert got.loc["n", "spend_to_next_tier"] == 6000.0          # gold from 10,000
    assert got.loc["g", "spend_to_next_tier"] == 20000.01        # platinum above 50,000
    assert pd.isna(got.loc["p", "spend_to_next_tier"])           # nothing above platinum
    assert got.loc["g", "spend_to_keep_tier"] == 0.0
    assert got.loc["n", "spend_to_keep_tier"] == 0.0
    assert got.loc["held", "spend_to_keep_tier"] == 3000.0       # held at gold while below: 3,000 short
    assert got["orders_to_next_tier"].isna().all()               # the shipped bands do not count orders


def test_kmeans_tiers_never_give_a_higher_tier_less_value_than_a_lower_one(tmp_path) -> None:
    """Clustered on orders, value ordered: the clusters say how many customers each tier holds,
    value says who - a frequent small buyer (c9: 40 orders, 323) is not platinum over a 50,275 one."""
    rules = _rules(tmp_path, HEADER + """\
strategy: kmeans
tiers: [normal, gold, platinum]
kmeans: {features: [orders_365d], order_by: monetary_365d, seed: 7}
default: {name: rest, tier: normal}
""")
    values = [100, 120, 90, 110, 10_000, 50_275, 11_000, 200_000, 220_000, 323]
    orders = [1, 1, 1, 2, 8, 9, 10, 40, 45, 50]
    features = pd.DataFrame({"customer_id": [f"c{i}" for i in range(10)], "monetary_365d": values,
                             "orders_365d": orders})
    tiers = assign_tiers(features, rules).set_index("customer_id")
    assert tiers["tier"].value_counts().to_dict() == {"normal": 4, "gold": 3, "platinum": 3}  # the clusters' sizes
    assert tiers.loc["c9", "tier"] != "platinum"
    assert set(tiers.index[tiers["tier"] == "platinum"]) == {"c5", "c7", "c8"}  # the three most valuable
    by_tier = features.set_index("customer_id")["monetary_365d"].groupby(tiers["tier"]).agg(["min", "max"])
    assert by_tier.loc["platinum", "min"] >= by_tier.loc["gold", "max"] >= by_tier.loc["normal", "max"]
    assert "tier holds the cluster's 3 customers by monetary_365d (from 50275.00)" in tiers.loc["c5", "tier_reason"]


def test_a_tiering_that_gives_a_higher_tier_less_value_fails_the_run(tmp_path) -> None:
    from grading.errors import DataError
    from grading.tiers import TierSchemeError, check_value_order

    rules = _rules(tmp_path, HEADER + """\
strategy: kmeans
tiers: [normal, gold, platinum]
kmeans: {features: [orders_365d], order_by: monetary_365d, seed: 7}
default: {name: rest, tier: normal}
""")
    assigned = pd.DataFrame({"tier": ["normal", "gold", "platinum"]})
    check_value_order(assigned, pd.Series([10.0, 20.0, 30.0]), rules)
    with pytest.raises(TierSchemeError, match="tier 'platinum' holds a customer with monetary_365d=323.00, below "
                                              "50275.00 in the lower tier 'gold'") as caught:
        check_value_order(assigned, pd.Series([10.0, 50_275.0, 323.0]), rules)
    assert isinstance(caught.value, DataError)


def test_grading_reads_only_the_features_its_rules_need_and_decides_the_same(reviewed_warehouse) -> None:
    """tiers.grade loads features_read(rules), not every feature column (memory at a million customers):
    every example rule file, each strategy, assigns the same tiers, reasons and distances from those
    columns as from the whole stored frame."""
    from grading.features import RULE_FEATURES, load_features
    from grading.rules.files import load_tier_rules
    from grading.settings import include_dir
    from grading.tiers import distances, features_read
    from grading.warehouse import open_engine

    _, url, _ = reviewed_warehouse
    files = sorted((include_dir() / "rules" / "examples").glob("tiers_*.yaml")) + [include_dir() / "rules" /
                                                                                    "tiers.yaml"]
    with open_engine(url) as engine, engine.connect() as conn:
        as_of = conn.exec_driver_sql("SELECT MAX(as_of_date) FROM staging.customer_features").scalar_one()
        whole = load_features(conn, as_of)
        for path in files:
            rules = load_tier_rules(path, RULE_FEATURES)
            narrow = load_features(conn, as_of, features_read(rules))
            assert len(narrow.columns) < len(whole.columns), path.name
            expected, got = assign_tiers(whole, rules), assign_tiers(narrow, rules)
            pd.testing.assert_frame_equal(got, expected, obj=path.name)
            pd.testing.assert_frame_equal(distances(narrow, got, rules), distances(whole, expected, rules))


def test_tiers_as_of_gives_the_reference_tiers_in_the_warehouse_or_not(reviewed_warehouse) -> None:
    """The year-ago tiers the flags stage compares with: computed in the warehouse when the rules
    compile to SQL (the shipped file, the RFM example), over the features the rules read when they
    do not (k-means, weighted score), and in both cases what assign_tiers gives over all features."""
    from grading.features import RULE_FEATURES, features_as_of
    from grading.rules.compiled import tier_expressions
    from grading.rules.files import load_tier_rules
    from grading.settings import include_dir
    from grading.tiers import tiers_as_of
    from grading.warehouse import open_engine

    _, url, _ = reviewed_warehouse
    files = sorted((include_dir() / "rules" / "examples").glob("tiers_*.yaml")) + [include_dir() / "rules" /
                                                                                    "tiers.yaml"]
    columns = ("customer_id", "monetary_365d", "m_score")
    compiled = set()
    with open_engine(url) as engine, engine.connect() as conn:
        for path in files:
            rules = load_tier_rules(path, RULE_FEATURES)
            compiled |= {path.name} if tier_expressions(rules, RULE_FEATURES, "duckdb") else set()
            whole = features_as_of(conn, date(2024, 7, 1), rules.qualification)
            expected = assign_tiers(whole, rules)
            # rows in customer order, as with_history joins them (a computed table keeps no order)
            got = tiers_as_of(conn, date(2024, 7, 1), rules, columns).sort_values("customer_id", ignore_index=True)
            order = whole["customer_id"].argsort(kind="stable").to_numpy()
            whole, expected = whole.iloc[order].reset_index(drop=True), expected.iloc[order].reset_index(drop=True)
            assert list(got.columns) == [*columns, "tier", "tier_rank"]
            assert got["customer_id"].tolist() == whole["customer_id"].tolist(), path.name
            assert got["tier"].tolist() == expected["tier"].tolist(), path.name
            assert got["tier_rank"].tolist() == expected["tier_rank"].tolist(), path.name
            assert got["monetary_365d"].tolist() == whole["monetary_365d"].tolist(), path.name
    assert {"tiers.yaml", "tiers_rfm_by_region.yaml"} <= compiled
    assert not {"tiers_kmeans.yaml", "tiers_weighted_score.yaml"} & compiled

