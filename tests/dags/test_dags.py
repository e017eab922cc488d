"""DAG loader checks: every DAG file imports cleanly, ids are stable, and parsing does no real work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, load_dag

# Parse the DAG folder in a fresh interpreter whose warehouse would fail if touched, and
# report what parsing imported and created.
PARSE_SCRIPT = """
import json, sys
from airflow.dag_processing.dagbag import BundleDagBag
bag = BundleDagBag(dag_folder=sys.argv[1], bundle_path=sys.argv[1])
heavy = sorted(m for m in ("great_expectations", "grading.pipeline", "grading.warehouse", "sklearn", "duckdb")
               if m in sys.modules)
print(json.dumps({
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "dags": {d: [t.task_id for t in bag.dags[d].topological_sort()] for d in sorted(bag.dags)},
    "heavy_modules": heavy,
}))
"""


def parse_dags(tmp_path: Path) -> dict:
    env = os.environ.copy()
    env.update({
        "GRADING_HOME": str(tmp_path / "must-not-exist"),
        "AIRFLOW_CONN_GRADING_WAREHOUSE": "postgresql://nobody@127.0.0.1:1/nothing",
        "AIRFLOW_CONN_GRADING_SOURCE": "postgresql://nobody@127.0.0.1:1/nothing",
    })
    out = subprocess.run([sys.executable, "-c", PARSE_SCRIPT, str(ROOT / "dags")], env=env,
                         capture_output=True, text=True, check=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_dag_files_import_without_errors_or_cycles_and_do_no_work_at_parse_time(tmp_path: Path) -> None:
    parsed = parse_dags(tmp_path)
    assert parsed["errors"] == {}  # a cycle is an import error too
    assert set(parsed["dags"]) == {"customer_grading", "quarterly_review"}
    assert parsed["dags"]["customer_grading"] == ["extract", "validate", "features", "churn", "tiers", "flags",
                                                       "publish", "crm_export"]
    assert parsed["heavy_modules"] == []
    assert not (tmp_path / "must-not-exist").exists()


def test_customer_grading_uses_a_data_interval_timetable() -> None:
    """A cron string would give Airflow 3 zero-width intervals; the as-of date comes from the interval end."""
    import pendulum
    from airflow.serialization.encoders import coerce_to_core_timetable

    dag = load_dag("customer_grading")
    timetable = coerce_to_core_timetable(dag.timetable)
    for run_after in (pendulum.datetime(2025, 1, 1, tz="UTC"), pendulum.datetime(2025, 1, 15, 6, tz="UTC")):
        interval = timetable.infer_manual_data_interval(run_after=run_after)
        assert (interval.start, interval.end) == (pendulum.datetime(2024, 12, 1, tz="UTC"),
                                                  pendulum.datetime(2025, 1, 1, tz="UTC"))


@pytest.mark.parametrize("dag_id", ["customer_grading", "quarterly_review"])
def test_every_dag_follows_the_project_policy(dag_id: str) -> None:
    """Tags, an owner, a description for the UI, and on every task a retry, the warehouse pool and the alert."""
    dag = load_dag(dag_id)
    assert "grading" in dag.tags
    assert dag.doc_md
    assert dag.doc_md.strip().startswith(f"{dag_id}:")
    assert dag.max_active_runs == 1
    assert not dag.catchup
    for task in dag.tasks:
        assert task.owner == "grading", task.task_id
        assert task.retries >= 1, task.task_id
        assert task.pool == "grading_warehouse", task.task_id
        assert task.on_failure_callback, task.task_id


def test_dag_shared_code_is_not_parsed_as_a_dag_file() -> None:
    ignored = (ROOT / "dags" / ".airflowignore").read_text(encoding="utf-8").split()
    assert "common.py" in ignored
    shared = {path.name for path in (ROOT / "dags").glob("*.py")} - {"customer_grading.py", "quarterly_review.py"}
    assert shared == {"common.py"}
