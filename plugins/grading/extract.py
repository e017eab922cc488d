"""Extract: copy the source rows of a data interval into the warehouse's raw layer.

Extraction is incremental by a watermark per source table: each run reads from the
watermark (how far validated batches reach) less a look-back for late-arriving rows, up to
the as-of instant, and replaces exactly those rows in raw. The first run reads all history
before the as-of date. Rerunning a period re-reads the same window and writes the same rows.

Every extraction is one batch of the ledger (grading.ledger): opened before the first row is
written, taking over the rows of any earlier batch left without a verdict, and marked
extracted once every table is in; the watermarks move only when validation passes it.
Windows are compared as instants in the source (grading.source_window), and every value is
typed or refused with the table, column, rows and keys (grading.convert).

Rows come either from a SQL source already in the canonical schema (the default), or
through a source mapping (grading.sources) from a real export: a SQL database with its own
names, or CSV / Parquet file drops. Both paths share the window, the replacement and the
watermark, so a file drop is exactly as incremental and idempotent as a database.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from grading import ledger, source_window
from grading.contract import SOURCE_TABLES, SourceTable
from grading.convert import SourceDataError, arrow_schema, canonical_batch, fail, frame_batch, to_canonical
from grading.frames import append_batches, duckdb_record_batches, read_frame
from grading.keys import hmac_pads, pseudonym
from grading.sources import MappedSource, SourceMapping
from grading.warehouse import analyze, exclusive, held_lock, sql_text

log = logging.getLogger(__name__)

CHUNK_ROWS = 200_000


def extract_window(previous: datetime | None, cutoff: datetime,
                   lookback: timedelta) -> tuple[datetime | None, datetime]:
    """The [start, cutoff) window to (re)extract; start None means all history."""
    if previous is None:
        return None, cutoff
    return min(previous, cutoff) - lookback, cutoff


# Reads the canonical rows of one table in [start, cutoff) (start None: all history), as record
# batches of convert.arrow_schema. A reader that queries the warehouse connection it is given does
# so when called, not while its batches are consumed: they stream into an INSERT on that connection.
Reader = Callable[[Connection, datetime | None, datetime], Iterable[pa.RecordBatch]]


def _in_window(spec: SourceTable, batch: pa.RecordBatch, start: datetime | None, cutoff: datetime) -> pa.RecordBatch:
    """The rows of a converted batch inside [start, cutoff), for sources filtered with a margin."""
    event = batch.column(spec.event_time)
    inside = pc.less(event, pa.scalar(cutoff, event.type))
    if start is not None:
        inside = pc.and_(inside, pc.greater_equal(event, pa.scalar(start, event.type)))
    return batch.filter(inside)


def _duckdb_chunks(source: Engine, spec: SourceTable, start: datetime | None,
                   end: datetime, typed: bool) -> Iterable[pa.RecordBatch]:
    """A DuckDB source's window as Arrow record batches, a chunk at a time.

    ``pd.read_sql`` turns every value into a Python object and back (7 of 10 s extracting
    2M orders); Arrow hands DuckDB's columns over as they are, and canonical ones go on to the
    warehouse without pandas (convert.canonical_batch). A timestamp column is compared in
    DuckDB; a text one is read whole and cut once converted (grading.source_window).
    """
    preparer = source.dialect.identifier_preparer
    columns = ", ".join(preparer.quote(c) for c in spec.columns)
    event, params = preparer.quote(spec.event_time), []
    sql = f"SELECT {columns} FROM {preparer.quote(spec.name)}"  # noqa: S608 - contract identifiers
    if typed:
        # contract identifiers, values bound
        sql += f" WHERE ({event} < ?{f' AND {event} >= ?' if start is not None else ''}) OR {event} IS NULL"
        params = [end] if start is None else [end, start]
    with source.connect() as sconn:
        for batch in duckdb_record_batches(sconn, sql, params, CHUNK_ROWS):
            canonical = canonical_batch(spec, batch)
            yield canonical if typed else _in_window(spec, canonical, start, end)


def canonical_reader(source: Engine, spec: SourceTable) -> Reader:
    """Read a source table that is already in the canonical schema, streaming large windows.

    An optional table (interactions) that the source does not have yields no rows; a missing
    required table is a SourceDataError.
    """
    def read(_wconn: Connection, start: datetime | None, end: datetime) -> Iterable[pa.RecordBatch]:
        declared = source_window.source_columns(source, spec.name)
        if not declared:
            if spec.optional:
                log.info("the source has no %s table (optional): none extracted", spec.name)
                return
            raise SourceDataError(f"the source has no table {spec.name!r}, which the canonical schema requires "
                                  f"(columns {', '.join(spec.columns)}). Create it (it may be empty) or read the "
                                  "source through a mapping (GRADING_SOURCE_MAPPING), then rerun the period.")
        missing = [c for c in spec.columns if c not in declared]
        if missing:
            raise SourceDataError(
                f"source table {spec.name} has no column {', '.join(missing)}, which the canonical schema requires; "
                f"its columns are {', '.join(declared)}. Add or rename the column at the source, or map the table "
                "with a source mapping (GRADING_SOURCE_MAPPING), then rerun the period.")
        typed = source_window.is_typed(source, declared[spec.event_time])
        if source.dialect.name == "duckdb":
            yield from _duckdb_chunks(source, spec, start, end, typed)
            return
        where, cut = source_window.where_in_window(source, sa.column(spec.event_time), start, end, typed)
        query = sa.select(*(sa.column(c) for c in spec.columns)).select_from(sa.table(spec.name))
        if where is not None:
            query = query.where(where)
        # stream_results: a server-side cursor on PostgreSQL / MySQL, so a large window
        # arrives in chunks instead of all at once.
        with source.connect().execution_options(stream_results=True, max_row_buffer=CHUNK_ROWS) as sconn:
            try:
                for chunk in pd.read_sql(query, sconn, chunksize=CHUNK_ROWS):
                    canonical = frame_batch(spec, to_canonical(spec, chunk))
                    yield _in_window(spec, canonical, start, end) if cut else canonical
            except (sa.exc.OperationalError, pd.errors.DatabaseError) as exc:
                undecodable = _UNDECODABLE.search(str(exc))
                if undecodable is None or source.dialect.name != "sqlite":
                    raise
                raise _not_utf8(source, spec, undecodable.group(1)) from exc
    return read


# SQLite's driver, on a text that is not UTF-8: "Could not decode to UTF-8 column 'region' with text ..."
_UNDECODABLE = re.compile(r"Could not decode to UTF-8 column '([^']+)'")


def _not_utf8(source: Engine, spec: SourceTable, column: str) -> SourceDataError:
    """The rows of a SQLite source whose ``column`` holds bytes that are not UTF-8 text."""
    if column not in spec.columns:
        return SourceDataError(f"source table {spec.name}: column {column} holds text that is not UTF-8")
    with source.connect() as conn:
        rows = conn.execute(sa.select(sa.column(spec.key), sa.cast(sa.column(column), sa.LargeBinary))
                            .select_from(sa.table(spec.name))).all()
    keys, values = [], []
    for key, raw in rows:
        try:
            bytes(raw or b"").decode("utf-8")
        except UnicodeDecodeError:
            keys.append(key)
            values.append(bytes(raw))
    frame = pd.DataFrame({spec.key: keys, column: values})
    return fail(spec.name, column, frame, None if spec.key == "customer_id" else spec.key,
                pd.Series(True, index=frame.index), frame[column], "hold text that is not UTF-8",
                "or read the source with a mapping that declares its encoding")


def mapped_reader(mapped: MappedSource, spec: SourceTable, rejected: dict[str, dict[str, int]]) -> Reader:
    """Read a table through a source mapping; rows it rejects are counted into ``rejected``.

    The mapping reads the whole window when called (it asks the warehouse which customers are known).
    """
    def read(wconn: Connection, start: datetime | None, end: datetime) -> list[pa.RecordBatch]:
        def known_customers() -> set[str]:
            rows = read_frame(wconn, "SELECT customer_id FROM raw.customers WHERE created_at < :start",
                              {"start": start})
            return set(rows["customer_id"].astype(str))

        result = mapped.read_table(spec.name, start, end, known_customers)
        if result.rejected:
            rejected[spec.name] = dict(sorted(result.rejected.items()))
        return [frame_batch(spec, result.frame)]
    return read


def extract_table(source: Engine | None, warehouse: Engine, spec: SourceTable, cutoff: datetime,
                  lookback: timedelta, batch: datetime, read: Reader | None = None) -> int:
    """Replace the table's window in raw with the source's rows; returns rows extracted.

    The window starts at the table's watermark (what validated batches cover) less the
    look-back. ``read`` supplies the rows (default: the canonical SQL table of ``source``).
    The window is deleted, the rows written and the window recorded in the batch ledger in
    one transaction, so a source that fails to convert halfway leaves raw as it was. The rows
    stream from the source into one write (frames.append_batches): on DuckDB a single
    ``INSERT`` scanning the batches as they are read, which keeps 20M orders within the
    memory limit without a staging copy.
    """
    read = read or canonical_reader(source, spec)
    with exclusive(warehouse, f"grading.extract.{spec.name}") as wconn:
        start, end = extract_window(ledger.watermark(wconn, spec.name), cutoff, lookback)
        delete = f"DELETE FROM raw.{spec.name} WHERE {spec.event_time} < :cutoff"  # noqa: S608 - identifiers from code constants, values bound
        params = {"cutoff": end}
        if start is not None:
            delete += f" AND {spec.event_time} >= :start"
            params["start"] = start
        wconn.execute(sa.text(delete), params)
        schema = arrow_schema(spec).append(pa.field("extracted_at", pa.timestamp("us")))
        stamp = np.datetime64(batch, "us")
        rows = append_batches(wconn, f"raw.{spec.name}", schema, (
            part.append_column("extracted_at", pa.array(np.full(part.num_rows, stamp)))
            for part in read(wconn, start, end)))
        ledger.record_window(wconn, batch, spec.name, start, end, rows)
    log.info("extracted %s rows of %s for [%s, %s)", rows, spec.name, start or "beginning", end)
    return rows


def register_customer_keys(warehouse: Engine, key: bytes) -> int:
    """Give every extracted customer without one a pseudonymous key; returns keys added.

    The keyed hash is computed in the warehouse (include/sql/extract/customer_keys.sql), the
    HMAC of keys.pseudonym from its two padded keys, rather than a Python call per customer.
    """
    inner, outer = hmac_pads(key)
    with exclusive(warehouse, "grading.customer_keys") as conn:
        return conn.execute(sa.text(sql_text("extract/customer_keys", conn.dialect.name)),
                            {"inner": inner, "outer": outer}).rowcount


def extract(source: Engine | None, warehouse: Engine, as_of: datetime, pseudonym_key: bytes, batch: datetime,
            lookback: timedelta = timedelta(days=3), mapping: SourceMapping | None = None,
            run_id: str = "extract") -> dict[str, Any]:
    """Extract every source table up to ``as_of`` (exclusive) as one batch; returns rows per table.

    ``batch`` stamps every row written (raw.*.extracted_at), so validation checks exactly
    the rows this run brought in - and those of earlier batches left without a verdict,
    which the batch takes over (``absorbed``: how many). With a ``mapping``, rows come
    through it (``source`` is then the SQL source of a SQL mapping, or None for a file drop),
    and the result also holds ``rejected``: per table, the rows of the window the mapping
    could not key or place, by reason (e.g. ``{"orders": {"missing customer_id": 135080}}``).
    """
    rejected: dict[str, dict[str, int]] = {}
    if mapping is None:
        readers = {name: canonical_reader(source, spec) for name, spec in SOURCE_TABLES.items()}
    else:
        mapped = MappedSource(mapping, source)
        readers = {name: mapped_reader(mapped, spec, rejected) for name, spec in SOURCE_TABLES.items()}
    suppressed: dict[str, int] = {}
    erased = _erased_keys(warehouse)
    if erased:
        readers = {name: _without_erased(read, name, erased, pseudonym_key, suppressed)
                   for name, read in readers.items()}
    with held_lock(warehouse, ledger.EXTRACTION_LOCK):
        absorbed = ledger.open_batch(warehouse, batch, run_id, as_of.date(), _now())
        rows: dict[str, Any] = {
            name: extract_table(source, warehouse, spec, as_of, lookback, batch, read=readers[name])
            for name, spec in SOURCE_TABLES.items()
        }
        rows["customer_keys_added"] = register_customer_keys(warehouse, pseudonym_key)
        with warehouse.begin() as conn:
            analyze(conn, *(f"raw.{name}" for name in SOURCE_TABLES), "ops.customer_keys")
        ledger.mark_extracted(warehouse, batch, _now())
    if absorbed:
        rows["absorbed"] = len(absorbed)
    if any(suppressed.values()):
        rows["suppressed"] = {table: n for table, n in suppressed.items() if n}
    if mapping is not None:
        rows["rejected"] = rejected
        for table, reasons in rejected.items():
            for reason, count in reasons.items():
                log.warning("rejected %d %s row(s) of the window: %s", count, table, reason)
    return rows


def _erased_keys(warehouse: Engine) -> frozenset[str]:
    """The pseudonyms of erased customers (ops.erasures): the suppression list."""
    with warehouse.connect() as conn:
        return frozenset(conn.execute(sa.text("SELECT customer_key FROM ops.erasures")).scalars())


def _without_erased(read: Reader, table: str, erased: frozenset[str], key: bytes,
                    suppressed: dict[str, int]) -> Reader:
    """``read``, less the rows of erased customers, counted into ``suppressed``: a customer erased
    from the warehouse but still in the source is skipped, not graded (nor failed on)."""
    def filtered(conn: Connection, start: datetime | None, end: datetime) -> Iterable[pa.RecordBatch]:
        def kept(batch: pa.RecordBatch) -> pa.RecordBatch:
            ids = batch.column("customer_id").to_pandas()
            keys = {i: pseudonym(str(i), key) for i in ids.dropna().unique()}
            dropped = ids.map(keys).isin(erased)
            suppressed[table] = suppressed.get(table, 0) + int(dropped.sum())
            return batch.filter(pa.array(~dropped.to_numpy(dtype=bool)))
        return map(kept, read(conn, start, end))  # read called now: see Reader
    return filtered


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)
