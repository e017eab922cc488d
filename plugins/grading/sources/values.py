"""Turning source values into canonical ones: numbers, timestamps, flags and text as raw
stores them, the closed set of expressions, value maps and where: filters. Vectorised with
pandas; per-row Python never runs. A value that cannot be converted raises SourceDataError
naming its file, row and mapping line.
"""

from __future__ import annotations

import operator
from functools import reduce
from typing import Any

import numpy as np
import pandas as pd

from grading import conditions
from grading.contract import VALUE_SETS
from grading.convert import FALSE_WORDS as _FALSE
from grading.convert import TRUE_WORDS as _TRUE
from grading.convert import SourceDataError
from grading.sources.model import ColumnMap, Condition, Expr, Feed, SourceMapping

_OFFSET = r"(?:Z|[+-]\d{2}:?\d{2})$"


def row_label(frame: pd.DataFrame, mask: pd.Series) -> str:
    """Where the first row of ``mask`` came from: 'orders.csv row 17' (data rows, after the header)."""
    first = mask[mask].index[0]
    return f"{frame.at[first, '__file']} row {int(frame.at[first, '__row'])}"


def _first_value(values: pd.Series, mask: pd.Series) -> Any:
    return values[mask].iloc[0]


class Rows:
    """A source frame under mapping, with what error messages need to point at a row."""

    def __init__(self, frame: pd.DataFrame, mapping: SourceMapping, feed: Feed):
        self.frame, self.mapping, self.feed = frame, mapping, feed

    def where_in_mapping(self, column: ColumnMap) -> str:
        return f"{self.mapping.path.name}:{column.line}"

    def fail(self, mask: pd.Series, values: pd.Series, label: str, problem: str, hint: str = "") -> None:
        count = int(mask.sum())
        value = _first_value(values, mask)
        raise SourceDataError(
            f"{row_label(self.frame, mask)}: {label}: {value!r} {problem}"
            f"{f' ({count} rows like this)' if count > 1 else ''}. {hint}".rstrip()
        )


def as_text(values: pd.Series) -> pd.Series:
    """Text as the warehouse stores it: integral floats without '.0', blanks as missing."""
    if pd.api.types.is_float_dtype(values) and (values.dropna() % 1 == 0).all():
        values = values.astype("Int64")
    if pd.api.types.is_datetime64_any_dtype(values):
        values = values.dt.strftime("%Y-%m-%d %H:%M:%S")
    out = values.astype("string").str.strip()
    return out.where(out != "")


def as_numbers(rows: Rows, values: pd.Series, label: str) -> pd.Series:
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        return values.astype("float64")
    text = as_text(values)
    options = rows.feed.read
    cleaned = text
    if options.thousands:
        cleaned = cleaned.str.replace(options.thousands, "", regex=False)
    if options.decimal != ".":
        cleaned = cleaned.str.replace(options.decimal, ".", regex=False)
    numbers = _fast_numbers(cleaned)
    if numbers is None:  # a value is not a number: find and name it
        numbers = pd.to_numeric(cleaned, errors="coerce").astype("float64")
    bad = numbers.isna() & text.notna()
    if bad.any():
        rows.fail(bad, text, label, "is not a number",
                  "Check the column, or declare decimal: / thousands: for this export.")
    return numbers


def _fast_numbers(text: pd.Series) -> pd.Series | None:
    """Arrow's text-to-number cast: several times faster than pd.to_numeric; None if a value is not a number."""
    import pyarrow as pa
    import pyarrow.compute as pac

    try:
        cast = pac.cast(pa.array(text, type=pa.string(), from_pandas=True), pa.float64())
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        return None
    return pd.Series(cast.to_numpy(zero_copy_only=False), index=text.index, dtype="float64")


