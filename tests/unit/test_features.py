"""Features computed in the warehouse, against values worked out by hand, on DuckDB and PostgreSQL."""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd
import pytest

from grading.features import compute_features, load_features
from grading.qualification import Qualification
from grading.warehouse import open_engine
from tests.helpers import load_raw

AS_OF = date(2025, 1, 1)  # window: [2024-01-02 00:00, 2025-01-01 00:00) - 2024 is a leap year

CUSTOMERS = pd.DataFrame({
    "customer_id": ["A", "B", "C", "D", "E"],
    "created_at": pd.to_datetime(
        ["2023-01-01", "2024-06-01", "2024-01-01", "2024-12-31 23:00", "2025-01-01"], format="ISO8601"),
    "region": ["North", "South", "East", "West", "North"],
    "industry": ["retail"] * 5,
    "channel": ["online"] * 5,
})
ORDERS = pd.DataFrame([
    ("O1", "A", "2024-01-02 00:00:00", "completed", 100.00, 10.0),   # first instant of the window: in
    ("O2", "A", "2024-01-01 23:59:59", "completed", 200.00, 20.0),   # just before the window: lifetime only
    ("O3", "A", "2024-12-31 23:59:59", "completed", 300.00, 30.0),   # last instant before the as-of: in
    ("O4", "A", "2025-01-01 00:00:00", "completed", 999.00, 99.0),   # on the as-of instant: not yet
    ("O5", "A", "2024-06-01 10:00:00", "cancelled", 50.00, 5.0),     # cancelled: never counts
    ("O6", "A", "2024-07-01 10:00:00", "refunded", 70.00, 7.0),      # a refund in the window
    ("O7", "C", "2024-03-01 10:00:00", "refunded", 80.00, 8.0),      # C has refunds only
    ("O8", "D", "2024-12-31 23:30:00", "completed", 400.00, None),   # D ties with A on value and recency
], columns=["order_id", "customer_id", "order_ts", "status", "amount", "margin"])
ORDERS["order_ts"] = pd.to_datetime(ORDERS["order_ts"], format="ISO8601")
TICKETS = pd.DataFrame([
    ("T1", "A", "2024-05-01", "2024-05-02", "complaint", "high", True),
    ("T2", "A", "2024-06-01", None, "inquiry", "low", False),
    ("T3", "A", "2023-12-01", "2023-12-02", "complaint", "low", True),  # before the window
], columns=["ticket_id", "customer_id", "opened_at", "closed_at", "category", "severity", "resolved"]).assign(
    opened_at=lambda f: pd.to_datetime(f["opened_at"]), closed_at=lambda f: pd.to_datetime(f["closed_at"]))
SURVEYS = pd.DataFrame([
    ("S1", "A", "2024-02-01", 4, 9),
    ("S2", "A", "2024-03-01", 5, 10),
    ("S3", "A", "2023-06-01", 1, 0),  # before the window
    ("S4", "D", "2024-12-31 23:45", 3, 6),
], columns=["survey_id", "customer_id", "responded_at", "csat", "nps"])
SURVEYS["responded_at"] = pd.to_datetime(SURVEYS["responded_at"], format="ISO8601")
INTERACTIONS = pd.DataFrame([
    ("I1", "A", "2024-01-02 00:00:00", "call"),    # first instant of the window: in
    ("I2", "A", "2024-01-01 23:59:59", "visit"),   # just before it: out
    ("I3", "A", "2025-01-01 00:00:00", "call"),    # on the as-of instant: not yet
    ("I4", "D", "2024-12-31 23:50:00", None),      # no kind still counts
], columns=["interaction_id", "customer_id", "ts", "kind"])
INTERACTIONS["ts"] = pd.to_datetime(INTERACTIONS["ts"], format="ISO8601")

