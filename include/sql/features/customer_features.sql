-- Per-customer features as of :as_of (a date): every row before :as_of 00:00 UTC counts,
-- the 365-day window is [:as_of - 365 days, :as_of), the trend compares the last 90 days
-- with the 90 before. One row per customer created before :as_of, including customers with
-- no orders at all. Rates and means are empty (NULL) where their denominator is zero.
--
-- The qualification window of the tier rules (orders_window, monetary_window) starts at
-- :window_start for a rolling or calendar window (grading.features.QualificationWindow
-- computes it), or, when :window_kind is 'anniversary', at the customer's latest
-- anniversary of created_at on or before the day before :as_of (a 29 February start has
-- its anniversary on 28 February in other years). :window_floor is the earliest start any
-- customer can have, so only recent orders are joined to their customer.
-- Money is summed as exact NUMERIC and counts as integers; every ratio is then one IEEE
-- division of two doubles, which both engines round identically (no ROUND, whose ties
-- would differ between an exact and a binary engine).
--
-- Tie rule for the R/F/M scores (1-5): a customer's score is
--   ceil(5 * share of scored customers whose value is at most theirs)
-- so equal values always share a score, the result does not depend on row order, engine or
-- thread count, and the best value scores 5. Customers with no completed order in the
-- window (F, M) or ever (R) are not scored and get 1.
WITH params AS (
    SELECT
        CAST(:as_of AS TIMESTAMP) AS as_of_ts,
        CAST(:as_of AS TIMESTAMP) - INTERVAL '365 days' AS year_start,
        CAST(:as_of AS TIMESTAMP) - INTERVAL '90 days' AS recent_start,
        CAST(:as_of AS TIMESTAMP) - INTERVAL '180 days' AS prior_start,
        CAST(:window_floor AS TIMESTAMP) AS window_floor,
        CAST(CAST(:as_of AS DATE) - 1 AS DATE) AS last_day
),

registered AS (
    SELECT
        c.customer_id, c.created_at, c.region, c.industry, c.channel,
        CAST(CAST(c.created_at AS DATE)
             + CAST(EXTRACT(YEAR FROM p.last_day) - EXTRACT(YEAR FROM c.created_at) AS INTEGER)
             * INTERVAL '1 year' AS DATE) AS anniversary_this_year
    FROM raw.customers AS c
    CROSS JOIN params AS p
    WHERE c.created_at < p.as_of_ts
),

customers AS (
    SELECT
        r.customer_id, r.created_at, r.region, r.industry, r.channel,
        CASE
            WHEN :window_kind <> 'anniversary' THEN CAST(:window_start AS TIMESTAMP)
            WHEN r.anniversary_this_year <= p.last_day THEN CAST(r.anniversary_this_year AS TIMESTAMP)
            ELSE CAST(CAST(r.anniversary_this_year - INTERVAL '1 year' AS DATE) AS TIMESTAMP)
        END AS window_start
    FROM registered AS r
    CROSS JOIN params AS p
),

orders AS (
    SELECT
        o.customer_id,
        o.order_ts,
        o.status,
        o.amount,
        o.margin,
        o.order_ts >= p.year_start AS in_window,
        o.order_ts >= p.recent_start AS in_recent,
        o.order_ts >= p.prior_start AND o.order_ts < p.recent_start AS in_prior,
        CASE
            WHEN o.order_ts >= p.recent_start THEN 1
            WHEN o.order_ts >= p.prior_start THEN 2
            WHEN o.order_ts >= p.as_of_ts - INTERVAL '270 days' THEN 3
            WHEN o.order_ts >= p.as_of_ts - INTERVAL '360 days' THEN 4
        END AS quarter_back
    FROM raw.orders AS o
    CROSS JOIN params AS p
    WHERE o.order_ts < p.as_of_ts
),

order_features AS (
    SELECT
        customer_id,
        MAX(CASE WHEN status = 'completed' THEN order_ts END) AS last_order_at,
        COUNT(CASE WHEN status = 'completed' AND in_window THEN 1 END) AS orders_365d,
        SUM(CASE WHEN status = 'completed' AND in_window THEN amount ELSE 0 END) AS monetary_365d,
        SUM(CASE WHEN status = 'completed' AND in_window THEN COALESCE(margin, 0) ELSE 0 END) AS margin_365d,
        COUNT(CASE WHEN status = 'refunded' AND in_window THEN 1 END) AS refunds_365d,
        COUNT(CASE WHEN status = 'completed' THEN 1 END) AS orders_lifetime,
        SUM(CASE WHEN status = 'completed' THEN amount ELSE 0 END) AS monetary_lifetime,
        SUM(CASE WHEN status = 'completed' AND in_recent THEN amount ELSE 0 END) AS monetary_90d,
        SUM(CASE WHEN status = 'completed' AND in_prior THEN amount ELSE 0 END) AS monetary_prev_90d,
        -- in how many of the last four 90-day quarters the customer completed an order
        MAX(CASE WHEN status = 'completed' AND quarter_back = 1 THEN 1 ELSE 0 END)
            + MAX(CASE WHEN status = 'completed' AND quarter_back = 2 THEN 1 ELSE 0 END)
            + MAX(CASE WHEN status = 'completed' AND quarter_back = 3 THEN 1 ELSE 0 END)
            + MAX(CASE WHEN status = 'completed' AND quarter_back = 4 THEN 1 ELSE 0 END) AS active_quarters_4
    FROM orders
    GROUP BY customer_id
),

