"""Checking a mapping file into a SourceMapping (grading.sources.checker): the shipped mappings load,
every mistake names file, line, table and field, and what a file says reaches the checked mapping."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from grading.sources import MappingError, load_mapping, mappings_dir
from tests.helpers import mapping_file


@pytest.mark.parametrize("name", ["superstore", "online_retail", "olist", "canonical"])
def test_shipped_mappings_load(name: str) -> None:
    mapping = load_mapping(mappings_dir() / f"{name}.yaml")
    assert mapping.kind == ("sql" if name == "canonical" else "files")
    assert {"customers", "orders"} <= set(mapping.feeds)


@pytest.mark.parametrize(("body", "line", "expected"), [
    ("tables:\n  orders:\n    from: x.csv\n    columns:\n      order_id: a\n      amout: b\n", 9,
     "table 'orders': field 'amout': orders has no column 'amout'"),
    ("tables:\n  orders:\n    from: x.csv\n    columns: {order_id: a, customer_id: b, order_ts: c, amount: d}\n", 7,
     "field 'columns': missing 'status'"),
    ("tables:\n  orders:\n    from: x.csv\n    columns:\n      order_id: a\n      customer_id: b\n"
     "      order_ts: c\n      amount: d\n      status: {column: s, map: {ok: done}}\n", 12,
     "'done' is not a status; use one of completed, cancelled, refunded"),
    ("tables:\n  customers:\n    from: x.csv\n    columns:\n      customer_id: a\n"
     "      created_at: {column: b, aggregate: min}\n", 9, "aggregate needs group_by"),
    ("tables:\n  customers:\n    from: x.csv\n    columns:\n      customer_id: {column: a, format: '%Y'}\n"
     "      created_at: b\n", 8, "field 'customer_id.format': does not apply to customers.customer_id (text)"),
    ("tables:\n  customers:\n    from: x.csv\n    timezone: Mars/Olympus\n"
     "    columns: {customer_id: a, created_at: b}\n", 7, "unknown time zone 'Mars/Olympus'"),
    ("tables:\n  customers:\n    from: x.csv\n    encoding: klingon\n"
     "    columns: {customer_id: a, created_at: b}\n", 7, "unknown encoding 'klingon'"),
    ("tables:\n  customers:\n    from: x_{period:%q}.csv\n    columns: {customer_id: a, created_at: b}\n", 6,
     "{period:%q} must use"),
    ("tables:\n  clients:\n    from: x.csv\n    columns: {customer_id: a}\n", 5, "unknown table 'clients'"),
    ("tables:\n  customers:\n    from: x.csv\n    columns: {customer_id: a, created_at: b}\n"
     "    where: [{column: a, op: like, value: x}]\n", 8, "unknown operator 'like'"),
    ("tables:\n  customers:\n    from: x.csv\n    columns: {customer_id: a, created_at: b}\n    columns: {}\n", 8,
     "key 'columns' appears twice"),
    ("tables:\n  customers:\n    from: x.csv\n    columns: {customer_id: a, created_at: [b\n", 8, "not valid YAML"),
    ("tables:\n  customers:\n    from: ../../../../etc/passwd\n    columns: {customer_id: a, created_at: b}\n", 6,
     "field 'from': '../../../../etc/passwd' leaves the source location"),
    ("tables:\n  customers:\n    from: /etc/passwd\n    columns: {customer_id: a, created_at: b}\n", 6,
     "'/etc/passwd' leaves the source location"),
])
def test_mapping_mistakes_name_file_line_table_and_field(tmp_path: Path, body: str, line: int, expected: str) -> None:
    path = mapping_file(tmp_path, body)
    with pytest.raises(MappingError) as error:
        load_mapping(path)
    assert re.match(rf"{re.escape(str(path))}:{line}(:\d+)?: ", str(error.value)), str(error.value)
    if "YAML" in expected or "twice" in expected:  # found by the YAML loader: with the column
        assert re.match(rf"{re.escape(str(path))}:{line}:\d+: ", str(error.value)), str(error.value)
    assert expected in str(error.value)


def test_location_expands_environment_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    body = "tables:\n  customers:\n    from: x.csv\n    columns: {customer_id: a, created_at: b}\n"
    path = mapping_file(tmp_path, body, source="source: {type: files, location: '${DROP_DIR}/in'}")
    monkeypatch.delenv("DROP_DIR", raising=False)
    with pytest.raises(MappingError, match="DROP_DIR is not set"):
        load_mapping(path)
    monkeypatch.setenv("DROP_DIR", str(tmp_path / "drop"))
    assert load_mapping(path).location == str(tmp_path / "drop" / "in")
    path = mapping_file(tmp_path, body, source="source: {type: files, location: '${DROP_DIR_X:-sub}/in'}")
    assert load_mapping(path).location == str(tmp_path / "sub" / "in")


def test_a_missing_mapping_file_is_named_with_the_shipped_ones(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match=r"nowhere\.yaml: no such mapping file \(mappings shipped: .*superstore"):
        load_mapping(tmp_path / "nowhere.yaml")


def test_feeds_take_the_source_options_unless_they_set_their_own(tmp_path: Path) -> None:
    path = mapping_file(tmp_path, """
    tables:
      customers:
        from: c.csv
        columns: {customer_id: id, created_at: since}
      orders:
        from: o.csv
        decimal: ","
        timezone: Europe/Paris
        columns:
          order_id: id
          customer_id: who
          order_ts: at
          status: {column: st, prefix_map: {R: refunded, RX: cancelled}, default: completed}
          amount: total
        where: [{column: kind, op: in, value: [1, 2]}]
    """, source="source: {type: files, location: ., delimiter: ';', timezone: Europe/Berlin, null_values: ['', NA]}")
    mapping = load_mapping(path)
    (customers,), (orders,) = mapping.feeds["customers"], mapping.feeds["orders"]
    assert (customers.read.delimiter, customers.read.decimal, customers.timezone) == (";", ".", "Europe/Berlin")
    assert customers.read.null_values == ("", "NA")
    assert (orders.read.delimiter, orders.read.decimal, orders.timezone) == (";", ",", "Europe/Paris")
    status = orders.columns["status"]
    assert status.prefixes == (("RX", "cancelled"), ("R", "refunded"))  # longest prefix tried first
    assert (status.has_default, status.default) == (True, "completed")
    assert orders.where[0].value == ("1", "2")  # compared as text unless declared otherwise
    assert orders.columns["amount"].line == path.read_text().splitlines().index("      amount: total") + 1
    assert mapping.location == str(tmp_path)


@pytest.mark.parametrize(("column", "shown"), [("no", "False"), ("2024", "2024")])
def test_a_column_name_yaml_reads_as_a_boolean_or_number_must_be_quoted(tmp_path: Path, column: str,
                                                                         shown: str) -> None:
    path = mapping_file(tmp_path, f"tables:\n  customers:\n    from: x.csv\n"
                                  f"    columns: {{customer_id: {column}, created_at: b}}\n")
    with pytest.raises(MappingError, match=rf"table 'customers': field 'customer_id': YAML read this column name as "
                                           rf"{shown}: quote it"):
        load_mapping(path)


def test_the_content_hash_follows_the_bytes_of_the_file(tmp_path: Path) -> None:
    body = "tables:\n  customers:\n    from: x.csv\n    columns: {customer_id: a, created_at: b}\n"
    first = load_mapping(mapping_file(tmp_path, body)).content_hash
    assert load_mapping(mapping_file(tmp_path, body)).content_hash == first
    assert load_mapping(mapping_file(tmp_path, body + "# a comment\n")).content_hash != first
