-- Tier distribution and revenue share for a quarter [:quarter_start, :quarter_end).
-- Tiers come from the last published snapshot inside the quarter (an as-of date equal to
-- :quarter_end, the first day of the next quarter, covers the whole quarter); revenue is
-- the completed-order amount placed in the quarter.
WITH snapshot AS (
    SELECT MAX(as_of_date) AS as_of_date
    FROM marts.customer_tier_snapshot
    WHERE as_of_date > CAST(:quarter_start AS DATE) AND as_of_date <= CAST(:quarter_end AS DATE)
),

tiers AS (
    SELECT t.customer_key, t.tier, t.tier_rank, t.as_of_date
    FROM marts.customer_tier_snapshot AS t
    JOIN snapshot AS s ON t.as_of_date = s.as_of_date
),

revenue AS (
    SELECT k.customer_key, SUM(o.amount) AS revenue
    FROM raw.orders AS o
    JOIN ops.customer_keys AS k ON k.customer_id = o.customer_id
    WHERE o.status = 'completed'
        AND o.order_ts >= CAST(:quarter_start AS TIMESTAMP)
        AND o.order_ts < CAST(:quarter_end AS TIMESTAMP)
    GROUP BY k.customer_key
),

per_tier AS (
    SELECT
        t.tier,
        t.tier_rank,
        MAX(t.as_of_date) AS snapshot_as_of,
        COUNT(*) AS customers,
        CAST(COALESCE(SUM(r.revenue), 0) AS DOUBLE PRECISION) AS revenue
    FROM tiers AS t
    LEFT JOIN revenue AS r ON r.customer_key = t.customer_key
    GROUP BY t.tier, t.tier_rank
)

SELECT
    CAST(:quarter AS VARCHAR) AS quarter,
    snapshot_as_of,
    tier,
    tier_rank,
    customers,
    CAST(customers AS DOUBLE PRECISION) / SUM(customers) OVER () AS customer_share,
    revenue,
    CASE WHEN SUM(revenue) OVER () > 0 THEN revenue / SUM(revenue) OVER () ELSE 0 END AS revenue_share
FROM per_tier
ORDER BY tier_rank
