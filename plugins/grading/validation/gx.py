"""Great Expectations: an ephemeral context, the runner of a batch's expectations, Data Docs.

Each expectation with a SQL form is counted over the whole batch in one aggregate query per
table, which gives the verdict, and GX checks a sample holding the offending rows, with which it
must agree (grading.validation.aggregates): on PostgreSQL in the database, through a GX
postgres data source over a table of the sample; on the embedded DuckDB warehouse, for which
GX has no data source (its generic SQL source fails on DuckDB), as a pandas frame. An
expectation without a SQL form is checked over the whole batch: on PostgreSQL through a view of
exactly the batch's rows, on DuckDB in pandas frames of GRADING_VALIDATE_PART_ROWS rows split
by a hash of the unique column, so a large batch never sits in memory whole and a duplicate key
still meets its twin. The runner keeps each check's GX result (merged over the parts) for Data
Docs, which grading.validation.docs writes once every check of the batch has run;
GRADING_DATA_DOCS_DIR (default $GRADING_HOME/data_docs) says where. Great Expectations is
imported inside functions only: DAG files must not pay for it, and its loggers are quieted
first (importing it logs some 200 lines at INFO).
"""

from __future__ import annotations

import gc
import logging
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from grading.contract import SourceTable
from grading.frames import duckdb_memory_capped, duckdb_record_batches, read_frame, release_duckdb_memory
from grading.settings import grading_home, validate_part_rows, validate_sample_rows
from grading.validation import aggregates
from grading.validation.results import CheckResult, check_result, sample
from grading.validation.suites import COLUMN_SET, Check, Suite, expectation_parameters, load_suite

log = logging.getLogger("grading.validate")  # the stage's logger, under the name it had before the package

DATA_DOCS_ENV = "GRADING_DATA_DOCS_DIR"
DATA_DOCS_SITE = "grading"
_RESULTS_FOLDER = "_results"  # GX validation results (JSON) behind the Data Docs, inside the docs folder


def data_docs_dir() -> Path | None:
    """Where Data Docs go: GRADING_DATA_DOCS_DIR, default $GRADING_HOME/data_docs; ``off`` for none."""
    value = os.environ.get(DATA_DOCS_ENV, "").strip()
    if value.lower() in ("off", "none", "false", "0"):
        return None
    return Path(value) if value else grading_home() / "data_docs"


def quiet_gx_logging() -> None:
    """Keep Great Expectations' INFO and DEBUG records out of the task log; its warnings still pass.

    Importing GX logs a "Skipping registering function ..." line per public function (214 of
    them) and a few registry notes, at INFO; so the ``great_expectations`` logger is set to
    WARNING before the import, and again after it any GX logger that set a lower level itself.
    """
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if name.startswith("great_expectations.") and isinstance(logger, logging.Logger) \
                and logging.NOTSET < logger.level < logging.WARNING:
            logger.setLevel(logging.WARNING)


