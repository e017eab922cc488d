-- The annual review (issue 23): the quarterly evaluations of a calendar year and of the year before,
-- with the year-end snapshots, as one long table - one row per year, section, metric and tier - so a BI
-- tool filters on section and metric and reads value beside previous_year_value. Values are counts,
-- money, shares or scores (unit says which); all DOUBLE PRECISION, as one column holds them all.
-- A year's rows are replaced when it is built again (grading.review.annual).
-- PostgreSQL's variant: the same table with its primary key, as 0017 declares every published
-- table's key on this dialect (DuckDB keeps none; marts.yml declares it and the tests check it).
CREATE TABLE marts.review_annual (
    year INTEGER NOT NULL,
    section VARCHAR NOT NULL,
    metric VARCHAR NOT NULL,
    tier VARCHAR NOT NULL,
    tier_rank INTEGER NOT NULL,
    unit VARCHAR NOT NULL,
    value DOUBLE PRECISION,
    previous_year_value DOUBLE PRECISION,
    change DOUBLE PRECISION,
    relative_change DOUBLE PRECISION,
    quarters_reviewed VARCHAR NOT NULL,
    previous_quarters_reviewed VARCHAR NOT NULL,
    complete BOOLEAN NOT NULL,
    note VARCHAR NOT NULL,
    CONSTRAINT review_annual_pkey PRIMARY KEY (year, section, metric, tier)
);
