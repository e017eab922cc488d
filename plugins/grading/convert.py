"""Source values to the canonical types, or an error a data engineer can act on.

Each converter takes one column of a source chunk and returns it typed, or raises
SourceDataError naming the source table, the column, how many rows are wrong and up to five
of them (key and value), and what to do. A customer's id is never shown - the message is
kept in audit.run_audit, which BI tools read - the offending value identifies the row instead.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from grading.errors import DataError

TRUE_WORDS = ("true", "t", "yes", "y", "1")
FALSE_WORDS = ("false", "f", "no", "n", "0")
EXAMPLES = 5
# raw keeps amounts as NUMERIC(18, 2): below 10^16 in magnitude
AMOUNT_LIMIT = 1e16
# A text timestamp starts with its date in ISO 8601 form; pandas would also read words such as 'now'.
_ISO_DATE = re.compile(r"^\s*[+-]?\d{4}-\d{2}-\d{2}")
_ACTION = "The extraction stopped and nothing is graded on this batch: correct the rows at the source"


class SourceDataError(DataError, ValueError):
    """Source rows cannot be read as the canonical schema; the message names table, column, rows and keys."""


def _examples(frame: pd.DataFrame, key: str | None, values: pd.Series, mask: pd.Series) -> str:
    """Up to EXAMPLES of the rows, by key (or value), so a message does not depend on row order."""
    shown = []
    rows = sorted(mask[mask].index, key=lambda i: str(frame.at[i, key] if key else values.at[i]))
    for index in rows[:EXAMPLES]:
        value = values.at[index]
        text = "missing" if pd.isna(value) else repr(value.item() if isinstance(value, np.generic) else value)
        if key is None:
            shown.append(text)
        else:
            shown.append(f"{key} {frame.at[index, key]!s}" + ("" if pd.isna(value) else f" = {text}"))
    return ", ".join(shown)


def fail(table: str, column: str, frame: pd.DataFrame, key: str | None, mask: pd.Series, values: pd.Series,
         problem: str, hint: str = "") -> SourceDataError:
    """The error for the rows of ``mask``: ``key`` None hides the keys (a customer's id)."""
    count = int(mask.sum())
    return SourceDataError(
        f"source table {table}, column {column}: {count} row(s) {problem} (e.g. {_examples(frame, key, values, mask)})."
        f" {_ACTION}{f' ({hint})' if hint else ''}, then rerun the period.")


def instants(values: pd.Series) -> tuple[pd.Series, pd.Series, str]:
    """Naive UTC timestamps (datetime64[us]) and the mask of values that denote no instant.

    Accepted: timestamps and dates, and ISO 8601 text (date-only, any precision, ``T`` or a
    space, ``Z`` or an offset, which is applied). Not accepted: numbers (an epoch number's
    unit would be a guess), other text formats (``15/11/2024``), words (``now``).
    """
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = pd.to_datetime(values, utc=True)
    else:
        text = values.astype("string")
        iso = text.str.match(_ISO_DATE).fillna(False).astype(bool)
        parsed = pd.to_datetime(text.where(iso), utc=True, format="ISO8601", errors="coerce")
    bad = parsed.isna() & values.notna()
    return parsed.dt.tz_localize(None).astype("datetime64[us]"), bad, \
        "hold a value that is not a time (ISO 8601 text or a timestamp; numbers and other formats need a mapping)"


def amounts(values: pd.Series) -> tuple[pd.Series, pd.Series, str]:
    """Floats, the mask of bad values and what is wrong with them."""
    numbers = pd.to_numeric(values, errors="coerce").astype("float64")
    not_number = numbers.isna() & values.notna()
    if not_number.any():
        return numbers, not_number, "hold a value that is not a number (a decimal comma or a currency sign?)"
    huge = ~np.isfinite(numbers.fillna(0)) | (numbers.abs() >= AMOUNT_LIMIT)
    return numbers, huge, "hold an amount that is infinite or too large to keep (at most 10^16)"


def whole_numbers(values: pd.Series) -> tuple[pd.Series, pd.Series, str]:
    numbers = pd.to_numeric(values, errors="coerce").astype("float64")
    bad = (numbers.isna() & values.notna()) | ((numbers % 1).fillna(0) != 0) | (numbers.abs() > 2**31 - 1)
    return numbers.where(~bad).astype("Int64"), bad, "hold a value that is not a whole number"


def flags(values: pd.Series) -> tuple[pd.Series, pd.Series, str]:
    if pd.api.types.is_bool_dtype(values):
        out = values.astype("boolean")
    elif pd.api.types.is_numeric_dtype(values):
        out = values.astype("float64").map({1.0: True, 0.0: False}).astype("boolean")
    else:
        words = values.astype("string").str.strip().str.lower()
        out = pd.Series(pd.NA, index=values.index, dtype="boolean")
        out[words.isin(TRUE_WORDS).fillna(False).astype(bool)] = True
        out[words.isin(FALSE_WORDS).fillna(False).astype(bool)] = False
    return out, out.isna() & values.notna(), \
        f"hold a value that is not yes/no ({'/'.join(TRUE_WORDS)} or {'/'.join(FALSE_WORDS)})"


def texts(values: pd.Series) -> tuple[pd.Series, pd.Series, str]:
    """Text as the warehouse keeps it; a NUL character is refused (PostgreSQL cannot store it)."""
    out = values.astype("string")
    return out, out.str.contains("\x00", regex=False).fillna(False).astype(bool), \
        "hold a NUL character (\\x00), which a text column cannot keep"
