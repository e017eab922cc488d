"""The churn propensity model: calibrated, judged honestly on a later holdout against the
recency rule, and used only when it beats it where the win-back list needs it."""

from __future__ import annotations

import json
import warnings
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from grading import churn, demo
from grading.frames import read_frame
from grading.pipeline import Connections, churn_stage, features_stage
from grading.warehouse import open_engine
from tests.helpers import extract_validated


def test_precision_at_top_decile_by_hand() -> None:
    labels = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 0] * 2)
    scores = np.arange(20, 0, -1, dtype=float)  # the first two rows score highest
    assert churn.precision_at_top_decile(labels, scores) == 0.5


def _synthetic(n: int, seed: int, beyond_recency: bool) -> pd.DataFrame:
    """Customers whose churn is known to depend on complaints as well as recency, or on recency only."""
    rng = np.random.default_rng(seed)
    data = {c: rng.normal(size=n) for c in churn.MODEL_FEATURES}
    data["recency_days"] = rng.uniform(1, 365, n)
    data["complaints_365d"] = rng.poisson(1.0, n).astype(float)
    logit = (-1.0 + 0.004 * data["recency_days"] + 1.2 * (data["complaints_365d"] - 1) if beyond_recency
             else -2.0 + 0.012 * data["recency_days"])
    frame = pd.DataFrame({"customer_id": [f"C{i:06d}" for i in range(n)], **data})
    frame["churned"] = rng.random(n) < 1 / (1 + np.exp(-logit))
    return frame


def test_a_model_that_sees_more_than_recency_scores_calibrated() -> None:
    holdout = _synthetic(3000, 101, beyond_recency=True)
    model, report = churn.train(_synthetic(3000, 1, beyond_recency=True), holdout, date(2024, 7, 1),
                                date(2024, 10, 1))
    assert (report.scorer, report.beats_baseline, report.calibration) == ("model", True, "sigmoid"), report.note
    assert report.precision_top_decile > report.baseline_precision_top_decile + 0.1
    assert report.lift_top_decile == pytest.approx(report.precision_top_decile / report.holdout_churn_rate, abs=1e-3)
    assert report.brier < report.baseline_brier
    assert report.brier <= report.uncalibrated_brier
    predicted = model.predict_proba(churn.matrix(holdout, model.grading_features))[:, 1]
    assert abs(predicted.mean() - report.holdout_churn_rate) < 0.03
    bins = json.loads(report.reliability)
    assert sum(b["customers"] for b in bins) == len(holdout)
    assert all(abs(b["mean_predicted"] - b["observed"]) < 0.15 for b in bins if b["customers"] >= 100)
    assert report.note.endswith("the model scores")


def test_too_few_of_an_outcome_to_calibrate_on_leaves_the_model_uncalibrated_without_warnings() -> None:
    frame = _synthetic(600, 5, beyond_recency=True)
    held = np.arange(len(frame)) % churn.CALIBRATION_SHARE == churn.CALIBRATION_SHARE - 1
    frame["churned"] = False
    frame.loc[np.flatnonzero(held)[:3], "churned"] = True   # 3 churners in the calibration part: fewer than 5 folds
    frame.loc[np.flatnonzero(~held)[:40], "churned"] = True
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # sklearn's "least populated class" warning would fail here
        model, uncalibrated, calibration = churn.fit_calibrated(frame, ("recency_days", "complaints_365d"))
    assert calibration is None
    assert model is uncalibrated
    frame.loc[np.flatnonzero(held)[:20], "churned"] = True
    assert churn.fit_calibrated(frame, ("recency_days", "complaints_365d"))[2] == "sigmoid"


def test_a_model_that_does_not_beat_recency_falls_back_to_the_rule() -> None:
    holdout = _synthetic(3000, 101, beyond_recency=False)
    model, report = churn.train(_synthetic(3000, 1, beyond_recency=False), holdout, date(2024, 7, 1),
                                date(2024, 10, 1))
    assert model is not None  # kept: it carries the rule, and its judgement is the record
    assert (report.scorer, report.beats_baseline) == ("recency_rule", False)
    assert report.reason.startswith("the model's top-decile precision")
    assert "not above" in report.reason
    assert "the recency rule scores" in report.note
    rule = model.grading_recency_rule
    assert list(rule.rates) == sorted(rule.rates)  # longer since the last order: no less likely to churn
    assert rule.predict(np.array([np.nan]))[0] == rule.rates[-1]
    assert abs(rule.predict(holdout["recency_days"].to_numpy()).mean() - report.holdout_churn_rate) < 0.03


def test_the_decision_needs_precision_and_calibration() -> None:
    rule = {"precision": 0.80, "brier": 0.20}
    assert churn.decide({"precision": 0.85, "brier": 0.19}, rule)[0] == "model"
    assert churn.decide({"precision": 0.85, "brier": 0.20 + churn.BRIER_TOLERANCE / 2}, rule)[0] == "model"
    assert churn.decide({"precision": 0.80, "brier": 0.10}, rule)[0] == "recency_rule"  # a tie is no win
    scorer, reason = churn.decide({"precision": 0.90, "brier": 0.25}, rule)
    assert scorer == "recency_rule"
    assert "Brier" in reason


