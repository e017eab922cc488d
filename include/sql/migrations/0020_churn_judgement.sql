-- The churn model judged on what the win-back list needs (issue 23): calibration (Brier score
-- of the model, before calibration and of the recency rule, the reliability table as JSON),
-- precision and lift in the top decile for both, and which scorer the run used - the model, or
-- the recency rule when the model does not beat it on the holdout - with the reason. The same
-- columns on ops.churn_models, so a reused model keeps its judgement. Plain ADD COLUMN: the
-- same on DuckDB and PostgreSQL. Rows from before stay empty in these columns.
ALTER TABLE audit.model_runs ADD COLUMN brier DOUBLE PRECISION;
ALTER TABLE audit.model_runs ADD COLUMN uncalibrated_brier DOUBLE PRECISION;
ALTER TABLE audit.model_runs ADD COLUMN baseline_brier DOUBLE PRECISION;
ALTER TABLE audit.model_runs ADD COLUMN lift_top_decile DOUBLE PRECISION;
ALTER TABLE audit.model_runs ADD COLUMN baseline_lift_top_decile DOUBLE PRECISION;
ALTER TABLE audit.model_runs ADD COLUMN calibration VARCHAR;
ALTER TABLE audit.model_runs ADD COLUMN reliability VARCHAR;
ALTER TABLE audit.model_runs ADD COLUMN scorer VARCHAR;
ALTER TABLE audit.model_runs ADD COLUMN reason VARCHAR;
ALTER TABLE ops.churn_models ADD COLUMN brier DOUBLE PRECISION;
ALTER TABLE ops.churn_models ADD COLUMN uncalibrated_brier DOUBLE PRECISION;
ALTER TABLE ops.churn_models ADD COLUMN baseline_brier DOUBLE PRECISION;
ALTER TABLE ops.churn_models ADD COLUMN lift_top_decile DOUBLE PRECISION;
ALTER TABLE ops.churn_models ADD COLUMN baseline_lift_top_decile DOUBLE PRECISION;
ALTER TABLE ops.churn_models ADD COLUMN calibration VARCHAR;
ALTER TABLE ops.churn_models ADD COLUMN reliability VARCHAR;
ALTER TABLE ops.churn_models ADD COLUMN scorer VARCHAR;
ALTER TABLE ops.churn_models ADD COLUMN reason VARCHAR;
