"""The distributed path, natively: a real Airflow deployment on this machine runs customer_grading.

What docker-compose.yaml deploys is started here as plain processes — the API server, the
scheduler, the DAG processor and two Celery workers (CeleryExecutor, Redis broker, result backend
and Airflow metadata in PostgreSQL databases of their own) — against the project's DAG folder and
a PostgreSQL warehouse (a DuckDB file cannot take writers from two worker processes). Then:

1. a manual run (``airflow dags trigger`` with ``{"as_of": "2024-12-01"}``) must succeed and
   publish exactly what ``python -m grading run`` publishes for that date in one process;
2. ``airflow backfill create`` over two monthly periods (as-of 2024-12-01 again and 2025-01-01)
   must succeed and leave the warehouse identical to running the periods one by one;
3. across those 21 task instances both workers must have run tasks (each worker reports its own
   host name through ``[core] hostname_callable``, as two machines would), every task must have
   taken a slot of the ``grading_warehouse`` pool, and the Celery result backend must hold them.

Every process is started in its own process group and stopped (TERM, then KILL after a bound);
the test fails if any process of this Airflow home survives. Waits poll the metadata database
with deadlines; nothing sleeps to assert. Deselect with ``-m "not distributed"``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from grading import demo
from tests.conftest import _pg_admin_engine
from tests.helpers import ROOT, cmdline, free_port, processes_of, published

pytestmark = [pytest.mark.distributed, pytest.mark.postgres]

BIN = Path(sys.executable).parent
DAG_ID = "customer_grading"
TRIGGERED_AS_OF = date(2024, 12, 1)
# Monthly runs' logical dates are their interval starts: 2024-11-01 grades as of 2024-12-01.
BACKFILL_FROM, BACKFILL_TO = "2024-11-01", "2024-12-01"
BACKFILL_AS_OF = [date(2024, 12, 1), date(2025, 1, 1)]
WORKERS = ("grading-worker-a", "grading-worker-b")
REDIS_URL = os.environ.get("GRADING_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
BUDGET_SECONDS = 600  # the whole module: stack up, three runs, stack down (about 180 s on 2 cores)

# Imported by each worker's task processes ([core] hostname_callable): two workers on one machine
# report different host names, as two machines would.
IDENTITY_MODULE = '''
import os


def worker_hostname() -> str:
    return os.environ["GRADING_TEST_WORKER_NAME"]
'''


def _required(message: str) -> None:
    """Skip without the service locally; under CI=true a missing service is a failure."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("CI=true requires it: " + message)
    pytest.skip(message)


@dataclass
class Stack:
    """The running deployment: its environment, databases, processes and a clock."""

    home: Path
    env: dict[str, str]
    meta_url: str
    results_url: str
    warehouse_url: str
    reference_url: str
    started: float = field(default_factory=time.monotonic)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    reference: subprocess.Popen | None = None  # the single-process runs, beside the stack
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def deadline(self) -> float:
        return self.started + BUDGET_SECONDS

    def log(self, name: str) -> Path:
        return self.home / f"{name}.out"

    def tails(self, lines: int = 25) -> str:
        parts = []
        for name in self.processes:
            text = self.log(name).read_text(errors="replace").splitlines() if self.log(name).exists() else []
            parts.append(f"----- {name} (last {lines} lines)\n" + "\n".join(text[-lines:]))
        return "\n".join(parts)

    def start(self, name: str, *args: str, **extra_env: str) -> None:
        """Start ``airflow ARGS`` in a process group of its own, output to ``<name>.out``."""
        with self.log(name).open("wb") as out:
            self.processes[name] = subprocess.Popen([str(BIN / "airflow"), *args], env={**self.env, **extra_env},
                                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def airflow(self, *args: str, timeout: float = 120) -> str:
        """Run one ``airflow`` CLI command to completion (what an operator types)."""
        done = subprocess.run([str(BIN / "airflow"), *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout)
        assert done.returncode == 0, f"airflow {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    def wait(self, what: str, ready: Callable[[], object], limit: float) -> object:
        """Poll ``ready`` until it returns something truthy, within ``limit`` s and the module budget."""
        until = min(time.monotonic() + limit, self.deadline)
        while True:
            for name, process in self.processes.items():
                assert process.poll() is None, f"{name} exited ({process.returncode}) while waiting for {what}\n" \
                                               + self.tails()
            value = ready()
            if value:
                return value
            assert time.monotonic() < until, f"timed out waiting for {what}\n" + self.tails()
            time.sleep(0.5)

    def query(self, sql: str, **params) -> list[sa.Row]:
        engine = sa.create_engine(self.meta_url, poolclass=NullPool)
        try:
            with engine.connect() as conn:
                return list(conn.execute(sa.text(sql), params))
        except sa.exc.ProgrammingError:  # a table Airflow has not created yet
            return []
        finally:
            engine.dispose()

    def stop(self) -> list[str]:
        """TERM every process group, KILL what is left after 30 s; return processes that survived."""
        processes = [*self.processes.values(), *([self.reference] if self.reference else [])]
        for process in processes:
            _signal_group(process, signal.SIGTERM)
        until = time.monotonic() + 30
        for process in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, until - time.monotonic()))
        for process in processes:
            _signal_group(process, signal.SIGKILL)
            process.wait(timeout=10)
        survivors = processes_of(self.home)
        if survivors:  # e.g. a task process that left its group: do not leave it running
            for pid in survivors:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        return [f"{pid}: {cmdline(pid)}" for pid in survivors]


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