def test_the_reliability_table_by_hand() -> None:
    bins = churn.reliability_table(np.array([0, 1, 1, 1]), np.array([0.05, 0.15, 0.95, 1.0]))
    assert bins == [{"bin": "0.0-0.1", "customers": 1, "mean_predicted": 0.05, "observed": 0.0},
                    {"bin": "0.1-0.2", "customers": 1, "mean_predicted": 0.15, "observed": 1.0},
                    {"bin": "0.9-1.0", "customers": 2, "mean_predicted": 0.975, "observed": 1.0}]


def test_too_little_history_is_said_not_hidden() -> None:
    frame = pd.DataFrame({c: [1.0] * 10 for c in churn.MODEL_FEATURES} | {"churned": [True, False] * 5})
    model, report = churn.train(frame, frame, date(2024, 7, 1), date(2024, 10, 1))
    assert model is None
    assert report.auc is None
    assert report.note.startswith("not enough history to train: 10 training and 10 holdout customers")


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict, dict]:
    tmp = tmp_path_factory.mktemp("churn")
    source_url, url = f"sqlite:///{tmp / 'source.sqlite'}", f"duckdb:///{tmp / 'w.duckdb'}"
    demo.write_source(demo.generate(customers=2000, seed=42), source_url)
    conns = Connections(source_url=source_url, warehouse_url=url)
    extract_validated(conns, date(2025, 1, 1), "r")
    features_stage(conns, date(2025, 1, 1), "r")
    first = churn_stage(conns, date(2025, 1, 1), "r")
    with open_engine(url) as engine, engine.connect() as conn:
        scores_first = read_frame(conn, "SELECT customer_id, churn_propensity FROM staging.churn_scores")
    second = churn_stage(conns, date(2025, 1, 1), "r2")
    return url, first, {"first": scores_first, "second_report": second}


def test_on_the_demo_data_the_recency_rule_scores(scored) -> None:
    # On the demo the model ranks a little better overall (AUC) but holds fewer churners in its top
    # decile than days since the last order: the win-back list is better served by the rule.
    url, report, extra = scored
    assert report["beats_baseline"] is False, report["note"]
    assert report["auc"] > report["baseline_auc"] > 0.5
    with open_engine(url) as engine, engine.connect() as conn:
        record = read_frame(conn, "SELECT * FROM audit.model_runs")
    assert len(record) == 1  # the rerun replaced the first record
    row = record.iloc[0]
    assert (row["scorer"], row["calibration"]) == ("recency_rule", "sigmoid")
    assert row["precision_top_decile"] <= row["baseline_precision_top_decile"]
    assert row["reason"] in row["note"]
    assert "not above" in row["reason"]
    assert row["brier"] < row["uncalibrated_brier"]
    assert row["lift_top_decile"] > 1
    assert row["baseline_lift_top_decile"] > 1
    assert len(json.loads(row["reliability"])) == 10
    # the rule's probabilities: one per recency decile, rising with recency
    assert extra["first"]["churn_propensity"].nunique() <= 10
    row = record.iloc[0]
    assert (pd.Timestamp(row["train_as_of"]).date(), pd.Timestamp(row["holdout_as_of"]).date()) == (
        date(2024, 7, 5), date(2024, 10, 3))
    assert row["holdout_rows"] > 1000
    assert 0 < row["holdout_churn_rate"] < 1
    assert row["precision_top_decile"] > row["holdout_churn_rate"]  # better than picking at random


def test_every_customer_gets_a_reproducible_probability(scored) -> None:
    url, report, extra = scored
    first = extra["first"]
    assert len(first) == 2000
    assert first["churn_propensity"].between(0, 1).all()
    assert extra["second_report"] == report
    with open_engine(url) as engine, engine.connect() as conn:
        again = read_frame(conn, "SELECT customer_id, churn_propensity FROM staging.churn_scores")
    pd.testing.assert_frame_equal(first.sort_values("customer_id").reset_index(drop=True),
                                  again.sort_values("customer_id").reset_index(drop=True))


def test_scores_reach_the_published_snapshot(tmp_path: Path, warehouse_url: str) -> None:
    from grading.pipeline import run_grading
    from tests.helpers import scalar

    source_url = f"sqlite:///{tmp_path / 'source.sqlite'}"
    demo.write_source(demo.generate(customers=600, seed=4), source_url)
    run_grading(Connections(source_url=source_url, warehouse_url=warehouse_url), date(2025, 1, 1))
    assert scalar(warehouse_url, "SELECT COUNT(*) FROM marts.customer_features_snapshot "
                                 "WHERE churn_propensity IS NULL") == 0
    assert scalar(warehouse_url, "SELECT COUNT(*) FROM audit.model_runs") == 1
