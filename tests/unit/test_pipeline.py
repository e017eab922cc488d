"""The stages of one as-of date (grading.pipeline) on small demo data and a DuckDB warehouse: what each
stage's summary says, one audit row per stage, each stage's one-line result (logged, and handed to a
progress callback), the same published tables from a rerun of the same as-of date, a failed stage
audited with its error (password masked, e-mail redacted), and rule files not yet in effect refused
before the warehouse is touched."""

from __future__ import annotations

import logging
import re
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa

from grading.frames import read_frame
from grading.pipeline import Connections, audited, run_grading, stage_result
from grading.rules.files import RuleError
from grading.rules.pins import load_rules
from grading.warehouse import migrate, open_engine
from tests.helpers import Source, fingerprint

AS_OF = date(2025, 1, 1)
STAGES = ["extract", "validate", "features", "churn", "tiers", "flags", "publish", "export"]


@pytest.fixture
def conns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Connections:
    """A 100-customer demo source and an empty DuckDB warehouse; no Data Docs."""
    monkeypatch.setenv("GRADING_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GRADING_DATA_DOCS_DIR", "off")
    source = Source.generated(tmp_path / "source.sqlite", customers=100, seed=5)
    return Connections(source_url=source.url, warehouse_url=f"duckdb:///{tmp_path / 'w.duckdb'}")


