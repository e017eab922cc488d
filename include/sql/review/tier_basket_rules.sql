-- What each tier buys together: association rules over the quarter's baskets, per tier.
--
-- A basket is a completed order placed in [:quarter_start, :quarter_end); its customer's tier is
-- the one at the quarter's close (:snapshot). An item is a line's category (its product where it
-- has none) or its product (:item_level). For each tier, with N its baskets:
--   support(A)       = baskets holding A / N
--   support(A, B)    = baskets holding A and B / N
--   confidence(A->B) = support(A, B) / support(A)
--   lift(A->B)       = confidence(A->B) / support(B)   (above 1: bought together more than by chance)
-- Pairs are counted only among a tier's :top_items most-bought items that reach :min_support on
-- their own (a pair is never more frequent than either of its items, so the support cut loses no
-- rule; the top-N cut does lose the pairs of items ranked below it, when more than :top_items
-- items reach the minimum support), which bounds the self-join and the rules' measures by the
-- top-N, not the catalogue (bench/baskets.py: 20,000 products took 398 s when the measures
-- joined every item, 0.37 s joined to the top ones only). A rule
-- needs :min_support and :min_pair_baskets baskets; both directions of a pair are rules. The
-- :max_rules best per tier by lift are kept. Lines of an order that is not completed or not in
-- raw.orders are not counted.
WITH tiers AS (
    SELECT k.customer_id, t.tier
    FROM marts.customer_tier_snapshot AS t
    JOIN ops.customer_keys AS k ON k.customer_key = t.customer_key
    WHERE t.as_of_date = CAST(:snapshot AS DATE)
),

lines AS (
    SELECT DISTINCT
        t.tier,
        l.order_id,
        CASE WHEN CAST(:item_level AS VARCHAR) = 'category' THEN COALESCE(l.category, l.product_id)
             ELSE l.product_id END AS item
    FROM raw.order_lines AS l
    JOIN raw.orders AS o ON o.order_id = l.order_id
    JOIN tiers AS t ON t.customer_id = o.customer_id
    WHERE o.status = 'completed'
        AND o.order_ts >= CAST(:quarter_start AS TIMESTAMP)
        AND o.order_ts < CAST(:quarter_end AS TIMESTAMP)
        AND l.product_id IS NOT NULL
),

baskets AS (
    SELECT tier, COUNT(DISTINCT order_id) AS baskets
    FROM lines
    GROUP BY tier
),

items AS (
    SELECT tier, item, COUNT(*) AS item_baskets
    FROM lines
    GROUP BY tier, item
),

top_items AS (
    SELECT ranked.tier, ranked.item, ranked.item_baskets
    FROM (
        SELECT i.tier, i.item, i.item_baskets, b.baskets,
               ROW_NUMBER() OVER (PARTITION BY i.tier ORDER BY i.item_baskets DESC, i.item) AS item_rank
        FROM items AS i
        JOIN baskets AS b ON b.tier = i.tier
    ) AS ranked
    WHERE ranked.item_rank <= :top_items
        AND CAST(ranked.item_baskets AS DOUBLE PRECISION) / ranked.baskets >= :min_support
),

kept AS (
    SELECT l.tier, l.order_id, l.item
    FROM lines AS l
    JOIN top_items AS t ON t.tier = l.tier AND t.item = l.item
),

pairs AS (
    SELECT a.tier, a.item AS item_a, b.item AS item_b, COUNT(*) AS pair_baskets
    FROM kept AS a
    JOIN kept AS b ON b.tier = a.tier AND b.order_id = a.order_id AND a.item < b.item
    GROUP BY a.tier, a.item, b.item
),

frequent AS (
    SELECT p.tier, p.item_a, p.item_b, p.pair_baskets, b.baskets
    FROM pairs AS p
    JOIN baskets AS b ON b.tier = p.tier
    WHERE p.pair_baskets >= :min_pair_baskets
        AND CAST(p.pair_baskets AS DOUBLE PRECISION) / b.baskets >= :min_support
),

rules AS (
    SELECT tier, item_a AS antecedent, item_b AS consequent, pair_baskets, baskets FROM frequent
    UNION ALL
    SELECT tier, item_b AS antecedent, item_a AS consequent, pair_baskets, baskets FROM frequent
),

measured AS (
    SELECT
        r.tier,
        r.antecedent,
        r.consequent,
        r.baskets,
        r.pair_baskets,
        CAST(r.pair_baskets AS DOUBLE PRECISION) / r.baskets AS support,
        CAST(r.pair_baskets AS DOUBLE PRECISION) / a.item_baskets AS confidence,
        CAST(r.pair_baskets AS DOUBLE PRECISION) * r.baskets / (CAST(a.item_baskets AS DOUBLE PRECISION) * c.item_baskets)
            AS lift,
        CAST(a.item_baskets AS DOUBLE PRECISION) / r.baskets AS antecedent_support,
        CAST(c.item_baskets AS DOUBLE PRECISION) / r.baskets AS consequent_support
    FROM rules AS r
    JOIN top_items AS a ON a.tier = r.tier AND a.item = r.antecedent
    JOIN top_items AS c ON c.tier = r.tier AND c.item = r.consequent
),

ranked AS (
    SELECT m.*,
           ROW_NUMBER() OVER (PARTITION BY m.tier
                              ORDER BY m.lift DESC, m.confidence DESC, m.antecedent, m.consequent) AS rule_rank
    FROM measured AS m
)

SELECT
    CAST(:quarter AS VARCHAR) AS quarter,
    tier,
    CAST(:item_level AS VARCHAR) AS item_level,
    antecedent,
    consequent,
    baskets,
    pair_baskets,
    support,
    confidence,
    lift,
    antecedent_support,
    consequent_support,
    CAST(:min_support AS DOUBLE PRECISION) AS min_support,
    CAST(rule_rank AS INTEGER) AS rule_rank
FROM ranked
WHERE rule_rank <= :max_rules
ORDER BY tier, rule_rank
