"""The catalogue of bad inputs: one case per kind of bad source data, each with its exact outcome.

Every case starts from the same state - a warehouse that has published the period as of
EARLIER from generated data (built once per warehouse for the module) - puts one bad input
into a copy of the source, and runs the next period's gate: grading.extract.extract (what
the extract task runs) and the validate stage. The outcome is exactly one of:

- Stop: the validate stage fails with a message naming each failed critical check (table,
  column, check, rows, keys); the batch's rows are gone from raw and the watermarks are
  rewound, so no later run grades on them;
- Quarantine: exactly those rows move from raw to ops.quarantine with the check and reason,
  and the stage passes (the run goes on with the good rows);
- Accept: nothing fails and the rows land in raw as stated;
- ExtractError: extraction fails before validation, with the error it gives today.

After every case the published tables are byte-identical to before. Cases run the gate only:
what the later stages do with a quarantined batch is covered end to end in test_validate.
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from grading import demo
from grading.contract import SOURCE_TABLES
from grading.convert import SourceDataError
from grading.extract import extract
from grading.frames import read_frame
from grading.keys import pseudonym
from grading.pipeline import Connections, run_grading, validate_stage
from grading.settings import pseudonym_key
from grading.validation import ValidationFailed
from grading.warehouse import open_engine
from tests.helpers import MARTS_BY_PERIOD, fingerprint, scalar

EARLIER = date(2024, 11, 1)  # the period published before every case
AS_OF = date(2024, 12, 1)  # the period each case runs
WINDOW = (pd.Timestamp("2024-11-01"), pd.Timestamp("2024-12-01"))  # rows of the case's period
CUSTOMERS, SEED = 400, 21
AMOUNT_REASON = "completed order with a negative amount or one above 10,000,000"


# --------------------------------------------------------------------------------------
# Outcomes


@dataclass(frozen=True)
class Failed:
    """One failed check as the message states it: where, which check, rows and a few keys."""

    where: str  # raw.<table>[.<column>]
    expectation: str
    rows: int | None = None
    keys: tuple[str, ...] | None = ()  # None: many rows, the message shows a few of them
    observed: str | None = None

    def line(self) -> str:
        """The message's line for this check, up to its action (or up to the keys if they vary)."""
        count = f" in {self.rows} row(s)" if self.rows else ""
        if self.keys is None:
            return f"- {self.where}: {self.expectation} failed{count} (e.g. "
        keys = f" (e.g. {', '.join(self.keys)})" if self.keys else ""
        observed = f"; observed {self.observed}" if self.observed else ""
        return f"- {self.where}: {self.expectation} failed{count}{keys}{observed}."

    def observed_in(self, bullet: str) -> bool:
        """Whether the message's line shows this check's observed value (whatever keys it lists)."""
        return self.observed is None or f"; observed {self.observed}" in bullet


@dataclass(frozen=True)
class Stop:
    failed: tuple[Failed, ...]
    findings: tuple[str, ...] = ()  # the beginnings of the row-level findings listed after them


@dataclass(frozen=True)
class Quarantine:
    rows: frozenset[tuple[str, str, str, str]]  # (table, key, expectation, reason)


@dataclass(frozen=True)
class Accept:
    check: Callable[[str], None] = field(default=lambda url: None)


@dataclass(frozen=True)
class ExtractError:
    error: type[Exception]
    pattern: str


# --------------------------------------------------------------------------------------
# The source of one case


class Source:
    """A copy of the generated source; cases change it with SQL and pick rows from the data."""

    def __init__(self, url: str, data: demo.DemoData) -> None:
        self.url, self.data = url, data

    def sql(self, statement: str, **params) -> None:
        engine = sa.create_engine(self.url)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(statement), params)
        finally:
            engine.dispose()

    def row(self, table: str, n: int = 0, **equal) -> pd.Series:
        """The n-th row (by key) of the case's period, optionally filtered on column values."""
        frame = self.data.tables()[table]
        time = {"orders": "order_ts", "tickets": "opened_at", "surveys": "responded_at",
                "customers": "created_at"}[table]
        rows = frame[(frame[time] >= WINDOW[0]) & (frame[time] < WINDOW[1])]
        for column, value in equal.items():
            rows = rows[rows[column] == value]
        return rows.sort_values(rows.columns[0]).iloc[n]

    def key(self, table: str, n: int = 0, **equal) -> str:
        return str(self.row(table, n, **equal).iloc[0])

    def in_period(self, table: str) -> pd.DataFrame:
        frame = self.data.tables()[table]
        time = {"orders": "order_ts", "tickets": "opened_at", "surveys": "responded_at"}[table]
        return frame[(frame[time] >= WINDOW[0]) & (frame[time] < WINDOW[1])]


