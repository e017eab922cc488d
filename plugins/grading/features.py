"""Features: per-customer RFM and satisfaction figures as of a date, computed in the warehouse.

The aggregation over raw orders, tickets, surveys and interactions is one set-based query
(include/sql/features/customer_features.sql) that runs unchanged on DuckDB and
PostgreSQL; only the per-customer result ever reaches Python. Most windows are fixed (the
365 days before the as-of date, the last 90 days); ``orders_window`` and
``monetary_window`` follow the tier rule file's qualification window (grading.qualification).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from grading.frames import read_computed_frame, read_computed_frames
from grading.qualification import Qualification
from grading.warehouse import analyze, sql_text

FEATURE_QUERY = "features/customer_features"

FEATURE_COLUMNS = (
    "as_of_date", "customer_id", "region", "industry", "channel", "tenure_days", "last_order_at",
    "recency_days", "orders_365d", "monetary_365d", "margin_365d", "refunds_365d", "orders_lifetime",
    "monetary_lifetime", "tickets_365d", "complaints_365d", "surveys_365d", "csat_mean_365d",
    "nps_mean_365d", "r_score", "f_score", "m_score", "avg_order_value_365d", "monetary_90d", "monetary_prev_90d",
    "refund_rate_365d", "complaint_rate_365d", "resolution_hours_365d", "open_tickets", "active_quarters_4",
    "interactions_365d", "window_start", "orders_window", "monetary_window",
)
# What rule conditions may name, and what kind of value each holds: the features, the churn
# score, the customer potential (grading.potential), and what candidates.with_history adds from
# other periods before the lists are drawn.
# A rule compares a number with a number, a text with a text, a time with a date.
_TEXTS = ("region", "industry", "channel", "tier", "tier_year_ago")
_TIMES = ("last_order_at",)
RULE_FEATURES: dict[str, str] = {
    name: "text" if name in _TEXTS else "time" if name in _TIMES else "number"
    for name in (*(c for c in FEATURE_COLUMNS[2:] if c != "window_start"),
                 "churn_propensity", "potential_365d", "p_alive", "tier", "tier_rank", "tier_year_ago",
                 "tier_rank_year_ago", "peak_tier_rank_recent", "monetary_year_ago", "aov_year_ago",
                 "m_score_year_ago", "aov_change_year", "is_protected")
}


# SQL expressions over the feature columns (a select list: "expr AS name, ...") and their bound
# parameters, computed with the features where they are (grading.rules.compiled gives them).
Computed = tuple[str, Mapping[str, Any]]

# The 365-day rolling window, for callers without a tier rule file at hand.
DEFAULT_WINDOW = Qualification()


def query_params(as_of: date, window: Qualification) -> dict[str, object]:
    return {"as_of": as_of, **window.window_params(as_of)}


def _dates(frame: pd.DataFrame) -> pd.DataFrame:
    """DATE columns as timestamps on every engine: DuckDB and read_frame's COPY path on
    PostgreSQL give them so, its row-by-row fallback (and other engines) give dates."""
    if "window_start" in frame:
        frame["window_start"] = pd.to_datetime(frame["window_start"]).astype("datetime64[us]")
    return frame


def features_as_of(conn: Connection, as_of: date, window: Qualification = DEFAULT_WINDOW) -> pd.DataFrame:
    """Compute the feature rows as of ``as_of`` without storing them."""
    return features_at(conn, [as_of], window)[0]


def features_at(conn: Connection, dates: Sequence[date], window: Qualification = DEFAULT_WINDOW,
                columns: Sequence[str] | None = None, computed: Computed | None = None) -> list[pd.DataFrame]:
    """The feature rows as of each of ``dates`` (only ``columns``, when given, and the
    ``computed`` expressions over the features), every date computed before any is read, so a
    worker does not hold one date's frame while the next is computed (read_computed_frames)."""
    select = sql_text(FEATURE_QUERY, conn.dialect.name)
    if columns or computed:
        picked = ", ".join([*_known(columns or FEATURE_COLUMNS), *([computed[0]] if computed else [])])
        select = f"SELECT {picked} FROM (\n{select}\n) AS features"  # noqa: S608 - checked names
    extra = dict(computed[1]) if computed else {}
    return [_dates(frame) for frame in
            read_computed_frames(conn, [(select, {**query_params(as_of, window), **extra}) for as_of in dates])]


def with_scores(conn: Connection, as_of: date, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (features computed, not stored: a dry run) with the churn score and the customer
    potential stored for ``as_of``, as load_features gives them, so rules naming them can be tried;
    empty where that date was not scored."""
    for table, columns in (("churn_scores", "churn_propensity"), ("customer_potential", "potential_365d, p_alive")):
        scores = read_computed_frame(
            conn, f"SELECT customer_id, {columns} FROM staging.{table} WHERE as_of_date = :as_of",  # noqa: S608
            {"as_of": as_of})
        frame = frame.merge(scores, on="customer_id", how="left")
    return frame


def compute_features(warehouse: Engine, as_of: date, window: Qualification = DEFAULT_WINDOW) -> int:
    """Replace the staging feature rows of ``as_of``; returns the number of customers."""
    columns = ", ".join(FEATURE_COLUMNS)
    with warehouse.begin() as conn:
        conn.execute(sa.text("DELETE FROM staging.customer_features WHERE as_of_date = :as_of"), {"as_of": as_of})
        select = sql_text(FEATURE_QUERY, conn.dialect.name)
        conn.execute(sa.text(f"INSERT INTO staging.customer_features ({columns})\n{select}"),
                     query_params(as_of, window))
        analyze(conn, "staging.customer_features")
        return conn.execute(
            sa.text("SELECT COUNT(*) FROM staging.customer_features WHERE as_of_date = :as_of"), {"as_of": as_of}
        ).scalar_one()


def stored_columns(names: Iterable[str | None]) -> tuple[str, ...]:
    """The names among ``names`` that are stored feature columns, once each, in order: what a
    stage reads of the snapshot (the scores come with every load_features, the history columns
    from other periods). Reading only what is needed keeps the million-customer frames narrow."""
    return tuple(c for c in dict.fromkeys(n for n in names if n) if c in FEATURE_COLUMNS)


def _known(columns: Sequence[str]) -> Sequence[str]:
    """``columns``, once checked to be feature columns (they are placed in SQL)."""
    unknown = set(columns) - set(FEATURE_COLUMNS)
    if unknown:
        raise ValueError(f"not feature columns: {sorted(unknown)}")
    return columns


def load_features(conn: Connection, as_of: date, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The stored feature rows of ``as_of`` with the churn score and the customer potential
    (potential_365d, p_alive; empty where not scored), ordered by customer; only ``columns``
    (and those three), when given.

    Read as a computed frame: the join and the sort would otherwise stay in DuckDB's memory
    next to the million-row frame (the flags stage at a million customers: 1.6 GiB, so 1.4)."""
    picked = ", ".join(f"f.{c}" for c in (_known(columns) if columns else FEATURE_COLUMNS))
    return _dates(read_computed_frame(
        conn,
        f"SELECT {picked}, s.churn_propensity, p.potential_365d, p.p_alive "  # noqa: S608 - checked names
        "FROM staging.customer_features AS f "
        "LEFT JOIN staging.churn_scores AS s ON s.as_of_date = f.as_of_date AND s.customer_id = f.customer_id "
        "LEFT JOIN staging.customer_potential AS p ON p.as_of_date = f.as_of_date AND p.customer_id = f.customer_id "
        "WHERE f.as_of_date = :as_of ORDER BY f.customer_id",
        {"as_of": as_of},
    ))
