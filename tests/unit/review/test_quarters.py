"""Quarters: parsing 2024Q4, a quarter's days, the quarter a period closes, and which quarter
(and proposed tier file) a quarterly_review run reviews."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from grading.review.quarters import Quarter, quarter_for_run


def test_which_quarter_a_run_reviews() -> None:
    assert quarter_for_run("2023Q2", [date(2025, 1, 1)], date(2025, 1, 1)) == Quarter(2023, 2)
    assert quarter_for_run(None, [date(2025, 1, 1)], None) == Quarter(2024, 4)      # a period closing 2024Q4
    assert quarter_for_run(None, [date(2025, 2, 1)], None) is None                 # mid-quarter: skip
    assert quarter_for_run(None, [], date(2024, 7, 1)) == Quarter(2024, 2)         # the schedule
    assert (Quarter(2024, 1).previous, Quarter(2024, 1).end) == (Quarter(2023, 4), date(2024, 4, 1))


class _Event:
    def __init__(self, as_of: str | None) -> None:
        self.extra = {"as_of": as_of} if as_of else {}


def test_a_review_request_resolves_quarter_and_proposed_file_from_the_run() -> None:
    from grading.review.quarters import NothingToReview, review_request
    from grading.settings import PROJECT_ROOT

    closing = {"published": [_Event("2025-01-01"), _Event(None)]}
    assert review_request({}, closing, None) == (Quarter(2024, 4), None)
    proposed = "include/rules/examples/tiers_weighted_score.yaml"
    assert review_request({"quarter": "2024q2", "proposed_tiers": proposed}, None, None) == (
        Quarter(2024, 2), PROJECT_ROOT / proposed)
    assert review_request({"proposed_tiers": "/abs/tiers.yaml"}, None, datetime(2025, 4, 1, tzinfo=UTC))[1] == \
        Path("/abs/tiers.yaml")
    with pytest.raises(NothingToReview, match="close no quarter"):
        review_request({}, {"published": [_Event("2025-01-15")]}, None)


@pytest.mark.parametrize("text", ["2024Q5", "2024Q0", "24Q1", "2024-Q1", "Q4 2024", ""])
def test_a_quarter_that_does_not_look_like_2024q4_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=rf"quarter must look like 2024Q4, got '{text}'"):
        Quarter.parse(text)


def test_parse_accepts_lower_case_and_spaces_and_prints_back() -> None:
    assert Quarter.parse(" 2024q3\n") == Quarter(2024, 3)
    assert str(Quarter.parse("2024q3")) == "2024Q3"


def test_quarters_tile_the_year_and_each_closes_on_its_end() -> None:
    quarters = [Quarter(2024, n) for n in (1, 2, 3, 4)]
    assert [(q.start, q.end) for q in quarters] == [
        (date(2024, 1, 1), date(2024, 4, 1)), (date(2024, 4, 1), date(2024, 7, 1)),
        (date(2024, 7, 1), date(2024, 10, 1)), (date(2024, 10, 1), date(2025, 1, 1))]
    assert [Quarter.closing_on(q.end) for q in quarters] == quarters
    assert Quarter.closing_on(date(2024, 12, 31)) == Quarter(2024, 3)  # the last quarter that has ended
    assert [q.previous for q in quarters[1:]] == quarters[:-1]


def test_a_run_triggered_by_periods_reviews_the_latest_quarter_they_close() -> None:
    published = [date(2024, 7, 1), date(2025, 1, 1), date(2025, 1, 15), date(2024, 10, 1)]
    assert quarter_for_run(None, published, None) == Quarter(2024, 4)
    # triggered by a mid-quarter period, the run reviews nothing, whatever its interval end
    assert quarter_for_run(None, [date(2025, 2, 1)], date(2025, 4, 1)) is None
    assert quarter_for_run("", [], None) is None


def test_a_quarter_its_data_does_not_cover_and_stale_periods_are_warned_about() -> None:
    from grading.review.quarters import completeness_warnings

    q1 = Quarter(2025, 1)
    assert completeness_warnings(q1, date(2025, 4, 1), date(2025, 3, 31), []) == []
    # 2025Q1 with data to 28 February: the latest period is as of 1 March, the orders stop on the 28th
    unfinished = completeness_warnings(q1, date(2025, 3, 1), date(2025, 2, 28), [])
    assert unfinished == [
        "2025Q1 is not complete: the latest published period is as of 2025-03-01, before the quarter's end "
        "(2025-04-01); tiers and lists miss 2025-03-01 to 2025-03-31. Publish 2025-04-01 and review 2025Q1 again.",
        "the orders loaded reach 2025-02-28 only, the quarter ends on 2025-03-31: its revenue, retention and "
        "win-back figures are incomplete. Extract the rest of the quarter and review it again."]
    assert completeness_warnings(q1, date(2025, 4, 1), None, [])[0].startswith("the orders loaded are none")
    stale = completeness_warnings(q1, date(2025, 4, 1), date(2025, 3, 31),
                                  [(date(2025, 3, 1), "it follows 2025-02-01, which is stale")])
    assert stale == ["the published period 2025-03-01 is stale (it follows 2025-02-01, which is stale): regrade "
                     "the stale periods in date order and review the quarter again"]


def unfinished_q1(url: str) -> None:
    """A warehouse whose orders stop on 28 February 2025, with the period of 1 March published stale and
    two customers pending confirmation for the elimination list then."""
    import pandas as pd

    from grading.frames import bulk_insert
    from grading.warehouse import migrate, open_engine

    with open_engine(url) as engine:
        migrate(engine)
        with engine.begin() as conn:
            bulk_insert(conn, "raw.orders", pd.DataFrame({
                "order_id": ["o1", "o2", "o3"], "customer_id": "c1", "status": "completed", "amount": 10.0,
                "order_ts": pd.to_datetime(["2025-01-05 09:00", "2025-02-28 18:00", "2025-04-02 09:00"]),
                "extracted_at": pd.Timestamp("2025-04-03")}))
            bulk_insert(conn, "marts.published_periods", pd.DataFrame({
                "as_of_date": [date(2025, 2, 1), date(2025, 3, 1)], "run_id": "r",
                "published_at": pd.Timestamp("2025-03-02"), "stale": [False, True],
                "stale_reason": [None, "its tiers carried on from 2025-01-01, but the period before it is now "
                                       "2025-02-01"]}).astype({"stale_reason": "string"}))
            bulk_insert(conn, "staging.customer_flags", pd.DataFrame({
                "as_of_date": date(2025, 3, 1), "customer_id": ["a", "b", "c"],
                "flag": ["elimination_pending", "elimination_pending", "core"], "rule_name": "r", "reason": "why",
                "action": "act", "rule_version": "1"}))


def test_the_review_checks_read_the_warehouse(tmp_path: Path) -> None:
    """Orders to 28 February, a stale published period, customers pending confirmation at the snapshot."""
    from grading.review.quarters import review_checks
    from grading.warehouse import open_engine

    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    unfinished_q1(url)
    with open_engine(url) as engine, engine.connect() as conn:
        checks = review_checks(conn, Quarter(2025, 1), date(2025, 3, 1))
    warnings = checks["_warnings"]["warning"].tolist()
    assert len(warnings) == 3
    assert warnings[0].startswith("2025Q1 is not complete: the latest published period is as of 2025-03-01")
    assert warnings[1].startswith("the orders loaded reach 2025-02-28 only")  # the April order is not the quarter's
    assert warnings[2].startswith("the published period 2025-03-01 is stale (its tiers carried on from 2025-01-01")
    assert checks["_pending"].to_dict("records") == [{"list": "elimination", "pending": 2}]


def test_a_review_of_an_unfinished_quarter_warns_in_its_report_and_its_run_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlalchemy as sa

    from grading import pipeline
    from grading.warehouse import open_engine
    from tests.unit.review.test_html import first_quarter

    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    unfinished_q1(url)
    results = first_quarter()
    results["_meta"] = results["_meta"].assign(quarter="2025Q1", snapshot=date(2025, 3, 1))
    monkeypatch.setattr(pipeline, "build_review", lambda warehouse, quarter: results)
    summary = pipeline.review_stage(pipeline.Connections("sqlite://", url), Quarter(2025, 1), "r1", tmp_path / "out")
    assert [w[:30] for w in summary["warnings"]] == ["2025Q1 is not complete: the la", "the orders loaded reach 2025-0",
                                                     "the published period 2025-03-0"]
    page = (tmp_path / "out" / "review.html").read_text(encoding="utf-8")
    assert page.index("id='warnings'") < page.index("<section id='summary'>")
    assert "<b>2</b>elimination candidates pending confirmation" in page
    with open_engine(url) as engine, engine.connect() as conn:
        message = conn.execute(sa.text("SELECT message FROM audit.run_audit WHERE stage = 'review 2025Q1'")).scalar()
    assert message == f"report: {tmp_path / 'out' / 'review.html'}" + "".join(
        f"; WARNING: {w}" for w in summary["warnings"])
