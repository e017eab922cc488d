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
