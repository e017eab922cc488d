# Source this file: the environment a local Airflow needs to run this project's DAGs.
# A local Airflow home (SQLite metadata) in .airflow/, this repo's dags/ and plugins/,
# no example DAGs, no telemetry. Every value can be overridden from the caller's environment.
GRADING_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$GRADING_ROOT/.airflow}"
export AIRFLOW__CORE__DAGS_FOLDER="${AIRFLOW__CORE__DAGS_FOLDER:-$GRADING_ROOT/dags}"
export AIRFLOW__CORE__PLUGINS_FOLDER="${AIRFLOW__CORE__PLUGINS_FOLDER:-$GRADING_ROOT/plugins}"
export AIRFLOW__CORE__LOAD_EXAMPLES="${AIRFLOW__CORE__LOAD_EXAMPLES:-False}"
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="${AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION:-True}"
export SCARF_ANALYTICS="${SCARF_ANALYTICS:-false}"
export GX_ANALYTICS_ENABLED="${GX_ANALYTICS_ENABLED:-False}"
# The demo may use the development pseudonym key; anywhere else GRADING_PSEUDONYM_KEY must be set.
export GRADING_ENV="${GRADING_ENV:-demo}"
# The UI's login (scripts/ui.sh): Airflow's simple auth manager, user admin, whose password Airflow
# generates once and keeps in this file.
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS:-admin:admin}"
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE="${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:-$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated}"
