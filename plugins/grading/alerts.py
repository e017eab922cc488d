"""Failure alerts: one short message per failed task, sent by Airflow notifiers where the ``grading_alerts``
connection points.

An operator who was not watching needs four facts to act on a failed run: which DAG and task,
which period (as-of date), what went wrong, and where the full log is. This module builds that
message from the Airflow task context; the sending is Airflow's own notifiers, chosen by
configuration, not code: the type of the Airflow connection ``grading_alerts``, which can be set
in the UI, a secrets backend or the environment (``AIRFLOW_CONN_GRADING_ALERTS``):

- no connection ``grading_alerts``: the alert goes to the log only (the default);
- a ``slackwebhook`` connection: the provider's ``SlackWebhookNotifier`` posts the one-line message
  (Slack, and the chat tools with Slack-compatible incoming webhooks, e.g. Mattermost);
- an ``smtp`` / ``email`` connection: the provider's ``SmtpNotifier`` mails it to the addresses in
  the connection's extra ``to`` (comma-separated), from extra ``from_email``;
- an ``http`` / ``https`` connection: a generic JSON webhook, the one channel no installed provider
  notifier covers (the Slack one needs its token in the password, ignores port, login and headers,
  sends text only and takes nothing but HTTP 200): a POST whose ``text`` field is the one-line
  message and whose other fields carry the same facts for machines; login/password become basic auth.

``GradingAlertNotifier`` is the tasks' ``on_failure_callback``: an Airflow ``BaseNotifier`` that
builds the message and hands it to the channel's notifier. It imports nothing but the standard library
and ``airflow.sdk`` (loaded anyway when a DAG is parsed); the provider notifiers are imported when an
alert goes out. Nothing is templated: the message is built in Python, and an error text must never
pass through Jinja.

Every alert is logged whatever the channel, and a channel that fails is logged, never raised:
an alert must not hide the task's own error, and Airflow would only log it anyway.

Error texts are trimmed before they leave the worker: SQLAlchemy appends the failing statement
and its bound parameters (which may hold row values) to its messages, and URLs in messages may
carry passwords — neither belongs in a chat channel.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import socket
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import date, datetime
from html import escape
from typing import Any

from airflow.sdk import BaseNotifier

from grading.settings import airflow_connection

log = logging.getLogger(__name__)

ALERT_CONN_ID = "grading_alerts"
WEBHOOK_TYPES = ("http", "https")
EMAIL_TYPES = ("smtp", "email")
SLACK_TYPES = ("slackwebhook",)
MAX_ERROR_CHARS = 500
WEBHOOK_TIMEOUT_SECONDS = 10

_SQL_TAIL = re.compile(r"\s*(\[SQL: |\[parameters: |\(Background on this error at: ).*", re.DOTALL)
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.\-]*://[^\s:/@]+:)[^\s@/]+@", re.IGNORECASE)
_SLACK_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


@dataclass(frozen=True)
class Alert:
    """The facts of one failed task, and the ways they are rendered."""

    dag_id: str
    task_id: str
    run_id: str
    as_of: str | None
    error: str
    log_url: str | None
    try_number: int | None = None
    max_tries: int | None = None
    hostname: str | None = None

    @property
    def text(self) -> str:
        """One line: what failed, for which period, why, and where to read more."""
        tries = f", try {self.try_number} of {self.max_tries + 1}" if self.try_number and self.max_tries is not None \
            else ""
        return (f"[grading] {self.dag_id}.{self.task_id} failed for as-of {self.as_of or 'unknown'} "
                f"(run {self.run_id}{tries}): {self.error} | log: {self.log_url or 'n/a'}")

    @property
    def slack_text(self) -> str:
        """The line for Slack, whose message text reserves ``&``, ``<`` and ``>`` (links, mentions)."""
        return self.text.translate(_SLACK_ESCAPES)

    @property
    def subject(self) -> str:
        return f"[grading] {self.dag_id}.{self.task_id} failed (as-of {self.as_of or 'unknown'})"

    def payload(self) -> dict[str, Any]:
        """The webhook body: ``text`` for chat tools, the separate fields for anything else."""
        return {"text": self.text, **asdict(self)}

    def html(self) -> str:
        rows = "".join(f"<tr><th align='left'>{escape(k)}</th><td>{escape(str(v))}</td></tr>"
                       for k, v in asdict(self).items() if k not in ("log_url", "error"))
        link = f"<p><a href='{escape(self.log_url)}'>Task log</a></p>" if self.log_url else ""
        return f"<p>{escape(self.text)}</p><pre>{escape(self.error)}</pre><table>{rows}</table>{link}"


def describe_error(error: BaseException | str | None) -> str:
    """A short, shareable error text: type and message, no SQL, no bound values, no passwords."""
    if error is None:
        return "unknown error (the task failed without an exception, e.g. it was killed)"
    text = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error)
    text = _SQL_TAIL.sub("", text)
    text = _URL_PASSWORD.sub(r"\1***@", text)
    text = " ".join(text.split())
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS - 1] + "…"


def _as_of(context: Mapping[str, Any]) -> str | None:
    """The period the run grades: the ``as_of`` param of a manual run, else the data interval end."""
    params = context.get("params") or {}
    if params.get("as_of"):
        return str(params["as_of"])
    if params.get("quarter"):
        return str(params["quarter"])
    for key in ("data_interval_end", "logical_date"):
        value = context.get(key)
        if isinstance(value, datetime):
            return value.date().isoformat()
        if isinstance(value, date):
            return value.isoformat()
    return None


def alert_from_context(context: Mapping[str, Any]) -> Alert:
    """Build the alert from an Airflow task context (what an on_failure_callback receives)."""
    ti = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")

    def attr(obj: Any, name: str) -> Any:
        try:
            return getattr(obj, name, None)
        except Exception:  # a property that cannot be computed here (e.g. no config)
            return None

    return Alert(
        dag_id=str(attr(ti, "dag_id") or attr(dag_run, "dag_id") or "unknown"),
        task_id=str(attr(ti, "task_id") or "unknown"),
        run_id=str(context.get("run_id") or attr(ti, "run_id") or attr(dag_run, "run_id") or "unknown"),
        as_of=_as_of(context),
        error=describe_error(context.get("exception")),
        log_url=attr(ti, "log_url"),
        try_number=attr(ti, "try_number"),
        max_tries=attr(ti, "max_tries"),
        hostname=attr(ti, "hostname"),
    )


def channel_of(conn: Any | None) -> str:
    """``log``, ``slack``, ``email`` or ``webhook``, from the connection's type."""
    if conn is None:
        return "log"
    conn_type = (conn.conn_type or "").lower().replace("-", "_")
    for channel, types in (("slack", SLACK_TYPES), ("email", EMAIL_TYPES), ("webhook", WEBHOOK_TYPES)):
        if conn_type in types:
            return channel
    raise ValueError(f"connection {conn.conn_id!r} has type {conn.conn_type!r}: use slackwebhook for Slack, "
                     "smtp for e-mail or http/https for a JSON webhook")


