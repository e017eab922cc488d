"""The power calculation of control groups: the minimum detectable effect of two group sizes and
the hold-out a list needs for a target effect, against the textbook formula."""

from __future__ import annotations

import pytest

from grading.power import Z80, Z95, control_needed, minimum_detectable_effect


def test_the_minimum_detectable_effect_matches_the_textbook_power_calculation() -> None:
    """Two groups of 1,000 at a 20 % return rate: (1.96 + 0.84) x sqrt(0.16 x 2/1000) = 5.0 points."""
    assert minimum_detectable_effect(1000, 1000, 0.2) == pytest.approx(0.0501, abs=1e-4)
    assert minimum_detectable_effect(45, 5, 0.2) > 0.5  # the demo's win-back list: only huge effects show
    assert minimum_detectable_effect(0, 5, 0.2) is None
    # a rate of 0 or 1 says nothing about the spread: the worst case, 0.25, is used
    assert minimum_detectable_effect(100, 100, 0.0) == minimum_detectable_effect(100, 100, 0.5)


def test_the_control_group_needed_for_an_effect_and_a_list_too_small_to_hold_one() -> None:
    needed = control_needed(1_000_000, 0.2, 0.05)
    spread = (0.05 / (Z95 + Z80)) ** 2 / 0.16
    assert 1 / (1_000_000 - needed) + 1 / needed <= spread < 1 / (1_000_000 - needed + 1) + 1 / (needed - 1)
    assert 490 < needed < 520  # about (1.96 + 0.84)^2 x 0.16 / 0.05^2 = 502
    assert control_needed(1000, 0.2, 0.05) is None  # half and half would still miss 5 points
    assert control_needed(4000, 0.2, 0.05) is not None
