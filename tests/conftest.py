"""Shared fixtures: an isolated Airflow home, a per-test grading home, PostgreSQL databases,
small real HTTP and SMTP servers for the alert channels, and the graded warehouse the quarterly
review's tests read.

Airflow reads its configuration when first imported, so the environment is set here, at
collection time, before any test module imports it.
"""

from __future__ import annotations

import json
import os
import socketserver
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from grading import demo

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


# Small real servers on 127.0.0.1: where the alert channels (grading.alerts) deliver in tests.

@dataclass
class Received:
    """What a test server got, with an event to wait on instead of sleeping."""

    items: list = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)

    def add(self, item) -> None:
        self.items.append(item)
        self.arrived.set()


@contextmanager
def _serving(server: socketserver.BaseServer) -> Iterator[None]:
    """``server`` answering in a thread for the block, shut down and closed after it."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def webhook() -> Iterator[tuple[str, Received]]:
    """An HTTP server on 127.0.0.1 that records every POST (path, headers, JSON body)."""
    received = Received()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.add({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with _serving(server):
        yield f"http://127.0.0.1:{server.server_address[1]}", received


@dataclass
class CrmReceiver:
    """What the CRM test server saw: every attempt, and the batches it applied (once per key)."""

    url: str
    attempts: list = field(default_factory=list)  # (idempotency key, HTTP status answered)
    applied: dict = field(default_factory=dict)  # idempotency key -> JSON body applied
    fail_first: int = 2  # answer fail_status to the first attempts of every key
    fail_always: bool = False
    fail_status: int = 503

    def rows(self) -> list[dict]:
        return [row for body in self.applied.values() for row in body["rows"]]


@pytest.fixture
def crm_server() -> Iterator[CrmReceiver]:
    """A CRM-like HTTP receiver on 127.0.0.1: it answers 503 to the first ``fail_first`` attempts of
    each batch (after applying the second one, as a server that fails to answer does), and applies
    a batch at most once per Idempotency-Key, as receivers that honour the key do."""
    receiver = CrmReceiver(url="")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server's naming
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            key = self.headers.get("Idempotency-Key")
            with lock:
                tries = sum(1 for k, _ in receiver.attempts if k == key) + 1
                if tries == receiver.fail_first and not receiver.fail_always:
                    receiver.applied.setdefault(key, body)  # applied, but the answer is lost
                status = receiver.fail_status if receiver.fail_always or tries <= receiver.fail_first else 200
                if status == 200:
                    receiver.applied.setdefault(key, body)
                receiver.attempts.append((key, status))
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/crm/batches"
    with _serving(server):
        yield receiver


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, Received]]:
    """A minimal SMTP server on 127.0.0.1 that accepts every message (no TLS, no auth)."""
    received = Received()

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            self.wfile.write(b"220 grading-test ESMTP\r\n")
            envelope: dict = {"rcpt": []}
            while line := self.rfile.readline():
                command = line.decode().strip()
                verb = command.split(" ", 1)[0].upper()
                if verb == "DATA":
                    self.wfile.write(b"354 end with .\r\n")
                    data = []
                    while (row := self.rfile.readline().decode()) not in (".\r\n", ""):
                        data.append(row)
                    received.add({**envelope, "data": "".join(data)})
                    self.wfile.write(b"250 queued\r\n")
                elif verb == "QUIT":
                    self.wfile.write(b"221 bye\r\n")
                    return
                else:
                    address = command.partition("<")[2].partition(">")[0]
                    if verb == "MAIL":
                        envelope["from"] = address
                    elif verb == "RCPT":
                        envelope["rcpt"].append(address)
                    self.wfile.write(b"250 ok\r\n")

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    with _serving(server):
        yield server.server_address[1], received


# The quarterly review's warehouse, shared by the tests of grading.review.tables and grading.review.html.

PERIODS = [date(2024, 1, 1), date(2024, 4, 1), date(2024, 7, 1), date(2024, 10, 1), date(2025, 1, 1)]


@pytest.fixture(scope="session")
def reviewed_warehouse(tmp_path_factory: pytest.TempPathFactory) -> tuple[demo.DemoData, str, Path]:
    """Five quarterly periods graded on the embedded warehouse, Q1-Q4 reviewed one by one as they close
    (reports in reports/<as-of>/). Built once per session (over a minute): tests only read it, or
    rebuild review tables to the same rows."""

    from grading import demo
    from grading.pipeline import Connections, review_stage, run_grading
    from grading.review.quarters import Quarter

    tmp = tmp_path_factory.mktemp("review")
    data = demo.generate(customers=800, seed=17)
    source_url, url = f"sqlite:///{tmp / 'source.sqlite'}", f"duckdb:///{tmp / 'w.duckdb'}"
    demo.write_source(data, source_url)
    conns = Connections(source_url=source_url, warehouse_url=url)
    for as_of in PERIODS:
        run_grading(conns, as_of)
        if as_of != PERIODS[0]:
            review_stage(conns, Quarter.closing_on(as_of), "one-by-one", tmp / "reports" / str(as_of))
    return data, url, tmp


@pytest.fixture
def migrated_warehouse(tmp_path: Path) -> Iterator[Engine]:
    """An embedded DuckDB warehouse in the test's folder, migrated, as an engine."""
    from grading.warehouse import migrate, open_engine

    with open_engine(f"duckdb:///{tmp_path / 'w.duckdb'}") as engine:
        migrate(engine)
        yield engine
