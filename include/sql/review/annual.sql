-- The annual review's figures of one calendar year, as long rows (section, metric, tier, tier_rank,
-- unit, value); grading.review.annual runs it for the year and the year before and puts them side by side.
-- The sums over the year come from the quarterly evaluations stored for its quarters
-- (marts.review_*, quarter between :first_quarter and :last_quarter), so they add up to the quarterly
-- reports; what no sum of quarters gives - customers at the year's end, retention and migration over the
-- year - comes from the snapshots at the year's start (:start_snapshot, the last published as-of date of
-- the year before) and end (:end_snapshot), and from the orders of [:year_start, :year_end).
-- tier '(all)' is every tier together (tier_rank 0); sections without tiers have only that row.
WITH end_tiers AS (
    SELECT customer_key, tier, tier_rank
    FROM marts.customer_tier_snapshot
    WHERE as_of_date = CAST(:end_snapshot AS DATE)
),

start_tiers AS (
    SELECT customer_key, tier, tier_rank
    FROM marts.customer_tier_snapshot
    WHERE as_of_date = CAST(:start_snapshot AS DATE)
),

year_buyers AS (
    SELECT DISTINCT k.customer_key
    FROM raw.orders AS o
    JOIN ops.customer_keys AS k ON k.customer_id = o.customer_id
    WHERE o.status = 'completed'
        AND o.order_ts >= CAST(:year_start AS TIMESTAMP) AND o.order_ts < CAST(:year_end AS TIMESTAMP)
),

customers AS (
    SELECT
        COALESCE(tier, '(all)') AS tier,
        CASE WHEN GROUPING(tier) = 1 THEN 0 ELSE MAX(tier_rank) END AS tier_rank,
        CAST(COUNT(*) AS DOUBLE PRECISION) AS customers
    FROM end_tiers
    GROUP BY GROUPING SETS ((tier), ())
    HAVING COUNT(*) > 0
),

revenue AS (
    SELECT
        COALESCE(tier, '(all)') AS tier,
        CASE WHEN GROUPING(tier) = 1 THEN 0 ELSE MAX(tier_rank) END AS tier_rank,
        CAST(SUM(revenue) AS DOUBLE PRECISION) AS revenue
    FROM marts.review_tier_distribution
    WHERE quarter BETWEEN :first_quarter AND :last_quarter
    GROUP BY GROUPING SETS ((tier), ())
    HAVING COUNT(*) > 0
),

retention AS (
    SELECT
        COALESCE(s.tier, '(all)') AS tier,
        CASE WHEN GROUPING(s.tier) = 1 THEN 0 ELSE MAX(s.tier_rank) END AS tier_rank,
        CAST(COUNT(*) AS DOUBLE PRECISION) AS active_customers,
        CAST(COUNT(b.customer_key) AS DOUBLE PRECISION) AS retained
    FROM start_tiers AS s
    JOIN marts.customer_features_snapshot AS f
        ON f.as_of_date = CAST(:start_snapshot AS DATE) AND f.customer_key = s.customer_key
    LEFT JOIN year_buyers AS b ON b.customer_key = s.customer_key
    WHERE f.orders_365d > 0
    GROUP BY GROUPING SETS ((s.tier), ())
    HAVING COUNT(*) > 0
),

migration AS (
    SELECT
        COALESCE(s.tier, '(all)') AS tier,
        CASE WHEN GROUPING(s.tier) = 1 THEN 0 ELSE MAX(s.tier_rank) END AS tier_rank,
        CAST(COUNT(*) AS DOUBLE PRECISION) AS compared,
        CAST(COUNT(CASE WHEN e.tier_rank > s.tier_rank THEN 1 END) AS DOUBLE PRECISION) AS upgraded,
        CAST(COUNT(CASE WHEN e.tier_rank < s.tier_rank THEN 1 END) AS DOUBLE PRECISION) AS downgraded
    FROM start_tiers AS s
    JOIN end_tiers AS e ON e.customer_key = s.customer_key
    GROUP BY GROUPING SETS ((s.tier), ())
    HAVING COUNT(*) > 0
),

new_customers AS (
    SELECT CAST(COUNT(*) AS DOUBLE PRECISION) AS new_customers
    FROM end_tiers AS e
    WHERE CAST(:start_snapshot AS DATE) IS NOT NULL
        AND NOT EXISTS (SELECT 1 FROM start_tiers AS s WHERE s.customer_key = e.customer_key)
),