def _timestamps(rows: Rows, values: pd.Series, fmt: str | None, zone: str, label: str) -> pd.Series:
    """Naive UTC timestamps: parsed with ``fmt`` (ISO 8601 by default), local times taken in ``zone``."""
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = values
    else:
        text = as_text(values)
        try:
            parsed = pd.to_datetime(text, format=fmt or "ISO8601", errors="coerce")
        except ValueError:  # offsets differ across rows (e.g. summer and winter time): convert each
            aware = text.str.contains(_OFFSET, regex=True).fillna(False).astype(bool)
            parsed = pd.Series(pd.NaT, index=text.index, dtype="datetime64[us]")
            parsed[aware] = pd.to_datetime(text[aware], format=fmt or "ISO8601", errors="coerce", utc=True) \
                .dt.tz_localize(None)
            naive = pd.to_datetime(text[~aware], format=fmt or "ISO8601", errors="coerce")
            parsed[~aware] = _localize(naive, zone)
            parsed = parsed.astype("datetime64[us]")
            zone = "UTC"
        bad = parsed.isna() & text.notna()
        if bad.any():
            rows.fail(bad, text, label, f"does not match the declared format {fmt or 'ISO 8601'!r}",
                      "Fix the value, or declare the column's format: (strftime codes, e.g. \"%d/%m/%y\").")
    if getattr(parsed.dt, "tz", None) is not None:
        return parsed.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[us]")
    return _localize(parsed, zone).astype("datetime64[us]")


def _localize(naive: pd.Series, zone: str) -> pd.Series:
    """Wall-clock times in ``zone`` to naive UTC, resolved like Python's zoneinfo (PEP 495, fold=0).

    A time that occurs twice when clocks go back is the first (summer-time) one; a time
    skipped when clocks go forward is read with the offset in force before the change.
    Both rules are what ``datetime(..., tzinfo=ZoneInfo(zone))`` does, so any plain-Python
    check of the results agrees.
    """
    naive = naive.astype("datetime64[us]")
    if zone in ("UTC", "Etc/UTC"):
        return naive
    first = np.ones(len(naive), dtype=bool)
    local = naive.dt.tz_localize(zone, ambiguous=first, nonexistent="NaT")
    utc = local.dt.tz_convert("UTC").dt.tz_localize(None)
    gap = utc.isna() & naive.notna()
    if gap.any():
        moved = naive[gap].dt.tz_localize(zone, ambiguous=first[gap.to_numpy()], nonexistent="shift_forward")
        before = moved - pd.Timedelta(1, "us")
        offset = before.dt.tz_localize(None) - before.dt.tz_convert("UTC").dt.tz_localize(None)
        utc[gap] = naive[gap] - offset
    return utc


def _flags(rows: Rows, values: pd.Series, label: str) -> pd.Series:
    if pd.api.types.is_bool_dtype(values):
        return values.astype("boolean")
    text = as_text(values).str.lower()
    out = pd.Series(pd.NA, index=values.index, dtype="boolean")
    out[text.isin(_TRUE).fillna(False).astype(bool)] = True
    out[text.isin(_FALSE).fillna(False).astype(bool)] = False
    bad = out.isna() & text.notna()
    if bad.any():
        rows.fail(bad, text, label, "is not a yes/no value",
                  f"Use {'/'.join(_TRUE)} or {'/'.join(_FALSE)}, or translate it with map:.")
    return out


def _evaluate(rows: Rows, expr: Expr, label: str) -> pd.Series:
    frame = rows.frame
    if expr.op == "column":
        return frame[expr.column]
    if expr.op == "value":
        dtype = "string" if isinstance(expr.value, str) else None
        return pd.Series([expr.value] * len(frame), index=frame.index, dtype=dtype)
    parts = [_evaluate(rows, a, label) for a in expr.args]
    if expr.op in ("multiply", "add"):
        numbers = [as_numbers(rows, p, label if a.op != "column" else f"column {a.column!r} of {label}")
                   for p, a in zip(parts, expr.args, strict=True)]
        return reduce(operator.mul if expr.op == "multiply" else operator.add, numbers)
    if expr.op == "concat":
        return reduce(lambda a, b: a + b, [as_text(p) for p in parts])  # separator added by the caller
    result = parts[0]  # coalesce
    for part in parts[1:]:
        if result.dtype != part.dtype:
            result, part = result.astype(object), part.astype(object)
        result = result.where(result.notna(), part)
    return result


def _concat(rows: Rows, expr: Expr, separator: str, label: str) -> pd.Series:
    parts = [as_text(_evaluate(rows, a, label)) for a in expr.args]
    return reduce(lambda a, b: a + separator + b, parts)


