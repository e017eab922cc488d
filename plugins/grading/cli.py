"""``python -m grading``: the pipeline without a scheduler, calling what the DAG tasks call."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from datetime import date
from pathlib import Path

from grading.rule_commands import cmd_backtest, cmd_criteria, cmd_rules_check, cmd_rules_dry_run
from grading.settings import SOURCE_CONN_ID, WAREHOUSE_CONN_ID, connection_url, mask_urls


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a date like 2025-01-01, got {text!r}") from exc


class UsageError(ValueError):
    """An argument the command cannot use (exit 2, like argparse's own usage errors)."""


def _checked(parse, text: str):
    """``parse(text)``; its ValueError is a usage error."""
    try:
        return parse(text)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def cmd_generate(args: argparse.Namespace) -> int:
    from grading import demo

    url = args.source_url or connection_url(SOURCE_CONN_ID)
    data = demo.generate(customers=args.customers, seed=args.seed, end=args.end)
    written = demo.write_source(data, url)
    print(f"demo source written to {mask_urls(url)}: " + ", ".join(f"{n} {t}" for t, n in written.items()))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from grading.pipeline import Connections, run_grading
    from grading.run_summary import print_run_summary

    conns = Connections.resolve()
    summary = run_grading(conns, args.as_of)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print_run_summary(conns.warehouse_url, args.as_of)
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from grading.run_summary import print_run_summary

    print_run_summary(connection_url(WAREHOUSE_CONN_ID), args.as_of)
    return 0


def cmd_review(args: argparse.Namespace) -> int:
    from grading.pipeline import Connections, review_stage
    from grading.review.quarters import Quarter

    quarter = _checked(Quarter.parse, args.quarter)
    summary = review_stage(Connections.resolve(), quarter, f"cli__review__{quarter}", args.output_dir,
                           args.proposed_tiers)
    print(f"Quarterly review {quarter}: tables marts.review_* written")
    for row in summary["tiers"]:
        print(f"  {row['tier']:<10} {row['customers']:>8,} customers   {row['revenue_share']:6.1%} of revenue")
    print(f"Report: {summary['report']}")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from grading.pipeline import prepare_warehouse
    from grading.warehouse import open_engine

    with open_engine(connection_url(WAREHOUSE_CONN_ID)) as warehouse:
        applied = prepare_warehouse(warehouse)
    print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none pending'}")
    return 0


def cmd_docs(args: argparse.Namespace) -> int:
    import tempfile
    from pathlib import Path

    from grading.catalog import write_dictionary
    from grading.pipeline import prepare_warehouse
    from grading.warehouse import open_engine

    with tempfile.TemporaryDirectory() as tmp, open_engine(f"duckdb:///{Path(tmp) / 'docs.duckdb'}") as engine:
        prepare_warehouse(engine)
        with engine.connect() as conn:
            path = write_dictionary(conn, Path(args.output))
    print(f"wrote {path}")
    return 0


def cmd_role(args: argparse.Namespace) -> int:
    """bi-role and crm-role: create (or update) the login, then say what it reads."""
    from grading import access
    from grading.warehouse import open_engine

    _checked(access.check_role_name, args.name)
    password = os.environ.get(args.password_env) if args.password_env else None
    if args.password_env and not password:
        raise ValueError(f"environment variable {args.password_env} is empty or unset")
    create, reads = {"bi-role": (access.create_bi_role, "schemas marts and audit (and nothing else in this database)"),
                     "crm-role": (access.create_crm_role, "schemas marts, audit and crm (the lists with source "
                                                          "customer ids)")}[args.command]
    with open_engine(connection_url(WAREHOUSE_CONN_ID)) as warehouse:
        others = create(warehouse, args.name, password)
    print(f"role {args.name} can now read {reads}")
    if others:
        print(f"note: {args.name} can still connect to {', '.join(others)} on this server, as PostgreSQL lets every "
              "role connect to a database by default; where it should not: REVOKE CONNECT ON DATABASE <name> FROM "
              "PUBLIC (and grant it to the roles that need it)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from dataclasses import replace

    import sqlalchemy as sa

    from grading.export.run import configured_targets, export
    from grading.warehouse import open_engine

    targets = [t for t in configured_targets() if not args.target or t.name == args.target]
    if args.output_dir:
        targets = [replace(t, folder=args.output_dir) if t.name == "files" else t for t in targets]
    if args.target and not targets:
        raise UsageError(f"target {args.target} is not configured (GRADING_EXPORT_TARGETS; the webhook needs the "
                         "grading_crm connection)")
    with open_engine(connection_url(WAREHOUSE_CONN_ID)) as warehouse:
        as_of = args.as_of
        if as_of is None:
            with warehouse.connect() as conn:
                as_of = conn.execute(sa.text("SELECT MAX(as_of_date) FROM marts.published_periods")).scalar()
            if as_of is None:
                raise LookupError("nothing is published yet: grade a period first (python -m grading run)")
        results = export(warehouse, as_of, f"cli__export__{as_of}", targets)
    for result in results:
        since = f"since {result.baseline}" if result.baseline else "first export, in full"
        print(f"{result.target}: {result.rows:,} change(s) for {as_of} ({since}) -> {result.location}")
        for change, count in result.counts.items():
            print(f"    {change:<24} {count:>8,}")
    if not results:
        print("no export target configured (GRADING_EXPORT_TARGETS)")
    return 0


def cmd_lookup(args: argparse.Namespace) -> int:
    from grading.lookup import describe, lookup
    from grading.warehouse import open_engine

    with open_engine(connection_url(WAREHOUSE_CONN_ID)) as warehouse:
        print("\n".join(describe(lookup(warehouse, args.customer_id))))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from grading.run_summary import recent_runs

    report = recent_runs(connection_url(WAREHOUSE_CONN_ID), args.as_of, failed_only=args.failed, limit=args.limit)
    if report.empty:
        print("no runs recorded in audit.run_audit" + (f" for as-of {args.as_of}" if args.as_of else "")
              + (" that failed" if args.failed else ""))
        return 0
    report["started_utc"] = report["started_utc"].dt.strftime("%Y-%m-%d %H:%M:%S")
    print(f"Recent runs in audit.run_audit, newest first ({len(report)} shown):")
    print(report.to_string(index=False))
    return 0


def cmd_eliminations(args: argparse.Namespace) -> int:
    from grading import decisions
    from grading.rules.pins import load_rules
    from grading.warehouse import open_engine

    with open_engine(connection_url(WAREHOUSE_CONN_ID)) as warehouse:
        if args.eliminations_command == "decide":
            policy = load_rules()[1].review  # the review policy of the candidate rules in force
            decisions.decide(warehouse, args.customer_key, args.as_of, args.decision, args.reviewer, args.note,
                             policy)
            print(f"{args.decision}: {args.customer_key} as of {args.as_of} by {args.reviewer}")
            return 0
        listed = decisions.candidates_by_status(warehouse, args.status, args.as_of)
    columns = ["as_of_date", "customer_key", "rule_name", "action", "control_group", "review_status", "reviewer"]
    print(listed[columns].to_string(index=False) if len(listed) else "no elimination candidates match")
    return 0


def cmd_erase(args: argparse.Namespace) -> int:
    from grading.erasure import compact, erase
    from grading.settings import export_dir, pseudonym_key
    from grading.validation import data_docs_dir
    from grading.warehouse import open_engine

    with open_engine(connection_url(WAREHOUSE_CONN_ID)) as warehouse:
        deleted = erase(warehouse, args.customer_id, pseudonym_key(), data_docs_dir(), export_dir())
        if args.compact:
            before, after = compact(warehouse)
        embedded = warehouse.dialect.name == "duckdb"
    print(f"erased {sum(deleted.values()):,} row(s) from {len(deleted)} table(s); recorded in ops.erasures by "
          "pseudonymous key, so later source rows of the customer are skipped, not graded. Erase the customer "
          "from the source too.")
    if args.compact:
        print(f"rewrote the warehouse file ({before:,} -> {after:,} bytes): nothing erased is left in it")
    elif embedded:
        print("note: DuckDB keeps deleted values in the file's free space until it is rewritten: run again with "
              "--compact (while no run uses the warehouse)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m grading", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log every stage")
    parser.add_argument("--allow-dev-key", action="store_true",
                        help="use the public development pseudonym key when GRADING_PSEUDONYM_KEY is not set "
                             "(demo data only: anyone can trace its customer keys back to source ids)")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="write generated demo data to the source database")
    gen.add_argument("--customers", type=int, default=2000, help="number of customers (default 2000)")
    gen.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    gen.add_argument("--end", type=_date, default=date(2024, 12, 31), help="last day of history (default 2024-12-31)")
    gen.add_argument("--source-url", help="SQLAlchemy URL to write to (default: the grading_source connection)")
    gen.set_defaults(func=cmd_generate)

    run = sub.add_parser("run", help="grade customers as of a date (every stage, in this process)")
    run.add_argument("--as-of", type=_date, required=True, help="as-of date: data before its midnight UTC counts")
    run.add_argument("--json", action="store_true", help="print the stage summaries as JSON")
    run.set_defaults(func=cmd_run)

    summ = sub.add_parser("summary", help="print what the warehouse holds for an as-of date (tiers, candidates)")
    summ.add_argument("--as-of", type=_date, required=True)
    summ.set_defaults(func=cmd_summary)

    runs = sub.add_parser("runs", help="report the recent runs recorded in audit.run_audit (status, time, errors)")
    runs.add_argument("--limit", type=int, default=10, help="how many runs to show (default 10)")
    runs.add_argument("--as-of", type=_date, help="only runs of this as-of date")
    runs.add_argument("--failed", action="store_true", help="only runs that failed")
    runs.set_defaults(func=cmd_runs)

    rev = sub.add_parser("review", help="build the quarterly review tables and the HTML report for a quarter")
    rev.add_argument("--quarter", required=True, help="quarter such as 2024Q4")
    rev.add_argument("--output-dir", type=Path, help="report folder (default: $GRADING_HOME/reviews/QUARTER)")
    rev.add_argument("--proposed-tiers", type=Path, help="add a backtest of this tier rule file to the report")
    rev.set_defaults(func=cmd_review)

    back = sub.add_parser("backtest", help="compare a proposed tier rule file with the one in force; publishes nothing")
    back.add_argument("--tiers", type=Path, required=True, help="the proposed tier rule file")
    back.add_argument("--as-of", type=_date, help="graded as-of date to compare on (default: the latest)")
    back.add_argument("--output-dir", type=Path, help="where the CSV files go")
    back.set_defaults(func=cmd_backtest)

    mig = sub.add_parser("migrate", help="create or upgrade the warehouse schema (runs are doing it too)")
    mig.set_defaults(func=cmd_migrate)

    docs = sub.add_parser("docs", help="regenerate the data dictionary of the published tables")
    docs.add_argument("--output", default="docs/data-dictionary.md", help="where to write it")
    docs.set_defaults(func=cmd_docs)

    role = sub.add_parser("bi-role", help="create a PostgreSQL login that can only read the published schema")
    role.add_argument("--name", default="grading_bi_reader", help="role name (default grading_bi_reader)")
    role.add_argument("--password-env", help="environment variable holding the role's password")
    role.set_defaults(func=cmd_role)

    crm = sub.add_parser("crm-role", help="create a PostgreSQL login for CRM operators: marts plus the crm views "
                                          "with source customer ids")
    crm.add_argument("--name", default="crm_operator", help="role name (default crm_operator)")
    crm.add_argument("--password-env", help="environment variable holding the role's password")
    crm.set_defaults(func=cmd_role)

    exp = sub.add_parser("export", help="hand a published period's changes to the CRM (files, webhook); "
                                        "recorded in ops.exports")
    exp.add_argument("--as-of", type=_date, help="the published period (default: the latest)")
    exp.add_argument("--target", choices=["files", "webhook"], help="only this target (default: every one configured)")
    exp.add_argument("--output-dir", type=Path, help="folder of the file target (default: $GRADING_EXPORT_DIR)")
    exp.set_defaults(func=cmd_export)

    look = sub.add_parser("lookup", help="one customer by source id: tier, reasons, entitlements, open flags")
    look.add_argument("customer_id", help="the customer's id in the source")
    look.set_defaults(func=cmd_lookup)

    crit = sub.add_parser("criteria", help="publish the criteria in plain language (Markdown and HTML)")
    crit.add_argument("--output-dir", type=Path, help="folder to write to (default: $GRADING_HOME/criteria)")
    crit.add_argument("--tiers", type=Path, help="a tier rule file (default: the one in force)")
    crit.add_argument("--candidates", type=Path, help="a candidate rule file (default: the one in force)")
    crit.set_defaults(func=cmd_criteria)

    elim = sub.add_parser("eliminations", help="list elimination candidates by review status, or record a decision")
    elim_sub = elim.add_subparsers(dest="eliminations_command", required=True)
    listing = elim_sub.add_parser("list", help="candidates with their review status")
    listing.add_argument("--status", choices=["proposed", "approved", "rejected", "superseded", "expired"])
    listing.add_argument("--as-of", type=_date)
    listing.set_defaults(func=cmd_eliminations)
    decide = elim_sub.add_parser("decide", help="approve or reject a proposed candidate (kept with your name)")
    decide.add_argument("--customer-key", required=True)
    decide.add_argument("--as-of", type=_date, required=True)
    decide.add_argument("--decision", required=True, choices=["approved", "rejected"])
    decide.add_argument("--reviewer", required=True)
    decide.add_argument("--note")
    decide.set_defaults(func=cmd_eliminations)

    erase = sub.add_parser("erase", help="remove one customer (by source id) from every warehouse table")
    erase.add_argument("--customer-id", required=True, help="the customer's id in the source")
    erase.add_argument("--compact", action="store_true",
                       help="then rewrite an embedded DuckDB warehouse file, so no deleted value stays in its bytes")
    erase.set_defaults(func=cmd_erase)

    rules = sub.add_parser("rules", help="check or dry-run the rule files in include/rules/")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True)
    check = rules_sub.add_parser("check", help="validate rule files (default: the ones in force)",
                                 description="Check rule files: each on its own (fields, features, value types) "
                                             "and together (rules that can never match, unreachable tiers, value "
                                             "bands with gaps or in the wrong order, unknown tier names). Exit 0: "
                                             "valid; 1: an error (or a warning, with --strict); 2: usage.")
    check.add_argument("files", nargs="*", type=Path, help="rule files to check")
    check.add_argument("--strict", action="store_true", help="fail on warnings too")
    check.set_defaults(func=cmd_rules_check)
    dry = rules_sub.add_parser("dry-run", help="count customers per tier rule as of a date; writes nothing")
    dry.add_argument("--as-of", type=_date, required=True)
    dry.add_argument("--tiers", type=Path, help="a proposed tier rule file (default: the one in force)")
    dry.set_defaults(func=cmd_rules_dry_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.allow_dev_key:
        os.environ["GRADING_ALLOW_DEV_KEY"] = "1"
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import sqlalchemy as sa

    from grading.export.run import ExportFailed
    from grading.ledger import BatchError, BatchInFlight
    from grading.periods import PeriodOrderError
    from grading.validation import ValidationFailed

    # rule, mapping, suite and source-data errors are ValueErrors
    data_errors = (ValidationFailed, BatchError, BatchInFlight, PeriodOrderError, ExportFailed, ValueError,
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
