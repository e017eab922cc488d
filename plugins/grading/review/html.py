"""The quarterly review as a report a manager can read: one self-contained HTML page and CSVs.

Charts are inline SVG drawn here (no JavaScript, no network, no plotting library), so the
page opens offline on a laptop and prints cleanly. Every chart has a table beside it with
the same numbers, and every table is also written as CSV for spreadsheets.
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from grading.review.quarters import Quarter
from grading.review.tables import FAIRNESS

FAIRNESS_MIN_CUSTOMERS = FAIRNESS["min_customers"]
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f")
LIST_NAMES = {"elimination": "elimination candidates", "win_back": "win-back candidates", "core": "core customers"}
STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:64rem;margin:2rem auto;padding:0 1rem;
color:#222;line-height:1.4}
h1{margin-bottom:.2rem}.sub{color:#555;margin-top:0}
section{border-top:1px solid #ddd;padding-top:.5rem;margin-top:1.5rem;break-inside:avoid}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}th,td{border:1px solid #ccc;padding:.25rem .5rem;
text-align:right}th:first-child,td:first-child{text-align:left}th{background:#f3f3f3}
.figures{display:flex;gap:1rem;flex-wrap:wrap}.figure{border:1px solid #ddd;border-radius:.4rem;padding:.5rem 1rem}
.figure b{display:block;font-size:1.4rem}.warning{border:2px solid #c0392b;background:#fdecea;
padding:.5rem 1rem;border-radius:.4rem}.note{color:#8a4b00}.empty{color:#777;font-style:italic}
svg{max-width:100%;height:auto}@media print{body{margin:0;max-width:none}section{page-break-inside:avoid}}
"""


def _esc(value: object) -> str:
    return html.escape(str(value))


def _fmt(value: object, kind: str = "") -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "-"
    if kind == "%":
        return f"{float(value):.1%}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def bar_chart(title: str, labels: list[str], values: list[float], kind: str = "", chart_id: str = "") -> str:
    """Horizontal bars with their values written at the end: readable in print and by screen readers."""
    width, bar_height, gap, left = 640, 22, 8, 170
    height = len(labels) * (bar_height + gap) + 40
    top = max([abs(v) for v in values if pd.notna(v)] or [1]) or 1
    parts = [f"<svg class='chart' id='{_esc(chart_id)}' role='img' aria-label='{_esc(title)}' "
             f"viewBox='0 0 {width} {height}' xmlns='http://www.w3.org/2000/svg'><title>{_esc(title)}</title>",
             f"<text x='0' y='16' font-size='14' font-weight='bold'>{_esc(title)}</text>"]
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = 30 + i * (bar_height + gap)
        length = 0 if pd.isna(value) else (width - left - 110) * abs(value) / top
        parts.append(f"<text x='{left - 6}' y='{y + 16}' font-size='12' text-anchor='end'>{_esc(label)}</text>"
                     f"<rect x='{left}' y='{y}' width='{length:.1f}' height='{bar_height}' "
                     f"fill='{PALETTE[i % len(PALETTE)]}'/>"
                     f"<text x='{left + length + 6:.1f}' y='{y + 16}' font-size='12'>{_esc(_fmt(value, kind))}</text>")
    parts.append("</svg>")
    return "".join(parts)


