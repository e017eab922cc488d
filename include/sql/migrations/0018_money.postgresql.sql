-- Money as exact decimals on PostgreSQL (issue 21): amounts of completed orders and what is
-- derived from them by sums and differences are NUMERIC(18,2), so BI tools add them up to the
-- cent. Means, shares, priorities and scores stay DOUBLE PRECISION. The views that read these
-- columns are dropped and recreated as they were (0004, 0015): PostgreSQL cannot change the type
-- of a column a view uses. DuckDB keeps DOUBLE (see 0018_money.sql).

DROP VIEW crm.current_actions;
DROP VIEW crm.current_customers;
DROP VIEW marts.current_customer_service;
DROP VIEW marts.current_nurture_candidates;
DROP VIEW marts.current_elimination_candidates;
DROP VIEW marts.current_winback_candidates;
DROP VIEW marts.current_core_customers;
DROP VIEW marts.current_customer_features;
DROP VIEW marts.current_customer_tier;
DROP VIEW marts.tier_summary;

ALTER TABLE marts.customer_features_snapshot
    ALTER COLUMN monetary_365d TYPE NUMERIC(18, 2),
    ALTER COLUMN margin_365d TYPE NUMERIC(18, 2),
    ALTER COLUMN monetary_lifetime TYPE NUMERIC(18, 2),
    ALTER COLUMN monetary_90d TYPE NUMERIC(18, 2),
    ALTER COLUMN monetary_prev_90d TYPE NUMERIC(18, 2),
    ALTER COLUMN monetary_window TYPE NUMERIC(18, 2);
ALTER TABLE marts.customer_tier_snapshot
    ALTER COLUMN spend_to_next_tier TYPE NUMERIC(18, 2),
    ALTER COLUMN spend_to_keep_tier TYPE NUMERIC(18, 2),
    ALTER COLUMN qualifying_spend TYPE NUMERIC(18, 2);
ALTER TABLE marts.winback_candidates
    ALTER COLUMN value_before TYPE NUMERIC(18, 2);
ALTER TABLE marts.lost_customers
    ALTER COLUMN value_before TYPE NUMERIC(18, 2),
    ALTER COLUMN revenue_since_won_back TYPE NUMERIC(18, 2);
ALTER TABLE marts.review_tier_distribution
    ALTER COLUMN revenue TYPE NUMERIC(18, 2);
ALTER TABLE marts.review_pareto
    ALTER COLUMN revenue TYPE NUMERIC(18, 2);
ALTER TABLE marts.review_winback
    ALTER COLUMN revenue_recovered TYPE NUMERIC(18, 2);
ALTER TABLE marts.review_elimination
    ALTER COLUMN revenue TYPE NUMERIC(18, 2);
ALTER TABLE marts.review_uplift
    ALTER COLUMN treated_revenue TYPE NUMERIC(18, 2),
    ALTER COLUMN control_revenue TYPE NUMERIC(18, 2);

CREATE VIEW marts.tier_summary AS
SELECT
    t.as_of_date,
    t.tier,
    t.tier_rank,
    COUNT(*) AS customers,
    SUM(f.monetary_365d) AS monetary_365d
FROM marts.customer_tier_snapshot AS t
JOIN marts.customer_features_snapshot AS f
    ON f.as_of_date = t.as_of_date AND f.customer_key = t.customer_key
GROUP BY t.as_of_date, t.tier, t.tier_rank;

CREATE VIEW marts.current_customer_tier AS
SELECT t.*
FROM marts.customer_tier_snapshot AS t
WHERE t.as_of_date = (SELECT MAX(as_of_date) FROM marts.customer_tier_snapshot);

CREATE VIEW marts.current_customer_features AS
SELECT f.*
FROM marts.customer_features_snapshot AS f
WHERE f.as_of_date = (SELECT MAX(as_of_date) FROM marts.customer_tier_snapshot);

CREATE VIEW marts.current_elimination_candidates AS
SELECT
    e.as_of_date, e.customer_key, e.rule_name, e.reason, e.action, e.severity, e.periods_met, e.control_group,
    s.review_status, s.decided_as_of, s.expires_on, e.rule_version, e.rules_sha256
FROM marts.elimination_candidates AS e
LEFT JOIN marts.elimination_status AS s ON s.as_of_date = e.as_of_date AND s.customer_key = e.customer_key
WHERE e.as_of_date = (SELECT MAX(as_of_date) FROM marts.customer_tier_snapshot);

CREATE VIEW marts.current_nurture_candidates AS
SELECT * FROM marts.current_elimination_candidates WHERE control_group IS NOT NULL;

CREATE VIEW marts.current_winback_candidates AS
SELECT w.*
FROM marts.winback_candidates AS w
WHERE w.as_of_date = (SELECT MAX(as_of_date) FROM marts.customer_tier_snapshot);

CREATE VIEW marts.current_core_customers AS
SELECT c.*
FROM marts.core_customers AS c
WHERE c.as_of_date = (SELECT MAX(as_of_date) FROM marts.customer_tier_snapshot);

CREATE VIEW marts.current_customer_service AS
SELECT
    t.as_of_date, t.customer_key, t.tier, t.tier_rank, t.tier_since AS since, s.service_level, s.label,
    s.response_time_hours, s.service_hours, s.dedicated_account_manager, s.support_channels, s.visit_frequency,
    s.review_frequency, s.discount_policy, s.credit_policy, s.benefits, s.rule_version AS service_rule_version
FROM marts.current_customer_tier AS t
JOIN marts.service_entitlements AS s ON s.as_of_date = t.as_of_date AND s.tier = t.tier;

CREATE VIEW crm.current_customers AS
SELECT
    k.customer_id, s.customer_key, s.as_of_date, s.tier, s.since, t.tier_reason, t.spend_to_next_tier,
    t.review_date, s.service_level, s.label, s.response_time_hours, s.service_hours, s.dedicated_account_manager,
    s.support_channels, s.visit_frequency, s.review_frequency, s.discount_policy, s.credit_policy, s.benefits
FROM marts.current_customer_service AS s
JOIN marts.current_customer_tier AS t ON t.customer_key = s.customer_key
JOIN ops.customer_keys AS k ON k.customer_key = s.customer_key;

CREATE VIEW crm.current_actions AS
SELECT k.customer_id, l.customer_key, l.as_of_date, l.list, l.rule_name, l.reason, l.action, l.status,
       l.control_group
FROM (
    SELECT customer_key, as_of_date, 'elimination' AS list, rule_name, reason, action,
           review_status AS status, control_group
    FROM marts.current_elimination_candidates
    UNION ALL
    SELECT customer_key, as_of_date, 'win_back', rule_name, reason, action, 'listed', control_group
    FROM marts.current_winback_candidates
    UNION ALL
    SELECT customer_key, as_of_date, 'core', rule_name, reason, action, 'listed', NULL
    FROM marts.current_core_customers
) AS l
JOIN ops.customer_keys AS k ON k.customer_key = l.customer_key;
