"""The real thing: customer_grading and quarterly_review run with dag.test() on generated data,
against the embedded DuckDB warehouse and a real PostgreSQL database, checked against figures
computed here independently with pandas from the generated source frames."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from grading import demo
from grading.keys import pseudonym
from grading.settings import pseudonym_key
from tests.helpers import load_dag, published, scalar

AS_OF = date(2025, 1, 1)
PREVIOUS = date(2024, 10, 1)
CUSTOMERS = 400


def expected_figures(data: demo.DemoData, as_of: date, churn: pd.Series) -> dict:
    """Tiers and lists worked out with plain pandas from the source frames, following the
    published rules; ``churn`` is the published churn propensity by source id (a model's
    output cannot be recomputed independently)."""
    cutoff = pd.Timestamp(as_of)
    start, year_ago_start = cutoff - timedelta(days=365), cutoff - timedelta(days=730)
    orders, tickets, surveys = data.orders, data.tickets, data.surveys
    completed = orders[(orders["status"] == "completed") & (orders["order_ts"] < cutoff)]
    ids = data.customers.set_index("customer_id").index
    created = data.customers.set_index("customer_id")["created_at"]

    def per_customer(series: pd.Series, fill=0) -> pd.Series:
        return series.reindex(ids, fill_value=fill)

    def value_between(lo, hi):
        rows = completed[(completed["order_ts"] >= lo) & (completed["order_ts"] < hi)]
        return per_customer(rows.groupby("customer_id")["amount"].sum(), 0.0).round(2)

    def band(value):
        return "platinum" if value > 50000 else "gold" if value >= 10000 else "normal"

    monetary = value_between(start, cutoff)
    tier = monetary.map(band)
    in_window = completed[completed["order_ts"] >= start]
    orders_365 = per_customer(in_window.groupby("customer_id").size())
    window_tickets = tickets[(tickets["opened_at"] >= start) & (tickets["opened_at"] < cutoff)]
    tickets_365 = per_customer(window_tickets.groupby("customer_id").size())
    complaints = per_customer(window_tickets[window_tickets["category"] == "complaint"].groupby("customer_id").size())
    open_at_cutoff = tickets["closed_at"].isna() | (tickets["closed_at"] >= cutoff)
    still_open = tickets[(tickets["opened_at"] < cutoff) & open_at_cutoff]
    open_tickets = per_customer(still_open.groupby("customer_id").size())
    window_surveys = surveys[(surveys["responded_at"] >= start) & (surveys["responded_at"] < cutoff)]
    csat = window_surveys.groupby("customer_id")["csat"].mean().reindex(ids)
    lifetime = per_customer(completed.groupby("customer_id")["amount"].sum(), 0.0)
    last_order = completed.groupby("customer_id")["order_ts"].max().reindex(ids)
    recency = (cutoff.normalize() - last_order.dt.normalize()).dt.days
    tenure = (cutoff.normalize() - created.dt.normalize()).dt.days

    eliminate = (((orders_365 < 5) & (complaints > 2))
                 | ((monetary < 2000) & (csat < 3))
                 | ((recency >= 365) & (lifetime < 1000) & ((complaints >= 1) | (tickets_365 == 0))))
    eliminate &= (tenure >= 90) & (open_tickets == 0)

    was_customer = created < cutoff - timedelta(days=365)
    tier_year_ago = value_between(year_ago_start, start).map(band).where(was_customer)
    rank = tier.map({"normal": 1, "gold": 2, "platinum": 3})
    eliminate = eliminate.reindex(ids, fill_value=False) & (created < cutoff)
    return {"rank": rank, "eliminate": eliminate, "lapsed": tier_year_ago.isin(["gold", "platinum"]) & (recency >= 180),
            "churn": churn}


RANKS = {1: "normal", 2: "gold", 3: "platinum"}


def expected_two_periods(data: demo.DemoData, churn: pd.Series) -> dict:
    """The published lists of the second of two graded periods, as the rules in force make them:
    damping holds a customer in last period's tier for one period below it, elimination needs
    the criteria met in both periods, and 'likely to lapse' looks at the best recent tier."""
    before = expected_figures(data, PREVIOUS, pd.Series(np.nan, index=churn.index))
    now = expected_figures(data, AS_OF, churn)
    held = np.maximum(now["rank"], before["rank"].reindex(now["rank"].index).fillna(0)).astype(int)
    peak = np.maximum(held, before["rank"].reindex(held.index).fillna(0))
    win_back = now["lapsed"] | ((peak >= 2) & (churn > 0.8))
    # elimination lists the lowest tier only, and not a customer the win-back list (of higher precedence) names
    eliminate = now["eliminate"] & before["eliminate"].reindex(held.index, fill_value=False) & (held == 1) & ~win_back
    return {"tiers": held.map(RANKS).value_counts().to_dict(), "elimination": int(eliminate.sum()),
            "win_back": int(win_back.sum())}


def run_dag(dag_id: str, logical_date: date, **conf) -> str:
    dag = load_dag(dag_id)
    run = dag.test(logical_date=datetime.combine(logical_date, datetime.min.time(), tzinfo=UTC), run_conf=conf)
    return str(run.state)


@pytest.mark.airflow
def test_customer_grading_and_quarterly_review_end_to_end(
    airflow_db: str, grading_home: Path, warehouse_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = demo.generate(customers=CUSTOMERS, seed=7)
    source_url = f"sqlite:///{grading_home / 'source.sqlite'}"
    demo.write_source(data, source_url)
    monkeypatch.setenv("AIRFLOW_CONN_GRADING_SOURCE", source_url)
    monkeypatch.setenv("AIRFLOW_CONN_GRADING_WAREHOUSE", warehouse_url)

    assert run_dag("customer_grading", PREVIOUS) == "success"
    assert scalar(warehouse_url, "SELECT COUNT(*) FROM marts.elimination_candidates") == 0  # nobody met it twice yet
    assert run_dag("customer_grading", AS_OF) == "success"
    first = published(warehouse_url, AS_OF)
    key_of = {pseudonym(c, pseudonym_key()): c for c in data.customers["customer_id"]}
    features = first["customer_features_snapshot"]
    churn = pd.Series(features["churn_propensity"].astype(float).to_numpy(),
                      index=features["customer_key"].map(key_of)).reindex(data.customers["customer_id"])
    want = expected_two_periods(data, churn)
    tiers = first["customer_tier_snapshot"]["tier"].value_counts().to_dict()
    assert tiers == want["tiers"]
    assert len(first["elimination_candidates"]) == want["elimination"] > 0
    assert len(first["winback_candidates"]) == want["win_back"] > 0
    assert len(first["customer_features_snapshot"]) == CUSTOMERS
    # Published rows carry pseudonymous keys, never the source ids.
    keys = set(first["customer_tier_snapshot"]["customer_key"])
    assert not keys & set(data.customers["customer_id"])
    assert scalar(warehouse_url, "SELECT COUNT(*) FROM audit.run_audit WHERE status = 'success'") == 16
    # each run handed its period to the CRM (the file target, in the grading home)
    assert scalar(warehouse_url, "SELECT COUNT(*) FROM ops.exports WHERE status = 'success'") == 2
    assert (grading_home / "exports" / str(AS_OF) / "manifest.json").exists()

    # A second run of the same period replaces it with identical rows.
    assert run_dag("customer_grading", AS_OF) == "success"
    assert all(published(warehouse_url, AS_OF)[t].equals(first[t]) for t in first)
    assert scalar(warehouse_url, "SELECT COUNT(DISTINCT as_of_date) FROM marts.customer_tier_snapshot") == 2

    # The quarter that closes on the as-of date: 2024Q4.
    assert run_dag("quarterly_review", AS_OF) == "success"
    review = published_review(warehouse_url)
    assert review["tier"].tolist() == ["normal", "gold", "platinum"]
    assert dict(zip(review["tier"], review["customers"], strict=True)) == want["tiers"]
    q4 = data.orders[(data.orders["status"] == "completed") & (data.orders["order_ts"] >= "2024-10-01")
                     & (data.orders["order_ts"] < "2025-01-01")]
    assert review["revenue"].sum() == pytest.approx(q4["amount"].sum(), abs=0.01)
    assert review["revenue_share"].sum() == pytest.approx(1.0)


def published_review(url: str) -> pd.DataFrame:
    from grading.frames import read_frame
    from grading.warehouse import open_engine

    with open_engine(url) as engine, engine.connect() as conn:
        return read_frame(conn, "SELECT * FROM marts.review_tier_distribution WHERE quarter = '2024Q4' "
                                "ORDER BY tier_rank")
