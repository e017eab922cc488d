"""The local UI in one command: ``scripts/ui.sh`` on a fresh Airflow home, as a new user runs it.

The script is started on free ports with an empty temporary Airflow home (it migrates the metadata
database and creates the pool itself) and this repository's DAGs. Once it prints the URL and the
login, the test logs in through the REST API with that login (``POST /auth/token``), lists the
DAGs with the token, and checks that a wrong password is refused. Then it presses Ctrl-C (SIGINT to
the script's process group, as a terminal does) and the script must exit 0 with no process of that
Airflow home left. Every wait has a deadline; the script's output and component logs are shown on
failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import ROOT, cmdline, free_port, processes_of

READY_SECONDS = 180  # a fresh home: migrate, start four components, parse the DAGs (about 55 s on 2 cores)
STOP_SECONDS = 60  # the script gives its components 30 s after TERM, then KILLs them


@dataclass
class UI:
    home: Path
    process: subprocess.Popen
    output: Path
    started: float

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def report(self) -> str:
        """The script's output and the end of each component's log, for an assertion message."""
        parts = [f"----- scripts/ui.sh output\n{self.text()}"]
        for log in sorted((self.home / "ui-logs").glob("*.log")):
            parts.append(f"----- {log.name} (last 20 lines)\n" + "\n".join(log.read_text(errors="replace")
                                                                            .splitlines()[-20:]))
        return "\n".join(parts)

    def field(self, name: str) -> str:
        found = re.search(rf"^\s*{name}:\s+(\S+)\s*$", self.text(), re.MULTILINE)
        assert found, f"scripts/ui.sh printed no {name}\n" + self.report()
        return found.group(1)


def _request(url: str, body: dict | None = None, token: str | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    data = None if body is None else json.dumps(body).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data, headers), timeout=20) as response:  # local
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, {}


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UI]:
    """scripts/ui.sh running on a fresh Airflow home, once it has printed the URL and the login."""
    home = tmp_path_factory.mktemp("airflow-ui")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "GRADING_"))},
        "AIRFLOW_HOME": str(home),
        "GRADING_HOME": str(home / "grading-home"),
        "GRADING_UI_PORT": str(free_port()),
        "GRADING_UI_TIMEOUT": str(READY_SECONDS),
        # The log servers of the scheduler and the triggerer, away from any other Airflow on this machine.
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
    }
    output = home / "ui.out"
    with output.open("wb") as out:
        process = subprocess.Popen(["bash", str(ROOT / "scripts" / "ui.sh")], env=env, stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    ui = UI(home=home, process=process, output=output, started=time.monotonic())
    try:
        until = ui.started + READY_SECONDS + 30
        while "Press Ctrl-C" not in ui.text():
            assert process.poll() is None, f"scripts/ui.sh exited ({process.returncode})\n" + ui.report()
            assert time.monotonic() < until, "scripts/ui.sh did not get ready in time\n" + ui.report()
            time.sleep(0.5)
        yield ui
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        for pid in processes_of(home):  # whatever the test did not stop: never leave it running
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_ui_sh_serves_the_dags_to_the_printed_login_and_stops_on_ctrl_c(ui: UI, capsys) -> None:
    ready = time.monotonic() - ui.started
    url, user, password = ui.field("Airflow UI"), ui.field("user"), ui.field("password")
    assert re.fullmatch(r"http://localhost:\d+", url), url

    status, body = _request(f"{url}/auth/token", {"username": user, "password": password})
    assert status == 201, f"login refused ({status})\n" + ui.report()
    token = body["access_token"]
    status, body = _request(f"{url}/api/v2/dags?limit=100", token=token)
    assert status == 200, ui.report()
    assert {"customer_grading", "quarterly_review"} <= {dag["dag_id"] for dag in body["dags"]}, body
    status, pool = _request(f"{url}/api/v2/pools/grading_warehouse", token=token)
    assert (status, pool.get("slots")) == (200, 1)
    assert _request(f"{url}/auth/token", {"username": user, "password": "test-wrong-password"})[0] == 401
    assert _request(f"{url}/api/v2/dags")[0] == 401  # no token, no DAGs

    # Ctrl-C: the terminal sends SIGINT to the script's process group.
    assert processes_of(ui.home), "no process carries the Airflow home: the check below would prove nothing"
    clock = time.monotonic()
    os.killpg(ui.process.pid, signal.SIGINT)
    try:
        code = ui.process.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        pytest.fail("scripts/ui.sh did not stop after Ctrl-C\n" + ui.report())
    stopping = time.monotonic() - clock
    assert code == 0, ui.report()
    assert "Airflow stopped" in ui.text()
    survivors = processes_of(ui.home)
    assert not survivors, "processes outlived scripts/ui.sh:\n" + "\n".join(f"{p}: {cmdline(p)}" for p in survivors)
    with capsys.disabled():
        print(f"\n[ui.sh] ready in {ready:.0f}s on a fresh home, stopped in {stopping:.0f}s")
