-- Order lines and what each tier buys together (issue 23). raw.order_lines is an optional
-- source table (grading.contract): a source without one loads no rows. Like the other raw
-- tables since migrations 0003 and 0012, only the event time and the batch are NOT NULL, so
-- rows without a key reach validation, which names them.
-- PostgreSQL's variant: the same tables, with marts.tier_basket_rules' primary key, as 0017 declares
-- every published table's key on this dialect (DuckDB keeps none; marts.yml declares it).
CREATE TABLE raw.order_lines (
    line_id VARCHAR,
    order_id VARCHAR,
    customer_id VARCHAR,
    order_ts TIMESTAMP NOT NULL,
    product_id VARCHAR,
    category VARCHAR,
    quantity INTEGER,
    amount NUMERIC(18, 2),
    extracted_at TIMESTAMP NOT NULL
);

-- The quarterly basket analysis (include/sql/review/tier_basket_rules.sql): for each tier at
-- the quarter's close, pairs of items bought in the same completed order of the quarter, as
-- association rules antecedent -> consequent with their support, confidence and lift.
CREATE TABLE marts.tier_basket_rules (
    quarter VARCHAR NOT NULL,
    tier VARCHAR NOT NULL,
    item_level VARCHAR NOT NULL,
    antecedent VARCHAR NOT NULL,
    consequent VARCHAR NOT NULL,
    baskets BIGINT NOT NULL,
    pair_baskets BIGINT NOT NULL,
    support DOUBLE PRECISION NOT NULL,
    confidence DOUBLE PRECISION NOT NULL,
    lift DOUBLE PRECISION NOT NULL,
    antecedent_support DOUBLE PRECISION NOT NULL,
    consequent_support DOUBLE PRECISION NOT NULL,
    min_support DOUBLE PRECISION NOT NULL,
    rule_rank INTEGER NOT NULL,
    CONSTRAINT tier_basket_rules_pkey PRIMARY KEY (quarter, tier, antecedent, consequent)
);
