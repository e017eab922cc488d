"""The annual review's page: every section of the year against the year before, an incomplete year
warned about at the top, values escaped, nothing fetched from the network; and the page a fourth
quarter's review writes beside its own, recorded in the run audit."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from grading.review.annual import build_annual
from grading.review.annual_html import render, write
from grading.warehouse import open_engine
from tests.unit.review.test_annual import seed


@pytest.fixture
def seeded(tmp_path: Path) -> str:
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    seed(url)
    return url


def test_the_page_shows_each_section_with_the_year_before_and_the_change(seeded: str, tmp_path: Path) -> None:
    with open_engine(seeded) as engine:
        results = build_annual(engine, 2024)
    page = write(tmp_path / "2024", 2024, results)
    assert page == tmp_path / "2024" / "annual.html"
    html = page.read_text(encoding="utf-8")
    for section in ("summary", "customers", "revenue", "retention", "migration", "winback", "uplift_win_back",
                    "elimination", "satisfaction"):
        assert f"<section id='{section}'>" in html, section
    assert "<th>tier</th><th>figure</th><th>2024</th><th>2023</th><th>change</th><th>change %</th>" in html
    assert "<tr><td>gold</td><td>revenue</td><td>1,200.00</td><td>300.00</td><td>+900.00</td><td>+300.0%</td></tr>" \
        in html
    assert ("<tr><td>gold</td><td>retention rate</td><td>50.0%</td><td>0.0%</td><td>+50.0 pts</td><td>-</td></tr>"
            in html)
    assert "<tr><td>(all)</td><td>candidates</td><td>10</td><td>-</td><td>-</td><td>-</td></tr>" in html
    assert "<b>5 (+1)</b>customers at the close" in html
    assert "<b>25.0% (+5.0 pts)</b>win-back return rate" in html
    assert "id='chart-annual-revenue'" in html
    assert html.index("id='warnings'") < html.index("<section id='summary'>")
    assert "2023 is incomplete: 2 of its 4 quarters reviewed (2023Q3, 2023Q4)" in html
    assert "Quarters reviewed: 2024Q1, 2024Q2, 2024Q3, 2024Q4; compared with 2023" in html
    assert "http" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "<script" not in html
    saved = pd.read_csv(tmp_path / "2024" / "annual.csv")
    assert len(saved) == len(results["annual"])


def test_values_from_the_data_are_escaped(seeded: str) -> None:
    with open_engine(seeded) as engine:
        results = build_annual(engine, 2024)
    results["annual"] = results["annual"].replace({"tier": {"gold": "<img src=x onerror=alert(1)>"}})
    results["_warnings"] = pd.DataFrame({"warning": ["<b>not bold</b>"]})
    html = render(2024, results)
    assert "<img" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<li>&lt;b&gt;not bold&lt;/b&gt;</li>" in html


def test_a_fourth_quarter_review_builds_the_year_beside_it(seeded: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from grading import pipeline
    from grading.review.quarters import Quarter
    from tests.unit.review.test_html import first_quarter

    monkeypatch.setattr(pipeline, "build_review", lambda warehouse, quarter: first_quarter())
    conns = pipeline.Connections("sqlite://", seeded)
    summary = pipeline.review_stage(conns, Quarter(2024, 4), "r4", tmp_path / "reviews" / "2024Q4")
    annual = summary["annual"]
    assert annual["report"] == str(tmp_path / "reviews" / "2024" / "annual.html")
    assert annual["quarters_reviewed"] == ["2024Q1", "2024Q2", "2024Q3", "2024Q4"]
    assert (tmp_path / "reviews" / "2024Q4" / "review.html").exists()
    assert "Customer grading annual review 2024" in Path(annual["report"]).read_text(encoding="utf-8")
    assert "annual" not in pipeline.review_stage(conns, Quarter(2024, 3), "r3", tmp_path / "q3")
    with open_engine(seeded) as engine, engine.connect() as conn:
        message, rows = conn.execute(sa.text("SELECT message, rows_out FROM audit.run_audit "
                                             "WHERE stage = 'review 2024'")).one()
        as_of = conn.execute(sa.text("SELECT as_of_date FROM audit.run_audit WHERE stage = 'review 2024'"))
        assert pd.Timestamp(as_of.scalar()).date() == date(2025, 1, 1)
    assert message.startswith(f"report: {annual['report']}; WARNING: 2023 is incomplete")
    assert rows == annual["rows"] > 0
