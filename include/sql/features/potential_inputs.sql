-- Per-customer inputs of the customer-potential model (grading.potential) at the cutoff :as_of
-- (a date; orders before its 00:00 UTC count). Completed orders only, as in the features; a
-- purchase is a day with a completed order (several orders on one day are one purchase of
-- their summed amount), as BG/NBD counts transactions. One row per customer with a purchase
-- before :as_of:
--   frequency     repeat purchases (purchase days - 1)
--   recency       days from the first to the last purchase day (t_x)
--   age           days from the first purchase day to :as_of (T)
--   repeat_value  mean amount of the repeat purchase days; empty without one
--   spend_year    amount of the purchase days in [:year_start, :as_of) - the naive baseline
--   orders_year   purchase days in [:year_start, :as_of)
--   spend_after   amount of the purchase days in [:as_of, :until) - the holdout's outcome
--                 (0 when :until = :as_of, as when scoring)
-- Plain date arithmetic (date - date is a number of days) and bound parameters: the same on
-- DuckDB and PostgreSQL. Money leaves as DOUBLE PRECISION: the model works in floats.
WITH days AS (
    SELECT customer_id, CAST(order_ts AS DATE) AS day, SUM(amount) AS amount
    FROM raw.orders
    WHERE status = 'completed' AND order_ts < CAST(:until AS TIMESTAMP)
    GROUP BY customer_id, CAST(order_ts AS DATE)
),

before AS (
    SELECT customer_id, day, amount, MIN(day) OVER (PARTITION BY customer_id) AS first_purchase
    FROM days
    WHERE day < CAST(:as_of AS DATE)
),

history AS (
    SELECT
        customer_id,
        MIN(day) AS first_day,
        MAX(day) AS last_day,
        COUNT(*) AS purchase_days,
        SUM(CASE WHEN day > first_purchase THEN amount END) AS repeat_amount,
        SUM(CASE WHEN day >= CAST(:year_start AS DATE) THEN amount ELSE 0 END) AS spend_year,
        COUNT(CASE WHEN day >= CAST(:year_start AS DATE) THEN 1 END) AS orders_year
    FROM before
    GROUP BY customer_id
),

after AS (
    SELECT customer_id, SUM(amount) AS spend_after
    FROM days
    WHERE day >= CAST(:as_of AS DATE)
    GROUP BY customer_id
)

SELECT
    h.customer_id,
    CAST(h.purchase_days - 1 AS INTEGER) AS frequency,
    CAST(h.last_day - h.first_day AS INTEGER) AS recency,
    CAST(CAST(:as_of AS DATE) - h.first_day AS INTEGER) AS age,
    CAST(h.repeat_amount AS DOUBLE PRECISION) / NULLIF(h.purchase_days - 1, 0) AS repeat_value,
    CAST(h.spend_year AS DOUBLE PRECISION) AS spend_year,
    CAST(h.orders_year AS INTEGER) AS orders_year,
    CAST(COALESCE(a.spend_after, 0) AS DOUBLE PRECISION) AS spend_after
FROM history AS h
LEFT JOIN after AS a ON a.customer_id = h.customer_id
