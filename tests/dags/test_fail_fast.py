"""Failing fast: a data error fails its task at once, a transient error retries.

Real ``customer_grading`` runs (``dag.test()``) with retries shortened to seconds. A source
without the canonical tables is a data error (grading.errors.DataError): the next try would
read the same source, so the task fails on its first try with AirflowFailException and no
retry is spent. An unreachable server is transient: the task retries. (The alert both send is
tested in tests/dags/test_operations.py.)
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from tests.helpers import free_port, load_dag, scalar

AS_OF = date(2025, 1, 1)


def _run(grading_home: Path, monkeypatch: pytest.MonkeyPatch, source_url: str) -> tuple[str, str]:
    """Run customer_grading with extract allowed two quick retries; (run state, warehouse URL)."""
    warehouse_url = f"duckdb:///{grading_home / 'warehouse.duckdb'}"
    monkeypatch.setenv("AIRFLOW_CONN_GRADING_SOURCE", source_url)
    monkeypatch.setenv("AIRFLOW_CONN_GRADING_WAREHOUSE", warehouse_url)
    monkeypatch.delenv("AIRFLOW_CONN_GRADING_ALERTS", raising=False)
    dag = load_dag("customer_grading")
    extract = dag.task_dict["extract"]
    extract.retries, extract.retry_delay = 2, timedelta(seconds=1)
    run = dag.test(logical_date=datetime.combine(AS_OF, datetime.min.time(), tzinfo=UTC))
    return str(run.state), warehouse_url


def _extract_attempts(warehouse_url: str) -> int:
    return scalar(warehouse_url, "SELECT COUNT(*) FROM audit.run_audit WHERE stage = 'extract'")


@pytest.mark.airflow
def test_a_source_without_its_tables_fails_extract_on_the_first_try(
    airflow_db: str, grading_home: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    grading_home.mkdir(parents=True)
    (grading_home / "empty.sqlite").touch()
    state, warehouse_url = _run(grading_home, monkeypatch, f"sqlite:///{grading_home / 'empty.sqlite'}")
    assert state == "failed"
    assert _extract_attempts(warehouse_url) == 1  # before: three, minutes apart, each as sure to fail
    error = scalar(warehouse_url, "SELECT message FROM audit.run_audit WHERE stage = 'extract'")
    assert "the source has no table 'customers'" in error


@pytest.mark.airflow
def test_an_unreachable_source_is_transient_and_extract_retries(
    airflow_db: str, grading_home: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    grading_home.mkdir(parents=True)
    state, warehouse_url = _run(grading_home, monkeypatch,
                                f"postgresql+psycopg://grading@127.0.0.1:{free_port()}/nothing?connect_timeout=2")
    assert state == "failed"
    assert _extract_attempts(warehouse_url) == 3
