"""The warehouse: engines, SQL files from include/sql, locks and migrations (DataFrames in and out: grading.frames).

Everything here speaks SQLAlchemy and knows nothing of Airflow. The same SQL files run on
the embedded DuckDB warehouse and on PostgreSQL; where a statement must differ, a file
named ``<name>.<dialect>.sql`` next to ``<name>.sql`` takes precedence for that dialect.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

from grading.errors import DataError
from grading.settings import duckdb_memory_limit, include_dir, postgres_work_mem

MIGRATIONS_TABLE = "ops.schema_migrations"

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")



@contextmanager
def open_engine(url: str) -> Iterator[Engine]:
    """An engine that holds no connection once the block ends.

    An embedded DuckDB file admits one writing process, so no connection may outlive
    the task that opened it; NullPool closes each connection when it is returned. DuckDB
    gets a memory limit (GRADING_DUCKDB_MEMORY_LIMIT) so a worker's size does not grow
    with the warehouse; PostgreSQL sessions a ``work_mem`` (GRADING_PG_WORK_MEM). Every
    session's time zone is UTC, so a zoned timestamp column of a source compares with the
    pipeline's naive UTC bounds as the instant it is (grading.source_window).
    """
    engine = sa.create_engine(url, poolclass=NullPool)
    if engine.dialect.name == "duckdb":
        # Two threads opening one DuckDB file at the same moment race in DuckDB's instance
        # cache ("Unique file handle conflict"); opening one at a time avoids it.
        @sa.event.listens_for(engine, "do_connect")
        def _one_at_a_time(dialect, connection_record, cargs, cparams):
            with _DUCKDB_OPEN:
                return dialect.connect(*cargs, **cparams)

        limit = duckdb_memory_limit()  # a size checked against a pattern, safe to place in SQL

        @sa.event.listens_for(engine, "connect")
        def _bounded_memory(dbapi_connection, connection_record):
            dbapi_connection.execute(f"SET memory_limit = '{limit}'")
            dbapi_connection.execute("SET TimeZone = 'UTC'")
    elif engine.dialect.name == "postgresql":
        work_mem = postgres_work_mem()  # a size checked against a pattern

        @sa.event.listens_for(engine, "do_connect")
        def _session_settings(dialect, connection_record, cargs, cparams):
            # session settings at connection start (libpq options), before any transaction;
            # options given in the URL come after them, so theirs win
            cparams["options"] = f"-c work_mem={work_mem} -c TimeZone=UTC {cparams.get('options', '')}".strip()
    elif engine.dialect.name in ("mysql", "mariadb"):
        @sa.event.listens_for(engine, "connect")
        def _utc_session(dbapi_connection, connection_record):
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SET time_zone = '+00:00'")
    try:
        yield engine
    finally:
        engine.dispose()



def sql_file(name: str, dialect: str) -> Path:
    """The SQL file ``include/sql/<name>.sql``, or its ``<name>.<dialect>.sql`` variant."""
    base = include_dir() / "sql"
    for candidate in (base / f"{name}.{dialect}.sql", base / f"{name}.sql"):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"no SQL file for {name!r} under {base}")



def split_statements(sql: str) -> list[str]:
    """Split a SQL file into statements at semicolons that end a line.

    The project's SQL files keep one statement per ``;``-terminated block and use no
    procedural bodies, so this simple rule is enough and keeps files readable.
    """
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    statements, current = [], []
    for line in lines:
        current.append(line)
        if line.rstrip().endswith(";"):
            statements.append("\n".join(current).strip().rstrip(";"))
            current = []
    tail = "\n".join(current).strip()
    if tail:
        statements.append(tail)
    return [s for s in statements if s]



def sql_text(name: str, dialect: str) -> str:
    """The text of ``include/sql/<name>.sql`` (or its dialect variant)."""
    return sql_file(name, dialect).read_text(encoding="utf-8")



def run_sql_file(conn: Connection, name: str, params: Mapping[str, Any] | None = None) -> None:
    """Run every statement of ``include/sql/<name>.sql`` with bound parameters."""
    for statement in split_statements(sql_text(name, conn.dialect.name)):
        used = {k: v for k, v in (params or {}).items() if f":{k}" in statement}
        conn.execute(sa.text(statement), used)



def quoted(conn: Connection, qualified_table: str) -> str:
    """``schema.table`` quoted for the connection's dialect."""
    preparer = conn.dialect.identifier_preparer
    return ".".join(preparer.quote(part) for part in qualified_table.split("."))



