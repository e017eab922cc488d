-- Quarterly effectiveness review: one table per evaluation, keyed by quarter, replaced
-- when the quarter is reviewed again.

CREATE TABLE marts.review_pareto (
    quarter VARCHAR NOT NULL,
    decile INTEGER NOT NULL,
    customers BIGINT NOT NULL,
    revenue DOUBLE PRECISION NOT NULL,
    cumulative_revenue_share DOUBLE PRECISION NOT NULL
);

CREATE TABLE marts.review_tier_migration (
    quarter VARCHAR NOT NULL,
    from_tier VARCHAR NOT NULL,
    from_rank INTEGER NOT NULL,
    to_tier VARCHAR NOT NULL,
    to_rank INTEGER NOT NULL,
    movement VARCHAR NOT NULL,
    customers BIGINT NOT NULL
);

CREATE TABLE marts.review_retention (
    quarter VARCHAR NOT NULL,
    tier VARCHAR NOT NULL,
    tier_rank INTEGER NOT NULL,
    active_customers BIGINT NOT NULL,
    retained BIGINT NOT NULL,
    retention_rate DOUBLE PRECISION NOT NULL,
    churn_rate DOUBLE PRECISION NOT NULL
);

CREATE TABLE marts.review_satisfaction (
    quarter VARCHAR NOT NULL,
    tier VARCHAR NOT NULL,
    tier_rank INTEGER NOT NULL,
    customers BIGINT NOT NULL,
    survey_responses BIGINT NOT NULL,
    csat_mean DOUBLE PRECISION,
    nps_score DOUBLE PRECISION,
    complaints BIGINT NOT NULL,
    complaints_per_customer DOUBLE PRECISION NOT NULL
);

CREATE TABLE marts.review_winback (
    quarter VARCHAR NOT NULL,
    churn_reason VARCHAR NOT NULL,
    candidates BIGINT NOT NULL,
    returned BIGINT NOT NULL,
    return_rate DOUBLE PRECISION NOT NULL,
    revenue_recovered DOUBLE PRECISION NOT NULL
);

CREATE TABLE marts.review_elimination (
    quarter VARCHAR NOT NULL,
    rule_name VARCHAR NOT NULL,
    candidates BIGINT NOT NULL,
    revenue DOUBLE PRECISION NOT NULL,
    tickets BIGINT NOT NULL,
    complaints BIGINT NOT NULL,
    still_candidates BIGINT NOT NULL,
    improved BIGINT NOT NULL
);

CREATE TABLE marts.review_stability (
    quarter VARCHAR NOT NULL,
    customers_compared BIGINT NOT NULL,
    changed BIGINT NOT NULL,
    changed_share DOUBLE PRECISION NOT NULL,
    flapped BIGINT NOT NULL,
    flapped_share DOUBLE PRECISION NOT NULL
);

CREATE TABLE marts.review_fairness (
    quarter VARCHAR NOT NULL,
    dimension VARCHAR NOT NULL,
    group_value VARCHAR NOT NULL,
    customers BIGINT NOT NULL,
    top_tier_share DOUBLE PRECISION NOT NULL,
    elimination_rate DOUBLE PRECISION NOT NULL,
    top_tier_ratio DOUBLE PRECISION,
    elimination_ratio DOUBLE PRECISION,
    disparity VARCHAR NOT NULL
);

CREATE TABLE marts.review_drift (
    quarter VARCHAR NOT NULL,
    tier VARCHAR NOT NULL,
    rule_version VARCHAR NOT NULL,
    set_as_of DATE NOT NULL,
    share_when_set DOUBLE PRECISION NOT NULL,
    share_now DOUBLE PRECISION NOT NULL,
    note VARCHAR NOT NULL
);
