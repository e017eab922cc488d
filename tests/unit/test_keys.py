"""Customer pseudonyms (grading.keys): stable for one key, different under another, fixed in form."""

from __future__ import annotations

import re

from grading.keys import pseudonym

DEV_KEY = b"grading-dev-key-change-me"


def test_a_pseudonym_is_32_hex_digits_and_the_same_on_every_run() -> None:
    key = pseudonym("C-00042", DEV_KEY)
    assert re.fullmatch(r"[0-9a-f]{32}", key)
    # published customer_keys of existing warehouses depend on it: the function must not drift
    assert key == "819b80523b516fe731385e68832073ff"
    assert pseudonym("C-00042", DEV_KEY) == key


def test_another_secret_or_another_id_gives_another_pseudonym() -> None:
    key = pseudonym("C-00042", DEV_KEY)
    assert pseudonym("C-00042", b"another secret") != key
    assert pseudonym("C-00043", DEV_KEY) != key
    assert pseudonym("c-00042", DEV_KEY) != key  # ids are case-sensitive, as the source keeps them


def test_non_ascii_ids_are_hashed_as_utf8() -> None:
    assert pseudonym("Ä-1", b"k") == "b34bcdced650dc5b49829977114aa84f"
