"""The quarterly review as one self-contained HTML page and CSVs: every section rendered (also
for a first quarter with nothing to compare), values from the data escaped, the files written,
and the real report opened in a headless Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from grading.review.html import basket_table, render, write
from grading.review.quarters import Quarter
from grading.review.tables import EVALUATIONS

# Every section of the report, in the order a reader meets them.
SECTIONS = ("summary", "distribution", "pareto", "migration", "retention", "satisfaction", "winback", "uplift",
            "scheme", "baskets", "elimination", "stability", "fairness", "drift")

Q4 = Quarter(2024, 4)


def first_quarter(region: str = "North") -> dict[str, pd.DataFrame]:
    """Results as build_review returns them for a quarter with no graded quarter before it: the
    evaluations that compare with the previous quarter are empty frames."""
    empty = pd.DataFrame()
    return {
        "tier_distribution": pd.DataFrame({
            "quarter": "2024Q4", "snapshot_as_of": date(2025, 1, 1), "tier": ["normal", "gold"], "tier_rank": [1, 2],
            "customers": [90, 10], "customer_share": [0.9, 0.1], "revenue": [1000.0, 3000.0],
            "revenue_share": [0.25, 0.75]}),
        "pareto": pd.DataFrame({"quarter": "2024Q4", "decile": [1, 2], "customers": [5, 5],
                                "revenue": [3000.0, 1000.0], "cumulative_revenue_share": [0.75, 1.0]}),
        "satisfaction": pd.DataFrame({
            "quarter": "2024Q4", "tier": ["normal", "gold"], "tier_rank": [1, 2], "customers": [90, 10],
            "survey_responses": [20, 5], "csat_mean": [3.5, 4.2], "nps_score": [-10.0, 20.0],
            "complaints": [4.0, 0.0], "complaints_per_customer": [4 / 90, 0.0]}),
        "fairness": pd.DataFrame({
            "quarter": "2024Q4", "dimension": ["region", "industry"], "group_value": [region, "retail"],
            "customers": [100, 100], "top_tier_share": [0.1, 0.1], "top_tier_low": [0.0552, 0.0552],
            "top_tier_high": [0.1744, 0.1744], "top_tier_expected": [0.2, 0.1], "elimination_rate": [0.0, 0.0],
            "elimination_low": [0.0, 0.0], "elimination_high": [0.037, 0.037],
            "elimination_expected": [0.0, 0.0], "top_tier_ratio": [0.5, 1.0], "elimination_ratio": [None, None],
            "disparity": ["look closer", "no clear difference"]}),
        "tier_migration": empty, "retention": empty, "winback": empty, "elimination": empty, "stability": empty,
        "drift": pd.DataFrame({"quarter": "2024Q4", "tier": ["gold"], "note": ["stable: 10.0% now, 9.0% when set"]}),
        "uplift": empty, "scheme": empty,
        "_meta": pd.DataFrame([{"quarter": "2024Q4", "snapshot": date(2025, 1, 1), "previous_snapshot": None}]),
    }


def test_a_first_quarter_renders_every_section_and_says_what_it_cannot_compare() -> None:
    page = render(Q4, first_quarter())
    for section in SECTIONS:
        assert f"<section id='{section}'>" in page, section
    assert "Tiers as of 2025-01-01 compared with no earlier snapshot; activity from 2024-10-01 to 2025-01-01" in page
    assert "No previous quarter was graded: nothing to compare with." in page
    assert page.count("<p class='empty'>No rows.</p>") == 6  # the six evaluations that need Q-1
    assert "<b>75.0%</b>gold share of revenue" in page
    assert "<td>10.0% (5.5%-17.4%)</td><td>20.0%</td><td>0.0% (0.0%-3.7%)</td><td>0.0%</td><td>look closer</td>" in page
    assert "id='chart-winback'" not in page
    assert "<section id='backtest'>" not in page


def test_warnings_head_the_report_and_pending_customers_are_in_the_summary() -> None:
    assert "id='warnings'" not in render(Q4, first_quarter())
    results = first_quarter()
    results["_warnings"] = pd.DataFrame({"warning": ["2024Q4 is not complete: <the latest period is as of 2024-12-01>",
                                                     "the published period 2024-11-01 is stale (its tiers ...)"]})
    results["_pending"] = pd.DataFrame({"list": ["elimination", "win_back", "core"], "pending": [2345, 0, 7]})
    page = render(Q4, results)
    assert page.index("id='warnings'") < page.index("<section id='summary'>")
    assert "<li>2024Q4 is not complete: &lt;the latest period is as of 2024-12-01&gt;</li>" in page
    assert "<li>the published period 2024-11-01 is stale (its tiers ...)</li>" in page
    assert "<b>2,345</b>elimination candidates pending confirmation" in page
    assert "<b>7</b>core customers pending confirmation" in page
    assert "win-back candidates pending" not in page  # none waiting: no figure


def test_values_from_the_data_are_escaped_not_markup() -> None:
    page = render(Q4, first_quarter(region="<img src=x onerror=alert(1)>"))
    assert "<img" not in page
    assert page.count("&lt;img src=x onerror=alert(1)&gt;") == 2  # the chart's label and the table cell


def test_write_puts_the_page_one_csv_per_evaluation_and_the_backtest_in_the_folder(tmp_path: Path) -> None:
    backtest = {
        "summary": pd.DataFrame({"tier": ["normal", "gold"], "customers_current": [90, 10],
                                 "customers_proposed": [80, 20], "revenue_current": [1000.0, 3000.0],
                                 "revenue_proposed": [700.0, 3300.0]}),
        "moves": pd.DataFrame({"current_tier": ["normal"], "proposed_tier": ["gold"], "customers": [10]}),
        "meta": pd.DataFrame([{"current": "tiers.yaml", "current_version": "1.2.0", "proposed": "draft.yaml",
                               "proposed_version": "2.0", "as_of": date(2025, 1, 1)}]),
    }
    results = first_quarter()
    page = write(tmp_path / "2024Q4", Q4, results, backtest)
    assert page == tmp_path / "2024Q4" / "review.html"
    assert {p.name for p in page.parent.iterdir()} == {
        "review.html", *(f"{name}.csv" for name in results if not name.startswith("_")),
        "backtest_summary.csv", "backtest_moves.csv"}
    assert set(EVALUATIONS) <= {p.stem for p in page.parent.glob("*.csv")}
    html = page.read_text(encoding="utf-8")
    assert "<section id='backtest'>" in html
    assert "draft.yaml (version 2.0) against tiers.yaml (version 1.2.0) on the features as of 2025-01-01" in html
    saved = pd.read_csv(page.parent / "tier_distribution.csv")
    assert saved["revenue_share"].tolist() == [0.25, 0.75]
    assert pd.read_csv(page.parent / "backtest_moves.csv").to_dict("records") == [
        {"current_tier": "normal", "proposed_tier": "gold", "customers": 10}]


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        message = "Chromium is not installed (Debian package 'chromium'); the report test needs it"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true: " + message)
        pytest.skip(message)
    return path


def open_in_chromium(page: Path, screenshot: Path, profile: Path) -> tuple[str, list[str]]:
    """Render ``page`` headless; returns the rendered DOM and the console messages Chromium logged."""
    flags = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
             f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--window-size=1280,2400"]
    shot = subprocess.run([*flags, f"--screenshot={screenshot}", page.as_uri()], capture_output=True, text=True,
                          timeout=120)
    dom = subprocess.run([*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    console = [line for line in (shot.stderr + dom.stderr).splitlines() if "CONSOLE" in line]
    return dom.stdout, console


def test_the_report_opens_in_chromium_with_every_section_and_chart(reviewed_warehouse, tmp_path: Path) -> None:
    _, url, tmp = reviewed_warehouse
    report = tmp / "reports" / "2025-01-01" / "review.html"
    dom, console = open_in_chromium(report, tmp_path / "review.png", tmp_path / "profile")
    for section in SECTIONS:
        assert f'<section id="{section}">' in dom, section
    for chart in ("chart-customers", "chart-revenue", "chart-pareto", "chart-retention", "chart-csat",
                  "chart-winback", "chart-scheme", "chart-elimination", "chart-fairness"):
        assert f'id="{chart}"' in dom, chart
    assert "<table" in dom
    assert "http" not in report.read_text().replace("http://www.w3.org/2000/svg", "")
    assert console == []
    assert (tmp_path / "review.png").stat().st_size > 20_000
    csvs = {p.stem for p in report.parent.glob("*.csv")}
    assert csvs == {*EVALUATIONS, "drift", "uplift", "scheme", "basket_rules"}


def test_the_console_check_does_catch_errors(tmp_path: Path) -> None:
    """The harness above must be able to fail: a page that logs an error is caught."""
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><script>console.error('boom'); undefinedCall();</script></body></html>")
    _, console = open_in_chromium(page, tmp_path / "broken.png", tmp_path / "profile")
    assert any("boom" in line for line in console)


def test_the_report_says_which_scorer_the_churn_judgement_chose_and_why() -> None:
    from grading.review.html import churn_table

    run = {"as_of_date": "2025-01-01", "model": "hist_gradient_boosting_v2", "auc": 0.740, "baseline_auc": 0.735,
           "precision_top_decile": 0.849, "baseline_precision_top_decile": 0.855, "lift_top_decile": 1.84,
           "baseline_lift_top_decile": 1.85, "brier": 0.208, "baseline_brier": 0.212, "calibration": "sigmoid",
           "scorer": "recency_rule", "reason": "its top decile holds fewer churners (0.849 against 0.855)",
           "note": "model trained for 2024-12-01"}
    page = churn_table(pd.DataFrame([run]))
    assert "<b>Scored with the recency rule</b>: its top decile holds fewer churners (0.849 against 0.855)" in page
    assert "model (hist_gradient_boosting_v2, sigmoid)" in page
    assert "0.855" in page
    assert "1.85" in page
    assert "Scored with the model" in churn_table(pd.DataFrame([run | {"scorer": "model", "reason": "it beats"}]))
    assert "No churn model" in churn_table(pd.DataFrame())
    untrained = churn_table(pd.DataFrame([run | {"auc": None, "note": "not enough history to train"}]))
    assert untrained == "<p>not enough history to train</p>"


def test_the_report_shows_the_potential_models_holdout_error_against_last_years_spend() -> None:
    run = {"as_of_date": pd.Timestamp("2025-01-01"), "model": "bgnbd_gamma_gamma_v1", "scorer": "model",
           "reason": "the model's holdout RMSE 13883.39 is below the baseline's 16223.63", "customers": 1690,
           "holdout_start": pd.Timestamp("2024-01-02"), "holdout_customers": 1094, "holdout_mae": 5511.3863,
           "holdout_rmse": 13883.3858, "holdout_relative_error": 0.1864, "baseline_mae": 5068.3286,
           "baseline_rmse": 16223.6301, "baseline_relative_error": -0.1319}
    page = render(Q4, first_quarter() | {"_potential_model": pd.DataFrame([run])})
    section = page[page.index("<section id='potential'>"):]
    section = section[:section.index("</section>")]
    assert ("<b>Scored with the model</b> (1,690 customers, as of 2025-01-01): the model&#x27;s holdout RMSE "
            "13883.39 is below the baseline&#x27;s 16223.63. Holdout year from 2024-01-02, 1,094 customers.") in section
    assert "<td>BG/NBD + Gamma-Gamma (bgnbd_gamma_gamma_v1)</td><td>5,511.39</td><td>13,883.39</td><td>18.6%</td>" \
        in section
    assert "<td>last year&#x27;s spend</td><td>5,068.33</td><td>16,223.63</td><td>-13.2%</td>" in section
    fallback = run | {"scorer": "last_year_spend", "reason": "less than two years of order history",
                      "holdout_mae": None, "holdout_rmse": None, "holdout_relative_error": None}
    page = render(Q4, first_quarter() | {"_potential_model": pd.DataFrame([fallback])})
    assert "<b>Scored with last year&#x27;s spend</b> (1,690 customers" in page
    assert "<td>BG/NBD + Gamma-Gamma (bgnbd_gamma_gamma_v1)</td><td>-</td><td>-</td><td>-</td>" in page
    assert "No customer potential was scored by this snapshot." in render(Q4, first_quarter())


def test_the_basket_section_shows_each_pairs_stronger_direction_top_tier_first() -> None:
    rules = pd.DataFrame({
        "tier": ["gold", "gold", "platinum", "platinum"], "antecedent": ["bread", "butter", "wine", "cheese"],
        "consequent": ["butter", "bread", "cheese", "wine"], "baskets": [20, 20, 10, 10], "pair_baskets": [8, 8, 6, 6],
        "support": [0.4, 0.4, 0.6, 0.6], "confidence": [8 / 12, 0.8, 6 / 7, 1.0], "lift": [4 / 3, 4 / 3, 1.43, 1.43],
        "rule_rank": [2, 1, 2, 1]})
    shown = basket_table(rules, ["normal", "gold", "platinum"])
    assert shown.index("cheese → wine") < shown.index("butter → bread")  # platinum first, stronger directions
    assert "wine → cheese" not in shown
    assert "<td>100.0%</td>" in shown  # cheese -> wine's confidence
    assert "No pair of items" in basket_table(pd.DataFrame(), ["normal"])
    assert "No pair of items" in render(Q4, first_quarter())  # a source without order lines
