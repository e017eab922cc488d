-- Win-back success: the previous quarter's win-back candidates (listed at
-- :previous_snapshot), by churn reason: how many completed an order during this quarter
-- and the revenue they brought.
WITH candidates AS (
    SELECT w.customer_key, k.customer_id, COALESCE(w.churn_reason, 'unknown') AS churn_reason
    FROM marts.winback_candidates AS w
    JOIN ops.customer_keys AS k ON k.customer_key = w.customer_key
    WHERE w.as_of_date = CAST(:previous_snapshot AS DATE)
),

quarter_revenue AS (
    SELECT o.customer_id, SUM(o.amount) AS revenue
    FROM raw.orders AS o
    WHERE o.status = 'completed'
        AND o.order_ts >= CAST(:quarter_start AS TIMESTAMP)
        AND o.order_ts < CAST(:quarter_end AS TIMESTAMP)
    GROUP BY o.customer_id
)

SELECT
    CAST(:quarter AS VARCHAR) AS quarter,
    c.churn_reason,
    COUNT(*) AS candidates,
    COUNT(r.customer_id) AS returned,
    CAST(COUNT(r.customer_id) AS DOUBLE PRECISION) / COUNT(*) AS return_rate,
    CAST(COALESCE(SUM(r.revenue), 0) AS DOUBLE PRECISION) AS revenue_recovered
FROM candidates AS c
LEFT JOIN quarter_revenue AS r ON r.customer_id = c.customer_id
GROUP BY c.churn_reason
ORDER BY c.churn_reason
