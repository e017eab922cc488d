"""Publish: move one as-of date from staging into the marts BI tools read, atomically.

All statements of include/sql/publish/publish_period.sql run in one transaction, so a
period's snapshot, tiers and candidate lists appear together or not at all, a rerun
replaces exactly that period, and other periods' rows are never touched. The tables that
span periods (tier history, the customer dimension) are rebuilt in the same transaction;
publishes therefore queue up behind a lock, while every other stage may run in parallel.
The cut points behind the period's R/F/M scores are kept with it (marts.score_cut_points).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from grading import ledger, periods
from grading.periods import PERIOD_STATE_LOCK, PeriodState
from grading.warehouse import analyze, bulk_insert, exclusive, read_query_file, run_sql_file

log = logging.getLogger(__name__)

# A cut point moving by more than this share between periods gets a drift note.
CUT_POINT_DRIFT = 0.25

PUBLISHED_TABLES = (
    "customer_features_snapshot", "customer_tier_snapshot", "elimination_candidates", "winback_candidates",
    "core_customers",
)
REBUILT_TABLES = ("tier_history", "dim_customer", "lost_customers")  # span every period


@dataclass(frozen=True)
class Published:
    rows: dict[str, int]  # rows per published per-period table
    stale: list[PeriodState]  # published periods that no longer follow from the ones before them


def publish(warehouse: Engine, as_of: date, run_id: str = "publish",
            settled: tuple[int, datetime | None] | None = None) -> Published:
    """Replace the published rows of ``as_of``.

    Refused when the period's own grading read an earlier period's state that has changed
    since (grading.periods); with ``settled`` (a token of grading.ledger.settled), refused when
    a batch was extracted or validated since the token was taken, as the lost-customer
    register reads raw. The run's batch is marked published and marts.published_periods
    restated in the same transaction.
    """
    # tier history and the dimension span all periods; the period state must not move meanwhile
    with exclusive(warehouse, "grading.publish", PERIOD_STATE_LOCK) as conn:
        periods.check_in_order(conn, as_of)
        run_sql_file(conn, "publish/publish_period", {"as_of": as_of})
        analyze(conn, "marts.customer_tier_snapshot")  # the period's new rows, read by the next step
        update_tier_history(conn, as_of)
        store_cut_points(conn, as_of)
        analyze(conn, *(f"marts.{table}" for table in (*PUBLISHED_TABLES, *REBUILT_TABLES)
                        if table != "customer_tier_snapshot"))  # analyzed above, unchanged since
        if settled is not None:
            ledger.unchanged(conn, settled, "publish")
        now = datetime.now(UTC).replace(tzinfo=None)
        ledger.mark_published(conn, run_id, now)
        stale = periods.refresh_published(conn, as_of, run_id, now)
        return Published(published_counts(conn, as_of), stale)


def update_tier_history(conn: Connection, as_of: date) -> str:
    """Bring marts.tier_history up to date with the snapshot of ``as_of``; returns how.

    The usual publish is of the latest period (or a rerun of it): its tier changes are
    appended to the open rows ("append"), reading one period's snapshot however long the
    history. A backfilled period changes the stretches after it, so the history is then
    rebuilt from every snapshot ("rebuild"). Both give the same rows.
    """
    later = conn.execute(sa.text("SELECT 1 FROM marts.customer_tier_snapshot WHERE as_of_date > :as_of LIMIT 1"),
                         {"as_of": as_of}).first()
    how = "rebuild" if later else "append"
    run_sql_file(conn, f"publish/tier_history_{how}", {"as_of": as_of})
    log.info("tier history: %s", how)
    return how


def store_cut_points(conn: Connection, as_of: date, drift_share: float = CUT_POINT_DRIFT) -> pd.DataFrame:
    """Keep the R/F/M cut points of ``as_of`` with a note where one moved more than ``drift_share``."""
    cuts = read_query_file(conn, "publish/score_cut_points", {"as_of": as_of})
    cuts["note"] = [
        f"{score} {value} now ends at {high:g} against {before:g} last period ({moved:.0%} move)"
        if pd.notna(moved) and moved > drift_share else "steady" if pd.notna(moved) else "first period"
        for score, value, high, before, moved in zip(cuts["score"], cuts["score_value"], cuts["max_value"],
                                                      cuts["previous_max_value"], cuts["moved_share"], strict=True)]
    conn.execute(sa.text("DELETE FROM marts.score_cut_points WHERE as_of_date = :as_of"), {"as_of": as_of})
    bulk_insert(conn, "marts.score_cut_points", cuts)
    return cuts


def published_counts(conn: Connection, as_of: date) -> dict[str, int]:
    """Rows per published per-period table for ``as_of``."""
    return {
        table: conn.execute(
            sa.text(f"SELECT COUNT(*) FROM marts.{table} WHERE as_of_date = :as_of"), {"as_of": as_of}  # noqa: S608 - constant names
        ).scalar_one()
        for table in PUBLISHED_TABLES
    }
