"""The SQL checks GX cannot express (grading.validation.checks), run on a DuckDB warehouse: unknown
customers, keys loaded by an earlier batch, events before their customer, an empty period, a period's
volume against the ones before it and the raw columns' types."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from grading.frames import bulk_insert
from grading.validation import load_suite
from grading.validation.checks import Scope, run_checks
from grading.validation.results import CheckResult
from grading.warehouse import open_engine
from tests.helpers import load_raw

BATCH = datetime(2025, 1, 2)  # the batch under validation; load_raw's rows are an earlier batch (2000-01-01)
CUTOFF, PREVIOUS = datetime(2025, 1, 1), datetime(2024, 12, 1)


def orders(*rows: tuple[str, str, str]) -> pd.DataFrame:
    """Completed orders of 10.00 from (order_id, customer_id, order_ts) triples."""
    return pd.DataFrame({"order_id": [r[0] for r in rows], "customer_id": [r[1] for r in rows],
                         "order_ts": pd.to_datetime([r[2] for r in rows], format="ISO8601"), "status": "completed",
                         "amount": 10.0, "margin": 1.0})


def append_batch(url: str, table: str, frame: pd.DataFrame) -> None:
    with open_engine(url) as engine, engine.begin() as conn:
        bulk_insert(conn, f"raw.{table}", frame.assign(extracted_at=BATCH))


def checked(url: str, previous: datetime | None = PREVIOUS, source: sa.Engine | None = None) -> dict[str, CheckResult]:
    """The orders suite's SQL checks over BATCH, by check type."""
    scope = Scope(batch=BATCH, cutoff=CUTOFF, previous=previous, source=source, now=datetime(2025, 1, 2, 1))
    with open_engine(url) as engine, engine.connect() as conn:
        return {r.expectation: r for r in run_checks(conn, {"orders": load_suite("orders")}, scope)}


def test_row_wise_checks_count_the_batchs_offending_rows_and_name_them(tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path}/w.duckdb"
    customers = pd.DataFrame({"customer_id": ["c1", "c2"], "created_at": pd.to_datetime(["2024-06-01", "2024-12-10"]),
                              "region": None, "industry": None, "channel": None})
    load_raw(url, customers=customers, orders=orders(("o1", "c1", "2024-11-05")))
    append_batch(url, "orders", orders(
        ("o1", "c1", "2024-11-05"),  # loaded by the earlier batch already
        ("o2", "c9", "2024-12-05"),  # no such customer
        ("o3", "c2", "2024-12-08"),  # two days before its customer was created
        ("o4", "c2", "2024-12-09 12:00"),  # half a day before: within the 24 hours tolerated
        ("o5", "c1", "2024-12-15"),
    ))
    results = checked(url)
    found = {name: (r.success, r.unexpected_count, r.sample_keys, r.severity) for name, r in results.items()
             if name in ("expect_column_values_to_reference_known_customers",
                         "expect_keys_not_loaded_by_an_earlier_batch", "expect_event_time_not_before_customer_created")}
    assert found == {
        "expect_column_values_to_reference_known_customers": (False, 1, ("o2",), "critical"),
        "expect_keys_not_loaded_by_an_earlier_batch": (False, 1, ("o1",), "critical"),
        "expect_event_time_not_before_customer_created": (False, 1, ("o3",), "row"),
    }
    assert results["expect_columns_to_have_usable_types"].success
    assert results["expect_interval_not_empty"].observed_value == "4 row(s) in [2024-12-01 00:00, 2025-01-01 00:00)"
    assert "expect_quarantined_share_at_most" not in results  # judged by the quarantine, after every check


def _months(december: int) -> pd.DataFrame:
    """One early order, then 120, 100 and 110 orders in the three 31-day periods before December, and
    ``december`` in December."""
    rows = [("first", "c1", "2024-08-01")]
    for day, count in (("2024-09-15", 120), ("2024-10-15", 100), ("2024-11-15", 110), ("2024-12-15", december)):
        rows += [(f"{day}-{n}", "c1", day) for n in range(count)]
    return orders(*rows)


@pytest.mark.parametrize(("december", "success", "observed"), [
    (110, True, "110 rows in [2024-12-01, 2025-01-01) vs a trailing average of 110.0 over 3 period(s) of 31 days: "
                "ratio 1.00, band [0.7, 2.0]"),
    (300, False, "ratio 2.73, band [0.7, 2.0]"),
    (50, False, "ratio 0.45, band [0.7, 2.0]"),
])
def test_a_periods_volume_is_judged_against_the_average_of_the_periods_before(
    tmp_path: Path, december: int, success: bool, observed: str
) -> None:
    url = f"duckdb:///{tmp_path}/w.duckdb"
    load_raw(url, orders=_months(december))
    volume = checked(url)["expect_interval_volume_within_band"]
    assert volume.success is success
    assert volume.observed_value.endswith(observed)
    assert checked(url, previous=None)["expect_interval_volume_within_band"].observed_value == \
        "not checked: no earlier validated period to compare with"


def test_an_empty_period_fails_only_when_earlier_periods_or_the_source_had_rows(tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path}/w.duckdb"
    load_raw(url, orders=_months(0))
    empty = checked(url)["expect_interval_not_empty"]
    assert not empty.success
    assert empty.observed_value == "0 rows in [2024-12-01 00:00, 2025-01-01 00:00) although earlier periods hold " \
                                   "331 row(s)"
    assert checked(url)["expect_interval_volume_within_band"].success  # the emptiness check speaks for it

    fresh = f"duckdb:///{tmp_path}/fresh.duckdb"
    load_raw(fresh)
    source = sa.create_engine(f"sqlite:///{tmp_path}/source.sqlite")
    with source.begin() as conn:
        conn.execute(sa.text("CREATE TABLE orders (order_id TEXT)"))
    first = checked(fresh, previous=None, source=source)["expect_interval_not_empty"]
    assert (first.success, first.observed_value) == (True, "0 rows before 2025-01-01; the source table is empty too")
    with source.begin() as conn:
        conn.execute(sa.text("INSERT INTO orders VALUES ('o1')"))
    first = checked(fresh, previous=None, source=source)["expect_interval_not_empty"]
    assert (first.success, first.observed_value) == (False, "0 rows before 2025-01-01 although the source table "
                                                             "has rows")
    source.dispose()


def test_a_raw_column_of_the_wrong_type_is_named(tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path}/w.duckdb"
    load_raw(url)
    with open_engine(url) as engine, engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE raw.orders ALTER COLUMN amount TYPE VARCHAR"))
        conn.execute(sa.text("ALTER TABLE raw.orders DROP COLUMN margin"))
    types = checked(url)["expect_columns_to_have_usable_types"]
    assert not types.success
    assert types.observed_value == ("amount is VARCHAR, not one of amounts' types NUMERIC, DECIMAL, DOUBLE, REAL, "
                                    "FLOAT; margin missing")
