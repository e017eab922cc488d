-- Trained churn models, kept so a run can reuse a recent one instead of retraining
-- (see grading.churn). In ops, not marts: the bytes are a pickled scikit-learn estimator,
-- which only the pipeline may load, and BI readers have no access to ops.
-- One row per model name, scikit-learn version and as-of date of the run that trained it
-- (no primary key: DuckDB may refuse deleting and re-inserting one key in a transaction).
-- A run scores with the latest model trained at or before its as-of date, so reruns and
-- backfills pick the same one.
CREATE TABLE ops.churn_models (
    model VARCHAR NOT NULL,
    model_as_of DATE NOT NULL,
    sklearn_version VARCHAR NOT NULL,
    features VARCHAR NOT NULL,
    seed BIGINT NOT NULL,
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
    model_bytes BYTEA NOT NULL,
    model_hmac VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL,
    trained_at TIMESTAMP NOT NULL
);
