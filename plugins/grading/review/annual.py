"""The annual review: a calendar year's quarterly evaluations added up and set beside the year before.

The elimination article evaluates the grading quarterly and annually: a year shows what a quarter
cannot (who stayed a customer all year, who moved tier from January to December) and irons out one
quarter's noise. The year is built from the quarterly evaluations already stored for its quarters
(``marts.review_*``), so its sums match the quarterly reports and cost one query; only the figures no
sum of quarters gives come from the snapshots at the year's start and end (include/sql/review/annual.sql).

It is published as one long table, ``marts.review_annual``: one row per year, section, metric and tier
with the year's value, the year before's and the change (absolute and relative), so a BI tool filters
on section and metric instead of learning one table per evaluation. A year is rebuilt atomically (its
rows deleted and inserted in one transaction) and gives the same rows when built again. A year with
fewer than four reviewed quarters is built, but marked incomplete (``complete`` false, the ``note``
and the page's warnings say which quarters are missing), never silently.
"""

from __future__ import annotations

from datetime import date

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from grading.frames import bulk_insert, read_query_file
from grading.review.tables import last_snapshot

TABLE = "marts.review_annual"
KEY = ["section", "metric", "tier"]
# Sections in the order a reader meets them (the table's rows and the page), each with its metrics in
# order; uplift stands for every uplift_<list> section.
METRICS = {
    "customers": ("customers", "customer_share"),
    "revenue": ("revenue", "revenue_share"),
    "retention": ("active_customers", "retained", "retention_rate"),
    "migration": ("compared", "upgraded", "downgraded", "upgraded_share", "downgraded_share", "new_customers"),
    "winback": ("candidates", "returned", "return_rate", "revenue_recovered"),
    "uplift": ("treated", "control", "treated_rate", "control_rate", "uplift"),
    "elimination": ("candidates", "revenue", "complaints", "improved", "improved_share", "confirmed",
                    "confirmed_value_365d"),
    "satisfaction": ("survey_responses", "csat_mean", "nps_score", "complaints", "complaints_per_customer"),
}
SECTIONS = tuple(METRICS)


class NothingReviewed(LookupError):
    """No quarter of the year was reviewed: there is nothing to add up."""


def reviewed_quarters(conn: Connection, year: int) -> list[str]:
    """The quarters of ``year`` with a stored quarterly review (every review writes its tier distribution)."""
    return list(conn.execute(sa.text(
        "SELECT DISTINCT quarter FROM marts.review_tier_distribution WHERE quarter BETWEEN :first AND :last "
        "ORDER BY quarter"), {"first": f"{year}Q1", "last": f"{year}Q4"}).scalars())


def year_end_snapshot(conn: Connection, year: int) -> date | None:
    """The last published as-of date in (1 January of ``year``, 1 January after it]: the year's close."""
    return last_snapshot(conn, date(year, 1, 1), date(year + 1, 1, 1))


def year_figures(conn: Connection, year: int, start_snapshot: date | None, end_snapshot: date | None) -> pd.DataFrame:
    """The long rows of include/sql/review/annual.sql for one year (section, metric, tier, tier_rank, unit,
    value), between the tiers at its start and at its end (the closes of the year before and of the year)."""
    return read_query_file(conn, "review/annual", {
        "first_quarter": f"{year}Q1", "last_quarter": f"{year}Q4",
        "year_start": date(year, 1, 1), "year_end": date(year + 1, 1, 1),
        "start_snapshot": start_snapshot, "end_snapshot": end_snapshot})


def compare(current: pd.DataFrame, previous: pd.DataFrame) -> pd.DataFrame:
    """The year's rows beside the year before's on (section, metric, tier), with the change.

    ``change`` is value - previous_year_value (points for shares); ``relative_change`` is that over the
    previous value's size, empty when the previous value is missing or 0. A row either year lacks (a
    tier that was not there) keeps an empty value on that side."""
    merged = current.merge(previous, on=KEY, how="outer", suffixes=("", "_previous"))
    merged["value"] = merged["value"].astype("float64")
    merged["previous_year_value"] = merged["value_previous"].astype("float64")
    merged["unit"] = merged["unit"].fillna(merged["unit_previous"])
    ranks = pd.concat([current, previous]).query("tier_rank > 0").groupby("tier")["tier_rank"].max()
    merged["tier_rank"] = merged["tier"].map(ranks).fillna(0).astype("int64")
    merged["change"] = merged["value"] - merged["previous_year_value"]
    base = merged["previous_year_value"].abs().where(merged["previous_year_value"] != 0)
    merged["relative_change"] = merged["change"] / base
    section = merged["section"].str.replace(r"^uplift_.*", "uplift", regex=True)
    merged = merged.assign(_section=section.map(SECTIONS.index),
                           _metric=[METRICS[s].index(m) for s, m in zip(section, merged["metric"], strict=True)],
                           _all=merged["tier"] == "(all)")
    merged = merged.sort_values(["_section", "section", "_all", "tier_rank", "tier", "_metric"], kind="stable")
    return merged[[*KEY, "tier_rank", "unit", "value", "previous_year_value", "change", "relative_change"]] \
        .reset_index(drop=True)


