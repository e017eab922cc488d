"""Source values to the canonical types, or an error a data engineer can act on.

Each converter takes one column of a source chunk and returns it typed, or raises
SourceDataError naming the source table, the column, how many rows are wrong and up to five
of them (key and value), and what to do. A customer's id is never shown - the message is
kept in audit.run_audit, which BI tools read - the offending value identifies the row instead.

to_canonical applies them to a pandas chunk of a source table; canonical_batch takes an Arrow
batch and, when a typed source already holds canonical values, only checks and casts it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from grading.contract import SourceTable
from grading.errors import DataError
from grading.keys import pseudonym
from grading.settings import pseudonym_key

if TYPE_CHECKING:
    import pyarrow as pa

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


def to_canonical(spec: SourceTable, frame: pd.DataFrame) -> pd.DataFrame:
    """Give a source chunk the canonical types: text keys, naive UTC timestamps, floats.

    A value that cannot be typed, and a missing value where raw needs one (the event time
    places a row in a period), raise SourceDataError naming table, column, rows and keys.
    """
    key = None if spec.key == "customer_id" else spec.key  # a customer's id never goes into a message
    out = pd.DataFrame(index=frame.index)
    for column in spec.columns:
        values = frame[column]
        out[column], bad, problem = CONVERTERS[spec.kind(column)](values)
        if bad.any():
            shown = values if column != "customer_id" else _pseudonyms(values.where(bad))
            raise fail(spec.name, column, frame, key, bad, shown, problem)
        if column in _needed(spec) and values.isna().any():
            hint = "a row without it cannot be placed in a period" if column == spec.event_time \
                else "raw requires it"
            raise fail(spec.name, column, frame, key, values.isna(), values, f"have no {column} ({hint})")
    return out


CONVERTERS = {"timestamp": instants, "amount": amounts, "integer": whole_numbers, "flag": flags, "text": texts}


def _needed(spec: SourceTable) -> set[str]:
    """The columns a raw row cannot be without (the key and customer_id are checked by validation)."""
    return {spec.event_time, *spec.required} - {spec.key, "customer_id"}


def _pseudonyms(ids: pd.Series) -> pd.Series:
    """Customer ids as they may appear in a message: ``customer_key <pseudonym>``."""
    secret = pseudonym_key()
    return ids.map(lambda i: f"customer_key {pseudonym(str(i), secret)}", na_action="ignore")


def arrow_schema(spec: SourceTable) -> pa.Schema:
    """The Arrow schema of a table's canonical rows, as raw receives them (amounts as floats,
    which the warehouse stores as NUMERIC(18, 2))."""
    import pyarrow as pa

    types = {"timestamp": pa.timestamp("us"), "amount": pa.float64(), "integer": pa.int64(),
             "flag": pa.bool_(), "text": pa.string()}
    return pa.schema([(column, types[spec.kind(column)]) for column in spec.columns])


def canonical_batch(spec: SourceTable, batch: pa.RecordBatch) -> pa.RecordBatch:
    """A source batch in the canonical Arrow schema, or SourceDataError as to_canonical words it.

    A typed source (DuckDB, Parquet) usually has canonical column types already and nothing to
    refuse: then the batch is only checked and cast in Arrow, with no Python object per value
    (the pandas round trip was most of extracting 20M orders). Anything else - text
    timestamps, a NUL, an amount too large, a missing event time - goes through to_canonical,
    so its converters stay the one definition of what is accepted and how an error reads.
    """
    typed = _typed_columns(spec, batch)
    if typed is not None:
        return typed
    return frame_batch(spec, to_canonical(spec, batch.to_pandas()))


def frame_batch(spec: SourceTable, frame: pd.DataFrame) -> pa.RecordBatch:
    """A frame of canonical rows (to_canonical's) as a record batch of arrow_schema.

    Through a table: a pandas string column is Arrow-backed, and may hold several chunks (a
    mapped file's rows put together), which a record batch cannot take as they are.
    """
    import pyarrow as pa

    schema = arrow_schema(spec)
    table = pa.Table.from_pandas(frame[list(spec.columns)], schema=schema, preserve_index=False).combine_chunks()
    batches = table.to_batches()
    return batches[0] if batches else pa.RecordBatch.from_pylist([], schema=schema)


def _typed_columns(spec: SourceTable, batch: pa.RecordBatch) -> pa.RecordBatch | None:
    """The batch cast to arrow_schema when every column is already of its canonical type and
    holds no value to_canonical would refuse or change; None otherwise."""
    import pyarrow as pa
    import pyarrow.compute as pc

    schema, needed, arrays = arrow_schema(spec), _needed(spec), []
    for field in schema:
        values = batch.column(field.name)
        kind, arrow_type = spec.kind(field.name), values.type
        if field.name in needed and values.null_count:
            return None
        if kind == "timestamp":
            ok = pa.types.is_timestamp(arrow_type) and arrow_type.tz is None and arrow_type.unit in ("s", "ms", "us")
        elif kind == "amount":  # NaN fails the bound too, and goes to to_canonical
            ok = (pa.types.is_floating(arrow_type) or arrow_type in (pa.int8(), pa.int16(), pa.int32())) \
                and pc.all(pc.less(pc.abs(values), AMOUNT_LIMIT)).as_py() is not False
        elif kind == "integer":
            bounds = pc.min_max(values).as_py() if pa.types.is_integer(arrow_type) else {}
            ok = pa.types.is_integer(arrow_type) and all(v is None or abs(v) <= 2**31 - 1 for v in bounds.values())
        elif kind == "flag":
            ok = pa.types.is_boolean(arrow_type)
        else:
            ok = (pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)) \
                and not pc.any(pc.match_substring(values, "\x00")).as_py()
        if not ok:
            return None
        arrays.append(values.cast(field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
