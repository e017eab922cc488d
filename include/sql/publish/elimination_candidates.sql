-- The period's elimination candidates (staging flag 'elimination'), by pseudonymous key.

DELETE FROM marts.elimination_candidates WHERE as_of_date = :as_of;

INSERT INTO marts.elimination_candidates (
    as_of_date, customer_key, rule_name, reason, action, rule_version, severity, rules_sha256, periods_met,
    control_group
)
SELECT
    c.as_of_date, k.customer_key, c.rule_name, c.reason, c.action, c.rule_version, c.severity, c.rules_sha256,
    c.periods_met, c.control_group
FROM staging.customer_flags AS c
JOIN ops.customer_keys AS k ON k.customer_id = c.customer_id
WHERE c.as_of_date = :as_of AND c.flag = 'elimination';
