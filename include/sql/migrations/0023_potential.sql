-- Customer potential (issue 23): each customer's expected value over the next 365 days from a
-- BG/NBD + Gamma-Gamma fit (grading.potential), published with the features and judged on a
-- holdout year against "next year = last year's spend". 0022 is left to the order lines.
-- Plain DDL: the same on DuckDB and PostgreSQL.

-- The scores of a run, by source id, read by the features (load_features) and the publish.
-- Customers without a completed order have no row.
CREATE TABLE staging.customer_potential (
    as_of_date DATE NOT NULL,
    customer_id VARCHAR NOT NULL,
    potential_365d DOUBLE PRECISION NOT NULL,
    expected_orders_365d DOUBLE PRECISION NOT NULL,
    p_alive DOUBLE PRECISION
);

-- One row per run: the model that scored (or the fallback), its parameters, and its holdout
-- error next to the naive baseline's.
CREATE TABLE audit.potential_runs (
    run_id VARCHAR NOT NULL,
    as_of_date DATE NOT NULL,
    model VARCHAR NOT NULL,
    scorer VARCHAR NOT NULL,
    reason VARCHAR NOT NULL,
    params VARCHAR,
    customers BIGINT NOT NULL,
    fit_customers BIGINT,
    holdout_start DATE NOT NULL,
    holdout_customers BIGINT,
    holdout_mae DOUBLE PRECISION,
    holdout_rmse DOUBLE PRECISION,
    holdout_relative_error DOUBLE PRECISION,
    baseline_mae DOUBLE PRECISION,
    baseline_rmse DOUBLE PRECISION,
    baseline_relative_error DOUBLE PRECISION,
    trained_at TIMESTAMP NOT NULL
);

ALTER TABLE marts.customer_features_snapshot ADD COLUMN potential_365d DOUBLE PRECISION;
ALTER TABLE marts.customer_features_snapshot ADD COLUMN p_alive DOUBLE PRECISION;

-- PostgreSQL expands f.* when a view is made: made again, the view gains the two columns
-- (appended, so its dependants keep working). DuckDB would have shown them anyway.
CREATE OR REPLACE VIEW marts.current_customer_features AS
SELECT f.*
FROM marts.customer_features_snapshot AS f
WHERE f.as_of_date = (SELECT MAX(as_of_date) FROM marts.customer_tier_snapshot);
