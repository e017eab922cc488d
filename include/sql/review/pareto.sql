-- Pareto: the quarter's buyers ranked by revenue (ties broken by key, so the split is
-- deterministic), cut into ten equal groups; cumulative share of the quarter's revenue.
WITH revenue AS (
    SELECT k.customer_key, SUM(o.amount) AS revenue
    FROM raw.orders AS o
    JOIN ops.customer_keys AS k ON k.customer_id = o.customer_id
    WHERE o.status = 'completed'
        AND o.order_ts >= CAST(:quarter_start AS TIMESTAMP)
        AND o.order_ts < CAST(:quarter_end AS TIMESTAMP)
    GROUP BY k.customer_key
),

ranked AS (
    SELECT
        revenue,
        ROW_NUMBER() OVER (ORDER BY revenue DESC, customer_key) AS position,
        COUNT(*) OVER () AS buyers
    FROM revenue
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
