-- Tier history rebuilt from every published snapshot: a row starts wherever a customer's
-- tier differs from their previous snapshot; valid_to is the as-of date of the next change
-- (exclusive), NULL for the open row. Run by grading.publish when a period earlier than the
-- latest published one is (re)published; otherwise tier_history_append.sql gives the same
-- rows while reading only the period's snapshot. Its cost grows with the published history.
DELETE FROM marts.tier_history;

INSERT INTO marts.tier_history (customer_key, tier, tier_rank, valid_from, valid_to, rule_version)
WITH ordered AS (
    SELECT
        customer_key, as_of_date, tier, tier_rank, rule_version,
        LAG(tier) OVER (PARTITION BY customer_key ORDER BY as_of_date) AS previous_tier
    FROM marts.customer_tier_snapshot
),

changes AS (
    SELECT customer_key, as_of_date, tier, tier_rank, rule_version
    FROM ordered
    WHERE previous_tier IS NULL OR previous_tier <> tier
)

SELECT
    customer_key,
    tier,
    tier_rank,
    as_of_date AS valid_from,
    LEAD(as_of_date) OVER (PARTITION BY customer_key ORDER BY as_of_date) AS valid_to,
    rule_version
FROM changes;
