"""Quarterly review: the evaluation tables a quarterly effectiveness review reads.

For quarter Q the review compares the last published snapshot in Q with the last one in
Q-1 (the quarter's start). Each evaluation is one SQL file in include/sql/review/ whose
rows replace the quarter's rows of ``marts.review_<name>`` in one transaction, so a
quarter reviewed again (or four quarters backfilled) gives the same numbers. Evaluations
that compare with the previous quarter are left empty when Q-1 has no snapshot.
"""

from __future__ import annotations

from datetime import date

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from grading.frames import bulk_insert, read_query_file
from grading.review.quarters import Quarter
from grading.review.uplift import scheme_checks, uplift_table
from grading.settings import basket_settings, uplift_target_effect
from grading.warehouse import analyze, run_sql_file

# evaluation (SQL file in include/sql/review/ and table marts.review_<name>) -> needs Q-1
EVALUATIONS = {
    "tier_distribution": False,
    "pareto": False,
    "satisfaction": False,
    "fairness": False,
    "tier_migration": True,
    "retention": True,
    "winback": True,
    "elimination": True,
    "stability": True,
}
# Completed orders per customer in the quarter (include/sql/review/quarter_revenue.sql): a
# temporary table built once per review, read by the evaluations, dropped at its end.
QUARTER_REVENUE = "review_quarter_revenue"
# A band holding this many times more (or fewer) customers than when its rules were set
# is worth a note in the review.
DRIFT_FACTOR = 1.5
# Fairness (include/sql/review/fairness.sql): groups smaller than min_customers are "too few to
# tell"; the others are compared with the rest at equal spend, in bands of 365-day value each
# value_step wide (1.1: spend within 10 %).
FAIRNESS = {"min_customers": 30, "value_step": 1.1}


class NoSnapshot(LookupError):
    """No graded period falls in the quarter under review."""


def last_snapshot(conn: Connection, start: date, end: date) -> date | None:
    """The last published as-of date in (start, end]: the state at the close of that period."""
    value = conn.execute(sa.text(
        "SELECT MAX(as_of_date) FROM marts.customer_tier_snapshot WHERE as_of_date > :start AND as_of_date <= :end"
    ), {"start": start, "end": end}).scalar()
    return pd.Timestamp(value).date() if value is not None else None


def snapshot_in(conn: Connection, quarter: Quarter) -> date | None:
    """The last published as-of date in (start, end] of the quarter: its state at the close."""
    return last_snapshot(conn, quarter.start, quarter.end)


def threshold_drift(conn: Connection, quarter: Quarter, snapshot: date) -> pd.DataFrame:
    """Each tier's share now against its share at the first snapshot graded by the same rule version."""
    shares = read_query_file(conn, "review/drift_shares", {"snapshot": snapshot})
    if shares.empty:
        return pd.DataFrame()
    shares["as_of_date"] = pd.to_datetime(shares["as_of_date"]).dt.date
    shares["share"] = shares["customers"] / shares.groupby("as_of_date")["customers"].transform("sum")
    pivot = shares.pivot_table(index="tier", columns="as_of_date", values="share", fill_value=0.0)
    set_as_of = pd.Timestamp(shares["set_as_of"].iloc[0]).date()
    then, now = pivot.get(set_as_of, 0.0), pivot.get(snapshot, 0.0)
    out = pd.DataFrame({"quarter": str(quarter), "tier": pivot.index, "rule_version": shares["rule_version"].iloc[0],
                        "set_as_of": set_as_of, "share_when_set": then, "share_now": now}).reset_index(drop=True)
    out["note"] = [_drift_note(t, a, b, set_as_of) for t, a, b in zip(out["tier"], then, now, strict=True)]
    return out


def _drift_note(tier: str, then: float, now: float, set_as_of: date) -> str:
    if then == 0 and now == 0:
        return "empty then and now"
    if then == 0:
        return f"{tier} was empty when the rules were set ({set_as_of}) and now holds {now:.1%}"
    ratio = now / then
    if ratio >= DRIFT_FACTOR or ratio <= 1 / DRIFT_FACTOR:
        direction = "more" if ratio > 1 else "fewer"
        return (f"{tier} now holds {now:.1%} of customers against {then:.1%} when the rules were set ({set_as_of}): "
                f"{ratio:.1f}x - {direction} than intended; review the threshold")
    return f"stable: {now:.1%} now, {then:.1%} when set ({set_as_of})"


def build_review(warehouse: Engine, quarter: Quarter) -> dict[str, pd.DataFrame]:
    """Replace the quarter's rows of every marts.review_* table; returns the evaluations by name."""
    with warehouse.begin() as conn:
        snapshot = snapshot_in(conn, quarter)
        if snapshot is None:
            raise NoSnapshot(
                f"no published tier snapshot with an as-of date in ({quarter.start}, {quarter.end}]: "
                f"run customer_grading for a date in that range before reviewing {quarter}")
        previous = snapshot_in(conn, quarter.previous)
        params = {"quarter": str(quarter), "quarter_start": quarter.start, "quarter_end": quarter.end,
                  "snapshot": snapshot, "previous_snapshot": previous, **FAIRNESS}
        run_sql_file(conn, "review/quarter_revenue", params)  # QUARTER_REVENUE, read by the evaluations
        analyze(conn, QUARTER_REVENUE)
        results: dict[str, pd.DataFrame] = {}
        for name, needs_previous in EVALUATIONS.items():
            frame = pd.DataFrame() if needs_previous and previous is None else \
                read_query_file(conn, f"review/{name}", params)
            results[name] = _store(conn, name, str(quarter), frame)
        results["drift"] = _store(conn, "drift", str(quarter), threshold_drift(conn, quarter, snapshot))
        base = read_query_file(conn, "review/uplift_base", params) if previous else pd.DataFrame()
        results["uplift"] = _store(conn, "uplift", str(quarter),
                                   uplift_table(base, str(quarter), uplift_target_effect()) if len(base)
                                   else pd.DataFrame())
        graded = read_query_file(conn, "review/scheme_base", params) if previous else pd.DataFrame()
        results["scheme"] = _store(conn, "scheme", str(quarter),
                                   scheme_checks(graded, str(quarter)) if len(graded) else pd.DataFrame())
        results["_churn_model"] = read_query_file(conn, "review/churn_model", params)  # the report's, not stored
        results["_potential_model"] = read_query_file(conn, "review/potential_model", params)  # the same
        results["basket_rules"] = _store(conn, "basket_rules", str(quarter), read_query_file(
            conn, "review/tier_basket_rules", {**params, **basket_settings()}), table="marts.tier_basket_rules")
        conn.exec_driver_sql(f"DROP TABLE {QUARTER_REVENUE}")  # on a failure, the rollback drops it
    results["_meta"] = pd.DataFrame([{"quarter": str(quarter), "snapshot": snapshot, "previous_snapshot": previous}])
    return results


def _store(conn: Connection, name: str, quarter: str, frame: pd.DataFrame, table: str | None = None) -> pd.DataFrame:
    table = table or f"marts.review_{name}"
    conn.execute(sa.text(f"DELETE FROM {table} WHERE quarter = :quarter"), {"quarter": quarter})  # noqa: S608
    if not frame.empty:
        bulk_insert(conn, table, frame)
    return frame