def _order(src: Source, order_id: str, customer_id: str, ts: str, status: str = "completed",
           amount: float = 100.0) -> None:
    src.sql("INSERT INTO orders (order_id, customer_id, order_ts, status, amount, margin) "
            "VALUES (:o, :c, :ts, :s, :a, 1.0)", o=order_id, c=customer_id, ts=ts, s=status, a=amount)


def _old_customer(src: Source) -> str:
    """A customer created long before the case's period."""
    customers = src.data.customers
    return str(customers[customers["created_at"] < "2023-01-01"].sort_values("customer_id")["customer_id"].iloc[0])


def _conversion(table: str, column: str, rows: int, examples: str, problem: str) -> ExtractError:
    """The extraction stops on a value it cannot type, naming table, column, rows and keys."""
    return ExtractError(SourceDataError, rf"^source table {table}, column {column}: {rows} row\(s\) .*"
                                         rf"{re.escape(problem)}.* \(e\.g\. {re.escape(examples)}\)\. "
                                         r"The extraction stopped and nothing is graded on this batch")


def _quarantined(table: str, key: str, expectation: str, reason: str) -> Quarantine:
    return Quarantine(frozenset({(table, key, expectation, reason)}))


# --------------------------------------------------------------------------------------
# The cases: each changes the source and returns the exact outcome expected.

CASES: dict[str, Callable[[Source], object]] = {}


def case(name: str):
    def register(fn: Callable[[Source], object]):
        CASES[name] = fn
        return fn
    return register


@case("missing column")
def _(src: Source):
    src.sql("ALTER TABLE orders DROP COLUMN margin")
    return ExtractError(SourceDataError, r"^source table orders has no column margin, which the canonical schema "
                                         r"requires; its columns are order_id, customer_id, order_ts, status, amount\.")


@case("renamed column")
def _(src: Source):
    src.sql("ALTER TABLE orders RENAME COLUMN amount TO order_amount")
    return ExtractError(SourceDataError, r"^source table orders has no column amount, .*its columns are order_id, "
                                         r"customer_id, order_ts, status, order_amount, margin\.")


@case("extra column (accepted)")
def _(src: Source):
    src.sql("ALTER TABLE orders ADD COLUMN coupon_code TEXT")
    src.sql("UPDATE orders SET coupon_code = 'XMAS'")
    period = src.in_period("orders")

    def check(url: str) -> None:
        assert "coupon_code" not in _raw_columns(url, "orders")
        assert scalar(url, "SELECT COUNT(*) FROM raw.orders WHERE order_ts >= '2024-11-01'") == len(period)
    return Accept(check)


@case("wrong type: text in amount")
def _(src: Source):
    key = src.key("orders")
    src.sql("UPDATE orders SET amount = 'twelve' WHERE order_id = :k", k=key)
    return _conversion("orders", "amount", 1, f"order_id {key} = 'twelve'", "is not a number")


@case("decimal comma in amount")
def _(src: Source):
    keys = [src.key("orders", n) for n in range(6)]
    for key in keys:
        src.sql("UPDATE orders SET amount = '12,50' WHERE order_id = :k", k=key)
    shown = ", ".join(f"order_id {k} = '12,50'" for k in keys[:5])  # five examples at most
    return _conversion("orders", "amount", 6, shown, "is not a number")


@case("infinite amount")
def _(src: Source):
    key = src.key("orders", 1)
    src.sql("UPDATE orders SET amount = 9e999 WHERE order_id = :k", k=key)
    return _conversion("orders", "amount", 1, f"order_id {key} = inf", "amount that is infinite or too large")


@case("missing order status")
def _(src: Source):
    key = src.key("orders", 2)
    src.sql("UPDATE orders SET status = NULL WHERE order_id = :k", k=key)
    return _conversion("orders", "status", 1, f"order_id {key}", "have no status (raw requires it)")


@case("unparseable date")
def _(src: Source):
    key = src.key("orders")
    src.sql("UPDATE orders SET order_ts = '2024-11-31 10:00:00' WHERE order_id = :k", k=key)
    return _conversion("orders", "order_ts", 1, f"order_id {key} = '2024-11-31 10:00:00'", "is not a time")


@case("day-first date in a text timestamp")
def _(src: Source):
    key = src.key("orders", 3)
    src.sql("UPDATE orders SET order_ts = '15/11/2024 10:00:00' WHERE order_id = :k", k=key)
    return _conversion("orders", "order_ts", 1, f"order_id {key} = '15/11/2024 10:00:00'", "is not a time")


