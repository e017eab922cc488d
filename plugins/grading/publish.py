"""Publish: move one as-of date from staging into the marts BI tools read, atomically.

Each published relation is loaded by a file of its own, include/sql/publish/<relation>.sql,
and the files run in one transaction in the order include/sql/marts.yml lists the relations
(``publish_files``), so a period's snapshot, tiers and candidate lists appear together or not
at all, a rerun replaces exactly that period, and other periods' rows are never touched.
Customers appear in marts only by their pseudonymous key. The tables that span periods (tier
history, the customer dimension, the lost-customer register) are rebuilt in the same
transaction; publishes therefore queue up behind a lock, while every other stage may run in
parallel. The cut points behind the period's R/F/M scores are kept with it
(marts.score_cut_points).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from grading import decisions, ledger, periods
from grading.catalog import load_catalogue
from grading.errors import DataError
from grading.frames import bulk_insert, read_query_file
from grading.periods import PERIOD_STATE_LOCK, PeriodState
from grading.rules.model import ReviewPolicy
from grading.rules.service import ServiceLevels, entitlements_frame, treatments_frame
from grading.settings import include_dir
from grading.warehouse import analyze, exclusive, run_sql_file

log = logging.getLogger(__name__)

# A cut point moving by more than this share between periods gets a drift note.
CUT_POINT_DRIFT = 0.25

# the publish files' per-period tables, counted by published_counts (the others span every period)
PUBLISHED_TABLES = (
    "customer_features_snapshot", "customer_tier_snapshot", "elimination_candidates", "winback_candidates",
    "core_customers", "candidate_exemptions",
)

# Relations of include/sql/marts.yml that no include/sql/publish/<relation>.sql loads.
LOADED_ELSEWHERE = frozenset({
    # by this module, after the publish files (update_tier_history, store_cut_points)
    "tier_history", "score_cut_points",
    # by other stages and commands
    "run_audit", "validation_results", "model_runs", "run_rule_files", "published_periods",
    "elimination_decisions", "potential_runs",
    # by this module, from the run's rule files (store_standards, grading.decisions.restate)
    "service_entitlements", "action_treatments", "elimination_status",
    # views (migrations)
    "current_customer_tier", "tier_summary", "current_customer_features", "current_elimination_candidates",
    "current_nurture_candidates", "current_winback_candidates", "current_core_customers",
    "current_customer_service",
    # the quarterly review
    "review_tier_distribution", "review_pareto", "review_tier_migration", "review_retention",
    "review_satisfaction", "review_winback", "review_elimination", "review_stability", "review_fairness",
    "review_drift", "review_uplift", "review_scheme", "tier_basket_rules", "review_annual",
})
# Files of include/sql/publish/ that are steps of this module rather than a relation's load.
STEP_FILES = frozenset({"tier_history_append", "tier_history_rebuild", "score_cut_points"})
# Publish files that read relations other publish files load: marts.yml must list those first.
READS = {"lost_customers": ("customer_tier_snapshot", "winback_candidates")}


@dataclass(frozen=True)
class Published:
    rows: dict[str, int]  # rows per published per-period table
    stale: list[PeriodState]  # published periods that no longer follow from the ones before them


@dataclass(frozen=True)
class Standards:
    """What publish stores beside the period's grades: the run's service levels for its tiers,
    and the review policy the elimination statuses are restated under."""

    levels: ServiceLevels
    tiers: tuple[str, ...]
    review: ReviewPolicy = ReviewPolicy()


def publish(warehouse: Engine, as_of: date, run_id: str = "publish",
            settled: tuple[int, datetime | None] | None = None, standards: Standards | None = None) -> Published:
    """Replace the published rows of ``as_of``.

    Refused when the period's own grading read an earlier period's state that has changed
    since (grading.periods); with ``settled`` (a token of grading.ledger.settled), refused when
    a batch was extracted or validated since the token was taken, as the lost-customer
    register reads raw. The run's batch is marked published and marts.published_periods
    restated in the same transaction.
    """
    relations = publish_files()
    # tier history and the dimension span all periods; the period state must not move meanwhile
    with exclusive(warehouse, "grading.publish", PERIOD_STATE_LOCK, decisions.LOCK) as conn:
        periods.check_in_order(conn, as_of)
        for relation in relations:
            run_sql_file(conn, f"publish/{relation}", {"as_of": as_of})
        analyze(conn, "marts.customer_tier_snapshot")  # the period's new rows, read by the next step
        update_tier_history(conn, as_of)
        store_cut_points(conn, as_of)
        if standards is not None:
            store_standards(conn, as_of, standards)
        decisions.restate(conn, standards.review if standards else ReviewPolicy())
        analyze(conn, *(f"marts.{table}" for table in (*relations, "tier_history")
                        if table != "customer_tier_snapshot"))  # analyzed above, unchanged since
        if settled is not None:
            ledger.unchanged(conn, settled, "publish")
        now = datetime.now(UTC).replace(tzinfo=None)
        ledger.mark_published(conn, run_id, now)
        stale = periods.refresh_published(conn, as_of, run_id, now)
        return Published(published_counts(conn, as_of), stale)


class PublishFilesError(DataError, ValueError):
    """include/sql/publish/ and include/sql/marts.yml disagree on what publish loads."""


def publish_files() -> list[str]:
    """The relations include/sql/publish/<relation>.sql loads, in the order marts.yml lists them.

    Every relation of marts.yml has a file unless it is in LOADED_ELSEWHERE, every file
    (besides STEP_FILES; ``<relation>.<dialect>.sql`` variants count as their relation's)
    loads a relation of marts.yml that is not, and a file that reads another publish file's
    relation (READS) comes after it; otherwise PublishFilesError says what is amiss.
    """
    listed = list(load_catalogue())
    files = {path.name.split(".")[0] for path in (include_dir() / "sql" / "publish").glob("*.sql")} - STEP_FILES
    relations = [relation for relation in listed if relation not in LOADED_ELSEWHERE]
    problems = [f"marts.yml lists {relation} but include/sql/publish/{relation}.sql is missing "
                f"(add the file, or {relation} to grading.publish.LOADED_ELSEWHERE)"
                for relation in relations if relation not in files]
    problems += [f"include/sql/publish/{name}.sql loads no relation of marts.yml that publish loads "
                 f"(name it after one, or add it to grading.publish.STEP_FILES)"
                 for name in sorted(files - set(relations))]
    problems += [f"grading.publish.LOADED_ELSEWHERE names {name}, which marts.yml does not list"
                 for name in sorted(LOADED_ELSEWHERE - set(listed))]
    problems += [f"marts.yml lists {relation} before {read}, which include/sql/publish/{relation}.sql reads"
                 for relation, reads in READS.items() for read in reads
                 if relation in relations and read in relations and relations.index(read) > relations.index(relation)]
    if problems:
        raise PublishFilesError("; ".join(problems))
    return relations


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


def store_standards(conn: Connection, as_of: date, standards: Standards) -> None:
    """Keep the period's service entitlements per tier and treatments per action."""
    for table, frame in (("service_entitlements", entitlements_frame(standards.levels, standards.tiers)),
                         ("action_treatments", treatments_frame(standards.levels))):
        conn.execute(sa.text(f"DELETE FROM marts.{table} WHERE as_of_date = :as_of"), {"as_of": as_of})  # noqa: S608 - constant names
        frame.insert(0, "as_of_date", as_of)
        bulk_insert(conn, f"marts.{table}", frame)


def published_counts(conn: Connection, as_of: date) -> dict[str, int]:
    """Rows per published per-period table for ``as_of``."""
    return {
        table: conn.execute(
            sa.text(f"SELECT COUNT(*) FROM marts.{table} WHERE as_of_date = :as_of"), {"as_of": as_of}  # noqa: S608 - constant names
        ).scalar_one()
        for table in PUBLISHED_TABLES
    }
