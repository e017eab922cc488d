-- Retention by tier: customers active at the start of the quarter (a completed order in the
-- 365 days before :previous_snapshot) by the tier they held then; retained if they
-- completed an order during the quarter (review_quarter_revenue, quarter_revenue.sql).
WITH active AS (
    SELECT t.customer_key, t.tier, t.tier_rank
    FROM marts.customer_tier_snapshot AS t
    JOIN marts.customer_features_snapshot AS f
        ON f.as_of_date = t.as_of_date AND f.customer_key = t.customer_key
    WHERE t.as_of_date = CAST(:previous_snapshot AS DATE) AND f.orders_365d > 0
)

SELECT
    CAST(:quarter AS VARCHAR) AS quarter,
    a.tier,
    a.tier_rank,
    COUNT(*) AS active_customers,
    COUNT(b.customer_key) AS retained,
    CAST(COUNT(b.customer_key) AS DOUBLE PRECISION) / COUNT(*) AS retention_rate,
    1 - CAST(COUNT(b.customer_key) AS DOUBLE PRECISION) / COUNT(*) AS churn_rate
FROM active AS a
LEFT JOIN review_quarter_revenue AS b ON b.customer_key = a.customer_key
GROUP BY a.tier, a.tier_rank
ORDER BY a.tier_rank
