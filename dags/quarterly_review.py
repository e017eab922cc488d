"""quarterly_review: evaluation tables for the quarter that just closed.

Runs on the first day of each quarter (00:00 UTC) for the quarter before it, reading the
snapshots customer_grading published. A manual run may name the quarter (``quarter``
param, e.g. 2024Q4).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import CronDataIntervalTimetable, Param, dag, task


@dag(
    dag_id="quarterly_review",
    schedule=CronDataIntervalTimetable("0 0 1 1,4,7,10 *", timezone="UTC"),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    params={"quarter": Param(None, type=["null", "string"], pattern=r"^\d{4}Q[1-4]$",
                             description="review this quarter instead of the one closing at the interval end")},
    tags=["grading", "review"],
    doc_md=__doc__,
)
def quarterly_review():
    @task
    def tier_distribution(data_interval_end=None, run_id=None, params=None) -> list[dict]:
        from grading.pipeline import Connections, review_stage
        from grading.review import Quarter

        quarter = Quarter.parse(params["quarter"]) if params.get("quarter") \
            else Quarter.closing_on(data_interval_end.date())
        table = review_stage(Connections.resolve(ask_airflow=True), quarter, run_id)
        return table[["tier", "customers", "revenue_share"]].to_dict("records")

    tier_distribution()


quarterly_review()
