-- Tier distribution and revenue share: tiers of the quarter's snapshot (:snapshot, the last
-- published as-of date in the quarter, or the first day after it), revenue = completed
-- orders placed in the quarter (review_quarter_revenue, quarter_revenue.sql).
WITH tiers AS (
    SELECT customer_key, tier, tier_rank
    FROM marts.customer_tier_snapshot
    WHERE as_of_date = CAST(:snapshot AS DATE)
),

per_tier AS (
    SELECT
        t.tier,
        t.tier_rank,
        COUNT(*) AS customers,
        CAST(COALESCE(SUM(r.revenue), 0) AS DOUBLE PRECISION) AS revenue
    FROM tiers AS t
    LEFT JOIN review_quarter_revenue AS r ON r.customer_key = t.customer_key
    GROUP BY t.tier, t.tier_rank
)

SELECT
    CAST(:quarter AS VARCHAR) AS quarter,
    CAST(:snapshot AS DATE) AS snapshot_as_of,
    tier,
    tier_rank,
    customers,
    CAST(customers AS DOUBLE PRECISION) / SUM(customers) OVER () AS customer_share,
    revenue,
    CASE WHEN SUM(revenue) OVER () > 0 THEN revenue / SUM(revenue) OVER () ELSE 0 END AS revenue_share
FROM per_tier
ORDER BY tier_rank