def line_chart(title: str, xs: list[str], ys: list[float], chart_id: str = "") -> str:
    """A cumulative curve (the Pareto chart): shares from 0 to 100 % over ordered groups."""
    width, height, left, bottom = 640, 260, 50, 30
    plot_w, plot_h = width - left - 20, height - bottom - 40
    points = [(left + plot_w * (i + 1) / len(xs), 30 + plot_h * (1 - y)) for i, y in enumerate(ys)]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in [(left, 30 + plot_h), *points])
    parts = [f"<svg class='chart' id='{_esc(chart_id)}' role='img' aria-label='{_esc(title)}' "
             f"viewBox='0 0 {width} {height}' xmlns='http://www.w3.org/2000/svg'><title>{_esc(title)}</title>",
             f"<text x='0' y='16' font-size='14' font-weight='bold'>{_esc(title)}</text>",
             f"<line x1='{left}' y1='{30 + plot_h}' x2='{left + plot_w}' y2='{30 + plot_h}' stroke='#999'/>",
             f"<line x1='{left}' y1='30' x2='{left}' y2='{30 + plot_h}' stroke='#999'/>",
             f"<polyline fill='none' stroke='{PALETTE[0]}' stroke-width='2' points='{path}'/>"]
    for share in (0.5, 1.0):
        y = 30 + plot_h * (1 - share)
        parts.append(f"<text x='{left - 6}' y='{y + 4:.1f}' font-size='11' text-anchor='end'>{share:.0%}</text>")
    for (x, y), label, value in zip(points, xs, ys, strict=True):
        parts.append(f"<circle cx='{x:.1f}' cy='{y:.1f}' r='3' fill='{PALETTE[0]}'/>"
                     f"<text x='{x:.1f}' y='{30 + plot_h + 16}' font-size='11' "
                     f"text-anchor='middle'>{_esc(label)}</text>"
                     f"<text x='{x:.1f}' y='{y - 6:.1f}' font-size='10' text-anchor='middle'>{value:.0%}</text>")
    parts.append("</svg>")
    return "".join(parts)


def table(frame: pd.DataFrame, columns: dict[str, str], percent: tuple[str, ...] = ()) -> str:
    """An HTML table of ``frame`` with the given column headings; percentages as %."""
    if frame.empty:
        return "<p class='empty'>No rows.</p>"
    head = "".join(f"<th>{_esc(title)}</th>" for title in columns.values())
    rows = []
    for record in frame.to_dict("records"):
        cells = "".join(f"<td>{_esc(_fmt(record.get(c), '%' if c in percent else ''))}</td>" for c in columns)
        rows.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _interval(share: object, low: object, high: object) -> str:
    if low is None or pd.isna(low) or high is None or pd.isna(high):
        return _fmt(share, "%")
    return f"{_fmt(share, '%')} ({_fmt(low, '%')}-{_fmt(high, '%')})"


def fairness_table(frame: pd.DataFrame) -> str:
    """Each group's rates with their 95% intervals beside the rates expected at equal spend."""
    if frame.empty:
        return table(frame, {})
    rows = frame.to_dict("records")
    shown = frame.assign(
        top_tier=[_interval(r["top_tier_share"], r.get("top_tier_low"), r.get("top_tier_high")) for r in rows],
        elimination=[_interval(r["elimination_rate"], r.get("elimination_low"), r.get("elimination_high"))
                     for r in rows])
    return table(shown, {"dimension": "by", "group_value": "group", "customers": "customers",
                         "top_tier": "top tier (95% interval)", "top_tier_expected": "expected at equal spend",
                         "elimination": "elimination (95% interval)",
                         "elimination_expected": "expected at equal spend", "disparity": "disparity"},
                 ("top_tier_expected", "elimination_expected"))


def migration_matrix(frame: pd.DataFrame) -> str:
    """From-tier rows x to-tier columns, shaded by share of the row; upgrades above the diagonal."""
    if frame.empty:
        return "<p class='empty'>No previous quarter was graded: nothing to compare with.</p>"
    order_from = frame.sort_values("from_rank")["from_tier"].drop_duplicates().tolist()
    order_to = frame.sort_values("to_rank")["to_tier"].drop_duplicates().tolist()
    counts = frame.pivot_table(index="from_tier", columns="to_tier", values="customers", aggfunc="sum", fill_value=0)
    head = "".join(f"<th>to {_esc(t)}</th>" for t in order_to)
    rows = []
    for source in order_from:
        total = counts.loc[source].sum() or 1
        cells = ""
        for target in order_to:
            n = int(counts.loc[source].get(target, 0))
            alpha = 0.1 + 0.8 * n / total
            cells += f"<td style='background:rgba(78,121,167,{alpha:.2f})'>{n:,}</td>"
        rows.append(f"<tr><td>from {_esc(source)}</td>{cells}</tr>")
    moves = frame.groupby("movement")["customers"].sum()
    summary = ", ".join(f"{k}: {int(v):,}" for k, v in moves.items())
    return (f"<table class='matrix'><thead><tr><th></th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
            f"<p>{_esc(summary)}</p>")


