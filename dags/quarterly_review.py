"""quarterly_review: evaluation tables and the HTML report for the quarter that just closed.

Runs on the first day of each quarter (00:00 UTC) for the quarter before it, and whenever
customer_grading publishes a period that closes a quarter (its asset event carries the
as-of date; a mid-quarter period triggers a run that skips). A manual run may name the
quarter (``quarter``, e.g. 2024Q4) and a proposed tier rule file to backtest in the report
(``proposed_tiers``, a path under include/rules/).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, AssetOrTimeSchedule, CronDataIntervalTimetable, Param, dag, task

from grading.settings import PUBLISHED_ASSET_NAME, PUBLISHED_ASSET_URI

PUBLISHED = Asset(name=PUBLISHED_ASSET_NAME, uri=PUBLISHED_ASSET_URI)


def _alert(context) -> None:
    """on_failure_callback, imported lazily so that parsing the DAG file loads no pipeline code."""
    from grading.alerts import on_failure

    on_failure(context)


@dag(
    dag_id="quarterly_review",
    schedule=AssetOrTimeSchedule(
        timetable=CronDataIntervalTimetable("0 0 1 1,4,7,10 *", timezone="UTC"), assets=[PUBLISHED]),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    params={
        "quarter": Param(None, type=["null", "string"], pattern=r"^\d{4}Q[1-4]$",
                         description="review this quarter instead of the one closing at the interval end"),
        "proposed_tiers": Param(None, type=["null", "string"],
                                description="tier rule file to backtest in the report, e.g. "
                                            "include/rules/examples/tiers_weighted_score.yaml"),
    },
    # The review writes the warehouse too: same pool and alerts as customer_grading.
    default_args={"pool": "grading_warehouse", "on_failure_callback": _alert},
    tags=["grading", "review"],
    doc_md=__doc__,
)
def quarterly_review():
    @task
    def review(data_interval_end=None, run_id=None, params=None, triggering_asset_events=None) -> dict:
        from datetime import date
        from pathlib import Path

        from airflow.sdk.exceptions import AirflowSkipException

        from grading.pipeline import Connections, review_stage
        from grading.review import quarter_for_run
        from grading.settings import PROJECT_ROOT

        published = [date.fromisoformat(event.extra["as_of"])
                     for events in (triggering_asset_events or {}).values() for event in events
                     if (event.extra or {}).get("as_of")]
        quarter = quarter_for_run(params.get("quarter"), published,
                                  data_interval_end.date() if data_interval_end else None)
        if quarter is None:
            raise AirflowSkipException(f"published periods {published} close no quarter: nothing to review")
        proposed = params.get("proposed_tiers")
        return review_stage(Connections.resolve(ask_airflow=True), quarter, run_id,
                            proposed_tiers=PROJECT_ROOT / proposed if proposed and not Path(proposed).is_absolute()
                            else (Path(proposed) if proposed else None))

    review()


quarterly_review()
