"""How large a control group must be: the power calculation for a difference of two return rates.

A control group is only worth holding out if the review can read an effect from it. For two
groups compared at 95 % (two-sided) with 80 % power, the smallest difference in return rate
they detect - the minimum detectable effect (MDE) - is
``(z95 + z80) * sqrt(p (1 - p) (1/treated + 1/control))`` at a return rate near ``p``.
Turned around, it says how many customers of a list to hold out for a target effect, or that
no split of the list can detect it (the list is too small to hold a control group). Used when
candidates are flagged (``control_power`` of a list) and when the quarterly review reports
each uplift's MDE.
"""

from __future__ import annotations

import math

Z95 = 1.959963984540054
Z80 = 0.8416212335729143  # 80 % power: a real effect of the MDE is found four times in five


def _variance(rate: float) -> float:
    """p(1-p) of a return rate; a rate of 0 or 1 (or none yet) takes the worst case, 0.25."""
    return rate * (1 - rate) if 0 < rate < 1 else 0.25


def minimum_detectable_effect(treated_n: int, control_n: int, rate: float) -> float | None:
    """The smallest uplift (in rate points) groups of these sizes tell from noise: significant at
    95 % (two-sided) with 80 % power, for return rates near ``rate``."""
    if treated_n == 0 or control_n == 0:
        return None
    return (Z95 + Z80) * math.sqrt(_variance(rate) * (1 / treated_n + 1 / control_n))


def control_needed(listed_n: int, rate: float, effect: float) -> int | None:
    """Customers to hold out of a list of ``listed_n`` so that an uplift of ``effect`` is detectable
    (the rest treated); None when no split of the list can (too small to hold a control group)."""
    spread = (effect / (Z95 + Z80)) ** 2 / _variance(rate)  # the largest 1/treated + 1/control allowed
    # 1/(N-c) + 1/c = N / (c (N-c)) <= spread  <=>  c^2 - N c + N/spread <= 0: c from the smaller root
    n = listed_n
    discriminant = n * n - 4 * n / spread
    if n < 2 or discriminant < 0:
        return None  # even half and half cannot: the list is too small
    control = max(1, math.ceil((n - math.sqrt(discriminant)) / 2 - 1e-9))
    while control <= n // 2 and 1 / (n - control) + 1 / control > spread:  # float rounding at the root
        control += 1
    return control if control <= n // 2 else None
