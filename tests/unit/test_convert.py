"""Source values to canonical types (grading.convert): what each converter accepts, which values it
marks bad and why, and the SourceDataError that names table, column, count and example rows."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from grading import convert
from grading.contract import SOURCE_TABLES
from grading.convert import SourceDataError


def test_instants_read_iso_text_and_zoned_timestamps_as_naive_utc_and_refuse_the_rest() -> None:
    values = pd.Series(["2024-05-28", "2024-05-28T10:15:30Z", "2024-05-28 10:15:30.123456+02:00",
                        "2024-05-28T10:15", None, "now", "15/11/2024", "1716854400"])
    parsed, bad, problem = convert.instants(values)
    assert str(parsed.dtype) == "datetime64[us]"
    assert parsed.iloc[:4].tolist() == [datetime(2024, 5, 28), datetime(2024, 5, 28, 10, 15, 30),
                                        datetime(2024, 5, 28, 8, 15, 30, 123456), datetime(2024, 5, 28, 10, 15)]
    # a missing value is not a bad one (the caller decides whether the column may be empty)
    assert bad.tolist() == [False] * 5 + [True] * 3
    assert "not a time" in problem

    zoned = pd.Series(pd.to_datetime(["2024-05-28 01:00"]).tz_localize("Europe/Berlin"))
    assert convert.instants(zoned)[0].tolist() == [datetime(2024, 5, 27, 23, 0)]
    # an epoch number's unit would be a guess: refused, not read as nanoseconds or seconds
    assert convert.instants(pd.Series([1716854400]))[1].tolist() == [True]


def test_amounts_refuse_text_that_is_no_number_then_what_raw_cannot_keep() -> None:
    numbers, bad, problem = convert.amounts(pd.Series(["12.50", "1,5", None]))
    assert numbers.iloc[0] == 12.5
    assert bad.tolist() == [False, True, False]
    assert "decimal comma" in problem
    _, bad, problem = convert.amounts(pd.Series([1e16, float("inf"), -9.99e15]))
    assert bad.tolist() == [True, True, False]
    assert "too large" in problem


def test_whole_numbers_and_flags_accept_their_spellings_only() -> None:
    numbers, bad, _ = convert.whole_numbers(pd.Series(["3", 4.0, 2.5, "2147483648", None, "x"]))
    assert bad.tolist() == [False, False, True, True, False, True]
    assert numbers.iloc[:2].tolist() == [3, 4]
    assert str(numbers.dtype) == "Int64"

    flags, bad, problem = convert.flags(pd.Series([" Yes", "n", "TRUE", "0", "maybe", None]))
    assert flags.iloc[:4].tolist() == [True, False, True, False]
    assert bad.tolist() == [False, False, False, False, True, False]
    assert "yes/no" in problem
    assert convert.flags(pd.Series([1, 0, 2]))[1].tolist() == [False, False, True]

    _, bad, problem = convert.texts(pd.Series(["ok", "a\x00b", None]))
    assert bad.tolist() == [False, True, False]
    assert "NUL" in problem


def test_the_error_names_table_column_count_and_up_to_five_rows_by_key() -> None:
    frame = pd.DataFrame({"order_id": [f"O{i}" for i in (7, 3, 9, 1, 5, 8, 2)],
                          "amount": ["1,5", "x", "2", "€3", "4 EUR", "n/a", None]})
    numbers, bad, problem = convert.amounts(frame["amount"])
    error = convert.fail("orders", "amount", frame, "order_id", bad, frame["amount"], problem, hint="or map it")
    assert isinstance(error, SourceDataError)
    # sorted by key, so the message does not depend on the order rows arrived in
    assert str(error) == (
        "source table orders, column amount: 5 row(s) hold a value that is not a number (a decimal comma or a "
        "currency sign?) (e.g. order_id O1 = '€3', order_id O3 = 'x', order_id O5 = '4 EUR', order_id O7 = '1,5', "
        "order_id O8 = 'n/a'). The extraction stopped and nothing is graded on this batch: correct the rows at the "
        "source (or map it), then rerun the period.")


def test_without_a_key_the_error_shows_values_only_and_a_missing_value_shows_its_key() -> None:
    customers = pd.DataFrame({"customer_id": ["C-secret-1", "C-secret-2"], "created_at": ["soon", None]})
    _, bad, problem = convert.instants(customers["created_at"])
    error = str(convert.fail("customers", "created_at", customers, None, bad, customers["created_at"], problem))
    assert error.startswith("source table customers, column created_at: 1 row(s) hold a value that is not a time")
    assert "(e.g. 'soon')." in error
    assert "C-secret" not in error  # a customer's id never reaches run_audit, which BI tools read

    tickets = pd.DataFrame({"ticket_id": ["T1", "T2", "T3"], "opened_at": [None, "2024-01-01", None]})
    missing = convert.fail("tickets", "opened_at", tickets, "ticket_id", tickets["opened_at"].isna(),
                           tickets["opened_at"], "have no opened_at")
    assert "2 row(s) have no opened_at (e.g. ticket_id T1, ticket_id T3)." in str(missing)


def _typed_tickets(rows: int, seed: int) -> pa.RecordBatch:
    """Tickets as a typed source (DuckDB, Parquet) hands them over: every column of its canonical type."""
    rng = np.random.default_rng(seed)
    opened = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 10**9, rows), unit="s")
    closed = pd.Series(opened + pd.to_timedelta(rng.integers(0, 10**6, rows), unit="s")).where(rng.random(rows) > .3)
    return pa.RecordBatch.from_pandas(pd.DataFrame({
        "ticket_id": [f"T{i}" for i in range(rows)],
        "customer_id": pd.Series([f"C{i % 50}" for i in range(rows)]).where(rng.random(rows) > .05),
        "opened_at": opened.astype("datetime64[us]"),
        "closed_at": closed.astype("datetime64[us]"),
        "category": rng.choice(["billing", "delivery", "Zürich 東京", ""], rows),
        "severity": pd.Series(rng.choice(["low", "high"], rows)).where(rng.random(rows) > .2),
        "resolved": pd.array(rng.random(rows) > .5, dtype="boolean"),
    }), preserve_index=False)


def _through_pandas(spec, batch: pa.RecordBatch) -> pa.RecordBatch:
    return convert.frame_batch(spec, convert.to_canonical(spec, batch.to_pandas()))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_typed_batch_is_cast_in_arrow_to_exactly_what_the_pandas_converters_give(seed: int) -> None:
    spec = SOURCE_TABLES["tickets"]
    batch = _typed_tickets(500, seed)
    fast = convert.canonical_batch(spec, batch)
    assert fast.schema == convert.arrow_schema(spec)
    assert fast.equals(_through_pandas(spec, batch))


def test_orders_with_whole_amounts_and_surveys_with_small_integers_take_the_arrow_path_too() -> None:
    orders = pa.RecordBatch.from_pydict({
        "order_id": ["O1", "O2"], "customer_id": ["C1", "C2"], "order_ts": [datetime(2024, 1, 1), datetime(2024, 2, 1)],
        "status": ["completed", "refunded"], "amount": pa.array([12, -3], pa.int32()), "margin": [1.25, None]})
    surveys = pa.RecordBatch.from_pydict({
        "survey_id": ["S1", "S2"], "customer_id": ["C1", "C2"], "responded_at": [datetime(2024, 1, 1)] * 2,
        "csat": pa.array([5, None], pa.int8()), "nps": pa.array([-(2**31 - 1), 2**31 - 1], pa.int64())})
    for name, batch in (("orders", orders), ("surveys", surveys)):
        spec = SOURCE_TABLES[name]
        assert convert._typed_columns(spec, batch) is not None, name
        assert convert.canonical_batch(spec, batch).equals(_through_pandas(spec, batch)), name


@pytest.mark.parametrize("fault", ["nul", "huge amount", "nan amount", "nan margin", "no order time", "text time",
                                   "ns time", "int64 amount", "text amount"])
def test_a_batch_the_arrow_path_cannot_vouch_for_gets_the_pandas_converters_verdict(fault: str) -> None:
    """Anything not plainly canonical falls back: the same rows, or the same error, as to_canonical."""
    spec = SOURCE_TABLES["orders"]
    columns = {"order_id": ["O1", "O2", "O3"], "customer_id": ["C1", "C2", "C3"],
               "order_ts": pa.array([datetime(2024, 1, d) for d in (1, 2, 3)], pa.timestamp("us")),
               "status": ["completed"] * 3, "amount": [10.0, 20.5, 3.0], "margin": [1.0, 2.0, None]}
    change = {"nul": ("status", ["completed", "bad\x00", "completed"]),
              "huge amount": ("amount", [10.0, 1e16, 3.0]),
              "nan amount": ("amount", [10.0, float("nan"), 3.0]),
              "nan margin": ("margin", [10.0, float("nan"), 3.0]),
              "no order time": ("order_ts", pa.array([datetime(2024, 1, 1), None, datetime(2024, 1, 3)],
                                                     pa.timestamp("us"))),
              "text time": ("order_ts", ["2024-01-01T10:00:00+02:00", "2024-01-02", "2024-01-03 00:00"]),
              "ns time": ("order_ts", pa.array([datetime(2024, 1, d) for d in (1, 2, 3)], pa.timestamp("ns"))),
              "int64 amount": ("amount", pa.array([1, 2**40, 3], pa.int64())),
              "text amount": ("amount", ["10.00", "1,5", "3"])}[fault]
    batch = pa.RecordBatch.from_pydict({**columns, change[0]: change[1]})
    assert convert._typed_columns(spec, batch) is None
    def outcome(convert_batch):
        try:
            return convert_batch(spec, batch)
        except SourceDataError as refused:
            return str(refused)

    expected = outcome(_through_pandas)
    got = outcome(convert.canonical_batch)
    assert got == expected if isinstance(expected, str) else got.equals(expected)
    assert isinstance(expected, str) == (fault not in ("nan margin", "text time", "ns time", "int64 amount")), expected


def test_a_frame_whose_texts_arrive_in_several_arrow_chunks_becomes_one_batch() -> None:
    """A mapped file's rows put together keep their Arrow-backed texts in chunks (the Olist export did)."""
    spec = SOURCE_TABLES["customers"]
    chunked = pa.chunked_array([["C1", "C2"], ["C3"]])
    frame = pd.DataFrame({column: pd.Series(chunked, dtype=pd.ArrowDtype(pa.string())).astype("string")
                          for column in spec.columns if spec.kind(column) == "text"})
    frame["created_at"] = pd.Series(pd.to_datetime(["2024-01-01", "2024-02-01", None])).astype("datetime64[us]")
    batch = convert.frame_batch(spec, frame)
    assert batch.schema == convert.arrow_schema(spec)
    assert batch.column("customer_id").to_pylist() == ["C1", "C2", "C3"]
    assert convert.frame_batch(spec, frame.iloc[:0]).num_rows == 0
