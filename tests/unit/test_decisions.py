"""Reviewers' decisions on elimination candidates (grading.decisions) on a DuckDB warehouse: a proposed
candidate is approved or rejected once, by a named reviewer; the decision carries forward until the
facts change materially; a customer has one open proposal; undecided proposals expire."""

from __future__ import annotations

import math
from datetime import date

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from grading.decisions import candidates_by_status, decide, material, restate, statuses
from grading.rules.model import ReviewPolicy

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
        restate(conn, ReviewPolicy())
    return engine


def status(warehouse: Engine) -> dict[tuple[str, date], str]:
    frame = candidates_by_status(warehouse)
    return {(row.customer_key, row.as_of_date.date()): row.review_status for row in frame.itertuples()}


def test_one_open_proposal_per_customer_and_a_candidate_no_later_period_lists_expires(warehouse: Engine) -> None:
    # k1 is listed again in January: its October row is superseded by the January proposal; k2's is not
    assert status(warehouse) == {("k1", JAN): "proposed", ("k1", OCT): "superseded", ("k2", OCT): "expired"}
    proposed = candidates_by_status(warehouse, "proposed")
    assert list(zip(proposed["customer_key"], proposed["as_of_date"].dt.date, strict=True)) == [("k1", JAN)]
    assert candidates_by_status(warehouse, as_of=OCT)["customer_key"].tolist() == ["k1", "k2"]
    reasons = candidates_by_status(warehouse).set_index(["customer_key", "as_of_date"])["status_reason"]
    assert reasons[("k2", pd.Timestamp(OCT))] == "undecided and no longer listed on 2025-01-01"


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
    with pytest.raises(ValueError, match="candidate k1 as of 2024-10-01 is superseded"):
        decide(warehouse, "k1", OCT, "rejected", "alice")
    assert candidates_by_status(warehouse, "approved").empty
    assert candidates_by_status(warehouse, "rejected").empty


# -- the workflow on frames (grading.decisions.statuses) ---------------------------------------------

PERIODS = [date(2024, m, 1) for m in range(1, 13)]
POLICY = ReviewPolicy(proposal_expiry_days=90, material_change=(("monetary_365d", 0.25),))


def candidates(rows: list[tuple[str, date, str, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"as_of_date": pd.Timestamp(d), "customer_key": k, "rule_name": rule, "action": "act",
                          "severity": "low", "control_group": pd.NA, "monetary_365d": value}
                         for k, d, rule, value in rows])


def test_a_decision_carries_forward_until_the_facts_change_materially() -> None:
    rows = [("a", PERIODS[0], "r1", 1000.0), ("a", PERIODS[1], "r1", 1100.0), ("a", PERIODS[2], "r1", 1200.0),
            ("a", PERIODS[3], "r1", 600.0), ("a", PERIODS[4], "r1", 600.0)]
    decisions = {("a", PERIODS[0]): ("rejected", "alice", pd.Timestamp("2024-01-05"))}
    out = statuses(candidates(rows), decisions, PERIODS[:5], POLICY).set_index("as_of_date")["review_status"]
    # +10 % and +20 % of the 1,000 decided on carry the rejection; -40 % re-proposes; the new
    # proposal of April is superseded by May's, which waits for a decision
    assert out.tolist() == ["rejected", "rejected", "rejected", "superseded", "proposed"]
    frame = statuses(candidates(rows), decisions, PERIODS[:5], POLICY)
    assert frame["decided_as_of"].iloc[1] == pd.Timestamp(PERIODS[0])
    assert frame["reviewer"].iloc[2] == "alice"
    assert frame["proposed_since"].iloc[4] == pd.Timestamp(PERIODS[3])


def test_another_rule_listing_the_customer_reopens_the_review() -> None:
    rows = [("a", PERIODS[0], "r1", 1000.0), ("a", PERIODS[1], "r2", 1000.0)]
    decisions = {("a", PERIODS[0]): ("approved", "bob", pd.Timestamp("2024-01-05"))}
    frame = statuses(candidates(rows), decisions, PERIODS[:2], POLICY)
    assert frame["review_status"].tolist() == ["approved", "proposed"]
    assert frame["status_reason"].iloc[1] == "awaiting a decision (listed by r2)"


def test_an_undecided_proposal_expires_and_stays_closed_while_nothing_changes() -> None:
    rows = [("a", day, "r1", 1000.0) for day in PERIODS[:6]]
    out = statuses(candidates(rows), {}, PERIODS[:6], POLICY)
    # proposed from January; April 1 is 91 days later: expired there, and May and June carry it
    assert out["review_status"].tolist() == ["superseded"] * 3 + ["expired"] * 3
    assert out["expires_on"].iloc[0] == pd.Timestamp("2024-03-31")
    assert out["status_reason"].iloc[3] == "undecided since 2024-01-01: expired after 90 days"


def test_material_change_compares_relative_moves_and_missing_values() -> None:
    policy = ReviewPolicy(material_change=(("monetary_365d", 0.25), ("complaints_365d", 0.5)))
    assert material({"monetary_365d": 100.0, "complaints_365d": 2.0}, {"monetary_365d": 125.0,
                                                                       "complaints_365d": 3.0}, policy) is None
    assert material({"monetary_365d": 100.0}, {"monetary_365d": 126.0}, policy) == "monetary_365d 100 -> 126"
    assert material({"monetary_365d": 0.0}, {"monetary_365d": 1.0}, policy) == "monetary_365d 0 -> 1"
    assert material({"monetary_365d": 5.0}, {"monetary_365d": math.nan}, policy) == "monetary_365d 5 -> nan"
