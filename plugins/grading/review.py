"""Quarterly review: evaluation tables for a quarter, built from the published snapshots."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from grading.warehouse import bulk_insert, read_query_file

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

    def __str__(self) -> str:
        return f"{self.year}Q{self.number}"


class NoSnapshot(LookupError):
    """No graded period falls in the quarter under review."""


def tier_distribution(warehouse: Engine, quarter: Quarter) -> pd.DataFrame:
    """Replace the quarter's rows of marts.review_tier_distribution and return them."""
    params = {"quarter": str(quarter), "quarter_start": quarter.start, "quarter_end": quarter.end}
    with warehouse.begin() as conn:
        table = read_query_file(conn, "review/tier_distribution", params)
        if table.empty:
            raise NoSnapshot(
                f"no published tier snapshot with an as-of date in ({quarter.start}, {quarter.end}]: "
                f"run customer_grading for a date in that range before reviewing {quarter}"
            )
        conn.execute(sa.text("DELETE FROM marts.review_tier_distribution WHERE quarter = :q"), {"q": str(quarter)})
        bulk_insert(conn, "marts.review_tier_distribution", table)
    return table
