"""Quarters: parsing 2024Q4, the quarter a period closes, which quarter a quarterly_review run reviews,
and what a review should warn about (a quarter its data does not cover, stale periods, customers
waiting for a list's confirmation)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from grading.candidates import pending_counts
from grading.frames import read_frame
from grading.settings import PROJECT_ROOT

_QUARTER = re.compile(r"^(\d{4})Q([1-4])$")


@dataclass(frozen=True)
class Quarter:
    year: int
    number: int

    @classmethod
    def parse(cls, text: str) -> Quarter:
        match = _QUARTER.match(text.strip().upper())
        if not match:
            raise ValueError(f"quarter must look like 2024Q4, got {text!r}")
        return cls(int(match.group(1)), int(match.group(2)))

    @classmethod
    def closing_on(cls, day: date) -> Quarter:
        """The quarter that ends just before ``day`` (e.g. 2025-01-01 closes 2024Q4)."""
        index = day.year * 4 + (day.month - 1) // 3 - 1
        return cls(index // 4, index % 4 + 1)

    @property
    def start(self) -> date:
        return date(self.year, 3 * self.number - 2, 1)

    @property
    def end(self) -> date:
        """The first day after the quarter."""
        return date(self.year + 1, 1, 1) if self.number == 4 else date(self.year, 3 * self.number + 1, 1)

    @property
    def previous(self) -> Quarter:
        return Quarter(self.year - 1, 4) if self.number == 1 else Quarter(self.year, self.number - 1)

    def __str__(self) -> str:
        return f"{self.year}Q{self.number}"


def quarter_for_run(explicit: str | None, published: list[date], interval_end: date | None) -> Quarter | None:
    """Which quarter a quarterly_review run reviews; None when there is nothing to review.

    An explicit quarter wins. A run triggered by customer_grading's published-period asset
    reviews the quarter that a published as-of date closes (the first day of a quarter) and
    nothing otherwise (a mid-quarter period closes no quarter). A scheduled run reviews the
    quarter that closes at its interval end.
    """
    if explicit:
        return Quarter.parse(explicit)
    if published:
        closing = [d for d in published if d.day == 1 and d.month in (1, 4, 7, 10)]
        return Quarter.closing_on(max(closing)) if closing else None
    return Quarter.closing_on(interval_end) if interval_end else None


class NothingToReview(LookupError):
    """A quarterly_review run triggered by a period that closes no quarter (the task skips)."""


def review_request(params: Mapping[str, Any], asset_events: Mapping[Any, Iterable[Any]] | None,
                   interval_end: datetime | None) -> tuple[Quarter, Path | None]:
    """The quarter a quarterly_review run reviews and the proposed tier file to backtest.

    ``asset_events`` are the run's triggering asset events: customer_grading's publish task puts
    the as-of date it published in each event's ``extra``. A relative ``proposed_tiers`` path is
    read from the project root.
    """
    published = [date.fromisoformat(event.extra["as_of"])
                 for events in (asset_events or {}).values() for event in events
                 if (event.extra or {}).get("as_of")]
    quarter = quarter_for_run(params.get("quarter"), published, interval_end.date() if interval_end else None)
    if quarter is None:
        raise NothingToReview(f"published periods {published} close no quarter: nothing to review")
    proposed = params.get("proposed_tiers")
    if not proposed:
        return quarter, None
    return quarter, Path(proposed) if Path(proposed).is_absolute() else PROJECT_ROOT / proposed


def _day(value: object) -> date | None:
    return None if value is None or pd.isna(value) else pd.Timestamp(value).date()


def completeness_warnings(quarter: Quarter, snapshot: date, last_order: date | None,
                          stale: list[tuple[date, str]]) -> list[str]:
    """What makes a review of ``quarter`` incomplete or out of date, in words (empty when nothing).

    ``snapshot`` is the published as-of date the review reads (its tiers hold the data before it),
    ``last_order`` the latest order date loaded in raw, ``stale`` the published periods up to the
    quarter's end that no longer follow from the ones before them (grading.periods)."""
    last_day = quarter.end - timedelta(days=1)
    warnings = []
    if snapshot < quarter.end:
        warnings.append(f"{quarter} is not complete: the latest published period is as of {snapshot}, before the "
                        f"quarter's end ({quarter.end}); tiers and lists miss {snapshot} to {last_day}. Publish "
                        f"{quarter.end} and review {quarter} again.")
    if last_order is None or last_order < last_day:
        reach = f"reach {last_order} only" if last_order else "are none"
        warnings.append(f"the orders loaded {reach}, the quarter ends on {last_day}: its revenue, retention and "
                        "win-back figures are incomplete. Extract the rest of the quarter and review it again.")
    for day, reason in stale:
        warnings.append(f"the published period {day} is stale ({reason}): regrade the stale periods in date order "
                        "and review the quarter again")
    return warnings


def review_checks(conn: Connection, quarter: Quarter, snapshot: date) -> dict[str, pd.DataFrame]:
    """What the report shows above its evaluations: ``_warnings`` (one ``warning`` per row, see
    :func:`completeness_warnings`) and ``_pending``: per list, the customers of the snapshot who
    meet its criteria and wait for its confirmation periods (not on the published list yet)."""
    last_order = _day(conn.execute(sa.text("SELECT MAX(order_ts) FROM raw.orders WHERE order_ts < :end"),
                                   {"end": datetime.combine(quarter.end, datetime.min.time())}).scalar())
    stale = read_frame(conn, "SELECT as_of_date, stale_reason FROM marts.published_periods WHERE stale "
                             "AND as_of_date <= :end ORDER BY as_of_date", {"end": quarter.end})
    warnings = completeness_warnings(quarter, snapshot, last_order,
                                     [(_day(d), str(r)) for d, r in stale.itertuples(index=False)])
    pending = pending_counts(conn, snapshot)
    return {"_warnings": pd.DataFrame({"warning": warnings}, dtype="string"),
            "_pending": pd.DataFrame({"list": list(pending), "pending": list(pending.values())})}
