-- Initial warehouse model. Runs unchanged on DuckDB and PostgreSQL.
-- Layers: raw (extracted source rows), staging (per-run working tables keyed by as_of_date),
-- marts (published, read by BI tools), ops (bookkeeping the pipeline needs, not for BI).
-- Money is NUMERIC so sums are exact and identical on every engine and thread count.

CREATE SCHEMA IF NOT EXISTS raw;
CREATE SCHEMA IF NOT EXISTS staging;
CREATE SCHEMA IF NOT EXISTS marts;

-- raw: source rows in the canonical schema. PII (name, email, phone) is never extracted.
CREATE TABLE raw.customers (
    customer_id VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL,
    region VARCHAR,
    industry VARCHAR,
    channel VARCHAR,
    extracted_at TIMESTAMP NOT NULL
);

CREATE TABLE raw.orders (
    order_id VARCHAR NOT NULL,
    customer_id VARCHAR NOT NULL,
    order_ts TIMESTAMP NOT NULL,
    status VARCHAR NOT NULL,
    amount NUMERIC(18, 2) NOT NULL,
    margin NUMERIC(18, 2),
    extracted_at TIMESTAMP NOT NULL
);

CREATE TABLE raw.tickets (
    ticket_id VARCHAR NOT NULL,
    customer_id VARCHAR NOT NULL,
    opened_at TIMESTAMP NOT NULL,
    closed_at TIMESTAMP,
    category VARCHAR NOT NULL,
    severity VARCHAR,
    resolved BOOLEAN,
    extracted_at TIMESTAMP NOT NULL
);

CREATE TABLE raw.surveys (
    survey_id VARCHAR NOT NULL,
    customer_id VARCHAR NOT NULL,
    responded_at TIMESTAMP NOT NULL,
    csat INTEGER,
    nps INTEGER,
    extracted_at TIMESTAMP NOT NULL
);

