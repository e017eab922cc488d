-- Uplift input: the previous quarter's win-back candidates and elimination candidates
-- eligible for a control group (control_group not null), whether each was held out, and
-- whether they completed an order during this quarter (and for how much: review_quarter_revenue,
-- quarter_revenue.sql).
WITH listed AS (
    SELECT
        'win_back' AS list,
        w.customer_key,
        COALESCE(w.churn_reason, 'unknown') AS reason,
        COALESCE(w.previous_tier, '(none)') AS tier,
        w.control_group
    FROM marts.winback_candidates AS w
    WHERE w.as_of_date = CAST(:previous_snapshot AS DATE) AND w.control_group IS NOT NULL
    UNION ALL
    SELECT
        'elimination' AS list,
        e.customer_key,
        e.rule_name AS reason,
        t.tier,
        e.control_group
    FROM marts.elimination_candidates AS e
    JOIN marts.customer_tier_snapshot AS t ON t.as_of_date = e.as_of_date AND t.customer_key = e.customer_key
    WHERE e.as_of_date = CAST(:previous_snapshot AS DATE) AND e.control_group IS NOT NULL
)

SELECT
    l.list,
    l.customer_key,
    l.reason,
    l.tier,
    l.control_group,
    CASE WHEN r.customer_key IS NULL THEN 0 ELSE 1 END AS returned,
    CAST(COALESCE(r.revenue, 0) AS DOUBLE PRECISION) AS revenue
FROM listed AS l
LEFT JOIN review_quarter_revenue AS r ON r.customer_key = l.customer_key
-- in a fixed order: the revenues are summed in pandas, and a float sum depends on the order
ORDER BY l.list, l.customer_key, l.reason
