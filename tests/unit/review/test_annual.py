"""The annual review on a small warehouse whose answers are worked out by hand below: two years of
stored quarterly evaluations and three year-end snapshots, on DuckDB and PostgreSQL; the year before
reviewed for two quarters only (flagged), a rerun giving the same rows, a year with no review refused."""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd
import pytest

from grading.frames import bulk_insert, read_frame
from grading.review.annual import NothingReviewed, annual_warnings, build_annual
from grading.warehouse import migrate, open_engine

FEATURE_ZEROS = dict.fromkeys(("tenure_days", "orders_365d", "refunds_365d", "orders_lifetime", "tickets_365d",
                               "complaints_365d", "surveys_365d", "r_score", "f_score", "m_score"), 0)
# Tiers at the close of 2022 (the start of 2023), of 2023 and of 2024.
TIERS = {
    date(2023, 1, 1): {"k1": "normal", "k2": "normal", "k3": "gold"},
    date(2024, 1, 1): {"k1": "normal", "k2": "gold", "k3": "gold", "k4": "normal"},
    date(2025, 1, 1): {"k1": "gold", "k2": "gold", "k3": "normal", "k4": "normal", "k5": "normal"},
}
RANK = {"normal": 1, "gold": 2}
# Elimination candidates in the years (PostgreSQL's keys want them on the list and in a tier snapshot).
LISTED = [(date(2024, 7, 1), "k3"), (date(2024, 10, 1), "k3"), (date(2023, 10, 1), "k4"), (date(2024, 7, 1), "k1")]
# Customers with an order in the 365 days before each year's start (active), and the year's completed orders.
ACTIVE = {date(2023, 1, 1): {"k1", "k2", "k3"}, date(2024, 1, 1): {"k1", "k2", "k3"}}
ORDERS = [("k1", "2023-03-01", "completed", 10), ("k2", "2023-12-31 23:00", "completed", 10),
          ("k1", "2024-05-01", "completed", 100), ("k3", "2024-12-31", "completed", 50),
          ("k2", "2024-06-01", "cancelled", 70), ("k2", "2025-01-01", "completed", 5)]


def _frame(quarters: list[str], **columns: list) -> pd.DataFrame:
    return pd.DataFrame({"quarter": quarters, **columns})