def _create_databases(admin: sa.Engine, *names: str) -> None:
    with admin.connect() as conn:
        for name in names:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))


def _drop_databases(admin: sa.Engine, *names: str) -> None:
    with admin.connect() as conn:
        for name in names:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def redis_broker() -> Iterator[tuple[str, str]]:
    """The local Redis, a database index of the tests' own and a key prefix unique to this run."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        _required(f"Redis is not reachable at {REDIS_URL} ({type(exc).__name__}); start redis-server on "
                  "127.0.0.1:6379 or set GRADING_TEST_REDIS_URL")
    prefix = f"grading-test-{uuid.uuid4().hex[:10]}:"
    try:
        yield REDIS_URL, prefix
    finally:
        for key in client.scan_iter(match=f"{prefix}*", count=500):
            client.delete(key)
        client.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_broker: tuple[str, str]) -> Iterator[Stack]:
    """Airflow with the CeleryExecutor: API server, scheduler, DAG processor and two workers, ready to run."""
    from cryptography.fernet import Fernet

    admin = _pg_admin_engine()
    tag = uuid.uuid4().hex[:10]
    names = {role: f"grading_dist_{role}_{tag}" for role in ("meta", "results", "warehouse", "reference")}
    base = admin.url.render_as_string(hide_password=False).rsplit("/", 1)[0]
    home = tmp_path_factory.mktemp("airflow-celery")
    (home / "plugins").mkdir()
    (home / "identity").mkdir()
    (home / "identity" / "grading_test_identity.py").write_text(IDENTITY_MODULE)
    broker_url, prefix = redis_broker
    api_port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "GRADING_"))},
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(home / "identity"),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(home / "plugins"),  # the grading package is installed
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api_port}",
        "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"{base}/{names['meta']}",
        "AIRFLOW__CELERY__BROKER_URL": broker_url,
        "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX": prefix,
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{base}/{names['results']}",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
        # Only the runs this test creates: no run for the latest monthly interval on unpause.
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        "AIRFLOW_CONN_GRADING_SOURCE": f"sqlite:///{home / 'source.sqlite'}",
        "AIRFLOW_CONN_GRADING_WAREHOUSE": f"{base}/{names['warehouse']}",
        "GRADING_HOME": str(home / "grading-home"),
        "GRADING_PSEUDONYM_KEY": "distributed-test-" + tag,
        "SCARF_ANALYTICS": "false",
        "GX_ANALYTICS_ENABLED": "False",
    }
    stack = Stack(home=home, env=env, meta_url=f"{base}/{names['meta']}", results_url=f"{base}/{names['results']}",
                  warehouse_url=f"{base}/{names['warehouse']}", reference_url=f"{base}/{names['reference']}")
    _create_databases(admin, *names.values())
    survivors: list[str] = []
    try:
        demo.write_source(demo.generate(customers=400, seed=7), env["AIRFLOW_CONN_GRADING_SOURCE"])
        # The same periods graded without a scheduler, as docs/operations.md's backfill without Airflow does:
        # `python -m grading run` for each date in order, into a database of its own, meanwhile.
        runs = " && ".join(f"{sys.executable} -m grading run --as-of {d}" for d in sorted(set(BACKFILL_AS_OF)))
        with stack.log("reference").open("wb") as out:
            stack.reference = subprocess.Popen(
                ["sh", "-c", runs], stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                env={**env, "AIRFLOW_CONN_GRADING_WAREHOUSE": stack.reference_url,
                     "GRADING_HOME": str(home / "reference-home")})
        stack.airflow("db", "migrate", timeout=180)
        stack.start("api-server", "api-server", "--host", "127.0.0.1", "--port", str(api_port), "--workers", "1")
        stack.start("scheduler", "scheduler")
        stack.start("dag-processor", "dag-processor")
        for name in WORKERS:
            stack.start(name, "celery", "worker", "--celery-hostname", f"{name}@%h", "--concurrency", "1",
                        "--skip-serve-logs", "--without-mingle", "--without-gossip",
                        GRADING_TEST_WORKER_NAME=name,
                        AIRFLOW__CORE__HOSTNAME_CALLABLE="grading_test_identity.worker_hostname")
        stack.airflow("pools", "set", "grading_warehouse", "1", "Writers of the grading warehouse")
        stack.wait("the API server", lambda: _http_ok(f"http://127.0.0.1:{api_port}/api/v2/version"), 120)
        stack.wait("both Celery workers", lambda: all(" ready." in stack.log(n).read_text(errors="replace")
                                                      for n in WORKERS), 120)
        stack.wait("the DAG processor to store customer_grading",
                   lambda: stack.query("SELECT 1 FROM serialized_dag WHERE dag_id = :d", d=DAG_ID), 120)
        stack.wait("the scheduler", lambda: stack.query(
            "SELECT 1 FROM job WHERE job_type = 'SchedulerJob' AND state = 'running'"), 60)
        stack.airflow("dags", "unpause", DAG_ID)
        stack.timings["stack up"] = time.monotonic() - stack.started
        yield stack
    finally:
        survivors = stack.stop()
        _drop_databases(admin, *names.values())
        admin.dispose()
        shutil.rmtree(home, ignore_errors=True)
    assert not survivors, "processes outlived the stack:\n" + "\n".join(survivors)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # a local test URL
            return response.status == 200
    except OSError:
        return False


def _run_states(stack: Stack, where: str, **params) -> dict[str, str]:
    rows = stack.query(f"SELECT run_id, state FROM dag_run WHERE dag_id = :dag_id AND {where}",  # noqa: S608 - test-fixed text
                       dag_id=DAG_ID, **params)
    return {row.run_id: row.state for row in rows}


def _finished(states: dict[str, str], expected: int) -> dict[str, str] | None:
    """The runs' states once ``expected`` runs exist and none is still queued or running."""
    if len(states) == expected and all(s in ("success", "failed") for s in states.values()):
        return states
    return None


