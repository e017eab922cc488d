-- Tier history: one row per customer and stretch of periods in the same tier, rebuilt from
-- the tier snapshots on every publish (so a rerun or backfill of any period keeps it right).
CREATE TABLE marts.tier_history (
    customer_key VARCHAR NOT NULL,
    tier VARCHAR NOT NULL,
    tier_rank INTEGER NOT NULL,
    valid_from DATE NOT NULL,
    valid_to DATE,
    rule_version VARCHAR NOT NULL
);
