-- The quarterly review's uplift gets its power: the minimum detectable effect next to every
-- uplift, and the control group a list would need to detect the target effect.
ALTER TABLE marts.review_uplift ADD COLUMN min_detectable_effect DOUBLE PRECISION;
ALTER TABLE marts.review_uplift ADD COLUMN control_needed BIGINT;
ALTER TABLE marts.review_uplift ADD COLUMN sizing VARCHAR;
