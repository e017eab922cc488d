-- The period's features of every graded customer, by pseudonymous key, with the churn
-- propensity of the period's model and the customer potential (grading.potential).

DELETE FROM marts.customer_features_snapshot WHERE as_of_date = :as_of;

INSERT INTO marts.customer_features_snapshot (
    as_of_date, customer_key, region, industry, channel, tenure_days, recency_days,
    orders_365d, monetary_365d, margin_365d, refunds_365d, orders_lifetime, monetary_lifetime,
    tickets_365d, complaints_365d, surveys_365d, csat_mean_365d, nps_mean_365d,
    r_score, f_score, m_score, avg_order_value_365d, monetary_90d, monetary_prev_90d,
    refund_rate_365d, complaint_rate_365d, resolution_hours_365d, open_tickets, churn_propensity,
    active_quarters_4, interactions_365d, window_start, orders_window, monetary_window, potential_365d, p_alive
)
SELECT
    f.as_of_date, k.customer_key, f.region, f.industry, f.channel, f.tenure_days, f.recency_days,
    f.orders_365d, f.monetary_365d, f.margin_365d, f.refunds_365d, f.orders_lifetime, f.monetary_lifetime,
    f.tickets_365d, f.complaints_365d, f.surveys_365d, f.csat_mean_365d, f.nps_mean_365d,
    f.r_score, f.f_score, f.m_score, f.avg_order_value_365d, f.monetary_90d, f.monetary_prev_90d,
    f.refund_rate_365d, f.complaint_rate_365d, f.resolution_hours_365d, f.open_tickets, s.churn_propensity,
    f.active_quarters_4, f.interactions_365d, f.window_start, f.orders_window, f.monetary_window,
    p.potential_365d, p.p_alive
FROM staging.customer_features AS f
JOIN ops.customer_keys AS k ON k.customer_id = f.customer_id
LEFT JOIN staging.churn_scores AS s ON s.as_of_date = f.as_of_date AND s.customer_id = f.customer_id
LEFT JOIN staging.customer_potential AS p ON p.as_of_date = f.as_of_date AND p.customer_id = f.customer_id
WHERE f.as_of_date = :as_of;
