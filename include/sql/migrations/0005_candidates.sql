-- Candidate lists with reasons, severity, churn reason and priority; core customers; and
-- the lost-customer register.
ALTER TABLE staging.customer_features ADD COLUMN active_quarters_4 INTEGER;
ALTER TABLE marts.customer_features_snapshot ADD COLUMN active_quarters_4 INTEGER;

ALTER TABLE staging.customer_flags ADD COLUMN severity VARCHAR;
ALTER TABLE staging.customer_flags ADD COLUMN churn_reason VARCHAR;
ALTER TABLE staging.customer_flags ADD COLUMN priority DOUBLE PRECISION;
ALTER TABLE staging.customer_flags ADD COLUMN value_before DOUBLE PRECISION;
ALTER TABLE staging.customer_flags ADD COLUMN last_order_at TIMESTAMP;

ALTER TABLE marts.elimination_candidates ADD COLUMN severity VARCHAR;

ALTER TABLE marts.winback_candidates ADD COLUMN churn_reason VARCHAR;
ALTER TABLE marts.winback_candidates ADD COLUMN priority DOUBLE PRECISION;
ALTER TABLE marts.winback_candidates ADD COLUMN value_before DOUBLE PRECISION;
ALTER TABLE marts.winback_candidates ADD COLUMN last_order_at TIMESTAMP;

CREATE TABLE marts.core_customers (
    as_of_date DATE NOT NULL,
    customer_key VARCHAR NOT NULL,
    rule_name VARCHAR NOT NULL,
    reason VARCHAR NOT NULL,
    action VARCHAR NOT NULL,
    rule_version VARCHAR NOT NULL
);

-- One row per customer and time they were lost: rebuilt on every publish from the
-- published win-back lists and the orders, so reruns and backfills keep it right.
CREATE TABLE marts.lost_customers (
    customer_key VARCHAR NOT NULL,
    lost_as_of DATE NOT NULL,
    tier_before VARCHAR,
    value_before DOUBLE PRECISION,
    last_order_at TIMESTAMP,
    churn_reason VARCHAR,
    reason VARCHAR NOT NULL,
    suggested_action VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    won_back_at TIMESTAMP,
    revenue_since_won_back DOUBLE PRECISION NOT NULL,
    observed_until DATE NOT NULL
);
