"""Customer potential: the value each customer is expected to bring in the next 365 days.

Two probability models, fitted by maximum likelihood here (numpy and scipy; the ``lifetimes``
package that used to hold them is unmaintained since 2020). A purchase is a day with a
completed order, worth that day's completed amount (include/sql/features/potential_inputs.sql);
per customer x = repeat purchases, t_x = days from the first to the last purchase, T = days
from the first purchase to the cutoff, m = mean value of the repeat purchases.

BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy way", Marketing Science
24(2)) - how many purchases: while alive a customer buys at a Poisson rate lambda ~ Gamma(r,
alpha) and after each purchase drops out with probability p ~ Beta(a, b). Likelihood (eq. 6)::

    L = B(a, b+x)/B(a, b) * G(r+x) alpha^r / (G(r) (alpha+T)^(r+x))
        + [x>0] B(a+1, b+x-1)/B(a, b) * G(r+x) alpha^r / (G(r) (alpha+t_x)^(r+x))
    D = 1 + [x>0] a/(b+x-1) * ((alpha+T)/(alpha+t_x))^(r+x)
    P(alive | x, t_x, T) = 1/D
    E[Y(t) | x, t_x, T] = (a+b+x-1)/(a-1)
        * (1 - ((alpha+T)/(alpha+T+t))^(r+x) * 2F1(r+x, b+x; a+b+x-1; t/(alpha+T+t))) / D      (eq. 10)

Gamma-Gamma (Fader, Hardie & Lee 2005, "RFM and CLV: using iso-value curves", JMR 42(4); Fader &
Hardie 2013, "The Gamma-Gamma model of monetary value") - their value: a purchase is worth
Gamma(p, nu), nu ~ Gamma(q, v) across customers, independent of the purchase process. Fitted on
the customers with a repeat purchase::

    log L = lnG(px+q) - lnG(px) - lnG(q) + q ln v + (px-1) ln m + px ln x - (px+q) ln(v + x m)
    E[M | x, m] = p (v + x m) / (px + q - 1)      (p v / (q - 1) without a repeat purchase; q > 1)

potential_365d = E[Y(365)] * E[M]. Both fits minimise the mean negative log-likelihood over
log-parameters (L-BFGS-B), times and amounts divided by their mean first so the optimiser sees
numbers near 1, on at most SAMPLE_ROWS customers (a hash sample, churn.sample_customers);
predictions are vectorised over every customer.

Judgement, as the churn model's: fitted on the history before ``as_of - 365 days``, the model
predicts each of those customers' spend in the 365 days after, compared with what they spent
(MAE, RMSE, relative error of the total) and with the naive baseline "next year = last year's
spend". The model scores only when it fits at both dates and its holdout RMSE is below the
baseline's - an expected value is the prediction that minimises squared error, so RMSE is the
error it answers to (MAE rewards a median: on skewed spend, predicting 0 for the quiet; both are
recorded); otherwise the baseline scores (potential = the last 365 days' spend, expected
orders = its purchase days, p_alive empty), and audit.potential_runs says why - too little
history (under two years, too few repeat customers), an optimiser that failed, or a model that
did not beat the baseline. A fit never fails the run. Customers who never bought get no row.
Later runs score with the fit while it is young (GRADING_POTENTIAL_MAX_AGE_DAYS, :func:`reusable_fit`),
as daily runs reuse the churn model.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import sqlalchemy as sa
from scipy.optimize import minimize
from scipy.special import betaln, gammaln, hyp2f1
from sqlalchemy.engine import Connection, Engine

from grading.churn import sample_customers
from grading.frames import bulk_insert, read_computed_frame
from grading.settings import potential_max_age_days
from grading.warehouse import analyze, sql_text

log = logging.getLogger(__name__)

MODEL_NAME = "bgnbd_gamma_gamma_v1"
MODEL, BASELINE = "model", "last_year_spend"
HORIZON_DAYS = 365
SAMPLE_ROWS = 100_000  # customers a fit sees at most; the parameters settle long before
MIN_CUSTOMERS = 200
MIN_REPEAT_CUSTOMERS = 50
INPUTS = "features/potential_inputs"


class NotFitted(Exception):
    """The model cannot be fitted on this history; the message says why."""


@dataclass(frozen=True)
class Fit:
    """Fitted parameters: BG/NBD (r, alpha in days, a, b) and Gamma-Gamma (p, q, v in money)."""

    r: float
    alpha: float
    a: float
    b: float
    p: float
    q: float
    v: float
    customers: int

    def params(self) -> dict[str, float]:
        return {k: round(getattr(self, k), 6) for k in ("r", "alpha", "a", "b", "p", "q", "v")}


def _columns(frame: pd.DataFrame) -> tuple[np.ndarray, ...]:
    return tuple(frame[c].to_numpy(dtype=float, na_value=np.nan) for c in ("frequency", "recency", "age"))


def bgnbd_nll(log_params: np.ndarray, x: np.ndarray, t_x: np.ndarray, age: np.ndarray) -> float:
    """Mean negative BG/NBD log-likelihood (eq. 6 in logs: the two terms added by logaddexp)."""
    r, alpha, a, b = np.exp(log_params)
    head = gammaln(r + x) - gammaln(r) + r * np.log(alpha) - betaln(a, b)
    gone = betaln(a, b + x) - (r + x) * np.log(alpha + age)
    dropped = np.where(x > 0, betaln(a + 1, np.maximum(b + x - 1, 1e-12)) - (r + x) * np.log(alpha + t_x), -np.inf)
    return float(-np.mean(head + np.logaddexp(gone, dropped)))


def gamma_gamma_nll(log_params: np.ndarray, x: np.ndarray, m: np.ndarray) -> float:
    """Mean negative Gamma-Gamma log-likelihood of repeat customers' mean values ``m`` over ``x`` purchases."""
    p, q, v = np.exp(log_params)
    px = p * x
    ll = (gammaln(px + q) - gammaln(px) - gammaln(q) + q * np.log(v) + (px - 1) * np.log(m) + px * np.log(x)
          - (px + q) * np.log(v + x * m))
    return float(-np.mean(ll))