def seed(url: str) -> None:
    """Migrate the warehouse at ``url`` and write the snapshots, orders and quarterly evaluations."""
    with open_engine(url) as engine:
        migrate(engine)
        with engine.begin() as conn:
            keys = [f"k{n}" for n in range(1, 6)]
            bulk_insert(conn, "ops.customer_keys", pd.DataFrame({"customer_id": [f"c{k}" for k in keys],
                                                                 "customer_key": keys}))
            tiers = pd.DataFrame([{"as_of_date": day, "customer_key": k, "tier": t, "tier_rank": RANK[t],
                                   "tier_rule": "rule", "tier_reason": "why", "rule_version": "1"}
                                  for day, held in [*TIERS.items(), *((d, {k: "normal"}) for d, k in LISTED)]
                                  for k, t in held.items()])
            bulk_insert(conn, "marts.customer_tier_snapshot", tiers)
            bulk_insert(conn, "marts.elimination_candidates", pd.DataFrame([
                {"as_of_date": day, "customer_key": k, "rule_name": "low_value", "reason": "why", "action": "stop",
                 "rule_version": "1", "severity": "low", "rules_sha256": "0" * 64, "periods_met": 1}
                for day, k in LISTED]))
            features = [{"as_of_date": day, "customer_key": k, **FEATURE_ZEROS, "monetary_365d": 0.0,
                         "margin_365d": 0.0, "monetary_lifetime": 0.0, "orders_365d": int(k in ACTIVE.get(day, ()))}
                        for day, held in TIERS.items() for k in held]
            features += [{"as_of_date": date(2024, 7, 1), "customer_key": "k3", **FEATURE_ZEROS,
                          "monetary_365d": 250.0, "margin_365d": 0.0, "monetary_lifetime": 0.0},
                         {"as_of_date": date(2023, 10, 1), "customer_key": "k4", **FEATURE_ZEROS,
                          "monetary_365d": 80.0, "margin_365d": 0.0, "monetary_lifetime": 0.0}]
            bulk_insert(conn, "marts.customer_features_snapshot", pd.DataFrame(features))
            bulk_insert(conn, "raw.orders", pd.DataFrame([
                {"order_id": f"o{i}", "customer_id": f"c{k}", "order_ts": pd.Timestamp(ts), "status": status,
                 "amount": float(amount), "extracted_at": datetime(2025, 1, 2)}
                for i, (k, ts, status, amount) in enumerate(ORDERS)]))
            # k3 approved on 2024-07-01 (the decision carried to 2024-10-01), k4 in 2023, k1 rejected.
            bulk_insert(conn, "marts.elimination_status", pd.DataFrame({
                "as_of_date": [d for d, _ in LISTED], "customer_key": [k for _, k in LISTED],
                "rule_name": "low_value", "action": "stop",
                "review_status": ["approved", "approved", "approved", "rejected"],
                "decided_as_of": [date(2024, 7, 1), date(2024, 7, 1), date(2023, 10, 1), date(2024, 7, 1)],
                "status_reason": "decided"}))
            # 2024: four quarters reviewed, 100 (normal) and 300 (gold) a quarter; 2023: Q3 and Q4, 50 and 150.
            quarters = [f"2024Q{n}" for n in range(1, 5) for _ in range(2)] + ["2023Q3", "2023Q3", "2023Q4", "2023Q4"]
            bulk_insert(conn, "marts.review_tier_distribution", _frame(
                quarters, snapshot_as_of=date(2025, 1, 1), tier=["normal", "gold"] * 6, tier_rank=[1, 2] * 6,
                customers=[3, 2] * 6, customer_share=0.5, revenue=[100.0, 300.0] * 4 + [50.0, 150.0] * 2,
                revenue_share=0.5))
            bulk_insert(conn, "marts.review_winback", _frame(
                ["2024Q1", "2024Q2", "2023Q4"], churn_reason=["price", "service", "price"], candidates=[10, 10, 5],
                returned=[2, 3, 1], return_rate=0.0, revenue_recovered=[100.0, 50.0, 20.0]))
            bulk_insert(conn, "marts.review_elimination", _frame(
                ["2024Q2", "2024Q3"], rule_name="low_value", candidates=[4, 6], revenue=[40.0, 60.0],
                tickets=[3, 0], complaints=[2, 1], still_candidates=[3, 4], improved=[1, 2]))
            bulk_insert(conn, "marts.review_uplift", _frame(
                ["2024Q1", "2024Q2", "2024Q1", "2024Q1"], list="win_back",
                segment_type=["all", "all", "tier", "reason"], segment=["all", "all", "gold", "price"],
                treated=[90, 110, 30, 50], treated_returned=[18, 22, 9, 40], control=[10, 10, 5, 5],
                control_returned=[1, 1, 1, 5], treated_revenue=0.0, control_revenue=0.0, verdict="-"))
            bulk_insert(conn, "marts.review_satisfaction", _frame(
                ["2024Q1", "2024Q2", "2024Q1", "2024Q2", "2023Q4", "2023Q4"],
                tier=["normal", "normal", "gold", "gold", "normal", "gold"], tier_rank=[1, 1, 2, 2, 1, 2],
                customers=[3, 5, 2, 2, 2, 2], survey_responses=[10, 30, 5, 0, 10, 0],
                csat_mean=[4.0, 3.0, 5.0, None, 3.5, None], nps_score=[10.0, -10.0, 50.0, None, 0.0, None],
                complaints=[2, 2, 0, 1, 1, 0], complaints_per_customer=0.0))


