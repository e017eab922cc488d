"""The shared condition vocabulary (grading.conditions): what each operator selects over a pandas
Series, above all for missing values, and that the SQL spelling covers the same operators."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from grading import conditions
from grading.conditions import mask


@pytest.mark.parametrize("values", [
    pd.Series([5.0, None, 1.0], dtype="Float64"),
    pd.Series([5, None, 1], dtype="Int64"),
], ids=["Float64", "Int64"])
def test_a_comparison_never_holds_for_a_missing_value(values: pd.Series) -> None:
    assert mask(values, ">", 2).tolist() == [True, False, False]
    assert mask(values, "<=", 2).tolist() == [False, False, True]
    assert mask(values, "==", 5).tolist() == [True, False, False]
    assert mask(values, "!=", 5).tolist() == [False, False, True]


@pytest.mark.parametrize("values", [
    pd.Series([5.0, np.nan]),
    pd.Series(pd.to_datetime(["2024-01-01", None])),
    pd.Series(["EU", None], dtype=object),
], ids=["float64-NaN", "datetime-NaT", "object-None"])
def test_not_equal_never_holds_for_a_missing_value_of_any_dtype(values: pd.Series) -> None:
    assert mask(values, "!=", values.iloc[0]).tolist() == [False, False]


def test_in_and_not_in_leave_missing_values_out() -> None:
    regions = pd.Series(["EU", None, "US", np.nan, "APAC"], dtype=object)
    assert mask(regions, "in", ["EU", "US"]).tolist() == [True, False, True, False, False]
    assert mask(regions, "not_in", ["EU", "US"]).tolist() == [False, False, False, False, True]
    spend = pd.Series([1.0, np.nan, 3.0])
    assert mask(spend, "not_in", [1.0]).tolist() == [False, False, True]


def test_null_tests_see_every_kind_of_missing_value() -> None:
    for values in (pd.Series([1.0, np.nan]), pd.Series(["a", None], dtype=object),
                   pd.Series(["a", pd.NA], dtype="string"), pd.Series(pd.to_datetime(["2024-01-01", None]))):
        assert mask(values, "is_null").tolist() == [False, True], values.dtype
        assert mask(values, "not_null", "ignored").tolist() == [True, False], values.dtype


def test_text_and_aligned_operands_give_a_plain_bool_series_on_the_index() -> None:
    names = pd.Series(["shop-1", None, "web-2"], dtype="string", index=[10, 20, 30])
    hit = mask(names, "starts_with", "shop")
    assert hit.dtype == bool
    assert hit.to_dict() == {10: True, 20: False, 30: False}
    spend, threshold = pd.Series([100.0, 50.0, np.nan]), pd.Series([80.0, 80.0, 80.0])
    assert mask(spend, ">=", threshold).tolist() == [True, False, False]


def test_sql_spells_every_comparison_and_null_test_of_the_vocabulary() -> None:
    assert set(conditions.SQL_COMPARISONS) == set(conditions.COMPARISONS)
    assert set(conditions.SQL_NULL_TESTS) == set(conditions.NULL_TESTS)