@case("epoch number in a text timestamp")
def _(src: Source):
    key = src.key("orders", 4)
    src.sql("UPDATE orders SET order_ts = 1731664800 WHERE order_id = :k", k=key)
    return _conversion("orders", "order_ts", 1, f"order_id {key} = 1731664800", "is not a time")


@case("a time without fraction exactly at the look-back start (accepted)")
def _(src: Source):
    # The earlier period's look-back starts the window at 2024-10-29 00:00; SQLite keeps text, and
    # a bound written with microseconds sorted after this value.
    src.sql("INSERT INTO orders (order_id, customer_id, order_ts, status, amount, margin) "
            "VALUES ('EDGE1', :c, '2024-10-29 00:00:00', 'completed', 10.0, 1.0), "
            "('EDGE2', :c, '2024-10-29', 'completed', 11.0, 1.0)", c=_old_customer(src))
    return Accept(lambda url: _equal(scalar(url, "SELECT COUNT(*) FROM raw.orders WHERE order_id IN ('EDGE1', "
                                               "'EDGE2') AND order_ts = '2024-10-29 00:00:00'"), 2))


@case("a time exactly at the as-of instant (not extracted until its period)")
def _(src: Source):
    src.sql("INSERT INTO orders (order_id, customer_id, order_ts, status, amount, margin) "
            "VALUES ('EDGE3', :c, '2024-12-01 00:00:00', 'completed', 10.0, 1.0)", c=_old_customer(src))
    return Accept(lambda url: _equal(scalar(url, "SELECT COUNT(*) FROM raw.orders WHERE order_id = 'EDGE3'"), 0))


@case("null key")
def _(src: Source):
    _order(src, None, src.key("customers"), "2024-11-20 10:00:00")
    return Stop((Failed("raw.orders.order_id", "expect_column_values_to_not_be_null", 1),))


@case("duplicate key")
def _(src: Source):
    key = src.key("orders", 3)
    _order(src, key, src.key("customers"), "2024-11-20 10:00:00", amount=5.0)
    return Stop((Failed("raw.orders.order_id", "expect_column_values_to_be_unique", 2, (key, key)),))


@case("duplicate delivery of the same interval")
def _(src: Source):
    src.sql("INSERT INTO orders SELECT * FROM orders WHERE order_ts >= '2024-11-01' AND order_ts < '2024-12-01'")
    period = src.in_period("orders")
    current, average = 2 * len(period), _trailing_average(src.data.orders)
    return Stop((
        Failed("raw.orders.order_id", "expect_column_values_to_be_unique", 2 * len(period), keys=None),
        Failed("raw.orders", "expect_interval_volume_within_band", observed=(
            f"{current} rows in [2024-11-01, 2024-12-01) vs a trailing average of {average:.1f} over 3 period(s) "
            f"of 30 days: ratio {current / average:.2f}, band [0.7, 2.0]")),
    ))


@case("key loaded before, re-delivered with a new date")
def _(src: Source):
    october = src.data.orders[src.data.orders["order_ts"].between("2024-10-01", "2024-10-20")]
    key = str(october.sort_values("order_id")["order_id"].iloc[0])
    src.sql("UPDATE orders SET order_ts = '2024-11-15 09:00:00' WHERE order_id = :k", k=key)
    return Stop((Failed("raw.orders", "expect_keys_not_loaded_by_an_earlier_batch", 1, (key,)),))


@case("negative amount")
def _(src: Source):
    key = src.key("orders", status="completed")
    src.sql("UPDATE orders SET amount = -50, margin = -50 WHERE order_id = :k", k=key)
    return _quarantined("orders", key, "expect_column_values_to_be_between", f"{AMOUNT_REASON} (amount=-50.00)")


@case("absurd amount")
def _(src: Source):
    key = src.key("orders", 1, status="completed")
    src.sql("UPDATE orders SET amount = 25000000 WHERE order_id = :k", k=key)  # its margin is below: one check fails
    return _quarantined("orders", key, "expect_column_values_to_be_between",
                        f"{AMOUNT_REASON} (amount=25000000.00)")


@case("zero-amount order (accepted)")
def _(src: Source):
    key = src.key("orders", 2, status="completed")
    src.sql("UPDATE orders SET amount = 0, margin = 0 WHERE order_id = :k", k=key)
    return Accept(lambda url: _equal(scalar(url, "SELECT amount FROM raw.orders WHERE order_id = :k", k=key), 0))


