"""Validate: gate each extracted batch before anything is published.

Each source table has a suite in include/expectations/<table>.json with two kinds of check:

- ``expectations``: Great Expectations 1.x expectations, run by an ephemeral GX context
  created here (no cloud, no network). On PostgreSQL they run as SQL inside the database
  through a GX postgres data source whose table asset is a view of exactly the batch's
  rows (found by index), so the work scales with the server instead of pulling rows into
  Python. GX has no DuckDB data source (and its generic SQL source fails on DuckDB), so on
  the embedded warehouse the batch is read into pandas frames, which GX supports best, in
  parts of GRADING_VALIDATE_PART_ROWS rows split by a hash of the unique column, so a
  large batch never sits in memory whole and a duplicate key still meets its twin.
- ``checks``: what GX cannot express across tables or batches - customers referenced,
  keys loaded by an earlier batch, rows older than their customer, an empty period, the
  period's volume against the previous ones, the raw columns' types, and the share of the
  batch that row-level checks would quarantine. They run as plain SQL on either warehouse
  and are reported in the same way.

Every check has a severity. ``critical``: the run stops before anything is published; the
batch's raw rows are removed and the tables' extraction watermarks rewound, so no later
run grades on rows that failed and the next run re-extracts them. ``row``: the offending
rows move from raw.<table> to ops.quarantine (with the check, the reason and the row as
JSON) in one transaction, and the run continues on the good rows.

The verdict - passed or rejected - is the batch's in the ledger (grading.ledger): only a
batch that extraction completed and nothing else took over is validated, and only a passed
one moves the extraction watermarks. Every result goes to marts.validation_results (with a
few offending keys and a message saying what to do), GX Data Docs HTML is written to
GRADING_DATA_DOCS_DIR (default $GRADING_HOME/data_docs), and the outcome of each batch per
table to ops.validation_batches.
Great Expectations is imported inside functions only: DAG files must not pay for it.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from grading import ledger, privacy
from grading.contract import SOURCE_TABLES, SourceTable
from grading.keys import pseudonym
from grading.settings import grading_home, include_dir, pseudonym_key, validate_part_rows
from grading.warehouse import (
    bulk_insert,
    duckdb_memory_capped,
    duckdb_record_batches,
    exclusive,
    read_frame,
    release_duckdb_memory,
)

log = logging.getLogger(__name__)

SAMPLE_KEYS = 5
SEVERITIES = ("critical", "row")
DATA_DOCS_ENV = "GRADING_DATA_DOCS_DIR"
DATA_DOCS_SITE = "grading"
_RESULTS_FOLDER = "_results"  # GX validation results (JSON) behind the Data Docs, inside the docs folder

# GX expectations that may be row-level: the quarantine moves their offending rows with SQL,
# so each needs a translation into a SQL predicate (see _gx_predicate).
_ROW_LEVEL_GX = {
    "expect_column_values_to_be_between", "expect_column_values_to_be_in_set",
    "expect_column_values_to_not_be_null", "expect_column_pair_values_a_to_be_greater_than_b",
}
_SQL_CHECKS = {
    "expect_columns_to_have_usable_types", "expect_column_values_to_reference_known_customers",
    "expect_keys_not_loaded_by_an_earlier_batch", "expect_event_time_not_before_customer_created",
    "expect_interval_not_empty", "expect_interval_volume_within_band", "expect_quarantined_share_at_most",
}
# The bound on row-level failures: more than this share of a table's batch quarantined stops
# the run (a suite may set its own in an expect_quarantined_share_at_most check).
QUARANTINE_SHARE = "expect_quarantined_share_at_most"
DEFAULT_MAX_QUARANTINE_SHARE = 0.05
DEFAULT_QUARANTINE_MIN_ROWS = 10  # up to this many rows may be quarantined whatever their share
# $PARAMETER earliest_time of the suites: an event time before it is not plausible.
EARLIEST_TIME = datetime(1900, 1, 1)
_ROW_LEVEL_SQL = {"expect_column_values_to_reference_known_customers", "expect_event_time_not_before_customer_created"}


class ValidationFailed(RuntimeError):
    """Critical checks failed: nothing of the period was published."""


class SuiteError(ValueError):
    """A suite file is malformed; raised before any data is touched."""


# ---------------------------------------------------------------------------------------
# Suites


@dataclass(frozen=True)
class Check:
    """One check of a suite: a GX expectation (``by_gx``) or a SQL check run here."""

    type: str
    kwargs: Mapping[str, Any]
    severity: str
    action: str
    reason: str
    by_gx: bool
    index: int  # position in its list, to find the check again from a GX result

    @property
    def column(self) -> str | None:
        return self.kwargs.get("column") or self.kwargs.get("column_A")

    def gx_config(self) -> dict[str, Any]:
        """The expectation as GX takes it; meta carries what the gate needs back from results."""
        return {"type": self.type, "kwargs": dict(self.kwargs),
                "meta": {"severity": self.severity, "action": self.action, "reason": self.reason,
                         "check": self.index}}


@dataclass(frozen=True)
class Suite:
    """A table's checks, loaded from its JSON file and checked against the canonical schema."""

    table: str
    name: str
    spec: SourceTable
    expectations: tuple[Check, ...]
    checks: tuple[Check, ...]
    future_tolerance: timedelta
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def row_level(self) -> list[Check]:
        return [c for c in (*self.expectations, *self.checks) if c.severity == "row"]


def suite_path(table: str) -> Path:
    return include_dir() / "expectations" / f"{table}.json"