def figures(frame: pd.DataFrame) -> dict[tuple[str, str, str], tuple]:
    """(section, metric, tier) -> (value, previous_year_value, change, relative_change), NaN as None."""
    return {(r.section, r.metric, r.tier): tuple(None if pd.isna(v) else v for v in
                                                 (r.value, r.previous_year_value, r.change, r.relative_change))
            for r in frame.itertuples()}


def test_the_year_against_the_year_before_has_the_figures_worked_out_by_hand(warehouse_url: str) -> None:
    seed(warehouse_url)
    with open_engine(warehouse_url) as engine:
        result = build_annual(engine, 2024)
        with engine.connect() as conn:
            stored = read_frame(conn, "SELECT * FROM marts.review_annual WHERE year = 2024")
    got = figures(stored)
    expected = {
        # customers at the close: 2024 normal k3 k4 k5, gold k1 k2; 2023 normal k1 k4, gold k2 k3
        ("customers", "customers", "normal"): (3, 2, 1, 0.5),
        ("customers", "customers", "gold"): (2, 2, 0, 0),
        ("customers", "customers", "(all)"): (5, 4, 1, 0.25),
        ("customers", "customer_share", "normal"): (0.6, 0.5, pytest.approx(0.1), pytest.approx(0.2)),
        # revenue: the stored quarters added up (2023 had two)
        ("revenue", "revenue", "gold"): (1200, 300, 900, 3.0),
        ("revenue", "revenue", "(all)"): (1600, 400, 1200, 3.0),
        ("revenue", "revenue_share", "gold"): (0.75, 0.75, 0, 0),
        # retention: 2024 - normal k1 kept (k4 was not active), gold k2 lost, k3 kept; 2023 - k1 and k2 kept, k3 not
        ("retention", "active_customers", "gold"): (2, 1, 1, 1.0),
        ("retention", "retention_rate", "normal"): (1.0, 1.0, 0, 0),
        ("retention", "retention_rate", "gold"): (0.5, 0.0, 0.5, None),
        ("retention", "retention_rate", "(all)"): (pytest.approx(2 / 3), pytest.approx(2 / 3), 0, 0),
        # migration start to end: 2024 - k1 up, k3 down, k5 new; 2023 - k2 up, k4 new
        ("migration", "upgraded", "normal"): (1, 1, 0, 0),
        ("migration", "downgraded", "gold"): (1, 0, 1, None),
        ("migration", "compared", "(all)"): (4, 3, 1, pytest.approx(1 / 3)),
        ("migration", "upgraded_share", "(all)"): (0.25, pytest.approx(1 / 3), pytest.approx(-1 / 12),
                                                   pytest.approx(-0.25)),
        ("migration", "new_customers", "(all)"): (1, 1, 0, 0),
        ("winback", "candidates", "(all)"): (20, 5, 15, 3.0),
        ("winback", "return_rate", "(all)"): (0.25, 0.2, pytest.approx(0.05), pytest.approx(0.25)),
        ("winback", "revenue_recovered", "(all)"): (150, 20, 130, 6.5),
        # elimination: nothing reviewed in 2023's two quarters; confirmed once each year (the carried row not again)
        ("elimination", "candidates", "(all)"): (10, None, None, None),
        ("elimination", "improved_share", "(all)"): (0.3, None, None, None),
        ("elimination", "complaints", "(all)"): (3, None, None, None),
        ("elimination", "confirmed", "(all)"): (1, 1, 0, 0),
        ("elimination", "confirmed_value_365d", "(all)"): (250, 80, 170, 2.125),
        # uplift pooled over the quarters; the reason segment is not a tier
        ("uplift_win_back", "treated_rate", "(all)"): (0.2, None, None, None),
        ("uplift_win_back", "uplift", "(all)"): (pytest.approx(0.1), None, None, None),
        ("uplift_win_back", "uplift", "gold"): (pytest.approx(0.1), None, None, None),
        # satisfaction: means weighted by answers, a quarter without answers left out of them
        ("satisfaction", "csat_mean", "normal"): (3.25, 3.5, -0.25, pytest.approx(-1 / 14)),
        ("satisfaction", "csat_mean", "gold"): (5.0, None, None, None),
        ("satisfaction", "nps_score", "(all)"): (pytest.approx(50 / 45), 0.0, pytest.approx(50 / 45), None),
        ("satisfaction", "complaints_per_customer", "normal"): (1.0, 0.5, 0.5, 1.0),
        ("satisfaction", "complaints_per_customer", "(all)"): (pytest.approx(5 / 6), 0.25, pytest.approx(7 / 12),
                                                               pytest.approx(7 / 3)),
    }
    for key, figure in expected.items():
        assert got[key] == figure, key
    assert not any(section == "uplift_win_back" and tier == "price" for section, _, tier in got)
    assert set(stored["quarters_reviewed"]) == {"2024Q1,2024Q2,2024Q3,2024Q4"}
    assert set(stored["previous_quarters_reviewed"]) == {"2023Q3,2023Q4"}
    assert stored["complete"].all()
    assert set(stored["note"]) == {"2023: 2 of 4 quarters reviewed"}
    assert dict(zip(stored["tier"], stored["tier_rank"], strict=True)) == {"normal": 1, "gold": 2, "(all)": 0}
    assert result["_meta"]["quarters_reviewed"].iloc[0] == ["2024Q1", "2024Q2", "2024Q3", "2024Q4"]
    rows = result["annual"]  # in reading order: sections, tiers by rank with (all) last, metrics as defined
    assert rows["section"].drop_duplicates().tolist() == ["customers", "revenue", "retention", "migration", "winback",
                                                          "uplift_win_back", "elimination", "satisfaction"]
    assert rows[rows["section"] == "customers"]["tier"].tolist() == ["normal", "normal", "gold", "gold", "(all)",
                                                                       "(all)"]
    assert rows[(rows["section"] == "satisfaction") & (rows["tier"] == "gold")]["metric"].tolist() == [
        "survey_responses", "csat_mean", "nps_score", "complaints", "complaints_per_customer"]
    assert result["_warnings"]["warning"].str.startswith("2023 is incomplete: 2 of its 4 quarters").tolist() == [True]