@case("future timestamp")
def _(src: Source):
    key = src.key("tickets")
    src.sql("UPDATE tickets SET closed_at = '2099-01-01 00:00:00' WHERE ticket_id = :k", k=key)
    return Stop((Failed("raw.tickets.closed_at", "expect_column_values_to_be_between", 1, (key,)),))


@case("order dated in the future (not extracted until its period)")
def _(src: Source):
    _order(src, "FUTURE1", src.key("customers"), "2099-06-01 10:00:00")
    return Accept(lambda url: _equal(scalar(url, "SELECT COUNT(*) FROM raw.orders WHERE order_id = 'FUTURE1'"), 0))


@case("timestamp before the customer was created")
def _(src: Source):
    customers = src.data.customers
    customer = customers[customers["created_at"] >= "2024-11-10"].sort_values("customer_id").iloc[0]
    early = (customer["created_at"] - timedelta(days=3)).strftime("%Y-%m-%d %H:%M:%S")
    assert "2024-11-01" <= early < "2024-12-01", "the order must fall in the case's period"
    _order(src, "EARLY1", customer["customer_id"], early)
    return _quarantined("orders", "EARLY1", "expect_event_time_not_before_customer_created",
                        f"order placed more than 24 hours before its customer was created (order_ts={early})")


@case("naive and aware time zones mixed (accepted, aware converted to UTC)")
def _(src: Source):
    east, utc, naive = src.key("orders", 0), src.key("orders", 1), src.key("orders", 2)
    src.sql("UPDATE orders SET order_ts = '2024-11-10T10:00:00+08:00' WHERE order_id = :k", k=east)
    src.sql("UPDATE orders SET order_ts = '2024-11-10T10:00:00Z' WHERE order_id = :k", k=utc)
    src.sql("UPDATE orders SET order_ts = '2024-11-10 10:00:00' WHERE order_id = :k", k=naive)

    def check(url: str) -> None:
        stored = {k: pd.Timestamp(scalar(url, "SELECT order_ts FROM raw.orders WHERE order_id = :k", k=k))
                  for k in (east, utc, naive)}
        assert stored == {east: pd.Timestamp("2024-11-10 02:00"), utc: pd.Timestamp("2024-11-10 10:00"),
                          naive: pd.Timestamp("2024-11-10 10:00")}
    return Accept(check)


@case("CSAT 0")
def _(src: Source):
    key = src.key("surveys", 0)
    src.sql("UPDATE surveys SET csat = 0 WHERE survey_id = :k", k=key)
    return _quarantined("surveys", key, "expect_column_values_to_be_between", "CSAT outside 1-5 (csat=0)")


@case("CSAT 6")
def _(src: Source):
    key = src.key("surveys", 1)
    src.sql("UPDATE surveys SET csat = 6 WHERE survey_id = :k", k=key)
    return _quarantined("surveys", key, "expect_column_values_to_be_between", "CSAT outside 1-5 (csat=6)")


@case("NPS 11")
def _(src: Source):
    key = src.key("surveys", 2)
    src.sql("UPDATE surveys SET nps = 11 WHERE survey_id = :k", k=key)
    return _quarantined("surveys", key, "expect_column_values_to_be_between", "NPS answer outside 0-10 (nps=11)")


@case("non-numeric score")
def _(src: Source):
    key = src.key("surveys", 3)
    src.sql("UPDATE surveys SET csat = 'five' WHERE survey_id = :k", k=key)
    return _conversion("surveys", "csat", 1, f"survey_id {key} = 'five'", "is not a whole number")


@case("fractional CSAT")
def _(src: Source):
    key = src.key("surveys", 4)
    src.sql("UPDATE surveys SET csat = 4.5 WHERE survey_id = :k", k=key)
    return _conversion("surveys", "csat", 1, f"survey_id {key} = 4.5", "is not a whole number")


@case("yes/no column holding another word")
def _(src: Source):
    key = src.key("tickets", 3)
    src.sql("UPDATE tickets SET resolved = 'maybe' WHERE ticket_id = :k", k=key)
    return _conversion("tickets", "resolved", 1, f"ticket_id {key} = 'maybe'", "is not yes/no")


@case("missing surveys table")
def _(src: Source):
    src.sql("DROP TABLE surveys")
    return ExtractError(SourceDataError, r"^the source has no table 'surveys', which the canonical schema requires")


@case("NUL character in a text")
def _(src: Source):
    src.sql("UPDATE customers SET region = 'No' || char(0) || 'rth' WHERE customer_id = :k", k=src.key("customers", 4))
    # a customer's id never goes into a message (it is kept in audit.run_audit): the value is shown
    return _conversion("customers", "region", 1, "'No\\x00rth'", "NUL character")