def _translate(rows: Rows, column: ColumnMap, values: pd.Series, label: str) -> pd.Series:
    """Apply map: / prefix_map: / default:; unlisted values pass through unless a default is given."""
    if not (column.values or column.prefixes or column.has_default):
        return values
    if not (column.values or column.prefixes):
        return values.where(values.notna(), column.default) if values.isna().any() else values
    text = as_text(values)
    mapped = text.map(column.values) if column.values else pd.Series(None, index=text.index, dtype=object)
    mapped = mapped.astype(object)
    for prefix, target in column.prefixes:
        hit = mapped.isna() & text.str.startswith(prefix).fillna(False).astype(bool)
        mapped[hit] = target
    unlisted = mapped.isna() & text.notna()
    mapped[unlisted] = column.default if column.has_default else text[unlisted]
    if column.has_default:
        mapped[text.isna()] = column.default
    return mapped.where(mapped.notna(), None)


def canonical(rows: Rows, column: ColumnMap) -> pd.Series:
    """One canonical column of a feed, typed the way raw stores it."""
    expr = column.expr
    label = (f"column {expr.column!r} -> {rows.feed.table}.{column.name}" if expr.op == "column"
             else f"{expr.describe()} -> {rows.feed.table}.{column.name}")
    label += f" ({rows.where_in_mapping(column)})"
    values = _concat(rows, expr, column.separator, label) if expr.op == "concat" else _evaluate(rows, expr, label)
    values = _translate(rows, column, values, label)
    if column.kind == "timestamp":
        return _timestamps(rows, values, column.format, column.timezone or rows.feed.timezone, label)
    if column.kind == "amount":
        return as_numbers(rows, values, label)
    if column.kind == "integer":
        numbers = as_numbers(rows, values, label)
        bad = numbers.notna() & (numbers % 1 != 0)
        if bad.any():
            rows.fail(bad, as_text(values), label, "is not a whole number")
        return numbers.astype("Int64")
    if column.kind == "flag":
        return _flags(rows, values, label)
    text = as_text(values)
    if column.prefix:
        text = column.prefix + text
    allowed = VALUE_SETS.get((rows.feed.table, column.name))
    if allowed:
        bad = text.notna() & ~text.isin(allowed).fillna(False).astype(bool)
        if bad.any():
            seen = ", ".join(repr(v) for v in text[bad].value_counts().index[:5])
            rows.fail(bad, text, label, f"is not a known {column.name}",
                      f"Unmapped values: {seen}. Translate them with map: (or prefix_map:, default:) onto "
                      f"{', '.join(allowed)}.")
    return text


def where_mask(rows: Rows, cond: Condition) -> pd.Series:
    """Which rows meet a where: condition, its columns typed as declared (``as:``)."""
    def typed(values: pd.Series, name: str) -> pd.Series:
        label = f"where column {name!r} ({rows.mapping.path.name}:{cond.line})"
        if cond.as_type == "number":
            return as_numbers(rows, values, label)
        if cond.as_type == "timestamp":
            return _timestamps(rows, values, cond.format, "UTC", label)
        return as_text(values)

    left = typed(rows.frame[cond.column], cond.column)
    operand = cond.value
    if cond.op in conditions.MEMBERSHIP and cond.as_type == "number":
        operand = [float(v) for v in cond.value]
    elif cond.op in conditions.COMPARISONS and cond.other is not None:
        operand = typed(rows.frame[cond.other], cond.other)
    elif cond.op in conditions.COMPARISONS and cond.as_type == "number":
        operand = float(cond.value)
    elif cond.op in conditions.COMPARISONS and cond.as_type == "timestamp":
        operand = pd.Timestamp(cond.value)
    return conditions.mask(left, cond.op, operand)


def cents(values: pd.Series) -> pd.Series:
    """Round money to cents half-to-even, the way decimal.ROUND_HALF_EVEN does.

    raw stores NUMERIC(18, 2), so summed order lines must be rounded once. Half-to-even is
    unbiased: the rounded orders of Superstore add up to its published total (2,326,534.35),
    where rounding halves up would drift by 24 cents. Binary noise of the float sum is
    removed first (at 1e-4 cent), so a true half cent is recognised as one.
    """
    return pd.Series(np.rint(np.round(values.to_numpy(dtype="float64") * 100, 4)) / 100, index=values.index)
