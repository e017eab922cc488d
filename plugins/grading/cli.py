"""``python -m grading``: the pipeline without a scheduler, calling what the DAG tasks call.

Exit status: 0 done; 1 a data error (bad data, a rejected batch, an invalid rule or mapping
file, a source or warehouse that cannot be read: one line saying what and where, no
traceback); 2 a usage error (an argument it cannot use, or a confirmation not given:
generate over an existing source without --force, erase without --yes).
"""

from __future__ import annotations

import argparse
import atexit
import gc
import json
import logging
import os
import sys
import textwrap
from datetime import date
from pathlib import Path

from grading.cli_commands import (
    UsageError,
    checked,
    cmd_docs,
    cmd_eliminations,
    cmd_erase,
    cmd_export,
    cmd_generate,
    cmd_lookup,
    cmd_migrate,
    cmd_role,
    cmd_runs,
    cmd_summary,
)
from grading.errors import DataError
from grading.rule_commands import cmd_backtest, cmd_criteria, cmd_rules_calibrate, cmd_rules_check, cmd_rules_dry_run
from grading.settings import mask_urls

PROG = "python -m grading"


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a date like 2025-01-01, got {text!r}") from exc


def version() -> str:
    """The installed distribution's version; in a checkout that was never installed, pyproject.toml's."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("customer-grading")
    except PackageNotFoundError:
        import tomllib

        try:
            pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
            return tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["version"] + " (not installed)"
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "unknown (not installed)"


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def cmd_run(args: argparse.Namespace) -> int:
    from grading.pipeline import Connections, run_grading
    from grading.run_summary import print_run_summary

    conns = Connections.resolve()
    # a line per stage as it ends (stderr: stdout keeps the result); with -v the log has the same lines
    summary = run_grading(conns, args.as_of, progress=None if args.quiet or args.verbose else _progress)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print_run_summary(conns.warehouse_url, args.as_of)
    return 0


def cmd_review(args: argparse.Namespace) -> int:
    from grading.pipeline import Connections, annual_stage, review_stage
    from grading.review.quarters import Quarter

    if args.year is not None:
        if args.proposed_tiers:
            raise UsageError("--proposed-tiers backtests a quarter: use it with --quarter, not --year")
        _print_annual(annual_stage(Connections.resolve(), args.year, f"cli__review__{args.year}", args.output_dir))
        return 0
    quarter = checked(Quarter.parse, args.quarter)
    summary = review_stage(Connections.resolve(), quarter, f"cli__review__{quarter}", args.output_dir,
                           args.proposed_tiers)
    print(f"Quarterly review {quarter}: tables marts.review_* written")
    for row in summary["tiers"]:
        print(f"  {row['tier']:<10} {row['customers']:>8,} customers   {row['revenue_share']:6.1%} of revenue")
    print(f"Report: {summary['report']}")
    if "annual" in summary:
        _print_annual(summary["annual"])
    return 0


def _print_annual(summary: dict) -> None:
    quarters = summary["quarters_reviewed"]
    print(f"Annual review {summary['year']}: {summary['rows']} rows of marts.review_annual written, from "
          f"{len(quarters)} of 4 quarters ({', '.join(quarters)})" + ("" if len(quarters) == 4 else " - INCOMPLETE"))
    print(f"Annual report: {summary['report']}")  # its warnings are logged (stderr), as the quarter's


def _command(sub, name: str, summary: str, description: str, *examples: str) -> argparse.ArgumentParser:
    """A subcommand whose --help has a description and examples (``PROG`` is put in front of each)."""
    epilog = ("Examples:\n" if len(examples) > 1 else "Example:\n") + "\n".join(f"  {PROG} {e}" for e in examples)
    return sub.add_parser(name, help=summary, description=textwrap.fill(description, 79), epilog=epilog,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def _add_pipeline_commands(sub) -> None:
    gen = _command(sub, "generate", "write generated demo data to the source database",
                   "Write generated demo data (customers, orders, tickets, surveys, interactions) to the source: "
                   "the grading_source connection, or source.sqlite under $GRADING_HOME. A source that exists already "
                   "(the file, or the tables in a database) is left alone unless --force is given, as generate "
                   "replaces its tables.", "generate --customers 2000 --seed 42", "generate --force")
    gen.add_argument("--customers", type=int, default=2000, help="number of customers (default 2000)")
    gen.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    gen.add_argument("--end", type=_date, default=date(2024, 12, 31), help="last day of history (default 2024-12-31)")
    gen.add_argument("--source-url", help="SQLAlchemy URL to write to (default: the grading_source connection)")
    gen.add_argument("--force", action="store_true", help="replace the tables of a source that exists already")
    gen.set_defaults(func=cmd_generate)

    run = _command(sub, "run", "grade customers as of a date (every stage, in this process)",
                   "Grade customers as of a date: extract, validate, features, churn, tiers, flags, publish and the "
                   "CRM export, in this process, as the customer_grading DAG's tasks do. Each stage prints a line as "
                   "it ends (what it did, in rows, and its seconds) on stderr; then what was published is printed.",
                   "run --as-of 2025-01-01", "run --as-of 2025-01-01 --quiet --json > run.json")
    run.add_argument("--as-of", type=_date, required=True, help="as-of date: data before its midnight UTC counts")
    run.add_argument("--json", action="store_true", help="print the stage summaries as JSON")
    run.add_argument("-q", "--quiet", action="store_true", help="no line per stage, only the result")
    run.set_defaults(func=cmd_run)

    summ = _command(sub, "summary", "print what the warehouse holds for an as-of date (tiers, candidates)",
                    "Print what the warehouse holds for an as-of date: customers per tier, candidates, the "
                    "validation outcome, the tables written and the latest review.", "summary --as-of 2025-01-01")
    summ.add_argument("--as-of", type=_date, required=True)
    summ.set_defaults(func=cmd_summary)

    runs = _command(sub, "runs", "report the recent runs recorded in audit.run_audit (status, time, errors)",
                    "Report the recent runs recorded in audit.run_audit, newest first: outcome, duration, rows "
                    "published, the failing stage and its error.", "runs", "runs --failed --limit 5")
    runs.add_argument("--limit", type=int, default=10, help="how many runs to show (default 10)")
    runs.add_argument("--as-of", type=_date, help="only runs of this as-of date")
    runs.add_argument("--failed", action="store_true", help="only runs that failed")
    runs.set_defaults(func=cmd_runs)

    rev = _command(sub, "review", "build the quarterly (or annual) review tables and the HTML report",
                   "Build the quarter's evaluation tables (marts.review_*) and its report (one HTML page and CSV "
                   "files); with --proposed-tiers, the report also shows what that tier rule file would have done. "
                   "A fourth quarter also builds its year's annual review; --year builds a year's annual review "
                   "(marts.review_annual and reviews/YEAR/annual.html) from its quarters reviewed so far.",
                   "review --quarter 2024Q4",
                   "review --quarter 2024Q4 --proposed-tiers include/rules/examples/tiers_weighted_score.yaml",
                   "review --year 2024")
    which = rev.add_mutually_exclusive_group(required=True)
    which.add_argument("--quarter", help="quarter such as 2024Q4")
    which.add_argument("--year", type=int, help="calendar year such as 2024: its annual review against the one before")
    rev.add_argument("--output-dir", type=Path,
                     help="report folder (default: $GRADING_HOME/reviews/QUARTER, or reviews/YEAR with --year)")
    rev.add_argument("--proposed-tiers", type=Path, help="add a backtest of this tier rule file to the report")
    rev.set_defaults(func=cmd_review)

    mig = _command(sub, "migrate", "create or upgrade the warehouse schema (runs are doing it too)",
                   "Create or upgrade the warehouse schema: apply the pending migrations of include/sql/migrations "
                   "(every run does it too).", "migrate")
    mig.set_defaults(func=cmd_migrate)

    exp = _command(sub, "export", "hand a published period's changes to the CRM (files, webhook); "
                                  "recorded in ops.exports",
                   "Hand a published period's changes to the CRM targets of GRADING_EXPORT_TARGETS (files, webhook) "
                   "again: the same content as the run's export. Every attempt is recorded in ops.exports.",
                   "export", "export --as-of 2025-01-01 --target files --output-dir /tmp/crm")
    exp.add_argument("--as-of", type=_date, help="the published period (default: the latest)")
    exp.add_argument("--target", choices=["files", "webhook"], help="only this target (default: every one configured)")
    exp.add_argument("--output-dir", type=Path, help="folder of the file target (default: $GRADING_EXPORT_DIR)")
    exp.set_defaults(func=cmd_export)


def _add_people_commands(sub) -> None:
    look = _command(sub, "lookup", "one customer by source id: tier, reasons, entitlements, open flags",
                    "Show one customer by their id in the source, as a CRM operator sees them: tier and why, since "
                    "when, entitlements and open flags (reads the crm views).", "lookup C0000042")
    look.add_argument("customer_id", help="the customer's id in the source")
    look.set_defaults(func=cmd_lookup)

    elim = _command(sub, "eliminations", "list elimination candidates by review status, or record a decision",
                    "The elimination review queue: list candidates by review status (proposed, approved, "
                    "rejected, superseded, expired), or approve or reject a proposed one.",
                    "eliminations list --status proposed")
    elim_sub = elim.add_subparsers(dest="eliminations_command", required=True)
    listing = _command(elim_sub, "list", "candidates with their review status",
                       "List elimination candidates with their review status and reviewer.",
                       "eliminations list --status proposed --as-of 2025-01-01")
    listing.add_argument("--status", choices=["proposed", "approved", "rejected", "superseded", "expired"])
    listing.add_argument("--as-of", type=_date)
    listing.set_defaults(func=cmd_eliminations)
    decide = _command(elim_sub, "decide", "approve or reject a proposed candidate (kept with your name)",
                      "Approve or reject a proposed elimination candidate; the decision is kept with the reviewer's "
                      "name and note.", "eliminations decide --customer-key KEY --as-of 2025-01-01 "
                                        "--decision approved --reviewer alice --note 'checked with sales'")
    decide.add_argument("--customer-key", required=True)
    decide.add_argument("--as-of", type=_date, required=True)
    decide.add_argument("--decision", required=True, choices=["approved", "rejected"])
    decide.add_argument("--reviewer", required=True)
    decide.add_argument("--note")
    decide.set_defaults(func=cmd_eliminations)

    erase = _command(sub, "erase", "remove one customer (by source id) from every warehouse table",
                     "Remove one customer (by source id) from every warehouse table, the Data Docs and the local "
                     "copies of the CRM export, and keep their later source rows out of runs (ops.erasures). It "
                     "cannot be undone: --dry-run counts what would be removed and changes nothing; erasing needs "
                     "--yes (on a terminal, a yes typed at the prompt does too).",
                     "erase --customer-id C0000042 --dry-run", "erase --customer-id C0000042 --yes --compact")
    erase.add_argument("--customer-id", required=True, help="the customer's id in the source")
    erase.add_argument("--dry-run", action="store_true", help="count what would be removed; change nothing")
    erase.add_argument("--yes", action="store_true", help="confirm the erasure (needed without a terminal)")
    erase.add_argument("--compact", action="store_true",
                       help="then rewrite an embedded DuckDB warehouse file, so no deleted value stays in its bytes")
    erase.set_defaults(func=cmd_erase)

    for name, default, who in (("bi-role", "grading_bi_reader", "BI tools: it can read only the published "
                                "schemas marts and audit"),
                               ("crm-role", "crm_operator", "CRM operators: marts and audit plus the crm views, "
                                "which carry source customer ids")):
        role = _command(sub, name, f"create a PostgreSQL login for {who.split(':')[0]}",
                        f"Create (or update) a PostgreSQL login for {who}.",
                        f"{name} --name {default} --password-env ROLE_PASSWORD")
        role.add_argument("--name", default=default, help=f"role name (default {default})")
        role.add_argument("--password-env", help="environment variable holding the role's password")
        role.set_defaults(func=cmd_role)


def _add_rule_commands(sub) -> None:
    back = _command(sub, "backtest", "compare a proposed tier rule file with the one in force; publishes nothing",
                    "Compare a proposed tier rule file with the one in force on a graded as-of date: customers per "
                    "tier and who would move. Publishes nothing; writes the comparison as CSV files.",
                    "backtest --tiers include/rules/examples/tiers_kmeans.yaml")
    back.add_argument("--tiers", type=Path, required=True, help="the proposed tier rule file")
    back.add_argument("--as-of", type=_date, help="graded as-of date to compare on (default: the latest)")
    back.add_argument("--output-dir", type=Path, help="where the CSV files go")
    back.set_defaults(func=cmd_backtest)

    crit = _command(sub, "criteria", "publish the criteria in plain language (Markdown and HTML)",
                    "Publish the grading criteria in plain language (Markdown and HTML) from the rule files in "
                    "force, or from proposed ones.", "criteria", "criteria --tiers proposed/tiers.yaml "
                                                                 "--output-dir /tmp/criteria")
    crit.add_argument("--output-dir", type=Path, help="folder to write to (default: $GRADING_HOME/criteria)")
    crit.add_argument("--tiers", type=Path, help="a tier rule file (default: the one in force)")
    crit.add_argument("--candidates", type=Path, help="a candidate rule file (default: the one in force)")
    crit.set_defaults(func=cmd_criteria)

    docs = _command(sub, "docs", "regenerate the data dictionary of the published tables",
                    "Regenerate the data dictionary of the published tables from include/sql/marts.yml (on a "
                    "throwaway warehouse).", "docs --output docs/data-dictionary.md")
    docs.add_argument("--output", default="docs/data-dictionary.md", help="where to write it")
    docs.set_defaults(func=cmd_docs)

    rules = _command(sub, "rules", "check or dry-run the rule files in include/rules/",
                     "Check rule files, or count what the tier rules would do as of a date.", "rules check")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True)
    check = _command(rules_sub, "check", "validate rule files (default: the ones in force)",
                     "Check rule files: each on its own (fields, features, value types) and together (rules that "
                     "can never match, unreachable tiers, value bands with gaps or in the wrong order, unknown tier "
                     "names). Exit 0: valid; 1: an error (or a warning, with --strict); 2: usage.",
                     "rules check", "rules check --strict proposed/tiers.yaml")
    check.add_argument("files", nargs="*", type=Path, help="rule files to check")
    check.add_argument("--strict", action="store_true", help="fail on warnings too")
    check.set_defaults(func=cmd_rules_check)
    dry = _command(rules_sub, "dry-run", "count customers per tier rule as of a date; writes nothing",
                   "Count customers per tier rule as of a graded date, with the tier rule file in force or a "
                   "proposed one; writes nothing.",
                   "rules dry-run --as-of 2025-01-01 --tiers include/rules/examples/tiers_kmeans.yaml")
    dry.add_argument("--as-of", type=_date, required=True)
    dry.add_argument("--tiers", type=Path, help="a proposed tier rule file (default: the one in force)")
    dry.set_defaults(func=cmd_rules_dry_run)
    cal = _command(rules_sub, "calibrate", "propose value-band thresholds for a target tier distribution",
                   "Propose the thresholds of value bands that give a target distribution on the data as of a date "
                   "- shares of customers (80/15/5) or of revenue, lowest tier first - print the distribution and "
                   "revenue share per tier they make, and write a candidate tier rule file to review and backtest; "
                   "writes nothing to the warehouse.",
                   "rules calibrate --as-of 2025-01-01 --shares 80/15/5",
                   "rules calibrate --as-of 2025-01-01 --shares 20/30/50 --by revenue --output proposed/tiers.yaml")
    cal.add_argument("--as-of", type=_date, required=True)
    cal.add_argument("--shares", required=True, type=_shares,
                     help="percentages per tier, lowest tier first, e.g. 80/15/5")
    cal.add_argument("--by", choices=("customers", "revenue"), default="customers",
                     help="what the shares count (default: customers)")
    cal.add_argument("--feature", default="monetary_window",
                     help="the value the bands cut (default: monetary_window, the qualification window's value)")
    cal.add_argument("--output", type=Path, help="candidate file (default: $GRADING_HOME/calibrated/tiers_DATE.yaml)")
    cal.set_defaults(func=cmd_rules_calibrate)


def _shares(text: str) -> str:
    """``80/15/5``: positive percentages adding up to 100 (checked against the tiers later)."""
    from grading.calibrate import Target

    try:
        Target.parse(text, ["tier"] * len(text.replace(",", "/").split("/")))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="The grading pipeline without a scheduler: the same stages as the DAG tasks, in this process.\n\n"
                    + textwrap.fill("Exit status: 0 done; 1 a data error (bad data, a rejected batch, an invalid rule "
                                    "or mapping file, a source or warehouse that cannot be read), in one line saying "
                                    "what and where; 2 a usage error (an argument it cannot use, or a confirmation "
                                    "not given: generate over an existing source without --force, erase without "
                                    "--yes).", 79),
        epilog=f"Example:\n  {PROG} generate && {PROG} run --as-of 2025-01-01\n\n"
               f"Every command has --help with an example: {PROG} run --help")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every stage")
    parser.add_argument("--allow-dev-key", action="store_true",
                        help="use the public development pseudonym key when GRADING_PSEUDONYM_KEY is not set "
                             "(demo data only: anyone can trace its customer keys back to source ids)")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_pipeline_commands(sub)
    _add_people_commands(sub)
    _add_rule_commands(sub)
    return parser


def _release_duckdb() -> None:
    """Free DuckDB's Python modules before the interpreter's own teardown.

    DuckDB 2.0's bindings (nanobind) count their objects still alive when the interpreter has
    finished and print "nanobind: leaked N instances" for them. None of ours are left: every
    engine is disposed and every connection closed when its command ends. What remains are
    DuckDB's module-level objects (its type constants, its classes), which the teardown frees
    too late when other extensions keep the module graph alive through it: seen with Great
    Expectations loaded (jsonschema's ``referencing``, on Rust's rpds) beside duckdb_engine and
    SQLAlchemy's ORM, that is, after a validate stage. Dropping DuckDB's modules in an exit
    handler, while the interpreter is whole, frees them in time.
    """
    for name in [m for m in sys.modules if m.partition(".")[0] in ("duckdb", "_duckdb")]:
        module = sys.modules.pop(name, None)
        if module is not None:
            module.__dict__.clear()
    gc.collect()


def main(argv: list[str] | None = None) -> int:
    atexit.unregister(_release_duckdb)
    # registered first: exit handlers run last in, first out, so it runs after those of every library
    # the command loads (which may still use DuckDB)
    atexit.register(_release_duckdb)
    args = build_parser().parse_args(argv)
    if args.allow_dev_key:
        os.environ["GRADING_ALLOW_DEV_KEY"] = "1"
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Reading an Airflow connection sets Airflow's logging up, at INFO: the stage results, which the
    # progress lines show already, would be logged again
    package_log = logging.getLogger("grading")
    level = package_log.level
    if not args.verbose:
        package_log.setLevel(logging.WARNING)
    import sqlalchemy as sa

    from grading.export.run import ExportFailed
    from grading.ledger import BatchError, BatchInFlight
    from grading.periods import PeriodOrderError
    from grading.validation import ValidationFailed

    # rule, mapping, suite and source-data errors are DataErrors (and ValueErrors)
    data_errors = (DataError, ValidationFailed, BatchError, BatchInFlight, PeriodOrderError, ExportFailed, ValueError,
                   LookupError, OSError, sa.exc.SQLAlchemyError)
    try:
        return args.func(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except data_errors as exc:  # a message, not a traceback: what is wrong and where
        text = str(exc).split("\n(Background on this error")[0]
        print(f"error: {mask_urls(text)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        package_log.setLevel(level)
