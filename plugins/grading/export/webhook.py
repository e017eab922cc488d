"""The webhook target of the CRM export: JSON batches POSTed with an idempotency key.

Each batch carries ``Idempotency-Key``, derived from the target, period, baseline, the
export's checksum and the batch number, so a batch sent again - a retry after a timeout, or
the export of the period run again - has the same key and a receiver that honours it does
not apply it twice. A connection error, a timeout, 429 or a 5xx is retried with exponential
backoff; any other error status fails the export at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)

RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})


class WebhookError(RuntimeError):
    """The webhook did not take a batch; the message names the batch, the attempts and the last error."""


@dataclass(frozen=True)
class Webhook:
    url: str
    headers: dict[str, str]
    batch_rows: int = 500
    attempts: int = 5
    backoff_seconds: float = 1.0
    timeout_seconds: float = 30.0

    @classmethod
    def from_connection(cls, conn: Any) -> Webhook:
        """From an Airflow connection of type http(s): the URL as grading.alerts reads it; extra
        ``headers``, ``batch_rows``, ``attempts``, ``backoff_seconds``; login/password as Basic auth."""
        from grading.alerts import webhook_headers, webhook_url

        extra = conn.extra_dejson or {}
        return cls(webhook_url(conn), webhook_headers(conn), int(extra.get("batch_rows", 500)),
                   int(extra.get("attempts", 5)), float(extra.get("backoff_seconds", 1.0)))


def idempotency_key(target: str, as_of: date, baseline: date | None, content_sha256: str, batch: int) -> str:
    text = f"{target}|{as_of}|{baseline}|{content_sha256}|{batch}"
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def batches(rows: pd.DataFrame, size: int) -> list[list[dict]]:
    """The rows as JSON-able records in batches of ``size`` (at least one batch, maybe empty)."""
    records = json.loads(rows.to_json(orient="records", date_format="iso"))
    return [records[i:i + size] for i in range(0, len(records), size)] or [[]]


def send(hook: Webhook, target: str, as_of: date, baseline: date | None, rows: pd.DataFrame, content_sha256: str,
         sleep: Callable[[float], None] = time.sleep) -> int:
    """POST every batch; returns the batches sent. Raises WebhookError when one is not taken."""
    parts = batches(rows, hook.batch_rows)
    for number, records in enumerate(parts, start=1):
        key = idempotency_key(target, as_of, baseline, content_sha256, number)
        body = json.dumps({"period": as_of.isoformat(), "baseline": baseline.isoformat() if baseline else None,
                           "batch": number, "batches": len(parts), "export_sha256": content_sha256,
                           "rows": records}).encode()
        _post(hook, body, key, f"batch {number}/{len(parts)} of {as_of}", sleep)
    return len(parts)


def _post(hook: Webhook, body: bytes, key: str, what: str, sleep: Callable[[float], None]) -> None:
    headers = {"Content-Type": "application/json", "User-Agent": "customer-grading-export",
               "Idempotency-Key": key, **hook.headers}
    last = ""
    for attempt in range(1, hook.attempts + 1):
        request = urllib.request.Request(hook.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=hook.timeout_seconds):  # http(s) only
                return
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
            if exc.code not in RETRYABLE:
                raise WebhookError(f"webhook refused {what}: {last} (not retried)") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            last = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
        if attempt < hook.attempts:
            delay = hook.backoff_seconds * 2 ** (attempt - 1)
            log.warning("webhook: %s failed (%s), attempt %d of %d; retrying in %.1fs", what, last, attempt,
                        hook.attempts, delay)
            sleep(delay)
    raise WebhookError(f"webhook did not take {what} after {hook.attempts} attempts: {last}")
