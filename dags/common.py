"""What both DAGs share: the published-period asset, the warehouse pool, retry policies and the alert.

Not a DAG file (listed in .airflowignore). Airflow 3 puts the DAG bundle's folder on ``sys.path``
when it parses a DAG file or runs a task, so the DAG files import this module as ``common``.
Like the DAG files it imports nothing heavy: the pipeline is imported inside the callables.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Asset

from grading.settings import PUBLISHED_ASSET_NAME, PUBLISHED_ASSET_URI

PUBLISHED = Asset(name=PUBLISHED_ASSET_NAME, uri=PUBLISHED_ASSET_URI)
WAREHOUSE_POOL = "grading_warehouse"
OWNER = "grading"

# Airflow 3 reads retry_exponential_backoff as a multiplier: 2.0 doubles the delay at each try
# (1, 2, 4 minutes, with jitter, at most 15); True would mean 1.0, a constant delay.
LOAD_RETRIES = {"retries": 3, "max_retry_delay": timedelta(minutes=15)}  # delay and backoff: DEFAULT_ARGS


def alert(context: dict) -> None:
    """on_failure_callback, imported lazily so that parsing a DAG file loads no pipeline code."""
    from grading.alerts import on_failure

    on_failure(context)


# Every task of both DAGs: one retry for a transient error, a slot of the warehouse pool, the alert.
DEFAULT_ARGS = {"owner": OWNER, "retries": 1, "retry_delay": timedelta(minutes=1),
                "retry_exponential_backoff": 2.0, "pool": WAREHOUSE_POOL, "on_failure_callback": alert}


def connections():
    """The source and warehouse connections, asked of Airflow's connection store."""
    from grading.pipeline import Connections

    return Connections.resolve(ask_airflow=True)
