-- Cut points of the R/F/M scores of :as_of: for each score value, the range of the
-- underlying figure it covered (recency in days, orders and value over 365 days), compared
-- with the previous graded period's upper bound.
WITH scored AS (
    SELECT 'r_score' AS score, r_score AS score_value, CAST(recency_days AS DOUBLE PRECISION) AS value
    FROM staging.customer_features WHERE as_of_date = CAST(:as_of AS DATE) AND recency_days IS NOT NULL
    UNION ALL
    SELECT 'f_score', f_score, CAST(orders_365d AS DOUBLE PRECISION)
    FROM staging.customer_features WHERE as_of_date = CAST(:as_of AS DATE) AND orders_365d > 0
    UNION ALL
    SELECT 'm_score', m_score, monetary_365d
    FROM staging.customer_features WHERE as_of_date = CAST(:as_of AS DATE) AND monetary_365d > 0
),

cuts AS (
    SELECT score, score_value, COUNT(*) AS customers, MIN(value) AS min_value, MAX(value) AS max_value
    FROM scored
    GROUP BY score, score_value
),

previous AS (
    SELECT score, score_value, max_value
    FROM marts.score_cut_points
    WHERE as_of_date = (SELECT MAX(as_of_date) FROM marts.score_cut_points WHERE as_of_date < CAST(:as_of AS DATE))
)

SELECT
    CAST(:as_of AS DATE) AS as_of_date,
    c.score,
    c.score_value,
    c.customers,
    c.min_value,
    c.max_value,
    p.max_value AS previous_max_value,
    ABS(c.max_value - p.max_value) / NULLIF(ABS(p.max_value), 0) AS moved_share
FROM cuts AS c
LEFT JOIN previous AS p ON p.score = c.score AND p.score_value = c.score_value
ORDER BY c.score, c.score_value
