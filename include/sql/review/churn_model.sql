-- The churn model behind the quarter's snapshot: the latest audit.model_runs row at or before
-- :snapshot - how the model and the recency rule did on the holdout, and which of them scored.
-- Read for the report only (no marts.review_* table: audit.model_runs is the record).
SELECT as_of_date, model, train_as_of, holdout_as_of, holdout_rows, holdout_churn_rate,
       auc, baseline_auc, precision_top_decile, baseline_precision_top_decile,
       lift_top_decile, baseline_lift_top_decile, brier, uncalibrated_brier, baseline_brier,
       calibration, scorer, reason, note
FROM audit.model_runs
WHERE as_of_date <= CAST(:snapshot AS DATE)
ORDER BY as_of_date DESC, run_id DESC
LIMIT 1
