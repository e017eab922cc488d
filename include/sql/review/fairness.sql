-- Fairness: for each region and industry at the snapshot, the share of its customers in the top
-- tier and on the elimination list, with a Wilson 95 % interval, against what the group would
-- have at equal spend. Customers are put in bands of 365-day value, each band a factor value_step
-- wide (1.1: spend within 10 %), and the group is compared with the rest of the customers band by band:
--   expected: the group's customers in each band at the rest's rate in that band, summed.
--   z: Cochran-Mantel-Haenszel, (observed - expected under one rate per band), summed over the
--      bands (the group's 2x2 table against the rest in each), less 1/2 (continuity correction),
--      over its standard deviation; below 0 the group has fewer than at equal spend.
-- A group of fewer than min_customers is "too few to tell"; otherwise "look closer" when either
-- measure differs at 95 % (|z| >= 1.96), else "no clear difference".
WITH graded AS (
    SELECT
        f.customer_key,
        COALESCE(f.region, '(none)') AS region,
        COALESCE(f.industry, '(none)') AS industry,
        CAST(f.monetary_365d AS DOUBLE PRECISION) AS value,
        CASE WHEN t.tier_rank = (SELECT MAX(tier_rank) FROM marts.customer_tier_snapshot
                                 WHERE as_of_date = CAST(:snapshot AS DATE)) THEN 1 ELSE 0 END AS top_tier,
        CASE WHEN e.customer_key IS NULL THEN 0 ELSE 1 END AS eliminated
    FROM marts.customer_features_snapshot AS f
    JOIN marts.customer_tier_snapshot AS t ON t.as_of_date = f.as_of_date AND t.customer_key = f.customer_key
    LEFT JOIN marts.elimination_candidates AS e ON e.as_of_date = f.as_of_date AND e.customer_key = f.customer_key
    WHERE f.as_of_date = CAST(:snapshot AS DATE)
),

banded AS (
    SELECT region, industry, top_tier, eliminated,
           CAST(FLOOR(LN(1 + GREATEST(value, 0)) / LN(CAST(:value_step AS DOUBLE PRECISION))) AS INTEGER) AS band
    FROM graded
),

bands AS (
    SELECT band, COUNT(*) AS n_all, SUM(top_tier) AS top_all, SUM(eliminated) AS elim_all
    FROM banded GROUP BY band
),

members AS (
    SELECT 'region' AS dimension, region AS group_value, band, top_tier, eliminated FROM banded
    UNION ALL
    SELECT 'industry', industry, band, top_tier, eliminated FROM banded
),

cells AS (
    SELECT m.dimension, m.group_value, m.band,
           CAST(COUNT(*) AS DOUBLE PRECISION) AS n,
           CAST(SUM(m.top_tier) AS DOUBLE PRECISION) AS top_n,
           CAST(SUM(m.eliminated) AS DOUBLE PRECISION) AS elim_n
    FROM members AS m
    GROUP BY m.dimension, m.group_value, m.band
),

-- per band: the count expected at the rest's rate (the group's own count where it is the whole
-- band: nothing to compare with), the CMH expectation under one rate and its variance
terms AS (
    SELECT c.dimension, c.group_value, c.band, c.n, c.top_n, c.elim_n,
           CASE WHEN b.n_all > c.n THEN c.n * (b.top_all - c.top_n) / (b.n_all - c.n) ELSE c.top_n END AS top_rest,
           CASE WHEN b.n_all > c.n THEN c.n * (b.elim_all - c.elim_n) / (b.n_all - c.n) ELSE c.elim_n END AS elim_rest,
           c.n * b.top_all / b.n_all AS top_e,
           c.n * b.elim_all / b.n_all AS elim_e,
           CASE WHEN b.n_all > 1 THEN c.n * (b.n_all - c.n) * b.top_all * (b.n_all - b.top_all)
                                     / (CAST(b.n_all AS DOUBLE PRECISION) * b.n_all * (b.n_all - 1)) ELSE 0 END AS top_v,
           CASE WHEN b.n_all > 1 THEN c.n * (b.n_all - c.n) * b.elim_all * (b.n_all - b.elim_all)
                                     / (CAST(b.n_all AS DOUBLE PRECISION) * b.n_all * (b.n_all - 1)) ELSE 0 END AS elim_v
    FROM cells AS c
    JOIN bands AS b ON b.band = c.band
),