def churn_table(runs: pd.DataFrame) -> str:
    """The model and the recency rule side by side on the holdout, and which of them scored, and why."""
    if runs.empty:
        return "<p class='empty'>No churn model was judged by this snapshot.</p>"
    run = runs.iloc[0]
    if pd.isna(run["auc"]):
        return f"<p>{_esc(str(run['note']))}</p>"

    def figure(value: object, digits: int = 3) -> str:  # as text: the table would round to two places
        return "" if pd.isna(value) else f"{float(value):.{digits}f}"

    rows = pd.DataFrame([
        {"scorer": f"model ({run['model']}, {run['calibration'] or 'uncalibrated'})", "auc": figure(run["auc"]),
         "precision": figure(run["precision_top_decile"]), "lift": figure(run["lift_top_decile"], 2),
         "brier": figure(run["brier"])},
        {"scorer": "recency rule", "auc": figure(run["baseline_auc"]),
         "precision": figure(run["baseline_precision_top_decile"]),
         "lift": figure(run["baseline_lift_top_decile"], 2), "brier": figure(run["baseline_brier"])}])
    used = "the model" if run["scorer"] == "model" else "the recency rule"
    verdict = f"<p><b>Scored with {_esc(used)}</b>: {_esc(str(run['reason'] or run['note']))}</p>"
    return verdict + table(rows, {"scorer": "scorer", "auc": "holdout AUC", "precision": "top-decile precision",
                                  "lift": "top-decile lift", "brier": "Brier score"})


def potential_table(runs: pd.DataFrame) -> str:
    """The potential model and last year's spend on the holdout year, and which of them scored, and why."""
    if runs.empty:
        return "<p class='empty'>No customer potential was scored by this snapshot.</p>"
    run = runs.iloc[0]
    rows = pd.DataFrame([
        {"scorer": f"BG/NBD + Gamma-Gamma ({run['model']})", "mae": run["holdout_mae"], "rmse": run["holdout_rmse"],
         "total": run["holdout_relative_error"]},
        {"scorer": "last year's spend", "mae": run["baseline_mae"], "rmse": run["baseline_rmse"],
         "total": run["baseline_relative_error"]}])
    used = "the model" if run["scorer"] == "model" else "last year's spend"
    as_of, start = (pd.Timestamp(run[c]).date() for c in ("as_of_date", "holdout_start"))
    return (f"<p><b>Scored with {_esc(used)}</b> ({int(run['customers']):,} customers, as of {as_of}): "
            f"{_esc(run['reason'])}. Holdout year from {start}, {int(run['holdout_customers']):,} customers.</p>"
            + table(rows, {"scorer": "scorer", "mae": "MAE", "rmse": "RMSE", "total": "error of the total"},
                    ("total",)))


def basket_table(rules: pd.DataFrame, tiers: list[str], shown: int = 5) -> str:
    """Each tier's best rules by lift (the top ``shown``), highest tier first; one direction of a pair only."""
    if rules.empty:
        return ("<p class='empty'>No pair of items reached the minimum support in any tier: the source has no "
                "order lines, or too few orders hold two items (see docs/review.md).</p>")
    pair = rules[["antecedent", "consequent"]].min(axis=1) + "\x00" + rules[["antecedent", "consequent"]].max(axis=1)
    rules = rules.assign(order=rules["tier"].map({t: -i for i, t in enumerate(tiers)}).fillna(0), pair=pair)
    one_way = rules.sort_values("confidence", ascending=False).drop_duplicates(["tier", "pair"])
    best = one_way.sort_values(["order", "rule_rank"]).groupby("tier", sort=False).head(shown)
    best = best.assign(rule=best["antecedent"] + " → " + best["consequent"])
    return table(best, {"tier": "tier", "rule": "bought together", "baskets": "baskets",
                        "pair_baskets": "with both", "support": "support", "confidence": "confidence",
                        "lift": "lift"}, ("support", "confidence"))


def _section(section_id: str, title: str, intro: str, *content: str) -> str:
    return f"<section id='{_esc(section_id)}'><h2>{_esc(title)}</h2><p>{_esc(intro)}</p>{''.join(content)}</section>"