def _gx_context(docs: Path | None):
    """An ephemeral GX context: suites and definitions in memory, results and docs in ``docs``.

    Results are stored as JSON under the docs folder so the Data Docs index lists every
    earlier run too, not only this process's; without ``docs`` they stay in memory.
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    quiet_gx_logging()
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )
    from great_expectations.execution_engine import pandas_execution_engine

    # GX fingerprints every pandas batch under this many bytes (pandas' hash of every row, then
    # an md5) for a marker in the result's metadata that nothing here reads: 20 of 76 s when
    # validating the 31M rows of a first load at a million customers. 0: no batch is hashed.
    pandas_execution_engine.HASH_THRESHOLD = 0
    quiet_gx_logging()  # a GX module may have set its own logger's level while being imported
    defaults = InMemoryStoreBackendDefaults()
    stores, sites = dict(defaults.stores), {}
    if docs is not None:
        stores[defaults.validation_results_store_name] = {
            "class_name": "ValidationResultsStore",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                              "base_directory": str(docs / _RESULTS_FOLDER)},
        }
        sites = {DATA_DOCS_SITE: {
            "class_name": "SiteBuilder", "show_how_to_buttons": False,
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        }}
    config = DataContextConfig(store_backend_defaults=defaults, stores=stores, data_docs_sites=sites,
                               progress_bars=ProgressBarsConfig(globally=False), analytics_enabled=False)
    return gx, gx.get_context(project_config=config, mode="ephemeral")


def _counts_rows(check: Check) -> bool:
    """A GX check of each row (or pair of columns) that passes only when no row fails it."""
    return check.type.startswith(("expect_column_values_", "expect_column_pair_values_")) \
        and check.kwargs.get("mostly") is None


def _merged_gx_result(parts: list[tuple[Any, int | None]]):
    """One check's GX results over the parts of a batch, (result, rows of the part) each, as one.

    Data Docs show this. A failure anywhere fails it; a column check's rows, unexpected rows
    and sampled values add up (a part that passed was checked without detail: its rows count,
    with none unexpected). Other detail is the failing part's (else the first part's).
    """
    items = [item for item, _ in parts]
    if len(items) == 1:
        return items[0]
    base = next((item for item in items if not item.success), items[0])
    result = dict(base.result or {})
    if "unexpected_count" in result:
        details = [(item.result or {}, rows) for item, rows in parts]
        rows = sum(int(detail.get("element_count", part or 0)) for detail, part in details)
        missing = sum(int(detail.get("missing_count") or 0) for detail, _ in details)
        unexpected = sum(int(detail.get("unexpected_count") or 0) for detail, _ in details)
        for name in ("partial_unexpected_counts", "unexpected_index_query", "unexpected_percent_total",
                     "unexpected_percent_nonmissing", "missing_count", "missing_percent"):
            result.pop(name, None)  # of one part only: not to be shown as the batch's
        result.update(element_count=rows, unexpected_count=unexpected,
                      unexpected_percent=100.0 * unexpected / (rows - missing) if rows > missing else 0.0)
        for name in ("partial_unexpected_list", "partial_unexpected_index_list"):
            if name in result:
                result[name] = [value for detail, _ in details for value in detail.get(name) or []][:20]
    return type(base)(success=all(item.success for item in items), expectation_config=base.expectation_config,
                      result=result, exception_info=base.exception_info, meta=base.meta)


def _gx_run(gx, context, suite: Suite, parts: Iterable[tuple[Any, dict | None]], *, now: datetime,
            run_name: str, run_time: datetime, key_available: bool = True, pseudonymised: bool = False,
            expectations: Sequence[Check] | None = None) -> tuple[list[CheckResult], list]:
    """Run a suite's GX expectations over each part of a batch and merge the outcomes into results.

    ``parts`` yields (batch definition, batch parameters) one at a time, so only one part's
    rows need to be in memory. Column-map checks add up over parts (a failure anywhere fails
    the check, unexpected rows are summed, sample keys pooled); parts split by the unique
    column keep uniqueness exact (see _partition_column). Returns the results and, in the
    same order, each check's GX result merged over the parts (for Data Docs). ``expectations``:
    the suite's expectations to run, default all.
    """
    from great_expectations.core.run_identifier import RunIdentifier

    key = suite.spec.key
    chosen = suite.expectations if expectations is None else expectations
    gx_suite = context.suites.add(gx.ExpectationSuite(  # a suite's checks may run in two groups: two names
        name=f"{suite.name}_{chosen[0].index if chosen else 0}", expectations=[c.gx_config() for c in chosen],
        meta=dict(suite.meta)))
    merged: dict[int, dict[str, Any]] = {}
    gx_results: dict[int, list[tuple[Any, int | None]]] = {}
    for number, (data, batch_parameters) in enumerate(parts):
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"{suite.table}_batch_{number}", data=data, suite=gx_suite))
        def run(result_format: dict, definition=definition, batch_parameters=batch_parameters):
            return definition.run(
                batch_parameters=batch_parameters, result_format=result_format,
                expectation_parameters=expectation_parameters(suite, now),
                run_id=RunIdentifier(run_name=run_name, run_time=run_time))

        # Pass or fail first: the detail of a column check (a few offending values and their
        # keys) costs GX two more scans of the rows each, wasted on a clean batch. Only a part
        # where something failed is checked again for the detail (its result replaces the first).
        outcome = run({"result_format": "BOOLEAN_ONLY"})
        if not outcome.success:
            outcome = run({"result_format": "SUMMARY", "partial_unexpected_count": 20,
                           **({"unexpected_index_column_names": [key]} if key_available else {})})
        context.validation_definitions.delete(definition.name)  # it holds the part's data source
        frame = (batch_parameters or {}).get("dataframe")
        part_rows = None if frame is None else len(frame)
        del frame
        # GX's objects hold the part's frame in reference cycles; collect them before the next
        # part is read, or the worker grows by a part per part (3.6 instead of 2.0 GiB at 20M orders).
        gc.collect()
        for item in outcome.results:
            index = int(item.expectation_config.meta["check"])
            gx_results.setdefault(index, []).append((item, part_rows))
            detail = item.result or {}
            observed = detail.get("observed_value")
            if item.exception_info and item.exception_info.get("raised_exception"):
                observed = f"error: {item.exception_info.get('exception_message')}"
            unexpected = detail.get("unexpected_count")
            if unexpected is None and item.success and _counts_rows(suite.expectations[index]):
                unexpected = 0  # passed without detail: no row failed it (so Data Docs say, not "unknown")
                item.result = {"unexpected_count": 0, "unexpected_percent": 0.0, "partial_unexpected_list": []}
            rows = detail.get("partial_unexpected_index_list") or []
            seen = merged.setdefault(index, {"success": True, "unexpected": None, "observed": None, "keys": []})
            if seen["observed"] is None or (seen["success"] and not item.success):
                seen["observed"] = observed
            seen["success"] = seen["success"] and bool(item.success)
            if unexpected is not None:
                seen["unexpected"] = (seen["unexpected"] or 0) + int(unexpected)
            seen["keys"] += [row.get(key) for row in rows if isinstance(row, dict)]
    return [check_result(suite, suite.expectations[index], success=seen["success"],
                         unexpected=seen["unexpected"],
                         observed=None if seen["observed"] is None else str(seen["observed"]),
                         keys=sample(iter(seen["keys"])), pseudonymised=pseudonymised)
            for index, seen in sorted(merged.items())], \
        [_merged_gx_result(gx_results[index]) for index in sorted(gx_results)]


def check_frame(table: str, frame: pd.DataFrame, spec: SourceTable | None = None) -> list[CheckResult]:
    """Run the table's GX expectations over ``frame`` (no warehouse, no SQL checks, no docs).

    For unit tests and ad-hoc checks of a file before it is loaded; ``spec`` for a table
    not (yet) in the canonical schema.
    """
    suite = load_suite(table, spec)
    gx, context = _gx_context(None)
    data = context.data_sources.add_pandas("frames").add_dataframe_asset(table) \
        .add_batch_definition_whole_dataframe("batch")
    now = datetime.now(UTC)
    return _gx_run(gx, context, suite, [(data, {"dataframe": _for_gx(frame)})],
                   now=now.replace(tzinfo=None),
                   run_name="check_frame", run_time=now, key_available=suite.spec.key in frame.columns)[0]


def _gx_rows(spec: SourceTable) -> tuple[str, str]:
    """(columns, FROM clause) of the rows Great Expectations checks (alias ``r``): the canonical
    columns, a customer's id replaced by its pseudonym (ops.customer_keys), so that Data Docs
    and the stored GX results never hold a source id. A pseudonym is as unique and as missing
    as the id it stands for, so the checks find the same rows."""
    if spec.name == "customers":
        columns = ", ".join("k.customer_key AS customer_id" if c == "customer_id" else f"r.{c}" for c in spec.columns)
        return columns, "FROM raw.customers AS r LEFT JOIN ops.customer_keys AS k ON k.customer_id = r.customer_id"
    return ", ".join(f"r.{c}" for c in spec.columns), f"FROM raw.{spec.name} AS r"


_NS_BOUNDS = (pd.Timestamp.min, pd.Timestamp.max)


def _for_gx(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with its timestamp columns in nanoseconds where every value fits.

    GX's pandas engine compares a column with a bound vectorised only when the column is
    datetime64[ns]; DuckDB hands over microseconds, which GX checks one value at a time in
    Python (10 of 22 s for a 2M-order batch). The values compared are the same. A column
    holding a time outside nanosecond range (before 1677 or after 2262, e.g. a 9999-12-31
    sentinel) stays as it is, so the check still sees that value and reports it.
    """
    out = frame
    for column, dtype in frame.dtypes.items():
        if not pd.api.types.is_datetime64_dtype(dtype) or dtype == "datetime64[ns]":
            continue
        values = frame[column]
        low, high = values.min(), values.max()
        if pd.isna(low) or (_NS_BOUNDS[0] <= low and high <= _NS_BOUNDS[1]):
            out = out.copy() if out is frame else out
            out[column] = values.astype("datetime64[ns]")
    return out


