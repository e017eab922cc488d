-- Win-back success: the previous quarter's win-back candidates (listed at
-- :previous_snapshot), by churn reason: how many completed an order during this quarter
-- and the revenue they brought (review_quarter_revenue, quarter_revenue.sql).
WITH candidates AS (
    SELECT w.customer_key, COALESCE(w.churn_reason, 'unknown') AS churn_reason
    FROM marts.winback_candidates AS w
    WHERE w.as_of_date = CAST(:previous_snapshot AS DATE)
)

SELECT
    CAST(:quarter AS VARCHAR) AS quarter,
    c.churn_reason,
    COUNT(*) AS candidates,
    COUNT(r.customer_key) AS returned,
    CAST(COUNT(r.customer_key) AS DOUBLE PRECISION) / COUNT(*) AS return_rate,
    CAST(COALESCE(SUM(r.revenue), 0) AS DOUBLE PRECISION) AS revenue_recovered
FROM candidates AS c
LEFT JOIN review_quarter_revenue AS r ON r.customer_key = c.customer_key
GROUP BY c.churn_reason
ORDER BY c.churn_reason
