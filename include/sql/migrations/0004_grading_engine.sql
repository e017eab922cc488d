-- The full feature set, damped tiers and the churn model's record.
-- The views are dropped first and recreated with explicit columns at the end, so that both
-- engines agree on their columns after the tables grow.
DROP VIEW marts.current_customer_tier;
DROP VIEW marts.tier_summary;

ALTER TABLE staging.customer_features ADD COLUMN avg_order_value_365d DOUBLE PRECISION;
ALTER TABLE staging.customer_features ADD COLUMN monetary_90d DOUBLE PRECISION;
ALTER TABLE staging.customer_features ADD COLUMN monetary_prev_90d DOUBLE PRECISION;
ALTER TABLE staging.customer_features ADD COLUMN refund_rate_365d DOUBLE PRECISION;
ALTER TABLE staging.customer_features ADD COLUMN complaint_rate_365d DOUBLE PRECISION;
ALTER TABLE staging.customer_features ADD COLUMN resolution_hours_365d DOUBLE PRECISION;
ALTER TABLE staging.customer_features ADD COLUMN open_tickets INTEGER;

ALTER TABLE marts.customer_features_snapshot ADD COLUMN avg_order_value_365d DOUBLE PRECISION;
ALTER TABLE marts.customer_features_snapshot ADD COLUMN monetary_90d DOUBLE PRECISION;
ALTER TABLE marts.customer_features_snapshot ADD COLUMN monetary_prev_90d DOUBLE PRECISION;
ALTER TABLE marts.customer_features_snapshot ADD COLUMN refund_rate_365d DOUBLE PRECISION;
ALTER TABLE marts.customer_features_snapshot ADD COLUMN complaint_rate_365d DOUBLE PRECISION;
ALTER TABLE marts.customer_features_snapshot ADD COLUMN resolution_hours_365d DOUBLE PRECISION;
ALTER TABLE marts.customer_features_snapshot ADD COLUMN open_tickets INTEGER;
ALTER TABLE marts.customer_features_snapshot ADD COLUMN churn_propensity DOUBLE PRECISION;

-- Churn propensity per customer and as-of date, from the churn model stage.
CREATE TABLE staging.churn_scores (
    as_of_date DATE NOT NULL,
    customer_id VARCHAR NOT NULL,
    churn_propensity DOUBLE PRECISION NOT NULL
);

-- Damping: the tier the rules assigned before damping, and how many consecutive periods
-- the customer has been below the tier they hold.
ALTER TABLE staging.customer_tiers ADD COLUMN assigned_tier VARCHAR;
ALTER TABLE staging.customer_tiers ADD COLUMN periods_below INTEGER;
ALTER TABLE marts.customer_tier_snapshot ADD COLUMN assigned_tier VARCHAR;
ALTER TABLE marts.customer_tier_snapshot ADD COLUMN periods_below INTEGER;

CREATE TABLE marts.model_runs (
    run_id VARCHAR NOT NULL,
    as_of_date DATE NOT NULL,
    model VARCHAR NOT NULL,
    train_as_of DATE NOT NULL,
    holdout_as_of DATE NOT NULL,
    train_rows BIGINT NOT NULL,
    holdout_rows BIGINT NOT NULL,
    holdout_churn_rate DOUBLE PRECISION,
    auc DOUBLE PRECISION,
    precision_top_decile DOUBLE PRECISION,
    baseline_auc DOUBLE PRECISION,
    baseline_precision_top_decile DOUBLE PRECISION,
    beats_baseline BOOLEAN,
    note VARCHAR,
    trained_at TIMESTAMP NOT NULL
);

CREATE VIEW marts.current_customer_tier AS
SELECT
    t.as_of_date, t.customer_key, t.tier, t.tier_rank, t.tier_rule, t.tier_reason, t.rule_version,
    t.assigned_tier, t.periods_below
FROM marts.customer_tier_snapshot AS t
WHERE t.as_of_date = (SELECT MAX(as_of_date) FROM marts.customer_tier_snapshot);

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
