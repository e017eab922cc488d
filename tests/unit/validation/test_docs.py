"""Data Docs (grading.validation.docs): a page per table holding every check the gate made - GX
expectations merged over a batch's parts and the SQL checks alike - with its real outcome; pages
and index that need nothing from the network and show their tables in a headless Chromium; and a
validate stage whose log has a line per table and none of Great Expectations' chatter."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from grading import demo
from grading.contract import SOURCE_TABLES
from grading.frames import read_frame
from grading.pipeline import Connections, extract_stage, validate_stage
from grading.validation import load_suites
from grading.validation.docs import SCRIPT, STYLESHEET, offline, write_docs
from grading.warehouse import open_engine
from tests.unit.review.test_html import open_in_chromium

AS_OF = date(2025, 1, 1)
# A remote stylesheet, script or image, or a CSS url() from the network: what a page must not hold.
REMOTE = re.compile(r"""<(?:link|script|img)\b[^>]*\b(?:href|src)=["']?(?:https?:)?//|url\(\s*["']?(?:https?:)?//""",
                    re.IGNORECASE)


@dataclass(frozen=True)
class Site:
    docs: Path
    url: str
    summary: dict

    def page(self, suite: str) -> Path:
        """The table's validation page of the site's one run."""
        (page,) = (self.docs / "validations" / suite / "docs").glob("*/*.html")
        return page


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    """A first load validated on DuckDB with Data Docs, GX shown a sample of each batch: an unknown status (with
    markup in it) and a negative amount (GX, row-level) and an order placed days before its customer existed
    (SQL, row-level) are quarantined and the batch passes."""
    folder = tmp_path_factory.mktemp("data-docs")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("GRADING_HOME", str(folder / "home"))
        env.setenv("GRADING_DATA_DOCS_DIR", str(folder / "docs"))
        env.setenv("GRADING_VALIDATE_SAMPLE_ROWS", "50")  # GX sees 50 rows and the offending ones
        source_url = f"sqlite:///{folder / 'source.sqlite'}"
        data = demo.generate(customers=150, seed=9)
        demo.write_source(data, source_url)
        customers = data.customers.sort_values("customer_id")
        customer = customers[customers["created_at"] < pd.Timestamp("2024-06-01")].iloc[0]
        early = pd.Timestamp(customer["created_at"]) - timedelta(days=3)
        bad = pd.DataFrame({
            "order_id": ["ODD1", "BAD1", "EARLY1"], "customer_id": [customer["customer_id"]] * 3,
            "order_ts": [pd.Timestamp("2024-06-30 10:00"), pd.Timestamp("2024-06-30 11:00"), early],
            "status": ["<b>lost</b>", "completed", "completed"], "amount": [7.0, -5.0, 3.0],
            "margin": [0.0, -5.0, 0.0]})
        engine = sa.create_engine(source_url)
        with engine.begin() as conn:
            bad.to_sql("orders", conn, if_exists="append", index=False)
        engine.dispose()
        conns = Connections(source_url, f"duckdb:///{folder / 'w.duckdb'}")
        extracted = extract_stage(conns, AS_OF, "docs")
        summary = validate_stage(conns, AS_OF, "docs", extracted["batch"])
    return Site(folder / "docs", conns.warehouse_url, summary)


def _text(page: Path) -> str:
    return re.sub(r"\s+", " ", page.read_text(encoding="utf-8"))


def _row(text: str, needle: str) -> str:
    """The table row of a page holding ``needle`` (up to a table nested in it)."""
    (row,) = [r for r in text.split("<tr") if needle in r]
    return row


def _section(text: str, column: str) -> str:
    """The section of a validation page with the checks of ``column``."""
    return text.split(f'<h5 class="m-0" > {column} </h5>', 1)[1].split('<h5 class="m-0" >', 1)[0]


def test_every_page_needs_nothing_from_the_network(site: Site) -> None:
    pages = list(site.docs.rglob("*.html"))
    tables = len(SOURCE_TABLES)
    assert len(pages) == 1 + tables + tables  # the index, a validation page and a suite page per table
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert REMOTE.search(text) is None, (page, REMOTE.search(text))
        assert f"static/styles/{STYLESHEET}" in text, page
    for asset in (f"styles/{STYLESHEET}", f"scripts/{SCRIPT}", "images/logo-long.png"):
        assert (site.docs / "static" / asset).is_file(), asset
    # the logo GX takes from its web assets comes from the site's own copy
    orders = site.page("raw_orders").read_text(encoding="utf-8")
    assert re.search(r'<img[^>]*src="(\.\./){4}static/images/logo-long\.png"', orders)


