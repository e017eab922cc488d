"""How the publish stage's time grows with the published history (a benchmark, not a test).

bench/run.py publishes two periods; a deployment publishes one a day for years. This script
takes a warehouse that bench/run.py kept (``--keep``), gives it ``--days`` daily tier and
feature snapshots before its earliest one (copies of it, with some customers' tiers changed
every seventh day), rebuilds the tier history from them, and times publishing ``--as-of``
(a date whose staging rows exist, e.g. the bench's daily run) with the current code.
It changes the warehouse it is given: use a copy.

    cp bench/.data/M/warehouse.duckdb /tmp/history.duckdb
    .venv/bin/python bench/publish_history.py --warehouse duckdb:////tmp/history.duckdb --days 365
"""

from __future__ import annotations

import argparse
import time
from datetime import date

import sqlalchemy as sa

from grading import publish
from grading.pipeline import prepare_warehouse
from grading.warehouse import analyze, open_engine, run_sql_file

SNAPSHOTS = ("customer_tier_snapshot", "customer_features_snapshot")


def add_history(engine: sa.Engine, days: int) -> date:
    """Copy the earliest published snapshots back ``days`` days; returns that earliest date."""
    with engine.begin() as conn:
        earliest = conn.execute(sa.text("SELECT MIN(as_of_date) FROM marts.customer_tier_snapshot")).scalar_one()
        for table in SNAPSHOTS:
            columns = list(conn.execute(sa.text(f"SELECT * FROM marts.{table} LIMIT 0")).keys())  # noqa: S608
            copied = ", ".join(
                "CAST(s.as_of_date - CAST(d.i AS INTEGER) AS DATE)" if c == "as_of_date"
                else "CASE WHEN MOD(d.i, 7) = 0 AND s.customer_key < '3' THEN 'normal' ELSE s.tier END"
                if c == "tier" else f"s.{c}" for c in columns)
            conn.execute(sa.text(
                f"INSERT INTO marts.{table} ({', '.join(columns)}) SELECT {copied} "  # noqa: S608 - catalogue names
                f"FROM marts.{table} AS s CROSS JOIN generate_series(1, :days) AS d (i) "
                "WHERE s.as_of_date = :earliest"), {"days": days, "earliest": earliest})
        run_sql_file(conn, "publish/tier_history_rebuild")
        analyze(conn, *(f"marts.{table}" for table in (*SNAPSHOTS, "tier_history")))
    return earliest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", required=True, help="SQLAlchemy URL of a copy of a bench warehouse")
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--as-of", type=date.fromisoformat, default=date(2024, 12, 2))
    args = parser.parse_args()
    with open_engine(args.warehouse) as engine:
        prepare_warehouse(engine)
        started = time.perf_counter()
        earliest = add_history(engine, args.days)
        print(f"{args.days} daily snapshots added before {earliest} in {time.perf_counter() - started:.1f} s")
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT COUNT(*) FROM marts.customer_tier_snapshot")).scalar_one()
        started = time.perf_counter()
        publish.publish(engine, args.as_of)
        print(f"publish {args.as_of} over {rows:,} tier snapshot rows: {time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main()
