"""The order periods were graded in (grading.periods) on a DuckDB warehouse: each period's predecessor,
which periods are stale after a rerun or a backfill (and why), the refusal to publish a period
whose grading was overtaken, and marts.published_periods restated on publish."""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from grading.frames import read_frame
from grading.periods import (
    PeriodOrderError,
    check_in_order,
    frame_digest,
    period_states,
    record_features,
    record_grade,
    refresh_published,
)

JUL, OCT, JAN = date(2024, 7, 1), date(2024, 10, 1), date(2025, 1, 1)
NOW = datetime(2025, 1, 2, 3, 0)


def grade(conn: Connection, as_of: date, digest: str) -> None:
    """What the tiers and flags stages leave of a period: its staging tiers and both stages' digests."""
    conn.execute(sa.text("DELETE FROM staging.customer_tiers WHERE as_of_date = :d"), {"d": as_of})
    conn.execute(sa.text("INSERT INTO staging.customer_tiers (as_of_date, customer_id, tier, tier_rank, tier_rule, "
                         "tier_reason, rule_version) VALUES (:d, 'C1', 'gold', 2, 'gold_band', 'why', '1')"),
                 {"d": as_of})
    for stage in ("tiers", "flags"):
        record_grade(conn, as_of, stage, f"run-{as_of}", NOW, f"{stage}-{digest}")


def stale(conn: Connection) -> dict[date, str | None]:
    return {day: state.reason for day, state in period_states(conn).items() if state.stale}


def test_a_rerun_that_writes_the_same_state_changes_nothing_downstream(migrated_warehouse: Engine) -> None:
    with migrated_warehouse.begin() as conn:
        grade(conn, OCT, "oct")
        grade(conn, JAN, "jan")
        states = period_states(conn)
        assert [(s.as_of, s.graded_after, s.stale) for s in states.values()] == [(OCT, None, False),
                                                                                 (JAN, OCT, False)]
        grade(conn, OCT, "oct")
        assert stale(conn) == {}
        check_in_order(conn, JAN)


def test_a_period_graded_on_a_predecessor_that_changed_is_stale_and_refused(migrated_warehouse: Engine) -> None:
    with migrated_warehouse.begin() as conn:
        grade(conn, OCT, "oct")
        grade(conn, JAN, "jan")
        grade(conn, OCT, "oct-regraded")
        assert stale(conn) == {JAN: "its tiers carried on from 2024-10-01, which has been graded again since, "
                                    "differently"}
        assert period_states(conn)[JAN].overtaken
        with pytest.raises(PeriodOrderError, match="2025-01-01 cannot be published: its tiers carried on from "
                                                   "2024-10-01.*rerun the period from its tiers task"):
            check_in_order(conn, JAN)
        grade(conn, JAN, "jan")  # regraded in date order: the same rows, now on the new predecessor
        assert stale(conn) == {}
        check_in_order(conn, JAN)


def test_a_backfill_makes_every_later_period_stale_but_refuses_only_the_one_it_precedes(
        migrated_warehouse: Engine) -> None:
    with migrated_warehouse.begin() as conn:
        grade(conn, OCT, "oct")
        grade(conn, JAN, "jan")
        grade(conn, JUL, "jul")
        assert stale(conn) == {
            OCT: "its tiers carried on from no earlier period, but the period before it is now 2024-07-01",
            JAN: "it follows 2024-10-01, which is stale",
        }
        with pytest.raises(PeriodOrderError, match="2024-10-01 cannot be published"):
            check_in_order(conn, OCT)
        check_in_order(conn, JAN)  # its own predecessor did not change: it follows once October is regraded

        refresh_published(conn, OCT, "run-oct", NOW)
        assert [s.as_of for s in refresh_published(conn, JAN, "run-jan", NOW)] == [OCT, JAN]
        published = read_frame(conn, "SELECT as_of_date, run_id, graded_after, stale FROM marts.published_periods "
                                     "ORDER BY as_of_date")
        assert published.assign(as_of_date=published["as_of_date"].dt.date,
                                graded_after=published["graded_after"].dt.date).to_dict("records") == [
            {"as_of_date": OCT, "run_id": "run-oct", "graded_after": JUL, "stale": True},
            {"as_of_date": JAN, "run_id": "run-jan", "graded_after": OCT, "stale": True},
        ]
        grade(conn, OCT, "oct")
        grade(conn, JAN, "jan")
        assert refresh_published(conn, JAN, "run-jan-2", NOW) == []
        assert read_frame(conn, "SELECT run_id FROM marts.published_periods WHERE NOT stale ORDER BY as_of_date"
                          )["run_id"].tolist() == ["run-oct", "run-jan-2"]


def test_rows_before_the_period_validated_after_its_features_read_raw_refuse_the_publish(
        migrated_warehouse: Engine) -> None:
    started = datetime(2025, 1, 2, 1, 0)

    def validated(batch: datetime, run_id: str, window_start: datetime | None) -> None:
        conn.execute(sa.text("INSERT INTO ops.batches (batch_id, run_id, as_of_date, status, started_at, updated_at) "
                             "VALUES (:b, :run, '2024-10-01', 'passed', :b, :b)"), {"b": batch, "run": run_id})
        conn.execute(sa.text("INSERT INTO ops.batch_windows VALUES (:b, 'orders', :start, '2025-02-01', 1)"),
                     {"b": batch, "start": window_start})

    with migrated_warehouse.begin() as conn:
        check_in_order(conn, JAN)  # features never ran: nothing to compare
        record_features(conn, JAN, "run-jan", started)
        validated(datetime(2025, 1, 2, 0, 30), "before", datetime(2024, 12, 1))  # before the features read
        validated(datetime(2025, 1, 2, 2, 0), "after-cutoff", datetime(2025, 1, 1))  # only rows from the as-of on
        check_in_order(conn, JAN)
        validated(datetime(2025, 1, 2, 3, 0), "overtaking", datetime(2024, 12, 15))
        with pytest.raises(PeriodOrderError, match=r"run overtaking \(as of 2024-10-01\) validated rows dated before "
                                                   r"2025-01-01 after this period's features had read raw"):
            check_in_order(conn, JAN)


def test_a_digest_depends_on_the_rows_not_their_order() -> None:
    rows = pd.DataFrame({"customer_id": ["b", "a", "c"], "tier": ["gold", "normal", "gold"]})
    digest = frame_digest(rows, ["customer_id"])
    assert frame_digest(rows.iloc[::-1], ["customer_id"]) == digest
    in_order = rows.sort_values("customer_id")  # taken as it is, not sorted again: the same digest
    assert frame_digest(in_order, ["customer_id"]) == digest
    assert frame_digest(in_order.reset_index(drop=True), ["customer_id"]) == digest
    # the digest of these rows before rows in order were taken as they are (a stored state stays equal)
    assert digest == "08064b1367200c1f197fed309e0af9f5b89546c5caf1909437473e955506b0d9"
    assert frame_digest(rows.assign(tier=["gold", "gold", "gold"]), ["customer_id"]) != digest
    assert frame_digest(rows.rename(columns={"tier": "held_tier"}), ["customer_id"]) != digest