def test_a_table_page_holds_every_check_with_its_real_outcome(site: Site) -> None:
    with open_engine(site.url) as engine, engine.connect() as conn:
        stored = read_frame(conn, "SELECT expectation, column_name, success FROM audit.validation_results "
                                  "WHERE suite = 'raw_orders'")
    suite = load_suites()["orders"]
    assert len(stored) == len(suite.expectations) + len(suite.checks)
    text = _text(site.page("raw_orders"))
    # the page's header: the table's checks failed (row-level ones), the batch passed with its rows quarantined
    assert re.search(r'Status:</span> <i class="fas fa-times text-danger" aria-hidden="true"></i> Failed', text)
    assert re.search(r"Data asset: raw\.orders: [\d,]+ rows, batch passed, 3 row\(s\) quarantined<br>", text)
    failed = int(stored["success"].eq(False).sum())
    assert re.search(rf"Evaluated Expectations</div></td><td [^>]*><div class=\"show-scrollbars\">{len(stored)}<", text)
    assert re.search(rf"Unsuccessful Expectations</div></td><td [^>]*><div class=\"show-scrollbars\">{failed}<", text)
    assert failed == 3
    # a SQL check across tables, failed, with what it found; one that passed
    early = _row(text, "order_ts is at most 24 hours before the customer's created_at. (SQL check, row-level")
    assert "fa-times text-danger" in early
    assert "1 row(s) (e.g. EARLY1)" in early
    known = _row(text, "Every customer_id names a customer of raw.customers. (SQL check, critical")
    assert "fa-check-circle text-success" in known
    assert "0 row(s)" in known
    bound = _row(text, "At most 5% of the batch fails row-level checks")
    assert "fa-check-circle" in bound
    assert "3 of " in bound
    # GX checks shown a sample: counts are the batch's, the offending values are sampled
    status = _section(text, "status")
    assert "fa-times text-danger" in status
    assert "1 unexpected values found" in status
    with open_engine(site.url) as engine, engine.connect() as conn:
        batch_rows = conn.execute(sa.text("SELECT rows_checked FROM ops.validation_batches "
                                          "WHERE source_table = 'orders'")).scalar_one()
    assert batch_rows > 50
    assert re.search(rf"% of {batch_rows} total rows", status)  # the batch's, not the sample's
    assert "<div class=\"show-scrollbars\">&lt;b&gt;lost&lt;/b&gt;</div>" in status  # a value from the data, escaped
    assert "<b>lost" not in text
    assert _section(text, "amount").count("fa-times text-danger") == 1
    assert "100% not null" in text
    assert "unknown" not in text
    # GX's stored result behind the page records the same outcomes as audit.validation_results
    (result,) = (site.docs / "_results" / "raw_orders" / "docs").glob("*/*.json")
    recorded = json.loads(result.read_text(encoding="utf-8"))
    assert recorded["success"] is False
    outcomes = sorted((r["expectation_config"]["type"], r["success"]) for r in recorded["results"])
    assert outcomes == sorted(zip(stored["expectation"], stored["success"].astype(bool), strict=True))


def test_the_index_lists_every_result_in_plain_html(site: Site) -> None:
    index = site.docs / "index.html"
    assert site.summary["data_docs"] == index.as_uri()
    text = _text(index)
    assert "<script" not in text  # its tables are HTML, not drawn by a script
    orders = _row(text, "raw.orders")
    assert "&#10008; failed" in orders
    assert "batch passed, 3 row(s) quarantined" in orders
    assert f'href="{site.page("raw_orders").relative_to(site.docs).as_posix()}"' in orders
    assert "&#10004; passed" in _row(text, "raw.customers")
    assert all(f'href="expectations/raw_{t}.html"' in text for t in ("customers", "orders", "tickets"))


def test_the_pages_show_their_tables_in_chromium(site: Site, tmp_path: Path) -> None:
    for page, shown, rows in ((site.docs / "index.html", "raw.interactions", 5),
                              (site.page("raw_orders"), "Every customer_id names a customer of raw.customers.", 17),
                              (site.docs / "expectations" / "raw_orders.html", "values must be unique", 0)):
        dom, console = open_in_chromium(page, tmp_path / f"{page.stem}.png", tmp_path / "profile")
        assert shown in dom, page
        assert dom.count("<tr") > rows, page
        assert console == [], (page, console)
        assert (tmp_path / f"{page.stem}.png").stat().st_size > 20_000


