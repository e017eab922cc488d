"""From grades to action, on real runs into each warehouse (DuckDB and PostgreSQL):

- every tier's entitlements are published with the period, and every customer's in the current view;
- a customer is on one action list per period, and no gold or platinum customer is an elimination
  candidate (the shipped rules name no higher tier); who was exempted, and why, is published;
- the CRM export of each period reaches the file target and a webhook that fails the first attempts,
  once per batch; exporting a period again sends the same content;
- a reviewer's approval carries to the next period while the facts hold, the queue holds one
  proposal per customer, and an approved elimination is handed to the CRM;
- the operator's lookup shows a customer's tier, entitlements and flags by source id.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from grading import demo
from grading.cli import main
from grading.frames import read_frame
from grading.pipeline import Connections, run_grading
from grading.warehouse import open_engine
from tests.conftest import CrmReceiver
from tests.helpers import ROOT, scalar

PERIODS = [date(2024, 7, 1), date(2024, 10, 1), date(2025, 1, 1)]


def frame(url: str, sql: str, **params) -> pd.DataFrame:
    with open_engine(url) as engine, engine.connect() as conn:
        return read_frame(conn, sql, params)


@pytest.fixture
def setup(warehouse_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
          crm_server: CrmReceiver) -> tuple[Connections, Path]:
    source_url = f"sqlite:///{tmp_path / 'source.sqlite'}"
    demo.write_source(demo.generate(customers=500, seed=42), source_url)
    monkeypatch.setenv("GRADING_EXPORT_DIR", str(tmp_path / "exports"))
    monkeypatch.setenv("AIRFLOW_CONN_GRADING_CRM", json.dumps({"conn_type": "http", "extra": {
        "url": crm_server.url, "attempts": 4, "backoff_seconds": 0.01, "batch_rows": 100}}))
    monkeypatch.setenv("AIRFLOW_CONN_GRADING_WAREHOUSE", warehouse_url)
    return Connections(source_url=source_url, warehouse_url=warehouse_url), tmp_path / "exports"


def test_grades_reach_the_crm_with_entitlements_one_action_each_and_a_review_that_closes(
        setup: tuple[Connections, Path], crm_server: CrmReceiver, capsys: pytest.CaptureFixture) -> None:
    conns, folder = setup
    url = conns.warehouse_url
    for as_of in PERIODS[:2]:
        run_grading(conns, as_of)

    # entitlements: one row per tier, and every current customer has theirs
    entitled = frame(url, "SELECT tier, service_level, response_time_hours FROM marts.service_entitlements "
                          "WHERE as_of_date = :d ORDER BY tier_rank", d=PERIODS[1])
    assert entitled.values.tolist() == [["normal", "standard_service", 48.0], ["gold", "gold_service", 8.0],
                                        ["platinum", "platinum_service", 2.0]]
    assert scalar(url, "SELECT COUNT(*) FROM marts.current_customer_service") == \
        scalar(url, "SELECT COUNT(*) FROM marts.current_customer_tier") > 0

    # the October proposals: one per customer; approve the first two
    proposed = frame(url, "SELECT customer_key, as_of_date FROM marts.elimination_status "
                          "WHERE review_status = 'proposed' ORDER BY customer_key")
    assert len(proposed) >= 2
    assert proposed["customer_key"].is_unique
    approved = proposed["customer_key"].head(2).tolist()
    for key in approved:
        assert main(["eliminations", "decide", "--customer-key", key, "--as-of", str(PERIODS[1]),
                     "--decision", "approved", "--reviewer", "alice"]) == 0

    run_grading(conns, PERIODS[2])
    status = frame(url, "SELECT customer_key, as_of_date, review_status, decided_as_of, status_reason "
                        "FROM marts.elimination_status ORDER BY customer_key, as_of_date")
    status["as_of_date"] = pd.to_datetime(status["as_of_date"]).dt.date
    open_queue = status[status["review_status"] == "proposed"]
    assert open_queue["customer_key"].is_unique  # one open proposal per customer, however many periods
    assert set(status["review_status"]) <= {"proposed", "approved", "rejected", "superseded", "expired"}
    january = status[(status["as_of_date"] == PERIODS[2]) & status["customer_key"].isin(approved)]
    carried = january[january["review_status"] == "approved"]
    for row in january.itertuples():  # carried while the facts hold, else proposed again saying why
        assert (row.review_status == "approved" and pd.Timestamp(row.decided_as_of).date() == PERIODS[1]) or \
            (row.review_status == "proposed" and "(" in row.status_reason), row

    # one action list per customer and period, and elimination lists the lowest tier only
    for as_of in PERIODS:
        listed = pd.concat([frame(url, f"SELECT customer_key FROM marts.{table} WHERE as_of_date = :d", d=as_of)  # noqa: S608 - constant names
                            for table in ("elimination_candidates", "winback_candidates", "core_customers")])
        assert listed["customer_key"].is_unique, as_of
    assert scalar(url, "SELECT COUNT(*) FROM marts.elimination_candidates AS e JOIN marts.customer_tier_snapshot "
                       "AS t ON t.customer_key = e.customer_key AND t.as_of_date = e.as_of_date "
                       "WHERE t.tier_rank > 1") == 0
    exempt = frame(url, "SELECT exemption, reason FROM marts.candidate_exemptions")
    assert not exempt.empty
    assert exempt["reason"].str.contains("; met ").all()

    # the CRM: every period to both targets; the webhook applied each change once
    log = frame(url, "SELECT target, as_of_date, baseline_as_of, rows_exported, checksum, status FROM ops.exports "
                     "ORDER BY as_of_date, target")
    assert log["status"].tolist() == ["success"] * 6
    assert log.groupby("as_of_date")["checksum"].nunique().tolist() == [1, 1, 1]  # the same bytes to both
    assert log["baseline_as_of"].isna().tolist() == [True, True, False, False, False, False]
    applied = pd.DataFrame(crm_server.rows())
    assert len(applied) == log.loc[log["target"] == "webhook", "rows_exported"].sum()
    assert any(status == 503 for _, status in crm_server.attempts)  # it was retried
    january_files = pd.read_csv(folder / str(PERIODS[2]) / "changes.csv", dtype=str)
    manifest = json.loads((folder / str(PERIODS[2]) / "manifest.json").read_text())
    assert manifest["rows"] == len(january_files) == int(log["rows_exported"].iloc[-1])
    handed = january_files[(january_files["change"] == "listed")
                           & january_files["list"].isin(["elimination", "nurture"])]
    # October was exported before anyone decided: January hands over exactly its approved eliminations
    to_act = frame(url, "SELECT customer_key, control_group FROM marts.elimination_status WHERE as_of_date = :d "
                        "AND review_status = 'approved' AND control_group IS NOT TRUE", d=PERIODS[2])
    assert set(handed["customer_key"]) == set(to_act["customer_key"])
    nurtured = set(to_act.loc[to_act["control_group"].notna(), "customer_key"])  # drawn for control: nurture
    assert set(handed.loc[handed["list"] == "nurture", "customer_key"]) == nurtured
    assert set(carried["customer_key"]) - set(to_act["customer_key"]) == set()  # no control group among them
    assert january_files["customer_id"].str.fullmatch(r"C\d{7}").all()  # source ids leave here, on purpose

    # exporting January again sends the same content, and the webhook applies nothing twice
    before = dict(crm_server.applied)
    assert main(["export", "--as-of", str(PERIODS[2])]) == 0
    printed = capsys.readouterr().out
    assert f"files: {len(january_files):,} change(s) for {PERIODS[2]} (since {PERIODS[1]})" in printed
    again = frame(url, "SELECT checksum FROM ops.exports WHERE as_of_date = :d AND target = 'files' "
                       "ORDER BY finished_at", d=PERIODS[2])["checksum"]
    assert again.nunique() == 1
    assert len(again) == 2
    assert crm_server.applied == before

    # the operator looks a customer up by source id
    customer_id = january_files["customer_id"].iloc[0]
    assert main(["lookup", customer_id]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith(f"customer {customer_id} (key ")
    assert "service:" in shown
    assert main(["lookup", "C9999999"]) == 1

    # every example of docs/bi.md runs on this warehouse; the questions of the articles have answers
    answers = bi_examples(url)
    assert len(answers) == 7
    for start in ("How many customers per tier", "Who moved between tiers", "Whom to call this week",
                  "What each tier is entitled to", "The elimination review queue"):
        (title,) = [t for t in answers if t.startswith(start)]
        assert not answers[title].empty, title
    shares = answers["How many customers per tier, and what share of revenue they bring"]
    assert abs(shares["customer_share"].astype(float).sum() - 1) < 1e-9
    assert abs(shares["revenue_share"].astype(float).sum() - 1) < 1e-9


def bi_examples(url: str) -> dict[str, pd.DataFrame]:
    """Each SQL block of docs/bi.md, by the title of its section, run on ``url``."""
    import re

    text = (ROOT / "docs" / "bi.md").read_text(encoding="utf-8")
    answers = {}
    for section in text.split("\n## ")[1:]:
        title = section.split("\n", 1)[0]
        for query in re.findall(r"```sql\n(.*?)```", section, flags=re.S):
            answers[title] = frame(url, query.strip().rstrip(";"))
    return answers
