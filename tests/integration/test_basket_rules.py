"""The quarterly basket analysis (include/sql/review/tier_basket_rules.sql) on baskets counted by
hand, on both warehouses: support, confidence and lift per tier, the minimum support and pair
count, the top-N item bound, the item level, and what is not a basket (another quarter, an order
not completed, a line of an unknown order)."""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd
import pytest

from grading.frames import bulk_insert, read_query_file
from grading.review.quarters import Quarter
from grading.settings import basket_settings
from grading.warehouse import migrate, open_engine

SNAPSHOT = date(2025, 1, 1)
QUARTER = Quarter.closing_on(SNAPSHOT)  # 2024Q4
IN_QUARTER, BEFORE = datetime(2024, 11, 5, 10), datetime(2024, 9, 5, 10)


def baskets(tier: str, count: int, items: list[str], **order) -> list[dict]:
    """``count`` orders of one customer of ``tier`` each holding ``items`` (product "<item>-1")."""
    return [{"tier": tier, "items": items, **order} for _ in range(count)]


# gold: 20 orders. bread+butter in 8, bread alone in 4, butter+jam in 2, jam alone in 6.
#   support(bread)=12/20, support(butter)=10/20, support(bread, butter)=8/20
#   confidence(bread->butter)=8/12, lift = (8/20) / (12/20 * 10/20) = 4/3
# platinum: 10 orders: wine+cheese in 6, wine alone in 1, bread+butter in 3 (below min_pair_baskets 5)
BASKETS = (baskets("gold", 8, ["bread", "butter"]) + baskets("gold", 4, ["bread"])
           + baskets("gold", 2, ["butter", "jam"]) + baskets("gold", 6, ["jam"])
           + baskets("platinum", 6, ["wine", "cheese"]) + baskets("platinum", 1, ["wine"])
           + baskets("platinum", 3, ["bread", "butter"])
           # not baskets of the quarter: cancelled, placed before it, lines of an order not in raw.orders
           + baskets("gold", 5, ["jam", "wine"], status="cancelled")
           + baskets("gold", 5, ["jam", "wine"], order_ts=BEFORE)
           + baskets("gold", 5, ["jam", "wine"], unknown_order=True))


def load(engine, specs: list[dict]) -> None:
    """One customer per tier; orders and lines as ``specs`` say; each item's category is "food"
    except wine (drink), so the category level sees food+drink pairs only."""
    tiers = sorted({s["tier"] for s in specs})
    keys = pd.DataFrame({"customer_id": [f"c-{t}" for t in tiers], "customer_key": [f"k-{t}" for t in tiers]})
    snapshot = pd.DataFrame({
        "as_of_date": SNAPSHOT, "customer_key": keys["customer_key"], "tier": tiers,
        "tier_rank": [{"normal": 1, "gold": 2, "platinum": 3}[t] for t in tiers], "tier_rule": "r",
        "tier_reason": "r", "rule_version": "1"})
    orders, lines = [], []
    for n, spec in enumerate(specs):
        order_id, ts = f"o{n}", spec.get("order_ts", IN_QUARTER)
        if not spec.get("unknown_order"):
            orders.append({"order_id": order_id, "customer_id": f"c-{spec['tier']}", "order_ts": ts,
                           "status": spec.get("status", "completed"), "amount": 10.0, "margin": 1.0,
                           "extracted_at": datetime(2025, 1, 1)})
        for i, item in enumerate(spec["items"]):
            lines += [{"line_id": f"{order_id}/{i}/{copy}", "order_id": order_id, "customer_id": f"c-{spec['tier']}",
                       "order_ts": ts, "product_id": f"{item}-1", "category": "drink" if item == "wine" else "food",
                       "quantity": 1, "amount": 5.0, "extracted_at": datetime(2025, 1, 1)}
                      for copy in range(2 if item == "bread" else 1)]  # a product twice in an order counts once
    migrate(engine)
    with engine.begin() as conn:
        bulk_insert(conn, "ops.customer_keys", keys)
        bulk_insert(conn, "marts.customer_tier_snapshot", snapshot)
        bulk_insert(conn, "raw.orders", pd.DataFrame(orders))
        bulk_insert(conn, "raw.order_lines", pd.DataFrame(lines))