class Lines(logging.Handler):
    """The messages logged to the logger it is attached to (on that logger itself: reading an Airflow
    connection, as the export stage does, sets Airflow's logging up and replaces the root's handlers)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_a_grading_run_reports_every_stage_and_a_rerun_publishes_the_same_tables(conns: Connections) -> None:
    progress: list[str] = []
    logger, handler = logging.getLogger("grading.pipeline"), Lines()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        first = run_grading(conns, AS_OF, "first", progress=progress.append)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)

    # each stage's one-line result, as it ended: to the progress callback and to the stage's log
    assert [line.split(":")[0] for line in progress] == STAGES
    assert all(re.search(r" in \d+\.\d s$", line) for line in progress), progress
    assert progress[0].startswith("extract: 100 customers, ")
    assert progress[2].startswith("features: 100 customers in ")
    graded = ", ".join(f"{n} {tier}" for tier, n in first["tiers"]["tiers"].items())
    assert progress[4].startswith(f"tiers: 100 customers graded ({graded}), rules ")
    assert handler.lines == progress

    assert (first["run_id"], first["as_of"]) == ("first", "2025-01-01")
    assert first["extract"]["rows"]["customers"] == 100
    assert first["extract"]["rows"]["customer_keys_added"] == 100
    assert first["extract"]["rejected"] == {}
    assert first["validate"]["failed"] == 0
    assert first["validate"]["checks"] > 0
    assert first["features"] == {"customers": 100}
    assert sum(first["tiers"]["tiers"].values()) == 100
    assert first["tiers"]["rule_version"] == load_rules()[0].source.version
    assert set(first["flags"]) == {"elimination", "win_back", "core"}
    assert first["publish"]["customer_tier_snapshot"] == 100
    assert first["publish"]["winback_candidates"] == first["flags"]["win_back"]
    assert first["publish"]["stale_periods"] == []
    with open_engine(conns.warehouse_url) as engine, engine.connect() as conn:
        audit = read_frame(conn, "SELECT stage, status FROM audit.run_audit WHERE run_id = 'first' "
                                 "ORDER BY started_at")
    assert audit["stage"].tolist() == STAGES
    assert set(audit["status"]) == {"success"}
    published = fingerprint(conns.warehouse_url)

    second = run_grading(conns, AS_OF, "second")

    assert second["extract"]["rows"]["customer_keys_added"] == 0
    assert second["tiers"] == first["tiers"]
    assert second["publish"] == first["publish"]
    again = fingerprint(conns.warehouse_url)
    # every published table is as the first run left it; only the per-run logs gained the rerun's rows
    assert sorted(t for t in published if again[t] != published[t]) == ["run_rule_files", "validation_results"]
    assert len(published) > 20


def test_rule_files_not_yet_in_effect_stop_the_run_before_the_warehouse_is_touched(conns: Connections) -> None:
    with pytest.raises(RuleError, match=r"takes effect on 2010-01-01, after the as-of date 2009-12-01"):
        run_grading(conns, date(2009, 12, 1))
    assert not Path(conns.warehouse_url.removeprefix("duckdb:///")).exists()


def test_a_failed_stage_is_audited_with_its_error_and_raised(tmp_path: Path) -> None:
    with open_engine(f"duckdb:///{tmp_path / 'w.duckdb'}") as engine:
        migrate(engine)

        def stage() -> None:
            with audited(engine, "r1", AS_OF, "extract", "1.2.0") as audit:
                audit["rows_out"] = 5
                raise ConnectionError("postgresql://grader:secret@db/source refused; ask ops@example.com")

        with pytest.raises(ConnectionError, match="grader:secret@db"):  # the caller gets the error as it was
            stage()
        with engine.connect() as conn:
            row = conn.execute(sa.text("SELECT stage, status, rows_out, rule_version, message, "
                                       "finished_at >= started_at FROM audit.run_audit")).one()
    assert row == ("extract", "failed", 5, "1.2.0",
                   "ConnectionError: postgresql://grader:***@db/source refused; ask <e-mail>", True)


def test_the_churn_stage_line_says_what_scored_the_potential() -> None:
    churn = {"auc": None, "note": "not enough history to train"}
    scored = churn | {"potential_scorer": "model", "potential_customers": 1690, "potential_holdout_rmse": 13883.386,
                      "potential_baseline_rmse": 16223.63, "potential_reason": "its RMSE is lower"}
    assert stage_result("churn", scored, 0.1) == (
        "churn: not enough history to train; potential: 1,690 customers scored with BG/NBD + Gamma-Gamma, "
        "holdout RMSE 13883.39 against last year's spend 16223.63 in 0.1 s")
    fell_back = churn | {"potential_scorer": "last_year_spend", "potential_customers": 12,
                         "potential_holdout_rmse": None, "potential_reason": "less than two years of order history"}
    assert stage_result("churn", fell_back, 0.1) == (
        "churn: not enough history to train; potential: 12 customers scored with last year's spend, as less than "
        "two years of order history in 0.1 s")


def test_each_stage_result_is_one_line_of_rows_and_seconds() -> None:
    assert stage_result("extract", {"batch": "b", "rows": {"customers": 2000, "orders": 24512,
                                                           "customer_keys_added": 3},
                                    "rejected": {"orders": {"amount not a number": 2}},
                                    "suppressed": {"orders": 4}}, 3.21) == \
        ("extract: 2,000 customers, 24,512 orders; 2 rejected by the source mapping; 4 of erased customers skipped "
         "in 3.2 s")
    assert stage_result("validate", {"checks": 68, "failed": 1, "quarantined": {"orders": 3}, "data_docs": None},
                        5.0) == "validate: 68 checks, 1 failed, 3 rows quarantined in 5.0 s"
    assert stage_result("churn", {"auc": 0.78123, "baseline_auc": 0.7, "model_as_of": "2024-10-01", "note": None},
                        0.4) == \
        "churn: scored with the model as of 2024-10-01, holdout AUC 0.781 (baseline 0.700) in 0.4 s"
    fell_back = {"auc": 0.74, "beats_baseline": False, "model_as_of": "2024-10-01",
                 "note": "the recency rule scores, as its top decile holds more churners"}
    assert stage_result("churn", fell_back, 0.2) == ("churn: scored with the recency rule (model as of 2024-10-01): "
                                                     "the recency rule scores, as its top decile holds more churners "
                                                     "in 0.2 s")
    assert stage_result("churn", {"auc": None, "note": "not enough history to train"}, 0.1) == \
        "churn: not enough history to train in 0.1 s"
    assert stage_result("tiers", {"tiers": {"normal": 1700, "gold": 270, "platinum": 30}, "rule_version": "1.2.0"},
                        0.8) == \
        "tiers: 2,000 customers graded (1,700 normal, 270 gold, 30 platinum), rules 1.2.0 in 0.8 s"
    assert stage_result("flags", {"core": 5, "win_back": 4, "elimination": 0}, 0.3) == \
        "flags: 5 core, 4 win_back, 0 elimination candidates in 0.3 s"
    assert stage_result("publish", {"customer_tier_snapshot": 200, "winback_candidates": 4,
                                    "stale_periods": ["2025-04-01"]}, 1.0) == \
        ("publish: 204 rows in 2 tables (customer_tier_snapshot 200, winback_candidates 4); stale published "
         "periods: 2025-04-01 in 1.0 s")
    assert stage_result("export", {"targets": []}, 0.0) == "export: no export target configured in 0.0 s"
    assert stage_result("export", {"targets": [{"target": "files", "rows": 1209, "location": "/x/2025-01-01"}]},
                        1.0) == "export: files: 1,209 changes to /x/2025-01-01 in 1.0 s"
    assert stage_result("tiers", {"unexpected": 1}, 0.2) == "tiers: done in 0.2 s"  # never fails the stage
    assert stage_result("review", {"quarter": "2024Q4", "report": "/r/review.html"}, 2.0) == \
        "review: quarter 2024Q4, report /r/review.html in 2.0 s"
