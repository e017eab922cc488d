-- Read-only access for BI tools: SELECT on the published schemas (marts, and audit - the run
-- records) and nothing else.
-- {role} and {database} are identifiers, quoted by grading.access after checking them;
-- no value is ever formatted into this file. Default privileges cover tables that later
-- migrations add to marts. PostgreSQL lets PUBLIC (every role) connect to a database and
-- create temporary tables in it; the warehouse keeps both for its owner and gives the BI
-- role CONNECT only.
REVOKE ALL ON SCHEMA raw, staging, ops FROM {role};
REVOKE CONNECT, TEMPORARY ON DATABASE {database} FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE {database} TO CURRENT_USER;
REVOKE TEMPORARY ON DATABASE {database} FROM {role};
GRANT CONNECT ON DATABASE {database} TO {role};
GRANT USAGE ON SCHEMA marts, audit TO {role};
GRANT SELECT ON ALL TABLES IN SCHEMA marts, audit TO {role};
ALTER DEFAULT PRIVILEGES IN SCHEMA marts, audit GRANT SELECT ON TABLES TO {role};
