-- Scheme check input: every customer graded at the previous quarter's close, the tier they
-- held then, and the revenue they brought during this quarter (the quarter after grading).
WITH revenue AS (
    SELECT k.customer_key, SUM(o.amount) AS revenue
    FROM raw.orders AS o
    JOIN ops.customer_keys AS k ON k.customer_id = o.customer_id
    WHERE o.status = 'completed'
        AND o.order_ts >= CAST(:quarter_start AS TIMESTAMP)
        AND o.order_ts < CAST(:quarter_end AS TIMESTAMP)
    GROUP BY k.customer_key
)

SELECT t.customer_key, t.tier, t.tier_rank, CAST(COALESCE(r.revenue, 0) AS DOUBLE PRECISION) AS revenue
FROM marts.customer_tier_snapshot AS t
LEFT JOIN revenue AS r ON r.customer_key = t.customer_key
WHERE t.as_of_date = CAST(:previous_snapshot AS DATE)
ORDER BY t.customer_key
