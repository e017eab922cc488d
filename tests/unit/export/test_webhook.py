"""The CRM export's webhook target (grading.export.webhook) against a real local HTTP receiver
(tests/conftest.py ``crm_server``) that fails the first attempts and honours idempotency keys."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from grading.export.webhook import Webhook, WebhookError, batches, idempotency_key, send
from tests.conftest import CrmReceiver

AS_OF, BASELINE = date(2025, 1, 1), date(2024, 10, 1)
ROWS = pd.DataFrame({"change": ["listed"] * 5, "customer_id": [f"C{i}" for i in range(5)],
                     "contact_within_days": pd.array([7, 14, None, 7, 7], dtype="Int64")})


def hook(url: str, **kwargs) -> Webhook:
    return Webhook(url, {"X-Token": "test-token"}, **{"batch_rows": 2, "attempts": 4, "backoff_seconds": 0.5,
                                                      **kwargs})


def test_batches_are_retried_with_backoff_and_applied_once_each(crm_server: CrmReceiver) -> None:
    waits: list[float] = []
    sent = send(hook(crm_server.url), "webhook", AS_OF, BASELINE, ROWS, "abc", sleep=waits.append)
    assert sent == 3
    # each batch: 503, 503 (applied, answer lost), then 200 - three attempts, two waits of 0.5 s and 1 s
    assert [status for _, status in crm_server.attempts] == [503, 503, 200] * 3
    assert waits == [0.5, 1.0] * 3
    assert len(crm_server.applied) == 3
    assert [row["customer_id"] for row in crm_server.rows()] == ["C0", "C1", "C2", "C3", "C4"]
    assert crm_server.rows()[2]["contact_within_days"] is None
    body = next(iter(crm_server.applied.values()))
    assert (body["period"], body["baseline"], body["batch"], body["batches"], body["export_sha256"]) == (
        "2025-01-01", "2024-10-01", 1, 3, "abc")


def test_sending_the_same_export_again_uses_the_same_keys(crm_server: CrmReceiver) -> None:
    send(hook(crm_server.url), "webhook", AS_OF, BASELINE, ROWS, "abc", sleep=lambda _: None)
    applied = dict(crm_server.applied)
    crm_server.fail_first = 0
    send(hook(crm_server.url), "webhook", AS_OF, BASELINE, ROWS, "abc", sleep=lambda _: None)
    assert crm_server.applied == applied  # nothing applied twice
    assert list(applied) == [idempotency_key("webhook", AS_OF, BASELINE, "abc", n) for n in (1, 2, 3)]
    assert idempotency_key("webhook", AS_OF, BASELINE, "abd", 1) != idempotency_key("webhook", AS_OF, BASELINE,
                                                                                     "abc", 1)


def test_a_receiver_that_keeps_failing_fails_the_export_after_the_attempts(crm_server: CrmReceiver) -> None:
    crm_server.fail_always = True
    with pytest.raises(WebhookError, match=r"did not take batch 1/3 of 2025-01-01 after 4 attempts: HTTP 503"):
        send(hook(crm_server.url), "webhook", AS_OF, BASELINE, ROWS, "abc", sleep=lambda _: None)
    assert len(crm_server.attempts) == 4


def test_a_refusal_is_not_retried(crm_server: CrmReceiver) -> None:
    crm_server.fail_always, crm_server.fail_status = True, 400
    with pytest.raises(WebhookError, match=r"refused batch 1/3 of 2025-01-01: HTTP 400 \(not retried\)"):
        send(hook(crm_server.url), "webhook", AS_OF, BASELINE, ROWS, "abc", sleep=lambda _: None)
    assert len(crm_server.attempts) == 1


def test_an_unreachable_receiver_is_retried_then_reported() -> None:
    with pytest.raises(WebhookError, match=r"after 2 attempts: URLError"):
        send(hook("http://127.0.0.1:9/crm", attempts=2), "webhook", AS_OF, None, ROWS, "abc", sleep=lambda _: None)


def test_an_empty_export_is_one_empty_batch() -> None:
    assert batches(ROWS.head(0), 2) == [[]]
    assert [len(b) for b in batches(ROWS, 2)] == [2, 2, 1]
