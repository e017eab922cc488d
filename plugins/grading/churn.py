"""Churn propensity: a scikit-learn model that scores how likely a customer is to stop buying.

Label: no completed order in the 90 days after a date. The model is trained on the
features as of ``as_of - 180 days`` (labels from the 90 days after) and judged on a later,
disjoint holdout, the features as of ``as_of - 90 days`` (labels up to ``as_of``) — a
time-based split, as the model will be used on the future. It is compared with a
recency-only baseline (longer since the last order = more likely to churn); the audit says
plainly when it does not beat it. The score feeds the ``churn_propensity`` feature and
the win-back priority.

Training is the dear part (two feature computations at earlier dates and a fit), so it
happens rarely: the trained model is kept in ops.churn_models with its features, dates,
metrics and seed, and a run scores with the latest one trained at or before its as-of date
while it is younger than GRADING_CHURN_MODEL_MAX_AGE_DAYS; otherwise the run trains anew.
Training uses at most GRADING_CHURN_MAX_TRAIN_ROWS customers, a hash sample.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import pickle
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from grading.features import features_at, load_features
from grading.frames import bulk_insert, read_computed_frame
from grading.settings import churn_max_train_rows, churn_model_max_age_days, pseudonym_key
from grading.warehouse import analyze

log = logging.getLogger(__name__)

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


def labelled(conn: Connection, as_of: date, features: pd.DataFrame) -> pd.DataFrame:
    """Customers who had bought before ``as_of``, their ``features`` then (features_at), and
    whether they churned after."""
    frame = features[features["last_order_at"].notna()].copy()
    buyers = read_computed_frame(conn, (
        "SELECT DISTINCT customer_id FROM raw.orders WHERE status = 'completed' "
        "AND order_ts >= :start AND order_ts < :end"
    ), {"start": as_of, "end": as_of + HORIZON})
    # a join, not Series.isin: pandas' isin on Arrow strings builds a Python object per value
    # of the set first (3.7 of 25 s training at a million customers)
    marked = frame[["customer_id"]].merge(buyers, on="customer_id", how="left", indicator="bought")
    frame["churned"] = (marked["bought"] == "left_only").to_numpy()
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


def sample_customers(frame: pd.DataFrame, limit: int) -> pd.DataFrame:
    """At most ``limit`` rows, chosen by a hash of the customer id, ordered by customer id.

    The same customers are chosen whatever the row order the engine returned, and the order
    given to the model is fixed too: HistGradientBoosting bins features from a subsample of
    rows, so a different row order could otherwise give a different model on a rerun.
    """
    frame = frame.sort_values("customer_id", kind="stable", ignore_index=True)
    if not limit or len(frame) <= limit:
        return frame
    digest = pd.util.hash_pandas_object(frame["customer_id"].astype(str), index=False, categorize=False)
    keep = np.sort(np.argsort(digest.to_numpy(), kind="stable")[:limit])
    return frame.iloc[keep].reset_index(drop=True)


def train_on_history(conn: Connection, as_of: date, max_train_rows: int):
    """Train a model for ``as_of`` on the features two horizons back, judged on those one
    horizon back; returns (model or None, report). Only the model's columns are read, and
    the frames are gone once it returns (scoring then reads the current features)."""
    train_as_of, holdout_as_of = as_of - 2 * HORIZON, as_of - HORIZON
    dates = (train_as_of, holdout_as_of)
    history = features_at(conn, dates, columns=("customer_id", "last_order_at", *MODEL_FEATURES))
    train_frame, holdout = (sample_customers(labelled(conn, day, features), max_train_rows)
                            for day, features in zip(dates, history, strict=True))
    del history
    return train(train_frame, holdout, train_as_of, holdout_as_of)


@dataclass(frozen=True)
class StoredModel:
    """A trained model as kept in ops.churn_models: the estimator, its judgement and when it was made."""

    model_as_of: date
    estimator: Any
    report: ModelReport
    trained_at: datetime


def _signature(payload: bytes) -> str:
    """HMAC of the pickled model under the pipeline's secret key.

    Unpickling runs code, so a worker loads only bytes the pipeline itself wrote: a row put
    into ops.churn_models by anyone without the key is refused (and the model retrained).
    """
    return hmac.new(pseudonym_key(), payload, hashlib.sha256).hexdigest()


def _models_table() -> sa.Table:
    """ops.churn_models for typed inserts: the model bytes need a binary bind on both dialects."""
    columns = [sa.Column(name, kind) for name, kind in (
        ("model", sa.String), ("model_as_of", sa.Date), ("sklearn_version", sa.String), ("features", sa.String),
        ("seed", sa.BigInteger), ("train_as_of", sa.Date), ("holdout_as_of", sa.Date),
        ("train_rows", sa.BigInteger), ("holdout_rows", sa.BigInteger), ("holdout_churn_rate", sa.Float),
        ("auc", sa.Float), ("precision_top_decile", sa.Float), ("baseline_auc", sa.Float),
        ("baseline_precision_top_decile", sa.Float), ("beats_baseline", sa.Boolean), ("note", sa.String),
        ("model_bytes", sa.LargeBinary), ("model_hmac", sa.String), ("run_id", sa.String),
        ("trained_at", sa.DateTime))]
    return sa.Table("churn_models", sa.MetaData(), *columns, schema="ops")


def _sklearn_version() -> str:
    import sklearn
    return sklearn.__version__


def latest_model(conn: Connection, as_of: date, max_age_days: int) -> StoredModel | None:
    """The model to score ``as_of`` with: the latest trained at or before it, if younger than
    ``max_age_days`` and written by this scikit-learn version; None means train one.

    Chosen by as-of dates only, never by wall-clock time: a rerun or backfill of a date
    finds the same model. A model trained after ``as_of`` is never used for it (it has seen
    later data), and a model a run trained for its own date is at age 0 on its rerun.
    """
    if max_age_days <= 0:
        return None
    table = _models_table()
    row = conn.execute(
        sa.select(table).where(
            table.c.model == MODEL_NAME, table.c.sklearn_version == _sklearn_version(),
            table.c.model_as_of <= as_of, table.c.model_as_of > as_of - timedelta(days=max_age_days))
        .order_by(table.c.model_as_of.desc()).limit(1)).mappings().first()
    if row is None:
        return None
    payload = bytes(row["model_bytes"])
    if not hmac.compare_digest(_signature(payload), row["model_hmac"]):
        log.warning("churn model of %s in ops.churn_models does not carry this pipeline's signature "
                    "(written elsewhere, or GRADING_PSEUDONYM_KEY changed): not loaded, retraining",
                    row["model_as_of"])
        return None
    estimator = pickle.loads(payload)  # bytes signed by this pipeline's key, checked above
    fields = {f: row[f] for f in ModelReport.__dataclass_fields__ if f in row}
    for name in ("train_as_of", "holdout_as_of"):
        fields[name] = pd.Timestamp(fields[name]).date()
    fields["beats_baseline"] = None if fields["beats_baseline"] is None else bool(fields["beats_baseline"])
    return StoredModel(pd.Timestamp(row["model_as_of"]).date(), estimator, ModelReport(**fields),
                       pd.Timestamp(row["trained_at"]).to_pydatetime())


def save_model(conn: Connection, as_of: date, run_id: str, estimator: Any, report: ModelReport,
               trained_at: datetime) -> None:
    """Keep a model trained for ``as_of`` (replacing one of the same date) for later runs."""
    payload = pickle.dumps(estimator, protocol=pickle.HIGHEST_PROTOCOL)
    table, version = _models_table(), _sklearn_version()
    conn.execute(sa.delete(table).where(table.c.model == MODEL_NAME, table.c.model_as_of == as_of,
                                        table.c.sklearn_version == version))
    conn.execute(sa.insert(table).values(
        **asdict(report), model_as_of=as_of, sklearn_version=version,
        features=",".join(estimator.grading_features), seed=SEED, model_bytes=payload,
        model_hmac=_signature(payload), run_id=run_id, trained_at=trained_at))


@dataclass(frozen=True)
class ChurnOutcome:
    """What the churn stage did: the judgement of the model it scored with, and which model."""

    report: ModelReport
    model_as_of: date | None  # the as-of date the model was trained for; None: no model
    trained_now: bool

    @property
    def note(self) -> str:
        """The verdict and the model's age: the same words on every rerun of the date."""
        if self.model_as_of is None:
            return self.report.note
        return f"model trained for {self.model_as_of}: {self.report.note}"


