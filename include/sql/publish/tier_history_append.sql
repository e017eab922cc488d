-- Tier history carried forward by the latest period (:as_of is on or after every published
-- as-of date): the same rows tier_history_rebuild.sql would give, from this period's
-- snapshot and the open rows only, so a daily publish does not reread a year of snapshots.
-- Run by grading.publish after the period's snapshot was replaced, in the same transaction.

-- A rerun of the latest period: take back what its earlier publish added and closed.
DELETE FROM marts.tier_history WHERE valid_from = :as_of;

UPDATE marts.tier_history SET valid_to = NULL WHERE valid_to = :as_of;

-- Close the open stretch of every customer whose tier changed in this period ...
UPDATE marts.tier_history AS h
SET valid_to = :as_of
FROM marts.customer_tier_snapshot AS t
WHERE
    t.as_of_date = :as_of
    AND t.customer_key = h.customer_key
    AND h.valid_to IS NULL
    AND h.tier <> t.tier;

-- ... and open one for them and for every customer graded for the first time.
INSERT INTO marts.tier_history (customer_key, tier, tier_rank, valid_from, valid_to, rule_version)
SELECT t.customer_key, t.tier, t.tier_rank, t.as_of_date, NULL, t.rule_version
FROM marts.customer_tier_snapshot AS t
LEFT JOIN marts.tier_history AS h ON h.customer_key = t.customer_key AND h.valid_to IS NULL
WHERE t.as_of_date = :as_of AND h.customer_key IS NULL;