EXPECTED = {
    #     tenure recency o365 m365  mar365 ref olife mlife tick compl surv csat  nps  r  f  m
    "A": (731,   1,      2,   400.0, 40.0, 1,  3,    600.0, 2,   1,    2,   4.5,  9.5, 5, 5, 5),
    "B": (214,   None,   0,   0.0,   0.0,  0,  0,    0.0,   0,   0,    0,   None, None, 1, 1, 1),
    "C": (366,   None,   0,   0.0,   0.0,  1,  0,    0.0,   0,   0,    0,   None, None, 1, 1, 1),
    "D": (1,     1,      1,   400.0, 0.0,  0,  1,    400.0, 0,   0,    1,   3.0,  6.0, 5, 3, 5),
}
COLUMNS = ("tenure_days", "recency_days", "orders_365d", "monetary_365d", "margin_365d", "refunds_365d",
           "orders_lifetime", "monetary_lifetime", "tickets_365d", "complaints_365d", "surveys_365d",
           "csat_mean_365d", "nps_mean_365d", "r_score", "f_score", "m_score")


# aov, monetary_90d, monetary_prev_90d, refund_rate, complaint_rate, resolution_hours, open_tickets,
# interactions, orders and value in the (default, rolling 365-day) qualification window
MORE_COLUMNS = ("avg_order_value_365d", "monetary_90d", "monetary_prev_90d", "refund_rate_365d",
                "complaint_rate_365d", "resolution_hours_365d", "open_tickets", "interactions_365d",
                "orders_window", "monetary_window")
EXPECTED_MORE = {
    "A": (200.0, 300.0, 0.0, 1 / 3, 0.5, 24.0, 1, 1, 2, 400.0),     # T1 took 24 h; T2 is still open
    "B": (None, 0.0, 0.0, None, None, None, 0, 0, 0, 0.0),
    "C": (None, 0.0, 0.0, 1.0, None, None, 0, 0, 0, 0.0),         # refunds only: rate 1/(0+1)
    "D": (400.0, 400.0, 0.0, 0.0, 0.0, None, 0, 1, 1, 400.0),
}


def _value(v):
    return None if pd.isna(v) else float(v)


def test_features_match_hand_computed_values(warehouse_url: str) -> None:
    load_raw(warehouse_url, customers=CUSTOMERS, orders=ORDERS, tickets=TICKETS, surveys=SURVEYS,
             interactions=INTERACTIONS)
    with open_engine(warehouse_url) as engine:
        assert compute_features(engine, AS_OF) == 4  # E was created on the as-of instant: not yet a customer
        with engine.connect() as conn:
            frame = load_features(conn, AS_OF).set_index("customer_id")
    assert sorted(frame.index) == ["A", "B", "C", "D"]
    for customer, expected in EXPECTED.items():
        got = tuple(_value(frame.loc[customer, c]) for c in COLUMNS)
        want = tuple(None if v is None else float(v) for v in expected)
        assert got == want, f"customer {customer}: {dict(zip(COLUMNS, got, strict=True))}"
        got = tuple(_value(frame.loc[customer, c]) for c in MORE_COLUMNS)
        want = tuple(None if v is None else float(v) for v in EXPECTED_MORE[customer])
        assert got == want, f"customer {customer}: {dict(zip(MORE_COLUMNS, got, strict=True))}"
    assert frame.loc["A", "last_order_at"] == datetime(2024, 12, 31, 23, 59, 59)


# Per qualification window: (window_start, orders_window, monetary_window) of A, B, C and D as of
# 2025-01-01 (the last counted day is 2024-12-31).
WINDOWS = {
    Qualification("rolling", days=365): {
        "A": ("2024-01-02", 2, 400.0), "B": ("2024-01-02", 0, 0.0), "D": ("2024-01-02", 1, 400.0)},
    Qualification("rolling", days=90): {  # from 2024-10-03: only O3 of A
        "A": ("2024-10-03", 1, 300.0), "B": ("2024-10-03", 0, 0.0), "D": ("2024-10-03", 1, 400.0)},
    Qualification("calendar_year"): {  # all of 2024: O2 (1 January, 23:59:59) counts too
        "A": ("2024-01-01", 3, 600.0), "B": ("2024-01-01", 0, 0.0), "D": ("2024-01-01", 1, 400.0)},
    Qualification("calendar_quarter"): {
        "A": ("2024-10-01", 1, 300.0), "B": ("2024-10-01", 0, 0.0), "D": ("2024-10-01", 1, 400.0)},
    Qualification("anniversary"): {  # A since 2023-01-01, B since 2024-06-01, D since 2024-12-31
        "A": ("2024-01-01", 3, 600.0), "B": ("2024-06-01", 0, 0.0), "C": ("2024-01-01", 0, 0.0),
        "D": ("2024-12-31", 1, 400.0)},
}


