-- Fairness that means something (issue 23): each group's top-tier share and elimination rate get
-- a Wilson 95 % interval, the rate expected at equal spend (the rest's rate in each value band)
-- and a Cochran-Mantel-Haenszel z. top_tier_ratio and elimination_ratio are now the observed rate
-- over that expected rate, and disparity reads look closer / no clear difference / too few to tell.
-- Quarters reviewed before keep their rows (new columns empty) until they are reviewed again.
ALTER TABLE marts.review_fairness ADD COLUMN top_tier_low DOUBLE PRECISION;
ALTER TABLE marts.review_fairness ADD COLUMN top_tier_high DOUBLE PRECISION;
ALTER TABLE marts.review_fairness ADD COLUMN top_tier_expected DOUBLE PRECISION;
ALTER TABLE marts.review_fairness ADD COLUMN top_tier_z DOUBLE PRECISION;
ALTER TABLE marts.review_fairness ADD COLUMN elimination_low DOUBLE PRECISION;
ALTER TABLE marts.review_fairness ADD COLUMN elimination_high DOUBLE PRECISION;
ALTER TABLE marts.review_fairness ADD COLUMN elimination_expected DOUBLE PRECISION;
ALTER TABLE marts.review_fairness ADD COLUMN elimination_z DOUBLE PRECISION;
