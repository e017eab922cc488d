-- The CRM operators' role: the BI role's access plus the crm schema, whose views join the
-- published lists and tiers to the source's customer ids (re-identification, on purpose).
-- {role} and {database} are identifiers, quoted by grading.access after checking them; no
-- value is ever formatted into this file. The views run with their owner's rights, so the
-- role reads ops.customer_keys only through them, never the raw, staging or ops schemas.
REVOKE ALL ON SCHEMA raw, staging, ops FROM {role};
REVOKE CONNECT, TEMPORARY ON DATABASE {database} FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE {database} TO CURRENT_USER;
REVOKE TEMPORARY ON DATABASE {database} FROM {role};
GRANT CONNECT ON DATABASE {database} TO {role};
GRANT USAGE ON SCHEMA marts, audit, crm TO {role};
GRANT SELECT ON ALL TABLES IN SCHEMA marts, audit, crm TO {role};
ALTER DEFAULT PRIVILEGES IN SCHEMA marts, audit, crm GRANT SELECT ON TABLES TO {role};
