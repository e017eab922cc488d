"""Redaction of messages stored where BI tools read (grading.privacy): e-mails and phone numbers
masked, quoted customer ids replaced by their pseudonyms from a real warehouse's ops.customer_keys."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from grading.frames import bulk_insert
from grading.keys import pseudonym
from grading.privacy import redact
from grading.warehouse import migrate, open_engine

KEY = b"test-key"


def test_emails_and_international_phone_numbers_are_masked_without_a_warehouse() -> None:
    text = "rejected: customer anna.berg+shop@mail.example.co.uk called +49 (30) 123-4567 about order 2024-05-28"
    assert redact(None, text) == "rejected: customer <e-mail> called <phone> about order 2024-05-28"
    assert redact(None, "") == ""
    assert redact(None, None) is None


def test_quoted_customer_ids_become_their_pseudonyms_and_other_quotes_stay(tmp_path: Path) -> None:
    with open_engine(f"duckdb:///{tmp_path}/w.duckdb") as engine:
        migrate(engine)
        with engine.begin() as conn:
            bulk_insert(conn, "ops.customer_keys", pd.DataFrame({
                "customer_id": ["C-7", "C-8"], "customer_key": [pseudonym("C-7", KEY), pseudonym("C-8", KEY)]}))
        with engine.connect() as conn:
            redacted = redact(conn, "value 'C-7' in column \"customer_id\"; region 'EU'; id C-8 unquoted")
    assert redacted == (f"value '{pseudonym('C-7', KEY)}' in column \"customer_id\"; region 'EU'; "
                        "id C-8 unquoted")


@pytest.mark.parametrize("prepare", [False, True], ids=["not-migrated", "no-keys-yet"])
def test_a_warehouse_without_keys_leaves_the_text_as_masked(tmp_path: Path, prepare: bool) -> None:
    with open_engine(f"duckdb:///{tmp_path}/w.duckdb") as engine:
        if prepare:
            migrate(engine)
        with engine.connect() as conn:
            assert redact(conn, "customer 'C-7' <a@b.io>") == "customer 'C-7' <<e-mail>>"
