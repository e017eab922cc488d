"""Predicates: SQL selecting exactly the rows a row-wise check rejects (alias ``r``).

Row-level checks move their offending rows to quarantine with SQL, so each GX expectation
that may be row-level, and each row-wise SQL check, is translated here; GX row_condition
clauses and ``{"$PARAMETER": name}`` bounds included.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from grading.conditions import SQL_COMPARISONS, SQL_NULL_TESTS
from grading.validation.suites import Check, Suite, SuiteError, expectation_parameters


def _condition(condition: Mapping[str, Any], columns: set[str], params: dict, prefix: str) -> str:
    """SQL for a GX row_condition (comparison, nullity, and-groups) over alias ``r``."""
    kind = condition.get("type")
    if kind == "and":
        return " AND ".join(f"({_condition(c, columns, params, f'{prefix}{i}')})"
                            for i, c in enumerate(condition["conditions"]))
    column = condition.get("column", {}).get("name")
    if column not in columns:
        raise SuiteError(f"row_condition on unknown column {column!r}")
    if kind == "nullity":
        return f"r.{column} {SQL_NULL_TESTS['is_null' if condition['is_null'] else 'not_null']}"
    if kind == "comparison" and condition.get("operator") in SQL_COMPARISONS:
        params[prefix] = condition["parameter"]
        return f"r.{column} {SQL_COMPARISONS[condition['operator']]} :{prefix}"
    raise SuiteError(f"unsupported row_condition {condition!r} (use comparisons, nullity and 'and')")


def _gx_predicate(suite: Suite, check: Check, params: dict, prefix: str, parameters: Mapping[str, Any]) -> str:
    """SQL that selects exactly the rows the GX expectation counts as unexpected (alias ``r``).

    GX ignores missing values in these expectations, and so does the predicate; the
    quarantine compares the rows it moves with GX's count and refuses to commit on a mismatch.
    ``parameters`` gives the values of ``{"$PARAMETER": name}`` bounds.
    """
    k, columns = {name: _resolved(value, parameters) for name, value in check.kwargs.items()}, set(suite.spec.columns)
    column = f"r.{check.column}"
    if check.type == "expect_column_values_to_be_between":
        outside = []
        if k.get("min_value") is not None:
            params[f"{prefix}min"] = k["min_value"]
            outside.append(f"{column} {'<=' if k.get('strict_min') else '<'} :{prefix}min")
        if k.get("max_value") is not None:
            params[f"{prefix}max"] = k["max_value"]
            outside.append(f"{column} {'>=' if k.get('strict_max') else '>'} :{prefix}max")
        predicate = f"{column} IS NOT NULL AND ({' OR '.join(outside)})"
    elif check.type == "expect_column_values_to_be_in_set":
        names = []
        for i, value in enumerate(k["value_set"]):
            params[f"{prefix}v{i}"] = value
            names.append(f":{prefix}v{i}")
        predicate = f"{column} IS NOT NULL AND {column} NOT IN ({', '.join(names)})"
    elif check.type == "expect_column_values_to_not_be_null":
        predicate = f"{column} IS NULL"
    elif check.type == "expect_column_pair_values_a_to_be_greater_than_b":
        a, b = f"r.{k['column_A']}", f"r.{k['column_B']}"
        predicate = f"{a} IS NOT NULL AND {b} IS NOT NULL AND {a} {'<' if k.get('or_equal') else '<='} {b}"
    else:
        raise SuiteError(f"{check.type} has no SQL translation")
    if k.get("row_condition"):
        predicate = f"({predicate}) AND ({_condition(k['row_condition'], columns, params, f'{prefix}c')})"
    return predicate


def _sql_predicate(suite: Suite, check: Check) -> str:
    """SQL selecting the offending rows of a row-wise SQL check (alias ``r``)."""
    spec = suite.spec
    if check.type == "expect_column_values_to_reference_known_customers":
        column = check.column
        return (f"r.{column} IS NOT NULL AND NOT EXISTS "  # noqa: S608 - identifiers checked against the contract
                f"(SELECT 1 FROM raw.customers AS c WHERE c.customer_id = r.{column})")
    if check.type == "expect_event_time_not_before_customer_created":
        hours = int(check.kwargs.get("tolerance_hours", 24))
        return (f"EXISTS (SELECT 1 FROM raw.customers AS c WHERE c.customer_id = r.customer_id "  # noqa: S608
                f"AND r.{check.column} < c.created_at - INTERVAL '{hours} hours')")
    if check.type == "expect_keys_not_loaded_by_an_earlier_batch":
        return (f"EXISTS (SELECT 1 FROM raw.{spec.name} AS o "  # noqa: S608 - identifiers from the contract
                f"WHERE o.{spec.key} = r.{spec.key} AND o.extracted_at <> :batch)")
    raise SuiteError(f"{check.type} is not a row-wise check")


def _resolved(value: Any, parameters: Mapping[str, Any]) -> Any:
    if isinstance(value, Mapping) and "$PARAMETER" in value:
        if value["$PARAMETER"] not in parameters:
            raise SuiteError(f"unknown $PARAMETER {value['$PARAMETER']!r}; known: {sorted(parameters)}")
        return parameters[value["$PARAMETER"]]
    return value


def condition(suite: Suite, check: Check, params: dict) -> str | None:
    """SQL for a GX check's row_condition (alias ``r``), its values bound in ``params``; None without one.

    GX judges only the rows the condition selects: the aggregate pass counts those too.
    """
    row_condition = check.kwargs.get("row_condition")
    if not row_condition:
        return None
    return _condition(row_condition, set(suite.spec.columns), params, f"p{check.index}_c")


def predicate(suite: Suite, check: Check, parameters: Mapping[str, Any] | None = None) -> tuple[str, dict]:
    """The offending-row predicate of any row-wise check, with its bound parameters.

    ``parameters``: the values of ``$PARAMETER`` bounds (default: as for a batch checked now).
    """
    params: dict[str, Any] = {}
    parameters = parameters or expectation_parameters(suite, datetime.now(UTC).replace(tzinfo=None))
    sql = _gx_predicate(suite, check, params, f"p{check.index}_", parameters) if check.by_gx \
        else _sql_predicate(suite, check)
    return sql, params