@pytest.mark.parametrize("window", list(WINDOWS), ids=lambda w: f"{w.window}-{w.days}")
def test_qualification_windows_match_hand_computed_values(warehouse_url: str, window: Qualification) -> None:
    load_raw(warehouse_url, customers=CUSTOMERS, orders=ORDERS)
    with open_engine(warehouse_url) as engine:
        compute_features(engine, AS_OF, window)
        with engine.connect() as conn:
            frame = load_features(conn, AS_OF).set_index("customer_id")
    got = {c: (str(pd.Timestamp(frame.loc[c, "window_start"]).date()), int(frame.loc[c, "orders_window"]),
               float(frame.loc[c, "monetary_window"])) for c in WINDOWS[window]}
    assert got == WINDOWS[window]
    # the fixed 365-day figures do not move with the qualification window
    assert (frame.loc["A", "orders_365d"], frame.loc["A", "monetary_365d"]) == (2, 400.0)


def test_anniversary_windows_across_29_february(warehouse_url: str) -> None:
    """As of 2025-03-01: a 29 February start has its 2025 anniversary on 28 February; a
    1 March start's anniversary is tomorrow, so its window began on 1 March 2024."""
    customers = pd.DataFrame({"customer_id": ["F", "G"],
                              "created_at": pd.to_datetime(["2020-02-29 10:00", "2021-03-01 00:00"]),
                              "region": "North", "industry": "retail", "channel": "online"})
    orders = pd.DataFrame([
        ("F1", "F", "2025-02-28 12:00:00", "completed", 10.0, 1.0),   # in
        ("F2", "F", "2025-02-27 23:59:59", "completed", 20.0, 1.0),   # out
        ("G1", "G", "2024-03-01 00:00:00", "completed", 40.0, 1.0),   # in
        ("G2", "G", "2024-02-29 23:59:59", "completed", 80.0, 1.0),   # out
    ], columns=["order_id", "customer_id", "order_ts", "status", "amount", "margin"])
    orders["order_ts"] = pd.to_datetime(orders["order_ts"])
    load_raw(warehouse_url, customers=customers, orders=orders)
    as_of = date(2025, 3, 1)
    with open_engine(warehouse_url) as engine:
        compute_features(engine, as_of, Qualification("anniversary"))
        with engine.connect() as conn:
            frame = load_features(conn, as_of).set_index("customer_id")
    starts = pd.to_datetime(frame["window_start"]).dt.strftime("%Y-%m-%d")
    assert (starts["F"], frame.loc["F", "monetary_window"]) == ("2025-02-28", 10.0)
    assert (starts["G"], frame.loc["G", "monetary_window"]) == ("2024-03-01", 40.0)


def test_rerunning_features_replaces_the_period(warehouse_url: str) -> None:
    load_raw(warehouse_url, customers=CUSTOMERS, orders=ORDERS, tickets=TICKETS, surveys=SURVEYS)
    with open_engine(warehouse_url) as engine:
        compute_features(engine, AS_OF)
        compute_features(engine, date(2024, 7, 1))
        assert compute_features(engine, AS_OF) == 4
        with engine.connect() as conn:
            assert len(load_features(conn, AS_OF)) == 4
            assert len(load_features(conn, date(2024, 7, 1))) == 3  # A, B and C existed before July


