"""The BI tools' read-only PostgreSQL role (grading.access): names checked before they reach SQL,
DuckDB refused, and on a real PostgreSQL warehouse a role that reads marts (tables added later
too), connects to the warehouse where other roles no longer can, and can be created again."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from grading.access import check_role_name, create_bi_role, create_crm_role
from grading.warehouse import migrate, open_engine


@pytest.mark.parametrize("role", ["bi_reader", "_metabase", "superset2", "r" * 63])
def test_plain_lower_case_role_names_are_accepted(role: str) -> None:
    assert check_role_name(role) == role


@pytest.mark.parametrize("role", ['x"; DROP TABLE audit.run_audit; --', "BI", "2bi", "bi-reader", "", "r" * 64,
                                  "bi reader"])
def test_other_role_names_are_refused_before_any_sql(role: str) -> None:
    with pytest.raises(ValueError, match=r"role name must match .* got "):
        check_role_name(role)


def test_a_duckdb_warehouse_gets_no_role_but_advice(tmp_path: Path) -> None:
    with open_engine(f"duckdb:///{tmp_path}/w.duckdb") as engine, \
            pytest.raises(ValueError, match="read-only roles need a PostgreSQL warehouse.*duckdb -readonly"):
        create_bi_role(engine, "bi_reader")


def _as(url: str, role: str) -> str:
    return sa.make_url(url).set(username=role).render_as_string(hide_password=False)


@pytest.fixture
def roles(pg_url: str) -> Iterator[list[str]]:
    """Names for server-wide test roles, dropped (with their grants in the warehouse) after the test."""
    names = [f"bi_test_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    yield names
    with open_engine(pg_url) as engine, engine.begin() as conn:
        for name in names:
            if conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": name}).first():
                conn.execute(sa.text(f'DROP OWNED BY "{name}"'))
                conn.execute(sa.text(f'DROP ROLE "{name}"'))


@pytest.mark.postgres
def test_the_role_reads_marts_even_tables_added_later_and_nothing_else(pg_url: str, roles: list[str]) -> None:
    reader = roles[0]
    with open_engine(pg_url) as engine:
        migrate(engine)
        create_bi_role(engine, reader)
        with engine.begin() as conn:  # a later migration adds a table to marts
            conn.execute(sa.text("CREATE TABLE marts.added_later (a integer)"))
            conn.execute(sa.text("INSERT INTO marts.added_later VALUES (1)"))
    with open_engine(_as(pg_url, reader)) as engine, engine.connect() as conn:
        assert conn.execute(sa.text("SELECT a FROM marts.added_later")).scalar() == 1
        assert conn.execute(sa.text("SELECT COUNT(*) FROM marts.customer_tier_snapshot")).scalar() == 0
        for forbidden in ("SELECT * FROM ops.customer_keys", "SELECT * FROM raw.orders",
                          "UPDATE marts.added_later SET a = 2"):
            with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
                conn.execute(sa.text(forbidden))
            conn.rollback()


@pytest.mark.postgres
def test_only_the_owner_and_the_role_connect_and_other_open_databases_are_reported(
        pg_url: str, roles: list[str]) -> None:
    reader, stranger = roles
    database = sa.make_url(pg_url).database
    with open_engine(pg_url) as engine:
        migrate(engine)
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE ROLE "{stranger}" LOGIN'))
            public_postgres = conn.execute(sa.text(
                "SELECT has_database_privilege(:r, 'postgres', 'CONNECT')"), {"r": stranger}).scalar()
        others = create_bi_role(engine, reader)
        # again, with a password: the role is altered, not created twice
        assert create_bi_role(engine, reader, password="it's-a-secret") == others
    assert database not in others
    assert "template0" not in others  # no database accepting no connection is reported
    assert ("postgres" in others) == public_postgres
    with open_engine(_as(pg_url, reader)) as engine, engine.connect() as conn:
        assert conn.execute(sa.text("SELECT current_user")).scalar() == reader
    with open_engine(_as(pg_url, stranger)) as engine, \
            pytest.raises(sa.exc.OperationalError, match="permission denied for database"):
        engine.connect()


@pytest.mark.postgres
def test_an_unmigrated_warehouse_gets_no_role_but_the_step_to_take(pg_url: str, roles: list[str]) -> None:
    with open_engine(pg_url) as engine:
        with pytest.raises(LookupError, match="no marts schema yet: run python -m grading migrate"):
            create_bi_role(engine, roles[0])
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": roles[0]}).first() is None


@pytest.mark.postgres
def test_crm_operators_see_source_ids_through_the_crm_views_and_bi_tools_do_not(
        pg_url: str, roles: list[str]) -> None:
    from grading.lookup import lookup
    from tests.helpers import publish_by_hand

    reader, operator = roles
    with open_engine(pg_url) as engine:
        migrate(engine)
        publish_by_hand(engine)
        create_bi_role(engine, reader)
        create_crm_role(engine, operator)
    with open_engine(_as(pg_url, operator)) as engine:
        assert lookup(engine, "C2").customer["tier"] == "normal"
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT COUNT(*) FROM crm.current_actions")).scalar() == 2
            assert conn.execute(sa.text("SELECT COUNT(*) FROM marts.current_customer_tier")).scalar() == 4
            for forbidden in ("SELECT * FROM ops.customer_keys", "SELECT * FROM ops.exports",
                              "UPDATE marts.customer_tier_snapshot SET tier = 'gold'"):
                with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
                    conn.execute(sa.text(forbidden))
                conn.rollback()
    with open_engine(_as(pg_url, reader)) as engine, engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM marts.current_customer_service")).scalar() == 4
        for forbidden in ("SELECT * FROM crm.current_customers", "SELECT * FROM crm.current_actions"):
            with pytest.raises(sa.exc.ProgrammingError, match="permission denied for schema crm"):
                conn.execute(sa.text(forbidden))
            conn.rollback()
