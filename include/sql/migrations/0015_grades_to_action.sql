-- From grades to action (issue 21): service entitlements, recorded exemptions, a review
-- workflow that closes, the CRM export ledger, the operators' re-identifying views and a
-- current_* view for every list.

-- Customers a rule met but an exemption kept off the list: who and why.
ALTER TABLE staging.customer_flags ADD COLUMN exemption VARCHAR;

CREATE TABLE marts.candidate_exemptions (
    as_of_date DATE NOT NULL,
    customer_key VARCHAR NOT NULL,
    list VARCHAR NOT NULL,
    rule_name VARCHAR NOT NULL,
    exemption VARCHAR NOT NULL,
    reason VARCHAR NOT NULL,
    rule_version VARCHAR NOT NULL,
    rules_sha256 VARCHAR
);

-- What each tier is entitled to, and what each list action brings, per published period
-- (from the run's pinned include/rules/service_levels.yaml).
CREATE TABLE marts.service_entitlements (
    as_of_date DATE NOT NULL,
    tier VARCHAR NOT NULL,
    tier_rank INTEGER NOT NULL,
    service_level VARCHAR NOT NULL,
    label VARCHAR NOT NULL,
    response_time_hours DOUBLE PRECISION NOT NULL,
    service_hours VARCHAR NOT NULL,
    dedicated_account_manager BOOLEAN NOT NULL,
    support_channels VARCHAR NOT NULL,
    visit_frequency VARCHAR NOT NULL,
    review_frequency VARCHAR NOT NULL,
    discount_policy VARCHAR NOT NULL,
    credit_policy VARCHAR NOT NULL,
    benefits VARCHAR NOT NULL,
    rule_version VARCHAR NOT NULL,
    rules_sha256 VARCHAR NOT NULL
);

CREATE TABLE marts.action_treatments (
    as_of_date DATE NOT NULL,
    action VARCHAR NOT NULL,
    owner VARCHAR NOT NULL,
    contact_within_days INTEGER NOT NULL,
    offer VARCHAR NOT NULL,
    rule_version VARCHAR NOT NULL,
    rules_sha256 VARCHAR NOT NULL
);

-- The review status of every elimination candidate becomes a table, restated by publish and
-- by every decision: decisions carry forward until the facts change materially, proposals
-- expire, and a customer has one open proposal at a time (older undecided rows are superseded).
DROP VIEW marts.elimination_status;

CREATE TABLE marts.elimination_status (
    as_of_date DATE NOT NULL,
    customer_key VARCHAR NOT NULL,
    rule_name VARCHAR NOT NULL,
    action VARCHAR NOT NULL,
    severity VARCHAR,
    control_group BOOLEAN,
    review_status VARCHAR NOT NULL,
    reviewer VARCHAR,
    decided_at TIMESTAMP,
    decided_as_of DATE,
    proposed_since DATE,
    expires_on DATE,
    status_reason VARCHAR NOT NULL
);

-- Every CRM export: what went where, and whether it arrived.
CREATE TABLE ops.exports (
    export_id VARCHAR NOT NULL,
    target VARCHAR NOT NULL,
    as_of_date DATE NOT NULL,
    baseline_as_of DATE,
    baseline_exported_at TIMESTAMP,
    rows_exported BIGINT NOT NULL,
    checksum VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    location VARCHAR,
    message VARCHAR,
    run_id VARCHAR NOT NULL,
    started_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP NOT NULL
);

-- The latest published period of every list, and the current tier with every snapshot column.
DROP VIEW marts.current_customer_tier;

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

-- Nurture candidates: the elimination candidates whose action the rule file names as one to
-- nurture (its control_actions - the rows eligible for the control draw).
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

-- What an operator may re-identify: the published lists and tiers of the latest period joined
-- to the source's customer ids. Outside marts, so the BI role (marts only) cannot read it;
-- the crm_operator role (python -m grading crm-role) can.
CREATE SCHEMA crm;

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
