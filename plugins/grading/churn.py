"""Churn propensity: a scikit-learn model that scores how likely a customer is to stop buying.

Label: no completed order in the 90 days after a date. The model is trained on the
features as of ``as_of - 180 days`` (labels from the 90 days after) and judged on a later,
disjoint holdout, the features as of ``as_of - 90 days`` (labels up to ``as_of``) — a
time-based split, as the model will be used on the future. Its probabilities are calibrated
(Platt scaling fitted on a fifth of the training customers the model did not see). It is
compared with the recency rule: the churn rate of the customer's recency decile in training
(longer since the last order = more likely to churn). The model scores only when it beats
the rule on the holdout where the win-back list needs it - a higher share of churners in the
top decile - and is not worse calibrated (Brier score) by more than BRIER_TOLERANCE;
otherwise the recency rule scores, and model_runs and the run audit say why. Either way the
score is a probability, published as ``churn_propensity`` and read by the win-back priority.

Training is the dear part (two feature computations at earlier dates and a fit), so it
happens rarely: the trained model is kept in ops.churn_models with its features, dates,
metrics and seed, and a run scores with the latest one trained at or before its as-of date
while it is younger than GRADING_CHURN_MODEL_MAX_AGE_DAYS; otherwise the run trains anew.
Training uses at most GRADING_CHURN_MAX_TRAIN_ROWS customers, a hash sample.
"""

from __future__ import annotations

import hashlib
import hmac
import json
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
MODEL_NAME = "hist_gradient_boosting_v2"  # v2: calibrated, judged against the recency rule
EARLIER_NAMES = ("hist_gradient_boosting_v1",)
SEED = 20250101
MIN_ROWS = 200
CALIBRATION = "sigmoid"  # Platt scaling: monotone, so it keeps the model's ranking (and top decile)
CALIBRATION_SHARE = 5  # every 5th training customer (by id) fits the calibration, not the model
# The calibration is cross-validated over the calibration part in this many folds, so each outcome
# needs at least as many customers there (Olist: a handful of churners who came back would not do).
CALIBRATION_FOLDS = 5
BRIER_TOLERANCE = 0.005  # how much worse calibrated than the recency rule the model may be
MODEL, RECENCY_RULE = "model", "recency_rule"
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
    brier: float | None = None
    uncalibrated_brier: float | None = None
    baseline_brier: float | None = None
    lift_top_decile: float | None = None
    baseline_lift_top_decile: float | None = None
    calibration: str | None = None
    reliability: str | None = None  # JSON: 10 bins of predicted probability, mean predicted vs observed
    scorer: str | None = None  # MODEL or RECENCY_RULE: what scored the customers
    reason: str | None = None  # why that scorer


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


@dataclass(frozen=True)
class RecencyRule:
    """The recency baseline as a probability: the churn rate of each decile of days since the
    last order among the training customers, made non-decreasing in recency (isotonic)."""

    edges: tuple[float, ...]  # recency deciles' upper bounds (9 at most)
    rates: tuple[float, ...]  # churn rate of each bin, one more than edges

    @classmethod
    def fit(cls, recency: np.ndarray, churned: np.ndarray) -> RecencyRule:
        from sklearn.isotonic import IsotonicRegression

        known = np.isfinite(recency)
        edges = np.unique(np.quantile(recency[known], np.linspace(0, 1, 11)[1:-1]))
        bins = np.searchsorted(edges, recency[known], side="right")
        fitted = IsotonicRegression(y_min=0.0, y_max=1.0).fit(bins, churned[known].astype(float))
        rates = fitted.predict(np.arange(len(edges) + 1))
        return cls(tuple(float(e) for e in edges), tuple(round(float(r), 4) for r in rates))

    def predict(self, recency: np.ndarray) -> np.ndarray:
        """Churn probability by recency; no order yet (NaN) falls in the last, longest bin."""
        return np.asarray(self.rates)[np.searchsorted(np.asarray(self.edges), recency, side="right")]


