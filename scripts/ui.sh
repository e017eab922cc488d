#!/usr/bin/env bash
# The Airflow UI on this machine in one command: the API server (UI and REST API), scheduler,
# DAG processor and triggerer of Airflow 3, on this project's DAGs and local Airflow home
# (scripts/airflow-env.sh; run scripts/setup.sh or scripts/demo.sh once before). Waits until the
# UI answers and lists the DAGs, prints the URL and the login, and runs until Ctrl-C (or TERM),
# which stops every process it started. Each component logs to $AIRFLOW_HOME/ui-logs/.
#
#   GRADING_UI_PORT     port of the UI and REST API (default 8080)
#   GRADING_UI_HOST     address it listens on (default 127.0.0.1: this machine only)
#   GRADING_UI_TIMEOUT  seconds to wait for the UI and the DAGs (default 180)
#
# The login is the simple auth manager's (Airflow's development login): user admin, a password
# Airflow generates once and keeps in $AIRFLOW_HOME/simple_auth_manager_passwords.json.generated.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/airflow ] || { echo "no .venv/bin/airflow: run scripts/setup.sh first" >&2; exit 1; }
source scripts/airflow-env.sh
# Airflow starts its components as `airflow ...` from PATH (standalone does too).
export PATH="$GRADING_ROOT/.venv/bin:$PATH"

PORT="${GRADING_UI_PORT:-8080}"
HOST="${GRADING_UI_HOST:-127.0.0.1}"
TIMEOUT="${GRADING_UI_TIMEOUT:-180}"
URL="http://localhost:$PORT"
LOGS="$AIRFLOW_HOME/ui-logs"
export AIRFLOW__API__HOST="$HOST" AIRFLOW__API__PORT="$PORT"
export AIRFLOW__API__BASE_URL="${AIRFLOW__API__BASE_URL:-$URL}"
# Task processes report to the API server's Execution API.
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="${AIRFLOW__CORE__EXECUTION_API_SERVER_URL:-http://127.0.0.1:$PORT/execution/}"
export AIRFLOW__CORE__EXECUTOR="${AIRFLOW__CORE__EXECUTOR:-LocalExecutor}"
# The LocalExecutor forks this many workers at start (Airflow's default, 32, is a lot for a laptop);
# every grading task holds the one slot of the grading_warehouse pool anyway.
export AIRFLOW__CORE__PARALLELISM="${AIRFLOW__CORE__PARALLELISM:-4}"
export AIRFLOW__CORE__AUTH_MANAGER="airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
# The login: user and password file from scripts/airflow-env.sh.
PASSWORDS="$AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"
USERNAME="${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS%%:*}"

# A port free for a server (SO_REUSEADDR, as uvicorn binds: connections of a stopped server do not count).
if ! python -c 'import socket, sys; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))' "$HOST" "$PORT" 2>/dev/null; then
  echo "port $PORT on $HOST is in use (another Airflow?): set GRADING_UI_PORT to a free port" >&2
  exit 1
fi

mkdir -p "$LOGS"
# One Airflow per home: a second scheduler on the same SQLite database would run the same tasks. The
# lock is held as long as any process started here (they inherit it) is alive.
exec 9> "$AIRFLOW_HOME/ui.lock"
if ! flock -n 9; then
  echo "Airflow is already running for $AIRFLOW_HOME (scripts/ui.sh or scripts/demo.sh): stop it first" >&2
  exit 1
fi
echo "==> preparing the Airflow metadata database in $AIRFLOW_HOME (log: $LOGS/prepare.log)"
{
  airflow db migrate
  # The pool every grading task takes a slot of: a scheduler leaves tasks of a missing pool waiting.
  airflow pools get grading_warehouse \
    || airflow pools set grading_warehouse 1 "grading: one writer at a time on the embedded warehouse"
} > "$LOGS/prepare.log" 2>&1 || { tail -30 "$LOGS/prepare.log"; exit 1; }