def webhook_url(conn: Any) -> str:
    """The URL a webhook connection points at.

    ``AIRFLOW_CONN_GRADING_ALERTS=https://hooks.example.com/services/T0/B0/X`` parses into type
    https, host and a path (Airflow's ``schema``); a host that carries its own scheme and an
    extra ``url`` (for URLs with a query string) are honoured too.
    """
    extra = conn.extra_dejson or {}
    if extra.get("url"):
        return str(extra["url"])
    host = conn.host or ""
    if "://" in host:
        scheme, host = host.split("://", 1)
    else:
        scheme = conn.conn_type if conn.conn_type in WEBHOOK_TYPES else "https"
    if not host:
        raise ValueError(f"connection {conn.conn_id!r} has no host")
    port = f":{conn.port}" if conn.port else ""
    path = f"/{conn.schema.lstrip('/')}" if conn.schema else ""
    return f"{scheme}://{host.rstrip('/')}{port}{path}"


def webhook_headers(conn: Any) -> dict[str, str]:
    """The headers a webhook connection adds: extra ``headers``, and login / password as Basic auth."""
    headers = {str(k): str(v) for k, v in ((conn.extra_dejson or {}).get("headers") or {}).items()}
    if conn.login:
        token = base64.b64encode(f"{conn.login}:{conn.password or ''}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    return headers


class JsonWebhookNotifier(BaseNotifier):
    """POSTs a JSON body to the URL of an ``http``/``https`` connection (any 2xx is delivered)."""

    def __init__(self, *, conn: Any, body: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conn = conn
        self.body = dict(body)

    def notify(self, context: Any) -> None:
        headers = {"Content-Type": "application/json", "User-Agent": "customer-grading-alerts",
                   **webhook_headers(self.conn)}
        request = urllib.request.Request(webhook_url(self.conn), data=json.dumps(self.body).encode(),
                                         headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_SECONDS) as response:  # an error status raises
            self.log.debug("webhook answered HTTP %s", response.status)


def channel_notifier(alert: Alert, conn: Any | None) -> tuple[str, BaseNotifier | None]:
    """The channel ``conn`` selects and the notifier that delivers ``alert`` there (None: the log only)."""
    channel = channel_of(conn)
    if channel == "slack":
        from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

        timeout = None if "timeout" in (conn.extra_dejson or {}) else WEBHOOK_TIMEOUT_SECONDS
        return channel, SlackWebhookNotifier(slack_webhook_conn_id=conn.conn_id, text=alert.slack_text,
                                             unfurl_links=False, unfurl_media=False, timeout=timeout)
    if channel == "email":
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        extra = conn.extra_dejson or {}
        recipients = [a.strip() for a in str(extra.get("to") or "").split(",") if a.strip()]
        if not recipients:
            raise ValueError(f"connection {conn.conn_id!r} has no recipients: set extra 'to'")
        return channel, SmtpNotifier(to=recipients, from_email=extra.get("from_email") or f"airflow@{socket.getfqdn()}",
                                     subject=alert.subject, html_content=alert.html(), smtp_conn_id=conn.conn_id)
    if channel == "webhook":
        return channel, JsonWebhookNotifier(conn=conn, body=alert.payload())
    return channel, None


def send_alert(alert: Alert, conn_id: str = ALERT_CONN_ID, context: Mapping[str, Any] | None = None) -> str:
    """Log the alert, then send it through the notifier ``conn_id`` selects; returns the channel used.

    The notifier's ``notify`` is called, not the notifier itself: calling it would render its fields
    as Jinja templates, and the message (an error text among it) is final. Never raises: a failure to
    deliver is logged next to the alert itself.
    """
    log.error("%s", alert.text)
    try:
        channel, notifier = channel_notifier(alert, airflow_connection(conn_id))
        if notifier is not None:
            notifier.notify(dict(context or {}))
            log.info("alert sent through connection %s (%s, %s)", conn_id, channel, type(notifier).__name__)
        return channel
    except Exception as exc:  # a failed delivery must not mask the task's error
        log.error("alert not delivered through connection %s: %s", conn_id, describe_error(exc))
        return "log"


class GradingAlertNotifier(BaseNotifier):
    """The grading tasks' ``on_failure_callback``: one alert, after the last try, where ``conn_id`` points.

    Airflow calls it with the task context (in the worker, or in the DAG processor for a task that
    died); it never raises. It keeps no state between calls, so one instance serves every task.
    """

    def __init__(self, conn_id: str = ALERT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id

    def notify(self, context: Any) -> None:
        send_alert(alert_from_context(context), self.conn_id, context)
