-- Pareto: the quarter's buyers ranked by revenue (ties broken by key, so the split is
-- deterministic), cut into ten equal groups; cumulative share of the quarter's revenue.
-- Buyers and revenue: review_quarter_revenue (quarter_revenue.sql).
WITH ranked AS (
    SELECT
        revenue,
        ROW_NUMBER() OVER (ORDER BY revenue DESC, customer_key) AS position,
        COUNT(*) OVER () AS buyers
    FROM review_quarter_revenue
),

deciles AS (
    SELECT
        CAST(FLOOR((10 * position + buyers - 1) * 1.0 / buyers) AS INTEGER) AS decile,
        COUNT(*) AS customers,
        CAST(SUM(revenue) AS DOUBLE PRECISION) AS revenue
    FROM ranked
    GROUP BY 1
)

SELECT
    CAST(:quarter AS VARCHAR) AS quarter,
    decile,
    customers,
    revenue,
    SUM(revenue) OVER (ORDER BY decile) / SUM(revenue) OVER () AS cumulative_revenue_share
FROM deciles
ORDER BY decile
