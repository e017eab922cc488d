"""The annual review as one self-contained HTML page and a CSV, for a manager's year-end meeting.

Each section is a table of the year beside the year before, with the change, so a reader sees at a
glance what grew and what shrank; the quarterly report's style, escaping and bar charts are reused
(grading.review.html), so both pages look alike, open offline and print cleanly. An incomplete year
says so at the top, before any figure is read.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from grading.review.html import _esc, _fmt, _section, _warnings, bar_chart, document, figures_block

SECTION_TITLES = {
    "customers": ("Customers at the year's close",
                  "Customers per tier at the last published period of the year, against the year before."),
    "revenue": ("Revenue and revenue share",
                "Completed-order revenue of the year's reviewed quarters, by the tier held at each quarter's close."),
    "retention": ("Retention over the year",
                  "Customers active at the year's start (an order in the year before), by the tier they held "
                  "then; retained if they ordered during the year."),
    "migration": ("Tier migration over the year",
                  "Tier at the year's start against its close, by the tier at the start: who moved up, who down; "
                  "new customers were graded only at the close."),
    "winback": ("Win-back", "Each quarter's win-back candidates (listed at its start) added up: how many ordered "
                            "again within the quarter and the revenue recovered."),
    "uplift": ("Did acting work? Treated against control",
               "The quarters' treated and held-out candidates pooled: return rates and their difference (uplift). "
               "The quarterly reports say whether each quarter's groups were large enough to tell."),
    "elimination": ("Elimination outcomes",
                    "Each quarter's elimination candidates added up (a customer listed in two quarters counts "
                    "twice): what they brought and how many improved; confirmed are the customers a reviewer "
                    "approved for elimination during the year, with their 365-day value then."),
    "satisfaction": ("Satisfaction", "The quarters' CSAT and NPS weighted by their answers; complaints per customer "
                                     "over the year."),
}
METRIC_LABELS = {
    "customers": "customers", "customer_share": "share of customers", "revenue": "revenue",
    "revenue_share": "share of revenue", "active_customers": "active at the start", "retained": "retained",
    "retention_rate": "retention rate", "compared": "graded at start and close", "upgraded": "moved up",
    "downgraded": "moved down", "upgraded_share": "share moved up", "downgraded_share": "share moved down",
    "new_customers": "new customers", "candidates": "candidates", "returned": "returned",
    "return_rate": "return rate", "revenue_recovered": "revenue recovered", "treated": "treated",
    "control": "control", "treated_rate": "treated return rate", "control_rate": "control return rate",
    "uplift": "uplift", "complaints": "complaints", "improved": "improved", "improved_share": "share improved",
    "confirmed": "confirmed for elimination", "confirmed_value_365d": "their 365-day value",
    "survey_responses": "survey answers", "csat_mean": "CSAT (1-5)", "nps_score": "NPS",
    "complaints_per_customer": "complaints per customer",
}


def _value(value: object, unit: str) -> str:
    if value is None or pd.isna(value):
        return "-"
    if unit == "share":
        return _fmt(float(value), "%")
    if unit in ("customers", "count") and float(value).is_integer():
        return _fmt(int(value))
    return _fmt(float(value))


def _change(value: object, unit: str) -> str:
    """A change with its sign; a share's change in points."""
    if value is None or pd.isna(value):
        return "-"
    if unit == "share":
        return f"{100 * float(value):+.1f} pts"
    sign = "+" if float(value) > 0 else ""
    return sign + _value(value, unit)


def _relative(value: object) -> str:
    return "-" if value is None or pd.isna(value) else f"{float(value):+.1%}"


def year_table(rows: pd.DataFrame, year: int) -> str:
    """The section's rows as a table: tier, figure, the year, the year before, the change."""
    if rows.empty:
        return "<p class='empty'>No rows.</p>"
    head = "".join(f"<th>{_esc(h)}</th>" for h in ("tier", "figure", year, year - 1, "change", "change %"))
    body = "".join(
        f"<tr><td>{_esc(r.tier)}</td><td>{_esc(METRIC_LABELS.get(r.metric, r.metric))}</td>"
        f"<td>{_esc(_value(r.value, r.unit))}</td><td>{_esc(_value(r.previous_year_value, r.unit))}</td>"
        f"<td>{_esc(_change(r.change, r.unit))}</td><td>{_esc(_relative(r.relative_change))}</td></tr>"
        for r in rows.itertuples())
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(annual: pd.DataFrame, section: str, metric: str, label: str) -> tuple[str, str] | None:
    row = annual[(annual["section"] == section) & (annual["metric"] == metric) & (annual["tier"] == "(all)")]
    if row.empty or pd.isna(row["value"].iloc[0]):
        return None
    r = row.iloc[0]
    change = "" if pd.isna(r["change"]) else f" ({_change(r['change'], r['unit'])})"
    return label, _value(r["value"], r["unit"]) + change


def render(year: int, results: dict[str, pd.DataFrame]) -> str:
    """The whole annual page as one HTML document."""
    annual, meta = results["annual"], results["_meta"].iloc[0]
    reviewed, previous = list(meta["quarters_reviewed"]), list(meta["previous_quarters_reviewed"])
    figures = [f for f in (
        _figure(annual, "customers", "customers", "customers at the close"),
        _figure(annual, "revenue", "revenue", "revenue"),
        _figure(annual, "retention", "retention_rate", "retention over the year"),
        _figure(annual, "migration", "upgraded", "moved up a tier"),
        _figure(annual, "winback", "return_rate", "win-back return rate"),
        _figure(annual, "elimination", "confirmed", "confirmed for elimination"),
        _figure(annual, "uplift_win_back", "uplift", "win-back uplift")) if f]
    sections = []
    for name in annual["section"].drop_duplicates():
        title, intro = SECTION_TITLES.get(name.split("_")[0] if name.startswith("uplift_") else name, (name, ""))
        if name.startswith("uplift_"):
            title = f"{title}: {name.removeprefix('uplift_').replace('_', '-')} list"
        rows = annual[annual["section"] == name]
        chart = ""
        if name == "revenue":
            shares = rows[(rows["metric"] == "revenue_share") & (rows["tier"] != "(all)")]
            chart = bar_chart(f"Share of revenue {year}", shares["tier"].tolist(), shares["value"].tolist(), "%",
                              "chart-annual-revenue")
        sections.append(_section(name, title, intro, chart, year_table(rows, year)))
    sub = (f"Quarters reviewed: {', '.join(reviewed) or 'none'}; compared with {year - 1} (quarters reviewed: "
           f"{', '.join(previous) or 'none'}). Tiers at the year's close as of {meta['end_snapshot'] or '-'}, at its "
           f"start as of {meta['start_snapshot'] or 'no earlier period'}. Each quarter's own report is in "
           "reviews/<quarter>/review.html.")
    body = [f"<h1>Customer grading annual review {year}</h1>", f"<p class='sub'>{_esc(sub)}</p>",
            _warnings(results.get("_warnings", pd.DataFrame(columns=["warning"]))),
            _section("summary", "Summary", "The year in a few figures, the change against the year before in brackets.",
                     figures_block(figures)),
            *sections]
    return document(f"Customer grading annual review {year}", body)


def write(folder: Path, year: int, results: dict[str, pd.DataFrame]) -> Path:
    """Write annual.html and annual.csv (the rows of marts.review_annual) into ``folder``; returns the page."""
    folder.mkdir(parents=True, exist_ok=True)
    results["annual"].to_csv(folder / "annual.csv", index=False)
    page = folder / "annual.html"
    page.write_text(render(year, results), encoding="utf-8")
    return page
