-- The period's tier of every graded customer, by pseudonymous key.

DELETE FROM marts.customer_tier_snapshot WHERE as_of_date = :as_of;

INSERT INTO marts.customer_tier_snapshot (
    as_of_date, customer_key, tier, tier_rank, tier_rule, tier_reason, rule_version, assigned_tier, periods_below,
    rules_sha256, spend_to_next_tier, orders_to_next_tier, spend_to_keep_tier, tier_since, review_date,
    qualifying_spend, qualifying_orders
)
SELECT
    t.as_of_date, k.customer_key, t.tier, t.tier_rank, t.tier_rule, t.tier_reason, t.rule_version,
    t.assigned_tier, t.periods_below, t.rules_sha256, t.spend_to_next_tier, t.orders_to_next_tier,
    t.spend_to_keep_tier, t.tier_since, t.review_date, t.qualifying_spend, t.qualifying_orders
FROM staging.customer_tiers AS t
JOIN ops.customer_keys AS k ON k.customer_id = t.customer_id
WHERE t.as_of_date = :as_of;
