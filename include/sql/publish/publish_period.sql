-- Publish one as-of date from staging into marts, run in a single transaction by
-- grading.publish: the period's rows are replaced together or not at all, and no other
-- period is touched. Customers appear in marts only by their pseudonymous key.

DELETE FROM marts.customer_features_snapshot WHERE as_of_date = :as_of;

INSERT INTO marts.customer_features_snapshot (
    as_of_date, customer_key, region, industry, channel, tenure_days, recency_days,
    orders_365d, monetary_365d, margin_365d, refunds_365d, orders_lifetime, monetary_lifetime,
    tickets_365d, complaints_365d, surveys_365d, csat_mean_365d, nps_mean_365d,
    r_score, f_score, m_score, avg_order_value_365d, monetary_90d, monetary_prev_90d,
    refund_rate_365d, complaint_rate_365d, resolution_hours_365d, open_tickets, churn_propensity
)
SELECT
    f.as_of_date, k.customer_key, f.region, f.industry, f.channel, f.tenure_days, f.recency_days,
    f.orders_365d, f.monetary_365d, f.margin_365d, f.refunds_365d, f.orders_lifetime, f.monetary_lifetime,
    f.tickets_365d, f.complaints_365d, f.surveys_365d, f.csat_mean_365d, f.nps_mean_365d,
    f.r_score, f.f_score, f.m_score, f.avg_order_value_365d, f.monetary_90d, f.monetary_prev_90d,
    f.refund_rate_365d, f.complaint_rate_365d, f.resolution_hours_365d, f.open_tickets, s.churn_propensity
FROM staging.customer_features AS f
JOIN ops.customer_keys AS k ON k.customer_id = f.customer_id
LEFT JOIN staging.churn_scores AS s ON s.as_of_date = f.as_of_date AND s.customer_id = f.customer_id
WHERE f.as_of_date = :as_of;

DELETE FROM marts.customer_tier_snapshot WHERE as_of_date = :as_of;

INSERT INTO marts.customer_tier_snapshot (
    as_of_date, customer_key, tier, tier_rank, tier_rule, tier_reason, rule_version, assigned_tier, periods_below
)
SELECT
    t.as_of_date, k.customer_key, t.tier, t.tier_rank, t.tier_rule, t.tier_reason, t.rule_version,
    t.assigned_tier, t.periods_below
FROM staging.customer_tiers AS t
JOIN ops.customer_keys AS k ON k.customer_id = t.customer_id
WHERE t.as_of_date = :as_of;

DELETE FROM marts.elimination_candidates WHERE as_of_date = :as_of;

INSERT INTO marts.elimination_candidates (as_of_date, customer_key, rule_name, reason, action, rule_version)
SELECT c.as_of_date, k.customer_key, c.rule_name, c.reason, c.action, c.rule_version
FROM staging.customer_flags AS c
JOIN ops.customer_keys AS k ON k.customer_id = c.customer_id
WHERE c.as_of_date = :as_of AND c.flag = 'elimination';

DELETE FROM marts.winback_candidates WHERE as_of_date = :as_of;

INSERT INTO marts.winback_candidates (
    as_of_date, customer_key, rule_name, reason, action, previous_tier, rule_version
)
SELECT c.as_of_date, k.customer_key, c.rule_name, c.reason, c.action, c.previous_tier, c.rule_version
FROM staging.customer_flags AS c
JOIN ops.customer_keys AS k ON k.customer_id = c.customer_id
WHERE c.as_of_date = :as_of AND c.flag = 'win_back';

-- The customer dimension is current state, rebuilt from raw on every publish.
DELETE FROM marts.dim_customer;

INSERT INTO marts.dim_customer (customer_key, region, industry, channel, first_seen_at)
SELECT k.customer_key, c.region, c.industry, c.channel, c.created_at
FROM raw.customers AS c
JOIN ops.customer_keys AS k ON k.customer_id = c.customer_id;

-- Tier history from every published snapshot: a row starts wherever a customer's tier
-- differs from their previous snapshot; valid_to is the as-of date of the next change
-- (exclusive), NULL for the open row.
DELETE FROM marts.tier_history;

INSERT INTO marts.tier_history (customer_key, tier, tier_rank, valid_from, valid_to, rule_version)
WITH ordered AS (
    SELECT
        customer_key, as_of_date, tier, tier_rank, rule_version,
        LAG(tier) OVER (PARTITION BY customer_key ORDER BY as_of_date) AS previous_tier
    FROM marts.customer_tier_snapshot
),

changes AS (
    SELECT customer_key, as_of_date, tier, tier_rank, rule_version
    FROM ordered
    WHERE previous_tier IS NULL OR previous_tier <> tier
)

SELECT
    customer_key,
    tier,
    tier_rank,
    as_of_date AS valid_from,
    LEAD(as_of_date) OVER (PARTITION BY customer_key ORDER BY as_of_date) AS valid_to,
    rule_version
FROM changes;
