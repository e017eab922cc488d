"""Quarterly review: the evaluation tables a quarterly effectiveness review reads.

For quarter Q the review compares the last published snapshot in Q with the last one in
Q-1 (the quarter's start). Each evaluation is one SQL file in include/sql/review/ whose
rows replace the quarter's rows of ``marts.review_<name>`` in one transaction, so a
quarter reviewed again (or four quarters backfilled) gives the same numbers. Evaluations
that compare with the previous quarter are left empty when Q-1 has no snapshot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from grading.uplift import scheme_checks, uplift_table
from grading.warehouse import bulk_insert, read_query_file

_QUARTER = re.compile(r"^(\d{4})Q([1-4])$")

# evaluation (SQL file in include/sql/review/ and table marts.review_<name>) -> needs Q-1
EVALUATIONS = {
    "tier_distribution": False,
    "pareto": False,
    "satisfaction": False,
    "fairness": False,
    "tier_migration": True,
    "retention": True,
    "winback": True,
    "elimination": True,
    "stability": True,
}
# A band holding this many times more (or fewer) customers than when its rules were set
# is worth a note in the review.
DRIFT_FACTOR = 1.5


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


class NoSnapshot(LookupError):
    """No graded period falls in the quarter under review."""


def snapshot_in(conn: Connection, quarter: Quarter) -> date | None:
    """The last published as-of date in (start, end] of the quarter: its state at the close."""
    value = conn.execute(sa.text(
        "SELECT MAX(as_of_date) FROM marts.customer_tier_snapshot WHERE as_of_date > :start AND as_of_date <= :end"
    ), {"start": quarter.start, "end": quarter.end}).scalar()
    return pd.Timestamp(value).date() if value is not None else None


def threshold_drift(conn: Connection, quarter: Quarter, snapshot: date) -> pd.DataFrame:
    """Each tier's share now against its share at the first snapshot graded by the same rule version."""
    shares = read_query_file(conn, "review/drift_shares", {"snapshot": snapshot})
    if shares.empty:
        return pd.DataFrame()
    shares["as_of_date"] = pd.to_datetime(shares["as_of_date"]).dt.date
    shares["share"] = shares["customers"] / shares.groupby("as_of_date")["customers"].transform("sum")
    pivot = shares.pivot_table(index="tier", columns="as_of_date", values="share", fill_value=0.0)
    set_as_of = pd.Timestamp(shares["set_as_of"].iloc[0]).date()
    then, now = pivot.get(set_as_of, 0.0), pivot.get(snapshot, 0.0)
    out = pd.DataFrame({"quarter": str(quarter), "tier": pivot.index, "rule_version": shares["rule_version"].iloc[0],
                        "set_as_of": set_as_of, "share_when_set": then, "share_now": now}).reset_index(drop=True)
    out["note"] = [_drift_note(t, a, b, set_as_of) for t, a, b in zip(out["tier"], then, now, strict=True)]
    return out


def _drift_note(tier: str, then: float, now: float, set_as_of: date) -> str:
    if then == 0 and now == 0:
        return "empty then and now"
    if then == 0:
        return f"{tier} was empty when the rules were set ({set_as_of}) and now holds {now:.1%}"
    ratio = now / then
    if ratio >= DRIFT_FACTOR or ratio <= 1 / DRIFT_FACTOR:
        direction = "more" if ratio > 1 else "fewer"
        return (f"{tier} now holds {now:.1%} of customers against {then:.1%} when the rules were set ({set_as_of}): "
                f"{ratio:.1f}x - {direction} than intended; review the threshold")
    return f"stable: {now:.1%} now, {then:.1%} when set ({set_as_of})"


def build_review(warehouse: Engine, quarter: Quarter) -> dict[str, pd.DataFrame]:
    """Replace the quarter's rows of every marts.review_* table; returns the evaluations by name."""
    with warehouse.begin() as conn:
        snapshot = snapshot_in(conn, quarter)
        if snapshot is None:
            raise NoSnapshot(
                f"no published tier snapshot with an as-of date in ({quarter.start}, {quarter.end}]: "
                f"run customer_grading for a date in that range before reviewing {quarter}")
        previous = snapshot_in(conn, quarter.previous)
        params = {"quarter": str(quarter), "quarter_start": quarter.start, "quarter_end": quarter.end,
                  "snapshot": snapshot, "previous_snapshot": previous}
        results: dict[str, pd.DataFrame] = {}
        for name, needs_previous in EVALUATIONS.items():
            frame = pd.DataFrame() if needs_previous and previous is None else \
                read_query_file(conn, f"review/{name}", params)
            results[name] = _store(conn, name, str(quarter), frame)
        results["drift"] = _store(conn, "drift", str(quarter), threshold_drift(conn, quarter, snapshot))
        base = read_query_file(conn, "review/uplift_base", params) if previous else pd.DataFrame()
        results["uplift"] = _store(conn, "uplift", str(quarter),
                                   uplift_table(base, str(quarter)) if len(base) else pd.DataFrame())
        graded = read_query_file(conn, "review/scheme_base", params) if previous else pd.DataFrame()
        results["scheme"] = _store(conn, "scheme", str(quarter),
                                   scheme_checks(graded, str(quarter)) if len(graded) else pd.DataFrame())
    results["_meta"] = pd.DataFrame([{"quarter": str(quarter), "snapshot": snapshot, "previous_snapshot": previous}])
    return results


def _store(conn: Connection, name: str, quarter: str, frame: pd.DataFrame) -> pd.DataFrame:
    table = f"marts.review_{name}"
    conn.execute(sa.text(f"DELETE FROM {table} WHERE quarter = :quarter"), {"quarter": quarter})  # noqa: S608
    if not frame.empty:
        bulk_insert(conn, table, frame)
    return frame


def tier_distribution(warehouse: Engine, quarter: Quarter) -> pd.DataFrame:
    """The tier distribution of the quarter (builds the whole review)."""
    return build_review(warehouse, quarter)["tier_distribution"]