winback AS (
    SELECT
        CAST(SUM(candidates) AS DOUBLE PRECISION) AS candidates,
        CAST(SUM(returned) AS DOUBLE PRECISION) AS returned,
        CAST(SUM(revenue_recovered) AS DOUBLE PRECISION) AS revenue_recovered
    FROM marts.review_winback
    WHERE quarter BETWEEN :first_quarter AND :last_quarter
    HAVING COUNT(*) > 0
),

elimination AS (
    SELECT
        CAST(SUM(candidates) AS DOUBLE PRECISION) AS candidates,
        CAST(SUM(revenue) AS DOUBLE PRECISION) AS revenue,
        CAST(SUM(complaints) AS DOUBLE PRECISION) AS complaints,
        CAST(SUM(improved) AS DOUBLE PRECISION) AS improved
    FROM marts.review_elimination
    WHERE quarter BETWEEN :first_quarter AND :last_quarter
    HAVING COUNT(*) > 0
),

-- Elimination confirmed: customers whose listing a reviewer approved on a period of the year
-- (decided_as_of in (:year_start, :year_end], as the year's snapshots), once each, with the
-- 365-day value they had then: what the business decided to stop spending on.
confirmed_rows AS (
    SELECT s.customer_key, MAX(CAST(f.monetary_365d AS DOUBLE PRECISION)) AS value_365d
    FROM marts.elimination_status AS s
    JOIN marts.customer_features_snapshot AS f
        ON f.as_of_date = s.decided_as_of AND f.customer_key = s.customer_key
    WHERE s.review_status = 'approved'
        AND s.decided_as_of > CAST(:year_start AS DATE) AND s.decided_as_of <= CAST(:year_end AS DATE)
    GROUP BY s.customer_key
),

confirmed AS (
    SELECT CAST(COUNT(*) AS DOUBLE PRECISION) AS confirmed, CAST(SUM(value_365d) AS DOUBLE PRECISION) AS value_365d
    FROM confirmed_rows
),

-- Uplift pooled over the year: the treated and control customers of every quarter added up, per
-- list, overall (segment_type all) and per tier held when listed (segment_type tier).
uplift AS (
    SELECT
        list,
        CASE WHEN segment_type = 'all' THEN '(all)' ELSE segment END AS tier,
        CAST(SUM(treated) AS DOUBLE PRECISION) AS treated,
        CAST(SUM(treated_returned) AS DOUBLE PRECISION) AS treated_returned,
        CAST(SUM(control) AS DOUBLE PRECISION) AS control,
        CAST(SUM(control_returned) AS DOUBLE PRECISION) AS control_returned
    FROM marts.review_uplift
    WHERE quarter BETWEEN :first_quarter AND :last_quarter AND segment_type IN ('all', 'tier')
    GROUP BY list, CASE WHEN segment_type = 'all' THEN '(all)' ELSE segment END
),

-- Satisfaction: the quarters' means weighted by their answers; complaints per customer over the
-- year = complaints / the mean number of customers at the reviewed quarters' closes.
satisfaction AS (
    SELECT
        COALESCE(tier, '(all)') AS tier,
        CASE WHEN GROUPING(tier) = 1 THEN 0 ELSE MAX(tier_rank) END AS tier_rank,
        CAST(SUM(survey_responses) AS DOUBLE PRECISION) AS survey_responses,
        SUM(CASE WHEN csat_mean IS NOT NULL THEN csat_mean * survey_responses END)
        / NULLIF(SUM(CASE WHEN csat_mean IS NOT NULL THEN survey_responses END), 0) AS csat_mean,
        SUM(CASE WHEN nps_score IS NOT NULL THEN nps_score * survey_responses END)
        / NULLIF(SUM(CASE WHEN nps_score IS NOT NULL THEN survey_responses END), 0) AS nps_score,
        CAST(SUM(complaints) AS DOUBLE PRECISION) AS complaints,
        SUM(complaints) * COUNT(DISTINCT quarter) / CAST(NULLIF(SUM(customers), 0) AS DOUBLE PRECISION)
        AS complaints_per_customer
    FROM marts.review_satisfaction
    WHERE quarter BETWEEN :first_quarter AND :last_quarter
    GROUP BY GROUPING SETS ((tier), ())
    HAVING COUNT(*) > 0
)

SELECT 'customers' AS section, m.metric, c.tier, c.tier_rank, m.unit, m.value
FROM customers AS c
CROSS JOIN LATERAL (VALUES
    ('customers', 'customers', c.customers),
    ('customer_share', 'share', c.customers / (SELECT COUNT(*) FROM end_tiers))
) AS m (metric, unit, value)

UNION ALL
SELECT 'revenue', m.metric, r.tier, r.tier_rank, m.unit, m.value
FROM revenue AS r
CROSS JOIN LATERAL (VALUES
    ('revenue', 'money', r.revenue),
    ('revenue_share', 'share', r.revenue / NULLIF((SELECT revenue FROM revenue WHERE tier_rank = 0), 0))
) AS m (metric, unit, value)

UNION ALL
SELECT 'retention', m.metric, r.tier, r.tier_rank, m.unit, m.value
FROM retention AS r
CROSS JOIN LATERAL (VALUES
    ('active_customers', 'customers', r.active_customers),
    ('retained', 'customers', r.retained),
    ('retention_rate', 'share', r.retained / NULLIF(r.active_customers, 0))
) AS m (metric, unit, value)

UNION ALL
SELECT 'migration', m.metric, g.tier, g.tier_rank, m.unit, m.value
FROM migration AS g
CROSS JOIN LATERAL (VALUES
    ('compared', 'customers', g.compared),
    ('upgraded', 'customers', g.upgraded),
    ('downgraded', 'customers', g.downgraded),
    ('upgraded_share', 'share', g.upgraded / NULLIF(g.compared, 0)),
    ('downgraded_share', 'share', g.downgraded / NULLIF(g.compared, 0))
) AS m (metric, unit, value)

UNION ALL
SELECT 'migration', 'new_customers', '(all)', 0, 'customers', new_customers
FROM new_customers
WHERE CAST(:start_snapshot AS DATE) IS NOT NULL

UNION ALL
SELECT 'winback', m.metric, '(all)', 0, m.unit, m.value
FROM winback AS w
CROSS JOIN LATERAL (VALUES
    ('candidates', 'customers', w.candidates),
    ('returned', 'customers', w.returned),
    ('return_rate', 'share', w.returned / NULLIF(w.candidates, 0)),
    ('revenue_recovered', 'money', w.revenue_recovered)
) AS m (metric, unit, value)

UNION ALL
SELECT 'elimination', m.metric, '(all)', 0, m.unit, m.value
FROM elimination AS e
CROSS JOIN LATERAL (VALUES
    ('candidates', 'customers', e.candidates),
    ('revenue', 'money', e.revenue),
    ('complaints', 'count', e.complaints),
    ('improved', 'customers', e.improved),
    ('improved_share', 'share', e.improved / NULLIF(e.candidates, 0))
) AS m (metric, unit, value)

UNION ALL
SELECT 'elimination', m.metric, '(all)', 0, m.unit, m.value
FROM confirmed AS c
CROSS JOIN LATERAL (VALUES
    ('confirmed', 'customers', c.confirmed),
    ('confirmed_value_365d', 'money', COALESCE(c.value_365d, 0))
) AS m (metric, unit, value)

UNION ALL
SELECT 'uplift_' || u.list, m.metric, u.tier, 0, m.unit, m.value
FROM uplift AS u
CROSS JOIN LATERAL (VALUES
    ('treated', 'customers', u.treated),
    ('control', 'customers', u.control),
    ('treated_rate', 'share', u.treated_returned / NULLIF(u.treated, 0)),
    ('control_rate', 'share', u.control_returned / NULLIF(u.control, 0)),
    ('uplift', 'share', u.treated_returned / NULLIF(u.treated, 0) - u.control_returned / NULLIF(u.control, 0))
) AS m (metric, unit, value)

UNION ALL
SELECT 'satisfaction', m.metric, s.tier, s.tier_rank, m.unit, m.value
FROM satisfaction AS s
CROSS JOIN LATERAL (VALUES
    ('survey_responses', 'count', s.survey_responses),
    ('csat_mean', 'score', s.csat_mean),
    ('nps_score', 'score', s.nps_score),
    ('complaints', 'count', s.complaints),
    ('complaints_per_customer', 'ratio', s.complaints_per_customer)
) AS m (metric, unit, value)