@case("orphan customer id in orders")
def _(src: Source):
    _order(src, "ORPHAN1", "C9999999", "2024-11-20 10:00:00")
    return Stop((Failed("raw.orders.customer_id", "expect_column_values_to_reference_known_customers", 1,
                        ("ORPHAN1",)),))


@case("orphan customer id in tickets")
def _(src: Source):
    src.sql("INSERT INTO tickets (ticket_id, customer_id, opened_at, closed_at, category, severity, resolved) "
            "VALUES ('TORPHAN1', 'C9999999', '2024-11-20 10:00:00', NULL, 'inquiry', 'low', 0)")
    return Stop((Failed("raw.tickets.customer_id", "expect_column_values_to_reference_known_customers", 1,
                        ("TORPHAN1",)),))


@case("null customer id in tickets")
def _(src: Source):
    src.sql("INSERT INTO tickets (ticket_id, customer_id, opened_at, closed_at, category, severity, resolved) "
            "VALUES ('TNULL1', NULL, '2024-11-20 10:00:00', NULL, 'inquiry', 'low', 0)")
    return Stop((Failed("raw.tickets.customer_id", "expect_column_values_to_not_be_null", 1, ("TNULL1",)),))


@case("empty extract")
def _(src: Source):
    src.sql("DELETE FROM orders WHERE order_ts >= '2024-11-01'")
    return Stop((Failed("raw.orders", "expect_interval_not_empty", observed=(
        "0 rows in [2024-11-01 00:00, 2024-12-01 00:00) although the source table has rows")),))


@case("half-size extract")
def _(src: Source):
    period = src.in_period("orders").sort_values("order_id")
    dropped = period["order_id"].iloc[::2]
    for chunk in range(0, len(dropped), 200):
        ids = ", ".join(f"'{k}'" for k in dropped.iloc[chunk:chunk + 200])
        src.sql(f"DELETE FROM orders WHERE order_id IN ({ids})")  # noqa: S608 - ids generated by the test
    current, average = len(period) - len(dropped), _trailing_average(src.data.orders)
    return Stop((Failed("raw.orders", "expect_interval_volume_within_band", observed=(
        f"{current} rows in [2024-11-01, 2024-12-01) vs a trailing average of {average:.1f} over 3 period(s) "
        f"of 30 days: ratio {current / average:.2f}, band [0.7, 2.0]")),))