@pytest.fixture(scope="module")
def reference(stack: Stack) -> dict[date, dict[str, pd.DataFrame]]:
    """The periods as ``python -m grading run`` published them, one after the other, in one process each."""
    assert stack.reference is not None
    try:
        code = stack.reference.wait(timeout=max(1.0, stack.deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pytest.fail("python -m grading run did not finish in time:\n" + stack.log("reference").read_text()[-3000:])
    assert code == 0, stack.log("reference").read_text(errors="replace")[-3000:]
    return {as_of: published(stack.reference_url, as_of) for as_of in BACKFILL_AS_OF}


@pytest.fixture(scope="module")
def triggered(stack: Stack) -> dict[str, pd.DataFrame]:
    """A manual run for as-of 2024-12-01 through the Celery workers; its published tables, read at once."""
    clock = time.monotonic()
    stack.airflow("dags", "trigger", DAG_ID, "--run-id", "grading_distributed_manual",
                  "--conf", json.dumps({"as_of": TRIGGERED_AS_OF.isoformat()}))
    states = stack.wait("the triggered run", lambda: _finished(
        _run_states(stack, "run_id = :run_id", run_id="grading_distributed_manual"), 1), 240)
    assert states == {"grading_distributed_manual": "success"}, _failed_tasks(stack)
    stack.timings["triggered run"] = time.monotonic() - clock
    return published(stack.warehouse_url, TRIGGERED_AS_OF)


@pytest.fixture(scope="module")
def backfilled(stack: Stack, triggered: dict[str, pd.DataFrame]) -> dict[str, str]:
    """``airflow backfill create`` over two months, run in date order by the scheduler on the workers."""
    clock = time.monotonic()
    stack.airflow("backfill", "create", "--dag-id", DAG_ID, "--from-date", BACKFILL_FROM, "--to-date", BACKFILL_TO,
                  "--max-active-runs", "1")
    states = stack.wait("the backfill runs", lambda: _finished(
        _run_states(stack, "run_type = 'backfill'"), len(BACKFILL_AS_OF)), 300)
    stack.timings["backfill (2 runs)"] = time.monotonic() - clock
    return states


def _failed_tasks(stack: Stack) -> str:
    """What went wrong, for an assertion message: failed task instances, their audit errors and log tails."""
    rows = stack.query("SELECT run_id, task_id, state, hostname, try_number FROM task_instance "
                       "WHERE dag_id = :d AND state <> 'success'", d=DAG_ID)
    engine = sa.create_engine(stack.warehouse_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            audit = conn.execute(sa.text("SELECT run_id, stage, message FROM audit.run_audit "
                                         "WHERE status = 'failed'")).all()
    except sa.exc.SQLAlchemyError as exc:
        audit = [f"(no audit: {type(exc).__name__})"]
    finally:
        engine.dispose()
    logs = []
    for row in rows:
        for path in sorted((stack.home / "logs").glob(f"dag_id={DAG_ID}/run_id={row.run_id}/task_id={row.task_id}/*")):
            errors = [line for line in path.read_text(errors="replace").splitlines() if '"level":"error"' in line]
            logs.append(f"--- {path.relative_to(stack.home)}\n" + "\n".join(errors)[-3000:])
    return f"unsuccessful task instances: {rows}\nfailed stages: {audit}\n" + "\n".join(logs)


def test_a_triggered_run_on_the_celery_workers_publishes_what_a_single_process_run_does(
    triggered: dict[str, pd.DataFrame], reference: dict[date, dict[str, pd.DataFrame]], stack: Stack,
) -> None:
    want = reference[TRIGGERED_AS_OF]
    assert len(want["customer_tier_snapshot"]) == 400
    for table, frame in want.items():
        pd.testing.assert_frame_equal(triggered[table], frame, obj=f"marts.{table} as of {TRIGGERED_AS_OF}")
    tiers = triggered["customer_tier_snapshot"]["tier"].value_counts().to_dict()
    assert sum(tiers.values()) == 400
    assert set(tiers) == {"normal", "gold", "platinum"}


def test_a_backfill_gives_the_same_tables_as_running_each_period_alone(
    backfilled: dict[str, str], reference: dict[date, dict[str, pd.DataFrame]], stack: Stack,
) -> None:
    assert sorted(backfilled.values()) == ["success", "success"], _failed_tasks(stack)
    as_of = {row.run_id: row.as_of for row in stack.query(
        "SELECT run_id, CAST(data_interval_end AS DATE) AS as_of FROM dag_run WHERE run_type = 'backfill'")}
    assert sorted(as_of.values()) == BACKFILL_AS_OF
    for period in BACKFILL_AS_OF:
        got = published(stack.warehouse_url, period)
        for table, frame in reference[period].items():
            pd.testing.assert_frame_equal(got[table], frame, obj=f"marts.{table} as of {period}")
    # The rerun of 2024-12-01 replaced that period's rows; nothing was added beside them.
    snapshot = published(stack.warehouse_url)["customer_tier_snapshot"]
    assert len(snapshot) == 400 * len(BACKFILL_AS_OF)
    assert sorted(pd.to_datetime(snapshot["as_of_date"]).dt.date.unique()) == BACKFILL_AS_OF


def test_tasks_ran_on_both_workers_through_the_pool_and_the_result_backend(
    backfilled: dict[str, str], stack: Stack, capsys: pytest.CaptureFixture,
) -> None:
    rows = stack.query("SELECT task_id, state, hostname, pool FROM task_instance WHERE dag_id = :d", d=DAG_ID)
    assert len(rows) == 8 * 3  # extract .. publish and crm_export, three runs
    assert {r.state for r in rows} == {"success"}
    per_worker = pd.Series([r.hostname for r in rows]).value_counts().to_dict()
    assert set(per_worker) == set(WORKERS), per_worker
    assert {r.pool for r in rows} == {"grading_warehouse"}

    def stored_results() -> dict[str, int]:
        engine = sa.create_engine(stack.results_url, poolclass=NullPool)
        try:
            with engine.connect() as conn:
                return dict(conn.execute(sa.text("SELECT status, COUNT(*) FROM celery_taskmeta GROUP BY status")).all())
        finally:
            engine.dispose()

    # A task instance is marked success by the task itself, a moment before the Celery task that ran it
    # returns and stores its result.
    stack.wait("the Celery results of every task", lambda: stored_results().get("SUCCESS", 0) >= len(rows), 60)
    total = time.monotonic() - stack.started
    with capsys.disabled():
        print(f"\n[distributed] {', '.join(f'{k} {v:.0f}s' for k, v in stack.timings.items())}, "
              f"{total:.0f}s in all so far; tasks per worker: {per_worker}")
