-- Elimination outcomes: the previous quarter's elimination candidates by rule - what they
-- brought (revenue, from review_quarter_revenue: quarter_revenue.sql) and cost (tickets,
-- complaints) during this quarter, and how many are no longer candidates at this quarter's
-- snapshot (improved).
WITH candidates AS (
    SELECT e.customer_key, k.customer_id, e.rule_name
    FROM marts.elimination_candidates AS e
    JOIN ops.customer_keys AS k ON k.customer_key = e.customer_key
    WHERE e.as_of_date = CAST(:previous_snapshot AS DATE)
),

still AS (
    SELECT customer_key FROM marts.elimination_candidates WHERE as_of_date = CAST(:snapshot AS DATE)
),

quarter_tickets AS (
    SELECT
        t.customer_id,
        COUNT(*) AS tickets,
        COUNT(CASE WHEN t.category = 'complaint' THEN 1 END) AS complaints
    FROM raw.tickets AS t
    WHERE t.opened_at >= CAST(:quarter_start AS TIMESTAMP) AND t.opened_at < CAST(:quarter_end AS TIMESTAMP)
    GROUP BY t.customer_id
)

SELECT
    CAST(:quarter AS VARCHAR) AS quarter,
    c.rule_name,
    COUNT(*) AS candidates,
    CAST(COALESCE(SUM(r.revenue), 0) AS DOUBLE PRECISION) AS revenue,
    COALESCE(SUM(t.tickets), 0) AS tickets,
    COALESCE(SUM(t.complaints), 0) AS complaints,
    COUNT(s.customer_key) AS still_candidates,
    COUNT(*) - COUNT(s.customer_key) AS improved
FROM candidates AS c
LEFT JOIN review_quarter_revenue AS r ON r.customer_key = c.customer_key
LEFT JOIN quarter_tickets AS t ON t.customer_id = c.customer_id
LEFT JOIN still AS s ON s.customer_key = c.customer_key
GROUP BY c.rule_name
ORDER BY c.rule_name
