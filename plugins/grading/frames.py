"""DataFrames in and out of the warehouse: reads through Arrow (DuckDB) or COPY (PostgreSQL), bulk
appends through COPY, and DuckDB's memory held in check while pandas works.

The frames these functions return have the same dtypes on DuckDB and PostgreSQL, so the code
above them does not care which warehouse it runs on.
"""

from __future__ import annotations

import io
import re
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.csv as pa_csv
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from grading.settings import DUCKDB_SIZE, duckdb_memory_limit
from grading.warehouse import quoted, sql_text


def read_frame(conn: Connection, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Run a query and return a DataFrame, via Arrow on DuckDB and on PostgreSQL.

    DuckDB hands its result over as Arrow; PostgreSQL sends it with COPY, parsed by
    pyarrow (``_read_frame_postgresql``), giving the dtypes DuckDB gives. Other databases,
    and PostgreSQL results with a type that has no Arrow mapping here (json, arrays,
    intervals, ...), come through the driver's row tuples.
    """
    params = dict(params or {})
    if conn.dialect.name == "postgresql":
        frame = _read_frame_postgresql(conn, sql, params)
        if frame is not None:
            return frame
    result = conn.execute(sa.text(sql), params)
    if conn.dialect.name == "duckdb":
        return result.cursor.fetch_df()
    return pd.DataFrame(result.fetchall(), columns=list(result.keys()))



# PostgreSQL result types read through COPY, as the Arrow types the CSV is parsed into; each
# becomes the pandas dtype DuckDB's fetch_df() gives for the same column. DATE is parsed as
# a timestamp because DuckDB hands dates over as datetime64[us].
_PG_ARROW_TYPES = {
    "text": pa.string(), "varchar": pa.string(), "bpchar": pa.string(), "name": pa.string(), "unknown": pa.string(),
    "int2": pa.int16(), "int4": pa.int32(), "int8": pa.int64(),
    "float4": pa.float32(), "float8": pa.float64(), "numeric": pa.float64(),
    "bool": pa.bool_(), "date": pa.timestamp("us"), "timestamp": pa.timestamp("us"),
    "timestamptz": pa.timestamp("us", "UTC"),
}



# integer and boolean columns holding NULLs become pandas' nullable dtypes, as on DuckDB
_NULLABLE = {pa.int16(): pd.Int16Dtype(), pa.int32(): pd.Int32Dtype(), pa.int64(): pd.Int64Dtype(),
             pa.bool_(): pd.BooleanDtype()}



_SELECT = re.compile(r"^(?:select|with)\b", re.IGNORECASE)



def _read_frame_postgresql(conn: Connection, sql: str, params: dict[str, Any]) -> pd.DataFrame | None:
    """The query's rows through ``COPY ... TO STDOUT`` parsed by pyarrow; None when a column
    has a type without an Arrow mapping or a value Arrow does not parse (a non-ISO DateStyle,
    say): the caller then reads row tuples.

    Row tuples cost one Python object per value: reading the 1M-customer feature table
    (~30 columns) that way took the churn, tiers and flags stages to a 2.6 GiB peak. COPY's
    CSV parsed into Arrow columns holds the text once and then plain arrays: a 1M-row ×
    30-column read measured 17.3 s at 3.3 GiB peak RSS as tuples, 5.6 s at 0.8 GiB this way.

    The column names and types come from the query wrapped in ``LIMIT 0`` (planned, not
    run); the COPY runs on the same connection, so it sees the open transaction's writes.
    psycopg binds the parameters client-side (COPY takes no server-side parameters).
    """
    # comment lines go: a value bound client-side into one (SQL files name their parameters
    # in comments) could end the comment early
    body = "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--")).strip().rstrip(";")
    if not _SELECT.match(body):
        return None  # only plain queries are wrapped: no statement is ever run twice
    described = conn.execute(sa.text(f"SELECT * FROM (\n{body}\n) AS q LIMIT 0"), params)  # noqa: S608 - the caller's query, values bound
    names = list(described.keys())
    types = [psycopg.postgres.types.get(column.type_code) for column in described.cursor.description]
    described.close()
    arrow_types = [_PG_ARROW_TYPES.get(t.name) if t else None for t in types]
    driver = conn.connection.driver_connection
    if None in arrow_types or len(set(names)) < len(names) or driver.info.encoding != "utf-8":
        return None
    compiled = sa.text(body).compile(dialect=conn.dialect)
    # mogrify merges the values the way cursor.copy(statement, params) does (PostgresClientQuery,
    # quoting by psycopg's dumpers), and unlike copy() it also undoes SQLAlchemy's %% escaping
    # when there are no parameters
    query = psycopg.ClientCursor(driver).mogrify(compiled.string, compiled.construct_params(params))
    statement = f"COPY (\n{query}\n) TO STDOUT WITH (FORMAT csv)"
    data = io.BytesIO()
    try:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for block in copy:
                data.write(block)
    except psycopg.Error as exc:  # raised as conn.execute would raise it
        raise sa.exc.DBAPIError.instance(statement, None, exc, psycopg.Error) from exc
    schema = pa.schema(list(zip(names, arrow_types, strict=True)))
    try:
        table = schema.empty_table() if data.tell() == 0 else pa_csv.read_csv(
            pa.py_buffer(data.getbuffer()),
            read_options=pa_csv.ReadOptions(column_names=names),
            parse_options=pa_csv.ParseOptions(newlines_in_values=True),
            # PostgreSQL writes NULL unquoted and empty, '' quoted; booleans as t / f
            convert_options=pa_csv.ConvertOptions(
                column_types=schema, null_values=[""], strings_can_be_null=True,
                quoted_strings_can_be_null=False, true_values=["t"], false_values=["f"]),
        )
    except pa.ArrowInvalid:  # a value Arrow cannot hold, such as a date of 'infinity'
        return None
    del data
    columns = {name: column.to_pandas(types_mapper=_NULLABLE.get if column.null_count else None)
               for name, column in zip(names, table.columns, strict=True)}
    return pd.DataFrame(columns, columns=names, copy=False)



def read_computed_frame(conn: Connection, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """The frame of a heavy query (aggregates, joins and windows over the raw tables), read so
    that the query's working memory and the frame are not held at the same time: see
    read_computed_frames."""
    return read_computed_frames(conn, [(sql, params)])[0]



def read_computed_frames(conn: Connection, queries: Sequence[tuple[str, Mapping[str, Any] | None]]
                         ) -> list[pd.DataFrame]:
    """The frames of several heavy queries, every query run before any frame is read.

    On DuckDB each result goes to a temporary table, the buffer pool is emptied after each
    (``release_duckdb_memory``), and only then are the tables read: the feature query at a
    million customers and its frame, read together, took a worker to 1.9 GiB; one after the
    other, 1.4 GiB (DuckDB limit 1 GiB). Other warehouses compute in their own server, so
    there this is read_frame for each.
    """
    if conn.dialect.name != "duckdb":
        return [read_frame(conn, sql, params) for sql, params in queries]
    tables = [_computed(conn, sql, params) for sql, params in queries]
    frames = []
    for table in tables:
        frames.append(read_frame(conn, f"SELECT * FROM {table}"))  # noqa: S608 - a generated name
        _drop_computed(conn, table)
    return frames


def _computed(conn: Connection, sql: str, params: Mapping[str, Any] | None) -> str:
    """A DuckDB temporary table holding the query's result, DuckDB's memory given back; its name."""
    table = f"computed_{uuid.uuid4().hex}"
    conn.execute(sa.text(f"CREATE TEMPORARY TABLE {table} AS\n{sql}"), dict(params or {}))
    release_duckdb_memory(conn)
    return table


def _drop_computed(conn: Connection, table: str) -> None:
    """Drop a _computed table once read (after a failure the connection's end drops it)."""
    conn.exec_driver_sql(f"DROP TABLE {table}")
    release_duckdb_memory(conn)



def read_computed_table(conn: Connection, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
    """The result of a heavy query as an Arrow table, computed first as read_computed_frame does.

    For a caller that types every column itself: DuckDB's ``fetch_df`` briefly holds about twice
    the frame while converting (a 1.1M-row CRM export: 2.1 GiB against 1.1 through Arrow), but
    its dtypes (nullable integers, dates) are what the other stages rely on, so read_frame keeps it.
    """
    if conn.dialect.name != "duckdb":
        return pa.Table.from_pandas(read_frame(conn, sql, params), preserve_index=False)
    table = _computed(conn, sql, params)
    rows = conn.connection.driver_connection.sql(f"SELECT * FROM {table}").to_arrow_table()  # noqa: S608 - a generated name
    _drop_computed(conn, table)
    return rows



def release_duckdb_memory(conn: Connection) -> None:
    """Give back the memory DuckDB holds once a query is done (a no-op elsewhere).

    DuckDB keeps the blocks it read cached until its memory limit is reached, so after a
    large query a worker stays at the limit while pandas works. Lowering the limit for a
    moment makes DuckDB evict (temporary data is written to its spill directory) and return
    the memory.
    """
    if conn.dialect.name == "duckdb":
        conn.exec_driver_sql("SET memory_limit = '128MiB'")
        conn.exec_driver_sql(f"SET memory_limit = '{duckdb_memory_limit()}'")  # a checked size



@contextmanager
def duckdb_memory_capped(conn: Connection, limit: str) -> Iterator[None]:
    """DuckDB's memory limit lowered to ``limit`` inside the block, for work that spills well
    (a sort) while the worker holds other things; restored to GRADING_DUCKDB_MEMORY_LIMIT
    after it. Elsewhere a no-op.

    The limit is the DuckDB instance's, shared by every connection of this process to the
    same file: a query another thread runs on that file meanwhile runs under the lower limit
    too. Airflow runs each task in a process of its own; only threads grading periods in
    parallel in one process (as a test does at small scale) could meet an Out of Memory
    Error this way at a million customers.
    """
    if conn.dialect.name != "duckdb":
        yield
        return
    if not DUCKDB_SIZE.match(limit):
        raise ValueError(f"not a DuckDB memory size: {limit!r}")
    conn.exec_driver_sql(f"SET memory_limit = '{limit}'")  # a checked size
    restore = f"SET memory_limit = '{duckdb_memory_limit()}'"  # a checked size
    try:
        yield
    except BaseException:
        # a failed statement aborts DuckDB's transaction, and every later one fails too: the
        # block's error is the one to raise (the connection is closed after it anyway)
        with suppress(sa.exc.DBAPIError):
            conn.exec_driver_sql(restore)
        raise
    conn.exec_driver_sql(restore)



def duckdb_record_batches(conn: Connection, sql: str, params: list[Any], rows: int) -> Iterator[Any]:
    """Stream a DuckDB query (``?`` parameters) as Arrow record batches of ``rows`` rows.

    Arrow hands DuckDB's columns over as they are: ``fetch_df`` and ``pd.read_sql`` build
    a Python object per string (4x slower for a million orders). DECIMAL columns come as
    float64, as the pipeline's frames hold amounts.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    duck = conn.connection.driver_connection
    for batch in duck.sql(sql, params=params).to_arrow_reader(rows):
        arrays = [pc.cast(a, pa.float64()) if pa.types.is_decimal(a.type) else a for a in batch.columns]
        yield pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)



def read_query_file(conn: Connection, name: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Run the single SELECT in ``include/sql/<name>.sql`` and return its rows."""
    return read_frame(conn, sql_text(name, conn.dialect.name), params)



# The NULL marker of bulk_insert's COPY. COPY's CSV default is an unquoted empty field, which is
# also what a CSV writer writes for an empty text, so '' arrived as NULL; with this marker '' stays ''.
_COPY_NULL = "\\N"



_COPY_SLICE_ROWS = 100_000



def bulk_insert(conn: Connection, qualified_table: str, frame: pd.DataFrame | pa.RecordBatch) -> int:
    """Append ``frame`` (a DataFrame or an Arrow record batch) to ``schema.table`` the fast way
    for the dialect; returns rows written.

    DuckDB reads the frame in place (Arrow); PostgreSQL takes COPY (measured 5x faster than
    ``to_sql`` at a million rows); any other database gets ``to_sql``.
    """
    if len(frame) == 0:
        return 0
    table = quoted(conn, qualified_table)
    preparer = conn.dialect.identifier_preparer
    names = list(frame.columns) if isinstance(frame, pd.DataFrame) else frame.schema.names
    columns = ", ".join(preparer.quote(c) for c in names)
    dialect = conn.dialect.name
    if dialect == "duckdb":
        duck = conn.connection.driver_connection
        view = f"bulk_{abs(hash((qualified_table, id(frame))))}"
        duck.register(view, frame)
        try:
            conn.exec_driver_sql(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {view}")  # noqa: S608 - identifiers from code constants, values bound
        finally:
            duck.unregister(view)
    elif dialect == "postgresql" and not isinstance(frame, pd.DataFrame):
        # pyarrow's CSV quotes every text and writes a null as an empty unquoted field: COPY's
        # CSV default, so '' stays ''. Faster than the DuckDB slices below (extracting 5M rows at M
        # into PostgreSQL: 19.7 -> 16.1 s), and no frame is needed.
        sink = io.BytesIO()
        pa_csv.write_csv(frame, sink, pa_csv.WriteOptions(include_header=False))
        with conn.connection.driver_connection.cursor().copy(
                f"COPY {table} ({columns}) FROM STDIN WITH (FORMAT csv)") as copy:
            copy.write(sink.getbuffer())
    elif dialect == "postgresql":
        frame = _whole_floats_as_integers(conn, table, columns, frame)
        cursor = conn.connection.driver_connection.cursor()
        with cursor.copy(f"COPY {table} ({columns}) FROM STDIN WITH (FORMAT csv, NULL '{_COPY_NULL}')") as copy:
            for text in _csv_slices(frame):
                copy.write(text)
    else:
        schema, _, name = qualified_table.rpartition(".")
        if not isinstance(frame, pd.DataFrame):
            frame = frame.to_pandas()
        frame.to_sql(name, conn, schema=schema or None, if_exists="append", index=False, chunksize=5000)
    return len(frame)


def append_batches(conn: Connection, qualified_table: str, schema: pa.Schema,
                   batches: Iterable[pa.RecordBatch]) -> int:
    """Append a stream of record batches (of ``schema``) to ``schema.table``; returns rows written.

    On DuckDB in one ``INSERT`` that scans the batches as they come: rows appended by many
    statements of one open transaction stay in memory whatever the memory limit (20M orders
    grew a worker to 1.7 GiB, against 0.5 GiB for one statement over a stream). Elsewhere
    batch by batch through bulk_insert. An exception raised while producing the batches (a
    source value refused) is raised as it is, not as the database's error about the stream.
    """
    if conn.dialect.name != "duckdb":
        return sum(bulk_insert(conn, qualified_table, batch) for batch in batches)
    written, failure = 0, None

    def counted() -> Iterator[pa.RecordBatch]:
        nonlocal written, failure
        try:
            for batch in batches:
                written += batch.num_rows
                yield batch
        except BaseException as exc:
            failure = exc
            raise

    duck = conn.connection.driver_connection
    view = f"stream_{uuid.uuid4().hex}"
    duck.register(view, pa.RecordBatchReader.from_batches(schema, counted()))
    columns = ", ".join(conn.dialect.identifier_preparer.quote(c) for c in schema.names)
    try:
        conn.exec_driver_sql(f"INSERT INTO {quoted(conn, qualified_table)} ({columns}) "  # noqa: S608 - quoted identifiers
                             f"SELECT {columns} FROM {view}")
    except Exception:
        with suppress(Exception):  # fails in the aborted transaction, whose rollback drops the view
            duck.unregister(view)
        if failure is not None:
            raise failure from None
        raise
    duck.unregister(view)
    return written



def _csv_slices(frame: pd.DataFrame) -> Iterator[bytes]:
    """The frame as CSV for PostgreSQL's COPY, _COPY_SLICE_ROWS rows at a time.

    Written by an in-memory DuckDB (C++, every core) rather than ``DataFrame.to_csv``, which
    was 60 % of extracting 2.9M rows into PostgreSQL (9 of 15 s). DuckDB quotes a text that
    reads like its NULL marker, so a text "\\N" stays a text. In slices: the CSV of a million
    rows at once was another few hundred MB in the worker.
    """
    import duckdb

    with tempfile.TemporaryDirectory(prefix="grading-copy-") as folder, duckdb.connect() as duck:
        path = Path(folder) / "slice.csv"
        for start in range(0, len(frame), _COPY_SLICE_ROWS):
            duck.register("slice", frame.iloc[start:start + _COPY_SLICE_ROWS])
            # our own temporary path
            duck.execute(f"COPY slice TO '{path}' (FORMAT csv, HEADER false, NULLSTR '{_COPY_NULL}', "
                         "TIMESTAMPFORMAT '%Y-%m-%d %H:%M:%S.%f')")
            duck.unregister("slice")
            yield path.read_bytes()



_PG_INTEGER_TYPES = {psycopg.postgres.types[name].oid for name in ("int2", "int4", "int8")}



def _whole_floats_as_integers(conn: Connection, table: str, columns: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Float columns bound for integer columns, written as integers when every value is whole.

    read_frame gives PostgreSQL NUMERIC (such as SUM of a BIGINT) as float64, as DuckDB gives
    its HUGEINT and DECIMAL; DuckDB casts 7.0 into a BIGINT column, PostgreSQL's COPY rejects
    the text "7.0".
    """
    target = conn.execute(sa.text(f"SELECT {columns} FROM {table} LIMIT 0")).cursor.description  # noqa: S608 - identifiers quoted
    whole = {name: frame[name].astype("Int64") for name, column in zip(frame.columns, target, strict=True)
             if column.type_code in _PG_INTEGER_TYPES and frame[name].dtype.kind == "f"
             and (frame[name].dropna() % 1 == 0).all()}
    return frame.assign(**whole) if whole else frame