def _minimise(nll, start: np.ndarray, args: tuple, what: str) -> np.ndarray:
    """exp of the log-parameters minimising ``nll``; NotFitted when the optimiser does not converge."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = minimize(nll, start, args=args, method="L-BFGS-B", bounds=[(-12.0, 12.0)] * len(start))
        if not result.success:  # L-BFGS-B's line search can stop short near the optimum: polish once
            result = minimize(nll, result.x, args=args, method="Nelder-Mead",
                              options={"maxiter": 2000, "xatol": 1e-6, "fatol": 1e-9})
    if not (result.success and np.isfinite(result.fun) and np.all(np.isfinite(result.x))):
        raise NotFitted(f"the {what} fit did not converge ({result.message})")
    return np.exp(result.x)


def fit(inputs: pd.DataFrame, sample_rows: int = SAMPLE_ROWS) -> Fit:
    """BG/NBD and Gamma-Gamma fitted on at most ``sample_rows`` of the customers in ``inputs``."""
    sample = sample_customers(inputs, sample_rows)
    x, t_x, age = _columns(sample)
    repeat = sample[(sample["frequency"] > 0) & (sample["repeat_value"] > 0)]
    if len(sample) < MIN_CUSTOMERS or len(repeat) < MIN_REPEAT_CUSTOMERS:
        raise NotFitted(f"too few customers to fit: {len(sample)} with a purchase and {len(repeat)} with a repeat "
                        f"purchase (need {MIN_CUSTOMERS} and {MIN_REPEAT_CUSTOMERS})")
    days = max(float(age.mean()), 1.0)  # times in units of the mean age, amounts of the mean value
    r, alpha, a, b = _minimise(bgnbd_nll, np.zeros(4), (x, t_x / days, age / days), "BG/NBD")
    m = repeat["repeat_value"].to_numpy(dtype=float)
    money = float(m.mean())
    p, q, v = _minimise(gamma_gamma_nll, np.zeros(3), (repeat["frequency"].to_numpy(dtype=float), m / money),
                        "Gamma-Gamma")
    if q <= 1:
        raise NotFitted(f"the Gamma-Gamma fit has q = {q:.3f} <= 1: the mean spend per purchase is undefined")
    return Fit(float(r), float(alpha * days), float(a), float(b), float(p), float(q), float(v * money), len(sample))


def predict(model: Fit, inputs: pd.DataFrame, horizon: float = HORIZON_DAYS) -> pd.DataFrame:
    """Per customer of ``inputs``: expected purchases in ``horizon`` days, P(alive), expected value
    per purchase and potential (their product); NotFitted when a prediction is not a finite number."""
    x, t_x, age = _columns(inputs)
    r, alpha, a, b = model.r, model.alpha, model.a, model.b
    with np.errstate(all="ignore"):
        ratio = np.where(x > 0, a / np.maximum(b + x - 1, 1e-12) * ((alpha + age) / (alpha + t_x)) ** (r + x), 0.0)
        alive = 1.0 / (1.0 + ratio)
        tail = ((alpha + age) / (alpha + age + horizon)) ** (r + x) * hyp2f1(
            r + x, b + x, a + b + x - 1, horizon / (alpha + age + horizon))
        orders = (a + b + x - 1) / (a - 1) * (1 - tail) * alive
        m = inputs["repeat_value"].to_numpy(dtype=float, na_value=np.nan)
        value = np.where(x > 0, model.p * (model.v + x * np.maximum(np.nan_to_num(m), 0)) / (model.p * x + model.q - 1),
                         model.p * model.v / (model.q - 1))
    out = pd.DataFrame({"customer_id": inputs["customer_id"].to_numpy(), "expected_orders_365d": orders,
                        "p_alive": alive, "expected_value": value, "potential_365d": orders * value})
    numbers = out.drop(columns="customer_id").to_numpy()
    if not (np.isfinite(numbers).all() and (numbers >= -1e-9).all()):
        raise NotFitted("the fitted model gives predictions that are not finite non-negative numbers")
    return out


def baseline(inputs: pd.DataFrame) -> pd.DataFrame:
    """The naive model: next year is last year - the 365 days' spend and purchase days; no P(alive)."""
    return pd.DataFrame({"customer_id": inputs["customer_id"].to_numpy(),
                         "expected_orders_365d": inputs["orders_year"].to_numpy(dtype=float),
                         "p_alive": np.nan, "potential_365d": inputs["spend_year"].to_numpy(dtype=float)})


