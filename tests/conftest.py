"""Shared fixtures: an isolated Airflow home, a per-test grading home, and PostgreSQL databases.

Airflow reads its configuration when first imported, so the environment is set here, at
collection time, before any test module imports it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="grading-airflow-")
os.environ.update({
    "AIRFLOW_HOME": _AIRFLOW_HOME,
    "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
    "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    "SCARF_ANALYTICS": "false",
    "GX_ANALYTICS_ENABLED": "False",
    "GRADING_ENV": "test",  # the development pseudonym key is allowed in tests (and the demo) only
})
for name in ("AIRFLOW_CONN_GRADING_SOURCE", "AIRFLOW_CONN_GRADING_WAREHOUSE"):
    os.environ.pop(name, None)
# Files a test does not place itself (Data Docs, reports) go to a throwaway home, not the project's.
os.environ["GRADING_HOME"] = tempfile.mkdtemp(prefix="grading-home-")

PG_ADMIN_URL = os.environ.get("GRADING_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def airflow_db() -> str:
    """A migrated Airflow metadata database (SQLite) in a throwaway Airflow home."""
    subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"], check=True,
                   capture_output=True, env=os.environ.copy())
    return _AIRFLOW_HOME


@pytest.fixture
def grading_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh GRADING_HOME, so the embedded defaults land in the test's own folder."""
    home = tmp_path / "grading-home"
    monkeypatch.setenv("GRADING_HOME", str(home))
    return home


def _admin_engine(url: str, service: str, how_to_enable: str):
    """An AUTOCOMMIT engine on a test server; skips (or fails under CI=true) when it is not reachable."""
    import sqlalchemy as sa

    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:  # any failure to connect means "no server here"
        engine.dispose()
        message = f"{service} is not reachable at {url} ({type(exc).__name__}). {how_to_enable}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true requires {service}: " + message)
        pytest.skip(message)
    return engine


def _pg_admin_engine():
    return _admin_engine(PG_ADMIN_URL, "PostgreSQL", "Start a server with trust auth for user postgres on "
                         "127.0.0.1:5432, or set GRADING_TEST_PG_ADMIN_URL.")


def _scratch_database(admin, create: str, drop: str) -> Iterator[str]:
    """Create a uniquely named database on ``admin``'s server, yield its URL, drop it after."""
    import sqlalchemy as sa

    name = f"grading_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(create.format(name=name)))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(drop.format(name=name)))
        admin.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL database created for this test and dropped after it."""
    yield from _scratch_database(_pg_admin_engine(), 'CREATE DATABASE "{name}"',
                                 'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["duckdb", "postgresql"])
def warehouse_url(request: pytest.FixtureRequest, grading_home: Path) -> str:
    """Each warehouse the project supports: the embedded DuckDB file and a real PostgreSQL database."""
    if request.param == "duckdb":
        grading_home.mkdir(parents=True, exist_ok=True)
        return f"duckdb:///{grading_home / 'warehouse.duckdb'}"
    return request.getfixturevalue("pg_url")


MARIADB_ADMIN_URL = os.environ.get("GRADING_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/")


@pytest.fixture
def mariadb_url() -> Iterator[str]:
    """A MariaDB/MySQL database created for this test and dropped after it."""
    admin = _admin_engine(MARIADB_ADMIN_URL, "MariaDB/MySQL", "Start one (root, empty password, 127.0.0.1:3306) "
                          "or set GRADING_TEST_MARIADB_URL.")
    yield from _scratch_database(admin, "CREATE DATABASE `{name}`", "DROP DATABASE IF EXISTS `{name}`")
