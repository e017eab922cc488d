"""Stored churn models: trained rarely, reused by as-of date, identical scores on rerun.

Run on the embedded DuckDB warehouse and on a real PostgreSQL database (warehouse_url).
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest

from grading import churn, demo
from grading.frames import read_frame
from grading.pipeline import Connections, churn_stage, features_stage
from grading.warehouse import open_engine
from tests.helpers import extract_validated

FIRST = date(2024, 10, 1)
WEEK_LATER = FIRST + timedelta(days=7)
TWO_WEEKS_LATER = FIRST + timedelta(days=14)
OLD_ENOUGH = FIRST + timedelta(days=35)  # past the 28-day default age


def _prepared(tmp_path: Path, warehouse_url: str, *dates: date) -> Connections:
    """A warehouse with the demo data extracted up to the last date and features stored for each."""
    source_url = f"sqlite:///{tmp_path / 'source.sqlite'}"
    demo.write_source(demo.generate(customers=1200, seed=11, end=date(2024, 12, 31)), source_url)
    conns = Connections(source_url=source_url, warehouse_url=warehouse_url)
    extract_validated(conns, max(dates), "prep")
    for day in dates:
        features_stage(conns, day, "prep")
    return conns


def _scores(url: str, as_of: date) -> pd.DataFrame:
    with open_engine(url) as engine, engine.connect() as conn:
        frame = read_frame(conn, "SELECT customer_id, churn_propensity FROM staging.churn_scores "
                                 "WHERE as_of_date = :as_of ORDER BY customer_id", {"as_of": as_of})
    return frame.reset_index(drop=True)


def _models(url: str) -> list[date]:
    with open_engine(url) as engine, engine.connect() as conn:
        frame = read_frame(conn, "SELECT model_as_of FROM ops.churn_models ORDER BY model_as_of")
    return [pd.Timestamp(v).date() for v in frame["model_as_of"]]


def test_a_young_model_is_reused_and_judged_as_trained(tmp_path: Path, warehouse_url: str) -> None:
    conns = _prepared(tmp_path, warehouse_url, FIRST, WEEK_LATER)
    first = churn_stage(conns, FIRST, "r1")
    second = churn_stage(conns, WEEK_LATER, "r2")
    assert first["model_as_of"] == second["model_as_of"] == FIRST.isoformat()
    assert _models(warehouse_url) == [FIRST]  # trained once
    assert (second["auc"], second["baseline_auc"], second["beats_baseline"]) == (
        first["auc"], first["baseline_auc"], first["beats_baseline"])
    assert second["note"].startswith(f"model trained for {FIRST}: holdout top-decile precision")
    with open_engine(warehouse_url) as engine, engine.connect() as conn:
        runs = read_frame(conn, "SELECT as_of_date, train_as_of, auc, precision_top_decile, beats_baseline, brier, "
                                "baseline_brier, scorer, reason FROM audit.model_runs ORDER BY as_of_date")
    assert len(runs) == 2
    assert runs["train_as_of"].nunique() == 1
    assert runs["auc"].nunique() == 1  # the audit shows the model used
    assert runs["brier"].nunique() == runs["scorer"].nunique() == runs["reason"].nunique() == 1
    assert runs["scorer"].iloc[0] in ("model", "recency_rule")
    with open_engine(warehouse_url) as engine, engine.connect() as conn:
        customers = read_frame(conn, "SELECT COUNT(*) AS n FROM staging.customer_features WHERE as_of_date = :d",
                               {"d": WEEK_LATER})["n"].iloc[0]
    assert len(_scores(warehouse_url, WEEK_LATER)) == customers > 1000  # every customer scored with it
    assert not _scores(warehouse_url, WEEK_LATER).equals(_scores(warehouse_url, FIRST))  # on that date's features


def test_a_fallback_to_the_recency_rule_is_kept_with_the_model(tmp_path: Path, warehouse_url: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    conns = _prepared(tmp_path, warehouse_url, FIRST, WEEK_LATER)
    with monkeypatch.context() as patched:  # the model lost: whatever the data, the rule scores
        patched.setattr(churn, "decide", lambda model, rule: ("recency_rule", "forced by the test"))
        first = churn_stage(conns, FIRST, "r1")
    second = churn_stage(conns, WEEK_LATER, "r2")  # reuses the stored model and its judgement
    assert first["model_as_of"] == second["model_as_of"] == FIRST.isoformat()
    assert first["beats_baseline"] is second["beats_baseline"] is False
    assert second["note"].endswith("the recency rule scores, as forced by the test")
    with open_engine(warehouse_url) as engine, engine.connect() as conn:
        runs = read_frame(conn, "SELECT scorer, reason FROM audit.model_runs ORDER BY as_of_date")
        stored = read_frame(conn, "SELECT scorer, reason FROM ops.churn_models")
    assert runs.to_dict("records") == [{"scorer": "recency_rule", "reason": "forced by the test"}] * 2
    assert stored.to_dict("records") == [{"scorer": "recency_rule", "reason": "forced by the test"}]
    with open_engine(warehouse_url) as engine, engine.connect() as conn:
        recency = read_frame(conn, "SELECT customer_id, recency_days FROM staging.customer_features "
                                   "WHERE as_of_date = :d ORDER BY customer_id", {"d": WEEK_LATER})
    scores = _scores(warehouse_url, WEEK_LATER)
    assert scores["customer_id"].tolist() == recency["customer_id"].tolist()
    assert scores["churn_propensity"].nunique() <= 10  # the rule's rate per recency decile
    # longer since the last order: no lower a probability
    ordered = scores["churn_propensity"].to_numpy()[recency["recency_days"].astype(float).argsort(kind="stable")]
    assert (pd.Series(ordered).dropna().diff().dropna() >= 0).all()


def test_a_model_older_than_the_age_is_retrained(tmp_path: Path, warehouse_url: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    conns = _prepared(tmp_path, warehouse_url, FIRST, OLD_ENOUGH, TWO_WEEKS_LATER)
    churn_stage(conns, FIRST, "r1")
    later = churn_stage(conns, OLD_ENOUGH, "r2")
    assert later["model_as_of"] == OLD_ENOUGH.isoformat()
    assert _models(warehouse_url) == [FIRST, OLD_ENOUGH]
    # The age is a setting: with 10 days, two weeks is too old as well.
    monkeypatch.setenv("GRADING_CHURN_MODEL_MAX_AGE_DAYS", "10")
    assert churn_stage(conns, TWO_WEEKS_LATER, "r3")["model_as_of"] == TWO_WEEKS_LATER.isoformat()
    monkeypatch.setenv("GRADING_CHURN_MODEL_MAX_AGE_DAYS", "0")  # 0: retrain on every run
    with open_engine(warehouse_url) as engine:
        assert churn.score_churn(engine, TWO_WEEKS_LATER, "r4").trained_now


def test_reruns_and_backfills_score_identically(tmp_path: Path, warehouse_url: str) -> None:
    conns = _prepared(tmp_path, warehouse_url, FIRST, WEEK_LATER, TWO_WEEKS_LATER, OLD_ENOUGH)
    churn_stage(conns, FIRST, "r1")
    churn_stage(conns, WEEK_LATER, "r2")
    before = {day: _scores(warehouse_url, day) for day in (FIRST, WEEK_LATER)}
    churn_stage(conns, OLD_ENOUGH, "r3")  # trains a newer model ...
    backfill = churn_stage(conns, TWO_WEEKS_LATER, "r4")  # ... which an earlier date must not use
    assert backfill["model_as_of"] == FIRST.isoformat()
    for day in (FIRST, WEEK_LATER):  # reruns, in another order, pick the same model
        again = churn_stage(conns, day, f"rerun-{day}")
        assert again["model_as_of"] == FIRST.isoformat()
        pd.testing.assert_frame_equal(_scores(warehouse_url, day), before[day])
    assert _models(warehouse_url) == [FIRST, OLD_ENOUGH]


def test_a_model_not_signed_by_this_pipeline_is_not_loaded(tmp_path: Path, grading_home: Path) -> None:
    import sqlalchemy as sa

    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    conns = _prepared(tmp_path, url, FIRST, WEEK_LATER)
    churn_stage(conns, FIRST, "r1")
    with open_engine(url) as engine, engine.begin() as conn:
        conn.execute(sa.text("UPDATE ops.churn_models SET model_hmac = 'forged'"))
    assert churn_stage(conns, WEEK_LATER, "r2")["model_as_of"] == WEEK_LATER.isoformat()


def test_the_training_sample_ignores_row_order() -> None:
    frame = pd.DataFrame({"customer_id": [f"C{i:05d}" for i in range(5000)], "x": range(5000)})
    picked = churn.sample_customers(frame, 700)
    shuffled = churn.sample_customers(frame.sample(frac=1, random_state=3), 700)
    assert len(picked) == 700
    assert picked["customer_id"].is_monotonic_increasing
    pd.testing.assert_frame_equal(picked, shuffled)
    assert len(churn.sample_customers(frame, 0)) == 5000  # 0: no cap
