"""customer_grading: grade every customer as of the end of each data interval.

extract -> validate -> features -> churn -> tiers -> flags -> publish -> crm_export. Each task calls one stage
of grading.pipeline; data moves through the warehouse, only small summaries through XCom.
The as-of date is the data interval's end (or the ``as_of`` param of a manual run), so a
rerun or backfill of a period replaces exactly that period.

Schedule: GRADING_SCHEDULE (cron, default monthly on the 1st, 00:00 UTC). The timetable
is CronDataIntervalTimetable on purpose: a plain cron string gives Airflow 3 runs whose
data interval has zero width.

Operations: every task takes a slot of the pool ``grading_warehouse`` (every stage writes the
warehouse; one slot serialises the writers an embedded DuckDB file needs serialised, more slots
let PostgreSQL take parallel loads). A scheduler leaves tasks of a missing pool unscheduled, so
create it (``airflow pools set grading_warehouse 1 ...``); ``dag.test()`` / ``airflow dags test``
ignore pools. extract and publish, the tasks that talk to other systems or load a whole period,
retry with exponential backoff, and so does crm_export (the hand-off to the CRM: files, and a
webhook where the ``grading_crm`` connection exists); a task that finally fails sends an alert
through grading.alerts (log, webhook or e-mail, chosen by the ``grading_alerts`` connection). A
failed crm_export leaves the period published (and the quarterly review's asset event sent).
"""

from __future__ import annotations

import os
from datetime import date

import pendulum
from airflow.sdk import CronDataIntervalTimetable, Param, dag, task
from common import DEFAULT_ARGS, LOAD_RETRIES, PUBLISHED, connections, fail_fast


def _as_of(data_interval_end: pendulum.DateTime, params: dict) -> date:
    return date.fromisoformat(params["as_of"]) if params.get("as_of") else data_interval_end.date()


@dag(
    dag_id="customer_grading",
    schedule=CronDataIntervalTimetable(os.environ.get("GRADING_SCHEDULE", "0 0 1 * *"), timezone="UTC"),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # an embedded DuckDB warehouse admits one writer at a time
    default_args=DEFAULT_ARGS,
    params={"as_of": Param(None, type=["null", "string"], format="date",
                           description="grade as of this date instead of the data interval end")},
    tags=["grading"],
    doc_md=__doc__,
)
def customer_grading():
    @task(**LOAD_RETRIES)
    @fail_fast
    def extract(data_interval_end=None, run_id=None, params=None) -> dict:
        from grading.pipeline import extract_stage

        return extract_stage(connections(), _as_of(data_interval_end, params), run_id)

    @task
    @fail_fast
    def validate(extracted: dict, data_interval_end=None, run_id=None, params=None) -> dict:
        from grading.pipeline import validate_stage

        return validate_stage(connections(), _as_of(data_interval_end, params), run_id, extracted["batch"])

    @task
    @fail_fast
    def features(data_interval_end=None, run_id=None, params=None) -> dict:
        from grading.pipeline import features_stage

        return features_stage(connections(), _as_of(data_interval_end, params), run_id)

    @task
    @fail_fast
    def churn(data_interval_end=None, run_id=None, params=None) -> dict:
        from grading.pipeline import churn_stage

        return churn_stage(connections(), _as_of(data_interval_end, params), run_id)

    @task
    @fail_fast
    def tiers(data_interval_end=None, run_id=None, params=None) -> dict:
        from grading.pipeline import tiers_stage

        return tiers_stage(connections(), _as_of(data_interval_end, params), run_id)

    @task
    @fail_fast
    def flags(data_interval_end=None, run_id=None, params=None) -> dict:
        from grading.pipeline import flags_stage

        return flags_stage(connections(), _as_of(data_interval_end, params), run_id)

    @task(outlets=[PUBLISHED], **LOAD_RETRIES)
    @fail_fast
    def publish(data_interval_end=None, run_id=None, params=None, outlet_events=None) -> dict:
        from grading.pipeline import publish_stage

        as_of = _as_of(data_interval_end, params)
        outlet_events[PUBLISHED].extra = {"as_of": as_of.isoformat()}  # quarterly_review reads it
        return publish_stage(connections(), as_of, run_id)

    @task(**LOAD_RETRIES)
    @fail_fast
    def crm_export(data_interval_end=None, run_id=None, params=None) -> dict:
        from grading.pipeline import export_stage

        return export_stage(connections(), _as_of(data_interval_end, params), run_id)

    checked = validate(extract())
    checked >> features() >> churn() >> tiers() >> flags() >> publish() >> crm_export()


customer_grading()