window_features AS (
    SELECT
        o.customer_id,
        COUNT(*) AS orders_window,
        SUM(o.amount) AS monetary_window
    FROM raw.orders AS o
    CROSS JOIN params AS p
    JOIN customers AS c ON c.customer_id = o.customer_id
    WHERE o.status = 'completed' AND o.order_ts >= p.window_floor AND o.order_ts >= c.window_start
        AND o.order_ts < p.as_of_ts
    GROUP BY o.customer_id
),

interaction_features AS (
    SELECT i.customer_id, COUNT(*) AS interactions_365d
    FROM raw.interactions AS i
    CROSS JOIN params AS p
    WHERE i.ts >= p.year_start AND i.ts < p.as_of_ts
    GROUP BY i.customer_id
),

ticket_features AS (
    SELECT
        t.customer_id,
        COUNT(CASE WHEN t.opened_at >= p.year_start THEN 1 END) AS tickets_365d,
        COUNT(CASE WHEN t.opened_at >= p.year_start AND t.category = 'complaint' THEN 1 END) AS complaints_365d,
        -- hours to close, for window tickets closed before the as-of instant
        SUM(CASE WHEN t.opened_at >= p.year_start AND t.closed_at < p.as_of_ts
                 THEN CAST(FLOOR(EXTRACT(EPOCH FROM (t.closed_at - t.opened_at))) AS BIGINT) END)
            AS resolution_seconds,
        COUNT(CASE WHEN t.opened_at >= p.year_start AND t.closed_at < p.as_of_ts THEN 1 END) AS resolved_count,
        -- still open at the as-of instant, whenever opened
        COUNT(CASE WHEN t.closed_at IS NULL OR t.closed_at >= p.as_of_ts THEN 1 END) AS open_tickets
    FROM raw.tickets AS t
    CROSS JOIN params AS p
    WHERE t.opened_at < p.as_of_ts
    GROUP BY t.customer_id
),

survey_features AS (
    SELECT
        s.customer_id,
        COUNT(*) AS surveys_365d,
        SUM(s.csat) AS csat_sum,
        COUNT(s.csat) AS csat_count,
        SUM(s.nps) AS nps_sum,
        COUNT(s.nps) AS nps_count
    FROM raw.surveys AS s
    CROSS JOIN params AS p
    WHERE s.responded_at >= p.year_start AND s.responded_at < p.as_of_ts
    GROUP BY s.customer_id
),

joined AS (
    SELECT
        c.customer_id,
        c.region,
        c.industry,
        c.channel,
        CAST(CAST(p.as_of_ts AS DATE) - CAST(c.created_at AS DATE) AS INTEGER) AS tenure_days,
        o.last_order_at,
        CAST(CAST(p.as_of_ts AS DATE) - CAST(o.last_order_at AS DATE) AS INTEGER) AS recency_days,
        CAST(COALESCE(o.orders_365d, 0) AS INTEGER) AS orders_365d,
        CAST(COALESCE(o.monetary_365d, 0) AS DOUBLE PRECISION) AS monetary_365d,
        CAST(COALESCE(o.margin_365d, 0) AS DOUBLE PRECISION) AS margin_365d,
        CAST(COALESCE(o.refunds_365d, 0) AS INTEGER) AS refunds_365d,
        CAST(COALESCE(o.orders_lifetime, 0) AS INTEGER) AS orders_lifetime,
        CAST(COALESCE(o.monetary_lifetime, 0) AS DOUBLE PRECISION) AS monetary_lifetime,
        CAST(COALESCE(t.tickets_365d, 0) AS INTEGER) AS tickets_365d,
        CAST(COALESCE(t.complaints_365d, 0) AS INTEGER) AS complaints_365d,
        CAST(COALESCE(s.surveys_365d, 0) AS INTEGER) AS surveys_365d,
        CAST(s.csat_sum AS DOUBLE PRECISION) / NULLIF(s.csat_count, 0) AS csat_mean_365d,
        CAST(s.nps_sum AS DOUBLE PRECISION) / NULLIF(s.nps_count, 0) AS nps_mean_365d,
        CAST(COALESCE(o.monetary_90d, 0) AS DOUBLE PRECISION) AS monetary_90d,
        CAST(COALESCE(o.monetary_prev_90d, 0) AS DOUBLE PRECISION) AS monetary_prev_90d,
        CAST(t.resolution_seconds AS DOUBLE PRECISION) / NULLIF(t.resolved_count, 0) / 3600.0
            AS resolution_hours_365d,
        CAST(COALESCE(t.open_tickets, 0) AS INTEGER) AS open_tickets,
        CAST(COALESCE(o.active_quarters_4, 0) AS INTEGER) AS active_quarters_4,
        CAST(COALESCE(i.interactions_365d, 0) AS INTEGER) AS interactions_365d,
        CAST(c.window_start AS DATE) AS window_start,
        CAST(COALESCE(w.orders_window, 0) AS INTEGER) AS orders_window,
        CAST(COALESCE(w.monetary_window, 0) AS DOUBLE PRECISION) AS monetary_window
    FROM customers AS c
    CROSS JOIN params AS p
    LEFT JOIN order_features AS o ON o.customer_id = c.customer_id
    LEFT JOIN ticket_features AS t ON t.customer_id = c.customer_id
    LEFT JOIN survey_features AS s ON s.customer_id = c.customer_id
    LEFT JOIN interaction_features AS i ON i.customer_id = c.customer_id
    LEFT JOIN window_features AS w ON w.customer_id = c.customer_id
),

