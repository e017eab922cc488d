"""Access for BI tools: a PostgreSQL role that can read the published schema and nothing else."""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from grading.warehouse import exclusive, read_sql, split_statements

_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def create_bi_role(warehouse: Engine, role: str, password: str | None = None) -> None:
    """Create (or update) ``role`` with LOGIN and SELECT on every marts table and view."""
    if warehouse.dialect.name != "postgresql":
        raise ValueError(
            "read-only roles need a PostgreSQL warehouse; give BI tools the embedded DuckDB file "
            "read-only instead (e.g. duckdb -readonly, or a copy of the file)")
    if not _ROLE_NAME.match(role):
        raise ValueError(f"role name must match {_ROLE_NAME.pattern}, got {role!r}")
    with exclusive(warehouse, "grading.roles") as conn:
        quote = conn.dialect.identifier_preparer.quote
        exists = conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :role"), {"role": role}).first()
        verb = "ALTER" if exists else "CREATE"
        secret = f" PASSWORD {sa.String().literal_processor(conn.dialect)(password)}" if password else ""
        conn.execute(sa.text(f"{verb} ROLE {quote(role)} LOGIN{secret}"))
        database = conn.execute(sa.text("SELECT current_database()")).scalar_one()
        template = read_sql("roles/grant_bi_reader", conn.dialect.name)
        for statement in split_statements(template):
            conn.execute(sa.text(statement.format(role=quote(role), database=quote(database))))
