"""What the CLI prints of a period and of recent runs (grading.run_summary), read back from a DuckDB
warehouse: one row per run with its outcome (a retried stage counted, a failure's reason cut short),
filters of recent runs, the period summary, and the errors for a warehouse with nothing to show."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from grading.candidates import flag_candidates
from grading.frames import bulk_insert
from grading.rules.pins import load_rules
from grading.run_summary import NothingPublished, listed, print_run_summary, recent_runs, run_table
from grading.warehouse import migrate, open_engine

AS_OF = date(2025, 1, 1)
T0 = datetime(2025, 1, 2, 1, 0)


def audit_rows(run_id: str, as_of: date, start: datetime, stages: list[tuple[str, str, int | None, str | None]]
               ) -> list[dict]:
    """audit.run_audit rows of one run: (stage, status, rows_out, message), a minute each."""
    return [{"run_id": run_id, "as_of_date": as_of, "stage": stage, "status": status, "rows_out": rows,
             "started_at": start + timedelta(minutes=i), "finished_at": start + timedelta(minutes=i + 1),
             "rule_version": "1.2.0" if stage == "tiers" else None, "message": message}
            for i, (stage, status, rows, message) in enumerate(stages)]


def audit_frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows).astype({"rows_out": "Int64", "rule_version": "string", "message": "string"})


RUNS = [
    *audit_rows("retried", AS_OF, T0, [("extract", "success", 10, None), ("validate", "failed", None, "lock"),
                                       ("validate", "success", 40, None), ("tiers", "success", 4, None),
                                       ("publish", "success", 12, None)]),
    *audit_rows("broken", AS_OF, T0 + timedelta(hours=1),
                [("extract", "success", 10, None), ("validate", "failed", None, "ValueError: " + "x" * 200)]),
    *audit_rows("going", date(2024, 10, 1), T0 + timedelta(hours=2), [("extract", "success", 10, None)]),
]


def graded(**customers: dict) -> pd.DataFrame:
    """Customers as the lists see them: ordinary normal-tier customers, changed where given."""
    base = {"tenure_days": 400, "orders_365d": 10, "complaints_365d": 0, "recency_days": 10, "monetary_365d": 5000.0,
            "monetary_lifetime": 9000.0, "csat_mean_365d": 4.0, "tickets_365d": 1, "surveys_365d": 1,
            "open_tickets": 0, "refunds_365d": 0, "active_quarters_4": 2, "churn_propensity": 0.2, "tier": "normal",
            "tier_rank": 1, "tier_year_ago": "normal", "peak_tier_rank_recent": 1, "monetary_year_ago": 3000.0,
            "aov_change_year": 0.0, "is_protected": 0, "last_order_at": pd.Timestamp("2024-12-20")}
    frame = pd.DataFrame([{"customer_id": cid, **base, **values} for cid, values in customers.items()])
    return frame.astype({"tier_year_ago": "string"})


def test_each_run_is_one_row_with_its_outcome_newest_first() -> None:
    table = run_table(audit_frame(RUNS)).set_index("run_id")
    assert table.index.tolist() == ["going", "broken", "retried"]
    assert table["status"].to_dict() == {"going": "incomplete", "broken": "failed", "retried": "success"}
    retried = table.loc["retried"]
    assert (retried["retries"], retried["duration"], retried["published_rows"], retried["rules"],
            retried["last_stage"], retried["problem"]) == (1, "5m00s", 12, "1.2.0", "publish", "")
    assert table.loc["going", "published_rows"] == ""
    problem = table.loc["broken", "problem"]
    assert problem.startswith("validate: ValueError: xxx")
    assert len(problem) == 100
    assert problem.endswith("…")


def test_recent_runs_filter_by_date_and_failure(tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    with open_engine(url) as engine:
        engine.connect().close()  # the file exists, the audit table does not
    with pytest.raises(LookupError, match="no audit.run_audit yet"):
        recent_runs(url)
    with open_engine(url) as engine:
        migrate(engine)
        with engine.begin() as conn:
            bulk_insert(conn, "audit.run_audit", audit_frame(RUNS))
    assert recent_runs(url)["run_id"].tolist() == ["going", "broken", "retried"]
    assert recent_runs(url, as_of=AS_OF)["run_id"].tolist() == ["broken", "retried"]
    assert recent_runs(url, failed_only=True)["run_id"].tolist() == ["broken"]
    assert recent_runs(url, limit=1)["run_id"].tolist() == ["going"]


def test_the_period_summary_shows_the_latest_published_run_and_its_checks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRADING_DATA_DOCS_DIR", "off")
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    with pytest.raises(NothingPublished, match="holds no graded period yet"):
        print_run_summary(url, AS_OF)
    with open_engine(url) as engine:
        migrate(engine)
        with engine.begin() as conn:
            bulk_insert(conn, "audit.run_audit", audit_frame([r for r in RUNS if r["run_id"] != "retried"]))
    with pytest.raises(NothingPublished, match="no successful run has published as-of 2025-01-01"):
        print_run_summary(url, AS_OF)

    with open_engine(url) as engine, engine.begin() as conn:
        bulk_insert(conn, "audit.run_audit", audit_frame([r for r in RUNS if r["run_id"] == "retried"]))
        keys, spend = ["k1", "k2", "k3"], [20_000.0, 15_000.0, 100.0]
        bulk_insert(conn, "marts.customer_tier_snapshot", pd.DataFrame({
            "as_of_date": AS_OF, "customer_key": keys, "tier": ["gold", "gold", "normal"], "tier_rank": [2, 2, 1],
            "tier_rule": "r", "tier_reason": "why", "rule_version": "1.2.0"}))
        zeros = dict.fromkeys(("tenure_days", "orders_365d", "margin_365d", "refunds_365d", "orders_lifetime",
                               "monetary_lifetime", "tickets_365d", "complaints_365d", "surveys_365d", "r_score",
                               "f_score", "m_score"), 0)
        bulk_insert(conn, "marts.customer_features_snapshot", pd.DataFrame({
            "as_of_date": AS_OF, "customer_key": keys, "monetary_365d": spend, **zeros}))
        bulk_insert(conn, "audit.validation_results", pd.DataFrame({
            "run_id": "retried", "as_of_date": AS_OF, "suite": "orders", "expectation": ["positive", "unique"],
            "severity": ["row", "batch"], "success": [False, True], "unexpected_count": [3, 0],
            "validated_at": T0}))
        bulk_insert(conn, "marts.published_periods", pd.DataFrame({
            "as_of_date": [date(2024, 10, 1), AS_OF], "run_id": ["old", "retried"], "published_at": T0,
            "stale": [True, False], "stale_reason": ["its tiers carried on from 2024-07-01", None]}))
        bulk_insert(conn, "marts.review_tier_distribution", pd.DataFrame({
            "quarter": "2024Q4", "snapshot_as_of": AS_OF, "tier": ["normal", "gold"], "tier_rank": [1, 2],
            "customers": [1, 2], "customer_share": [1 / 3, 2 / 3], "revenue": [100.0, 35_000.0],
            "revenue_share": [0.003, 0.997]}))
        bulk_insert(conn, "audit.run_audit", audit_frame(audit_rows("review", AS_OF, T0, [(
            "review 2024Q4", "success", 2, "report: /r/review.html; WARNING: 2024Q4 is not complete: ...; "
            "WARNING: the published period 2024-10-01 is stale (...)")])))
        # a first period: two customers meet an elimination rule, which lists them after two periods in a row
        _, rules = load_rules()
        flags = flag_candidates(graded(a={"orders_365d": 1, "complaints_365d": 4},
                                       b={"orders_365d": 2, "complaints_365d": 3}, c={}), rules, AS_OF)
        assert flags["flag"].tolist() == ["elimination_pending", "elimination_pending"]
        flags.insert(0, "as_of_date", AS_OF)
        bulk_insert(conn, "staging.customer_flags", flags)
    capsys.readouterr()
    print_run_summary(url, AS_OF)
    out = capsys.readouterr().out
    assert out.startswith("Customer grading as of 2025-01-01 (run retried)\n")
    assert "    gold              2   365-day revenue        35,000.00\n" in out
    assert "    normal            1   365-day revenue           100.00\n" in out
    assert out.index("gold ") < out.index("normal ")  # highest tier first
    assert "validation: 2 checks (Great Expectations and SQL), 1 failed, 3 row(s) quarantined" in out
    assert "STALE: the published period 2024-10-01 no longer follows from the ones before it " \
           "(its tiers carried on from 2024-07-01)" in out
    assert "marts.customer_tier_snapshot              3 rows for 2025-01-01" in out
    assert "quarterly review 2024Q4 (marts.review_tier_distribution):\n" in out
    assert out.endswith("    WARNING: 2024Q4 is not complete: ...\n"
                        "    WARNING: the published period 2024-10-01 is stale (...)\n")
    assert "elimination candidates: 0 (2 pending confirmation)   win-back candidates: 0   core customers: 0" in out
    assert (listed(0, 2345), listed(12, None), listed(3, 0)) == ("0 (2,345 pending confirmation)", "12", "3")
