-- The period's customers whom a rule met but an exemption kept off a list (staging flags
-- '<list>_exempt'): who was exempted, from which list and why, by pseudonymous key.

DELETE FROM marts.candidate_exemptions WHERE as_of_date = :as_of;

INSERT INTO marts.candidate_exemptions (
    as_of_date, customer_key, list, rule_name, exemption, reason, rule_version, rules_sha256
)
SELECT
    c.as_of_date, k.customer_key, REPLACE(c.flag, '_exempt', ''), c.rule_name, c.exemption, c.reason,
    c.rule_version, c.rules_sha256
FROM staging.customer_flags AS c
JOIN ops.customer_keys AS k ON k.customer_id = c.customer_id
WHERE c.as_of_date = :as_of AND c.exemption IS NOT NULL;