def test_scores_share_ties_and_do_not_depend_on_row_order(warehouse_url: str) -> None:
    """Ten customers, values 1..5 twice each: equal values share a score and the top value scores 5."""
    ids = [f"K{i:02d}" for i in range(10)]
    customers = pd.DataFrame({"customer_id": ids, "created_at": pd.Timestamp("2023-01-01"),
                              "region": "North", "industry": "retail", "channel": "online"})
    orders = pd.DataFrame([
        (f"{cid}-{n}", cid, pd.Timestamp("2024-06-01") + pd.Timedelta(hours=n), "completed", 10.0, 1.0)
        for i, cid in enumerate(ids) for n in range(i % 5 + 1)
    ], columns=["order_id", "customer_id", "order_ts", "status", "amount", "margin"]).sample(frac=1, random_state=3)
    load_raw(warehouse_url, customers=customers, orders=orders)
    with open_engine(warehouse_url) as engine:
        compute_features(engine, AS_OF)
        with engine.connect() as conn:
            frame = load_features(conn, AS_OF)
    by_orders = frame.groupby("orders_365d")["f_score"].agg(["min", "max"])
    assert (by_orders["min"] == by_orders["max"]).all()
    # ceil(5 * share at most): 1 order -> ceil(5*2/10)=1, 2 -> 2, 3 -> 3, 4 -> 4, 5 -> 5
    assert by_orders["min"].to_dict() == {1: 1, 2: 2, 3: 3, 4: 4, 5: 5}
    assert frame.groupby("orders_365d")["m_score"].first().to_dict() == {1: 1, 2: 2, 3: 3, 4: 4, 5: 5}


@pytest.mark.parametrize("as_of", [date(2024, 1, 2), date(2025, 1, 1)])
def test_customers_without_orders_still_appear(warehouse_url: str, as_of: date) -> None:
    load_raw(warehouse_url, customers=CUSTOMERS.iloc[:3])
    with open_engine(warehouse_url) as engine:
        compute_features(engine, as_of)
        with engine.connect() as conn:
            frame = load_features(conn, as_of)
    assert set(frame["orders_365d"]) == {0}
    assert set(frame["r_score"]) == {1}


def test_features_and_tiers_are_identical_on_both_warehouses(tmp_path, grading_home, pg_url) -> None:
    """The same SQL, the same rules: DuckDB and PostgreSQL must agree to the last digit."""
    from datetime import datetime as dt

    from grading import demo
    from grading.extract import extract
    from grading.rules.pins import load_rules
    from grading.tiers import assign_tiers
    from grading.warehouse import migrate
    from tests.helpers import normalised

    source_url = f"sqlite:///{tmp_path / 'source.sqlite'}"
    demo.write_source(demo.generate(customers=800, seed=21), source_url)
    tier_rules, _ = load_rules()
    results = []
    for url in (f"duckdb:///{tmp_path / 'w.duckdb'}", pg_url):
        with open_engine(source_url) as source, open_engine(url) as engine:
            migrate(engine)
            extract(source, engine, dt(2025, 1, 1), b"k", batch=dt(2025, 1, 1, 1))
            compute_features(engine, AS_OF)
            with engine.connect() as conn:
                frame = load_features(conn, AS_OF).drop(columns=["as_of_date", "churn_propensity"])
        results.append((normalised(frame), normalised(assign_tiers(frame, tier_rules))))
    (duck_features, duck_tiers), (pg_features, pg_tiers) = results
    pd.testing.assert_frame_equal(duck_features, pg_features)
    pd.testing.assert_frame_equal(duck_tiers, pg_tiers)


def test_stored_columns_keeps_the_snapshot_columns_once_in_order() -> None:
    from grading.features import stored_columns

    assert stored_columns(["customer_id", None, "tier_year_ago", "monetary_365d", "customer_id", "churn_propensity",
                           "last_order_at"]) == ("customer_id", "monetary_365d", "last_order_at")
