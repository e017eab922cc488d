-- Completed orders per customer in the quarter under review, [:quarter_start, :quarter_end):
-- one row per customer who completed an order in the quarter (a buyer), by pseudonymous key,
-- with the amount of those orders. grading.review.tables builds it once per review as a temporary
-- table, which the evaluations read instead of each summing raw.orders again, and drops it
-- at the end of the review's transaction.
CREATE TEMPORARY TABLE review_quarter_revenue AS
SELECT k.customer_key, SUM(o.amount) AS revenue
FROM raw.orders AS o
JOIN ops.customer_keys AS k ON k.customer_id = o.customer_id
WHERE o.status = 'completed'
    AND o.order_ts >= CAST(:quarter_start AS TIMESTAMP)
    AND o.order_ts < CAST(:quarter_end AS TIMESTAMP)
GROUP BY k.customer_key;
