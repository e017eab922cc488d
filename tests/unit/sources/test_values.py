"""Source values converted to canonical ones (grading.sources.values): money to cents half to even,
value maps, dates in declared formats and local time zones, numbers, flags and filters; a value
that cannot be converted is refused, naming file, row, column and mapping line."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from grading.sources import SourceDataError
from grading.sources.values import as_text
from tests.helpers import LINES, LINES_MAPPING, mapping_file
from tests.helpers import read_mapped as read
from tests.helpers import write_source_file as write


def test_cents_round_half_to_even_like_decimal(tmp_path: Path) -> None:
    values = ["0.005", "0.015", "0.025", "1.0049999", "2.675", "1234567.125", "-0.125", "0.3333"]
    write(tmp_path, "o.csv", "id,v\n" + "\n".join(f"o{i},{v}" for i, v in enumerate(values)))
    path = mapping_file(tmp_path, """
    tables:
      orders:
        from: o.csv
        columns: {order_id: id, customer_id: {value: c}, order_ts: {value: "2024-01-01"},
                  status: {value: completed}, amount: v}
    """)
    got = read(path, "orders").frame["amount"].tolist()
    want = [float(Decimal(v).quantize(Decimal("0.01"), ROUND_HALF_EVEN)) for v in values]
    assert got == want


def test_unknown_status_without_a_mapping_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "o.csv", "id,st\no1,completed\no2,shipped\no3,shipped\n")
    path = mapping_file(tmp_path, """
    tables:
      orders:
        from: o.csv
        columns: {order_id: id, customer_id: {value: c}, order_ts: {value: "2024-01-01"}, status: st,
                  amount: {value: 1}}
    """)
    with pytest.raises(SourceDataError) as error:
        read(path, "orders")
    message = str(error.value)
    assert "o.csv row 2: column 'st' -> orders.status (mapping.yaml:8): 'shipped' is not a known status" in message
    assert "(2 rows like this)" in message
    assert "map:" in message


def test_value_maps_prefixes_and_defaults(tmp_path: Path) -> None:
    write(tmp_path, "t.csv", """
    num,who,at,kind,done
    1,c1,2024-01-01 10:00,Complaint,yes
    2,c1,2024-01-02 10:00,Q,no
    3,c2,2024-01-03 10:00,RMA-7,
    4,c2,2024-01-04 10:00,,Y
    """)
    path = mapping_file(tmp_path, """
    tables:
      tickets:
        from: t.csv
        columns:
          ticket_id: {column: num, prefix: "T-"}
          customer_id: who
          opened_at: at
          category: {column: kind, map: {Complaint: complaint, Q: inquiry}, prefix_map: {"RMA": after-sales},
                     default: inquiry}
          resolved: done
    """)
    got = read(path, "tickets").frame
    assert got["ticket_id"].tolist() == ["T-1", "T-2", "T-3", "T-4"]
    assert got["category"].tolist() == ["complaint", "inquiry", "after-sales", "inquiry"]
    assert got["resolved"].tolist() == [True, False, pd.NA, True]


def test_a_date_off_the_declared_format_names_row_and_value(tmp_path: Path) -> None:
    write(tmp_path, "lines.csv", LINES.replace("05/02/24", "2024-02-05"))
    with pytest.raises(SourceDataError) as error:
        read(mapping_file(tmp_path, LINES_MAPPING), "orders")
    assert str(error.value).startswith(
        "lines.csv row 4: column 'Day' -> orders.order_ts (mapping.yaml:"
    )
    assert "'2024-02-05' does not match the declared format '%d/%m/%y'" in str(error.value)


def test_local_times_follow_zoneinfo_across_daylight_saving_changes(tmp_path: Path) -> None:
    # London: 2024-03-31 01:30 does not exist, 2024-10-27 01:30 happens twice.
    times = ["2024-01-15 12:00:00", "2024-07-15 12:00:00", "2024-03-31 01:30:00", "2024-10-27 01:30:00",
             "2024-07-15T12:00:00+02:00", "2024-01-15T12:00:00Z"]
    write(tmp_path, "s.csv", "id,at\n" + "\n".join(f"s{i},{t}" for i, t in enumerate(times)))
    path = mapping_file(tmp_path, """
    tables:
      surveys:
        from: s.csv
        timezone: Europe/London
        columns: {survey_id: id, customer_id: {value: c}, responded_at: at, csat: {value: 5}}
    """)
    got = read(path, "surveys").frame["responded_at"].tolist()

    def utc(text: str) -> pd.Timestamp:
        value = datetime.fromisoformat(text)
        if value.tzinfo is None:
            value = value.replace(tzinfo=ZoneInfo("Europe/London"))
        return pd.Timestamp(value.astimezone(UTC).replace(tzinfo=None))

    assert got == [utc(t) for t in times]
    assert got[2] == pd.Timestamp("2024-03-31 01:30:00")  # skipped hour: read with the winter offset
    assert got[3] == pd.Timestamp("2024-10-27 00:30:00")  # repeated hour: the first (summer) one


def test_a_value_that_is_not_a_number_is_named(tmp_path: Path) -> None:
    write(tmp_path, "lines.csv", LINES.replace("0.135", "n/a"))
    expected = r"lines.csv row 4: column 'Price' of multiply\('Qty', 'Price'\) -> orders.amount \(mapping.yaml:21\): "
    with pytest.raises(SourceDataError, match=expected + "'n/a' is not a number"):
        read(mapping_file(tmp_path, LINES_MAPPING), "orders")


def test_text_is_stored_without_float_noise_or_blanks() -> None:
    assert as_text(pd.Series([1.0, 20.0, None])).tolist() == ["1", "20", pd.NA]  # ids read as floats
    assert as_text(pd.Series([1.5, 2.0])).tolist() == ["1.5", "2.0"]  # not all integral: kept as written
    assert as_text(pd.Series(["  a ", "   ", ""])).tolist() == ["a", pd.NA, pd.NA]
    assert as_text(pd.Series(pd.to_datetime(["2024-01-02 03:04:05"]))).tolist() == ["2024-01-02 03:04:05"]


@pytest.mark.parametrize(("table", "columns", "value", "problem"), [
    ("surveys", "{survey_id: id, customer_id: {value: c}, responded_at: {value: '2024-01-01'}, csat: v}", "4.5",
     "is not a whole number"),
    ("tickets", "{ticket_id: id, customer_id: {value: c}, opened_at: {value: '2024-01-01'}, "
     "category: {value: inquiry}, resolved: v}", "maybe", "is not a yes/no value"),
])
def test_whole_numbers_and_flags_refuse_what_they_cannot_hold(tmp_path: Path, table: str, columns: str,
                                                              value: str, problem: str) -> None:
    write(tmp_path, "t.csv", f"id,v\nx1,1\nx2,{value}\n")
    path = mapping_file(tmp_path, f"tables:\n  {table}:\n    from: t.csv\n    columns: {columns}\n")
    with pytest.raises(SourceDataError) as error:
        read(path, table)
    message = str(error.value)
    column = columns.rsplit(", ", 1)[1].split(":")[0]
    assert message.startswith(f"t.csv row 2: column 'v' -> {table}.{column} (mapping.yaml:7): ")
    assert f"{value!r} {problem}" in message  # the source's text, not a parsed number


def test_where_compares_as_the_declared_type(tmp_path: Path) -> None:
    write(tmp_path, "o.csv", "id,n\no1,9\no2,10\no3,\n")
    body = """
    tables:
      orders:
        from: o.csv
        where: [{column: n, op: ">", value: 5%s}]
        columns: {order_id: id, customer_id: {value: c}, order_ts: {value: "2024-01-01"},
                  status: {value: completed}, amount: {value: 1}}
    """
    as_number = read(mapping_file(tmp_path, body % ", as: number"), "orders").frame["order_id"].tolist()
    as_words = read(mapping_file(tmp_path, body % ""), "orders").frame["order_id"].tolist()
    assert as_number == ["o1", "o2"]  # 9 and 10 are above 5; a missing value never is
    assert as_words == ["o1"]  # as text "10" sorts before "5"
