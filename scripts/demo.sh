#!/usr/bin/env bash
# Quick start: set everything up, generate demo data, run customer_grading and
# quarterly_review through Airflow (`airflow dags test`) on the embedded DuckDB warehouse,
# and print what was published and where.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/airflow-env.sh
export GRADING_HOME="${GRADING_HOME:-$GRADING_ROOT/.grading}"
AS_OF="${AS_OF:-2025-01-01}"
PREVIOUS_AS_OF="${PREVIOUS_AS_OF:-2024-10-01}"

run_dag() {  # airflow dags test <dag> <date>, log kept in the Airflow home
  local log="$AIRFLOW_HOME/demo-$1-$2.log"
  echo "==> airflow dags test $1 $2 (log: $log)"
  .venv/bin/airflow dags test "$1" "$2" > "$log" 2>&1 || { tail -40 "$log"; exit 1; }
}

echo "==> generating demo data"
.venv/bin/python -m grading generate --customers "${DEMO_CUSTOMERS:-2000}" --seed 42
run_dag customer_grading "$PREVIOUS_AS_OF"   # a quarter earlier, so the review has two closes to compare
run_dag customer_grading "$AS_OF"
run_dag quarterly_review "$AS_OF"
.venv/bin/python -m grading criteria > /dev/null
echo
.venv/bin/python -m grading summary --as-of "$AS_OF"
echo
echo "Quarterly review report: $GRADING_HOME/reviews/2024Q4/review.html"
echo "Published criteria: $GRADING_HOME/criteria/criteria.html"
echo "Local files are in $GRADING_HOME (source.sqlite, warehouse.duckdb); Airflow home: $AIRFLOW_HOME"
