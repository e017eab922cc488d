"""Customer potential: BG/NBD + Gamma-Gamma fits recover the parameters of customers simulated
from those very processes, predict their next year in aggregate, fall back to last year's spend
(saying why) when history is too short, and reach the warehouse, the audit and the rules."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from grading import potential
from grading.features import RULE_FEATURES, compute_features, load_features
from grading.frames import bulk_insert, read_frame
from grading.warehouse import open_engine
from tests.helpers import load_raw

TRUE = {"r": 0.5, "alpha": 40.0, "a": 0.8, "b": 2.5}  # BG/NBD, days: about 4.6 purchases a year while alive
SPEND = {"p": 6.0, "q": 4.0, "v": 15.0}  # Gamma-Gamma: a mean purchase of p v / (q - 1) = 30
HORIZON = 365.0


def simulate(n: int, seed: int, ages: tuple[float, float] = (100, 1000)) -> tuple[pd.DataFrame, np.ndarray]:
    """``n`` customers drawn from BG/NBD and Gamma-Gamma with the TRUE and SPEND parameters, each
    first buying at day 0 and observed for an age drawn uniformly from ``ages``: their inputs (as
    potential_inputs.sql gives them) and the purchases each made in the HORIZON days after."""
    rng = np.random.default_rng(seed)
    rate = rng.gamma(TRUE["r"], 1 / TRUE["alpha"], n)
    drop = rng.beta(TRUE["a"], TRUE["b"], n)
    age = rng.uniform(*ages, n)
    t, x, t_x, after = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    alive = np.ones(n, bool)
    while alive.any():
        t[alive] += rng.exponential(1 / rate[alive])
        alive &= t <= age + HORIZON
        seen = alive & (t <= age)
        x[seen] += 1
        t_x[seen] = t[seen]
        after[alive & (t > age)] += 1
        alive &= rng.random(n) >= drop  # BG/NBD: a customer may drop out after each repeat purchase
    nu = rng.gamma(SPEND["q"], 1 / SPEND["v"], n)
    total = rng.gamma(SPEND["p"] * np.maximum(x, 1), 1 / nu)  # the sum of x Gamma(p, nu) purchases
    frame = pd.DataFrame({"customer_id": [f"C{i:06d}" for i in range(n)], "frequency": x, "recency": t_x,
                          "age": age, "repeat_value": np.where(x > 0, total / np.maximum(x, 1), np.nan)})
    return frame, after


@pytest.fixture(scope="module")
def simulated() -> tuple[pd.DataFrame, np.ndarray, potential.Fit]:
    frame, after = simulate(20_000, seed=7)
    return frame, after, potential.fit(frame)


def test_the_fit_recovers_the_simulated_purchase_process(simulated) -> None:
    _, _, fitted = simulated
    for name, true in TRUE.items():
        assert getattr(fitted, name) == pytest.approx(true, rel=0.15), name
    assert fitted.customers == 20_000


def test_expected_purchases_match_the_simulated_next_year(simulated) -> None:
    frame, after, fitted = simulated
    predicted = potential.predict(fitted, frame)
    assert predicted["expected_orders_365d"].sum() == pytest.approx(after.sum(), rel=0.05)
    # and by group: the quiet (long since the last purchase) are expected to buy less, rightly
    quiet = (frame["age"] - frame["recency"]).to_numpy() > 300
    assert predicted["expected_orders_365d"][quiet].sum() == pytest.approx(after[quiet].sum(), rel=0.15)
    assert predicted["p_alive"][quiet].mean() < predicted["p_alive"][~quiet].mean()
    assert (predicted.loc[frame["frequency"] == 0, "p_alive"] == 1).all()  # BG/NBD: no repeat, no drop-out yet


def test_gamma_gamma_recovers_the_mean_spend(simulated) -> None:
    frame, _, fitted = simulated
    assert fitted.p * fitted.v / (fitted.q - 1) == pytest.approx(30.0, rel=0.05)
    value = potential.predict(fitted, frame)["expected_value"]
    repeat = frame["frequency"] > 0
    assert value[repeat].mean() == pytest.approx(frame.loc[repeat, "repeat_value"].mean(), rel=0.05)
    assert np.allclose(value[~repeat], fitted.p * fitted.v / (fitted.q - 1))  # no repeat purchase: the mean


def test_the_fit_sees_a_bounded_reproducible_sample(simulated) -> None:
    frame, _, _ = simulated
    small = potential.fit(frame.sample(frac=1, random_state=3), sample_rows=5_000)
    assert small.customers == 5_000
    assert potential.fit(frame, sample_rows=5_000) == small  # the same customers whatever the row order


def test_errors_by_hand() -> None:
    got = potential.errors(np.array([10.0, 0.0, 5.0]), np.array([0.0, 0.0, 10.0]))
    assert got == {"mae": 5.0, "rmse": pytest.approx(np.sqrt(125 / 3)), "relative_error": 0.5}


def test_too_few_repeat_customers_is_said_not_fitted() -> None:
    frame, _ = simulate(300, seed=1)
    frame["frequency"] = 0.0
    with pytest.raises(potential.NotFitted, match="300 with a purchase and 0 with a repeat purchase"):
        potential.fit(frame)


def test_less_than_two_years_of_history_falls_back_with_a_reason() -> None:
    frame, after = simulate(2_000, seed=2, ages=(10, 300))
    history = frame.assign(spend_year=30.0 * frame["frequency"], orders_year=frame["frequency"], spend_after=after)
    judged = potential.judge(history)
    assert judged.model is None
    assert judged.fit is None
    assert judged.failure.startswith("less than two years of order history")
    assert judged.baseline["mae"] is not None


def _orders(n: int, seed: int, as_of: date) -> tuple[pd.DataFrame, pd.DataFrame]:
    """raw.customers and raw.orders of ``n`` customers buying as BG/NBD and Gamma-Gamma say, first
    orders spread over the three years before ``as_of``."""
    rng = np.random.default_rng(seed)
    start = datetime.combine(as_of, datetime.min.time()) - timedelta(days=3 * 365)
    first = rng.uniform(0, 3 * 365 - 30, n)
    rate, drop = rng.gamma(TRUE["r"], 1 / TRUE["alpha"], n), rng.beta(TRUE["a"], TRUE["b"], n)
    nu = rng.gamma(SPEND["q"], 1 / SPEND["v"], n)
    times, who, t = [first], [np.arange(n)], first.copy()
    alive = np.ones(n, bool)
    while alive.any():
        t[alive] += rng.exponential(1 / rate[alive])
        alive &= t < 3 * 365
        times.append(t[alive].copy())
        who.append(np.flatnonzero(alive))
        alive &= rng.random(n) >= drop
    when, customer = np.concatenate(times), np.concatenate(who)
    ids = np.array([f"C{i:05d}" for i in range(n)])
    orders = pd.DataFrame({"order_id": [f"O{i}" for i in range(len(when))], "customer_id": ids[customer],
                           "order_ts": [start + timedelta(days=float(d)) for d in when], "status": "completed",
                           "amount": np.round(rng.gamma(SPEND["p"], 1 / nu[customer]), 2), "margin": 0.0})
    customers = pd.DataFrame({"customer_id": ids, "created_at": [start + timedelta(days=float(d) - 1) for d in first],
                              "region": "North", "industry": "retail", "channel": "web"})
    return customers, orders


@pytest.mark.parametrize("warehouse_url", ["duckdb", "postgresql"], indirect=True)
def test_score_potential_writes_scores_and_its_judgement(warehouse_url: str) -> None:
    as_of = date(2025, 1, 1)
    customers, orders = _orders(1_500, seed=11, as_of=as_of)
    cancelled = orders.head(5).assign(order_id=lambda f: f["order_id"] + "c", status="cancelled", amount=1e6)
    load_raw(warehouse_url, customers=customers, orders=pd.concat([orders, cancelled]))
    with open_engine(warehouse_url) as engine:
        compute_features(engine, as_of)
        potential.score_potential(engine, as_of, "first")
        summary = potential.score_potential(engine, as_of, "again")  # a rerun replaces the date's rows
        with engine.connect() as conn:
            scores = read_frame(conn, "SELECT * FROM staging.customer_potential")
            runs = read_frame(conn, "SELECT * FROM audit.potential_runs")
            features = load_features(conn, as_of, columns=("customer_id", "monetary_365d"))
    assert runs["run_id"].tolist() == ["again"]
    run = runs.iloc[0]
    assert (run["scorer"], summary["scorer"]) == ("model", "model"), run["reason"]
    assert run["holdout_rmse"] < run["baseline_rmse"]
    assert run["reason"] == f"the model's holdout RMSE {run['holdout_rmse']:.2f} is below the baseline's " \
                            f"{run['baseline_rmse']:.2f}"
    assert abs(run["holdout_relative_error"]) < 0.2  # the year's total predicted within a fifth
    assert set(json.loads(run["params"])) == {"holdout", "scoring"}
    assert json.loads(run["params"])["scoring"]["r"] == pytest.approx(TRUE["r"], rel=0.5)
    assert run["customers"] == len(scores) == orders["customer_id"].nunique()
    assert pd.Timestamp(run["holdout_start"]).date() == date(2024, 1, 2)
    assert scores["p_alive"].between(0, 1).all()
    assert (scores["potential_365d"] >= 0).all()
    merged = features.merge(scores, on="customer_id", suffixes=("", "_staged"))
    assert np.allclose(merged["potential_365d"], merged["potential_365d_staged"])
    assert features["potential_365d"].notna().sum() == len(scores)


def test_too_short_a_history_scores_last_years_spend(migrated_warehouse) -> None:
    as_of = date(2025, 1, 1)
    customers, orders = _orders(400, seed=5, as_of=as_of)
    recent = orders[orders["order_ts"] >= datetime(2024, 6, 1)]
    with migrated_warehouse.begin() as conn:
        bulk_insert(conn, "raw.orders", recent.assign(extracted_at=datetime(2025, 1, 1)))
    summary = potential.score_potential(migrated_warehouse, as_of, "short")
    assert summary["scorer"] == "last_year_spend"
    assert summary["reason"].startswith("less than two years of order history")
    with migrated_warehouse.connect() as conn:
        scores = read_frame(conn, "SELECT * FROM staging.customer_potential ORDER BY customer_id")
    spend = recent.groupby("customer_id").agg(spend=("amount", "sum")).sort_index()
    assert np.allclose(scores["potential_365d"], spend["spend"].to_numpy())
    assert scores["p_alive"].isna().all()


def test_rules_may_name_the_potential(tmp_path) -> None:
    from grading.rules.files import load_tier_rules
    from grading.tiers import assign_tiers

    assert RULE_FEATURES["potential_365d"] == RULE_FEATURES["p_alive"] == "number"
    path = tmp_path / "tiers.yaml"
    path.write_text("""\
