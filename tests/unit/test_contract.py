"""The canonical source schema (grading.contract): each table's columns, kinds and must-have columns,
no personal data in it, and the raw layer of a migrated warehouse built to the same schema."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from grading.contract import SOURCE_TABLES, VALUE_SETS
from grading.warehouse import migrate, open_engine

RAW_TYPES = {"timestamp": "TIMESTAMP", "amount": "DECIMAL(18,2)", "integer": "INTEGER", "flag": "BOOLEAN",
             "text": "VARCHAR"}


def test_a_table_lists_key_then_texts_timestamps_amounts_integers_flags() -> None:
    orders, tickets = SOURCE_TABLES["orders"], SOURCE_TABLES["tickets"]
    assert orders.columns == ("order_id", "customer_id", "status", "order_ts", "amount", "margin")
    assert tickets.columns == ("ticket_id", "customer_id", "category", "severity", "opened_at", "closed_at",
                               "resolved")
    # every raw row has its key and event time; required columns in between, each once
    assert orders.not_null == ("order_id", "customer_id", "status", "amount", "order_ts")
    assert SOURCE_TABLES["customers"].not_null == ("customer_id", "created_at")


def test_each_column_has_one_kind_and_an_unknown_column_names_its_table() -> None:
    tickets = SOURCE_TABLES["tickets"]
    assert [tickets.kind(c) for c in tickets.columns] == [
        "text", "text", "text", "text", "timestamp", "timestamp", "flag"]
    assert SOURCE_TABLES["surveys"].kind("nps") == "integer"
    with pytest.raises(KeyError, match=r"tickets has no column 'email'"):
        tickets.kind("email")


def test_the_schema_holds_no_personal_data_and_value_sets_name_real_columns() -> None:
    columns = {c for spec in SOURCE_TABLES.values() for c in spec.columns}
    assert not columns & {"name", "email", "phone", "first_name", "last_name", "address"}
    for table, column in VALUE_SETS:
        assert SOURCE_TABLES[table].kind(column) == "text", (table, column)
    assert [name for name, spec in SOURCE_TABLES.items() if spec.optional] == ["interactions", "order_lines"]


def test_the_raw_layer_has_exactly_the_contract_columns_typed_by_kind(tmp_path: Path) -> None:
    with open_engine(f"duckdb:///{tmp_path}/w.duckdb") as engine:
        migrate(engine)
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns "
                "WHERE table_schema = 'raw'")).all()
    raw: dict[str, dict[str, tuple[str, str]]] = {}
    for table, column, data_type, nullable in rows:
        raw.setdefault(table, {})[column] = (data_type, nullable)
    assert set(raw) == set(SOURCE_TABLES)
    for name, spec in SOURCE_TABLES.items():
        assert set(raw[name]) == {*spec.columns, "extracted_at"}, name
        for column in spec.columns:
            assert raw[name][column][0] == RAW_TYPES[spec.kind(column)], (name, column)
        # the event time places a row in a period: raw refuses a row without one
        assert raw[name][spec.event_time][1] == "NO", name
