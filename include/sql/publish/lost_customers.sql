-- The lost-customer register. A customer is lost from the first period they appear on the
-- win-back list; they are won back by their first completed order after that period's
-- as-of date. Flags that are followed by the same first order belong to one loss; flags
-- with no order after them form the open loss. Everything is observed up to the latest
-- published as-of date, so figures do not depend on what else raw happens to hold.
-- Reads the period's marts.winback_candidates and marts.customer_tier_snapshot, so it runs
-- after their files (grading.publish refuses an order of include/sql/marts.yml that does not).
DELETE FROM marts.lost_customers;

INSERT INTO marts.lost_customers (
    customer_key, lost_as_of, tier_before, value_before, last_order_at, churn_reason, reason,
    suggested_action, status, won_back_at, revenue_since_won_back, observed_until
)
WITH horizon AS (
    SELECT MAX(as_of_date) AS observed_until FROM marts.customer_tier_snapshot
),

flags AS (
    SELECT w.*, k.customer_id
    FROM marts.winback_candidates AS w
    JOIN ops.customer_keys AS k ON k.customer_key = w.customer_key
),

flag_returns AS (
    SELECT f.customer_key, f.as_of_date, MIN(o.order_ts) AS won_back_at
    FROM flags AS f
    CROSS JOIN horizon AS h
    LEFT JOIN raw.orders AS o
        ON o.customer_id = f.customer_id
        AND o.status = 'completed'
        AND o.order_ts >= CAST(f.as_of_date AS TIMESTAMP)
        AND o.order_ts < CAST(h.observed_until AS TIMESTAMP)
    GROUP BY f.customer_key, f.as_of_date
),

losses AS (
    SELECT customer_key, won_back_at, MIN(as_of_date) AS lost_as_of
    FROM flag_returns
    GROUP BY customer_key, won_back_at
),

revenue AS (
    SELECT l.customer_key, l.lost_as_of, COALESCE(SUM(o.amount), 0) AS revenue_since_won_back
    FROM losses AS l
    CROSS JOIN horizon AS h
    JOIN ops.customer_keys AS k ON k.customer_key = l.customer_key
    LEFT JOIN raw.orders AS o
        ON o.customer_id = k.customer_id
        AND o.status = 'completed'
        AND l.won_back_at IS NOT NULL
        AND o.order_ts >= l.won_back_at
        AND o.order_ts < CAST(h.observed_until AS TIMESTAMP)
    GROUP BY l.customer_key, l.lost_as_of
)

SELECT
    l.customer_key,
    l.lost_as_of,
    f.previous_tier AS tier_before,
    f.value_before,
    f.last_order_at,
    f.churn_reason,
    f.reason,
    f.action AS suggested_action,
    CASE WHEN l.won_back_at IS NULL THEN 'lost' ELSE 'won_back' END AS status,
    l.won_back_at,
    CAST(r.revenue_since_won_back AS DOUBLE PRECISION) AS revenue_since_won_back,
    h.observed_until
FROM losses AS l
CROSS JOIN horizon AS h
JOIN flags AS f ON f.customer_key = l.customer_key AND f.as_of_date = l.lost_as_of
JOIN revenue AS r ON r.customer_key = l.customer_key AND r.lost_as_of = l.lost_as_of;