def load_suite(table: str, spec: SourceTable | None = None) -> Suite:
    """Read and check include/expectations/<table>.json against the canonical schema.

    Checked here, before any data is touched, because a typo in a suite would otherwise
    show up as a failed check on good data, or - for row-level checks - as rows moved
    to quarantine for the wrong reason.
    """
    spec = spec or SOURCE_TABLES[table]
    path = suite_path(table)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SuiteError(f"{path}: cannot read the suite: {exc}") from exc
    columns = set(spec.columns)

    def parse(item: Mapping[str, Any], where: str, index: int, by_gx: bool) -> Check:
        kind, kwargs, meta = item.get("type"), item.get("kwargs") or {}, item.get("meta") or {}
        severity = meta.get("severity")
        if severity not in SEVERITIES:
            raise SuiteError(f"{path}: {where}: severity must be one of {SEVERITIES}, not {severity!r}")
        if not meta.get("action"):
            raise SuiteError(f"{path}: {where}: meta.action (what to do when it fails) is required")
        if severity == "row" and not meta.get("reason"):
            raise SuiteError(f"{path}: {where}: a row-level check needs meta.reason (kept with each quarantined row)")
        if not by_gx and kind not in _SQL_CHECKS:
            raise SuiteError(f"{path}: {where}: unknown check {kind!r}; known: {sorted(_SQL_CHECKS)}")
        if severity == "row" and kind not in (_ROW_LEVEL_GX if by_gx else _ROW_LEVEL_SQL):
            raise SuiteError(f"{path}: {where}: {kind} cannot be row-level (its rows cannot be quarantined)")
        for name in ("column", "column_A", "column_B"):
            if name in kwargs and kwargs[name] not in columns:
                raise SuiteError(f"{path}: {where}: {name} {kwargs[name]!r} is not a column of raw.{table}")
        return Check(kind, kwargs, severity, meta["action"], meta.get("reason", ""), by_gx, index)

    expectations = tuple(parse(e, f"expectations[{i}] {e.get('type')}", i, True)
                         for i, e in enumerate(raw.get("expectations", [])))
    checks = tuple(parse(c, f"checks[{i}] {c.get('type')}", i, False) for i, c in enumerate(raw.get("checks", [])))
    if any(c.severity == "row" for c in (*expectations, *checks)) and all(c.type != QUARANTINE_SHARE for c in checks):
        checks += (Check(QUARANTINE_SHARE, {"max_share": DEFAULT_MAX_QUARANTINE_SHARE,
                                            "min_rows": DEFAULT_QUARANTINE_MIN_ROWS}, "critical",
                         "Most of the batch failed row-level checks, which points at a broken feed or mapping rather "
                         "than a few bad rows: fix the source (or the mapping), then rerun the period.", "", False,
                         len(checks)),)
    for check in (c for c in checks if c.type == QUARANTINE_SHARE):
        share = check.kwargs.get("max_share", DEFAULT_MAX_QUARANTINE_SHARE)
        rows = check.kwargs.get("min_rows", DEFAULT_QUARANTINE_MIN_ROWS)
        if not isinstance(share, (int, float)) or isinstance(share, bool) or not 0 <= share <= 1:
            raise SuiteError(f"{path}: checks[{check.index}] {check.type}: max_share must be a share from 0 to 1")
        if not isinstance(rows, int) or isinstance(rows, bool) or rows < 0:
            raise SuiteError(f"{path}: checks[{check.index}] {check.type}: min_rows must be a whole number, 0 or more")
    meta = raw.get("meta") or {}
    tolerance = timedelta(hours=float(meta.get("future_tolerance_hours", 24)))
    return Suite(table=table, name=raw.get("name") or f"raw_{table}", spec=spec, expectations=expectations,
                 checks=checks, future_tolerance=tolerance, meta=meta)


def load_suites() -> dict[str, Suite]:
    """The suite of every table of the canonical schema; a table without one is an error."""
    missing = [t for t in SOURCE_TABLES if not suite_path(t).exists()]
    if missing:
        raise SuiteError(f"no expectation suite for {', '.join(missing)} in {include_dir() / 'expectations'}")
    return {table: load_suite(table) for table in SOURCE_TABLES}


# ---------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check on one batch, GX or SQL alike: what is stored and reported."""

    suite: str
    table: str
    expectation: str
    column: str | None
    severity: str
    success: bool
    unexpected_count: int | None
    observed_value: str | None
    sample_keys: tuple[str, ...]
    action: str = ""
    reason: str = ""
    check: Check | None = field(default=None, compare=False, repr=False)

    def message(self) -> str:
        """Table, column, check, rows, a few keys and what to do, in one line."""
        where = f"{self.table}.{self.column}" if self.column else self.table
        count = f" in {self.unexpected_count} row(s)" if self.unexpected_count else ""
        keys = f" (e.g. {', '.join(self.sample_keys)})" if self.sample_keys else ""
        observed = f"; observed {self.observed_value}" if self.observed_value and not self.unexpected_count else ""
        quarantined = f"; quarantine reason: {self.reason}" if self.severity == "row" and self.unexpected_count else ""
        lookup = (" Keys of raw.customers are shown as pseudonymous customer_key: find the source ids with "
                  "SELECT customer_id FROM ops.customer_keys WHERE customer_key IN (...).") \
            if self.sample_keys and self.table == "raw.customers" else ""
        action = f" {self.action}" if self.action else ""
        return f"{where}: {self.expectation} failed{count}{keys}{observed}{quarantined}.{action}{lookup}"


@dataclass(frozen=True)
class ValidationReport:
    """What the validate stage found for one batch."""

    results: list[CheckResult]
    quarantined: dict[str, int]
    data_docs: str | None
    seconds: float

    @property
    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if not r.success]


def _sample(values: Iterator[Any]) -> tuple[str, ...]:
    """A few keys, sorted so messages do not depend on row order or engine."""
    return tuple(sorted(str(v) for v in values if v is not None and not pd.isna(v))[:SAMPLE_KEYS])


def _protect_keys(table: str, keys: tuple[str, ...]) -> tuple[str, ...]:
    """Customer ids leave the pipeline only as pseudonyms: marts are BI-readable."""
    if table != "customers":
        return keys
    secret = pseudonym_key()
    return tuple(pseudonym(k, secret) for k in keys)