-- ops: watermarks of incremental extraction and the pseudonym of every customer.
CREATE TABLE ops.extract_watermarks (
    source_table VARCHAR NOT NULL,
    extracted_through TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

CREATE TABLE ops.customer_keys (
    customer_id VARCHAR NOT NULL,
    customer_key VARCHAR NOT NULL
);

-- staging: each stage's output for one as_of_date, replaced when the stage reruns.
CREATE TABLE staging.customer_features (
    as_of_date DATE NOT NULL,
    customer_id VARCHAR NOT NULL,
    region VARCHAR,
    industry VARCHAR,
    channel VARCHAR,
    tenure_days INTEGER NOT NULL,
    last_order_at TIMESTAMP,
    recency_days INTEGER,
    orders_365d INTEGER NOT NULL,
    monetary_365d DOUBLE PRECISION NOT NULL,
    margin_365d DOUBLE PRECISION NOT NULL,
    refunds_365d INTEGER NOT NULL,
    orders_lifetime INTEGER NOT NULL,
    monetary_lifetime DOUBLE PRECISION NOT NULL,
    tickets_365d INTEGER NOT NULL,
    complaints_365d INTEGER NOT NULL,
    surveys_365d INTEGER NOT NULL,
    csat_mean_365d DOUBLE PRECISION,
    nps_mean_365d DOUBLE PRECISION,
    r_score INTEGER NOT NULL,
    f_score INTEGER NOT NULL,
    m_score INTEGER NOT NULL
);

CREATE TABLE staging.customer_tiers (
    as_of_date DATE NOT NULL,
    customer_id VARCHAR NOT NULL,
    tier VARCHAR NOT NULL,
    tier_rank INTEGER NOT NULL,
    tier_rule VARCHAR NOT NULL,
    tier_reason VARCHAR NOT NULL,
    rule_version VARCHAR NOT NULL
);

CREATE TABLE staging.customer_flags (
    as_of_date DATE NOT NULL,
    customer_id VARCHAR NOT NULL,
    flag VARCHAR NOT NULL,
    rule_name VARCHAR NOT NULL,
    reason VARCHAR NOT NULL,
    action VARCHAR NOT NULL,
    previous_tier VARCHAR,
    rule_version VARCHAR NOT NULL
);

-- marts: what BI tools read. Customers appear only by their pseudonymous customer_key.
CREATE TABLE marts.dim_customer (
    customer_key VARCHAR NOT NULL,
    region VARCHAR,
    industry VARCHAR,
    channel VARCHAR,
    first_seen_at TIMESTAMP NOT NULL
);

CREATE TABLE marts.customer_features_snapshot (
    as_of_date DATE NOT NULL,
    customer_key VARCHAR NOT NULL,
    region VARCHAR,
    industry VARCHAR,
    channel VARCHAR,
    tenure_days INTEGER NOT NULL,
    recency_days INTEGER,
    orders_365d INTEGER NOT NULL,
    monetary_365d DOUBLE PRECISION NOT NULL,
    margin_365d DOUBLE PRECISION NOT NULL,
    refunds_365d INTEGER NOT NULL,
    orders_lifetime INTEGER NOT NULL,
    monetary_lifetime DOUBLE PRECISION NOT NULL,
    tickets_365d INTEGER NOT NULL,
    complaints_365d INTEGER NOT NULL,
    surveys_365d INTEGER NOT NULL,
    csat_mean_365d DOUBLE PRECISION,
    nps_mean_365d DOUBLE PRECISION,
    r_score INTEGER NOT NULL,
    f_score INTEGER NOT NULL,
    m_score INTEGER NOT NULL
);

CREATE TABLE marts.customer_tier_snapshot (
    as_of_date DATE NOT NULL,
    customer_key VARCHAR NOT NULL,
    tier VARCHAR NOT NULL,
    tier_rank INTEGER NOT NULL,
    tier_rule VARCHAR NOT NULL,
    tier_reason VARCHAR NOT NULL,
    rule_version VARCHAR NOT NULL
);

CREATE TABLE marts.elimination_candidates (
    as_of_date DATE NOT NULL,
    customer_key VARCHAR NOT NULL,
    rule_name VARCHAR NOT NULL,
    reason VARCHAR NOT NULL,
    action VARCHAR NOT NULL,
    rule_version VARCHAR NOT NULL
);

CREATE TABLE marts.winback_candidates (
    as_of_date DATE NOT NULL,
    customer_key VARCHAR NOT NULL,
    rule_name VARCHAR NOT NULL,
    reason VARCHAR NOT NULL,
    action VARCHAR NOT NULL,
    previous_tier VARCHAR,
    rule_version VARCHAR NOT NULL
);

CREATE TABLE marts.run_audit (
    run_id VARCHAR NOT NULL,
    as_of_date DATE NOT NULL,
    stage VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    rows_out BIGINT,
    started_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP NOT NULL,
    rule_version VARCHAR,
    message VARCHAR
);

CREATE TABLE marts.validation_results (
    run_id VARCHAR NOT NULL,
    as_of_date DATE NOT NULL,
    suite VARCHAR NOT NULL,
    expectation VARCHAR NOT NULL,
    column_name VARCHAR,
    severity VARCHAR NOT NULL,
    success BOOLEAN NOT NULL,
    unexpected_count BIGINT,
    observed_value VARCHAR,
    validated_at TIMESTAMP NOT NULL
);

CREATE TABLE marts.review_tier_distribution (
    quarter VARCHAR NOT NULL,
    snapshot_as_of DATE NOT NULL,
    tier VARCHAR NOT NULL,
    tier_rank INTEGER NOT NULL,
    customers BIGINT NOT NULL,
    customer_share DOUBLE PRECISION NOT NULL,
    revenue DOUBLE PRECISION NOT NULL,
    revenue_share DOUBLE PRECISION NOT NULL
);

CREATE VIEW marts.current_customer_tier AS
SELECT t.*
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