def errors(predicted: np.ndarray, actual: np.ndarray) -> dict[str, float | None]:
    """MAE and RMSE per customer, and the error of the total relative to the actual total."""
    if not len(actual):
        return {"mae": None, "rmse": None, "relative_error": None}
    diff = predicted - actual
    total = float(actual.sum())
    return {"mae": float(np.abs(diff).mean()), "rmse": float(np.sqrt(np.mean(diff ** 2))),
            "relative_error": float(diff.sum() / total) if total else None}


@dataclass(frozen=True)
class Judgement:
    """The holdout year: the model's errors (None when it could not be fitted), the baseline's, and
    why the model cannot score (None when it may)."""

    customers: int  # in the holdout (a purchase before it)
    model: dict | None
    baseline: dict
    fit: Fit | None
    failure: str | None


def judge(history: pd.DataFrame, sample_rows: int = SAMPLE_ROWS) -> Judgement:
    """Fit on ``history`` (inputs at the holdout's start, spend_after = the year after) and compare
    its predictions of that year with the baseline's."""
    actual, customers = history["spend_after"].to_numpy(dtype=float), len(history)
    base = errors(history["spend_year"].to_numpy(dtype=float), actual)
    if not customers or float(history["age"].max()) < HORIZON_DAYS:
        return Judgement(customers, None, base, None,
                         "less than two years of order history: the holdout year needs a year of history before it")
    try:
        model = fit(history, sample_rows)
        mine = errors(predict(model, history)["potential_365d"].to_numpy(), actual)
    except NotFitted as exc:
        return Judgement(customers, None, base, None, str(exc))
    if mine["rmse"] >= base["rmse"]:
        return Judgement(customers, mine, base, model,
                         f"the model's holdout RMSE {mine['rmse']:.2f} is not below the baseline's {base['rmse']:.2f}")
    return Judgement(customers, mine, base, model, None)