def _result(suite: Suite, check: Check, *, success: bool, unexpected: int | None, observed: str | None,
            keys: tuple[str, ...], pseudonymised: bool = False) -> CheckResult:
    """A check's result; ``keys`` of customers are pseudonymised here unless they already are."""
    return CheckResult(
        suite=suite.name, table=f"raw.{suite.table}", expectation=check.type, column=check.column,
        severity=check.severity, success=success, unexpected_count=unexpected,
        observed_value=None if observed is None else observed[:500],
        sample_keys=keys if pseudonymised else _protect_keys(suite.table, keys),
        action=check.action, reason=check.reason, check=check,
    )


# ---------------------------------------------------------------------------------------
# Great Expectations


def data_docs_dir() -> Path | None:
    """Where Data Docs go: GRADING_DATA_DOCS_DIR, default $GRADING_HOME/data_docs; ``off`` for none."""
    value = os.environ.get(DATA_DOCS_ENV, "").strip()
    if value.lower() in ("off", "none", "false", "0"):
        return None
    return Path(value) if value else grading_home() / "data_docs"


def _gx_context(docs: Path | None):
    """An ephemeral GX context: suites and definitions in memory, results and docs in ``docs``.

    Results are stored as JSON under the docs folder so the Data Docs index lists every
    earlier run too, not only this process's.
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
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
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
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


def expectation_parameters(suite: Suite, now: datetime) -> dict[str, datetime]:
    """The values of the suites' ``{"$PARAMETER": name}`` bounds for a batch checked ``now``."""
    return {"future_limit": now + suite.future_tolerance, "earliest_time": EARLIEST_TIME}


def _counts_rows(check: Check) -> bool:
    """A GX check of each row (or pair of columns) that passes only when no row fails it."""
    return check.type.startswith(("expect_column_values_", "expect_column_pair_values_")) \
        and check.kwargs.get("mostly") is None


def _gx_run(gx, context, suite: Suite, parts: Iterable[tuple[Any, dict | None]], *, now: datetime,
            run_name: str, run_time: datetime, key_available: bool = True,
            pseudonymised: bool = False) -> list[CheckResult]:
    """Run a suite's GX expectations over each part of a batch and merge the outcomes into results.

    ``parts`` yields (batch definition, batch parameters) one at a time, so only one part's
    rows need to be in memory. Column-map checks add up over parts (a failure anywhere fails
    the check, unexpected rows are summed, sample keys pooled); parts split by the unique
    column keep uniqueness exact (see _partition_column).
    """
    from great_expectations.core.run_identifier import RunIdentifier

    key = suite.spec.key
    gx_suite = context.suites.add(gx.ExpectationSuite(
        name=suite.name, expectations=[c.gx_config() for c in suite.expectations], meta=dict(suite.meta)))
    merged: dict[int, dict[str, Any]] = {}
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
        # GX's objects hold the part's frame in reference cycles; collect them before the next
        # part is read, or the worker grows by a part per part (3.6 instead of 2.0 GiB at 20M orders).
        gc.collect()
        for item in outcome.results:
            index = int(item.expectation_config.meta["check"])
            detail = item.result or {}
            observed = detail.get("observed_value")
            if item.exception_info and item.exception_info.get("raised_exception"):
                observed = f"error: {item.exception_info.get('exception_message')}"
            unexpected = detail.get("unexpected_count")
            if unexpected is None and item.success and _counts_rows(suite.expectations[index]):
                unexpected = 0  # passed without detail: no row failed it
            rows = detail.get("partial_unexpected_index_list") or []
            seen = merged.setdefault(index, {"success": True, "unexpected": None, "observed": None, "keys": []})
            if seen["observed"] is None or (seen["success"] and not item.success):
                seen["observed"] = observed
            seen["success"] = seen["success"] and bool(item.success)
            if unexpected is not None:
                seen["unexpected"] = (seen["unexpected"] or 0) + int(unexpected)
            seen["keys"] += [row.get(key) for row in rows if isinstance(row, dict)]
    return [_result(suite, suite.expectations[index], success=seen["success"], unexpected=seen["unexpected"],
                    observed=None if seen["observed"] is None else str(seen["observed"]),
                    keys=_sample(iter(seen["keys"])), pseudonymised=pseudonymised)
            for index, seen in sorted(merged.items())]


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
                   run_name="check_frame", run_time=now, key_available=suite.spec.key in frame.columns)


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


def ensure_indexes(warehouse: Engine) -> list[str]:
    """Create the PostgreSQL indexes the gate relies on; returns the ones created.

    The batch is found by its stamp and loaded keys by key; without these indexes every
    metric query and the loaded-keys check scan the whole table (85 s instead of a few for a
    month's batch on 20M orders). Made here, after the first load, rather than in migration
    0011 with the period indexes: built once over loaded rows they cost about 40 s at 20M
    orders, while kept up to date through the first load they slowed extraction by half
    (100,000 customers: 14.8 -> 22.7 s). DuckDB needs none (it prunes by zone maps).
    """
    if warehouse.dialect.name != "postgresql":
        return []
    wanted = {f"{name}_{column}_idx": (name, column) for name, spec in SOURCE_TABLES.items()
              for column in ("extracted_at", spec.key)}
    with warehouse.connect() as conn:
        existing = set(conn.execute(sa.text("SELECT indexname FROM pg_indexes WHERE schemaname = 'raw'")).scalars())
    missing = [name for name in wanted if name not in existing]
    if missing:
        with exclusive(warehouse, "grading.validate.indexes") as conn:
            for name in missing:
                table, column = wanted[name]
                conn.execute(sa.text(f"CREATE INDEX IF NOT EXISTS {name} ON raw.{table} ({column})"))
        log.info("created indexes for validation: %s", ", ".join(missing))
    return missing