def _partition_column(suite: Suite) -> str | None:
    """The column a large batch is split by: the one GX checks for uniqueness (else the key).

    Rows sharing a value of it land in the same part, so a duplicate is still found; a
    suite checking two columns for uniqueness is not split (None).
    """
    unique = {c.column for c in suite.expectations if c.type == "expect_column_values_to_be_unique"}
    if len(unique) > 1:
        return None
    return unique.pop() if unique else suite.spec.key


def _frame_parts(conn: Connection, suite: Suite, batch: datetime, part_rows: int) -> Iterator[pd.DataFrame]:
    """The batch's rows of one table as pandas frames of about ``part_rows`` rows each.

    GX's pandas engine holds several copies of a frame while it checks it: a 20M-order
    batch in one frame took the worker to 7 GiB. The rows are numbered by a hash of the
    partition column into a temporary table sorted by that number (the sort under a lower
    DuckDB limit), and each part is read from it (its row groups, found by their min/max),
    handed over, checked and dropped before the next is read. DuckDB's memory is released
    before the sort and each part: its cache would otherwise stay in the worker next to GX's
    copies (at 20M orders the stage peaked at 2.0 GiB; so, 1.2 GiB).
    """
    import pyarrow as pa

    columns, rows_from = _gx_rows(suite.spec)
    select, where = f"SELECT {columns}", f"{rows_from} WHERE r.extracted_at = ?"
    rows = conn.execute(sa.text(f"SELECT COUNT(*) FROM raw.{suite.table} WHERE extracted_at = :batch"),  # noqa: S608 - identifiers from the contract
                        {"batch": batch}).scalar_one()
    column = _partition_column(suite)
    parts = max(1, -(-rows // part_rows)) if column else 1

    def frame(batches: list) -> pd.DataFrame:
        return _for_gx(pa.Table.from_batches(batches).to_pandas())

    if parts == 1:
        batches = list(duckdb_record_batches(conn, f"{select} {where}", [batch], 1_000_000))
        # an empty batch streams no record batch: read it the plain way for its columns
        yield frame(batches) if batches else _for_gx(read_frame(
            conn, f"{select} {rows_from} WHERE r.extracted_at = :batch", {"batch": batch}))
        return
    log.info("checking %s rows of raw.%s in %s parts split by %s", rows, suite.table, parts, column)
    table = f"validate_parts_{uuid.uuid4().hex}"
    release_duckdb_memory(conn)  # what the previous table's parts left cached
    # the sort spills well, and the worker still holds what GX left of the previous table
    with duckdb_memory_capped(conn, "512MiB"):
        hashed = "k.customer_key" if suite.table == "customers" and column == "customer_id" else f"r.{column}"
        conn.exec_driver_sql(f"CREATE TEMPORARY TABLE {table} AS {select}, hash({hashed}) % ? AS part {where} "
                             "ORDER BY part", (parts, batch))
    for part in range(parts):
        release_duckdb_memory(conn)  # the sort's memory, then each earlier part's cached blocks
        part_rows = f"SELECT {', '.join(suite.spec.columns)} FROM {table} WHERE part = ?"  # noqa: S608 - our names
        batches = list(duckdb_record_batches(conn, part_rows, [part], 200_000))
        if batches:
            yield frame(batches)
    conn.exec_driver_sql(f"DROP TABLE {table}")


def _batch_views(warehouse: Engine, suites: Mapping[str, Suite], batch: datetime) -> dict[str, str]:
    """One view per table over the batch's rows, named after the batch so concurrent runs never share one."""
    stamp = batch.isoformat(sep=" ", timespec="microseconds")  # a datetime of ours, not user text
    views = {table: f"gx_batch_{table}_{batch:%Y%m%d%H%M%S%f}" for table in suites}
    with warehouse.begin() as conn:
        for table, suite in suites.items():
            columns, rows_from = _gx_rows(suite.spec)
            conn.execute(sa.text(f"CREATE OR REPLACE VIEW ops.{views[table]} AS SELECT {columns} {rows_from} "
                                 f"WHERE r.extracted_at = TIMESTAMP '{stamp}'"))
    return views


def _sample_batch(context, conn: Connection, suite: Suite, sample: str, source) -> tuple[Any, dict | None]:
    """GX's batch definition (and parameters) of the sample table: in the database through the
    postgres data source ``source``, else (DuckDB) a pandas frame of it."""
    if source is not None:
        return source.add_table_asset(f"{suite.table}_sample", table_name=sample.removeprefix("ops."),
                                      schema_name="ops").add_batch_definition_whole_table("batch"), None
    frame = _for_gx(read_frame(conn, f"SELECT * FROM {sample}"))  # noqa: S608 - our own name
    pandas = context.data_sources.add_pandas(f"sample_{suite.table}")
    return pandas.add_dataframe_asset(suite.table).add_batch_definition_whole_dataframe("batch"), {"dataframe": frame}


def _whole_batch(context, conn: Connection, suite: Suite, batch: datetime, source, views: Mapping[str, str]):
    """The whole batch for expectations with no SQL form: the batch's view in the database (PostgreSQL), or
    pandas frames of it a part at a time (DuckDB), each its own data source: GX's execution engine caches
    every batch and metric it saw (masks as long as the frame), so a shared one would hold them all."""
    if source is not None:
        yield source.add_table_asset(suite.table, table_name=views[suite.table], schema_name="ops") \
            .add_batch_definition_whole_table("batch"), None
        return
    for number, part in enumerate(_frame_parts(conn, suite, batch, validate_part_rows())):
        name = f"warehouse_{suite.table}_part_{number + 1}"
        yield context.data_sources.add_pandas(name).add_dataframe_asset(suite.table) \
            .add_batch_definition_whole_dataframe("batch"), {"dataframe": part}
        context.data_sources.delete(name)


def _check_suite(gx, context, conn: Connection, suite: Suite, batch: datetime, *, source, views: Mapping[str, str],
                 now: datetime, run_name: str, run_time: datetime) -> tuple[list[CheckResult], list]:
    """A suite's expectations over a batch: counted in SQL, GX on a sample that must agree.

    The expectations with a SQL form are counted over every row in one aggregate query and GX
    checks a sample holding their offending rows - in the database on PostgreSQL (``source``),
    as a pandas frame on DuckDB, which GX has no data source for - and must agree with SQL's
    counts on it (grading.validation.aggregates). Any other expectation is checked by GX over
    the whole batch (_whole_batch).
    """
    counted = [c for c in suite.expectations if aggregates.counted(c)]
    rest = [c for c in suite.expectations if not aggregates.counted(c) and c.type != COLUMN_SET]
    # what the previous tables' counts left cached: at a million customers the order lines' count
    # ran on top of it to 1.44 GiB (1.0 GiB held before it started)
    release_duckdb_memory(conn)
    relation = aggregates.batch_relation(conn, *_gx_rows(suite.spec))
    parameters = expectation_parameters(suite, now)
    counts = aggregates.count(conn, suite, counted, relation, {"batch": batch}, parameters)
    sample = aggregates.sample_table(conn, suite, counted, counts, relation, {"batch": batch}, parameters,
                                     validate_sample_rows())
    data = None
    try:
        data = _sample_batch(context, conn, suite, sample, source)
        on_sample, gx_results = _gx_run(gx, context, suite, [data], now=now, run_name=run_name, run_time=run_time,
                                        pseudonymised=True, expectations=[c for c in suite.expectations
                                                                          if c not in rest])
        aggregates.agree(conn, suite, counted, sample, on_sample, parameters)
    finally:
        aggregates.drop_sample(conn, sample)
        if source is None and data is not None:
            context.data_sources.delete(f"sample_{suite.table}")
    results = [aggregates.on_batch(result, counts) for result in on_sample]
    gx_results = [aggregates.batch_gx_result(item, counts) for item in gx_results]
    if rest:
        more, more_gx = _gx_run(gx, context, suite, _whole_batch(context, conn, suite, batch, source, views),
                                now=now, run_name=run_name, run_time=run_time, pseudonymised=True,
                                expectations=rest)
        results, gx_results = results + more, gx_results + more_gx
        order = sorted(range(len(results)), key=lambda i: results[i].check.index)
        results, gx_results = [results[i] for i in order], [gx_results[i] for i in order]
    return results, gx_results


def run_expectations(warehouse: Engine, suites: Mapping[str, Suite], batch: datetime, run_id: str,
                     now: datetime) -> tuple[list[CheckResult], dict[str, list]]:
    """Every suite's GX expectations over the batch; returns the results and, per table, the GX
    results behind them (for Data Docs, grading.validation.docs).

    On PostgreSQL GX queries the database itself (a sample table, and a view of the batch for
    an expectation with no SQL form); on DuckDB it checks pandas frames.
    """
    gx, context = _gx_context(None)
    run_time = datetime.now(UTC)
    results: list[CheckResult] = []
    gx_results: dict[str, list] = {}
    source, views = None, {}
    if warehouse.dialect.name == "postgresql":
        # Table assets, not query assets: for a query GX learns the columns by running it.
        source = context.data_sources.add_postgres(
            "warehouse", connection_string=warehouse.url.render_as_string(hide_password=False))
        views = _batch_views(warehouse, {table: suite for table, suite in suites.items()
                                         if any(not aggregates.counted(c) and c.type != COLUMN_SET
                                                for c in suite.expectations)}, batch)
    try:
        with warehouse.connect() as conn:
            for table, suite in suites.items():
                checked, gx_results[table] = _check_suite(gx, context, conn, suite, batch, source=source,
                                                          views=views, now=now, run_name=run_id, run_time=run_time)
                results += checked
    finally:
        if source is not None:
            # GX keeps a pooled engine in the data source and another in its execution engine;
            # neither may hold a connection once the stage ends.
            source.get_engine().dispose()
            source.get_execution_engine().engine.dispose()
            with warehouse.begin() as conn:
                for view in views.values():
                    conn.execute(sa.text(f"DROP VIEW IF EXISTS ops.{view}"))
    return results, gx_results

