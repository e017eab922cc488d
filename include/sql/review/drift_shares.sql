-- Threshold drift input: customers per tier at :snapshot and at the first snapshot graded
-- by the same tier rule version (when the thresholds were set).
WITH now_version AS (
    SELECT MAX(rule_version) AS rule_version
    FROM marts.customer_tier_snapshot
    WHERE as_of_date = CAST(:snapshot AS DATE)
),

set_at AS (
    SELECT t.rule_version, MIN(t.as_of_date) AS set_as_of
    FROM marts.customer_tier_snapshot AS t
    JOIN now_version AS n ON n.rule_version = t.rule_version
    GROUP BY t.rule_version
)

SELECT t.as_of_date, t.tier, s.rule_version, s.set_as_of, COUNT(*) AS customers
FROM marts.customer_tier_snapshot AS t
CROSS JOIN set_at AS s
WHERE t.as_of_date = s.set_as_of OR t.as_of_date = CAST(:snapshot AS DATE)
GROUP BY t.as_of_date, t.tier, s.rule_version, s.set_as_of
