#!/usr/bin/env bash
# Quick start: set everything up, generate demo data, run customer_grading and quarterly_review
# through Airflow's scheduler on the embedded DuckDB warehouse, and print what was published and
# where. Airflow (scripts/ui.sh) runs in the background for the runs, on a free port, and is stopped
# at the end; `scripts/ui.sh` afterwards shows the runs, their durations and their task logs.
#   DEMO_CUSTOMERS  customers to generate (default 2000); AS_OF, PREVIOUS_AS_OF  the two closes graded
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/airflow-env.sh
export GRADING_HOME="${GRADING_HOME:-$GRADING_ROOT/.grading}"
AS_OF="${AS_OF:-2025-01-01}"
PREVIOUS_AS_OF="${PREVIOUS_AS_OF:-2024-10-01}"
PY=.venv/bin/python

free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

echo "==> generating demo data"
"$PY" -m grading generate --force --customers "${DEMO_CUSTOMERS:-2000}" --seed 42

# Airflow for the demo's runs. Scheduling is off (AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE=False): only the
# runs triggered below run, not the latest monthly interval a DAG gets when it is unpaused.
AIRFLOW_LOG="$AIRFLOW_HOME/demo-airflow.log"
PORT="$(free_port)"
echo "==> starting Airflow for the runs (scripts/ui.sh on port $PORT; log: $AIRFLOW_LOG)"
: > "$AIRFLOW_LOG"  # emptied before the wait below reads it (ui.sh's output of an earlier demo)
GRADING_UI_PORT="$PORT" AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE=False \
  AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT="$(free_port)" AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT="$(free_port)" \
  scripts/ui.sh > "$AIRFLOW_LOG" 2>&1 &
UI_PID=$! CLIENT_PID=""
stop_airflow() {  # on any exit: stop a waiting run_dag (it pauses its DAG), then Airflow
  local -; set +e  # a failing kill or wait must not cut this short
  [ -n "$CLIENT_PID" ] && { kill -TERM "$CLIENT_PID" 2>/dev/null; wait "$CLIENT_PID" 2>/dev/null; CLIENT_PID=""; }
  [ -z "$UI_PID" ] && return
  kill -TERM "$UI_PID" 2>/dev/null || true
  wait "$UI_PID" 2>/dev/null || true
  UI_PID=""
}
trap stop_airflow EXIT
trap 'exit 130' INT TERM
until grep -qs "Press Ctrl-C" "$AIRFLOW_LOG"; do
  kill -0 "$UI_PID" 2>/dev/null || { tail -40 "$AIRFLOW_LOG"; exit 1; }
  sleep 1
done

run_dag() {  # trigger <dag> for the interval ending <date> through the REST API and wait for it
  echo "==> $1 for the interval ending $2 (through the scheduler)"
  # In the background, so that Ctrl-C or TERM stops the demo at once (see stop_airflow).
  "$PY" - "http://127.0.0.1:$PORT" "$AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE" \
    "${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS%%:*}" "$1" "$2" <<'EOF' &
import json
import signal
import sys
import time
import urllib.error
import urllib.request

url, passwords, user, dag_id, day = sys.argv[1:]
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # leave through `finally`: the DAG is paused again


def call(method, path, body=None, token=None):
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
    data = None if body is None else json.dumps(body).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url + path, data, headers, method=method),
                                    timeout=60) as response:
            text = response.read()
    except urllib.error.HTTPError as error:
        sys.exit(f"{method} {path}: HTTP {error.code} {error.read().decode(errors='replace')[:500]}")
    return json.loads(text) if text else None


with open(passwords) as file:
    pw = json.load(file)[user]
token = call("POST", "/auth/token", {"username": user, "password": pw})["access_token"]
runs = f"/api/v2/dags/{dag_id}/dagRuns"
moment = f"{day}T00:00:00Z"
# Like `airflow dags test`, a new run replaces an earlier one of the same logical date (one an
# interrupted demo left running is marked failed first: a running run cannot be deleted).
for old in call("GET", f"{runs}?logical_date_gte={moment}&logical_date_lte={moment}", token=token)["dag_runs"]:
    if old["state"] not in ("success", "failed"):
        call("PATCH", f"{runs}/{old['dag_run_id']}", {"state": "failed"}, token)
    call("DELETE", f"{runs}/{old['dag_run_id']}", token=token)
call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False}, token)
try:
    # Logical date and run-after both at the close: the data interval is the one that closes then, as
    # for `airflow dags test <dag> <date>`.
    run = call("POST", runs, {"logical_date": moment, "run_after": moment, "note": "made by scripts/demo.sh"}, token)
    run_id = run["dag_run_id"]
    deadline = time.monotonic() + 1800
    while run["state"] not in ("success", "failed"):
        assert time.monotonic() < deadline, f"{dag_id} run {run_id} still {run['state']} after 30 minutes"
        time.sleep(2)
        run = call("GET", f"{runs}/{run_id}", token=token)
finally:
    call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": True}, token)  # no scheduled runs on demo data later
tasks = call("GET", f"{runs}/{run_id}/taskInstances?order_by=start_date", token=token)["task_instances"]
print(f"    run {run_id}: {run['state']} in {run['duration']:.0f} s; tasks: "
      + ", ".join(f"{t['task_id']} {t['state']} {t['duration'] or 0:.0f} s" for t in tasks))
if run["state"] != "success":
    for task in tasks:
        if task["state"] not in ("success", "skipped"):
            log = call("GET", f"{runs}/{run_id}/taskInstances/{task['task_id']}/logs/{task['try_number']}"
                       "?full_content=true", token=token)
            print(f"----- {task['task_id']} (try {task['try_number']}), last lines of its log:")
            for line in log["content"][-30:]:
                print("   ", line.get("level", ""), line.get("event", ""), line.get("error_detail", "") or "")
    sys.exit(1)
EOF
  CLIENT_PID=$!
  wait "$CLIENT_PID"
  CLIENT_PID=""
}

run_dag customer_grading "$PREVIOUS_AS_OF"   # a quarter earlier, so the review has two closes to compare
run_dag customer_grading "$AS_OF"
run_dag quarterly_review "$AS_OF"
echo "==> stopping Airflow"
stop_airflow
"$PY" -m grading criteria > /dev/null
echo
"$PY" -m grading summary --as-of "$AS_OF"
echo
echo "Quarterly review report: $GRADING_HOME/reviews/2024Q4/review.html"
echo "Annual review 2024 (one quarter of four reviewed, so marked incomplete): $GRADING_HOME/reviews/2024/annual.html"
echo "Published criteria: $GRADING_HOME/criteria/criteria.html"
echo "Local files are in $GRADING_HOME (source.sqlite, warehouse.duckdb); Airflow home: $AIRFLOW_HOME"
echo "See the runs, their durations and task logs in the Airflow UI: scripts/ui.sh"
