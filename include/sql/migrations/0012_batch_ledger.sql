-- Trustworthy batches (issue 18): the lifecycle of every extract batch.

-- One row per extract batch: extracting -> extracted -> passed / rejected, or absorbed when
-- a later extraction took over the rows of a batch that never got a verdict (a killed or
-- failed run), so that they are validated with it instead of being graded unchecked.
-- Extraction watermarks (ops.extract_watermarks) move only when a batch passes.
CREATE TABLE ops.batches (
    batch_id TIMESTAMP NOT NULL,
    run_id VARCHAR NOT NULL,
    as_of_date DATE NOT NULL,
    status VARCHAR NOT NULL,
    absorbed_into TIMESTAMP,
    started_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    published_at TIMESTAMP,
    message VARCHAR
);

-- The window each batch read of each source table (window_start NULL: all history); written
-- in the same transaction as the table's rows, so a table is in the ledger iff it was loaded.
CREATE TABLE ops.batch_windows (
    batch_id TIMESTAMP NOT NULL,
    source_table VARCHAR NOT NULL,
    window_start TIMESTAMP,
    window_end TIMESTAMP NOT NULL,
    rows_extracted BIGINT NOT NULL
);

-- A warehouse built before the ledger: every batch in raw is registered, as passed where
-- ops.validation_batches says so and otherwise without a verdict (the next extraction then
-- takes its rows over and validates them).
INSERT INTO ops.batches (batch_id, run_id, as_of_date, status, started_at, updated_at, message)
SELECT s.extracted_at, COALESCE(v.run_id, 'before-ledger'), COALESCE(v.as_of_date, CAST(s.extracted_at AS DATE)),
       CASE WHEN v.extracted_at IS NULL THEN 'extracted' ELSE 'passed' END,
       s.extracted_at, s.extracted_at, 'registered by migration 0012'
FROM (
    SELECT extracted_at FROM raw.customers
    UNION SELECT extracted_at FROM raw.orders
    UNION SELECT extracted_at FROM raw.tickets
    UNION SELECT extracted_at FROM raw.surveys
    UNION SELECT extracted_at FROM raw.interactions
) AS s
LEFT JOIN (
    SELECT extracted_at, MIN(run_id) AS run_id, MIN(as_of_date) AS as_of_date
    FROM ops.validation_batches WHERE status = 'passed' GROUP BY extracted_at
) AS v ON v.extracted_at = s.extracted_at;

-- Null keys reach validation (which names them) instead of failing the load, as for the other
-- tables since migration 0003.
ALTER TABLE raw.interactions ALTER COLUMN interaction_id DROP NOT NULL;
ALTER TABLE raw.interactions ALTER COLUMN customer_id DROP NOT NULL;
