-- What changed for the CRM between the period exported last (:baseline, as the CRM got it at
-- :baseline_exported_at; NULL for a first export) and this one (:as_of): tier changes (with what the new tier is entitled to), and
-- customers newly on or off an action list (with the action, its owner, deadline and offer).
-- Lists hand over what people act on: win-back and core candidates, and elimination (and
-- nurture) candidates a reviewer approved (marts.elimination_status); control groups are left
-- alone, so they are never handed over. Customers leave by their source id, on purpose.

WITH lists AS (
    -- nurture: the eliminations whose action the rules name as one to nurture (control_actions,
    -- the rows eligible for the control draw), as in marts.current_nurture_candidates
    SELECT e.as_of_date, e.customer_key,
           CASE WHEN e.control_group IS NOT NULL THEN 'nurture' ELSE 'elimination' END AS list,
           e.rule_name, e.reason, e.action
    FROM marts.elimination_candidates AS e
    JOIN marts.elimination_status AS s ON s.as_of_date = e.as_of_date AND s.customer_key = e.customer_key
    WHERE e.as_of_date IN (:as_of, :baseline) AND s.review_status = 'approved' AND e.control_group IS NOT TRUE
        -- the baseline as handed over: approvals decided after its export are news now
        AND (e.as_of_date = :as_of OR s.decided_at <= :baseline_exported_at)
    UNION ALL
    SELECT as_of_date, customer_key, 'win_back', rule_name, reason, action
    FROM marts.winback_candidates
    WHERE as_of_date IN (:as_of, :baseline) AND control_group IS NOT TRUE
    UNION ALL
    SELECT as_of_date, customer_key, 'core', rule_name, reason, action
    FROM marts.core_customers
    WHERE as_of_date IN (:as_of, :baseline)
),
tiers AS (
    SELECT as_of_date, customer_key, tier, tier_reason
    FROM marts.customer_tier_snapshot
    WHERE as_of_date IN (:as_of, :baseline)
),
changes AS (
    SELECT 'tier_changed' AS change, n.customer_key, CAST(NULL AS VARCHAR) AS list, b.tier AS previous_tier,
           n.tier_reason AS reason, CAST(NULL AS VARCHAR) AS rule_name, CAST(NULL AS VARCHAR) AS action
    FROM tiers AS n
    LEFT JOIN tiers AS b ON b.customer_key = n.customer_key AND b.as_of_date = :baseline
    WHERE n.as_of_date = :as_of AND b.tier IS DISTINCT FROM n.tier
    UNION ALL
    SELECT 'listed', n.customer_key, n.list, NULL, n.reason, n.rule_name, n.action
    FROM lists AS n
    LEFT JOIN lists AS b ON b.customer_key = n.customer_key AND b.list = n.list AND b.as_of_date = :baseline
    WHERE n.as_of_date = :as_of AND (b.customer_key IS NULL OR b.action <> n.action)
    UNION ALL
    SELECT 'unlisted', b.customer_key, b.list, NULL, b.reason, b.rule_name, b.action
    FROM lists AS b
    LEFT JOIN lists AS n ON n.customer_key = b.customer_key AND n.list = b.list AND n.as_of_date = :as_of
    WHERE b.as_of_date = :baseline AND n.customer_key IS NULL
)
SELECT
    c.change, k.customer_id, c.customer_key, c.list, t.tier, c.previous_tier, c.rule_name, c.reason, c.action,
    a.owner AS action_owner, a.contact_within_days, a.offer, s.service_level, s.response_time_hours,
    s.dedicated_account_manager, s.support_channels, s.visit_frequency, s.discount_policy
FROM changes AS c
JOIN ops.customer_keys AS k ON k.customer_key = c.customer_key
LEFT JOIN tiers AS t ON t.customer_key = c.customer_key AND t.as_of_date = :as_of
LEFT JOIN marts.service_entitlements AS s ON s.as_of_date = :as_of AND s.tier = t.tier
LEFT JOIN marts.action_treatments AS a ON a.as_of_date = :as_of AND a.action = c.action AND c.change = 'listed'
ORDER BY c.change, c.list, k.customer_id;