def analyze(conn: Connection, *tables: str) -> None:
    """Refresh PostgreSQL's planner statistics of tables just loaded, as the loading
    transaction's last statements (ANALYZE counts the transaction's own rows).

    PostgreSQL's documentation advises ANALYZE after a bulk load: autovacuum's analyze comes
    later (or never, where it is off), and until then the planner works from the estimates of
    an empty or much smaller table. Unanalyzed, it took 1.8M completed orders for 10,000 rows
    and the publish of 100,000 customers spent 1.8 of its 5.4 s compiling JIT code for plans
    sized on wrong counts; and a period's rows that the statistics do not know yet are
    estimated at one row, which the planner answers with a nested loop (a tier history update
    of 100,000 customers ran for minutes). ANALYZE reads a sample (30,000 rows by default), so
    it costs well under a second per table whatever the size. DuckDB keeps its statistics as
    it writes: a no-op there.
    """
    if conn.dialect.name != "postgresql":
        return
    for table in tables:
        conn.exec_driver_sql(f"ANALYZE {quoted(conn, table)}")



def applied_migrations(conn: Connection) -> set[str]:
    return set(_applied_checksums(conn))


def _applied_checksums(conn: Connection) -> dict[str, str | None]:
    """Version -> the sha256 of the file applied (None where an older runner recorded none)."""
    if not sa.inspect(conn).has_table("schema_migrations", schema="ops"):
        return {}
    rows = conn.execute(sa.text(f"SELECT version, checksum FROM {MIGRATIONS_TABLE}"))  # noqa: S608 - identifiers from code constants, values bound
    return {row[0]: row[1] for row in rows}


class MigrationError(DataError, RuntimeError):
    """The warehouse's migration history disagrees with the migration files of this code."""


def _migration_source(path: Path, dialect: str) -> tuple[str, str]:
    """The SQL a migration runs on ``dialect`` (its dialect variant if there is one) and its sha256."""
    variant = path.with_name(f"{path.stem}.{dialect}.sql")
    text = (variant if variant.exists() else path).read_text(encoding="utf-8")
    return text, hashlib.sha256(text.encode("utf-8")).hexdigest()


def _check_history(conn: Connection, files: list[Path]) -> None:
    """Refuse a warehouse whose applied migrations were edited since, or that this code does not know.

    An applied migration never runs again, so an edit to its file would leave warehouses built
    before and after the edit different while both claim the same version: the change belongs
    in a new migration. Rows an older runner recorded without a checksum take the file's now.
    """
    applied = _applied_checksums(conn)
    by_version = {path.name[:4]: path for path in files}
    unknown = sorted(set(applied) - set(by_version))
    if unknown:
        raise MigrationError(f"{MIGRATIONS_TABLE} records migration(s) {', '.join(unknown)} that this code does not "
                             "have: the warehouse was upgraded by a newer version of the project; run that version")
    for version, recorded in sorted(applied.items()):
        path = by_version[version]
        _, checksum = _migration_source(path, conn.dialect.name)
        if recorded is None:
            conn.execute(sa.text(f"UPDATE {MIGRATIONS_TABLE} SET checksum = :c WHERE version = :v"),  # noqa: S608 - identifiers from code constants, values bound
                         {"c": checksum, "v": version})
        elif recorded != checksum:
            raise MigrationError(
                f"{path}: migration {version} was edited after it was applied to this warehouse (sha256 applied "
                f"{recorded[:12]}..., file now {checksum[:12]}...). Applied migrations never run again: restore the "
                "file (git checkout) and put the change in a new migration")