def _run_expectations(warehouse: Engine, suites: Mapping[str, Suite], batch: datetime, run_id: str,
                      now: datetime, docs: Path | None) -> tuple[list[CheckResult], str | None]:
    """Every suite's GX expectations over the batch; returns results and the Data Docs URL.

    On PostgreSQL GX queries the database itself; on DuckDB it checks pandas frames of the
    batch, a part at a time.
    """
    gx, context = _gx_context(docs)
    run_time = datetime.now(UTC)
    results: list[CheckResult] = []
    if warehouse.dialect.name == "postgresql":
        # In the database: GX sends one query per metric over a view of exactly the batch's rows.
        # A table asset, not a query asset: for a query GX learns the columns by running it,
        # which would fetch the whole batch into Python.
        source = context.data_sources.add_postgres(
            "warehouse", connection_string=warehouse.url.render_as_string(hide_password=False))
        views = _batch_views(warehouse, suites, batch)
        try:
            for table, suite in suites.items():
                data = source.add_table_asset(table, table_name=views[table], schema_name="ops") \
                    .add_batch_definition_whole_table("batch")
                results += _gx_run(gx, context, suite, [(data, None)], now=now, run_name=run_id, run_time=run_time,
                                   pseudonymised=True)
        finally:
            # GX keeps a pooled engine in the data source and another in its execution engine;
            # neither may hold a connection once the stage ends.
            source.get_engine().dispose()
            source.get_execution_engine().engine.dispose()
            with warehouse.begin() as conn:
                for view in views.values():
                    conn.execute(sa.text(f"DROP VIEW IF EXISTS ops.{view}"))
    else:
        # Embedded DuckDB: GX has no DuckDB source, so each batch goes through pandas frames,
        # one part (its own asset, so Data Docs keep every part's result) at a time.
        with warehouse.connect() as conn:
            for table, suite in suites.items():
                def parts(table=table, suite=suite):
                    for number, frame in enumerate(_frame_parts(conn, suite, batch, validate_part_rows())):
                        # A data source per part: GX's execution engine caches every batch it was
                        # given and every metric it computed (boolean masks as long as the frame),
                        # so a shared one would end up holding the whole batch again.
                        name = "warehouse" if number == 0 else f"warehouse_part_{number + 1}"
                        source = context.data_sources.add_pandas(name)
                        yield source.add_dataframe_asset(table).add_batch_definition_whole_dataframe("batch"), \
                            {"dataframe": frame}
                        context.data_sources.delete(name)
                results += _gx_run(gx, context, suite, parts(), now=now, run_name=run_id, run_time=run_time,
                                   pseudonymised=True)
    return results, _build_docs(context, suites, run_id, run_time, docs)


def _build_docs(context, suites: Mapping[str, Suite], run_id: str, run_time: datetime,
                docs: Path | None) -> str | None:
    """Render this run's results (and the index of all runs) into the Data Docs folder.

    Only this run's pages are rendered, so the cost does not grow with the history. Docs
    are a by-product: a folder that cannot be written is logged, not fatal to the run.
    """
    if docs is None:
        return None
    from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier

    try:
        keys = [k for k in context.validation_results_store.list_keys()
                if k.run_id.run_name == run_id and k.run_id.run_time == run_time]
        urls = context.build_data_docs(
            site_names=[DATA_DOCS_SITE],
            resource_identifiers=[*keys, *(ExpectationSuiteIdentifier(name=s.name) for s in suites.values())])
        return urls.get(DATA_DOCS_SITE)
    except Exception as exc:  # docs must not decide the run's outcome
        log.warning("Great Expectations Data Docs were not written to %s: %s: %s", docs, type(exc).__name__, exc)
        return None


# ---------------------------------------------------------------------------------------
# SQL: predicates of row-level checks and the checks GX cannot express


@dataclass(frozen=True)
class _Scope:
    """What the SQL checks need to know about the batch under validation."""

    batch: datetime
    cutoff: datetime  # the as-of instant: rows before it belong to the run
    previous: datetime | None  # the as-of instant of the latest earlier validated period
    source: Engine | None
    now: datetime  # when the batch is checked: the $PARAMETER bounds follow from it


