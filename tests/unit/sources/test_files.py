"""The files of a drop (grading.sources.files): found by pattern and period in a local folder or any
store Airflow's ObjectStoragePath reaches, read as CSV or Parquet, compressed or not; wrong encodings,
byte-order marks and missing columns are named with file, line and mapping line."""

from __future__ import annotations

import gzip
import os
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from grading.sources import SourceDataError
from grading.sources.files import FileStore, check_columns, read_file
from grading.sources.model import ReadOptions
from tests.helpers import LINES, LINES_MAPPING, mapping_file
from tests.helpers import read_mapped as read
from tests.helpers import write_source_file as write


def test_a_file_not_in_the_declared_encoding_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "c.csv", "id,since,area\nc1,2024-01-01,Zürich\nc2,2024-01-02,Genève\n", encoding="latin-1")
    body = """
    tables:
      customers:
        from: c.csv
        columns: {customer_id: id, created_at: since, region: area}
    """
    with pytest.raises(SourceDataError) as error:
        read(mapping_file(tmp_path, body), "customers")
    assert str(error.value).startswith("c.csv: declared encoding utf-8, but line 2 (byte offset 29, bytes fc 72 69 63)"
                                       " is not valid utf-8")
    path = mapping_file(tmp_path, body, source="source: {type: files, location: ., encoding: latin-1}")
    assert read(path, "customers").frame["region"].tolist() == ["Zürich", "Genève"]


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-8"])
def test_a_byte_order_mark_never_reaches_the_first_column(tmp_path: Path, encoding: str) -> None:
    (tmp_path / "c.csv").write_bytes("\ufeffRow ID,since\nc1,2024-01-01\n".encode())
    path = mapping_file(tmp_path, """
    tables:
      customers:
        from: c.csv
        columns: {customer_id: Row ID, created_at: since}
    """, source=f"source: {{type: files, location: ., encoding: {encoding}}}")
    assert read(path, "customers").frame["customer_id"].tolist() == ["c1"]


def test_a_missing_column_is_named_with_the_mapping_line(tmp_path: Path) -> None:
    write(tmp_path, "lines.csv", LINES.replace("Profit", "Margin"))
    with pytest.raises(SourceDataError) as error:
        read(mapping_file(tmp_path, LINES_MAPPING), "orders")
    assert str(error.value).startswith("lines.csv: the mapping names column 'Profit' (mapping.yaml:22), which it does "
                                       "not have. Its columns: Order, Client, Day, State, Qty, Price, Margin, Area.")


def test_object_storage_drop_with_gzip(tmp_path: Path) -> None:
    """Any storage Airflow's ObjectStoragePath reaches: here an in-memory fsspec store attached the Airflow way."""
    from airflow.sdk import ObjectStoragePath
    from airflow.sdk.io import attach
    from fsspec.implementations.memory import MemoryFileSystem

    attach("memory", fs=MemoryFileSystem())
    root = ObjectStoragePath("memory://grading-test/drop")
    (root / "lines.csv.gz").write_bytes(gzip.compress(textwrap.dedent(LINES).lstrip().encode()))
    path = mapping_file(tmp_path, LINES_MAPPING.replace("lines.csv", "lines.csv.gz"),
                        source="source: {type: files, location: 'memory://grading-test/drop'}")
    rows = read(path, "orders")
    assert list(rows.frame["order_id"]) == ["A1", "A2", "A3", "R1"]
    assert rows.rejected == {"missing customer_id": 1}


def test_period_files_are_found_with_the_period_their_name_says(tmp_path: Path) -> None:
    for name in ("sales_2024-02.csv", "sales_2024-01.csv", "sales_2024-13.csv", "sales_all.csv", "other_2024-01.csv"):
        (tmp_path / name).write_text("a\n1\n", encoding="utf-8")
    (tmp_path / "2023").mkdir()
    (tmp_path / "2023" / "sales.csv").write_text("a\n1\n", encoding="utf-8")
    store = FileStore(str(tmp_path), None)
    monthly = store.files("sales_{period:%Y-%m}.csv")
    assert [(f.name, f.period) for f in monthly] == [  # sorted by name; month 13 and sales_all skipped
        ("sales_2024-01.csv", (pd.Timestamp("2024-01-01"), pd.Timestamp("2024-02-01"))),
        ("sales_2024-02.csv", (pd.Timestamp("2024-02-01"), pd.Timestamp("2024-03-01")))]
    yearly = store.files("{period:%Y}/sales.csv")
    assert [(f.name, f.period) for f in yearly] == [
        ("2023/sales.csv", (pd.Timestamp("2023-01-01"), pd.Timestamp("2024-01-01")))]
    assert [f.name for f in store.files("*.csv")] == [
        "other_2024-01.csv", "sales_2024-01.csv", "sales_2024-02.csv", "sales_2024-13.csv", "sales_all.csv"]
    assert all(f.period is None for f in store.files("*.csv"))


def test_files_are_read_from_inside_the_location_only(tmp_path: Path) -> None:
    drop, outside = tmp_path / "drop", tmp_path / "secret"
    drop.mkdir()
    outside.mkdir()
    (outside / "keys.csv").write_text("a\n1\n", encoding="utf-8")
    with pytest.raises(SourceDataError, match=r"source location .*nowhere is not a folder"):
        FileStore(str(tmp_path / "nowhere"), None)
    store = FileStore(str(drop), None)
    with pytest.raises(SourceDataError, match=r"file pattern '\.\./secret/\*\.csv' leaves the source location"):
        store.files("../secret/*.csv")
    os.symlink(outside / "keys.csv", drop / "keys.csv")
    with pytest.raises(SourceDataError, match=r"keys\.csv leads outside the source location .* \(a link\?\)"):
        store.files("*.csv")


def test_a_csv_file_is_read_as_text_with_blanks_missing_and_rows_numbered(tmp_path: Path) -> None:
    (tmp_path / "c.csv").write_text(textwrap.dedent("""\
        id;amount;note;unused
        007;1,50;  padded  ;x
        008;NULL;   ;y
        """), encoding="utf-8")
    store = FileStore(str(tmp_path), None)
    (file,) = store.files("c.csv")
    options = ReadOptions(delimiter=";", null_values=("", "NULL"))
    frame = read_file(store, file, ["id", "amount", "note"], options, {})
    assert list(frame.columns) == ["id", "amount", "note", "__file", "__row"]
    assert frame["id"].tolist() == ["007", "008"]  # leading zeros kept: text, converted later
    assert frame["amount"].iloc[0] == "1,50"
    assert frame["note"].iloc[0] == "padded"
    assert frame[["amount", "note"]].iloc[1].isna().all()  # a null word and an all-blank value: missing
    assert frame["__file"].tolist() == ["c.csv", "c.csv"]
    assert frame["__row"].tolist() == [1, 2]


def test_a_missing_column_suggests_the_near_name_and_a_byte_order_mark() -> None:
    with pytest.raises(SourceDataError, match=r"^x.csv: the mapping names column 'Order Date' \(did you mean "
                                              r"'order date'\?\) \(m.yaml:4\), which it does not have"):
        check_columns("x.csv", ["id", "order date"], ["id", "Order Date"], {"Order Date": "m.yaml:4"})
    with pytest.raises(SourceDataError, match=r"declare encoding: utf-8-sig\.$"):
        check_columns("x.csv", ["\ufeffid", "b"], ["id"], {})
    check_columns("x.csv", ["id", "b"], ["b", "id"], {})  # all there: no error