NAMES=() PIDS=()
start() {  # start `airflow ARGS` as component NAME, in a process group of its own (stopped as one)
  local name="$1"; shift
  setsid airflow "$@" > "$LOGS/$name.log" 2>&1 < /dev/null &
  NAMES+=("$name") PIDS+=("$!")
}

stopped=""
stop() {  # TERM every component's process group, KILL what is left after 30 s
  local -; set +e  # a failing kill or wait must not cut this short
  [ -n "$stopped" ] && return
  stopped=1
  [ "${#PIDS[@]}" -eq 0 ] && return
  echo "==> stopping Airflow (${NAMES[*]})"
  local pid i
  for pid in "${PIDS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  for ((i = 0; i < 60; i++)); do
    for pid in "${PIDS[@]}"; do kill -0 -- "-$pid" 2>/dev/null && break; pid=""; done
    [ -z "$pid" ] && break
    sleep 0.5
  done
  for pid in "${PIDS[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "==> Airflow stopped"
}
trap 'stop; exit 0' INT TERM
trap stop EXIT

died() {  # the name of a component that has exited, if any
  local i
  for i in "${!PIDS[@]}"; do
    kill -0 "${PIDS[$i]}" 2>/dev/null || { echo "${NAMES[$i]}"; return; }
  done
}

fail() {  # $1: what went wrong; shows the end of every component's log
  echo "$1" >&2
  local name
  for name in "${NAMES[@]}"; do
    echo "----- $LOGS/$name.log (last 20 lines)" >&2
    tail -20 "$LOGS/$name.log" >&2 || true
  done
  exit 1
}

echo "==> starting the API server on $HOST:$PORT, the scheduler, the DAG processor and the triggerer"
start api-server api-server --host "$HOST" --port "$PORT"
start scheduler scheduler
start dag-processor dag-processor
start triggerer triggerer

# Ready: the login works and the API lists both DAGs (or shows why a DAG file did not import).
ready() {
  python - "$URL" "$PASSWORDS" "$USERNAME" customer_grading quarterly_review <<'EOF'
import json
import sys
import urllib.request

url, passwords, username, *wanted = sys.argv[1:]


def call(path, body=None, token=None):
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
    data = None if body is None else json.dumps(body).encode()
    with urllib.request.urlopen(urllib.request.Request(url + path, data, headers), timeout=10) as response:
        return json.load(response)


try:
    with open(passwords) as file:
        pw = json.load(file)[username]
    token = call("/auth/token", {"username": username, "password": pw})["access_token"]
    listed = {dag["dag_id"] for dag in call("/api/v2/dags?limit=100", token=token)["dags"]}
    errors = call("/api/v2/importErrors", token=token)["import_errors"]
except (OSError, KeyError, ValueError):
    sys.exit(1)
for error in errors:
    print(f"warning: {error['filename']} does not import (the UI shows it under Dag import errors):\n"
          + error["stack_trace"].strip().splitlines()[-1])
sys.exit(0 if errors or set(wanted) <= listed else 1)
EOF
}

deadline=$((SECONDS + TIMEOUT))
until ready; do
  name="$(died)"
  [ -n "$name" ] && fail "the $name exited while starting"
  [ "$SECONDS" -ge "$deadline" ] && fail "Airflow did not list the DAGs at $URL within $TIMEOUT s"
  sleep 2
done

password="$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$PASSWORDS" "$USERNAME")"
cat <<EOF

Airflow UI: $URL
  user:     $USERNAME
  password: $password
  (Airflow generated it once; it is kept in $PASSWORDS)
  Airflow home: $AIRFLOW_HOME; component logs: $LOGS/
Press Ctrl-C to stop Airflow.
EOF

# Run until a signal (trap above) or until a component exits on its own.
while true; do
  wait -n || true
  name="$(died)"
  [ -n "$name" ] && fail "the $name exited; stopping Airflow"
done
