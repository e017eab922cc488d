"""Reviewers' decisions on elimination candidates (grading.decisions) on a DuckDB warehouse: a proposed
candidate is approved or rejected once, by a named reviewer; a candidate a later period no longer
lists expires; marts.elimination_status shows each candidate's state."""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from grading.decisions import candidates_by_status, decide

OCT, JAN = date(2024, 10, 1), date(2025, 1, 1)


@pytest.fixture
def warehouse(migrated_warehouse: Engine) -> Engine:
    """October listed k1 and k2; January lists k1 again and grades k2 without listing it."""
    engine = migrated_warehouse
    with engine.begin() as conn:
        for as_of, key in ((OCT, "k1"), (OCT, "k2"), (JAN, "k1")):
            conn.execute(sa.text(
                "INSERT INTO marts.elimination_candidates (as_of_date, customer_key, rule_name, reason, action, "
                "rule_version, periods_met) VALUES (:d, :k, 'complaints', 'why', 'review', '1', 2)"),
                {"d": as_of, "k": key})
        for as_of, key in ((OCT, "k1"), (OCT, "k2"), (JAN, "k1"), (JAN, "k2")):
            conn.execute(sa.text(
                "INSERT INTO marts.customer_tier_snapshot (as_of_date, customer_key, tier, tier_rank, tier_rule, "
                "tier_reason, rule_version) VALUES (:d, :k, 'normal', 1, 'rest', 'why', '1')"),
                {"d": as_of, "k": key})
    return engine


def status(warehouse: Engine) -> dict[tuple[str, date], str]:
    frame = candidates_by_status(warehouse)
    return {(row.customer_key, row.as_of_date.date()): row.review_status for row in frame.itertuples()}


def test_a_candidate_no_later_period_lists_expires_and_the_rest_are_proposed(warehouse: Engine) -> None:
    # k1 is listed again in January, so its October listing stays open; k2's is not
    assert status(warehouse) == {("k1", JAN): "proposed", ("k1", OCT): "proposed", ("k2", OCT): "expired"}
    proposed = candidates_by_status(warehouse, "proposed")
    assert [(key, day.date()) for key, day in zip(proposed["customer_key"], proposed["as_of_date"], strict=True)] \
        == [("k1", JAN), ("k1", OCT)]  # newest first
    assert candidates_by_status(warehouse, as_of=OCT)["customer_key"].tolist() == ["k1", "k2"]


def test_a_decision_is_recorded_once_with_its_reviewer(warehouse: Engine) -> None:
    decide(warehouse, "k1", JAN, "approved", "  alice  ", "two years of complaints")
    decided = candidates_by_status(warehouse, "approved")
    assert decided[["customer_key", "reviewer"]].to_dict("records") == [{"customer_key": "k1", "reviewer": "alice"}]
    assert decided["decided_at"].notna().all()
    with pytest.raises(ValueError, match="candidate k1 as of 2025-01-01 is approved; only proposed candidates"):
        decide(warehouse, "k1", JAN, "rejected", "bob")
    with warehouse.connect() as conn:
        rows = conn.execute(sa.text("SELECT decision, reviewer, note FROM marts.elimination_decisions")).all()
    assert rows == [("approved", "alice", "two years of complaints")]


def test_decisions_that_cannot_be_taken_are_refused(warehouse: Engine) -> None:
    with pytest.raises(ValueError, match="decision must be one of approved, rejected, got 'maybe'"):
        decide(warehouse, "k1", JAN, "maybe", "alice")
    with pytest.raises(ValueError, match="needs the reviewer's name"):
        decide(warehouse, "k1", JAN, "approved", "   ")
    with pytest.raises(LookupError, match="no elimination candidate k2 as of 2025-01-01"):
        decide(warehouse, "k2", JAN, "approved", "alice")
    with pytest.raises(ValueError, match="candidate k2 as of 2024-10-01 is expired"):
        decide(warehouse, "k2", OCT, "rejected", "alice")
    assert candidates_by_status(warehouse, "approved").empty
    assert candidates_by_status(warehouse, "rejected").empty
