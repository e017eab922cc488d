-- A pseudonymous key for every extracted customer that has none (grading.keys.pseudonym):
-- HMAC-SHA256 of the UTF-8 id under the pseudonym key, first 32 hex digits, computed as
-- sha256(outer || sha256(inner || id)) from the key's two padded forms (:inner, :outer, bound;
-- see grading.keys.hmac_pads) with PostgreSQL's built-in sha256 (no pgcrypto needed).
INSERT INTO ops.customer_keys (customer_id, customer_key)
SELECT customer_id,
       left(encode(sha256(CAST(:outer AS bytea) || sha256(CAST(:inner AS bytea) || convert_to(customer_id, 'UTF8'))),
                   'hex'), 32)
FROM (
    SELECT DISTINCT c.customer_id
    FROM raw.customers AS c
    LEFT JOIN ops.customer_keys AS k ON k.customer_id = c.customer_id
    WHERE k.customer_id IS NULL AND c.customer_id IS NOT NULL
) AS missing;
