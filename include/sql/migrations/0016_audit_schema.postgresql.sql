-- Run records move out of marts into their own schema, audit (issue 21); PostgreSQL moves the
-- tables with their indexes and comments. See 0016_audit_schema.sql.
CREATE SCHEMA audit;
ALTER TABLE marts.run_audit SET SCHEMA audit;
ALTER TABLE marts.validation_results SET SCHEMA audit;
ALTER TABLE marts.model_runs SET SCHEMA audit;
ALTER TABLE marts.run_rule_files SET SCHEMA audit;
