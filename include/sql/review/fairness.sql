-- Fairness: share of each region's / industry's customers in the top tier and on the
-- elimination list at :snapshot, and the ratio to the overall share. A ratio outside
-- 0.8-1.25 (the four-fifths rule of thumb) is marked for a closer look.
WITH graded AS (
    SELECT
        f.customer_key,
        COALESCE(f.region, '(none)') AS region,
        COALESCE(f.industry, '(none)') AS industry,
        CASE WHEN t.tier_rank = (SELECT MAX(tier_rank) FROM marts.customer_tier_snapshot
                                 WHERE as_of_date = CAST(:snapshot AS DATE)) THEN 1 ELSE 0 END AS top_tier,
        CASE WHEN e.customer_key IS NULL THEN 0 ELSE 1 END AS eliminated
    FROM marts.customer_features_snapshot AS f
    JOIN marts.customer_tier_snapshot AS t ON t.as_of_date = f.as_of_date AND t.customer_key = f.customer_key
    LEFT JOIN marts.elimination_candidates AS e ON e.as_of_date = f.as_of_date AND e.customer_key = f.customer_key
    WHERE f.as_of_date = CAST(:snapshot AS DATE)
),

overall AS (
    SELECT AVG(CAST(top_tier AS DOUBLE PRECISION)) AS top_share, AVG(CAST(eliminated AS DOUBLE PRECISION)) AS elim_share
    FROM graded
),

groups AS (
    SELECT 'region' AS dimension, region AS group_value, COUNT(*) AS customers,
           AVG(CAST(top_tier AS DOUBLE PRECISION)) AS top_tier_share,
           AVG(CAST(eliminated AS DOUBLE PRECISION)) AS elimination_rate
    FROM graded GROUP BY region
    UNION ALL
    SELECT 'industry', industry, COUNT(*),
           AVG(CAST(top_tier AS DOUBLE PRECISION)), AVG(CAST(eliminated AS DOUBLE PRECISION))
    FROM graded GROUP BY industry
),

ratios AS (
    SELECT
        g.*,
        g.top_tier_share / NULLIF(o.top_share, 0) AS top_tier_ratio,
        g.elimination_rate / NULLIF(o.elim_share, 0) AS elimination_ratio
    FROM groups AS g
    CROSS JOIN overall AS o
)

SELECT
    CAST(:quarter AS VARCHAR) AS quarter,
    dimension,
    group_value,
    customers,
    top_tier_share,
    elimination_rate,
    top_tier_ratio,
    elimination_ratio,
    CASE
        WHEN top_tier_ratio < 0.8 OR top_tier_ratio > 1.25 OR elimination_ratio < 0.8 OR elimination_ratio > 1.25
        THEN 'look closer'
        ELSE 'within 0.8-1.25'
    END AS disparity
FROM ratios
ORDER BY dimension, group_value