def annual_warnings(year: int, reviewed: list[str], previous_reviewed: list[str], end_snapshot: date | None,
                    start_snapshot: date | None) -> list[str]:
    """What makes the year's figures or their comparison incomplete, in words (empty when nothing)."""
    warnings = []
    missing = [f"{year}Q{n}" for n in range(1, 5) if f"{year}Q{n}" not in reviewed]
    if missing:
        warnings.append(f"{year} is incomplete: {len(reviewed)} of its 4 quarters reviewed ({', '.join(reviewed)}); "
                        f"{', '.join(missing)} not. Revenue, win-back, elimination, uplift and satisfaction add up "
                        f"the reviewed quarters only. Review the missing quarters (python -m grading review "
                        f"--quarter {missing[0]}) and build the year again (python -m grading review --year {year}).")
    if not previous_reviewed:
        warnings.append(f"no quarter of {year - 1} was reviewed: there is no previous year to compare with.")
    elif len(previous_reviewed) < 4:
        warnings.append(f"{year - 1} is incomplete: {len(previous_reviewed)} of its 4 quarters reviewed "
                        f"({', '.join(previous_reviewed)}); its sums are not like for like with {year}'s.")
    if end_snapshot is not None and end_snapshot < date(year + 1, 1, 1):
        warnings.append(f"the latest published period of {year} is as of {end_snapshot}, before the year's end: "
                        "customers and tiers at the year's end are those of that period.")
    if start_snapshot is None:
        warnings.append(f"no period of {year - 1} was published: retention and migration over {year} need the "
                        "tiers at the year's start and are left out.")
    return warnings


def _note(year: int, reviewed: list[str], previous_reviewed: list[str]) -> str:
    notes = []
    if len(reviewed) < 4:
        notes.append(f"incomplete: {len(reviewed)} of 4 quarters of {year} reviewed")
    if len(previous_reviewed) < 4:
        notes.append(f"{year - 1}: {len(previous_reviewed)} of 4 quarters reviewed")
    return "; ".join(notes)


def build_annual(warehouse: Engine, year: int) -> dict[str, pd.DataFrame]:
    """Replace ``year``'s rows of marts.review_annual in one transaction; returns them with the page's
    ``_meta`` (quarters reviewed, snapshots) and ``_warnings`` (:func:`annual_warnings`)."""
    with warehouse.begin() as conn:
        reviewed = reviewed_quarters(conn, year)
        if not reviewed:
            raise NothingReviewed(f"no quarter of {year} was reviewed: review its quarters first (python -m grading "
                                  f"review --quarter {year}Q4), then build the year")
        previous_reviewed = reviewed_quarters(conn, year - 1)
        end_snapshot, start_snapshot = year_end_snapshot(conn, year), year_end_snapshot(conn, year - 1)
        frame = compare(year_figures(conn, year, start_snapshot, end_snapshot),
                        year_figures(conn, year - 1, year_end_snapshot(conn, year - 2), start_snapshot))
        frame.insert(0, "year", year)
        frame = frame.assign(quarters_reviewed=",".join(reviewed),
                             previous_quarters_reviewed=",".join(previous_reviewed),
                             complete=len(reviewed) == 4, note=_note(year, reviewed, previous_reviewed))
        conn.execute(sa.text(f"DELETE FROM {TABLE} WHERE year = :year"), {"year": year})  # noqa: S608 - a constant
        bulk_insert(conn, TABLE, frame)
    warnings = annual_warnings(year, reviewed, previous_reviewed, end_snapshot, start_snapshot)
    meta = {"year": year, "quarters_reviewed": reviewed, "previous_quarters_reviewed": previous_reviewed,
            "end_snapshot": end_snapshot, "start_snapshot": start_snapshot, "complete": len(reviewed) == 4}
    return {"annual": frame, "_meta": pd.DataFrame([meta]), "_warnings": pd.DataFrame({"warning": warnings},
                                                                                      dtype="string")}
