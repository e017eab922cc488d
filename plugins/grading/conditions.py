"""The condition vocabulary: what ``==``, ``<``, ``in``, ``not_in``, ``is_null``... mean.

Three places test a value against a condition: rule files (grading.rules, over the features
frame), the ``where:`` filters of source mappings (grading.sources, over a typed source
column) and the GX ``row_condition`` of a validation suite (grading.validation.predicates, as SQL). They
share this one vocabulary, so an operator means the same in each:

- a comparison never holds for a missing value (NaN, None, NA, NaT), nor does ``in`` with
  a list of present values (what the rule checker accepts);
- ``not_in`` holds for a present value outside the list, never for a missing one;
- ``is_null`` / ``not_null`` test for a missing value (SQL: IS NULL / IS NOT NULL, and a
  comparison with NULL selects no row, as above).

Each user chooses which operators its files may name (rule files have no ``starts_with``)
and types both sides first (a where: condition converts its column and value ``as:``
declared); ``mask`` then evaluates any of them over a pandas Series, the same for both.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import pandas as pd

# operator -> the Python function applied to a Series and a scalar (or an aligned Series);
# the order is the one rule files' messages list them in
COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
    "==": operator.eq, "!=": operator.ne,
}
MEMBERSHIP = ("in", "not_in")
NULL_TESTS = ("is_null", "not_null")
TEXT_TESTS = ("starts_with",)
# operator -> SQL: the same comparisons and null tests in a WHERE clause
SQL_COMPARISONS = {"==": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
SQL_NULL_TESTS = {"is_null": "IS NULL", "not_null": "IS NOT NULL"}


def mask(values: pd.Series, op: str, operand: Any = None) -> pd.Series:
    """Which of ``values`` meet ``op operand``, as a bool Series (never NA) on their index.

    ``operand`` is a scalar (or an aligned Series) for a comparison, a list for ``in`` /
    ``not_in``, a text for ``starts_with`` and ignored for the null tests.
    """
    if op == "is_null":
        return values.isna()
    if op == "not_null":
        return values.notna()
    if op in MEMBERSHIP:
        hit = values.isin(list(operand)).fillna(False).astype(bool)
        return hit if op == "in" else ~hit & values.notna()
    if op == "starts_with":
        return values.str.startswith(operand).fillna(False).astype(bool)
    present = values.notna() & (operand.notna() if isinstance(operand, pd.Series) else pd.notna(operand))
    # numpy's != holds for NaN, NaT and None; SQL's <> (and every other comparison here) does not
    return COMPARISONS[op](values, operand).fillna(False).astype(bool) & present
