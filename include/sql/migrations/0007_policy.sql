-- Policy identity, guarded elimination with review decisions, and control groups.

-- The content hash (sha256) of the rule file that produced each published row.
ALTER TABLE staging.customer_tiers ADD COLUMN rules_sha256 VARCHAR;
ALTER TABLE marts.customer_tier_snapshot ADD COLUMN rules_sha256 VARCHAR;
ALTER TABLE staging.customer_flags ADD COLUMN rules_sha256 VARCHAR;
ALTER TABLE marts.elimination_candidates ADD COLUMN rules_sha256 VARCHAR;
ALTER TABLE marts.winback_candidates ADD COLUMN rules_sha256 VARCHAR;
ALTER TABLE marts.core_customers ADD COLUMN rules_sha256 VARCHAR;

-- Guarded elimination: consecutive periods a customer has met an elimination criterion;
-- only customers at the confirmation count are published as candidates.
ALTER TABLE staging.customer_flags ADD COLUMN periods_met INTEGER;
ALTER TABLE marts.elimination_candidates ADD COLUMN periods_met INTEGER;

-- Control groups: a deterministic share of win-back and nurture candidates the business
-- leaves alone, so the quarterly review can measure what acting on the lists achieved.
ALTER TABLE staging.customer_flags ADD COLUMN control_group BOOLEAN;
ALTER TABLE marts.elimination_candidates ADD COLUMN control_group BOOLEAN;
ALTER TABLE marts.winback_candidates ADD COLUMN control_group BOOLEAN;

-- The rule files each run applied.
CREATE TABLE marts.run_rule_files (
    run_id VARCHAR NOT NULL,
    as_of_date DATE NOT NULL,
    kind VARCHAR NOT NULL,
    file_name VARCHAR NOT NULL,
    version VARCHAR NOT NULL,
    rules_sha256 VARCHAR NOT NULL
);

-- Reviewers' decisions on elimination candidates: kept, never updated in place.
CREATE TABLE marts.elimination_decisions (
    customer_key VARCHAR NOT NULL,
    as_of_date DATE NOT NULL,
    decision VARCHAR NOT NULL,
    reviewer VARCHAR NOT NULL,
    note VARCHAR,
    decided_at TIMESTAMP NOT NULL
);

-- Review status of every published elimination candidate: the reviewer's decision, else
-- expired once a later period no longer lists the customer, else proposed.
CREATE VIEW marts.elimination_status AS
SELECT
    e.as_of_date,
    e.customer_key,
    e.rule_name,
    e.action,
    e.severity,
    e.control_group,
    CASE
        WHEN d.decision IS NOT NULL THEN d.decision
        WHEN EXISTS (
            SELECT 1 FROM marts.customer_tier_snapshot AS later
            WHERE later.customer_key = e.customer_key AND later.as_of_date > e.as_of_date
                AND NOT EXISTS (SELECT 1 FROM marts.elimination_candidates AS again
                                WHERE again.customer_key = e.customer_key AND again.as_of_date = later.as_of_date)
        ) THEN 'expired'
        ELSE 'proposed'
    END AS review_status,
    d.reviewer,
    d.decided_at
FROM marts.elimination_candidates AS e
LEFT JOIN marts.elimination_decisions AS d
    ON d.customer_key = e.customer_key AND d.as_of_date = e.as_of_date;

CREATE TABLE marts.review_uplift (
    quarter VARCHAR NOT NULL,
    list VARCHAR NOT NULL,
    segment_type VARCHAR NOT NULL,
    segment VARCHAR NOT NULL,
    treated BIGINT NOT NULL,
    treated_returned BIGINT NOT NULL,
    control BIGINT NOT NULL,
    control_returned BIGINT NOT NULL,
    treated_rate DOUBLE PRECISION,
    control_rate DOUBLE PRECISION,
    uplift DOUBLE PRECISION,
    ci_low DOUBLE PRECISION,
    ci_high DOUBLE PRECISION,
    treated_revenue DOUBLE PRECISION NOT NULL,
    control_revenue DOUBLE PRECISION NOT NULL,
    verdict VARCHAR NOT NULL
);

-- Erasures done (python -m grading erase): when, and the customer's pseudonymous key (a
-- keyed hash; the source id itself is gone everywhere).
CREATE TABLE ops.erasures (
    customer_key VARCHAR NOT NULL,
    rows_deleted BIGINT NOT NULL,
    erased_at TIMESTAMP NOT NULL
);

-- Scheme checks: does the tiering predict next quarter's revenue?
CREATE TABLE marts.review_scheme (
    quarter VARCHAR NOT NULL,
    tier VARCHAR NOT NULL,
    tier_rank INTEGER NOT NULL,
    customers BIGINT NOT NULL,
    revenue_per_customer DOUBLE PRECISION NOT NULL,
    lift DOUBLE PRECISION,
    monotonic BOOLEAN NOT NULL,
    gini DOUBLE PRECISION
);

-- The cut points behind the quantile scores of each graded period (the value range each
-- R/F/M score covered), so a score means the same thing when read later, and a move of
-- the cut points between periods is visible.
CREATE TABLE marts.score_cut_points (
    as_of_date DATE NOT NULL,
    score VARCHAR NOT NULL,
    score_value INTEGER NOT NULL,
    customers BIGINT NOT NULL,
    min_value DOUBLE PRECISION,
    max_value DOUBLE PRECISION,
    previous_max_value DOUBLE PRECISION,
    moved_share DOUBLE PRECISION,
    note VARCHAR NOT NULL
);

-- Distance columns: what a customer still needs for the next tier, and to keep theirs.
ALTER TABLE staging.customer_tiers ADD COLUMN spend_to_next_tier DOUBLE PRECISION;
ALTER TABLE staging.customer_tiers ADD COLUMN orders_to_next_tier INTEGER;
ALTER TABLE staging.customer_tiers ADD COLUMN spend_to_keep_tier DOUBLE PRECISION;
ALTER TABLE marts.customer_tier_snapshot ADD COLUMN spend_to_next_tier DOUBLE PRECISION;
ALTER TABLE marts.customer_tier_snapshot ADD COLUMN orders_to_next_tier INTEGER;
ALTER TABLE marts.customer_tier_snapshot ADD COLUMN spend_to_keep_tier DOUBLE PRECISION;
