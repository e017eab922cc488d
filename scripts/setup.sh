#!/usr/bin/env bash
# Set up a fresh checkout: .venv/ with the pinned stack (requirements-dev.txt: the runtime pins
# plus test and lint tools, every transitive dependency held to the lock constraints.txt), this
# project installed editable (which also puts the `grading` command in .venv/bin), and a local
# Airflow home in .airflow/ (SQLite metadata, no example DAGs). Safe to rerun.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"

quiet_pip() {  # this machine's pip config warns about absent local indexes; keep real errors
  .venv/bin/python -m pip "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
echo "==> installing requirements into .venv/ (first time: about a minute)"
quiet_pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
# Built with the setuptools just installed (pinned, >= 77), so this step needs no download.
quiet_pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
.venv/bin/python scripts/lock.py --check

source scripts/airflow-env.sh
mkdir -p "$AIRFLOW_HOME"
echo "==> initialising the Airflow metadata database in $AIRFLOW_HOME"
.venv/bin/airflow db migrate > "$AIRFLOW_HOME/db-migrate.log" 2>&1 || { tail -30 "$AIRFLOW_HOME/db-migrate.log"; exit 1; }
# The pool every grading task takes a slot of (dag.test ignores pools; a scheduler needs it).
.venv/bin/airflow pools set grading_warehouse 1 "grading: one writer at a time on the embedded warehouse" \
  >> "$AIRFLOW_HOME/db-migrate.log" 2>&1 || { tail -30 "$AIRFLOW_HOME/db-migrate.log"; exit 1; }
