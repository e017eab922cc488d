-- The customer dimension is current state, rebuilt from raw on every publish.
DELETE FROM marts.dim_customer;

INSERT INTO marts.dim_customer (customer_key, region, industry, channel, first_seen_at)
SELECT k.customer_key, c.region, c.industry, c.channel, c.created_at
FROM raw.customers AS c
JOIN ops.customer_keys AS k ON k.customer_id = c.customer_id;
