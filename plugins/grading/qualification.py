"""Tier qualification: over which window a customer's spend counts, and when a tier is reviewed.

A tier rule file may set a ``qualification`` policy, as airline and hotel loyalty
programmes do:

- ``window``: the period whose completed orders qualify (``orders_window`` and
  ``monetary_window`` in the features): ``rolling`` (the last ``days`` days),
  ``calendar_year`` or ``calendar_quarter`` (the calendar period holding the day before
  the as-of date, so a run on 1 January judges the whole previous year), or
  ``anniversary`` (the year since the customer's latest start-date anniversary);
- ``review``: when a downgrade may take effect: ``every_period`` (any run), or only on a
  review date — ``calendar_quarter``, ``calendar_year`` or the customer's ``anniversary``
  — and then only once ``grace_days`` have passed since it. Upgrades take effect at once.

The dates are plain functions of the as-of date (and a customer's start date), so reruns
and backfills compute exactly the same windows and review dates.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd

WINDOWS = ("rolling", "calendar_year", "calendar_quarter", "anniversary")
REVIEWS = ("every_period", "calendar_quarter", "calendar_year", "anniversary")


@dataclass(frozen=True)
class Qualification:
    window: str = "rolling"
    days: int = 365  # rolling windows only
    review: str = "every_period"
    grace_days: int = 0

    def describe(self) -> str:
        """The policy in plain words, for the criteria document and tier reasons."""
        window = {
            "rolling": f"the last {self.days} days",
            "calendar_year": "the calendar year (to date)",
            "calendar_quarter": "the calendar quarter (to date)",
            "anniversary": "the year since the customer's latest start-date anniversary",
        }[self.window]
        review = "at any run" if self.review == "every_period" else \
            f"only at the {self.review.replace('_', ' ')} review date"
        grace = f" plus {self.grace_days} days' grace" if self.grace_days else ""
        return f"qualifying spend over {window}; downgrades {review}{grace}"

    def window_params(self, as_of: date) -> dict[str, object]:
        """The bound parameters of the feature query that place the qualification window."""
        last_day = as_of - timedelta(days=1)
        if self.window == "rolling":
            start = as_of - timedelta(days=self.days)
        elif self.window == "calendar_year":
            start = date(last_day.year, 1, 1)
        elif self.window == "calendar_quarter":
            start = date(last_day.year, 3 * ((last_day.month - 1) // 3) + 1, 1)
        else:  # anniversary: per customer, in SQL; no start lies more than a year and a day back
            start = as_of - timedelta(days=367)
        return {"window_kind": self.window, "window_start": start, "window_floor": start}

    def next_review(self, as_of: date, created: pd.Series) -> pd.Series:
        """Per customer, the first review date strictly after ``as_of`` (NaT: every period reviews).

        ``created`` holds the customers' start dates (only the anniversary review reads them).
        """
        if self.review == "every_period":
            return pd.Series(pd.NaT, index=created.index, dtype="datetime64[s]")
        if self.review == "calendar_year":
            return pd.Series(pd.Timestamp(as_of.year + 1, 1, 1), index=created.index, dtype="datetime64[s]")
        if self.review == "calendar_quarter":
            month = 3 * ((as_of.month - 1) // 3) + 4
            year = as_of.year + (month > 12)
            nxt = pd.Timestamp(year, (month - 1) % 12 + 1, 1)
            return pd.Series(nxt, index=created.index, dtype="datetime64[s]")
        return next_anniversary(as_of, created)


def anniversary_in(year: np.ndarray, start: pd.Series) -> pd.Series:
    """The anniversary of each ``start`` date in ``year`` (29 February falls on the 28th)."""
    start = pd.to_datetime(start)
    month, day = start.dt.month.to_numpy(), start.dt.day.to_numpy()
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    day = np.where((month == 2) & (day == 29) & ~leap, 28, day)
    return pd.Series(pd.to_datetime({"year": year, "month": month, "day": day}).to_numpy(),
                     index=start.index).astype("datetime64[s]")


def next_anniversary(as_of: date, start: pd.Series) -> pd.Series:
    """The first anniversary of each ``start`` date strictly after ``as_of``."""
    if start.empty:
        return pd.Series(dtype="datetime64[s]", index=start.index)
    this_year = anniversary_in(np.full(len(start), as_of.year), start)
    next_year = anniversary_in(np.full(len(start), as_of.year + 1), start)
    return this_year.where(this_year > pd.Timestamp(as_of), next_year)
