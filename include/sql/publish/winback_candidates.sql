-- The period's win-back candidates (staging flag 'win_back'), by pseudonymous key.

DELETE FROM marts.winback_candidates WHERE as_of_date = :as_of;

INSERT INTO marts.winback_candidates (
    as_of_date, customer_key, rule_name, reason, action, previous_tier, rule_version,
    churn_reason, priority, value_before, last_order_at, rules_sha256, control_group
)
SELECT
    c.as_of_date, k.customer_key, c.rule_name, c.reason, c.action, c.previous_tier, c.rule_version,
    c.churn_reason, c.priority, c.value_before, c.last_order_at, c.rules_sha256, c.control_group
FROM staging.customer_flags AS c
JOIN ops.customer_keys AS k ON k.customer_id = c.customer_id
WHERE c.as_of_date = :as_of AND c.flag = 'win_back';
