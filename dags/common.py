"""What both DAGs share: the published-period asset, the warehouse pool, retry policies, failing fast and the alert.

Not a DAG file (listed in .airflowignore). Airflow 3 puts the DAG bundle's folder on ``sys.path``
when it parses a DAG file or runs a task, so the DAG files import this module as ``common``.
Like the DAG files it imports nothing heavy: the pipeline is imported inside the callables.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import timedelta

from airflow.sdk import Asset

from grading.settings import PUBLISHED_ASSET_NAME, PUBLISHED_ASSET_URI

PUBLISHED = Asset(name=PUBLISHED_ASSET_NAME, uri=PUBLISHED_ASSET_URI)
WAREHOUSE_POOL = "grading_warehouse"
OWNER = "grading"

# Airflow 3 reads retry_exponential_backoff as a multiplier: 2.0 doubles the delay at each try
# (1, 2, 4 minutes, with jitter, at most 15); True would mean 1.0, a constant delay.
LOAD_RETRIES = {"retries": 3, "max_retry_delay": timedelta(minutes=15)}  # delay and backoff: DEFAULT_ARGS


def alert():
    """The on_failure_callback: an Airflow notifier (grading.alerts) that sends the alert through the
    notifier the ``grading_alerts`` connection selects. Its module needs only the standard library and
    airflow.sdk at parse time; the provider notifiers (Slack, SMTP) are imported when an alert goes out."""
    from grading.alerts import GradingAlertNotifier

    return GradingAlertNotifier()


# Every task of both DAGs: one retry for a transient error, a slot of the warehouse pool, the alert.
DEFAULT_ARGS = {"owner": OWNER, "retries": 1, "retry_delay": timedelta(minutes=1),
                "retry_exponential_backoff": 2.0, "pool": WAREHOUSE_POOL, "on_failure_callback": alert()}


def connections():
    """The source and warehouse connections, asked of Airflow's connection store."""
    from grading.pipeline import Connections

    return Connections.resolve(ask_airflow=True)


def fail_fast(task_function: Callable) -> Callable:
    """Wrap a task's callable so that a data error fails the task at once, without retries.

    A rejected batch, an invalid rule file or an unreadable connection is as wrong on the
    next try as on this one (grading.errors.DataError): Airflow's AirflowFailException ends
    the task without using its retries, and the alert goes out now rather than after the
    backoff. Every other error (a server that did not answer, a batch in flight) retries.
    """
    @functools.wraps(task_function)
    def failing_fast(*args, **kwargs):
        from airflow.sdk.exceptions import AirflowFailException

        from grading.errors import DataError

        try:
            return task_function(*args, **kwargs)
        except DataError as error:
            raise AirflowFailException(f"{type(error).__name__}: {error} (a data error: not retried)") from error

    return failing_fast
