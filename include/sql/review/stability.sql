-- Rule stability: of the customers graded at both snapshots, how many changed tier; and how
-- many flapped - changed tier and changed back over the last three published snapshots up
-- to :snapshot (A -> B -> A).
WITH recent AS (
    SELECT as_of_date, ROW_NUMBER() OVER (ORDER BY as_of_date DESC) AS back
    FROM (SELECT DISTINCT as_of_date FROM marts.customer_tier_snapshot
          WHERE as_of_date <= CAST(:snapshot AS DATE)) AS dates
),

three AS (
    SELECT
        t.customer_key,
        MAX(CASE WHEN r.back = 1 THEN t.tier END) AS tier_now,
        MAX(CASE WHEN r.back = 2 THEN t.tier END) AS tier_before,
        MAX(CASE WHEN r.back = 3 THEN t.tier END) AS tier_before_that
    FROM marts.customer_tier_snapshot AS t
    JOIN recent AS r ON r.as_of_date = t.as_of_date AND r.back <= 3
    GROUP BY t.customer_key
),

compared AS (
    SELECT c.customer_key, c.tier AS tier_now, p.tier AS tier_then
    FROM marts.customer_tier_snapshot AS c
    JOIN marts.customer_tier_snapshot AS p ON p.customer_key = c.customer_key
    WHERE c.as_of_date = CAST(:snapshot AS DATE) AND p.as_of_date = CAST(:previous_snapshot AS DATE)
),

flaps AS (
    SELECT COUNT(*) AS flapped
    FROM three
    WHERE tier_before_that IS NOT NULL AND tier_before <> tier_before_that AND tier_now = tier_before_that
)

SELECT
    CAST(:quarter AS VARCHAR) AS quarter,
    COUNT(*) AS customers_compared,
    COUNT(CASE WHEN tier_now <> tier_then THEN 1 END) AS changed,
    COALESCE(CAST(COUNT(CASE WHEN tier_now <> tier_then THEN 1 END) AS DOUBLE PRECISION)
             / NULLIF(COUNT(*), 0), 0) AS changed_share,
    MAX(f.flapped) AS flapped,
    COALESCE(CAST(MAX(f.flapped) AS DOUBLE PRECISION) / NULLIF(COUNT(*), 0), 0) AS flapped_share
FROM flaps AS f
LEFT JOIN compared ON TRUE
