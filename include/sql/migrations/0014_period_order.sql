-- The order periods were graded in, and which published periods are stale (issue 18).

-- When each period's tiers and flags were graded, a digest of what they wrote, and the
-- earlier period they carried on from with that period's digest at the time: a period whose
-- predecessor's state changed since (or that has a new predecessor) is stale.
CREATE TABLE ops.period_grades (
    as_of_date DATE NOT NULL,
    stage VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL,
    graded_at TIMESTAMP NOT NULL,
    state_digest VARCHAR,
    previous_as_of DATE,
    previous_digest VARCHAR
);

-- Published periods and whether each still follows from the periods before it.
CREATE TABLE marts.published_periods (
    as_of_date DATE NOT NULL,
    run_id VARCHAR NOT NULL,
    published_at TIMESTAMP NOT NULL,
    graded_after DATE,
    stale BOOLEAN NOT NULL,
    stale_reason VARCHAR
);

-- A warehouse built before: every graded period is registered as graded in date order, each
-- after the one before it, and every published period as published and not stale.
INSERT INTO ops.period_grades (as_of_date, stage, run_id, graded_at, previous_as_of)
SELECT g.as_of_date, s.stage, 'before-ledger', TIMESTAMP '2000-01-01 00:00:00', g.previous_as_of
FROM (
    SELECT as_of_date, LAG(as_of_date) OVER (ORDER BY as_of_date) AS previous_as_of
    FROM (SELECT DISTINCT as_of_date FROM staging.customer_tiers) AS d
) AS g
CROSS JOIN (SELECT 'tiers' AS stage UNION ALL SELECT 'flags') AS s;

INSERT INTO marts.published_periods (as_of_date, run_id, published_at, graded_after, stale, stale_reason)
SELECT as_of_date, 'before-ledger', TIMESTAMP '2000-01-01 00:00:00',
       LAG(as_of_date) OVER (ORDER BY as_of_date), FALSE, NULL
FROM (SELECT DISTINCT as_of_date FROM marts.customer_tier_snapshot) AS p;
