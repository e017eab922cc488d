"""Validate: check each extracted batch with Great Expectations before anything is published.

Suites live in include/expectations/<table>.json, one per source table, and run in an
ephemeral GX context created here (no cloud, no network). A failed critical expectation
stops the run with a message naming the table, column, check, row count and a few keys;
every result is kept in marts.validation_results.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from grading.contract import SOURCE_TABLES
from grading.settings import include_dir
from grading.warehouse import bulk_insert, read_frame

log = logging.getLogger(__name__)

SAMPLE_KEYS = 5


class ValidationFailed(RuntimeError):
    """Critical expectations failed; nothing of the run was published."""


@dataclass(frozen=True)
class CheckResult:
    suite: str
    table: str
    expectation: str
    column: str | None
    severity: str
    success: bool
    unexpected_count: int | None
    observed_value: str | None
    sample_keys: tuple[str, ...]

    def message(self) -> str:
        where = f"{self.table}.{self.column}" if self.column else self.table
        count = f" in {self.unexpected_count} row(s)" if self.unexpected_count else ""
        keys = f" (e.g. {', '.join(self.sample_keys)})" if self.sample_keys else ""
        observed = f"; observed {self.observed_value}" if self.observed_value and not self.unexpected_count else ""
        return f"{where}: {self.expectation} failed{count}{keys}{observed}"


def load_suite(table: str) -> dict[str, Any]:
    return json.loads((include_dir() / "expectations" / f"{table}.json").read_text(encoding="utf-8"))


def _context():
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return gx, context


def check_frame(table: str, frame: pd.DataFrame) -> list[CheckResult]:
    """Run the table's suite over ``frame`` (the rows of one extract batch)."""
    gx, context = _context()
    spec = load_suite(table)
    key = SOURCE_TABLES[table].key
    suite = context.suites.add(gx.ExpectationSuite(name=spec["name"], expectations=spec["expectations"]))
    batch = context.data_sources.add_pandas(f"{table}_source").add_dataframe_asset(table) \
        .add_batch_definition_whole_dataframe("batch")
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{table}_validation", data=batch, suite=suite))
    outcome = definition.run(
        batch_parameters={"dataframe": frame},
        result_format={"result_format": "SUMMARY", "unexpected_index_column_names": [key]}
        if key in frame.columns else "SUMMARY",
    )
    results = []
    for item in outcome.results:
        config, detail = item.expectation_config, item.result or {}
        keys = tuple(str(row.get(key)) for row in detail.get("partial_unexpected_index_list") or []
                     if isinstance(row, dict))[:SAMPLE_KEYS]
        observed = detail.get("observed_value")
        results.append(CheckResult(
            suite=spec["name"], table=f"raw.{table}", expectation=config.type,
            column=config.kwargs.get("column"), severity=(config.meta or {}).get("severity", "critical"),
            success=bool(item.success), unexpected_count=detail.get("unexpected_count"),
            observed_value=None if observed is None else str(observed)[:500], sample_keys=keys,
        ))
    return results


def validate(warehouse: Engine, as_of: date, batch: datetime, run_id: str) -> list[CheckResult]:
    """Validate the rows of extract ``batch``, store the results, and stop on a critical failure."""
    results: list[CheckResult] = []
    with warehouse.connect() as conn:
        for table in SOURCE_TABLES:
            frame = read_frame(conn, f"SELECT * FROM raw.{table} WHERE extracted_at = :batch", {"batch": batch})  # noqa: S608 - identifiers from code constants, values bound
            results.extend(check_frame(table, frame.drop(columns=["extracted_at"])))
    store_results(warehouse, as_of, run_id, results)
    failed = [r for r in results if not r.success and r.severity == "critical"]
    log.info("validation: %d checks, %d failed critically", len(results), len(failed))
    if failed:
        raise ValidationFailed(
            f"{len(failed)} critical check(s) failed for as-of {as_of}; nothing was published. "
            "Fix the source rows (or the mapping) and rerun the period:\n- "
            + "\n- ".join(r.message() for r in failed)
        )
    return results


def store_results(warehouse: Engine, as_of: date, run_id: str, results: list[CheckResult]) -> None:
    now = datetime.now(UTC).replace(tzinfo=None)
    frame = pd.DataFrame({
        "run_id": run_id, "as_of_date": as_of,
        "suite": [r.suite for r in results], "expectation": [r.expectation for r in results],
        "column_name": pd.Series([r.column for r in results], dtype="string"),
        "severity": [r.severity for r in results], "success": [r.success for r in results],
        "unexpected_count": pd.Series([r.unexpected_count for r in results], dtype="Int64"),
        "observed_value": pd.Series([r.observed_value for r in results], dtype="string"),
        "validated_at": now,
    })
    with warehouse.begin() as conn:
        conn.execute(sa.text("DELETE FROM marts.validation_results WHERE run_id = :run_id"), {"run_id": run_id})
        bulk_insert(conn, "marts.validation_results", frame)