def figures_block(figures: list[tuple[str, str]]) -> str:
    """Headline figures as boxes: (label, value) each."""
    return "<div class='figures'>" + "".join(f"<div class='figure'><b>{_esc(v)}</b>{_esc(k)}</div>"
                                             for k, v in figures) + "</div>"


def document(title: str, body: list[str]) -> str:
    """A self-contained page: the style inline, nothing fetched."""
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_esc(title)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n")


def render(quarter: Quarter, results: dict[str, pd.DataFrame], backtest: dict[str, pd.DataFrame] | None = None) -> str:
    """The whole report as one HTML document."""
    meta = results["_meta"].iloc[0]
    dist, pareto = results["tier_distribution"], results["pareto"]
    retention, sat = results["retention"], results["satisfaction"]
    winback, elimination = results["winback"], results["elimination"]
    stability, fairness, drift = results["stability"], results["fairness"], results["drift"]
    uplift = results.get("uplift", pd.DataFrame())
    scheme = results.get("scheme", pd.DataFrame())
    top = dist.sort_values("tier_rank").iloc[-1]
    figures = [("customers graded", f"{int(dist['customers'].sum()):,}"),
               ("revenue in the quarter", f"{dist['revenue'].sum():,.2f}"),
               (f"{top['tier']} share of revenue", f"{top['revenue_share']:.1%}"),
               ("top 10% of buyers bring", f"{pareto['cumulative_revenue_share'].iloc[0]:.1%}" if len(pareto) else "-")]
    if not winback.empty:
        figures.append(("win-back return rate", f"{winback['returned'].sum() / winback['candidates'].sum():.1%}"))
    if not stability.empty:
        figures.append(("customers changing tier", f"{stability['changed_share'].iloc[0]:.1%}"))
    previous = meta["previous_snapshot"]
    pending = results.get("_pending", pd.DataFrame(columns=["list", "pending"]))
    figures += [(f"{LIST_NAMES.get(name, name)} pending confirmation", f"{int(n):,}")
                for name, n in pending.itertuples(index=False) if n]
    body = [
        f"<h1>Customer grading review {quarter}</h1>",
        f"<p class='sub'>Tiers as of {meta['snapshot']} compared with {previous or 'no earlier snapshot'}; "
        f"activity from {quarter.start} to {quarter.end} (exclusive).</p>",
        _warnings(results.get("_warnings", pd.DataFrame(columns=["warning"]))),
        _section("summary", "Summary", "The quarter in a few figures; customers pending confirmation meet a "
                 "list's criteria but not yet for its confirmation periods, so they are not on the list yet.",
                 figures_block(figures)),
        _section("distribution", "Tier distribution and revenue share",
                 "Customers per tier at the quarter's close and the share of the quarter's revenue they brought.",
                 bar_chart("Share of customers", dist["tier"].tolist(), dist["customer_share"].tolist(), "%",
                           "chart-customers"),
                 bar_chart("Share of revenue", dist["tier"].tolist(), dist["revenue_share"].tolist(), "%",
                           "chart-revenue"),
                 table(dist, {"tier": "tier", "customers": "customers", "customer_share": "share",
                              "revenue": "revenue", "revenue_share": "revenue share"},
                       ("customer_share", "revenue_share"))),
        _section("pareto", "Revenue concentration (Pareto)",
                 "Buyers of the quarter in ten equal groups by revenue; cumulative share of revenue.",
                 line_chart("Cumulative share of revenue by buyer decile", [str(d) for d in pareto["decile"]],
                            pareto["cumulative_revenue_share"].tolist(), "chart-pareto") if len(pareto) else "",
                 table(pareto, {"decile": "decile", "customers": "buyers", "revenue": "revenue",
                                "cumulative_revenue_share": "cumulative share"}, ("cumulative_revenue_share",))),
        _section("migration", "Tier migration", "Tier at the previous quarter's close (rows) against now (columns).",
                 migration_matrix(results["tier_migration"])),
        _section("retention", "Retention and churn by tier",
                 "Customers active at the quarter's start (an order in the year before), by the tier they held; "
                 "retained if they ordered during the quarter.",
                 bar_chart("Retention rate", retention["tier"].tolist(), retention["retention_rate"].tolist(), "%",
                           "chart-retention") if len(retention) else "",
                 table(retention, {"tier": "tier", "active_customers": "active", "retained": "retained",
                                   "retention_rate": "retention", "churn_rate": "churn"},
                       ("retention_rate", "churn_rate"))),
        _section("satisfaction", "Satisfaction by tier", "Surveys answered and complaints opened during the quarter.",
                 bar_chart("Mean CSAT (1-5)", sat["tier"].tolist(), sat["csat_mean"].tolist(), "", "chart-csat"),
                 table(sat, {"tier": "tier", "customers": "customers", "survey_responses": "answers",
                             "csat_mean": "CSAT", "nps_score": "NPS", "complaints": "complaints",
                             "complaints_per_customer": "complaints per customer"})),
        _section("winback", "Win-back success", "Last quarter's win-back candidates by likely churn reason: how "
                 "many ordered again this quarter and the revenue recovered.",
                 bar_chart("Return rate by churn reason", winback["churn_reason"].tolist(),
                           winback["return_rate"].tolist(), "%", "chart-winback") if len(winback) else "",
                 table(winback, {"churn_reason": "churn reason", "candidates": "candidates", "returned": "returned",
                                 "return_rate": "return rate", "revenue_recovered": "revenue recovered"},
                       ("return_rate",))),
        _section("uplift", "Did acting work? Treated against control",
                 "A share of last quarter's win-back and nurture candidates was held out and left alone. Return rate "
                 "(an order this quarter) of the contacted (treated) against the held-out (control) customers, the "
                 "difference (uplift) and its 95% interval; read the verdict before the numbers. The minimum "
                 "detectable effect (MDE) is the smallest uplift these group sizes would find at 95% with 80% "
                 "power: a verdict of no significant difference means no effect of at least that size. The last "
                 "column says whether the control group was large enough for the target effect.",
                 table(uplift, {"list": "list", "segment_type": "by", "segment": "segment", "treated": "treated",
                                "control": "control", "treated_rate": "treated rate", "control_rate": "control rate",
                                "uplift": "uplift", "ci_low": "95% low", "ci_high": "95% high",
                                "min_detectable_effect": "MDE", "verdict": "verdict", "sizing": "control group"},
                       ("treated_rate", "control_rate", "uplift", "ci_low", "ci_high", "min_detectable_effect"))),
        _section("churn", "The churn model: used only when it earns it",
                 "The latest churn judgement at or before the snapshot, on a later holdout: the model against the "
                 "recency rule (the churn rate of each recency decile in training). The model scores the win-back "
                 "list only if its top decile holds more churners and its Brier score is no more than 0.005 worse; "
                 "otherwise the recency rule scores.",
                 churn_table(results.get("_churn_model", pd.DataFrame()))),
        _section("potential", "Customer potential: the next year's expected value",
                 "The latest customer-potential judgement at or before the snapshot: fitted on the history before "
                 "the last year, each customer's predicted spend in that year against what they spent, for the "
                 "model and for last year's spend. The model scores potential_365d only if its RMSE is lower.",
                 potential_table(results.get("_potential_model", pd.DataFrame()))),
        _section("scheme", "Does the tiering predict value?",
                 "Customers by the tier they held at the previous close and the revenue each brought this quarter. "
                 "Revenue per customer should rise with the tier; the normalised Gini says how well the tiers rank "
                 "customers by that revenue (1 = perfectly, 0 = no better than chance).",
                 (f"<p><b>{'Rises with every tier' if scheme['monotonic'].iloc[0] else 'Does NOT rise with every tier'}"
                  f"</b>; normalised Gini {_fmt(scheme['gini'].iloc[0])}.</p>" if len(scheme) else ""),
                 bar_chart("Revenue per customer next quarter", scheme["tier"].tolist(),
                           scheme["revenue_per_customer"].tolist(), "", "chart-scheme") if len(scheme) else "",
                 table(scheme, {"tier": "tier", "customers": "customers",
                                "revenue_per_customer": "revenue per customer", "lift": "lift"})),
        _section("baskets", "What each tier buys together",
                 "Pairs of items bought in the same completed order this quarter, per tier at the close: support is "
                 "the share of the tier's orders holding both, confidence the share of orders with the first item "
                 "that also hold the second (the pair's stronger direction; both are in marts.tier_basket_rules), lift "
                 "how many times more often they go together than by chance. Offers per tier start from these.",
                 basket_table(results.get("basket_rules", pd.DataFrame()),
                              dist.sort_values("tier_rank")["tier"].tolist())),
        _section("elimination", "Elimination outcomes", "Last quarter's elimination candidates by rule: what they "
                 "brought and cost this quarter, and how many no longer meet the criteria.",
                 bar_chart("Improved (no longer candidates)", elimination["rule_name"].tolist(),
                           elimination["improved"].tolist(), "", "chart-elimination") if len(elimination) else "",
                 table(elimination, {"rule_name": "rule", "candidates": "candidates", "revenue": "revenue",
                                     "tickets": "tickets", "complaints": "complaints",
                                     "still_candidates": "still candidates", "improved": "improved"})),
        _section("stability", "Rule stability", "Customers graded at both closes who changed tier, and who flipped "
                 "tier and back over the last three snapshots.",
                 table(stability, {"customers_compared": "compared", "changed": "changed",
                                   "changed_share": "share changed", "flapped": "flapped",
                                   "flapped_share": "share flapped"}, ("changed_share", "flapped_share"))),
        _section("fairness", "Distribution across regions and industries",
                 "Share of each group in the top tier and on the elimination list with its 95% interval, against "
                 "the share expected at equal spend: the rest of the customers' rate in each band of 365-day "
                 "value (10% wide), applied to the group's customers. Look closer when a group of at least "
                 f"{FAIRNESS_MIN_CUSTOMERS} customers differs from that at 95% (Cochran-Mantel-Haenszel across the "
                 "bands); about one comparison in twenty differs by chance alone.",
                 bar_chart("Top-tier share by region", fairness[fairness["dimension"] == "region"]["group_value"]
                           .tolist(), fairness[fairness["dimension"] == "region"]["top_tier_share"].tolist(), "%",
                           "chart-fairness"),
                 fairness_table(fairness)),
        _section("drift", "Threshold drift", "Each tier's share now against when the current rules were set.",
                 "<ul>" + "".join(f"<li class='note'>{_esc(n)}</li>" for n in drift.get("note", [])) + "</ul>"),
    ]
    if backtest:
        body.append(_backtest_section(backtest))
    return document(f"Customer grading review {quarter}", body)


