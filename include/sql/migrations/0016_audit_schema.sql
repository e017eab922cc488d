-- Run records move out of marts into their own schema, audit, so that BI tools find business
-- tables in marts and the pipeline's records of itself apart (issue 21). DuckDB cannot move a
-- table between schemas: each is created in audit, filled and dropped from marts. PostgreSQL's
-- variant (0016_audit_schema.postgresql.sql) moves them with their indexes and comments.
CREATE SCHEMA audit;

CREATE TABLE audit.run_audit (
    run_id VARCHAR NOT NULL,
    as_of_date DATE NOT NULL,
    stage VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    rows_out BIGINT,
    started_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP NOT NULL,
    rule_version VARCHAR,
    message VARCHAR
);
INSERT INTO audit.run_audit SELECT run_id, as_of_date, stage, status, rows_out, started_at, finished_at,
    rule_version, message FROM marts.run_audit;
DROP TABLE marts.run_audit;

CREATE TABLE audit.validation_results (
    run_id VARCHAR NOT NULL,
    as_of_date DATE NOT NULL,
    suite VARCHAR NOT NULL,
    expectation VARCHAR NOT NULL,
    column_name VARCHAR,
    severity VARCHAR NOT NULL,
    success BOOLEAN NOT NULL,
    unexpected_count BIGINT,
    observed_value VARCHAR,
    validated_at TIMESTAMP NOT NULL,
    sample_keys VARCHAR,
    message VARCHAR
);
INSERT INTO audit.validation_results SELECT run_id, as_of_date, suite, expectation, column_name, severity, success,
    unexpected_count, observed_value, validated_at, sample_keys, message FROM marts.validation_results;
DROP TABLE marts.validation_results;

CREATE TABLE audit.model_runs (
    run_id VARCHAR NOT NULL,
    as_of_date DATE NOT NULL,
    model VARCHAR NOT NULL,
    train_as_of DATE NOT NULL,
    holdout_as_of DATE NOT NULL,
    train_rows BIGINT NOT NULL,
    holdout_rows BIGINT NOT NULL,
    holdout_churn_rate DOUBLE PRECISION,
    auc DOUBLE PRECISION,
    precision_top_decile DOUBLE PRECISION,
    baseline_auc DOUBLE PRECISION,
    baseline_precision_top_decile DOUBLE PRECISION,
    beats_baseline BOOLEAN,
    note VARCHAR,
    trained_at TIMESTAMP NOT NULL
);
INSERT INTO audit.model_runs SELECT run_id, as_of_date, model, train_as_of, holdout_as_of, train_rows, holdout_rows,
    holdout_churn_rate, auc, precision_top_decile, baseline_auc, baseline_precision_top_decile, beats_baseline, note,
    trained_at FROM marts.model_runs;
DROP TABLE marts.model_runs;

CREATE TABLE audit.run_rule_files (
    run_id VARCHAR NOT NULL,
    as_of_date DATE NOT NULL,
    kind VARCHAR NOT NULL,
    file_name VARCHAR NOT NULL,
    version VARCHAR NOT NULL,
    rules_sha256 VARCHAR NOT NULL
);
INSERT INTO audit.run_rule_files SELECT run_id, as_of_date, kind, file_name, version, rules_sha256
FROM marts.run_rule_files;
DROP TABLE marts.run_rule_files;
