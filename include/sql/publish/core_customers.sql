-- The period's core customers (staging flag 'core'), by pseudonymous key.

DELETE FROM marts.core_customers WHERE as_of_date = :as_of;

INSERT INTO marts.core_customers (as_of_date, customer_key, rule_name, reason, action, rule_version, rules_sha256)
SELECT c.as_of_date, k.customer_key, c.rule_name, c.reason, c.action, c.rule_version, c.rules_sha256
FROM staging.customer_flags AS c
JOIN ops.customer_keys AS k ON k.customer_id = c.customer_id
WHERE c.as_of_date = :as_of AND c.flag = 'core';