-- fractions summed band by band in one order: the same quarter reviewed again gives the same bits
groups AS (
    SELECT dimension, group_value,
           SUM(n) AS n, SUM(top_n) AS top_n, SUM(elim_n) AS elim_n,
           SUM(top_rest ORDER BY band) AS top_rest, SUM(elim_rest ORDER BY band) AS elim_rest,
           SUM(top_n) - SUM(top_e ORDER BY band) AS top_d, SUM(top_v ORDER BY band) AS top_v,
           SUM(elim_n) - SUM(elim_e ORDER BY band) AS elim_d, SUM(elim_v ORDER BY band) AS elim_v
    FROM terms
    GROUP BY dimension, group_value
),

-- the Mantel-Haenszel z with its continuity correction (|d| - 1/2), signed: below 0 fewer than expected
tests AS (
    SELECT dimension, group_value, n, top_n, elim_n, top_rest, elim_rest,
           CASE WHEN top_v > 0 THEN
               CASE WHEN ABS(top_d) <= 0.5 THEN 0.0 ELSE SIGN(top_d) * (ABS(top_d) - 0.5) / SQRT(top_v) END
           END AS top_z,
           CASE WHEN elim_v > 0 THEN
               CASE WHEN ABS(elim_d) <= 0.5 THEN 0.0 ELSE SIGN(elim_d) * (ABS(elim_d) - 0.5) / SQRT(elim_v) END
           END AS elim_z
    FROM groups
),

-- Wilson score interval at 95 % (z = 1.96, z^2 = 3.8416)
rates AS (
    SELECT dimension, group_value, n, top_z, elim_z,
           top_n / n AS top_p, elim_n / n AS elim_p,
           top_rest / n AS top_expected, elim_rest / n AS elim_expected,
           1 + 3.8416 / n AS shrink
    FROM tests
)

SELECT
    CAST(:quarter AS VARCHAR) AS quarter,
    dimension,
    group_value,
    CAST(n AS BIGINT) AS customers,
    top_p AS top_tier_share,
    GREATEST(0.0, (top_p + 1.9208 / n - 1.96 * SQRT(top_p * (1 - top_p) / n + 0.9604 / (n * n))) / shrink)
        AS top_tier_low,
    LEAST(1.0, (top_p + 1.9208 / n + 1.96 * SQRT(top_p * (1 - top_p) / n + 0.9604 / (n * n))) / shrink)
        AS top_tier_high,
    top_expected AS top_tier_expected,
    top_p / NULLIF(top_expected, 0) AS top_tier_ratio,
    top_z AS top_tier_z,
    elim_p AS elimination_rate,
    GREATEST(0.0, (elim_p + 1.9208 / n - 1.96 * SQRT(elim_p * (1 - elim_p) / n + 0.9604 / (n * n))) / shrink)
        AS elimination_low,
    LEAST(1.0, (elim_p + 1.9208 / n + 1.96 * SQRT(elim_p * (1 - elim_p) / n + 0.9604 / (n * n))) / shrink)
        AS elimination_high,
    elim_expected AS elimination_expected,
    elim_p / NULLIF(elim_expected, 0) AS elimination_ratio,
    elim_z AS elimination_z,
    CASE
        WHEN n < CAST(:min_customers AS INTEGER) THEN 'too few to tell'
        WHEN ABS(top_z) >= 1.96 OR ABS(elim_z) >= 1.96 THEN 'look closer'
        ELSE 'no clear difference'
    END AS disparity
FROM rates
ORDER BY dimension, group_value
