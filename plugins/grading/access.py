"""Roles on a PostgreSQL warehouse: BI tools read the published schema and nothing else; CRM
operators also read the crm schema, where the published lists meet the source's customer ids."""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from grading.warehouse import exclusive, split_statements, sql_text

_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def check_role_name(role: str) -> str:
    """``role`` if it is a plain lower-case PostgreSQL identifier (it is placed in SQL, quoted)."""
    if not _ROLE_NAME.match(role):
        raise ValueError(f"role name must match {_ROLE_NAME.pattern}, got {role!r}")
    return role


def create_bi_role(warehouse: Engine, role: str, password: str | None = None) -> list[str]:
    """Create (or update) ``role`` with LOGIN and SELECT on every marts table and view; no
    temporary tables, and the warehouse database open to its owner and the role only.

    Returns the server's other databases the role can still connect to (PostgreSQL's PUBLIC
    default): closing those is the server administrator's call, not this warehouse's.
    """
    return _create_role(warehouse, role, password, "roles/grant_bi_reader")


def create_crm_role(warehouse: Engine, role: str, password: str | None = None) -> list[str]:
    """Like :func:`create_bi_role`, plus SELECT on the crm schema's re-identifying views
    (crm.current_customers, crm.current_actions) - for the operators who act on the lists."""
    return _create_role(warehouse, role, password, "roles/grant_crm_operator")


def _create_role(warehouse: Engine, role: str, password: str | None, grants: str) -> list[str]:
    if warehouse.dialect.name != "postgresql":
        raise ValueError(
            "read-only roles need a PostgreSQL warehouse; give BI tools the embedded DuckDB file "
            "read-only instead (e.g. duckdb -readonly, or a copy of the file)")
    check_role_name(role)
    with exclusive(warehouse, "grading.roles") as conn:
        if not sa.inspect(conn).has_schema("marts"):
            raise LookupError("the warehouse has no marts schema yet: run python -m grading migrate (or a "
                              "grading run) before creating the BI role")
        quote = conn.dialect.identifier_preparer.quote
        exists = conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :role"), {"role": role}).first()
        verb = "ALTER" if exists else "CREATE"
        secret = f" PASSWORD {sa.String().literal_processor(conn.dialect)(password)}" if password else ""
        conn.execute(sa.text(f"{verb} ROLE {quote(role)} LOGIN{secret}"))
        database = conn.execute(sa.text("SELECT current_database()")).scalar_one()
        template = sql_text(grants, conn.dialect.name)
        for statement in split_statements(template):
            conn.execute(sa.text(statement.format(role=quote(role), database=quote(database))))
        return list(conn.execute(sa.text(
            "SELECT datname FROM pg_database WHERE datallowconn AND datname <> current_database() "
            "AND has_database_privilege(:role, datname, 'CONNECT') ORDER BY datname"), {"role": role}).scalars())
