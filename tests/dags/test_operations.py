"""Operating the pipeline: retries with backoff, the warehouse pool, failure alerts, the run report.

The alert tests are real failing ``customer_grading`` runs (``dag.test()``) whose notifier delivers
to servers on 127.0.0.1: Slack's incoming webhook played by ``slack_server`` (tests/unit/test_alerts.py)
and the generic JSON webhook of the ``webhook`` fixture (tests/conftest.py); the alert's format and
its channels on their own are tested in tests/unit/test_alerts.py. Backfills
are exercised on the Celery stack in tests/deploy/test_distributed.py.
"""

from __future__ import annotations

from contextlib import nullcontext
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pandas as pd
import pytest

from grading.cli import main
from tests.conftest import CrmReceiver, Received
from tests.helpers import load_dag, scalar
from tests.unit.test_alerts import slack_connection, slack_server

AS_OF = date(2025, 1, 1)


# --------------------------------------------------------------------------- the DAG's operational settings

def _grading_dag():
    return load_dag("customer_grading")


def test_every_task_is_pooled_alerted_and_the_loads_retry_with_exponential_backoff() -> None:
    dag = _grading_dag()
    for task in dag.tasks:
        assert task.pool == "grading_warehouse", task.task_id
        assert [type(c).__name__ for c in task.on_failure_callback] == ["GradingAlertNotifier"], task.task_id
    for task_id in ("extract", "publish"):
        task = dag.task_dict[task_id]
        # Airflow 3 reads retry_exponential_backoff as a multiplier; 1 (or True) would be a constant delay.
        assert task.retries >= 3, task_id
        assert task.retry_exponential_backoff >= 2, task_id
        assert task.retry_delay == timedelta(minutes=1)
        assert task.max_retry_delay == timedelta(minutes=15)
    # The other stages are deterministic on their input: one retry is enough.
    assert dag.task_dict["validate"].retries <= 1