def reliability_table(labels: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> list[dict]:
    """Customers in each tenth of predicted probability: mean predicted against the churn rate observed."""
    index = np.minimum((probabilities * bins).astype(int), bins - 1)
    return [{"bin": f"{b / bins:.1f}-{(b + 1) / bins:.1f}", "customers": int((index == b).sum()),
             "mean_predicted": round(float(probabilities[index == b].mean()), 4),
             "observed": round(float(labels[index == b].mean()), 4)}
            for b in range(bins) if (index == b).any()]


def _judged(labels: np.ndarray, ranking: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """Holdout metrics of one scorer: ``ranking`` orders the customers, ``probabilities`` are its churn estimates."""
    from sklearn.metrics import brier_score_loss, roc_auc_score

    precision = precision_at_top_decile(labels, ranking)
    return {"auc": float(roc_auc_score(labels, ranking)), "precision": precision,
            "lift": precision / float(labels.mean()), "brier": float(brier_score_loss(labels, probabilities))}


def decide(model: dict[str, float], rule: dict[str, float]) -> tuple[str, str]:
    """Which scorer to use, and why: the model only if its top decile holds more churners than
    the recency rule's and its Brier score is no more than BRIER_TOLERANCE worse."""
    if model["precision"] <= rule["precision"]:
        return RECENCY_RULE, (f"the model's top-decile precision {model['precision']:.3f} is not above the "
                              f"recency rule's {rule['precision']:.3f}")
    if model["brier"] > rule["brier"] + BRIER_TOLERANCE:
        return RECENCY_RULE, (f"the model's Brier score {model['brier']:.4f} is worse than the recency rule's "
                              f"{rule['brier']:.4f} by more than {BRIER_TOLERANCE}")
    return MODEL, (f"the model's top-decile precision {model['precision']:.3f} is above the recency rule's "
                   f"{rule['precision']:.3f} and its Brier score {model['brier']:.4f} is within {BRIER_TOLERANCE} "
                   f"of the rule's {rule['brier']:.4f} or better")


def fit_calibrated(frame: pd.DataFrame, features: tuple[str, ...]):
    """A gradient-boosting model fitted on four fifths of ``frame`` and Platt-calibrated on the
    rest (every CALIBRATION_SHARE-th row, the frame being in customer order); returns
    (calibrated model, uncalibrated model, calibration method or None when a part lacks an outcome
    or the calibration part holds fewer than CALIBRATION_FOLDS of one)."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.frozen import FrozenEstimator

    x, y = matrix(frame, features), frame["churned"].to_numpy()
    held = np.arange(len(frame)) % CALIBRATION_SHARE == CALIBRATION_SHARE - 1
    _, held_counts = np.unique(y[held], return_counts=True)
    split = len(held_counts) == 2 and held_counts.min() >= CALIBRATION_FOLDS and len(np.unique(y[~held])) == 2
    model = HistGradientBoostingClassifier(max_iter=150, learning_rate=0.05, max_leaf_nodes=15,
                                           early_stopping=False, random_state=SEED)
    if not split:
        model.fit(x, y)
        return model, model, None
    model.fit(x[~held], y[~held])
    calibrated = CalibratedClassifierCV(FrozenEstimator(model), method=CALIBRATION,
                                        cv=CALIBRATION_FOLDS).fit(x[held], y[held])
    return calibrated, model, CALIBRATION


def train(train_frame: pd.DataFrame, holdout: pd.DataFrame, train_as_of: date, holdout_as_of: date):
    """Fit on ``train_frame``, judge on ``holdout`` against the recency rule; returns (model or
    None, report). The model carries the fitted rule (``grading_recency_rule``), so a stored
    model whose report chose the rule scores with it."""
    from sklearn.metrics import brier_score_loss

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

    features = usable_features(train_frame)
    if not features:
        return None, ModelReport(**base, **empty, note="no feature varies among the training customers; no churn "
                                                      "scores this run")
    model, uncalibrated, calibration = fit_calibrated(train_frame, features)
    model.grading_features = features
    model.grading_recency_rule = RecencyRule.fit(train_frame["recency_days"].astype(float).to_numpy(),
                                                 train_frame["churned"].to_numpy())
    labels = holdout["churned"].to_numpy().astype(int)
    x = matrix(holdout, features)
    scores = model.predict_proba(x)[:, 1]
    recency = holdout["recency_days"].astype(float).to_numpy()
    mine = _judged(labels, scores, scores)
    rule = _judged(labels, recency, model.grading_recency_rule.predict(recency))
    scorer, reason = decide(mine, rule)
    note = (f"holdout top-decile precision {mine['precision']:.3f} (lift {mine['lift']:.2f}) vs the recency rule's "
            f"{rule['precision']:.3f} ({rule['lift']:.2f}), Brier {mine['brier']:.4f} vs {rule['brier']:.4f}, "
            f"AUC {mine['auc']:.3f} vs {rule['auc']:.3f}: "
            + ("the model scores" if scorer == MODEL else "the recency rule scores, as " + reason))
    return model, ModelReport(
        **base, holdout_churn_rate=float(labels.mean()), auc=round(mine["auc"], 4),
        precision_top_decile=round(mine["precision"], 4), baseline_auc=round(rule["auc"], 4),
        baseline_precision_top_decile=round(rule["precision"], 4), beats_baseline=scorer == MODEL, note=note,
        brier=round(mine["brier"], 4), baseline_brier=round(rule["brier"], 4),
        uncalibrated_brier=round(float(brier_score_loss(labels, uncalibrated.predict_proba(x)[:, 1])), 4),
        lift_top_decile=round(mine["lift"], 4), baseline_lift_top_decile=round(rule["lift"], 4),
        calibration=calibration, reliability=json.dumps(reliability_table(labels, scores)), scorer=scorer,
        reason=reason)


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
        ("brier", sa.Float), ("uncalibrated_brier", sa.Float), ("baseline_brier", sa.Float),
        ("lift_top_decile", sa.Float), ("baseline_lift_top_decile", sa.Float), ("calibration", sa.String),
        ("reliability", sa.String), ("scorer", sa.String), ("reason", sa.String),
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


def probabilities(conn: Connection, as_of: date, model: Any, report: ModelReport) -> pd.DataFrame:
    """staging.churn_scores rows for ``as_of``: the model's calibrated probabilities, or the
    recency rule's where the model's judgement chose the rule."""
    if report.scorer == RECENCY_RULE:
        current = load_features(conn, as_of, columns=("customer_id", "recency_days"))
        values = model.grading_recency_rule.predict(current["recency_days"].astype(float).to_numpy())
    else:
        # only the model's columns: the whole feature row of a million customers is 0.5 GiB more
        current = load_features(conn, as_of, columns=("customer_id", *model.grading_features))
        values = model.predict_proba(matrix(current, model.grading_features))[:, 1]
    return pd.DataFrame({"as_of_date": as_of, "customer_id": current["customer_id"],
                         "churn_propensity": np.round(values, 4)})


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
            if report.scorer == RECENCY_RULE:
                log.warning("churn: %s scored with the recency rule: %s", as_of, report.reason)
            bulk_insert(conn, "staging.churn_scores", probabilities(conn, as_of, model, report))
        conn.execute(sa.text("DELETE FROM audit.model_runs WHERE as_of_date = :as_of AND model IN :models")
                     .bindparams(sa.bindparam("models", expanding=True)),
                     {"as_of": as_of, "models": [MODEL_NAME, *EARLIER_NAMES]})
        outcome = ChurnOutcome(report, model_as_of, stored is None)
        record = pd.DataFrame([{**asdict(report), "note": outcome.note, "run_id": run_id, "as_of_date": as_of,
                                "trained_at": trained_at}])
        bulk_insert(conn, "audit.model_runs", record.astype({"beats_baseline": "boolean"}))
        analyze(conn, "staging.churn_scores")
    return outcome
