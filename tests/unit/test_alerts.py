"""Failure alerts (grading.alerts): the one-line message and its trimmed error, the facts taken from
an Airflow task context, and delivery through Airflow's notifiers to real servers on 127.0.0.1 - the
log, Slack's incoming webhook played by an HTTP server here (``slack_server``), an e-mail sent by the
SMTP provider's notifier to the SMTP server of tests/conftest.py, and the generic JSON webhook posted to
its HTTP server."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from email import message_from_string
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from grading import alerts
from tests.conftest import Received, _serving


@contextmanager
def slack_server() -> Iterator[tuple[str, Received]]:
    """An HTTP server on 127.0.0.1 that answers as Slack's incoming webhooks do (200 ``ok``) and
    records every POST (path, headers, JSON body); yields its base URL."""
    received = Received()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.add({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with _serving(server):
        yield f"http://127.0.0.1:{server.server_address[1]}", received


def slack_connection(base: str) -> str:
    """An ``AIRFLOW_CONN_GRADING_ALERTS`` for the Slack notifier: the webhook's base URL in the host, its
    token (the path after it) in the password, as SlackWebhookHook joins them."""
    return json.dumps({"conn_type": "slackwebhook", "host": f"{base}/services", "password": "test-T0/B0/xyz"})


@pytest.fixture
def slack_webhook() -> Iterator[tuple[str, Received]]:
    with slack_server() as served:
        yield served


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
    channel, notifier = alerts.channel_notifier(alert, alerts.airflow_connection("grading_alerts"))
    assert (channel, type(notifier).__name__) == ("email", "SmtpNotifier")
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
    caplog.clear()
    # A Slack connection without its token: the provider's hook refuses it; logged, not raised.
    monkeypatch.setenv("AIRFLOW_CONN_GRADING_ALERTS", json.dumps({"conn_type": "slackwebhook", "host": "x"}))
    with caplog.at_level(logging.INFO, logger="grading.alerts"):
        assert alerts.send_alert(alert) == "log"
    assert any("does not contain password" in r.getMessage() for r in caplog.records)
    monkeypatch.setenv("AIRFLOW_CONN_GRADING_ALERTS", "postgres://db:5432/x")
    with pytest.raises(ValueError, match="use slackwebhook for Slack, smtp for e-mail or http/https for a JSON"):
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
    channel, notifier = alerts.channel_notifier(alert, alerts.airflow_connection("grading_alerts"))
    assert (channel, type(notifier).__name__) == ("webhook", "JsonWebhookNotifier")
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


def test_the_slack_channel_posts_the_line_through_the_slack_webhook_notifier(
    slack_webhook: tuple[str, Received], monkeypatch: pytest.MonkeyPatch
) -> None:
    base, received = slack_webhook
    monkeypatch.setenv("AIRFLOW_CONN_GRADING_ALERTS", slack_connection(base))
    alert = alerts.Alert(dag_id="customer_grading", task_id="validate", run_id="r4", as_of="2024-09-01",
                         error="ValidationFailed: orders.amount < 0 & refunds > sales", log_url="http://x/log?a=1&b=2")
    channel, notifier = alerts.channel_notifier(alert, alerts.airflow_connection("grading_alerts"))
    assert (channel, type(notifier).__name__) == ("slack", "SlackWebhookNotifier")
    assert alerts.send_alert(alert) == "slack"
    assert received.arrived.wait(10)
    (post,) = received.items
    assert post["path"] == "/services/test-T0/B0/xyz"  # SlackWebhookHook: host + "/" + token
    # Slack reads &, < and > as markup: they are escaped; links are not unfurled into previews.
    assert post["body"] == {"text": alert.text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"),
                            "unfurl_links": False, "unfurl_media": False}
    assert "orders.amount &lt; 0 &amp; refunds &gt; sales" in post["body"]["text"]


def test_the_notifier_sends_one_alert_when_airflow_calls_it_and_never_raises(
    slack_webhook: tuple[str, Received], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """GradingAlertNotifier as Airflow's task runner calls an on_failure_callback: ``callback(context)``.
    An error text that looks like a Jinja template reaches the channel as it is, not rendered."""
    from airflow.sdk import BaseNotifier

    base, received = slack_webhook
    monkeypatch.setenv("AIRFLOW_CONN_GRADING_ALERTS", slack_connection(base))
    notifier = alerts.GradingAlertNotifier()
    assert isinstance(notifier, BaseNotifier)
    ti = SimpleNamespace(dag_id="customer_grading", task_id="tiers", run_id="manual__2", try_number=2, max_tries=1,
                         log_url="http://airflow/log", hostname="worker-1")
    context = {"ti": ti, "params": {"as_of": "2024-08-01"}, "exception": KeyError("{{ ti.task_id }}")}
    notifier(context)
    assert received.arrived.wait(10)
    (post,) = received.items
    assert post["body"]["text"] == ("[grading] customer_grading.tiers failed for as-of 2024-08-01 (run manual__2, "
                                    "try 2 of 2): KeyError: '{{ ti.task_id }}' | log: http://airflow/log")

    # The channel gone: Airflow's call returns, the alert and the failed delivery are in the log.
    monkeypatch.setenv("AIRFLOW_CONN_GRADING_ALERTS", slack_connection("http://127.0.0.1:1"))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="grading.alerts"):
        notifier(context)
    messages = [r.getMessage() for r in caplog.records if r.name == "grading.alerts"]
    assert messages[0].startswith("[grading] customer_grading.tiers failed")
    assert messages[1].startswith("alert not delivered through connection grading_alerts")
    assert len(received.items) == 1
