-- Scheme check input: every customer graded at the previous quarter's close, the tier they
-- held then, and the revenue they brought during this quarter (the quarter after grading;
-- review_quarter_revenue, quarter_revenue.sql).
SELECT t.customer_key, t.tier, t.tier_rank, CAST(COALESCE(r.revenue, 0) AS DOUBLE PRECISION) AS revenue
FROM marts.customer_tier_snapshot AS t
LEFT JOIN review_quarter_revenue AS r ON r.customer_key = t.customer_key
WHERE t.as_of_date = CAST(:previous_snapshot AS DATE)
ORDER BY t.customer_key
