"""Erasure: remove one customer from every raw, working and published table, history included.

The tables are found in the warehouse's catalogue (every table of raw, staging, ops and
marts with a customer_id or customer_key column, plus the quarantine's row copies), so a
table added later is covered without changing this code. All deletes run in one
transaction under the publish lock; the erasure itself is recorded by pseudonymous key
only.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from grading.extract import pseudonym
from grading.warehouse import bulk_insert, exclusive

SCHEMAS = ("raw", "staging", "ops", "marts")


def erase(warehouse: Engine, customer_id: str, key: bytes) -> dict[str, int]:
    """Delete every row of ``customer_id``; returns rows deleted per table (raises if unknown)."""
    with exclusive(warehouse, "grading.publish") as conn:
        customer_key = conn.execute(sa.text("SELECT customer_key FROM ops.customer_keys WHERE customer_id = :id"),
                                    {"id": customer_id}).scalar() or pseudonym(customer_id, key)
        columns = conn.execute(sa.text(
            "SELECT c.table_schema, c.table_name, c.column_name FROM information_schema.columns AS c "
            "JOIN information_schema.tables AS t ON t.table_schema = c.table_schema AND t.table_name = c.table_name "
            "WHERE t.table_type = 'BASE TABLE' AND c.table_schema IN ('raw', 'staging', 'ops', 'marts') "
            "AND c.column_name IN ('customer_id', 'customer_key', 'row_json') AND t.table_name <> 'erasures' "
            "ORDER BY 1, 2, 3")).all()
        quote = conn.dialect.identifier_preparer.quote
        deleted: dict[str, int] = {}
        for schema, table, column in columns:
            if column == "row_json":  # the quarantine keeps offending rows as JSON text, spaced per engine
                patterns = [f'%"customer_id"{sep}"{_escape(customer_id)}"%' for sep in (":", ": ", " : ")]
                params = {f"p{i}": p for i, p in enumerate(patterns)}
                condition = " OR ".join(f"{quote(column)} LIKE :p{i} ESCAPE '!'" for i in range(len(patterns)))
            else:
                condition = f"{quote(column)} = :value"
                params = {"value": customer_id if column == "customer_id" else customer_key}
            result = conn.execute(sa.text(f"DELETE FROM {quote(schema)}.{quote(table)} WHERE {condition}"),  # noqa: S608
                                  params)
            if result.rowcount:
                deleted[f"{schema}.{table}"] = deleted.get(f"{schema}.{table}", 0) + result.rowcount
        if not deleted:
            raise LookupError("no rows of that customer in the warehouse; nothing erased")
        bulk_insert(conn, "ops.erasures", pd.DataFrame([{
            "customer_key": customer_key, "rows_deleted": sum(deleted.values()),
            "erased_at": datetime.now(UTC).replace(tzinfo=None)}]))
    return deleted


def _escape(text: str) -> str:
    """Escape LIKE wildcards in a literal search string."""
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")
