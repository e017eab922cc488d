-- Publish one as-of date from staging into marts, run in a single transaction by
-- grading.publish: the period's rows are replaced together or not at all, and no other
-- period is touched. Customers appear in marts only by their pseudonymous key.

DELETE FROM marts.customer_features_snapshot WHERE as_of_date = :as_of;

INSERT INTO marts.customer_features_snapshot (
    as_of_date, customer_key, region, industry, channel, tenure_days, recency_days,
    orders_365d, monetary_365d, margin_365d, refunds_365d, orders_lifetime, monetary_lifetime,
    tickets_365d, complaints_365d, surveys_365d, csat_mean_365d, nps_mean_365d,
    r_score, f_score, m_score, avg_order_value_365d, monetary_90d, monetary_prev_90d,
    refund_rate_365d, complaint_rate_365d, resolution_hours_365d, open_tickets, churn_propensity,
    active_quarters_4, interactions_365d, window_start, orders_window, monetary_window
)
SELECT
    f.as_of_date, k.customer_key, f.region, f.industry, f.channel, f.tenure_days, f.recency_days,
    f.orders_365d, f.monetary_365d, f.margin_365d, f.refunds_365d, f.orders_lifetime, f.monetary_lifetime,
    f.tickets_365d, f.complaints_365d, f.surveys_365d, f.csat_mean_365d, f.nps_mean_365d,
    f.r_score, f.f_score, f.m_score, f.avg_order_value_365d, f.monetary_90d, f.monetary_prev_90d,
    f.refund_rate_365d, f.complaint_rate_365d, f.resolution_hours_365d, f.open_tickets, s.churn_propensity,
    f.active_quarters_4, f.interactions_365d, f.window_start, f.orders_window, f.monetary_window
FROM staging.customer_features AS f
JOIN ops.customer_keys AS k ON k.customer_id = f.customer_id
LEFT JOIN staging.churn_scores AS s ON s.as_of_date = f.as_of_date AND s.customer_id = f.customer_id
WHERE f.as_of_date = :as_of;

DELETE FROM marts.customer_tier_snapshot WHERE as_of_date = :as_of;

INSERT INTO marts.customer_tier_snapshot (
    as_of_date, customer_key, tier, tier_rank, tier_rule, tier_reason, rule_version, assigned_tier, periods_below,
    rules_sha256, spend_to_next_tier, orders_to_next_tier, spend_to_keep_tier, tier_since, review_date,
    qualifying_spend, qualifying_orders
)
SELECT
    t.as_of_date, k.customer_key, t.tier, t.tier_rank, t.tier_rule, t.tier_reason, t.rule_version,
    t.assigned_tier, t.periods_below, t.rules_sha256, t.spend_to_next_tier, t.orders_to_next_tier,
    t.spend_to_keep_tier, t.tier_since, t.review_date, t.qualifying_spend, t.qualifying_orders
FROM staging.customer_tiers AS t
JOIN ops.customer_keys AS k ON k.customer_id = t.customer_id
WHERE t.as_of_date = :as_of;

DELETE FROM marts.elimination_candidates WHERE as_of_date = :as_of;

INSERT INTO marts.elimination_candidates (
    as_of_date, customer_key, rule_name, reason, action, rule_version, severity, rules_sha256, periods_met,
    control_group
)
SELECT
    c.as_of_date, k.customer_key, c.rule_name, c.reason, c.action, c.rule_version, c.severity, c.rules_sha256,
    c.periods_met, c.control_group
FROM staging.customer_flags AS c
JOIN ops.customer_keys AS k ON k.customer_id = c.customer_id
WHERE c.as_of_date = :as_of AND c.flag = 'elimination';

DELETE FROM marts.winback_candidates WHERE as_of_date = :as_of;

INSERT INTO marts.winback_candidates (
    as_of_date, customer_key, rule_name, reason, action, previous_tier, rule_version,
    churn_reason, priority, value_before, last_order_at, rules_sha256, control_group
)
SELECT
    c.as_of_date, k.customer_key, c.rule_name, c.reason, c.action, c.previous_tier, c.rule_version,
    c.churn_reason, c.priority, c.value_before, c.last_order_at, c.rules_sha256, c.control_group
FROM staging.customer_flags AS c
JOIN ops.customer_keys AS k ON k.customer_id = c.customer_id
WHERE c.as_of_date = :as_of AND c.flag = 'win_back';

DELETE FROM marts.core_customers WHERE as_of_date = :as_of;

INSERT INTO marts.core_customers (as_of_date, customer_key, rule_name, reason, action, rule_version, rules_sha256)
SELECT c.as_of_date, k.customer_key, c.rule_name, c.reason, c.action, c.rule_version, c.rules_sha256
FROM staging.customer_flags AS c
JOIN ops.customer_keys AS k ON k.customer_id = c.customer_id
WHERE c.as_of_date = :as_of AND c.flag = 'core';

-- The customer dimension is current state, rebuilt from raw on every publish.
DELETE FROM marts.dim_customer;

INSERT INTO marts.dim_customer (customer_key, region, industry, channel, first_seen_at)
SELECT k.customer_key, c.region, c.industry, c.channel, c.created_at
FROM raw.customers AS c
JOIN ops.customer_keys AS k ON k.customer_id = c.customer_id;

-- Tier history is kept by grading.publish after these statements, in the same transaction
-- (tier_history_append.sql, or tier_history_rebuild.sql for a backfilled period).

-- The lost-customer register. A customer is lost from the first period they appear on the
-- win-back list; they are won back by their first completed order after that period's
-- as-of date. Flags that are followed by the same first order belong to one loss; flags
-- with no order after them form the open loss. Everything is observed up to the latest
-- published as-of date, so figures do not depend on what else raw happens to hold.
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
