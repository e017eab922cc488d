-- Tier migration from the previous quarter's snapshot (:previous_snapshot) to this one's.
-- Customers graded only now come from "(new)".
WITH previous AS (
    SELECT customer_key, tier, tier_rank
    FROM marts.customer_tier_snapshot
    WHERE as_of_date = CAST(:previous_snapshot AS DATE)
),

current_tiers AS (
    SELECT customer_key, tier, tier_rank
    FROM marts.customer_tier_snapshot
    WHERE as_of_date = CAST(:snapshot AS DATE)
)

SELECT
    CAST(:quarter AS VARCHAR) AS quarter,
    COALESCE(p.tier, '(new)') AS from_tier,
    COALESCE(p.tier_rank, 0) AS from_rank,
    c.tier AS to_tier,
    c.tier_rank AS to_rank,
    CASE
        WHEN p.tier IS NULL THEN 'new'
        WHEN c.tier_rank > p.tier_rank THEN 'upgrade'
        WHEN c.tier_rank < p.tier_rank THEN 'downgrade'
        ELSE 'same'
    END AS movement,
    COUNT(*) AS customers
FROM current_tiers AS c
LEFT JOIN previous AS p ON p.customer_key = c.customer_key
GROUP BY 2, 3, 4, 5, 6
ORDER BY 3, 5
