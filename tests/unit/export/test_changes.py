"""What the CRM export hands over (grading.export.changes) between two periods published by hand."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from grading.export.changes import changes, checksum, counts, to_csv
from tests.helpers import APRIL, JULY, publish_by_hand


def test_changes_since_the_baseline_are_tier_moves_and_listings_with_their_treatment(
        migrated_warehouse: Engine) -> None:
    publish_by_hand(migrated_warehouse)
    with migrated_warehouse.connect() as conn:
        rows = changes(conn, JULY, APRIL)
    assert rows[["change", "customer_id", "list", "tier", "previous_tier", "action"]].astype(object).where(
        rows[["change", "customer_id", "list", "tier", "previous_tier", "action"]].notna(), None).values.tolist() == [
        ["listed", "C2", "elimination", "normal", None, "reduce_service_level"],  # approved by a reviewer
        ["tier_changed", "C1", None, "gold", "normal", None],
        ["unlisted", "C3", "win_back", "gold", None, "contact_and_offer"],
    ]
    listed = rows.iloc[0]
    assert (listed["action_owner"], listed["contact_within_days"]) == ("service", 30)
    moved = rows.iloc[1]
    assert (moved["service_level"], moved["response_time_hours"], bool(moved["dedicated_account_manager"])) == (
        "gold_service", 8.0, False)
    assert counts(rows) == {"listed elimination": 1, "tier_changed": 1, "unlisted win_back": 1}


def test_a_first_export_hands_over_everything_and_the_bytes_do_not_change(migrated_warehouse: Engine) -> None:
    publish_by_hand(migrated_warehouse)
    with migrated_warehouse.connect() as conn:
        first = changes(conn, APRIL, None)
        again = changes(conn, APRIL, None)
    assert counts(first) == {"listed core": 1, "listed win_back": 1, "tier_changed": 4}
    assert first["previous_tier"].isna().all()
    assert checksum(to_csv(first)) == checksum(to_csv(again))
    assert to_csv(first).decode().splitlines()[0].startswith("change,customer_id,customer_key,list,tier")


def test_an_unapproved_elimination_is_not_handed_over(migrated_warehouse: Engine) -> None:
    import sqlalchemy as sa

    from grading.decisions import restate
    from grading.rules.model import ReviewPolicy

    publish_by_hand(migrated_warehouse)
    with migrated_warehouse.begin() as conn:
        conn.execute(sa.text("DELETE FROM marts.elimination_decisions"))
        restate(conn, ReviewPolicy())
        assert "elimination" not in changes(conn, JULY, APRIL)["list"].dropna().tolist()


def test_an_approval_made_after_the_baseline_was_exported_is_handed_over_now(migrated_warehouse: Engine) -> None:
    """c2 was proposed in April too; the reviewer approved the April row after April went to the CRM."""
    from datetime import datetime

    import pandas as pd
    import sqlalchemy as sa

    from grading.decisions import restate
    from grading.frames import bulk_insert
    from grading.rules.model import ReviewPolicy

    publish_by_hand(migrated_warehouse)
    with migrated_warehouse.begin() as conn:
        conn.execute(sa.text("DELETE FROM marts.elimination_decisions"))
        bulk_insert(conn, "marts.elimination_candidates", pd.DataFrame([{
            "as_of_date": APRIL, "customer_key": "c2", "rule_name": "few_orders_many_complaints",
            "reason": "complaints", "action": "reduce_service_level", "rule_version": "1", "periods_met": 2}]))
        bulk_insert(conn, "marts.elimination_decisions", pd.DataFrame([{
            "customer_key": "c2", "as_of_date": APRIL, "decision": "approved", "reviewer": "alice", "note": None,
            "decided_at": datetime(2024, 4, 20)}]).astype({"note": "string"}))
        restate(conn, ReviewPolicy())  # the July row carries April's approval
        late = changes(conn, JULY, APRIL, datetime(2024, 4, 2))  # April went out before the approval
        known = changes(conn, JULY, APRIL, datetime(2024, 4, 21))  # ... or after it
    assert "elimination" in late["list"].dropna().tolist()
    assert "elimination" not in known["list"].dropna().tolist()


def test_an_approved_elimination_to_nurture_is_handed_over_as_nurture(migrated_warehouse: Engine) -> None:
    """Eligible for the control draw (control_group not empty) means its action is one the rules nurture."""
    import sqlalchemy as sa

    from grading.decisions import restate
    from grading.rules.model import ReviewPolicy

    publish_by_hand(migrated_warehouse)
    with migrated_warehouse.begin() as conn:
        conn.execute(sa.text("UPDATE marts.elimination_candidates SET control_group = FALSE"))
        restate(conn, ReviewPolicy())
        rows = changes(conn, JULY, APRIL)
        conn.execute(sa.text("UPDATE marts.elimination_candidates SET control_group = TRUE"))
        restate(conn, ReviewPolicy())
        held_out = changes(conn, JULY, APRIL)
    assert rows.loc[rows["customer_id"] == "C2", "list"].tolist() == ["nurture"]
    assert "C2" not in held_out["customer_id"].tolist()  # the control group is left alone
