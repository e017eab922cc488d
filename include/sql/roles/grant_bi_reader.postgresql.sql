-- Read-only access for BI tools: SELECT on the published schema and nothing else.
-- {role} and {database} are identifiers, quoted by grading.access after checking them;
-- no value is ever formatted into this file. Default privileges cover tables that later
-- migrations add to marts.
REVOKE ALL ON SCHEMA raw, staging, ops FROM {role};
GRANT CONNECT ON DATABASE {database} TO {role};
GRANT USAGE ON SCHEMA marts TO {role};
GRANT SELECT ON ALL TABLES IN SCHEMA marts TO {role};
ALTER DEFAULT PRIVILEGES IN SCHEMA marts GRANT SELECT ON TABLES TO {role};
