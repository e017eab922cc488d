-- Rule files pinned per run (issue 18).

-- The rule files a run started with, content included: every stage of the run (and every
-- retry of a task) grades with exactly these bytes, whatever is deployed meanwhile.
CREATE TABLE ops.run_rule_pins (
    run_id VARCHAR NOT NULL,
    role VARCHAR NOT NULL,
    file_path VARCHAR NOT NULL,
    content_sha256 VARCHAR NOT NULL,
    content VARCHAR NOT NULL,
    pinned_at TIMESTAMP NOT NULL
);