_OPERATORS = {"==": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


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
        return f"r.{column} IS {'NULL' if condition['is_null'] else 'NOT NULL'}"
    if kind == "comparison" and condition.get("operator") in _OPERATORS:
        params[prefix] = condition["parameter"]
        return f"r.{column} {_OPERATORS[condition['operator']]} :{prefix}"
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


def predicate(suite: Suite, check: Check, parameters: Mapping[str, Any] | None = None) -> tuple[str, dict]:
    """The offending-row predicate of any row-wise check, with its bound parameters.

    ``parameters``: the values of ``$PARAMETER`` bounds (default: as for a batch checked now).
    """
    params: dict[str, Any] = {}
    parameters = parameters or expectation_parameters(suite, datetime.now(UTC).replace(tzinfo=None))
    sql = _gx_predicate(suite, check, params, f"p{check.index}_", parameters) if check.by_gx \
        else _sql_predicate(suite, check)
    return sql, params


def _offending(conn: Connection, suite: Suite, check: Check, scope: _Scope,
               where: str | None = None, params: Mapping[str, Any] | None = None) -> tuple[int, tuple[str, ...]]:
    """How many of the batch's rows a row-wise check rejects (or ``where`` selects, with
    ``params``), and a few of their keys."""
    if where is None:
        where, params = predicate(suite, check, expectation_parameters(suite, scope.now))
    base = f"FROM raw.{suite.table} AS r WHERE r.extracted_at = :batch AND ({where})"  # identifiers from the contract
    params = {**(params or {}), "batch": scope.batch}
    count = _row(conn.execute(sa.text(f"SELECT COUNT(*) {base}"), params))[0]
    keys = conn.execute(sa.text(f"SELECT r.{suite.spec.key} {base} ORDER BY 1 LIMIT {SAMPLE_KEYS}"), params) \
        .scalars().all() if count else []
    return int(count), _sample(keys)


# Type families by the names information_schema gives on DuckDB and PostgreSQL.
_TYPE_FAMILIES = (
    ("timestamps", ("TIMESTAMP",)),
    ("amounts", ("NUMERIC", "DECIMAL", "DOUBLE", "REAL", "FLOAT")),
    ("integers", ("INTEGER", "BIGINT", "SMALLINT", "INT", "HUGEINT")),
    ("flags", ("BOOLEAN",)),
)
_TEXT_TYPES = ("VARCHAR", "CHARACTER VARYING", "TEXT", "STRING")


def _usable_types(conn: Connection, suite: Suite) -> str | None:
    """None if every canonical column exists in raw with a type of its family, else what is wrong."""
    spec = suite.spec
    found = {name: data_type.upper() for name, data_type in conn.execute(sa.text(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'raw' AND table_name = :t"), {"t": spec.name})}
    wrong = []
    for column in spec.columns:
        family, names = next(((attr, n) for attr, n in _TYPE_FAMILIES if column in getattr(spec, attr)),
                             ("texts", _TEXT_TYPES))
        if column not in found:
            wrong.append(f"{column} missing")
        elif not found[column].startswith(names):
            wrong.append(f"{column} is {found[column]}, not one of {family}' types {', '.join(names)}")
    return "; ".join(wrong) or None


def _source_has_rows(scope: _Scope, table: str) -> bool | None:
    """Whether the source table holds any row; None when there is no source to ask."""
    if scope.source is None:
        return None
    try:
        with scope.source.connect() as conn:
            return bool(conn.execute(sa.select(sa.literal(1)).select_from(sa.table(table)).limit(1)).all())
    except sa.exc.SQLAlchemyError as exc:
        log.warning("could not count source table %s: %s", table, exc)
        return None


@dataclass(frozen=True)
class _Counts:
    """A table's rows by period, from one scan: what the emptiness and volume checks judge."""

    first: datetime | None  # earliest event time in raw
    total: int  # rows in raw
    batch: int  # rows of the batch under validation
    before_cutoff: int  # rows before the as-of instant
    in_period: int  # rows in [previous as-of, as-of); all before the as-of for a first period
    trailing: tuple[int, ...]  # rows in each period of the same length before it, latest first
    edges: tuple[datetime, ...]  # cutoff, period start, then the trailing periods' starts


def _counts(conn: Connection, suite: Suite, scope: _Scope) -> _Counts:
    trailing = max((int(c.kwargs.get("trailing_intervals", 3)) for c in suite.checks
                    if c.type == "expect_interval_volume_within_band"), default=0)
    ts, edges = suite.spec.event_time, [scope.cutoff]
    columns = [f"MIN({ts})", "COUNT(*)", "COUNT(CASE WHEN extracted_at = :batch THEN 1 END)",
               f"COUNT(CASE WHEN {ts} < :e0 THEN 1 END)"]
    if scope.previous is not None:
        length = scope.cutoff - scope.previous
        edges = [scope.cutoff - i * length for i in range(trailing + 2)]
        columns += [f"COUNT(CASE WHEN {ts} >= :e{i + 1} AND {ts} < :e{i} THEN 1 END)" for i in range(trailing + 1)]
    row = conn.execute(sa.text(f"SELECT {', '.join(columns)} FROM raw.{suite.table}"),  # noqa: S608 - identifiers from the contract
                       {"batch": scope.batch, **{f"e{i}": e for i, e in enumerate(edges)}}).all()[0]
    first = None if row[0] is None else pd.Timestamp(row[0]).to_pydatetime()
    values = [int(v or 0) for v in row[1:]]
    in_period = values[3] if scope.previous is not None else values[2]
    return _Counts(first, values[0], values[1], values[2], in_period, tuple(values[4:]), tuple(edges))


def _not_empty(suite: Suite, check: Check, scope: _Scope, counts: _Counts) -> tuple[bool, str]:
    """An empty period is a broken feed when the source (or an earlier period) had rows.

    ``scope: interval`` looks at the period since the latest earlier validated as-of date
    (all history for the first run); ``history`` at everything before the as-of date.
    """
    interval = check.kwargs.get("scope", "interval") == "interval" and scope.previous is not None
    rows = counts.in_period if interval else counts.before_cutoff
    earlier = counts.before_cutoff - counts.in_period if interval else 0
    period = f"in [{scope.previous:%Y-%m-%d %H:%M}, {scope.cutoff:%Y-%m-%d %H:%M})" if interval \
        else f"before {scope.cutoff:%Y-%m-%d}"
    if rows:
        return True, f"{rows} row(s) {period}"
    source = _source_has_rows(scope, suite.spec.name)
    if source or earlier:
        evidence = "the source table has rows" if source else f"earlier periods hold {earlier} row(s)"
        return False, f"0 rows {period} although {evidence}"
    return True, f"0 rows {period}; the source table is empty too"


def _volume(check: Check, scope: _Scope, counts: _Counts) -> tuple[bool, str]:
    """The period's rows against the average of the previous periods of the same length.

    The period is the time since the latest earlier validated as-of date, so the band
    follows the schedule (monthly runs compare months). Periods before the table's first
    row do not count, and a small trailing average (min_rows) is too noisy to judge.
    """
    if scope.previous is None:
        return True, "not checked: no earlier validated period to compare with"
    k, edges = check.kwargs, counts.edges
    trailing = int(k.get("trailing_intervals", 3))
    length, current = scope.cutoff - scope.previous, counts.in_period
    period = f"{current} rows in [{edges[1]:%Y-%m-%d}, {edges[0]:%Y-%m-%d})"
    if current == 0:
        return True, f"{period}; see expect_interval_not_empty"
    complete = [c for c, start in zip(counts.trailing[:trailing], edges[2:2 + trailing], strict=True)
                if counts.first is not None and start >= counts.first]
    if not complete:
        return True, f"{period}; not checked: no complete earlier period of {length.days} days"
    average = sum(complete) / len(complete)
    if average < float(k.get("min_rows", 100)):
        return True, f"{period}; not checked: trailing average {average:.1f} is below min_rows {k.get('min_rows', 100)}"
    ratio = current / average
    low, high = float(k.get("min_ratio", 0.7)), float(k.get("max_ratio", 2.0))
    return low <= ratio <= high, (f"{period} vs a trailing average of {average:.1f} over {len(complete)} "
                                  f"period(s) of {length.days} days: ratio {ratio:.2f}, band [{low}, {high}]")


def _run_checks(conn: Connection, suites: Mapping[str, Suite], scope: _Scope) -> list[CheckResult]:
    """Every suite's SQL checks over the batch, as results like GX's."""
    results = []
    for suite in suites.values():
        counts = _counts(conn, suite, scope)
        for check in suite.checks:
            if check.type == QUARANTINE_SHARE:
                continue  # judged once every row-level check has run (_quarantine_bounds)
            if check.type in _ROW_LEVEL_SQL or check.type == "expect_keys_not_loaded_by_an_earlier_batch":
                where = None
                if check.type == "expect_keys_not_loaded_by_an_earlier_batch" and \
                        conn.dialect.name == "postgresql" and counts.batch * 4 < counts.total:
                    # A batch small against what is loaded: probe the key index once per batch row,
                    # instead of the semi-join PostgreSQL would plan (hashing every loaded row).
                    where = (f"(SELECT COUNT(*) FROM raw.{suite.table} AS o WHERE o.{suite.spec.key} = "  # noqa: S608
                             f"r.{suite.spec.key} AND o.extracted_at <> :batch) > 0")
                count, keys = _offending(conn, suite, check, scope, where)
                results.append(_result(suite, check, success=count == 0, unexpected=count, observed=None,
                                       keys=keys))
                continue
            if check.type == "expect_columns_to_have_usable_types":
                wrong = _usable_types(conn, suite)
                success, observed = wrong is None, wrong or "every canonical column has a usable type"
            elif check.type == "expect_interval_not_empty":
                success, observed = _not_empty(suite, check, scope, counts)
            else:
                success, observed = _volume(check, scope, counts)
            results.append(_result(suite, check, success=success, unexpected=None, observed=observed, keys=()))
    return results


# ---------------------------------------------------------------------------------------
# The gate


@contextmanager
def _gate(warehouse: Engine, batch: datetime) -> Iterator[Connection]:
    """The transaction that gives the verdict, holding the extraction lock.

    Quarantine and rejection rewrite raw rows and the watermarks, so they wait for a running
    extraction (which holds that lock throughout); the batch must still be waiting for its
    verdict when the lock is taken (another extraction may have taken it over meanwhile).
    """
    with exclusive(warehouse, "grading.validate", ledger.EXTRACTION_LOCK) as conn:
        if ledger.require_extracted(conn, batch).status != "extracted":
            raise ledger.BatchError(f"batch {batch} was given a verdict by another run meanwhile; rerun the period")
        yield conn


def _row_json(conn: Connection, spec: SourceTable) -> str:
    """The row's canonical columns as JSON text, built by the database (no rows pass through Python)."""
    function = "json_build_object" if conn.dialect.name == "postgresql" else "json_object"
    pairs = ", ".join(f"'{c}', r.{c}" for c in spec.columns)
    return f"CAST({function}({pairs}) AS VARCHAR)"


def _reason_sql(check: Check, suite: Suite) -> str:
    """The check's reason followed by the offending values, e.g. ``... (amount=-5.00)``."""
    columns = [check.kwargs[c] for c in ("column_A", "column_B") if c in check.kwargs] \
        or [check.column or suite.spec.key]
    values = " || ', ' || ".join(f"'{c}=' || COALESCE(CAST(r.{c} AS VARCHAR), 'null')" for c in columns)
    return f":reason || ' (' || {values} || ')'"


def _quarantine(conn: Connection, suites: Mapping[str, Suite], results: list[CheckResult], scope: _Scope,
                run_id: str, as_of: date, now: datetime) -> dict[str, int]:
    """Move the rows of failed row-level checks from raw to ops.quarantine; returns rows moved per table.

    Entries of re-extracted rows are replaced first, so a rerun of the period gives the same
    quarantine and a row fixed at the source leaves it.
    """
    moved = {}
    for table, suite in suites.items():
        key, batch = suite.spec.key, {"batch": scope.batch, "t": table}
        conn.execute(sa.text(
            f"DELETE FROM ops.quarantine WHERE source_table = :t AND row_key IN "  # noqa: S608 - contract identifiers
            f"(SELECT CAST({key} AS VARCHAR) FROM raw.{table} WHERE extracted_at = :batch)"), batch)
        for result in results:
            check = result.check
            if result.table != f"raw.{table}" or result.success or check is None or check.severity != "row":
                continue
            where, params = predicate(suite, check, expectation_parameters(suite, scope.now))
            conn.execute(sa.text(
                "INSERT INTO ops.quarantine (run_id, as_of_date, source_table, row_key, expectation, column_name, "  # noqa: S608
                "reason, row_json, extracted_at, quarantined_at) "
                f"SELECT :run_id, :as_of, :t, CAST(r.{key} AS VARCHAR), :expectation, :column, "
                f"{_reason_sql(check, suite)}, {_row_json(conn, suite.spec)}, r.extracted_at, :now "
                f"FROM raw.{table} AS r WHERE r.extracted_at = :batch AND ({where})"),
                {**params, **batch, "run_id": run_id, "as_of": as_of, "expectation": check.type,
                 "column": check.column, "reason": check.reason, "now": now})
            entered = conn.execute(sa.text(
                "SELECT COUNT(*) FROM ops.quarantine WHERE source_table = :t AND extracted_at = :batch "
                "AND expectation = :expectation AND run_id = :run_id AND COALESCE(column_name, '') = :column"),
                {**batch, "expectation": check.type, "run_id": run_id, "column": check.column or ""}).all()[0][0]
            if entered != result.unexpected_count:
                raise RuntimeError(
                    f"quarantine of raw.{table} by {check.type} on {check.column}: SQL selected {entered} row(s) "
                    f"but the check counted {result.unexpected_count}; nothing was moved")
        moved[table] = conn.execute(sa.text(
            f"DELETE FROM raw.{table} WHERE extracted_at = :batch AND {key} IN "  # noqa: S608 - identifiers from the contract
            "(SELECT row_key FROM ops.quarantine WHERE source_table = :t AND extracted_at = :batch)"), batch).rowcount
    return moved


def _row(result: sa.CursorResult) -> sa.Row:
    """The single row of a result, fetched to the end: DuckDB refuses new work on a half-read result."""
    return result.all()[0]


def _batch_rows(conn: Connection, table: str, batch: datetime) -> int:
    return conn.execute(sa.text(f"SELECT COUNT(*) FROM raw.{table} WHERE extracted_at = :batch"),  # noqa: S608 - identifiers from the contract
                        {"batch": batch}).all()[0][0]


def _record(conn: Connection, rows: list[dict]) -> None:
    frame = pd.DataFrame(rows).astype({"rows_checked": "int64", "rows_quarantined": "int64",
                                       "extracted_through": "datetime64[us]", "message": "string"})
    bulk_insert(conn, "ops.validation_batches", frame)


def _reject(conn: Connection, suites: Mapping[str, Suite], scope: _Scope, run_id: str, as_of: date,
            now: datetime, message: str) -> None:
    """Remove a failed batch from raw and rewind the watermarks, so nothing grades on it.

    Its extraction replaced the rows of the windows it read, so each table's watermark goes
    back to the earliest of those windows (grading.ledger.reject_batch); a window over all
    history drops it. The next extraction re-reads every removed row, as the source has it then.
    """
    rows = {table: _batch_rows(conn, table, scope.batch) for table in suites}
    for table in suites:
        conn.execute(sa.text(f"DELETE FROM raw.{table} WHERE extracted_at = :batch"), {"batch": scope.batch})  # noqa: S608 - identifiers from the contract
    watermarks = ledger.reject_batch(conn, scope.batch, now, message)
    _record(conn, [{"run_id": run_id, "as_of_date": as_of, "source_table": table, "extracted_at": scope.batch,
                    "status": "failed", "rows_checked": int(rows[table]), "rows_quarantined": 0,
                    "extracted_through": watermarks[table], "message": message[:4000], "validated_at": now}
                   for table in suites])


def _accept(conn: Connection, suites: Mapping[str, Suite], results: list[CheckResult], scope: _Scope,
            run_id: str, as_of: date, now: datetime) -> dict[str, int]:
    """Quarantine the row-level failures, record the batch as passed and move the watermarks."""
    checked = {table: _batch_rows(conn, table, scope.batch) for table in suites}
    moved = _quarantine(conn, suites, results, scope, run_id, as_of, now)
    watermarks = ledger.pass_batch(conn, scope.batch, now)
    _record(conn, [{"run_id": run_id, "as_of_date": as_of, "source_table": table, "extracted_at": scope.batch,
                    "status": "passed", "rows_checked": checked[table], "rows_quarantined": moved[table],
                    "extracted_through": watermarks[table], "message": None, "validated_at": now}
                   for table in suites])
    return moved


def _quarantine_bounds(conn: Connection, suites: Mapping[str, Suite], results: list[CheckResult],
                       scope: _Scope) -> list[CheckResult]:
    """Each table's share of the batch that failed row-level checks, against its bound.

    A few bad rows are quarantined and the run goes on; much of a batch failing (a status
    upper-cased at the source, a rescaled score) is a broken feed, and quarantining it would
    publish a period graded on what is left. The check fails when more than ``max_share`` of
    the batch and more than ``min_rows`` rows would be quarantined (so a small daily batch
    may still lose a bad row or two). Rows failing several checks count once.
    """
    bounds = []
    for table, suite in suites.items():
        for check in (c for c in suite.checks if c.type == QUARANTINE_SHARE):
            failed = [r.check for r in results if r.table == f"raw.{table}" and not r.success
                      and r.check is not None and r.check.severity == "row"]
            rows = _batch_rows(conn, table, scope.batch)
            limit = float(check.kwargs.get("max_share", DEFAULT_MAX_QUARANTINE_SHARE))
            allowed = int(check.kwargs.get("min_rows", DEFAULT_QUARANTINE_MIN_ROWS))
            count, keys = 0, ()
            if failed:
                parts, params = [], {}
                for row_check in failed:
                    where, bound = predicate(suite, row_check, expectation_parameters(suite, scope.now))
                    parts.append(f"({where})")
                    params.update(bound)
                count, keys = _offending(conn, suite, check, scope, " OR ".join(parts), params)
            share = count / rows if rows else 0.0
            success = share <= limit or count <= allowed
            observed = (f"{count} of {rows} row(s) of the batch ({share:.1%}) failed row-level checks; at most "
                        f"{limit:.0%} may be quarantined (any share when {allowed} rows or fewer)")
            bounds.append(_result(suite, check, success=success, unexpected=None, observed=observed,
                                  keys=() if success else keys))
    return bounds


def _previous_period(conn: Connection, as_of: datetime) -> datetime | None:
    """The as-of instant of the latest earlier period whose batch passed: the period's start."""
    value = conn.execute(sa.text(
        "SELECT MAX(as_of_date) FROM ops.validation_batches WHERE status = 'passed' AND as_of_date < :as_of"),
        {"as_of": as_of.date()}).all()[0][0]
    return None if value is None else datetime.combine(pd.Timestamp(value).date(), datetime.min.time())


def validate(warehouse: Engine, as_of: date, batch: datetime, run_id: str,
             source: Engine | None = None) -> ValidationReport:
    """Validate extract ``batch``: store every result, quarantine bad rows, stop on a critical failure.

    ``source`` (optional) lets the emptiness check tell a quiet period from a broken feed.
    Raises ValidationFailed, with a message naming table, column, check, rows, keys and what
    to do, when a critical check fails; the batch's raw rows are then removed. All reads
    share one connection and all writes one transaction (results, quarantine or rejection,
    the batch's outcome), so a failure half-way leaves nothing half-written.
    """
    clock = time.perf_counter()
    suites = load_suites()
    ensure_indexes(warehouse)
    now = datetime.now(UTC).replace(tzinfo=None)
    cutoff = datetime.combine(as_of, datetime.min.time())
    with warehouse.connect() as conn:
        prior = ledger.require_extracted(conn, batch)
        if prior.status == "extracted":  # otherwise it has its verdict already (a retried task)
            scope = _Scope(batch=batch, cutoff=cutoff, previous=_previous_period(conn, cutoff), source=source,
                           now=now)
            checked = _run_checks(conn, suites, scope)
        else:
            message = conn.execute(sa.text("SELECT message FROM ops.batches WHERE batch_id = :b"),
                                   {"b": batch}).scalar()
    if prior.status == "rejected":
        raise ValidationFailed(
            f"extract batch {batch} was rejected by run {prior.run_id} and its rows were removed from raw; "
            "rerun the whole period, extraction included, once the source is fixed. The checks said:\n"
            + (message or ""))
    if prior.status in ledger.VALIDATED:
        log.info("batch %s already passed validation in run %s; keeping that outcome", batch, prior.run_id)
        return ValidationReport(stored_results(warehouse, prior.run_id), {}, None, time.perf_counter() - clock)

    results, docs_url = _run_expectations(warehouse, suites, batch, run_id, now, data_docs_dir())
    results += checked
    with warehouse.connect() as conn:
        results += _quarantine_bounds(conn, suites, results, scope)
    critical = [r for r in results if not r.success and r.severity == "critical"]
    if critical:
        findings = [r for r in results if not r.success and r.severity == "row"]
        message = (
            f"{len(critical)} critical check(s) failed for as-of {as_of}; nothing was published, and the batch's "
            "raw rows were removed (the next run extracts them again). Fix the source rows (or the mapping) and "
            "rerun the period:\n- " + "\n- ".join(r.message() for r in critical))
        if findings:
            message += "\nRow-level findings in the same batch (to fix too):\n- " + \
                "\n- ".join(r.message() for r in findings)
        with _gate(warehouse, batch) as conn:
            store_results(conn, as_of, run_id, results)
            _reject(conn, suites, scope, run_id, as_of, now, message)
        log.error("validation of batch %s failed: %s critical check(s); Data Docs: %s", batch, len(critical),
                  docs_url or "not written")
        raise ValidationFailed(message)

    with _gate(warehouse, batch) as conn:
        quarantined = _accept(conn, suites, results, scope, run_id, as_of, now)
        store_results(conn, as_of, run_id, results)
    report = ValidationReport(results, quarantined, docs_url, time.perf_counter() - clock)
    log_summary(report, batch)
    return report


def log_summary(report: ValidationReport, batch: datetime) -> None:
    """A short summary for the task log: checks, quarantined rows and where the details are."""
    moved = sum(report.quarantined.values())
    per_table = ", ".join(f"{t} {n}" for t, n in report.quarantined.items() if n)
    log.info("validation of batch %s: %d checks, %d failed, %d row(s) quarantined%s in %.1fs; "
             "results in marts.validation_results, rows in ops.quarantine; Data Docs: %s",
             batch, len(report.results), len(report.failed), moved, f" ({per_table})" if per_table else "",
             report.seconds, report.data_docs or "not written")
    for result in report.failed:
        log.warning("%s", result.message())


def store_results(conn: Connection, as_of: date, run_id: str, results: list[CheckResult]) -> None:
    """Replace the run's rows of marts.validation_results (a retried task writes them once)."""
    now = datetime.now(UTC).replace(tzinfo=None)

    def shown(text: str | None) -> str | None:  # marts are BI-readable: no identifying value
        return privacy.redact(conn, text)

    frame = pd.DataFrame({
        "run_id": run_id, "as_of_date": as_of,
        "suite": [r.suite for r in results], "expectation": [r.expectation for r in results],
        "column_name": pd.Series([r.column for r in results], dtype="string"),
        "severity": [r.severity for r in results], "success": [r.success for r in results],
        "unexpected_count": pd.Series([r.unexpected_count for r in results], dtype="Int64"),
        "observed_value": pd.Series([shown(r.observed_value) for r in results], dtype="string"),
        "validated_at": now,
        "sample_keys": pd.Series([", ".join(r.sample_keys) or None for r in results], dtype="string"),
        "message": pd.Series([None if r.success else shown(r.message()[:4000]) for r in results], dtype="string"),
    })
    conn.execute(sa.text("DELETE FROM marts.validation_results WHERE run_id = :run_id"), {"run_id": run_id})
    bulk_insert(conn, "marts.validation_results", frame)


def stored_results(warehouse: Engine, run_id: str) -> list[CheckResult]:
    """A run's results read back from marts.validation_results."""
    with warehouse.connect() as conn:
        frame = read_frame(conn, "SELECT * FROM marts.validation_results WHERE run_id = :run_id", {"run_id": run_id})
    return [CheckResult(
        suite=row.suite, table="raw." + row.suite.removeprefix("raw_"), expectation=row.expectation,
        column=None if pd.isna(row.column_name) else row.column_name, severity=row.severity,
        success=bool(row.success),
        unexpected_count=None if pd.isna(row.unexpected_count) else int(row.unexpected_count),
        observed_value=None if pd.isna(row.observed_value) else row.observed_value,
        sample_keys=tuple(row.sample_keys.split(", ")) if isinstance(row.sample_keys, str) else (),
    ) for row in frame.itertuples()]