@case("ticket closed before opened")
def _(src: Source):
    ticket = src.row("tickets", 1)
    closed = (ticket["opened_at"] - timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S")
    src.sql("UPDATE tickets SET closed_at = :c WHERE ticket_id = :k", c=closed, k=ticket["ticket_id"])
    opened = ticket["opened_at"].strftime("%Y-%m-%d %H:%M:%S")
    return _quarantined("tickets", ticket["ticket_id"], "expect_column_pair_values_a_to_be_greater_than_b",
                        f"ticket closed before it was opened (closed_at={closed}, opened_at={opened})")


@case("unknown order status")
def _(src: Source):
    key = src.key("orders", 4)
    src.sql("UPDATE orders SET status = 'lost' WHERE order_id = :k", k=key)
    return _quarantined("orders", key, "expect_column_values_to_be_in_set",
                        "unknown order status (expected completed, cancelled or refunded) (status=lost)")


@case("unknown ticket category")
def _(src: Source):
    key = src.key("tickets", 2)
    src.sql("UPDATE tickets SET category = 'billing' WHERE ticket_id = :k", k=key)
    return _quarantined("tickets", key, "expect_column_values_to_be_in_set",
                        "unknown ticket category (expected complaint, inquiry or after-sales) (category=billing)")


@case("survey of an unknown customer")
def _(src: Source):
    src.sql("INSERT INTO surveys (survey_id, customer_id, responded_at, csat, nps) "
            "VALUES ('SORPHAN1', 'C9999999', '2024-11-20 10:00:00', 4, 8)")
    return _quarantined("surveys", "SORPHAN1", "expect_column_values_to_reference_known_customers",
                        "survey answered by a customer that is not in raw.customers (customer_id=C9999999)")


@case("non-UTF-8 text")
def _(src: Source):
    src.sql("UPDATE customers SET region = CAST(X'4E6F7264E9' AS TEXT) WHERE customer_id = :k",
            k=src.key("customers", 1))
    return _conversion("customers", "region", 1, "b'Nord\\xe9'", "text that is not UTF-8")


@case("very long text (accepted)")
def _(src: Source):
    key = src.key("customers", 2)
    src.sql("UPDATE customers SET industry = :v WHERE customer_id = :k", v="x" * 100_000, k=key)
    return Accept(lambda url: _equal(
        scalar(url, "SELECT LENGTH(industry) FROM raw.customers WHERE customer_id = :k", k=key), 100_000))


@case("customer with PII only and no orders (accepted)")
def _(src: Source):
    src.sql("INSERT INTO customers (customer_id, created_at, region, industry, channel, name, email, phone) "
            "VALUES ('CPII1', '2024-11-12 08:00:00', 'North', 'retail', 'online', 'Ada Lovelace', "
            "'ada@example.com', '+44-20-0000')")

    def check(url: str) -> None:
        assert scalar(url, "SELECT COUNT(*) FROM raw.customers WHERE customer_id = 'CPII1'") == 1
        assert {"name", "email", "phone"}.isdisjoint(_raw_columns(url, "customers"))
        assert scalar(url, "SELECT customer_key FROM ops.customer_keys WHERE customer_id = 'CPII1'") \
            == pseudonym("CPII1", pseudonym_key())
    return Accept(check)


@case("customer without an id")
def _(src: Source):
    src.sql("INSERT INTO customers (customer_id, created_at, region, industry, channel) "
            "VALUES (NULL, '2024-11-25 08:00:00', 'West', 'retail', 'online')")
    return Stop((Failed("raw.customers.customer_id", "expect_column_values_to_not_be_null", 1),))


@case("status of every order in the period written differently")
def _(src: Source):
    src.sql("UPDATE orders SET status = UPPER(status) WHERE order_ts >= '2024-11-01' AND order_ts < '2024-12-01'")
    orders = src.data.orders
    batch = orders[(orders["order_ts"] >= "2024-10-29") & (orders["order_ts"] < "2024-12-01")]  # look-back included
    period = len(src.in_period("orders"))
    return Stop((Failed("raw.orders", "expect_quarantined_share_at_most", keys=None, observed=(
        f"{period} of {len(batch)} row(s) of the batch ({period / len(batch):.1%}) failed row-level checks")),),
        findings=(f"- raw.orders.status: expect_column_values_to_be_in_set failed in {period} row(s)",))


@case("margin larger than the amount")
def _(src: Source):
    key = src.key("orders", 5, status="completed")
    src.sql("UPDATE orders SET amount = 100, margin = 150 WHERE order_id = :k", k=key)
    return _quarantined("orders", key, "expect_column_pair_values_a_to_be_greater_than_b",
                        "completed order whose margin is larger than its amount (amount=100.00, margin=150.00)")


@case("margin of minus 10^15")
def _(src: Source):
    key = src.key("orders", 6, status="completed")
    src.sql("UPDATE orders SET margin = -1e15 WHERE order_id = :k", k=key)
    return _quarantined("orders", key, "expect_column_values_to_be_between",
                        "margin beyond plus or minus 10,000,000 (margin=-1000000000000000.00)")


@case("loss larger than the amount (accepted)")
def _(src: Source):
    key = src.key("orders", 7, status="completed")
    src.sql("UPDATE orders SET amount = 20, margin = -35 WHERE order_id = :k", k=key)
    return Accept(lambda url: _equal(float(scalar(url, "SELECT margin FROM raw.orders WHERE order_id = :k", k=key)),
                                     -35.0))


@case("duplicate customer id")
def _(src: Source):
    customer = src.row("customers", 3)
    src.sql("INSERT INTO customers (customer_id, created_at, region, industry, channel) "
            "VALUES (:k, '2024-11-25 08:00:00', 'West', 'retail', 'online')", k=customer["customer_id"])
    hidden = pseudonym(customer["customer_id"], pseudonym_key())  # marts get pseudonyms, never source ids
    return Stop((Failed("raw.customers.customer_id", "expect_column_values_to_be_unique", 2, (hidden, hidden)),))


# --------------------------------------------------------------------------------------
# Helpers


def _equal(actual, expected) -> None:
    assert actual == expected, f"{actual!r} != {expected!r}"


def _raw_columns(url: str, table: str) -> set[str]:
    with open_engine(url) as engine, engine.connect() as conn:
        return set(read_frame(conn, f"SELECT * FROM raw.{table} LIMIT 0").columns)  # noqa: S608 - test constants


def _trailing_average(orders: pd.DataFrame) -> float:
    """Orders per 30-day period in the three periods before the case's, from the generated data."""
    end = WINDOW[0]
    counts = [((orders["order_ts"] >= end - timedelta(days=30 * (i + 1)))
               & (orders["order_ts"] < end - timedelta(days=30 * i))).sum() for i in range(3)]
    return sum(counts) / 3


PUBLISHED = (*MARTS_BY_PERIOD, "tier_history", "dim_customer")


# --------------------------------------------------------------------------------------
# Setup: one published earlier period per warehouse, copied for every case


@dataclass
class Base:
    kind: str
    folder: Path
    source: Path
    data: demo.DemoData
    url: str
    published: dict[str, str]
    clone: Callable[[str], str]


@pytest.fixture(scope="module", params=["duckdb", "postgresql"])
def base(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Base]:
    folder = tmp_path_factory.mktemp(f"catalogue-{request.param}")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("GRADING_HOME", str(folder / "home"))
        env.setenv("GRADING_DATA_DOCS_DIR", "off")  # Data Docs are tested in test_validate; here they cost time
        data = demo.generate(customers=CUSTOMERS, seed=SEED)
        source = folder / "source.sqlite"
        demo.write_source(data, f"sqlite:///{source}")
        databases: list[str] = []
        if request.param == "duckdb":
            url = f"duckdb:///{folder / 'base.duckdb'}"

            def clone(name: str) -> str:
                target = folder / f"{name}.duckdb"
                shutil.copy(folder / "base.duckdb", target)
                return f"duckdb:///{target}"
            admin = None
        else:
            from tests.conftest import _pg_admin_engine

            admin = _pg_admin_engine()
            prefix = f"grading_test_{uuid.uuid4().hex[:8]}"
            databases.append(f"{prefix}_base")
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{prefix}_base"'))
            url = admin.url.set(database=f"{prefix}_base").render_as_string(hide_password=False)

            def clone(name: str) -> str:
                databases.append(f"{prefix}_{name}")
                with admin.connect() as conn:
                    conn.execute(sa.text(f'CREATE DATABASE "{prefix}_{name}" TEMPLATE "{prefix}_base"'))
                return admin.url.set(database=f"{prefix}_{name}").render_as_string(hide_password=False)
        try:
            run_grading(Connections(source_url=f"sqlite:///{source}", warehouse_url=url), EARLIER, run_id="earlier")
            yield Base(request.param, folder, source, data, url, fingerprint(url, PUBLISHED), clone)
        finally:
            if admin is not None:
                with admin.connect() as conn:
                    for name in databases:
                        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                admin.dispose()


def run_case(base: Base, name: str, bad_input: Callable[[Source], object]):
    """Copy source and warehouse, apply the bad input, extract and validate the next period."""
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:40]
    source_path = base.folder / f"{slug}.sqlite"
    shutil.copy(base.source, source_path)
    src = Source(f"sqlite:///{source_path}", base.data)
    expected = bad_input(src)
    url = base.clone(slug)
    conns = Connections(source_url=src.url, warehouse_url=url)
    batch = datetime(2024, 12, 1, 1, 2, 3, 456789)
    try:
        with open_engine(src.url) as source, open_engine(url) as warehouse:
            extract(source, warehouse, datetime(2024, 12, 1), pseudonym_key(), batch=batch)
    except Exception as exc:  # the case asserts which exception
        return expected, url, exc, None
    try:
        summary = validate_stage(conns, AS_OF, f"case-{slug}", batch.isoformat())
    except ValidationFailed as exc:
        return expected, url, exc, None
    return expected, url, None, summary


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(base: Base, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADING_HOME", str(base.folder / "home"))
    monkeypatch.setenv("GRADING_DATA_DOCS_DIR", "off")
    expected, url, error, summary = run_case(base, name, CASES[name])
    batch = datetime(2024, 12, 1, 1, 2, 3, 456789)

    if isinstance(expected, ExtractError):
        assert isinstance(error, expected.error), repr(error)
        assert re.search(expected.pattern, str(error)), str(error)
    elif isinstance(expected, Stop):
        assert isinstance(error, ValidationFailed), repr(error)
        message = str(error)
        assert message.startswith(f"{len(expected.failed)} critical check(s) failed for as-of {AS_OF}; "
                                  "nothing was published"), message
        critical, _, findings = message.partition("\nRow-level findings in the same batch (to fix too):\n")
        bullets = [line for line in critical.splitlines() if line.startswith("- ")]
        assert len(bullets) == len(expected.failed), message
        for failed in expected.failed:
            assert any(b.startswith(failed.line()) and failed.observed_in(b) for b in bullets), (failed.line(), message)
        listed = [line for line in findings.splitlines() if line.startswith("- ")]
        assert all(any(line.startswith(finding) for line in listed) for finding in expected.findings), message
        # Nothing of the failed batch stays in raw, and the runs it reached are on record.
        for table in SOURCE_TABLES:
            assert scalar(url, f"SELECT COUNT(*) FROM raw.{table} WHERE extracted_at = :b", b=batch) == 0  # noqa: S608
        failed_batches = scalar(url, "SELECT COUNT(*) FROM ops.validation_batches WHERE status = 'failed'")
        assert failed_batches == len(SOURCE_TABLES)
        # Watermarks rewound to where the earlier validated period left them (or before): the next
        # run re-reads the removed rows from the source.
        assert pd.Timestamp(scalar(url, "SELECT MAX(extracted_through) FROM ops.extract_watermarks")) \
            <= pd.Timestamp(EARLIER)
        assert scalar(url, "SELECT COUNT(*) FROM audit.validation_results WHERE run_id LIKE 'case-%' "
                           "AND NOT success AND severity = 'critical'") == len(expected.failed)
    else:
        assert error is None, f"{type(error).__name__}: {error}"
        moved = {(r.source_table, r.row_key, r.expectation, r.reason) for r in _quarantine(url).itertuples()}
        if isinstance(expected, Quarantine):
            assert moved == expected.rows
            assert sum(summary["quarantined"].values()) == len(expected.rows)
            for table, key, _, _ in expected.rows:
                spec_key = {"orders": "order_id", "tickets": "ticket_id", "surveys": "survey_id"}[table]
                assert scalar(url, f"SELECT COUNT(*) FROM raw.{table} WHERE {spec_key} = :k", k=key) == 0  # noqa: S608
            assert summary["failed"] == len({(t, e) for t, _, e, _ in expected.rows})
        else:
            assert moved == set(), summary
            assert summary["failed"] == 0, summary
            expected.check(url)
    assert fingerprint(url, PUBLISHED) == base.published


def test_a_batch_rejected_by_a_sql_check_is_failed_in_data_docs(base: Base, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Data Docs tell the gate's story: an order of an unknown customer (a SQL check across tables) fails
    raw.orders' page and GX's stored result, and the index shows every table's batch as rejected."""
    docs = tmp_path / "docs"
    monkeypatch.setenv("GRADING_HOME", str(base.folder / "home"))
    monkeypatch.setenv("GRADING_DATA_DOCS_DIR", str(docs))
    _, _, error, _ = run_case(base, "orphan customer id in orders, data docs", CASES["orphan customer id in orders"])
    assert isinstance(error, ValidationFailed), repr(error)
    run = "case-orphan_customer_id_in_orders_data_docs"
    (page,) = (docs / "validations" / "raw_orders" / run).glob("*/*.html")
    text = re.sub(r"\s+", " ", page.read_text(encoding="utf-8"))
    assert re.search(r'Status:</span> <i class="fas fa-times text-danger" aria-hidden="true"></i> Failed', text)
    assert re.search(r"Data asset: raw\.orders: [\d,]+ rows, batch rejected<br>", text)
    (row,) = [r for r in text.split("<tr") if "Every customer_id names a customer of raw.customers." in r]
    assert "fa-times text-danger" in row
    assert "1 row(s) (e.g. ORPHAN1)" in row
    assert "https://" not in re.sub(r'<a href="https://[^"]*"', "", text)  # nothing fetched from the network
    (stored,) = (docs / "_results" / "raw_orders" / run).glob("*/*.json")
    result = json.loads(stored.read_text(encoding="utf-8"))
    assert result["success"] is False
    assert [r["expectation_config"]["type"] for r in result["results"] if not r["success"]] == [
        "expect_column_values_to_reference_known_customers"]
    index = (docs / "index.html").read_text(encoding="utf-8")
    assert index.count("batch rejected") == len(SOURCE_TABLES)
    assert index.count("&#10008; failed") == 1  # raw.orders; the other tables passed their checks


def _quarantine(url: str) -> pd.DataFrame:
    with open_engine(url) as engine, engine.connect() as conn:
        return read_frame(conn, "SELECT * FROM ops.quarantine")


def test_the_catalogue_covers_the_issue() -> None:
    """At least 30 cases, and every bad input the issue names."""
    named = ["missing column", "renamed column", "extra column", "wrong type", "unparseable date", "null key",
             "duplicate key", "duplicate delivery", "negative amount", "absurd amount", "zero-amount",
             "future timestamp", "before the customer was created", "time zones", "CSAT 0", "CSAT 6", "NPS 11",
             "non-numeric score", "orphan customer id in orders", "orphan customer id in tickets", "empty extract",
             "half-size extract", "closed before opened", "unknown order status", "non-UTF-8", "very long text",
             "PII only"]
    assert len(CASES) >= 30
    assert [n for n in named if not any(n in c for c in CASES)] == []
