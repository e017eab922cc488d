-- Satisfaction by tier (tiers of :snapshot): surveys answered and complaints opened during
-- the quarter. NPS score = % promoters (9-10) - % detractors (0-6) of the answers.
WITH tiers AS (
    SELECT t.customer_key, k.customer_id, t.tier, t.tier_rank
    FROM marts.customer_tier_snapshot AS t
    JOIN ops.customer_keys AS k ON k.customer_key = t.customer_key
    WHERE t.as_of_date = CAST(:snapshot AS DATE)
),

answers AS (
    SELECT s.customer_id, s.csat, s.nps
    FROM raw.surveys AS s
    WHERE s.responded_at >= CAST(:quarter_start AS TIMESTAMP) AND s.responded_at < CAST(:quarter_end AS TIMESTAMP)
),

complaints AS (
    SELECT t.customer_id, COUNT(*) AS complaints
    FROM raw.tickets AS t
    WHERE t.category = 'complaint'
        AND t.opened_at >= CAST(:quarter_start AS TIMESTAMP) AND t.opened_at < CAST(:quarter_end AS TIMESTAMP)
    GROUP BY t.customer_id
),

survey_totals AS (
    SELECT
        t.tier,
        COUNT(a.customer_id) AS survey_responses,
        SUM(a.csat) AS csat_sum,
        COUNT(a.csat) AS csat_count,
        COUNT(CASE WHEN a.nps >= 9 THEN 1 END) AS promoters,
        COUNT(CASE WHEN a.nps <= 6 THEN 1 END) AS detractors,
        COUNT(a.nps) AS nps_count
    FROM tiers AS t
    JOIN answers AS a ON a.customer_id = t.customer_id
    GROUP BY t.tier
),

tier_totals AS (
    SELECT t.tier, t.tier_rank, COUNT(*) AS customers, COALESCE(SUM(c.complaints), 0) AS complaints
    FROM tiers AS t
    LEFT JOIN complaints AS c ON c.customer_id = t.customer_id
    GROUP BY t.tier, t.tier_rank
)

SELECT
    CAST(:quarter AS VARCHAR) AS quarter,
    tt.tier,
    tt.tier_rank,
    tt.customers,
    COALESCE(st.survey_responses, 0) AS survey_responses,
    CAST(st.csat_sum AS DOUBLE PRECISION) / NULLIF(st.csat_count, 0) AS csat_mean,
    100.0 * (st.promoters - st.detractors) / NULLIF(st.nps_count, 0) AS nps_score,
    tt.complaints,
    CAST(tt.complaints AS DOUBLE PRECISION) / tt.customers AS complaints_per_customer
FROM tier_totals AS tt
LEFT JOIN survey_totals AS st ON st.tier = tt.tier
ORDER BY tt.tier_rank
