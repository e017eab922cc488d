"""Validate: gate each extracted batch before anything is published.

Each source table has a suite in include/expectations/<table>.json with two kinds of check:

- ``expectations``: Great Expectations 1.x expectations, run by an ephemeral GX context -
  in the database on PostgreSQL, over pandas frames of the batch on DuckDB (``gx``).
- ``checks``: what GX cannot express across tables or batches, run as plain SQL on either
  warehouse and reported in the same way (``checks``).

Every check has a severity. ``critical``: the run stops before anything is published and
the batch is rejected (``gate``). ``row``: the offending rows move to ops.quarantine and the
run continues on the good rows (``quarantine``, with the SQL of ``predicates``).

The modules, each importing only those listed before it:

- ``suites``: loading and checking the suites against the canonical schema
- ``results``: a check's result; storing results in audit.validation_results and summarising them
- ``predicates``: SQL selecting the rows a row-wise check rejects
- ``gx``: the Great Expectations context and the runner over a batch
- ``checks``: the SQL checks across tables and periods
- ``quarantine``: moving failed rows to ops.quarantine, and the bound on their share
- ``docs``: Data Docs holding every check of a batch (GX's and the SQL ones), readable offline
- ``gate``: the stage's entry point, ``run``: the batch's verdict, passed or rejected

Great Expectations is imported inside functions only: DAG files must not pay for it.
"""

from __future__ import annotations

from grading.validation.gate import ValidationFailed, ensure_indexes, run
from grading.validation.gx import check_frame, data_docs_dir
from grading.validation.predicates import predicate
from grading.validation.results import CheckResult, ValidationReport, stored_results
from grading.validation.suites import SuiteError, load_suite, load_suites

__all__ = [
    "CheckResult",
    "SuiteError",
    "ValidationFailed",
    "ValidationReport",
    "check_frame",
    "data_docs_dir",
    "ensure_indexes",
    "load_suite",
    "load_suites",
    "predicate",
    "run",
    "stored_results",
]
