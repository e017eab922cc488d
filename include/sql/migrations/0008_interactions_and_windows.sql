-- Interactions (calls, visits, e-mails with a customer) join the raw layer, and the
-- features gain the rule set's qualification window (issue 5): orders and value over a
-- configurable window, which may also be a calendar period or the customer's anniversary
-- year, next to the fixed 365-day figures.

CREATE TABLE raw.interactions (
    interaction_id VARCHAR NOT NULL,
    customer_id VARCHAR NOT NULL,
    ts TIMESTAMP NOT NULL,
    kind VARCHAR,
    extracted_at TIMESTAMP NOT NULL
);

ALTER TABLE staging.customer_features ADD COLUMN interactions_365d INTEGER;
ALTER TABLE staging.customer_features ADD COLUMN window_start DATE;
ALTER TABLE staging.customer_features ADD COLUMN orders_window INTEGER;
ALTER TABLE staging.customer_features ADD COLUMN monetary_window DOUBLE PRECISION;

ALTER TABLE marts.customer_features_snapshot ADD COLUMN interactions_365d INTEGER;
ALTER TABLE marts.customer_features_snapshot ADD COLUMN window_start DATE;
ALTER TABLE marts.customer_features_snapshot ADD COLUMN orders_window INTEGER;
ALTER TABLE marts.customer_features_snapshot ADD COLUMN monetary_window DOUBLE PRECISION;
