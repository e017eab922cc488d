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
from grading.pipeline import Connections, audited, run_grading
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