kind: tiers
version: "2.0"
effective_date: 2025-01-01
owner: ops
description: invest in the customers the next year should bring the most
tiers: [normal, gold]
rules:
  - name: high_potential
    tier: gold
    when:
      all:
        - {feature: potential_365d, op: ">=", value: 10000}
        - {feature: p_alive, op: ">", value: 0.5}
default: {name: rest, tier: normal}
""")
    rules = load_tier_rules(path, RULE_FEATURES)
    assert [leaf.feature for leaf in rules.rules[0].when.leaves()] == ["potential_365d", "p_alive"]
    frame = pd.DataFrame({"customer_id": ["a", "b", "c"], "potential_365d": [20000.0, 20000.0, np.nan],
                          "p_alive": [0.9, 0.2, 0.9]})
    assigned = assign_tiers(frame, rules)
    assert assigned.set_index("customer_id")["tier"].to_dict() == {"a": "gold", "b": "normal", "c": "normal"}


@pytest.mark.parametrize("warehouse_url", ["duckdb", "postgresql"], indirect=True)
def test_a_young_fit_scores_later_runs_without_judging_again(warehouse_url: str) -> None:
    """The fit judged for one date scores the runs of the following weeks (its record says so and
    keeps the judgement); its age counts from the date it was fitted, a rerun of a date scores
    what its first run scored, and past the age (or with 0) the model is judged and fitted anew."""
    first, week, month = date(2025, 1, 1), date(2025, 1, 8), date(2025, 1, 30)
    customers, orders = _orders(1_200, seed=13, as_of=month)
    load_raw(warehouse_url, customers=customers, orders=orders)
    with open_engine(warehouse_url) as engine:
        judged = potential.score_potential(engine, first, "first", max_age_days=28)
        with engine.connect() as conn:
            first_scores = read_frame(conn, "SELECT * FROM staging.customer_potential WHERE as_of_date = :d "
                                            "ORDER BY customer_id", {"d": first})
        reused = potential.score_potential(engine, week, "week", max_age_days=28)
        with engine.connect() as conn:
            stored = read_frame(conn, "SELECT * FROM staging.customer_potential WHERE as_of_date = :d "
                                      "ORDER BY customer_id", {"d": week})
            inputs = potential._inputs(conn, week, week)
        again = potential.score_potential(engine, week, "week again", max_age_days=28)
        with engine.connect() as conn:
            rerun = read_frame(conn, "SELECT * FROM staging.customer_potential WHERE as_of_date = :d "
                                     "ORDER BY customer_id", {"d": week})
        aged = potential.score_potential(engine, month, "month", max_age_days=28)  # 29 days after the fit
        fresh = potential.score_potential(engine, week, "fresh", max_age_days=0)
        # the judged date rerun after later dates: judged again (its own rounded fit is not reused)
        first_again = potential.score_potential(engine, first, "first again", max_age_days=28)
        with engine.connect() as conn:
            first_rerun = read_frame(conn, "SELECT * FROM staging.customer_potential WHERE as_of_date = :d "
                                           "ORDER BY customer_id", {"d": first})
    assert judged["scorer"] == "model", judged["reason"]
    assert judged["reason"].startswith("the model's holdout RMSE")
    assert reused["scorer"] == "model"
    assert reused["reason"] == (f"reused the fit of 2025-01-01 (under 28 days old): its holdout RMSE "
                                f"{judged['holdout_rmse']:.2f} is below the baseline's {judged['baseline_rmse']:.2f}")
    for key in ("holdout_start", "holdout_rmse", "baseline_rmse", "holdout_customers", "fit_customers"):
        assert reused[key] == judged[key], key
    params = json.loads(reused["params"])
    assert params["scoring"] == json.loads(judged["params"])["scoring"]
    assert params["fitted_as_of"] == "2025-01-01"
    # scored with the stored fit on the week's own customers
    fitted = potential.Fit(**params["scoring"], customers=reused["fit_customers"])
    want = potential.predict(fitted, inputs).sort_values("customer_id", ignore_index=True)
    assert stored["customer_id"].tolist() == want["customer_id"].tolist()
    assert np.allclose(stored["potential_365d"], want["potential_365d"].round(4))
    assert again["reason"] == reused["reason"]
    pd.testing.assert_frame_equal(rerun, stored)
    assert aged["reason"].startswith("the model's holdout RMSE"), aged["reason"]
    assert fresh["reason"].startswith("the model's holdout RMSE"), fresh["reason"]
    assert first_again["reason"] == judged["reason"]
    pd.testing.assert_frame_equal(first_rerun, first_scores)
