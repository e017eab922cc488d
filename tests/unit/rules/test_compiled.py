"""Tier rules compiled to SQL agree with the reference evaluator (grading.tiers.assign_tiers):
the same tier, rank, rule and reason for random customers, on DuckDB and on PostgreSQL."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from grading.features import RULE_FEATURES
from grading.frames import bulk_insert, read_frame
from grading.rules.compiled import _Params, condition_sql, tier_expressions
from grading.rules.files import load_tier_rules
from grading.rules.model import Condition
from grading.settings import include_dir
from grading.tiers import assign_tiers
from grading.warehouse import open_engine

# Every operator, nested groups, text and number features, integer and float columns.
NESTED = """\
kind: tiers
version: t-nested
effective_date: 2025-01-01
owner: test
description: every operator the rule files have
tiers: [normal, silver, gold, platinum]
rules:
  - name: north_big_or_loyal
    tier: platinum
    when:
      all:
        - {feature: region, op: in, value: [North, East]}
        - any:
            - {feature: monetary_window, op: ">", value: 50000}
            - all:
                - {feature: orders_window, op: ">=", value: 30}
                - {feature: csat_mean_365d, op: not_null}
  - name: not_south_steady
    tier: gold
    when:
      all:
        - {feature: region, op: not_in, value: [South]}
        - {feature: r_score, op: "==", value: 5}
        - {feature: churn_propensity, op: "<=", value: 0.25}
  - name: quiet_but_valuable
    tier: silver
    when:
      any:
        - {feature: channel, op: "!=", value: web}
        - {feature: csat_mean_365d, op: is_null}
        - {feature: monetary_window, op: "<", value: 1234.5}
default:
  name: below_silver
  tier: normal
"""

SCRATCH_TABLE = """
CREATE TABLE compiled_features (
    customer_id VARCHAR, region VARCHAR, channel VARCHAR, monetary_window DOUBLE PRECISION,
    monetary_365d DOUBLE PRECISION, orders_window BIGINT, orders_365d BIGINT, r_score INTEGER,
    f_score INTEGER, m_score INTEGER, csat_mean_365d DOUBLE PRECISION, churn_propensity DOUBLE PRECISION)
