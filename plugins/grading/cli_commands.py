"""The bodies of ``python -m grading``'s commands other than ``run``, ``review`` and the rule commands.

grading.cli parses the arguments and maps errors to exit statuses; each function here does
one command and returns 0, or raises: ``UsageError`` (exit 2) for an argument it cannot use
or a confirmation not given, a data error (exit 1) for what is wrong with the data or files.
"""

from __future__ import annotations

import argparse
import os
import sys

from grading.settings import SOURCE_CONN_ID, WAREHOUSE_CONN_ID, connection_url, mask_urls


class UsageError(ValueError):
    """An argument the command cannot use, or a confirmation it needs (exit 2, like argparse's usage errors)."""


def checked(parse, text: str):
    """``parse(text)``; its ValueError is a usage error."""
    try:
        return parse(text)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def cmd_generate(args: argparse.Namespace) -> int:
    """Write demo data; a source that exists already is replaced only with --force."""
    from grading import demo

    url = args.source_url or connection_url(SOURCE_CONN_ID)
    if not args.force and (existing := demo.existing_source(url)):
        raise UsageError(f"the source {mask_urls(url)} exists already ({existing}): generate would replace its "
                         "tables. Pass --force to overwrite it, or --source-url to write elsewhere")
    data = demo.generate(customers=args.customers, seed=args.seed, end=args.end)
    written = demo.write_source(data, url)
    print(f"demo source written to {mask_urls(url)}: " + ", ".join(f"{n} {t}" for t, n in written.items()))
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from grading.run_summary import print_run_summary

    print_run_summary(connection_url(WAREHOUSE_CONN_ID), args.as_of)
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

    checked(access.check_role_name, args.name)
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


def on_terminal() -> bool:
    """Whether a person can be asked: stdin and stdout are a terminal."""
    return sys.stdin.isatty() and sys.stdout.isatty()


def _confirmed(customer_id: str, found: dict[str, int]) -> bool:
    """Show what would go and ask on the terminal; only a yes confirms."""
    _print_counts(f"erasing customer {customer_id} removes:", found)
    try:
        return input("Erase them for good? [y/N] ").strip().lower() in ("y", "yes")
    except EOFError:
        return False


def _print_counts(title: str, counts: dict[str, int]) -> None:
    """``title``, then a line per table (rows), Data Docs (files) or CRM export (periods)."""
    print(title)
    for table, count in counts.items():
        print(f"    {table:<40} {count:>8,}")


def cmd_erase(args: argparse.Namespace) -> int:
    """Erase one customer: --dry-run counts and changes nothing; erasing needs --yes (or a yes on a terminal)."""
    from grading.erasure import compact, erase
    from grading.settings import export_dir, pseudonym_key
    from grading.validation import data_docs_dir
    from grading.warehouse import open_engine

    if args.dry_run and args.compact:
        raise UsageError("--compact rewrites the warehouse file: it cannot be part of a --dry-run")
    interactive = not (args.yes or args.dry_run) and on_terminal()
    if not (args.yes or args.dry_run or interactive):
        raise UsageError("erase deletes the customer's rows for good: pass --yes to confirm (or --dry-run to see "
                         "what it would remove)")
    with open_engine(connection_url(WAREHOUSE_CONN_ID)) as warehouse:
        key, docs, exports = pseudonym_key(), data_docs_dir(), export_dir()
        if args.dry_run or interactive:
            found = erase(warehouse, args.customer_id, key, docs, exports, dry_run=True)
            if args.dry_run:
                _print_counts(f"erasing customer {args.customer_id} would remove (nothing changed; --yes erases):",
                              found)
                return 0
            if not _confirmed(args.customer_id, found):
                raise UsageError("not confirmed: nothing erased")
        deleted = erase(warehouse, args.customer_id, key, docs, exports)
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