def rules(engine, **settings) -> pd.DataFrame:
    params = {"quarter": str(QUARTER), "quarter_start": QUARTER.start, "quarter_end": QUARTER.end,
              "snapshot": SNAPSHOT, **basket_settings(), "item_level": "product", **settings}
    with engine.connect() as conn:
        frame = read_query_file(conn, "review/tier_basket_rules", params)
    return frame.set_index(["tier", "antecedent", "consequent"])


def test_support_confidence_and_lift_per_tier_are_counted_as_by_hand(warehouse_url: str) -> None:
    with open_engine(warehouse_url) as engine:
        load(engine, BASKETS)
        got = rules(engine)
    gold = got.loc["gold"]
    assert sorted(gold.index) == [("bread-1", "butter-1"), ("butter-1", "bread-1")]  # butter+jam: 2 < 5 baskets
    forward = gold.loc[("bread-1", "butter-1")]
    assert (forward["baskets"], forward["pair_baskets"]) == (20, 8)
    assert forward["support"] == pytest.approx(8 / 20)
    assert forward["confidence"] == pytest.approx(8 / 12)
    assert forward["lift"] == pytest.approx(4 / 3)
    assert (forward["antecedent_support"], forward["consequent_support"]) == pytest.approx((12 / 20, 10 / 20))
    assert gold.loc[("butter-1", "bread-1"), "confidence"] == pytest.approx(8 / 10)
    platinum = got.loc["platinum"]
    assert sorted(platinum.index) == [("cheese-1", "wine-1"), ("wine-1", "cheese-1")]
    assert platinum.loc[("wine-1", "cheese-1"), "confidence"] == pytest.approx(6 / 7)
    assert platinum.loc[("wine-1", "cheese-1"), "lift"] == pytest.approx((6 / 10) / (7 / 10 * 6 / 10))
    assert set(got["rule_rank"]) == {1, 2}
    assert (got["item_level"] == "product").all()


def test_minimums_and_the_top_items_bound_decide_which_pairs_are_rules(warehouse_url: str) -> None:
    with open_engine(warehouse_url) as engine:
        load(engine, BASKETS)
        small_pairs = rules(engine, min_pair_baskets=2)
        strict = rules(engine, min_support=0.5)
        top_one = rules(engine, top_items=1)
        by_category = rules(engine, item_level="category")
    assert ("butter-1", "jam-1") in small_pairs.loc["gold"].index            # 2 baskets now enough
    assert ("bread-1", "butter-1") in small_pairs.loc["platinum"].index
    assert sorted(strict.index) == [("platinum", "cheese-1", "wine-1"), ("platinum", "wine-1", "cheese-1")]  # 6/10
    assert top_one.empty                                                     # one item per tier: no pair
    assert sorted(by_category.index) == [("platinum", "drink", "food"), ("platinum", "food", "drink")]
    assert by_category.loc[("platinum", "drink", "food"), "pair_baskets"] == 6


def test_the_demo_review_finds_the_planted_pairs_and_the_report_shows_them(reviewed_warehouse) -> None:
    _, url, folder = reviewed_warehouse  # demo data graded quarterly, 2024Q4 reviewed with the others
    with open_engine(url) as engine, engine.connect() as conn:
        found = pd.read_sql("SELECT * FROM marts.tier_basket_rules WHERE quarter = '2024Q4'", conn)
    premium = found[(found["antecedent"] == "printers") & (found["consequent"] == "toner")].set_index("tier")
    everyday = found[(found["antecedent"] == "paper") & (found["consequent"] == "pens")].set_index("tier")
    # the big spenders' pair is most common at the top; the everyday pair about as common everywhere
    normal = premium["support"].get("normal", 0.0)  # below the minimum support there: no rule
    assert premium.loc["platinum", "support"] > premium.loc["gold", "support"] > 2 * normal
    assert premium.loc["platinum", "rule_rank"] <= 4
    assert premium["lift"].min() > 1.5
    assert everyday["support"].between(0.2, 0.35).all()
    page = (folder / "reports" / "2025-01-01" / "review.html").read_text(encoding="utf-8")
    section = page[page.index("id='baskets'"):page.index("id='elimination'")]
    assert "What each tier buys together" in section
    assert "toner → printers" in section or "printers → toner" in section