-- The scores count over the three scored values of the customers with orders, taken from
-- order_features rather than from joined: a window over every column of joined held all of
-- them in the window operator, and one over joined's columns joined back to joined made
-- joined a materialised CTE (at a million customers: out of memory under a 1 GiB DuckDB
-- limit either way). The values are the same expressions as in joined.
scored AS (
    SELECT
        o.customer_id,
        o.last_order_at,
        CAST(CAST(p.as_of_ts AS DATE) - CAST(o.last_order_at AS DATE) AS INTEGER) AS recency_days,
        CAST(o.orders_365d AS INTEGER) AS orders_365d,
        CAST(o.monetary_365d AS DOUBLE PRECISION) AS monetary_365d
    FROM order_features AS o
    CROSS JOIN params AS p
    JOIN customers AS c ON c.customer_id = o.customer_id
),

scores AS (
    SELECT
        customer_id,
        -- customers at least as recent / at most as frequent / at most as valuable, among the scored
        COUNT(*) OVER (PARTITION BY last_order_at IS NULL ORDER BY recency_days DESC) AS r_at_most,
        COUNT(*) OVER (PARTITION BY last_order_at IS NULL) AS r_scored,
        COUNT(*) OVER (PARTITION BY orders_365d > 0 ORDER BY orders_365d) AS f_at_most,
        COUNT(*) OVER (PARTITION BY orders_365d > 0) AS f_scored,
        COUNT(*) OVER (PARTITION BY monetary_365d > 0 ORDER BY monetary_365d) AS m_at_most,
        COUNT(*) OVER (PARTITION BY monetary_365d > 0) AS m_scored
    FROM scored
),

ranked AS (
    SELECT j.*, s.r_at_most, s.r_scored, s.f_at_most, s.f_scored, s.m_at_most, s.m_scored
    FROM joined AS j
    LEFT JOIN scores AS s ON s.customer_id = j.customer_id
)

SELECT
    CAST(:as_of AS DATE) AS as_of_date,
    customer_id,
    region,
    industry,
    channel,
    tenure_days,
    last_order_at,
    recency_days,
    orders_365d,
    monetary_365d,
    margin_365d,
    refunds_365d,
    orders_lifetime,
    monetary_lifetime,
    tickets_365d,
    complaints_365d,
    surveys_365d,
    csat_mean_365d,
    nps_mean_365d,
    CASE WHEN last_order_at IS NULL THEN 1
         ELSE CAST(FLOOR((5 * r_at_most + r_scored - 1) * 1.0 / r_scored) AS INTEGER) END AS r_score,
    CASE WHEN orders_365d = 0 THEN 1
         ELSE CAST(FLOOR((5 * f_at_most + f_scored - 1) * 1.0 / f_scored) AS INTEGER) END AS f_score,
    CASE WHEN monetary_365d <= 0 THEN 1
         ELSE CAST(FLOOR((5 * m_at_most + m_scored - 1) * 1.0 / m_scored) AS INTEGER) END AS m_score,
    monetary_365d / NULLIF(CAST(orders_365d AS DOUBLE PRECISION), 0) AS avg_order_value_365d,
    monetary_90d,
    monetary_prev_90d,
    CAST(refunds_365d AS DOUBLE PRECISION) / NULLIF(orders_365d + refunds_365d, 0) AS refund_rate_365d,
    CAST(complaints_365d AS DOUBLE PRECISION) / NULLIF(orders_365d, 0) AS complaint_rate_365d,
    resolution_hours_365d,
    open_tickets,
    active_quarters_4,
    interactions_365d,
    window_start,
    orders_window,
    monetary_window
FROM ranked