@pytest.mark.airflow
def test_a_failing_extract_retries_with_backoff_then_alerts_slack_once(
    airflow_db: str, grading_home: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A real run whose source server does not answer (a transient error: a data error would fail at
    once, tests/dags/test_fail_fast.py): extract fails, retries with growing delays, and the last
    failure posts one alert through Airflow's Slack webhook notifier; nothing downstream runs.

    The retry delay is shortened to 2 s (the DAG's is a minute) and the retries to 2, so the test
    waits seconds; the backoff multiplier is the DAG's own.
    """
    import socket

    from airflow.models.pool import Pool

    with socket.socket() as probe:  # a local port nothing listens on: connecting is refused at once
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    grading_home.mkdir(parents=True)
    warehouse_url = f"duckdb:///{grading_home / 'warehouse.duckdb'}"
    monkeypatch.setenv("AIRFLOW_CONN_GRADING_SOURCE",
                       f"postgresql+psycopg://grading@127.0.0.1:{closed_port}/nothing?connect_timeout=2")
    monkeypatch.setenv("AIRFLOW_CONN_GRADING_WAREHOUSE", warehouse_url)

    dag = _grading_dag()
    extract = dag.task_dict["extract"]
    assert extract.retry_exponential_backoff == 2.0
    extract.retries, extract.retry_delay = 2, timedelta(seconds=2)
    # dag.test() ignores pools: the run proceeds although no pool grading_warehouse exists here.
    assert Pool.get_pool("grading_warehouse") is None
    with slack_server() as (base, received):
        monkeypatch.setenv("AIRFLOW_CONN_GRADING_ALERTS", slack_connection(base))
        run = dag.test(logical_date=datetime.combine(AS_OF, datetime.min.time(), tzinfo=UTC))
        assert str(run.state) == "failed"
        assert received.arrived.wait(30), "no alert reached the Slack webhook"

    (post,) = received.items  # one alert, after the last try, not one per try
    assert post["path"] == "/services/test-T0/B0/xyz"  # the connection's host and token
    text = post["body"]["text"]
    assert text.startswith(f"[grading] customer_grading.extract failed for as-of 2025-01-01 (run {run.run_id}, "
                           "try 3 of 3): ")
    assert "OperationalError: (psycopg.OperationalError) connection failed: connection to server at " \
           f"\"127.0.0.1\", port {closed_port} failed: Connection refused" in text, text
    assert "[SQL:" not in text
    assert "(Background on this error" not in text
    assert text.endswith(f"/dags/customer_grading/runs/{quote(run.run_id)}/tasks/extract?try_number=3")
    assert "\n" not in text

    # Three audited attempts, each retry waiting at least retry_delay × 2^(try-1).
    attempts = _audit(warehouse_url)
    attempts = attempts[attempts["stage"] == "extract"].sort_values("started_at")
    assert attempts["status"].tolist() == ["failed"] * 3
    gaps = (attempts["started_at"].iloc[1:].to_numpy() - attempts["finished_at"].iloc[:-1].to_numpy())
    assert [g / pd.Timedelta(seconds=1) for g in gaps][0] >= 2
    assert [g / pd.Timedelta(seconds=1) for g in gaps][1] >= 4
    assert scalar(warehouse_url, "SELECT COUNT(*) FROM audit.run_audit WHERE stage <> 'extract'") == 0


@pytest.mark.airflow
def test_a_failed_crm_export_alerts_and_leaves_the_period_published(
    airflow_db: str, grading_home: Path, webhook: tuple[str, Received], crm_server: CrmReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The CRM's webhook keeps answering 503: crm_export fails and alerts once; the period stays
    published, the file target got its export, and ops.exports records both. The alert goes to an
    ``http`` connection: the generic JSON webhook, with every fact as a field."""
    import json

    from grading import demo

    base, received = webhook
    crm_server.fail_always = True
    grading_home.mkdir(parents=True)
    source_url, warehouse_url = f"sqlite:///{grading_home / 'source.sqlite'}", \
        f"duckdb:///{grading_home / 'warehouse.duckdb'}"
    demo.write_source(demo.generate(customers=150, seed=3), source_url)
    monkeypatch.setenv("AIRFLOW_CONN_GRADING_SOURCE", source_url)
    monkeypatch.setenv("AIRFLOW_CONN_GRADING_WAREHOUSE", warehouse_url)
    monkeypatch.setenv("AIRFLOW_CONN_GRADING_ALERTS", f"{base}/hooks/grading")
    monkeypatch.setenv("AIRFLOW_CONN_GRADING_CRM", json.dumps({"conn_type": "http", "extra": {
        "url": crm_server.url, "attempts": 2, "backoff_seconds": 0.01}}))

    dag = _grading_dag()
    dag.task_dict["crm_export"].retries = 0  # the DAG's is 3, a minute apart and growing
    run = dag.test(logical_date=datetime.combine(AS_OF, datetime.min.time(), tzinfo=UTC))
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert states.pop("crm_export") == "failed"
    assert set(states.values()) == {"success"}, states  # publish and every stage before it

    assert received.arrived.wait(30), "no alert reached the webhook"
    (post,) = received.items
    assert (post["body"]["task_id"], post["body"]["as_of"]) == ("crm_export", "2025-01-01")
    assert "webhook did not take batch 1/1 of 2025-01-01 after 2 attempts: HTTP 503" in post["body"]["error"]
    assert scalar(warehouse_url, "SELECT COUNT(*) FROM marts.published_periods WHERE as_of_date = :d", d=AS_OF) == 1
    assert scalar(warehouse_url, "SELECT COUNT(*) FROM ops.exports WHERE status = 'failed' "
                                 "AND target = 'webhook'") == 1
    assert scalar(warehouse_url, "SELECT COUNT(*) FROM ops.exports WHERE status = 'success' AND target = 'files'") == 1
    assert (grading_home / "exports" / "2025-01-01" / "changes.csv").exists()


def _audit(url: str) -> pd.DataFrame:
    from grading.frames import read_frame
    from grading.warehouse import open_engine

    with open_engine(url) as engine, engine.connect() as conn:
        frame = read_frame(conn, "SELECT * FROM audit.run_audit")
    for column in ("started_at", "finished_at"):
        frame[column] = pd.to_datetime(frame[column])
    return frame


# --------------------------------------------------------------------------- the run report

def test_runs_reports_recent_runs_newest_first_with_status_and_problem(
    grading_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Audit rows written by the real audit context manager, read back as a report."""
    from grading.pipeline import audited
    from grading.warehouse import migrate, open_engine

    url = f"duckdb:///{grading_home / 'warehouse.duckdb'}"
    grading_home.mkdir(parents=True)
    monkeypatch.setenv("AIRFLOW_CONN_GRADING_WAREHOUSE", url)
    assert main(["runs"]) == 1  # a data error: nothing recorded yet
    assert "no audit.run_audit" in capsys.readouterr().err

    with open_engine(url) as engine:
        migrate(engine)
        for stage in ("extract", "validate", "features", "churn", "tiers", "flags", "publish"):
            with audited(engine, "good_run", date(2024, 12, 1), stage, "1.1.0" if stage == "tiers" else None) as a:
                a["rows_out"] = 10
        with pytest.raises(RuntimeError), audited(engine, "bad_run", date(2025, 1, 1), "extract"):
            raise RuntimeError("source unreachable")
        for status in ("fail", "ok"):  # a stage that failed once, then succeeded on retry
            with pytest.raises(RuntimeError) if status == "fail" else nullcontext(), \
                    audited(engine, "retried_run", date(2025, 2, 1), "extract"):
                if status == "fail":
                    raise RuntimeError("timeout")

    assert main(["runs"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Recent runs in audit.run_audit, newest first (3 shown):"
    rows = out[2:]
    assert [r.split()[0] for r in rows] == ["retried_run", "bad_run", "good_run"]
    assert rows[0].split()[5:8] == ["incomplete", "extract", "1"]
    assert "failed" in rows[1]
    assert "extract: RuntimeError: source unreachable" in rows[1]
    assert rows[2].split()[5:10] == ["success", "publish", "0", "10", "1.1.0"]

    assert main(["runs", "--failed"]) == 0
    assert [r.split()[0] for r in capsys.readouterr().out.splitlines()[2:]] == ["bad_run"]
    assert main(["runs", "--as-of", "2024-12-01", "--limit", "5"]) == 0
    assert [r.split()[0] for r in capsys.readouterr().out.splitlines()[2:]] == ["good_run"]
    assert main(["runs", "--as-of", "2023-01-01"]) == 0
    assert capsys.readouterr().out.strip() == "no runs recorded in audit.run_audit for as-of 2023-01-01"