def score_churn(warehouse: Engine, as_of: date, run_id: str, *, max_age_days: int | None = None,
                max_train_rows: int | None = None) -> ChurnOutcome:
    """Score every customer as of ``as_of`` with a recent stored model, training one if none
    is young enough; stores the scores and the model record of the run.

    Training costs two feature computations at earlier dates and a fit; scoring costs one
    read of the stored features. Models are kept in ops.churn_models, so any worker finds
    them, and chosen by as-of date (see ``latest_model``), so reruns score identically.
    """
    max_age_days = churn_model_max_age_days() if max_age_days is None else max_age_days
    max_train_rows = churn_max_train_rows() if max_train_rows is None else max_train_rows
    with warehouse.begin() as conn:
        stored = latest_model(conn, as_of, max_age_days)
        if stored is not None:
            model, report, model_as_of, trained_at = stored.estimator, stored.report, stored.model_as_of, \
                stored.trained_at
            log.info("churn: scoring %s with the model trained for %s", as_of, model_as_of)
        else:
            model, report = train_on_history(conn, as_of, max_train_rows)
            trained_at = datetime.now(UTC).replace(tzinfo=None)
            model_as_of = as_of if model is not None else None
            if model is not None:
                save_model(conn, as_of, run_id, model, report, trained_at)
            log.info("churn: trained a model for %s: %s", as_of, report.note)
        conn.execute(sa.text("DELETE FROM staging.churn_scores WHERE as_of_date = :as_of"), {"as_of": as_of})
        if model is not None:
            # only the model's columns: the whole feature row of a million customers is 0.5 GiB more
            current = load_features(conn, as_of, columns=("customer_id", *model.grading_features))
            scores = pd.DataFrame({
                "as_of_date": as_of, "customer_id": current["customer_id"],
                "churn_propensity": np.round(model.predict_proba(matrix(current, model.grading_features))[:, 1], 4),
            })
            bulk_insert(conn, "staging.churn_scores", scores)
        conn.execute(sa.text("DELETE FROM audit.model_runs WHERE as_of_date = :as_of AND model = :model"),
                     {"as_of": as_of, "model": MODEL_NAME})
        outcome = ChurnOutcome(report, model_as_of, stored is None)
        record = pd.DataFrame([{**asdict(report), "note": outcome.note, "run_id": run_id, "as_of_date": as_of,
                                "trained_at": trained_at}])
        bulk_insert(conn, "audit.model_runs", record.astype({"beats_baseline": "boolean"}))
        analyze(conn, "staging.churn_scores")
    return outcome
