"""quarterly_review: evaluation tables and the HTML report for the quarter that just closed.

Runs on the first day of each quarter (00:00 UTC) for the quarter before it, and whenever
customer_grading publishes a period that closes a quarter (its asset event carries the
as-of date; a mid-quarter period triggers a run that skips). A manual run may name the
quarter (``quarter``, e.g. 2024Q4) and a proposed tier rule file to backtest in the report
(``proposed_tiers``, a path under include/rules/). Reviewing a fourth quarter also builds that
year's annual review against the year before (marts.review_annual, reviews/<year>/annual.html).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import AssetOrTimeSchedule, CronDataIntervalTimetable, Param, dag, task
from common import DEFAULT_ARGS, PUBLISHED, connections, fail_fast


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
    # The review writes the warehouse too: same pool, retry and alerts as customer_grading.
    default_args=DEFAULT_ARGS,
    tags=["grading", "review"],
    doc_md=__doc__,
)
def quarterly_review():
    @task
    @fail_fast
    def review(data_interval_end=None, run_id=None, params=None, triggering_asset_events=None) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from grading.pipeline import review_stage
        from grading.review.quarters import NothingToReview, review_request

        try:
            quarter, proposed = review_request(params, triggering_asset_events, data_interval_end)
        except NothingToReview as nothing:
            raise AirflowSkipException(str(nothing)) from nothing
        return review_stage(connections(), quarter, run_id, proposed_tiers=proposed)

    review()


quarterly_review()
