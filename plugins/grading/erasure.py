"""Erasure: remove one customer from every raw, working and published table, history included.

The tables are found in the warehouse's catalogue (every table of raw, staging, ops and
marts with a customer_id or customer_key column, plus the quarantine's row copies), so a
table added later is covered without changing this code. All deletes run in one
transaction under the publish lock; the erasure itself is recorded by pseudonymous key
only, in ops.erasures, which is also the suppression list: a later source row of an erased
customer is skipped and counted by the extraction (grading.extract), never graded. The
Data Docs folder is scrubbed of the customer's id and key, and the local copies of the CRM
export (grading.export.files) lose the customer's rows - the CRM itself must be told apart.
On DuckDB, deleted values stay in the file's free blocks until the file is rewritten
(``compact``).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from grading.export.changes import to_csv
from grading.export.files import write_period
from grading.frames import bulk_insert
from grading.keys import pseudonym
from grading.warehouse import exclusive

ERASED = "[erased]"


def erase(warehouse: Engine, customer_id: str, key: bytes, docs: Path | None = None,
          exports: Path | None = None, *, dry_run: bool = False) -> dict[str, int]:
    """Delete every row of ``customer_id`` and scrub ``docs`` and ``exports``; returns rows (and
    Data Docs files, export periods) changed per table (raises LookupError if the warehouse holds
    nothing of the customer). With ``dry_run``, counts what would go and changes nothing."""
    with (warehouse.connect() if dry_run else exclusive(warehouse, "grading.publish")) as conn:
        customer_key = conn.execute(sa.text("SELECT customer_key FROM ops.customer_keys WHERE customer_id = :id"),
                                    {"id": customer_id}).scalar() or pseudonym(customer_id, key)
        deleted: dict[str, int] = {}
        for name, table, condition, params in _holding(conn, customer_id, customer_key):
            if dry_run:
                count = conn.execute(sa.text(f"SELECT COUNT(*) FROM {table} WHERE {condition}"), params).scalar()  # noqa: S608
            else:
                count = conn.execute(sa.text(f"DELETE FROM {table} WHERE {condition}"), params).rowcount  # noqa: S608
            if count:
                deleted[name] = deleted.get(name, 0) + count
        if not deleted:
            raise LookupError("no rows of that customer in the warehouse; nothing erased")
        if not dry_run:
            bulk_insert(conn, "ops.erasures", pd.DataFrame([{
                "customer_key": customer_key, "rows_deleted": sum(deleted.values()),
                "erased_at": datetime.now(UTC).replace(tzinfo=None)}]))
    scrubbed = scrub_docs(docs, (customer_id, customer_key), dry_run=dry_run) if docs is not None else 0
    if scrubbed:
        deleted["data docs (files)"] = scrubbed
    rewritten = scrub_exports(exports, customer_id, dry_run=dry_run) if exports is not None else 0
    if rewritten:
        deleted["crm exports (periods)"] = rewritten
    return deleted


def _holding(conn: Connection, customer_id: str, customer_key: str) -> list[tuple[str, str, str, dict[str, str]]]:
    """``(schema.table, quoted, condition, parameters)`` selecting the customer's rows, once per table, for
    every table of raw, staging, ops, marts and audit with a customer_id, customer_key or row_json column."""
    columns = conn.execute(sa.text(
        "SELECT c.table_schema, c.table_name, c.column_name FROM information_schema.columns AS c "
        "JOIN information_schema.tables AS t ON t.table_schema = c.table_schema AND t.table_name = c.table_name "
        "WHERE t.table_type = 'BASE TABLE' AND c.table_schema IN ('raw', 'staging', 'ops', 'marts', 'audit') "
        "AND c.column_name IN ('customer_id', 'customer_key', 'row_json') AND t.table_name <> 'erasures' "
        "ORDER BY 1, 2, 3")).all()
    quote = conn.dialect.identifier_preparer.quote
    # the quarantine keeps offending rows as JSON text, spaced per engine; the id as JSON writes it
    # there (a quote or a backslash in it escaped)
    stored = json.dumps(customer_id, ensure_ascii=False)[1:-1]
    params = {"customer_id": customer_id, "customer_key": customer_key,
              **{f"p{i}": f'%"customer_id"{sep}"{_escape(stored)}"%' for i, sep in enumerate((":", ": ", " : "))}}
    conditions: dict[tuple[str, str], list[str]] = {}
    for schema, table, column in columns:
        if column == "row_json":
            condition = " OR ".join(f"{quote(column)} LIKE :p{i} ESCAPE '!'" for i in range(3))
        else:
            condition = f"{quote(column)} = :{column}"
        conditions.setdefault((schema, table), []).append(condition)
    return [(f"{schema}.{table}", f"{quote(schema)}.{quote(table)}", " OR ".join(f"({c})" for c in found),
             {k: v for k, v in params.items() if f":{k}" in " ".join(found)})
            for (schema, table), found in conditions.items()]


def scrub_exports(folder: Path, customer_id: str, *, dry_run: bool = False) -> int:
    """Rewrite every period of the CRM export's file target that holds ``customer_id`` without
    their rows (atomically, with a new manifest); returns the periods rewritten (with ``dry_run``,
    the periods that would be, rewriting none)."""
    if not folder.is_dir():
        return 0
    changed = 0
    for period in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        parquet, manifest = period / "changes.parquet", period / "manifest.json"
        if not parquet.exists() or not manifest.exists():
            continue
        rows = pd.read_parquet(parquet)
        kept = rows[rows["customer_id"] != customer_id].reset_index(drop=True)
        if len(kept) == len(rows):
            continue
        changed += 1
        if dry_run:
            continue
        baseline = json.loads(manifest.read_text(encoding="utf-8")).get("baseline")
        write_period(folder, datetime.fromisoformat(period.name).date(),
                     datetime.fromisoformat(baseline).date() if baseline else None, kept, to_csv(kept))
    return changed


def _escape(text: str) -> str:
    """Escape LIKE wildcards in a literal search string."""
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")


def scrub_docs(folder: Path, values: tuple[str, ...], *, dry_run: bool = False) -> int:
    """Replace ``values`` in every text file under ``folder`` (Data Docs pages and the GX results
    behind them) by ``[erased]``; returns the files changed (with ``dry_run``, the files that
    would be, writing none)."""
    if not folder.is_dir():
        return 0
    changed = 0
    for path in folder.rglob("*"):
        if not path.is_file() or path.suffix not in (".html", ".json", ".js", ".txt", ".md"):
            continue
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
        cleaned = text
        for value in values:
            cleaned = cleaned.replace(value, ERASED).replace(json.dumps(value)[1:-1], ERASED)
        if cleaned != text:
            if not dry_run:
                path.write_text(cleaned, encoding="utf-8", errors="surrogateescape")
            changed += 1
    return changed


def compact(warehouse: Engine) -> tuple[int, int]:
    """Rewrite an embedded DuckDB warehouse into a new file, so nothing deleted is left in its
    bytes (DuckDB keeps freed blocks' old contents after DELETE, CHECKPOINT and VACUUM); returns
    the file's size before and after. Nothing else may have the file open meanwhile."""
    if warehouse.dialect.name != "duckdb":
        raise ValueError("compact rewrites an embedded DuckDB file; PostgreSQL reclaims space with VACUUM FULL")
    path = Path(warehouse.url.database)
    fresh = path.with_name(f"{path.stem}.compacting{path.suffix}")
    fresh.unlink(missing_ok=True)
    before = path.stat().st_size
    with warehouse.connect() as conn:
        name = conn.exec_driver_sql("SELECT current_database()").scalar()
        conn.exec_driver_sql(f"ATTACH '{fresh}' AS compacted")  # our own path, next to the warehouse
        conn.exec_driver_sql(f'COPY FROM DATABASE "{name}" TO compacted')
        conn.commit()
        conn.exec_driver_sql("DETACH compacted")
        conn.commit()
    warehouse.dispose()
    os.replace(fresh, path)
    path.with_name(path.name + ".wal").unlink(missing_ok=True)
    return before, path.stat().st_size
