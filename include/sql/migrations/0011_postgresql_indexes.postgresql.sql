-- PostgreSQL's indexes: every table that accumulates periods or batches is read and replaced
-- one as-of date (or one extract batch) at a time. Without an index each of those reads and
-- deletes scans the whole history: a year of daily runs at a million customers is 365 million
-- snapshot rows behind every publish. (Earlier versions made the raw indexes in the
-- validation stage; IF NOT EXISTS keeps those.)

-- raw: the gate finds a batch by its stamp and earlier batches' keys by key
CREATE INDEX IF NOT EXISTS customers_extracted_at_idx ON raw.customers (extracted_at);
CREATE INDEX IF NOT EXISTS customers_customer_id_idx ON raw.customers (customer_id);
CREATE INDEX IF NOT EXISTS orders_extracted_at_idx ON raw.orders (extracted_at);
CREATE INDEX IF NOT EXISTS orders_order_id_idx ON raw.orders (order_id);
CREATE INDEX IF NOT EXISTS tickets_extracted_at_idx ON raw.tickets (extracted_at);
CREATE INDEX IF NOT EXISTS tickets_ticket_id_idx ON raw.tickets (ticket_id);
CREATE INDEX IF NOT EXISTS surveys_extracted_at_idx ON raw.surveys (extracted_at);
CREATE INDEX IF NOT EXISTS surveys_survey_id_idx ON raw.surveys (survey_id);
CREATE INDEX IF NOT EXISTS interactions_extracted_at_idx ON raw.interactions (extracted_at);
CREATE INDEX IF NOT EXISTS interactions_interaction_id_idx ON raw.interactions (interaction_id);

-- staging: each stage replaces and reads its as-of date
CREATE INDEX IF NOT EXISTS customer_features_as_of_date_idx ON staging.customer_features (as_of_date);
CREATE INDEX IF NOT EXISTS churn_scores_as_of_date_idx ON staging.churn_scores (as_of_date);
CREATE INDEX IF NOT EXISTS customer_tiers_as_of_date_idx ON staging.customer_tiers (as_of_date);
CREATE INDEX IF NOT EXISTS customer_flags_as_of_date_idx ON staging.customer_flags (as_of_date);

-- marts: publish replaces one as-of date; BI tools read the latest one
CREATE INDEX IF NOT EXISTS customer_features_snapshot_as_of_date_idx ON marts.customer_features_snapshot (as_of_date);
CREATE INDEX IF NOT EXISTS customer_tier_snapshot_as_of_date_idx ON marts.customer_tier_snapshot (as_of_date);
CREATE INDEX IF NOT EXISTS elimination_candidates_as_of_date_idx ON marts.elimination_candidates (as_of_date);
CREATE INDEX IF NOT EXISTS winback_candidates_as_of_date_idx ON marts.winback_candidates (as_of_date);
CREATE INDEX IF NOT EXISTS core_customers_as_of_date_idx ON marts.core_customers (as_of_date);
CREATE INDEX IF NOT EXISTS tier_history_valid_to_idx ON marts.tier_history (valid_to);
