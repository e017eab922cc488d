-- The customer-potential model behind the quarter's snapshot: the latest audit.potential_runs
-- row at or before :snapshot - its holdout error against last year's spend, and which of them
-- scored, and why. Read for the report only (no marts.review_* table: audit.potential_runs is the record).
SELECT as_of_date, model, scorer, reason, customers, holdout_start, holdout_customers,
       holdout_mae, holdout_rmse, holdout_relative_error, baseline_mae, baseline_rmse, baseline_relative_error
FROM audit.potential_runs
WHERE as_of_date <= CAST(:snapshot AS DATE)
ORDER BY as_of_date DESC, run_id DESC
LIMIT 1
