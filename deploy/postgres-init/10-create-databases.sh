#!/usr/bin/env bash
# Run once by the postgres image on the first start (empty data volume), as the superuser.
# One server, two databases:
#   airflow  - Airflow's metadata and Celery results, owned by role airflow
#   grading  - the grading warehouse (schemas raw, staging, ops, marts), owned by role grading;
#              role grading_bi may only read schema marts (what BI tools need)
# Passwords come from the container environment (docker-compose.yaml, from .env); psql's
# :'var' quoting keeps them out of the SQL text. Later password changes: ALTER ROLE.
set -euo pipefail

: "${AIRFLOW_DB_PASSWORD:?}" "${GRADING_DB_PASSWORD:?}" "${GRADING_BI_PASSWORD:?}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v airflow_password="$AIRFLOW_DB_PASSWORD" \
  -v grading_password="$GRADING_DB_PASSWORD" \
  -v bi_password="$GRADING_BI_PASSWORD" <<'SQL'
CREATE ROLE airflow LOGIN PASSWORD :'airflow_password';
CREATE ROLE grading LOGIN PASSWORD :'grading_password';
CREATE ROLE grading_bi LOGIN PASSWORD :'bi_password';

CREATE DATABASE airflow OWNER airflow;
CREATE DATABASE grading OWNER grading;
REVOKE ALL ON DATABASE airflow FROM PUBLIC;
REVOKE ALL ON DATABASE grading FROM PUBLIC;
-- PUBLIC may connect to every database by default: the server's own ones too
REVOKE ALL ON DATABASE postgres FROM PUBLIC;
REVOKE ALL ON DATABASE template1 FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE grading TO grading;
GRANT CONNECT ON DATABASE grading TO grading_bi;

\connect grading
-- The pipeline's migrations create raw, staging and ops (CREATE SCHEMA IF NOT EXISTS);
-- marts is created here so read access for BI can be granted before any table exists.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
CREATE SCHEMA marts AUTHORIZATION grading;
GRANT USAGE ON SCHEMA marts TO grading_bi;
ALTER DEFAULT PRIVILEGES FOR ROLE grading IN SCHEMA marts GRANT SELECT ON TABLES TO grading_bi;
SQL