def _warnings(frame: pd.DataFrame) -> str:
    """The review's warnings (an unfinished quarter, stale periods) at the top of the page."""
    if frame.empty:
        return ""
    items = "".join(f"<li>{_esc(w)}</li>" for w in frame["warning"])
    return (f"<div id='warnings' class='warning' role='alert'><b>Read with care: this review may be incomplete "
            f"or out of date.</b><ul>{items}</ul></div>")


def _backtest_section(result: dict[str, pd.DataFrame]) -> str:
    summary, moves = result["summary"], result["moves"]
    meta = result["meta"].iloc[0]
    return _section(
        "backtest", "What the proposed rules would have done",
        f"{meta['proposed']} (version {meta['proposed_version']}) against {meta['current']} (version "
        f"{meta['current_version']}) on the features as of {meta['as_of']}; nothing was published.",
        bar_chart("Customers per tier under the proposed rules", summary["tier"].tolist(),
                  summary["customers_proposed"].tolist(), "", "chart-backtest"),
        table(summary, {"tier": "tier", "customers_current": "customers now", "customers_proposed": "proposed",
                        "revenue_current": "revenue now", "revenue_proposed": "revenue proposed"}),
        table(moves, {"current_tier": "now", "proposed_tier": "proposed", "customers": "customers"}))


def write(folder: Path, quarter: Quarter, results: dict[str, pd.DataFrame],
          backtest: dict[str, pd.DataFrame] | None = None) -> Path:
    """Write review.html and one CSV per evaluation into ``folder``; returns the HTML path."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in results.items():
        if not name.startswith("_"):
            frame.to_csv(folder / f"{name}.csv", index=False)
    if backtest:
        for name in ("summary", "moves"):
            backtest[name].to_csv(folder / f"backtest_{name}.csv", index=False)
    page = folder / "review.html"
    page.write_text(render(quarter, results, backtest), encoding="utf-8")
    return page