def test_offline_drops_remote_assets_and_links_the_site_copies_once(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    page = docs / "validations" / "raw_x" / "run" / "time" / "batch.html"
    page.parent.mkdir(parents=True)
    page.write_text(
        '<html><head><link rel="stylesheet" href="https://unpkg.com/bootstrap-table.min.css">\n'
        '<link rel="stylesheet" type="text/css" href="https://cdn.example/x.css"/>\n'
        '<style>.a { background: url(\'https://assets.example/dark.png\') 0 0; }</style>\n'
        '<script src="https://code.jquery.com/jquery-3.7.1.min.js"></script>\n'
        '<script>function showAllValidations() {}</script></head>\n'
        '<body><img class="x" src="https://assets.example/logo-long.png?d=1" alt="GX">'
        '<a href="https://greatexpectations.io">GX</a></body></html>', encoding="utf-8")
    offline(page, docs)
    text = page.read_text(encoding="utf-8")
    assert REMOTE.search(text) is None
    assert '<img class="x" src="../../../../static/images/logo-long.png" alt="GX">' in text
    assert text.count(f'href="../../../../static/styles/{STYLESHEET}"') == 1
    assert text.endswith(f'<script src="../../../../static/scripts/{SCRIPT}"></script>\n</body></html>')
    assert '<a href="https://greatexpectations.io">' in text  # a link to follow is not fetched
    offline(page, docs)
    assert page.read_text(encoding="utf-8") == text


def test_docs_that_cannot_be_written_are_logged_not_fatal(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a folder", encoding="utf-8")
    engine = sa.create_engine("sqlite://")
    with caplog.at_level(logging.WARNING, logger="grading.validate"):
        url = write_docs(engine, blocked / "docs", load_suites(), {}, [], run_id="r", batch=pd.Timestamp(
            "2025-01-01").to_pydatetime(), rows={}, verdicts={})
    assert url is None
    assert any(m.startswith(f"Great Expectations Data Docs were not written to {blocked / 'docs'}")
               for m in caplog.messages)
    assert write_docs(engine, None, {}, {}, [], run_id="r", batch=None, rows={}, verdicts={}) is None


def test_a_validation_run_logs_a_line_per_table_and_nothing_of_great_expectations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("GRADING_DATA_DOCS_DIR", str(tmp_path / "docs"))  # rendering the docs must be quiet too
    source_url = f"sqlite:///{tmp_path / 'source.sqlite'}"
    demo.write_source(demo.generate(customers=60, seed=3), source_url)
    conns = Connections(source_url, f"duckdb:///{tmp_path / 'w.duckdb'}")
    extracted = extract_stage(conns, AS_OF, "quiet")
    logging.getLogger("great_expectations").setLevel(logging.NOTSET)  # as in a fresh task process
    with caplog.at_level(logging.DEBUG):
        summary = validate_stage(conns, AS_OF, "quiet", extracted["batch"])
    assert [r for r in caplog.records if r.name.startswith("great_expectations") and r.levelno < logging.WARNING] \
        == []
    lines = [r.getMessage() for r in caplog.records if r.name == "grading.validate"]
    for table in SOURCE_TABLES:
        rows = extracted["rows"][table]
        assert re.fullmatch(rf"validate: raw\.{table} {rows:,} rows, \d+ checks, 0 failed -> passed",
                            next(m for m in lines if m.startswith(f"validate: raw.{table} "))), lines
    (verdict,) = [m for m in lines if m.startswith("validate: batch ")]
    assert re.fullmatch(rf"validate: batch {re.escape(extracted['batch'].replace('T', ' '))} passed: 0 row\(s\) "
                        rf"quarantined in ops.quarantine; {summary['checks']} checks, 0 failed, in [\d.]+s; results in "
                        rf"audit.validation_results; Data Docs: {re.escape(summary['data_docs'])}", verdict)


def test_importing_great_expectations_logs_nothing_below_warning() -> None:
    """Importing GX logs ~200 lines at INFO; in a fresh process, the runner's context logs none of them."""
    code = ("import logging, sys; logging.basicConfig(level=logging.DEBUG, stream=sys.stdout, format='%(levelname)s "
            "%(name)s %(message)s'); from grading.validation.gx import _gx_context; _gx_context(None); print('ready')")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[3] / "plugins"),
                                                        os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300, check=True)
    assert out.stdout.splitlines()[-1] == "ready"
    noisy = [line for line in out.stdout.splitlines() if re.match(r"(DEBUG|INFO) great_expectations", line)]
    assert noisy == []
