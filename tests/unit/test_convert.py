"""Source values to canonical types (grading.convert): what each converter accepts, which values it
marks bad and why, and the SourceDataError that names table, column, count and example rows."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from grading import convert
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
