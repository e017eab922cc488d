"""The churn propensity model: judged honestly on a later holdout against a recency baseline."""

from __future__ import annotations

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


def test_the_model_beats_recency_alone_on_the_demo_data(scored) -> None:
    url, report, _ = scored
    assert report["beats_baseline"] is True, report["note"]
    assert report["auc"] > report["baseline_auc"] > 0.5
    with open_engine(url) as engine, engine.connect() as conn:
        record = read_frame(conn, "SELECT * FROM audit.model_runs")
    assert len(record) == 1  # the rerun replaced the first record
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
