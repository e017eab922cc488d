"""Publish: move one as-of date from staging into the marts BI tools read, atomically.

All statements of include/sql/publish/publish_period.sql run in one transaction, so a
period's snapshot, tiers and candidate lists appear together or not at all, a rerun
replaces exactly that period, and other periods' rows are never touched. The tables that
span periods (tier history, the customer dimension) are rebuilt in the same transaction;
publishes therefore queue up behind a lock, while every other stage may run in parallel.
"""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from grading.warehouse import exclusive, run_sql_file

PUBLISHED_TABLES = (
    "customer_features_snapshot", "customer_tier_snapshot", "elimination_candidates", "winback_candidates",
    "core_customers",
)


def publish(warehouse: Engine, as_of: date) -> dict[str, int]:
    """Replace the published rows of ``as_of``; returns rows per published table."""
    with exclusive(warehouse, "grading.publish") as conn:  # tier history and the dimension span all periods
        run_sql_file(conn, "publish/publish_period", {"as_of": as_of})
        return published_counts(conn, as_of)


def published_counts(conn: Connection, as_of: date) -> dict[str, int]:
    """Rows per published per-period table for ``as_of``."""
    return {
        table: conn.execute(
            sa.text(f"SELECT COUNT(*) FROM marts.{table} WHERE as_of_date = :as_of"), {"as_of": as_of}  # noqa: S608 - constant names
        ).scalar_one()
        for table in PUBLISHED_TABLES
    }