def migration_files() -> list[Path]:
    folder = include_dir() / "sql" / "migrations"
    files = sorted(p for p in folder.glob("*.sql") if _MIGRATION_NAME.match(p.name))
    return files



_DUCKDB_OPEN = threading.Lock()

_LOCAL_LOCKS: defaultdict[tuple[str, str], threading.Lock] = defaultdict(threading.Lock)



@contextmanager
def exclusive(engine: Engine, *names: str) -> Iterator[Connection]:
    """A transaction that holds the locks ``names`` (taken in the order given), so writers of
    the same rows queue up.

    Runs may load different periods at the same time, but some writes span periods (a source
    table's extraction window, the migration history, tables rebuilt from every period). On
    PostgreSQL those wait for each other on transaction-scoped advisory locks; an embedded
    DuckDB file has a single writing process, whose threads wait on locks of their own.
    """
    with ExitStack() as stack:
        if engine.dialect.name != "postgresql":
            for name in names:
                stack.enter_context(_LOCAL_LOCKS[(engine.url.render_as_string(), name)])
        conn = stack.enter_context(engine.begin())
        if conn.dialect.name == "postgresql":
            for name in names:
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": name})
        yield conn



@contextmanager
def held_lock(engine: Engine, name: str) -> Iterator[None]:
    """The lock ``name`` held across several transactions, for work that must not interleave
    with another process's (a whole extraction). It conflicts with ``exclusive(engine, name)``.

    On PostgreSQL a session advisory lock on a connection of its own: the server releases it
    when that connection ends, so a killed worker never leaves it taken. Elsewhere the
    process's own lock, as in ``exclusive``.
    """
    if engine.dialect.name != "postgresql":
        with _LOCAL_LOCKS[(engine.url.render_as_string(), name)]:
            yield
        return
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT pg_advisory_lock(hashtext(:name))"), {"name": name})
        conn.commit()
        try:
            yield
        finally:
            conn.execute(sa.text("SELECT pg_advisory_unlock(hashtext(:name))"), {"name": name})
            conn.commit()



def migrate(engine: Engine, up_to: str | None = None) -> list[str]:
    """Apply the pending migrations in order, each in its own transaction; returns their names.

    The version table records what was applied, so a warehouse built by an older version
    of the project upgrades in place, with the sha256 of each file it applied: a warehouse
    whose applied migrations were edited since is refused (MigrationError). A migration with a
    ``NNNN_name.<dialect>.sql`` variant (PostgreSQL's indexes) runs that file instead on that
    dialect. ``up_to`` stops after that version (for tests of upgrades).
    """
    applied_now = []
    files = migration_files()
    with exclusive(engine, "grading.migrate") as conn:
        conn.execute(sa.text("CREATE SCHEMA IF NOT EXISTS ops"))
        conn.execute(sa.text(
            f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} "
            "(version VARCHAR(4) NOT NULL, name VARCHAR(200) NOT NULL, applied_at TIMESTAMP NOT NULL)"
        ))
        columns = set(conn.execute(sa.text(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = 'ops' AND table_name = 'schema_migrations'")).scalars())
        if "checksum" not in columns:  # a warehouse migrated before checksums were recorded
            conn.execute(sa.text(f"ALTER TABLE {MIGRATIONS_TABLE} ADD COLUMN checksum VARCHAR(64)"))
        _check_history(conn, files)
    for path in files:
        version = path.name[:4]
        if up_to is not None and version > up_to:
            break
        with exclusive(engine, "grading.migrate") as conn:
            if version in applied_migrations(conn):
                continue
            text, checksum = _migration_source(path, engine.dialect.name)
            for statement in split_statements(text):
                conn.execute(sa.text(statement))
            conn.execute(
                sa.text(f"INSERT INTO {MIGRATIONS_TABLE} (version, name, applied_at, checksum) "  # noqa: S608 - identifiers from code constants, values bound
                        "VALUES (:v, :n, :t, :c)"),
                {"v": version, "n": path.name, "t": datetime.now(UTC).replace(tzinfo=None), "c": checksum},
            )
        applied_now.append(path.name)
    return applied_now
