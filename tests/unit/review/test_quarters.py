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