"""


def random_customers(seed: int, n: int = 600) -> pd.DataFrame:
    """Customers at the rules' edges and in between: whole and fractional money, the exact
    thresholds, missing values of every kind, tiny and large numbers."""
    rng = np.random.default_rng(seed)
    money = rng.choice([0.0, 1234.5, 9999.99, 10000.0, 50000.0, 50000.01, 0.1 + 0.2, 1e-05, 123456789.125,
                        np.nan], size=n)
    money = np.where(rng.random(n) < 0.5, np.round(rng.lognormal(8, 2, n) * 100) / 10 ** rng.integers(0, 3, n), money)
    orders = pd.array(rng.integers(0, 60, n), dtype="Int64")
    orders[rng.random(n) < 0.1] = pd.NA
    csat = np.where(rng.random(n) < 0.3, np.nan, np.round(rng.uniform(1, 5, n), 1))
    frame = pd.DataFrame({
        "customer_id": [f"c{seed}-{i:04d}" for i in range(n)],
        "region": pd.array(rng.choice(["North", "East", "South", "West", None], size=n), dtype="string"),
        "channel": pd.array(rng.choice(["web", "store", "phone", None], size=n), dtype="string"),
        "monetary_window": money, "monetary_365d": money * 1.5,
        "orders_window": orders, "orders_365d": orders,
        "r_score": rng.integers(1, 6, n), "f_score": rng.integers(1, 6, n), "m_score": rng.integers(1, 6, n),
        "csat_mean_365d": csat,
        "churn_propensity": np.where(rng.random(n) < 0.2, np.nan, np.round(rng.random(n), 3)),
    })
    return frame


def rule_files(tmp_path) -> list:
    nested = tmp_path / "nested.yaml"
    nested.write_text(NESTED)
    files = [include_dir() / "rules" / "tiers.yaml", nested,
             *sorted((include_dir() / "rules" / "examples").glob("tiers_*.yaml"))]
    loaded = [load_tier_rules(path, RULE_FEATURES) for path in files]
    return [rules for rules in loaded if rules.strategy == "rules"]


@pytest.mark.parametrize("seed", [1, 2])
def test_compiled_rules_and_the_reference_evaluator_agree_on_random_customers(warehouse_url, tmp_path, seed) -> None:
    customers = random_customers(seed)
    files = rule_files(tmp_path)
    assert len(files) >= 4  # the shipped file, the nested one and the rules-strategy examples
    with open_engine(warehouse_url) as engine, engine.begin() as conn:
        conn.execute(sa.text(SCRATCH_TABLE))
        bulk_insert(conn, "compiled_features", customers)
        stored = read_frame(conn, "SELECT * FROM compiled_features ORDER BY customer_id")
        for rules in files:
            compiled = tier_expressions(rules, RULE_FEATURES, conn.dialect.name)
            assert compiled is not None, rules.source.path
            got = read_frame(conn, f"SELECT customer_id, {compiled.select_list()} FROM compiled_features "  # noqa: S608
                                   "ORDER BY customer_id", compiled.params)
            # the reference over the frame the warehouse gives back, as the tiers stage reads it
            want = assign_tiers(stored, rules)
            named = want["tier_rule"] != rules.default_name
            assert got["customer_id"].tolist() == want["customer_id"].tolist()
            assert got["tier"].tolist() == want["tier"].tolist(), rules.source.path
            assert got["tier_rank"].astype(int).tolist() == want["tier_rank"].tolist(), rules.source.path
            assert got["tier_rule"].isna().tolist() == (~named).tolist(), rules.source.path
            pd.testing.assert_series_equal(got.loc[named, "tier_rule"].astype(str), want.loc[named, "tier_rule"]
                                           .astype(str), check_names=False)
            mismatched = got.loc[named, "tier_reason"].astype(str) != want.loc[named, "tier_reason"].astype(str)
            assert not mismatched.any(), (rules.source.path, list(zip(
                got.loc[named, "tier_reason"][mismatched][:3], want.loc[named, "tier_reason"][mismatched][:3],
                strict=True)))
            assert named.sum() > 50  # both kinds of row were compared
            assert (~named).sum() > 0


def test_every_value_is_a_bound_parameter() -> None:
    bound = _Params()
    sql = condition_sql(Condition(combine="any", children=(
        Condition(feature="region", op="in", value=("North'; DROP TABLE x; --", "East")),
        Condition(feature="monetary_window", op=">=", value=10000),
    )), bound)
    assert "DROP" not in sql
    assert "10000" not in sql
    assert list(bound.values.values()) == ["North'; DROP TABLE x; --", "East", 10000]


def test_a_feature_name_that_is_not_a_plain_name_is_refused() -> None:
    with pytest.raises(ValueError, match="not a feature name"):
        condition_sql(Condition(feature="x; DROP TABLE y", op="is_null"), _Params())


def test_score_clustering_and_time_rules_stay_with_the_reference(tmp_path) -> None:
    examples = include_dir() / "rules" / "examples"
    for name in ("tiers_weighted_score.yaml", "tiers_kmeans.yaml"):
        assert tier_expressions(load_tier_rules(examples / name, RULE_FEATURES), RULE_FEATURES, "duckdb") is None
    timed = tmp_path / "timed.yaml"
    timed.write_text(NESTED.replace("{feature: csat_mean_365d, op: not_null}",
                                    "{feature: last_order_at, op: \">=\", value: 2024-01-01}"))
    assert tier_expressions(load_tier_rules(timed, RULE_FEATURES), RULE_FEATURES, "duckdb") is None
