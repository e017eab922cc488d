"""Tier qualification policies: windows, review dates, grace, soft landing, and kept state.

Crafted multi-period histories with the answers worked out by hand, graded in the real
warehouses (DuckDB and PostgreSQL), then a rerun of a middle period and a backfill of every
period, which must reproduce the state exactly.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from grading.features import RULE_FEATURES, compute_features
from grading.frames import read_frame
from grading.qualification import Qualification, next_anniversary
from grading.rules.files import load_tier_rules
from grading.rules.model import TierRules
from grading.settings import include_dir
from grading.tiers import assign_tiers, damp, grade
from grading.warehouse import open_engine
from tests.helpers import load_raw

CALENDAR_YEAR = include_dir() / "rules" / "examples" / "tiers_calendar_year.yaml"


def _rules(tmp_path: Path, qualification: str | None = None) -> TierRules:
    text = CALENDAR_YEAR.read_text(encoding="utf-8")
    if qualification is not None:
        text = text[:text.index("qualification:")] + qualification
    path = tmp_path / "tiers.yaml"
    path.write_text(text, encoding="utf-8")
    return load_tier_rules(path, RULE_FEATURES)


def test_window_params_and_review_dates() -> None:
    as_of = date(2025, 5, 1)  # the last counted day is 30 April
    assert Qualification("rolling", days=30).window_params(as_of)["window_start"] == date(2025, 4, 1)
    assert Qualification("calendar_year").window_params(as_of)["window_start"] == date(2025, 1, 1)
    assert Qualification("calendar_quarter").window_params(as_of)["window_start"] == date(2025, 4, 1)
    assert Qualification("calendar_year").window_params(date(2025, 1, 1))["window_start"] == date(2024, 1, 1)
    started = pd.Series(pd.to_datetime(["2020-02-29", "2024-05-01", "2024-05-02"]))
    assert Qualification(review="every_period").next_review(as_of, started).isna().all()
    assert set(Qualification(review="calendar_year").next_review(as_of, started)) == {pd.Timestamp(2026, 1, 1)}
    assert set(Qualification(review="calendar_quarter").next_review(date(2025, 12, 1), started)) == \
        {pd.Timestamp(2026, 1, 1)}
    # strictly after the as-of date; 29 February falls on the 28th in other years
    assert next_anniversary(as_of, started).tolist() == [pd.Timestamp(2026, 2, 28), pd.Timestamp(2026, 5, 1),
                                                         pd.Timestamp(2025, 5, 2)]
    assert next_anniversary(date(2027, 6, 1), started.iloc[:1]).tolist() == [pd.Timestamp(2028, 2, 29)]


def test_quarterly_review_holds_a_downgrade_until_the_quarter_turns(tmp_path: Path) -> None:
    rules = _rules(tmp_path, "qualification: {window: rolling, days: 365, review: calendar_quarter}\n")
    state = pd.DataFrame(columns=["customer_id", "tier", "periods_below", "tier_since", "review_date"])
    held = []
    for as_of, spend in ((date(2025, 1, 15), 20_000.0), (date(2025, 2, 15), 0.0), (date(2025, 3, 15), 0.0),
                         (date(2025, 4, 15), 0.0)):
        assigned = assign_tiers(pd.DataFrame({"customer_id": ["q"], "monetary_window": [spend]}), rules)
        state = damp(assigned, state, rules, as_of)
        held.append((state["tier"].iloc[0], str(state["review_date"].iloc[0])))
    assert held == [("gold", "2025-04-01"), ("gold", "2025-04-01"), ("gold", "2025-04-01"),
                    ("normal", "2025-07-01")]
    assert state["tier_reason"].iloc[0].startswith("below_gold_year")


CUSTOMERS = pd.DataFrame({
    "customer_id": ["R", "G", "S", "U"],
    "created_at": pd.Timestamp("2023-01-01"),
    "region": "North", "industry": "retail", "channel": "online",
})
ORDERS = pd.DataFrame([
    ("R1", "R", "2023-05-01 10:00", 15_000.0),   # gold on 2023
    ("G1", "G", "2023-05-01 10:00", 60_000.0),   # platinum on 2023 ...
    ("G2", "G", "2025-01-20 10:00", 60_000.0),   # ... makes up the shortfall within the grace month
    ("S1", "S", "2023-05-01 10:00", 60_000.0),   # platinum on 2023, nothing after: soft landing
    ("U1", "U", "2025-02-15 10:00", 20_000.0),   # gold in February 2025: upgraded at once
], columns=["order_id", "customer_id", "order_ts", "amount"]).assign(
    order_ts=lambda f: pd.to_datetime(f["order_ts"]), status="completed", margin=0.0)
PERIODS = (date(2024, 1, 1), date(2024, 6, 1), date(2025, 1, 1), date(2025, 2, 1), date(2025, 3, 1))
# (held tier, since, next review) per period, worked out by hand for a calendar-year window,
# a 1 January review, 31 days' grace and at most one tier down.
EXPECTED = {
    "R": [("gold", "2024-01-01", "2025-01-01"), ("gold", "2024-01-01", "2025-01-01"),
          ("gold", "2024-01-01", "2025-01-01"),                 # 2024 spend 0: in grace until 1 February
          ("normal", "2025-02-01", "2026-01-01"), ("normal", "2025-02-01", "2026-01-01")],
    "G": [("platinum", "2024-01-01", "2025-01-01"), ("platinum", "2024-01-01", "2025-01-01"),
          ("platinum", "2024-01-01", "2025-01-01"),
          ("platinum", "2024-01-01", "2026-01-01"),             # requalified in the grace month: renewed
          ("platinum", "2024-01-01", "2026-01-01")],            # 2025 to date is enough
    "S": [("platinum", "2024-01-01", "2025-01-01"), ("platinum", "2024-01-01", "2025-01-01"),
          ("platinum", "2024-01-01", "2025-01-01"),
          ("gold", "2025-02-01", "2026-01-01"),                 # one tier down, not to normal
          ("gold", "2025-02-01", "2026-01-01")],                # below again, but the next review is 2026
    "U": [("normal", "2024-01-01", "2025-01-01"), ("normal", "2024-01-01", "2025-01-01"),
          ("normal", "2024-01-01", "2026-01-01"), ("normal", "2024-01-01", "2026-01-01"),
          ("gold", "2025-03-01", "2026-01-01")],                # upgrades take effect at once
}


def _grade_all(url: str, rules: TierRules, periods: tuple[date, ...]) -> None:
    with open_engine(url) as engine:
        for as_of in periods:
            compute_features(engine, as_of, rules.qualification)
            grade(engine, as_of, rules)


def _state(url: str) -> pd.DataFrame:
    with open_engine(url) as engine, engine.connect() as conn:
        frame = read_frame(conn, "SELECT as_of_date, customer_id, tier, tier_since, review_date, periods_below, "
                                 "assigned_tier, tier_reason, qualifying_spend, spend_to_keep_tier "
                                 "FROM staging.customer_tiers")
    for column in ("as_of_date", "tier_since", "review_date"):
        frame[column] = pd.to_datetime(frame[column]).dt.strftime("%Y-%m-%d")
    return frame.sort_values(["as_of_date", "customer_id"], ignore_index=True)


def test_calendar_year_policy_over_periods_with_rerun_and_backfill(warehouse_url: str, tmp_path: Path) -> None:
    rules = _rules(tmp_path)
    load_raw(warehouse_url, customers=CUSTOMERS, orders=ORDERS)
    _grade_all(warehouse_url, rules, PERIODS)
    state = _state(warehouse_url)
    for customer, expected in EXPECTED.items():
        mine = state[state["customer_id"] == customer]
        assert list(zip(mine["tier"], mine["tier_since"], mine["review_date"], strict=True)) == expected, customer
    row = state[(state["customer_id"] == "R") & (state["as_of_date"] == "2025-01-01")].iloc[0]
    assert row["tier_reason"].startswith("held at gold until the review on 2025-02-01: the rules assign normal")
    assert (row["qualifying_spend"], row["spend_to_keep_tier"]) == (0.0, 10_000.0)
    g = state[(state["customer_id"] == "G") & (state["as_of_date"] == "2025-02-01")].iloc[0]
    assert g["qualifying_spend"] == 60_000.0

    _grade_all(warehouse_url, rules, (date(2025, 1, 1),))  # rerun a middle period
    pd.testing.assert_frame_equal(_state(warehouse_url), state)
    with open_engine(warehouse_url) as engine, engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM staging.customer_tiers")
    _grade_all(warehouse_url, rules, PERIODS)  # a backfill of every period, in order
    pd.testing.assert_frame_equal(_state(warehouse_url), state)


def test_anniversary_policy(warehouse_url: str, tmp_path: Path) -> None:
    """Qualify on the year since the start-date anniversary; review on the anniversary."""
    rules = _rules(tmp_path, "qualification: {window: anniversary, review: anniversary}\n")
    customers = CUSTOMERS.iloc[:1].assign(customer_id="A", created_at=pd.Timestamp("2023-04-15 09:00"))
    orders = ORDERS.iloc[:1].assign(order_id="A1", customer_id="A", order_ts=pd.Timestamp("2023-06-01"))
    load_raw(warehouse_url, customers=customers, orders=orders)
    _grade_all(warehouse_url, rules, (date(2024, 4, 1), date(2024, 5, 1), date(2024, 6, 1)))
    state = _state(warehouse_url)
    assert list(zip(state["tier"], state["tier_since"], state["review_date"], strict=True)) == [
        ("gold", "2024-04-01", "2024-04-15"),    # the year from 2023-04-15 holds the 15,000 order
        ("normal", "2024-05-01", "2025-04-15"),  # the year from 2024-04-15 holds nothing; reviewed on the 15th
        ("normal", "2024-05-01", "2025-04-15"),
    ]


@pytest.mark.parametrize("policy", [
    "qualification: {window: calendar_quarter, review: calendar_quarter, grace_days: 10}\n",
    "qualification: {window: rolling, days: 180, review: every_period}\n",
])
def test_every_policy_loads_and_describes_itself(tmp_path: Path, policy: str) -> None:
    rules = _rules(tmp_path, policy)
    assert "qualifying spend over" in rules.qualification.describe()
