"""The checker base of rule and mapping files (grading.filecheck): the subclass's error, raised at
``file:line: <scope> 'name': field 'x': problem``, for unknown or missing keys and empty texts."""

from __future__ import annotations

from pathlib import Path

import pytest

from grading import yamlfile
from grading.filecheck import FileChecker

PATH = Path("include/mappings/shop.yaml")
DOCUMENT = b"""\
tables:
  orders:
    from: sales
    kye: order_no
    note: ""
"""


class MappingError(ValueError):
    pass


class TableChecker(FileChecker):
    error = MappingError
    scope = "table"


def _orders() -> yamlfile.Node:
    return yamlfile.load(PATH, DOCUMENT)["tables"]["orders"]


def test_an_unknown_key_is_reported_at_its_own_line_with_the_known_ones() -> None:
    checker = TableChecker(PATH)
    with pytest.raises(MappingError, match=r"^include/mappings/shop\.yaml:4: table 'orders': field 'kye': "
                                           r"unknown key\(s\) 'kye', 'note' in a table; known: from, key$"):
        checker.keys(_orders(), ("from", "key"), "orders", "a table")


def test_a_missing_required_key_is_reported_at_the_mapping() -> None:
    checker = TableChecker(PATH)
    with pytest.raises(MappingError, match=r"^include/mappings/shop\.yaml:3: table 'orders': field 'key': "
                                           r"is required in a table$"):
        checker.keys(_orders(), ("from", "key", "kye", "note"), "orders", "a table", required=("from", "key"))


def test_a_value_that_is_not_a_mapping_is_refused_without_a_line() -> None:
    with pytest.raises(MappingError, match=r"^include/mappings/shop\.yaml: table 'orders': a table must be a mapping$"):
        TableChecker(PATH).keys("sales", ("from",), "orders", "a table")


def test_text_fields_must_be_non_empty_texts_and_absent_ones_take_the_default() -> None:
    checker, orders = TableChecker(PATH), _orders()
    assert checker.text(orders, "from", "orders") == "sales"
    assert checker.text(orders, "where", "orders", default="all") == "all"
    with pytest.raises(MappingError, match=r"^include/mappings/shop\.yaml:5: table 'orders': field 'note': "
                                           r"must be a non-empty text, got ''$"):
        checker.text(orders, "note", "orders")


def test_the_base_checker_raises_value_error_and_names_items() -> None:
    node = yamlfile.load(PATH, b"a: 1\nb: 2\n")
    with pytest.raises(ValueError, match=r"^include/mappings/shop\.yaml:2: item 'x': field 'b': bad$"):
        FileChecker(PATH).fail(node, "bad", "x", "b", key="b")
    assert FileChecker.unknown_keys(node, ["a"]) == ["b"]
