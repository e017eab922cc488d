-- Tier qualification state (issue 10): when the customer's held tier began, when it is
-- next reviewed (a downgrade waits for that date), and the qualifying spend and orders
-- over the rule set's window. Each period's state follows from the previous period's, so
-- reruns and backfills reproduce it.

ALTER TABLE staging.customer_tiers ADD COLUMN tier_since DATE;
ALTER TABLE staging.customer_tiers ADD COLUMN review_date DATE;
ALTER TABLE staging.customer_tiers ADD COLUMN qualifying_spend DOUBLE PRECISION;
ALTER TABLE staging.customer_tiers ADD COLUMN qualifying_orders INTEGER;

ALTER TABLE marts.customer_tier_snapshot ADD COLUMN tier_since DATE;
ALTER TABLE marts.customer_tier_snapshot ADD COLUMN review_date DATE;
ALTER TABLE marts.customer_tier_snapshot ADD COLUMN qualifying_spend DOUBLE PRECISION;
ALTER TABLE marts.customer_tier_snapshot ADD COLUMN qualifying_orders INTEGER;
