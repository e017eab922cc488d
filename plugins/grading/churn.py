"""Churn propensity: a scikit-learn model that scores how likely a customer is to stop buying.

Label: no completed order in the 90 days after a date. The model is trained on the
features as of ``as_of - 180 days`` (labels from the 90 days after) and judged on a later,
disjoint holdout, the features as of ``as_of - 90 days`` (labels up to ``as_of``) — a
time-based split, as the model will be used on the future. It is compared with a
recency-only baseline (longer since the last order = more likely to churn); the audit says
plainly when it does not beat it. The score feeds the ``churn_propensity`` feature and
the win-back priority.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from grading.features import features_as_of, load_features
from grading.warehouse import bulk_insert, read_frame

HORIZON = timedelta(days=90)
MODEL_NAME = "hist_gradient_boosting_v1"
SEED = 20250101
MIN_ROWS = 200
MODEL_FEATURES = (
    "recency_days", "tenure_days", "orders_365d", "monetary_365d", "margin_365d", "refunds_365d",
    "orders_lifetime", "monetary_lifetime", "tickets_365d", "complaints_365d", "surveys_365d",
    "csat_mean_365d", "nps_mean_365d", "avg_order_value_365d", "monetary_90d", "monetary_prev_90d",
    "refund_rate_365d", "complaint_rate_365d", "resolution_hours_365d", "open_tickets",
)


@dataclass(frozen=True)
class ModelReport:
    model: str
    train_as_of: date
    holdout_as_of: date
    train_rows: int
    holdout_rows: int
    holdout_churn_rate: float | None
    auc: float | None
    precision_top_decile: float | None
    baseline_auc: float | None
    baseline_precision_top_decile: float | None
    beats_baseline: bool | None
    note: str


def labelled(conn: Connection, as_of: date) -> pd.DataFrame:
    """Customers who had bought before ``as_of``, their features then, and whether they churned after."""
    frame = features_as_of(conn, as_of)
    frame = frame[frame["last_order_at"].notna()].copy()
    buyers = read_frame(conn, (
        "SELECT DISTINCT customer_id FROM raw.orders WHERE status = 'completed' "
        "AND order_ts >= :start AND order_ts < :end"
    ), {"start": as_of, "end": as_of + HORIZON})
    frame["churned"] = ~frame["customer_id"].isin(set(buyers["customer_id"]))
    return frame


def matrix(frame: pd.DataFrame, columns: tuple[str, ...] = MODEL_FEATURES) -> np.ndarray:
    return frame[list(columns)].apply(pd.to_numeric, errors="coerce").astype(float).to_numpy()


def usable_features(frame: pd.DataFrame) -> tuple[str, ...]:
    """The model features with at least two distinct values in training: a source without
    surveys (or tickets) leaves those columns empty, and a constant column teaches nothing."""
    return tuple(c for c in MODEL_FEATURES if pd.to_numeric(frame[c], errors="coerce").nunique() > 1)


def precision_at_top_decile(labels: np.ndarray, scores: np.ndarray) -> float:
    """Share of churners among the 10% highest scores (ties broken by position, stably)."""
    top = max(1, len(scores) // 10)
    order = np.argsort(-scores, kind="stable")[:top]
    return float(labels[order].mean())


def train(train_frame: pd.DataFrame, holdout: pd.DataFrame, train_as_of: date, holdout_as_of: date):
    """Fit on ``train_frame``, judge on ``holdout``; returns (model or None, report)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    sizes = {"train_rows": len(train_frame), "holdout_rows": len(holdout)}
    base = {"model": MODEL_NAME, "train_as_of": train_as_of, "holdout_as_of": holdout_as_of, **sizes}
    empty = dict.fromkeys(("holdout_churn_rate", "auc", "precision_top_decile", "baseline_auc",
                           "baseline_precision_top_decile", "beats_baseline"))
    classes = (train_frame["churned"].nunique() if len(train_frame) else 0,
               holdout["churned"].nunique() if len(holdout) else 0)
    if min(sizes.values()) < MIN_ROWS or min(classes) < 2:
        note = (f"not enough history to train: {sizes['train_rows']} training and {sizes['holdout_rows']} "
                f"holdout customers (need {MIN_ROWS} each, with both outcomes); no churn scores this run")
        return None, ModelReport(**base, **empty, note=note)

    if not usable_features(train_frame):
        return None, ModelReport(**base, **empty, note="no feature varies among the training customers; no churn "
                                                      "scores this run")
    model = HistGradientBoostingClassifier(max_iter=150, learning_rate=0.05, max_leaf_nodes=15,
                                           early_stopping=False, random_state=SEED)
    model.grading_features = usable_features(train_frame)
    model.fit(matrix(train_frame, model.grading_features), train_frame["churned"].to_numpy())
    labels = holdout["churned"].to_numpy()
    scores = model.predict_proba(matrix(holdout, model.grading_features))[:, 1]
    baseline = holdout["recency_days"].astype(float).to_numpy()
    auc, baseline_auc = float(roc_auc_score(labels, scores)), float(roc_auc_score(labels, baseline))
    beats = auc > baseline_auc
    note = (f"holdout AUC {auc:.3f} vs recency-only {baseline_auc:.3f}: "
            + ("the model beats the baseline" if beats else "the model does NOT beat the recency baseline"))
    return model, ModelReport(
        **base, holdout_churn_rate=float(labels.mean()), auc=round(auc, 4),
        precision_top_decile=round(precision_at_top_decile(labels, scores), 4), baseline_auc=round(baseline_auc, 4),
        baseline_precision_top_decile=round(precision_at_top_decile(labels, baseline), 4), beats_baseline=beats,
        note=note)


def score_churn(warehouse: Engine, as_of: date, run_id: str) -> ModelReport:
    """Train, judge and apply the churn model for ``as_of``; stores scores and the model record."""
    with warehouse.begin() as conn:
        train_as_of, holdout_as_of = as_of - 2 * HORIZON, as_of - HORIZON
        model, report = train(labelled(conn, train_as_of), labelled(conn, holdout_as_of), train_as_of, holdout_as_of)
        conn.execute(sa.text("DELETE FROM staging.churn_scores WHERE as_of_date = :as_of"), {"as_of": as_of})
        if model is not None:
            current = load_features(conn, as_of)
            scores = pd.DataFrame({
                "as_of_date": as_of, "customer_id": current["customer_id"],
                "churn_propensity": np.round(model.predict_proba(matrix(current, model.grading_features))[:, 1], 4),
            })
            bulk_insert(conn, "staging.churn_scores", scores)
        conn.execute(sa.text("DELETE FROM marts.model_runs WHERE as_of_date = :as_of AND model = :model"),
                     {"as_of": as_of, "model": MODEL_NAME})
        record = pd.DataFrame([{**asdict(report), "run_id": run_id, "as_of_date": as_of,
                                "trained_at": datetime.now(UTC).replace(tzinfo=None)}])
        bulk_insert(conn, "marts.model_runs", record.astype({"beats_baseline": "boolean"}))
    return report
