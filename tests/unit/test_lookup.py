"""One customer by source id as an operator sees them (grading.lookup), on periods published by hand."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from grading.lookup import UnknownCustomer, describe, lookup
from tests.helpers import publish_by_hand


def test_a_customer_shows_tier_reason_entitlements_and_open_flags(migrated_warehouse: Engine) -> None:
    publish_by_hand(migrated_warehouse)
    view = lookup(migrated_warehouse, "C2")
    text = "\n".join(describe(view))
    assert text.splitlines()[0] == "customer C2 (key c2) as of 2024-07-01"
    assert "  tier: normal since 2024-04-01" in text
    assert "first response within 48 h" in text
    assert "flag: elimination - reduce_service_level [approved]: complaints" in text
    assert lookup(migrated_warehouse, "C4").actions["list"].tolist() == ["core"]
    assert "open flags: none" in "\n".join(describe(lookup(migrated_warehouse, "C1")))


def test_an_unknown_id_says_so(migrated_warehouse: Engine) -> None:
    publish_by_hand(migrated_warehouse)
    with pytest.raises(UnknownCustomer, match="no customer 'C9' in the latest published period"):
        lookup(migrated_warehouse, "C9")