def _inputs(conn: Connection, cutoff: date, until: date) -> pd.DataFrame:
    frame = read_computed_frame(conn, sql_text(INPUTS, conn.dialect.name), {
        "as_of": cutoff, "year_start": cutoff - timedelta(days=HORIZON_DAYS), "until": until})
    return frame.sort_values("customer_id", kind="stable", ignore_index=True)


def _rounded(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def reusable_fit(conn: Connection, as_of: date, max_age_days: int) -> tuple[Fit, dict] | None:
    """The fit a run of ``as_of`` scores with instead of judging and fitting anew, with the record
    of the run that judged it: the one the latest earlier run scored with, when the model scored
    there and was fitted less than ``max_age_days`` before ``as_of``; None: judge and fit.

    By as-of dates, never wall-clock time, and strictly earlier dates: a rerun of a date finds
    what its first run found (a run's own stored parameters are rounded, so scoring its rerun
    with them would change the scores). Its age counts from the date it was fitted, however
    many runs reused it since. A later judgement the model lost ends its reuse."""
    if max_age_days <= 0:
        return None
    row = conn.execute(sa.text(
        "SELECT * FROM audit.potential_runs WHERE model = :model AND as_of_date < :as_of AND as_of_date > :oldest "
        "ORDER BY as_of_date DESC LIMIT 1"),
        {"model": MODEL_NAME, "as_of": as_of, "oldest": as_of - timedelta(days=max_age_days)}).mappings().first()
    if row is None or row["scorer"] != MODEL or not row["params"]:
        return None
    params = json.loads(row["params"])
    fitted = date.fromisoformat(params.get("fitted_as_of") or pd.Timestamp(row["as_of_date"]).date().isoformat())
    if fitted <= as_of - timedelta(days=max_age_days) or "scoring" not in params:
        return None
    return Fit(**params["scoring"], customers=int(row["fit_customers"])), {**row, "fitted_as_of": fitted,
                                                                            "holdout": params.get("holdout")}


def _reused(conn: Connection, as_of: date, model: Fit, judged: dict, max_age_days: int
            ) -> tuple[pd.DataFrame, dict] | None:
    """Every buyer scored with a reused fit, and the record's fields (the judgement is the earlier
    run's); None when the fit gives this date's customers no finite prediction."""
    try:
        scores = predict(model, _inputs(conn, as_of, as_of))
    except NotFitted:
        return None
    reason = (f"reused the fit of {judged['fitted_as_of']} (under {max_age_days} days old): its holdout RMSE "
              f"{judged['holdout_rmse']:.2f} is below the baseline's {judged['baseline_rmse']:.2f}")
    params = {"holdout": judged["holdout"], "scoring": model.params(),
              "fitted_as_of": judged["fitted_as_of"].isoformat()}
    fields = {key: judged[key] for key in (
        "holdout_start", "holdout_customers", "holdout_mae", "holdout_rmse", "holdout_relative_error", "baseline_mae",
        "baseline_rmse", "baseline_relative_error", "trained_at")}
    return scores, {"scorer": MODEL, "reason": reason, "params": json.dumps(params),
                    "fit_customers": model.customers, **fields}


def _judged(conn: Connection, as_of: date, sample_rows: int) -> tuple[pd.DataFrame, dict]:
    """Every buyer scored after judging the model on the holdout year (by the baseline when it
    cannot fit or does not beat it), and the record's fields."""
    holdout_start = as_of - timedelta(days=HORIZON_DAYS)
    judged = judge(_inputs(conn, holdout_start, as_of), sample_rows)
    current = _inputs(conn, as_of, as_of)
    reason, params, model = judged.failure, {}, None
    if judged.fit is not None:
        params["holdout"] = judged.fit.params()
    if reason is None:
        try:
            model = fit(current, sample_rows)
            scores = predict(model, current)
            params["scoring"] = model.params()
            reason = (f"the model's holdout RMSE {judged.model['rmse']:.2f} is below the baseline's "
                      f"{judged.baseline['rmse']:.2f}")
        except NotFitted as exc:
            model, reason = None, f"at {as_of}: {exc}"
    if model is None:
        log.warning("potential: %s scored with last year's spend: %s", as_of, reason)
        scores = baseline(current)
    mine = judged.model or dict.fromkeys(("mae", "rmse", "relative_error"))
    return scores, {
        "scorer": MODEL if model else BASELINE, "reason": reason, "params": json.dumps(params) if params else None,
        "fit_customers": model.customers if model else (judged.fit.customers if judged.fit else None),
        "holdout_start": holdout_start, "holdout_customers": judged.customers,
        "holdout_mae": _rounded(mine["mae"]), "holdout_rmse": _rounded(mine["rmse"]),
        "holdout_relative_error": _rounded(mine["relative_error"]),
        "baseline_mae": _rounded(judged.baseline["mae"]), "baseline_rmse": _rounded(judged.baseline["rmse"]),
        "baseline_relative_error": _rounded(judged.baseline["relative_error"]),
        "trained_at": datetime.now(UTC).replace(tzinfo=None)}


def score_potential(warehouse: Engine, as_of: date, run_id: str, *, sample_rows: int = SAMPLE_ROWS,
                    max_age_days: int | None = None) -> dict:
    """Replace the as-of date's rows of staging.customer_potential and its audit.potential_runs
    record; returns that record (JSON-able). Reads completed orders only: two summaries of raw
    orders (at the holdout's start and at ``as_of``), two or three fits on a bounded sample; or,
    while an earlier run's fit is young enough (``max_age_days``, GRADING_POTENTIAL_MAX_AGE_DAYS),
    the summary at ``as_of`` scored with that fit (:func:`reusable_fit`)."""
    max_age_days = potential_max_age_days() if max_age_days is None else max_age_days
    with warehouse.begin() as conn:
        reusable = reusable_fit(conn, as_of, max_age_days)
        scored = _reused(conn, as_of, *reusable, max_age_days) if reusable else None
        scores, fields = scored or _judged(conn, as_of, sample_rows)
        conn.execute(sa.text("DELETE FROM staging.customer_potential WHERE as_of_date = :as_of"), {"as_of": as_of})
        columns = ["customer_id", "potential_365d", "expected_orders_365d", "p_alive"]
        bulk_insert(conn, "staging.customer_potential",
                    scores[columns].round(4).assign(as_of_date=as_of)[["as_of_date", *columns]])
        record = {"run_id": run_id, "as_of_date": as_of, "model": MODEL_NAME, **fields, "customers": len(scores)}
        conn.execute(sa.text("DELETE FROM audit.potential_runs WHERE as_of_date = :as_of"), {"as_of": as_of})
        bulk_insert(conn, "audit.potential_runs", pd.DataFrame([record]).astype(
            {"fit_customers": "Int64", "params": "string", **dict.fromkeys(
                ("holdout_mae", "holdout_rmse", "holdout_relative_error", "baseline_mae", "baseline_rmse",
                 "baseline_relative_error"), "Float64")}))
        analyze(conn, "staging.customer_potential")
    log.info("potential: %s scored %d customers with %s: %s", as_of, len(scores), record["scorer"], record["reason"])
    return {k: (v.isoformat() if isinstance(v, date) else v) for k, v in record.items()}
