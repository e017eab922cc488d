"""The quarterly review: evaluation tables checked against pandas, backfill equals one-by-one,
backtests, and the HTML report opened in a real headless Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pytest

from grading import demo
from grading.frames import read_frame
from grading.keys import pseudonym
from grading.pipeline import Connections, prepare_warehouse, review_stage, run_grading
from grading.review.html import SECTIONS
from grading.review.quarters import Quarter, quarter_for_run
from grading.review.tables import EVALUATIONS, build_review
from grading.rules.pins import load_rules
from grading.settings import include_dir, pseudonym_key
from grading.warehouse import open_engine
from tests.helpers import normalised

PERIODS = [date(2024, 1, 1), date(2024, 4, 1), date(2024, 7, 1), date(2024, 10, 1), date(2025, 1, 1)]
QUARTERS = [Quarter(2024, n) for n in (1, 2, 3, 4)]


def test_which_quarter_a_run_reviews() -> None:
    assert quarter_for_run("2023Q2", [date(2025, 1, 1)], date(2025, 1, 1)) == Quarter(2023, 2)
    assert quarter_for_run(None, [date(2025, 1, 1)], None) == Quarter(2024, 4)      # a period closing 2024Q4
    assert quarter_for_run(None, [date(2025, 2, 1)], None) is None                 # mid-quarter: skip
    assert quarter_for_run(None, [], date(2024, 7, 1)) == Quarter(2024, 2)         # the schedule
    assert (Quarter(2024, 1).previous, Quarter(2024, 1).end) == (Quarter(2023, 4), date(2024, 4, 1))


def review_tables(url: str) -> dict[str, pd.DataFrame]:
    with open_engine(url) as engine, engine.connect() as conn:
        return {name: normalised(read_frame(conn, f"SELECT * FROM marts.review_{name}"))  # noqa: S608
                for name in [*EVALUATIONS, "drift", "uplift", "scheme"]}


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> tuple[demo.DemoData, str, Path]:
    """Five quarterly periods graded on the embedded warehouse, Q1-Q4 reviewed one by one as they close."""
    tmp = tmp_path_factory.mktemp("review")
    data = demo.generate(customers=800, seed=17)
    source_url, url = f"sqlite:///{tmp / 'source.sqlite'}", f"duckdb:///{tmp / 'w.duckdb'}"
    demo.write_source(data, source_url)
    conns = Connections(source_url=source_url, warehouse_url=url)
    for as_of in PERIODS:
        run_grading(conns, as_of)
        if as_of != PERIODS[0]:
            review_stage(conns, Quarter.closing_on(as_of), "one-by-one", tmp / "reports" / str(as_of))
    return data, url, tmp


def test_review_figures_match_pandas(graded) -> None:
    data, url, _ = graded
    keys = {pseudonym(c, pseudonym_key()): c for c in data.customers["customer_id"]}
    with open_engine(url) as engine, engine.connect() as conn:
        tiers = read_frame(conn, "SELECT as_of_date, customer_key, tier FROM marts.customer_tier_snapshot")
        features = read_frame(conn, "SELECT as_of_date, customer_key, orders_365d "
                                    "FROM marts.customer_features_snapshot")
        winback = read_frame(conn, "SELECT as_of_date, customer_key, churn_reason FROM marts.winback_candidates")
        review = {n: read_frame(conn, f"SELECT * FROM marts.review_{n} WHERE quarter = '2024Q4'")  # noqa: S608
                  for n in ("tier_distribution", "retention", "winback", "tier_migration")}
    for frame in (tiers, features, winback):
        frame["customer_id"] = frame["customer_key"].map(keys)
        frame["as_of_date"] = pd.to_datetime(frame["as_of_date"]).dt.date
    q4 = Quarter(2024, 4)
    orders = data.orders[(data.orders["status"] == "completed") & (data.orders["order_ts"] >= str(q4.start))
                         & (data.orders["order_ts"] < str(q4.end))]
    buyers = set(orders["customer_id"])

    now = tiers[tiers["as_of_date"] == date(2025, 1, 1)].set_index("customer_id")["tier"]
    revenue = orders.groupby("customer_id")["amount"].sum().reindex(now.index, fill_value=0).groupby(now).sum()
    dist = review["tier_distribution"].set_index("tier")
    assert dist["customers"].to_dict() == now.value_counts().to_dict()
    assert dist["revenue"].to_dict() == pytest.approx(revenue.to_dict(), abs=0.01)

    before = tiers[tiers["as_of_date"] == date(2024, 10, 1)].merge(
        features[features["as_of_date"] == date(2024, 10, 1)], on=["customer_id", "as_of_date", "customer_key"])
    active = before[before["orders_365d"] > 0]
    retained = active.assign(kept=active["customer_id"].isin(buyers)).groupby("tier")["kept"].agg(["size", "sum"])
    got = review["retention"].set_index("tier")
    assert got["active_customers"].to_dict() == retained["size"].to_dict()
    assert got["retained"].to_dict() == retained["sum"].to_dict()

    listed = winback[winback["as_of_date"] == date(2024, 10, 1)]
    returned = listed.assign(back=listed["customer_id"].isin(buyers)).groupby("churn_reason")["back"].agg(
        ["size", "sum"])
    got = review["winback"].set_index("churn_reason")
    assert got["candidates"].to_dict() == returned["size"].to_dict()
    assert got["returned"].to_dict() == returned["sum"].to_dict()

    moved = review["tier_migration"]
    assert moved["customers"].sum() == len(now)
    assert set(moved["movement"]) <= {"new", "upgrade", "downgrade", "same"}


def test_backfilling_four_quarters_equals_reviewing_them_one_by_one(graded) -> None:
    _, url, tmp = graded
    one_by_one = review_tables(url)
    with open_engine(url) as engine:
        prepare_warehouse(engine)
        for quarter in QUARTERS:
            build_review(engine, quarter)
    backfilled = review_tables(url)
    assert set(one_by_one["tier_distribution"]["quarter"]) == {str(q) for q in QUARTERS}
    for name, frame in one_by_one.items():
        assert backfilled[name].equals(frame), name


def test_backtest_compares_rules_without_publishing(graded) -> None:
    from grading import backtest

    _, url, _ = graded
    current, _ = load_rules()
    proposed, _ = load_rules(tier_file=include_dir() / "rules" / "examples" / "tiers_rfm_by_region.yaml",
                             proposal=True)
    with open_engine(url) as engine:
        before = review_tables(url)
        result = backtest.backtest(engine, date(2025, 1, 1), current, proposed)
        same = backtest.backtest(engine, date(2025, 1, 1), current, current)
    summary = result["summary"].set_index("tier")
    assert summary["customers_current"].sum() == summary["customers_proposed"].sum() == 800
    assert result["moves"]["customers"].sum() == len(result["movers"]) > 0
    assert result["movers"]["customer_key"].str.fullmatch(r"[0-9a-f]{32}").all()
    assert same["moves"].empty
    assert (same["summary"]["customers_current"] == same["summary"]["customers_proposed"]).all()
    assert all(review_tables(url)[n].equals(before[n]) for n in before)


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


def test_the_report_opens_in_chromium_with_every_section_and_chart(graded, tmp_path: Path) -> None:
    _, url, tmp = graded
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
    assert csvs == {*EVALUATIONS, "drift", "uplift", "scheme"}


def test_the_console_check_does_catch_errors(tmp_path: Path) -> None:
    """The harness above must be able to fail: a page that logs an error is caught."""
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><script>console.error('boom'); undefinedCall();</script></body></html>")
    _, console = open_in_chromium(page, tmp_path / "broken.png", tmp_path / "profile")
    assert any("boom" in line for line in console)


def test_scheme_checks_on_a_crafted_case() -> None:
    from grading.review.uplift import normalised_gini, scheme_checks

    base = pd.DataFrame({"customer_key": list("abcdef"), "tier": ["normal"] * 3 + ["gold"] * 2 + ["platinum"],
                         "tier_rank": [1, 1, 1, 2, 2, 3], "revenue": [0.0, 10.0, 20.0, 50.0, 70.0, 300.0]})
    checks = scheme_checks(base, "2024Q4").set_index("tier")
    assert checks["revenue_per_customer"].to_dict() == {"normal": 10.0, "gold": 60.0, "platinum": 300.0}
    assert checks.loc["platinum", "lift"] == pytest.approx(300 / (450 / 6))
    assert checks["monotonic"].all()
    assert normalised_gini(base["revenue"], base["revenue"]) == pytest.approx(1.0)
    assert 0.8 < checks["gini"].iloc[0] < 1.0  # the tiers order customers almost as well as the revenue
    shuffled = base.assign(tier_rank=[3, 2, 2, 1, 1, 1])
    assert normalised_gini(shuffled["tier_rank"], shuffled["revenue"]) < 0
    assert not scheme_checks(base.assign(revenue=[90.0, 90.0, 90.0, 1.0, 1.0, 1.0]), "q")["monotonic"].any()


class _Event:
    def __init__(self, as_of: str | None) -> None:
        self.extra = {"as_of": as_of} if as_of else {}


def test_a_review_request_resolves_quarter_and_proposed_file_from_the_run() -> None:
    from grading.review.quarters import NothingToReview, review_request
    from grading.settings import PROJECT_ROOT

    closing = {"published": [_Event("2025-01-01"), _Event(None)]}
    assert review_request({}, closing, None) == (Quarter(2024, 4), None)
    proposed = "include/rules/examples/tiers_weighted_score.yaml"
    assert review_request({"quarter": "2024q2", "proposed_tiers": proposed}, None, None) == (
        Quarter(2024, 2), PROJECT_ROOT / proposed)
    assert review_request({"proposed_tiers": "/abs/tiers.yaml"}, None, datetime(2025, 4, 1, tzinfo=UTC))[1] == \
        Path("/abs/tiers.yaml")
    with pytest.raises(NothingToReview, match="close no quarter"):
        review_request({}, {"published": [_Event("2025-01-15")]}, None)