def test_an_incomplete_year_is_marked_and_a_rebuild_gives_the_same_rows(tmp_path) -> None:
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    seed(url)
    with open_engine(url) as engine:
        first = build_annual(engine, 2023)["annual"]
        again = build_annual(engine, 2023)["annual"]
        with engine.connect() as conn:
            stored = read_frame(conn, "SELECT * FROM marts.review_annual ORDER BY section, metric, tier")
        with pytest.raises(NothingReviewed, match="no quarter of 2022 was reviewed"):
            build_annual(engine, 2022)
    assert first.equals(again)
    assert len(stored) == len(first)  # replaced, not appended
    assert not stored["complete"].any()
    assert set(stored["note"]) == {"incomplete: 2 of 4 quarters of 2023 reviewed; 2022: 0 of 4 quarters reviewed"}
    assert stored["previous_year_value"].isna().sum() > 0


def test_the_warnings_name_what_is_missing() -> None:
    warnings = annual_warnings(2024, ["2024Q4"], [], date(2024, 12, 1), None)
    assert warnings[0].startswith("2024 is incomplete: 1 of its 4 quarters reviewed (2024Q4); 2024Q1, 2024Q2, "
                                  "2024Q3 not.")
    assert "python -m grading review --year 2024" in warnings[0]
    assert warnings[1] == "no quarter of 2023 was reviewed: there is no previous year to compare with."
    assert "as of 2024-12-01, before the year's end" in warnings[2]
    assert "retention and migration over 2024" in warnings[3]
    assert annual_warnings(2024, [f"2024Q{n}" for n in range(1, 5)], [f"2023Q{n}" for n in range(1, 5)],
                           date(2025, 1, 1), date(2024, 1, 1)) == []
