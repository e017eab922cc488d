-- Validation: the offending rows' keys and an actionable message on every result, the
-- quarantine of row-level failures, and the outcome of every validated batch.

-- marts.validation_results gains what a data engineer needs to act on a failure.
ALTER TABLE marts.validation_results ADD COLUMN sample_keys VARCHAR;
ALTER TABLE marts.validation_results ADD COLUMN message VARCHAR;

-- Rows that failed a row-level check, moved out of raw.<source_table> by the validate stage
-- (features never see them). One row per offending row and check; the row itself is kept as
-- JSON of its canonical columns. In ops, not marts: it holds source identifiers, not the
-- pseudonymous keys BI readers get. A re-extracted row replaces its earlier entries.
CREATE TABLE ops.quarantine (
    run_id VARCHAR NOT NULL,
    as_of_date DATE NOT NULL,
    source_table VARCHAR NOT NULL,
    row_key VARCHAR NOT NULL,
    expectation VARCHAR NOT NULL,
    column_name VARCHAR,
    reason VARCHAR NOT NULL,
    row_json VARCHAR NOT NULL,
    extracted_at TIMESTAMP NOT NULL,
    quarantined_at TIMESTAMP NOT NULL
);

-- One row per source table and validated extract batch: passed (the batch may be graded) or
-- failed (its raw rows were removed and the table's watermark rewound, so the next run
-- re-extracts them). extracted_through is the watermark the outcome left.
CREATE TABLE ops.validation_batches (
    run_id VARCHAR NOT NULL,
    as_of_date DATE NOT NULL,
    source_table VARCHAR NOT NULL,
    extracted_at TIMESTAMP NOT NULL,
    status VARCHAR NOT NULL,
    rows_checked BIGINT NOT NULL,
    rows_quarantined BIGINT NOT NULL,
    extracted_through TIMESTAMP,
    message VARCHAR,
    validated_at TIMESTAMP NOT NULL
);

-- Null keys and customer ids land in raw so that validation reports them (table, column, rows,
-- what to do) instead of the extraction failing on a NOT NULL constraint; a batch holding any
-- is rejected before anything is graded. Event times stay NOT NULL: extraction selects by them.
ALTER TABLE raw.customers ALTER COLUMN customer_id DROP NOT NULL;
ALTER TABLE raw.orders ALTER COLUMN order_id DROP NOT NULL;
ALTER TABLE raw.orders ALTER COLUMN customer_id DROP NOT NULL;
ALTER TABLE raw.tickets ALTER COLUMN ticket_id DROP NOT NULL;
ALTER TABLE raw.tickets ALTER COLUMN customer_id DROP NOT NULL;
ALTER TABLE raw.surveys ALTER COLUMN survey_id DROP NOT NULL;
ALTER TABLE raw.surveys ALTER COLUMN customer_id DROP NOT NULL;
