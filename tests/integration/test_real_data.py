"""Three real exports graded end to end through their mappings (include/mappings/), on the
embedded DuckDB warehouse and on PostgreSQL.

Each test points the pipeline at a data set in ../shared/data with GRADING_SOURCE_MAPPING,
runs customer_grading for several as-of dates (one of them through the Airflow DAG with
dag.test()) and quarterly_review, and checks what was published against figures worked
out here from the raw files with plain Python: the csv module, decimal and zoneinfo. No
code of the pipeline is used to compute an expected value.
"""

from __future__ import annotations

import csv
import gzip
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from itertools import combinations
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from grading import pipeline
from grading.frames import read_frame
from grading.review.quarters import Quarter
from grading.settings import basket_settings
from grading.warehouse import open_engine
from tests.helpers import ROOT, load_dag

DATA = ROOT.parent / "shared" / "data"
CENT = Decimal("0.01")
LOOKBACK = timedelta(days=3)  # grading.extract's default look-back

pytestmark = pytest.mark.skipif(
    not DATA.is_dir(), reason=f"the real data sets are not at {DATA}: check out the shared data next to the project")


# ----------------------------------------------------------------------------------------
# Plain-Python expectations


def cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_EVEN)


def to_utc(text: str, fmt: str, zone: str) -> datetime:
    """A local wall-clock time to naive UTC (fold=0 for repeated or skipped times, like zoneinfo)."""
    local = datetime.strptime(text, fmt)
    if zone == "UTC":
        return local
    return local.replace(tzinfo=ZoneInfo(zone)).astimezone(UTC).replace(tzinfo=None)


@dataclass
class Order:
    customer: str
    ts: datetime
    status: str = "completed"
    amount: Decimal = Decimal(0)
    items: set[str] = field(default_factory=set)  # what its lines hold, as the basket analysis counts it


@dataclass
class Expected:
    """Orders, customers (first seen) and service rows of a data set, as the mapping should read them."""

    orders: dict[str, Order] = field(default_factory=dict)
    first_seen: dict[str, datetime] = field(default_factory=dict)
    surveys: list[tuple[str, datetime, int]] = field(default_factory=list)  # customer, responded, csat
    tickets: list[tuple[str, datetime, str]] = field(default_factory=list)  # customer, opened, category

    def customers_before(self, cutoff: datetime) -> set[str]:
        return {c for c, ts in self.first_seen.items() if ts < cutoff}

    def features(self, as_of: date) -> pd.DataFrame:
        """Recency, frequency, monetary, refunds, tickets, complaints and CSAT per customer as of ``as_of``."""
        cutoff = datetime.combine(as_of, datetime.min.time())
        start = cutoff - timedelta(days=365)
        rows: dict[str, dict] = {c: {"orders_365d": 0, "monetary_365d": Decimal(0), "refunds_365d": 0,
                                     "last": None, "tickets_365d": 0, "complaints_365d": 0, "csat": []}
                                 for c in self.customers_before(cutoff)}
        for order in self.orders.values():
            if order.ts >= cutoff:
                continue
            row = rows[order.customer]
            if order.status == "completed":
                row["last"] = max(row["last"] or order.ts, order.ts)
                if order.ts >= start:
                    row["orders_365d"] += 1
                    row["monetary_365d"] += order.amount
            if order.status == "refunded" and order.ts >= start:
                row["refunds_365d"] += 1
        for customer, ts, category in self.tickets:
            if start <= ts < cutoff:
                rows[customer]["tickets_365d"] += 1
                rows[customer]["complaints_365d"] += category == "complaint"
        for customer, ts, csat in self.surveys:
            if start <= ts < cutoff:
                rows[customer]["csat"].append(csat)
        for row in rows.values():
            last, scores = row.pop("last"), row.pop("csat")
            row["recency_days"] = None if last is None else (as_of - last.date()).days
            row["monetary_365d"] = float(row["monetary_365d"])
            row["csat_mean_365d"] = round(sum(scores) / len(scores), 4) if scores else None
        return pd.DataFrame.from_dict(rows, orient="index").astype(object).sort_index()


def superstore() -> Expected:
    """Order lines summed per Order ID; an order belongs to the customer on its first line."""
    expected = Expected()
    with open(DATA / "superstore" / "superstore.csv", encoding="utf-8-sig", newline="") as handle:
        for line in csv.DictReader(handle):
            ts = to_utc(line["Order Date"], "%d/%m/%y", "UTC")
            order = expected.orders.setdefault(line["Order ID"], Order(line["Customer ID"], ts))
            order.amount += Decimal(line["Sales"])
            order.items.add(line["Sub-Category"])
            customer = line["Customer ID"]
            expected.first_seen[customer] = min(expected.first_seen.get(customer, ts), ts)
    for order in expected.orders.values():
        order.amount = cents(order.amount)
    return expected


@dataclass
class OnlineRetail(Expected):
    guest_lines: list[datetime] = field(default_factory=list)  # lines without a CustomerID


def online_retail() -> OnlineRetail:
    """Invoice lines summed per invoice; C invoices are refunds; lines without a customer are counted apart."""
    expected, utc = OnlineRetail(), {}
    with gzip.open(DATA / "online_retail" / "online_retail.csv.gz", "rt", encoding="utf-8", newline="") as handle:
        for invoice, stock_code, _, quantity, when, price, customer, _ in csv.reader(handle):
            if invoice == "InvoiceNo":
                continue
            if when not in utc:
                utc[when] = to_utc(when, "%Y-%m-%d %H:%M:%S", "Europe/London")
            ts = utc[when]
            if not customer:
                expected.guest_lines.append(ts)
                continue
            order = expected.orders.get(invoice)
            if order is None:
                order = expected.orders[invoice] = Order(customer, ts, "refunded" if invoice.startswith("C")
                                                         else "completed")
            order.ts = min(order.ts, ts)
            order.amount += Decimal(quantity) * Decimal(price)
            if int(quantity) > 0:
                order.items.add(stock_code)
            expected.first_seen[customer] = min(expected.first_seen.get(customer, ts), ts)
    for order in expected.orders.values():
        order.amount = cents(abs(order.amount))
    return expected


def olist() -> Expected:
    """Orders per person (customer_unique_id), reviews as CSAT, late deliveries and cancellations as tickets."""
    folder, zone, fmt = DATA / "olist", "America/Sao_Paulo", "%Y-%m-%d %H:%M:%S"

    def rows(name: str) -> list[dict]:
        with open(folder / f"olist_{name}_dataset.csv", encoding="utf-8", newline="") as handle:
            return list(csv.DictReader(handle))

    person = {r["customer_id"]: r["customer_unique_id"] for r in rows("customers")}
    paid: dict[str, Decimal] = defaultdict(Decimal)
    for payment in rows("order_payments"):
        paid[payment["order_id"]] += Decimal(payment["payment_value"])
    items: dict[str, Decimal] = defaultdict(Decimal)
    products: dict[str, set[str]] = defaultdict(set)
    for item in rows("order_items"):
        items[item["order_id"]] += Decimal(item["price"]) + Decimal(item["freight_value"])
        products[item["order_id"]].add(item["product_id"])
    expected, owner, bought_at = Expected(), {}, {}
    statuses = {"canceled": "cancelled", "unavailable": "cancelled"}
    for order in rows("orders"):
        who = owner[order["order_id"]] = person[order["customer_id"]]
        bought = bought_at[order["order_id"]] = to_utc(order["order_purchase_timestamp"], fmt, zone)
        amount = paid.get(order["order_id"], items.get(order["order_id"], Decimal(0)))
        expected.orders[order["order_id"]] = Order(who, bought, statuses.get(order["order_status"], "completed"),
                                                   cents(amount), products[order["order_id"]])
        expected.first_seen[who] = min(expected.first_seen.get(who, bought), bought)
        delivered, promised = order["order_delivered_customer_date"], order["order_estimated_delivery_date"]
        if delivered and promised and datetime.strptime(delivered, fmt) > datetime.strptime(promised, fmt):
            expected.tickets.append((who, to_utc(delivered, fmt, zone), "complaint"))
        if order["order_status"] in ("canceled", "unavailable"):
            expected.tickets.append((who, bought, "after-sales"))
    for review in rows("order_reviews"):
        answered = to_utc(review["review_answer_timestamp"], fmt, zone)
        if answered >= bought_at[review["order_id"]]:  # a few are answered before the order was placed
            expected.surveys.append((owner[review["order_id"]], answered, int(review["review_score"])))
    return expected


# ----------------------------------------------------------------------------------------
# Running the pipeline


@pytest.fixture
def use_mapping(monkeypatch: pytest.MonkeyPatch, grading_home: Path, warehouse_url: str):
    """Point the pipeline (CLI, stages and DAG tasks alike) at a shipped mapping and the warehouse."""
    def configure(name: str) -> pipeline.Connections:
        monkeypatch.setenv("GRADING_SOURCE_MAPPING", name)
        monkeypatch.setenv("GRADING_DATA_DIR", str(DATA))
        monkeypatch.setenv("AIRFLOW_CONN_GRADING_WAREHOUSE", warehouse_url)
        conns = pipeline.Connections.resolve()
        assert conns.source_mapping == str(ROOT / "include" / "mappings" / f"{name}.yaml")
        return conns
    return configure


# A manual run after the DAGs' start_date (2024-01-01): Airflow creates no task for a logical
# date before it, so the real data's past periods are named by the run's params instead.
RUN_DATE = datetime(2025, 1, 1, tzinfo=UTC)


def run_dag(dag_id: str, **conf) -> str:
    """Run a DAG with dag.test() and return its state; every task must have run."""
    dag = load_dag(dag_id)
    run = dag.test(logical_date=RUN_DATE, run_conf=conf)
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert states
    assert set(states.values()) == {"success"}, states
    return str(run.state)


def published_features(url: str, as_of: date) -> pd.DataFrame:
    """The published feature snapshot of ``as_of``, indexed by source customer id (via ops.customer_keys)."""
    with open_engine(url) as engine, engine.connect() as conn:
        frame = read_frame(conn, "SELECT k.customer_id, f.* FROM marts.customer_features_snapshot AS f "
                                 "JOIN ops.customer_keys AS k ON k.customer_key = f.customer_key "
                                 "WHERE f.as_of_date = :as_of", {"as_of": as_of})
    return frame.set_index("customer_id").sort_index()


def query(url: str, sql: str, **params) -> pd.DataFrame:
    with open_engine(url) as engine, engine.connect() as conn:
        return read_frame(conn, sql, params)


def assert_features(got: pd.DataFrame, want: pd.DataFrame, columns: list[str]) -> None:
    """Every customer, every column: counts exactly, money to the cent, means to 1e-4."""
    assert sorted(got.index) == sorted(want.index)
    got = got.loc[want.index]
    for column in columns:
        mine, theirs = got[column].astype(object), want[column].astype(object)
        missing = mine.isna() != theirs.isna()
        assert not missing.any(), f"{column}: missing for {list(mine.index[missing])[:5]}"
        present = theirs.notna()
        diff = (mine[present].astype(float) - theirs[present].astype(float)).abs()
        assert (diff < 0.005).all(), f"{column} differs for {list(diff.index[diff >= 0.005])[:5]}"


def check_review(url: str, quarter: Quarter, expected: Expected, customers: int) -> None:
    """The quarter's review covers the graded customers and the completed revenue of the quarter."""
    table = query(url, "SELECT * FROM marts.review_tier_distribution WHERE quarter = :q ORDER BY tier_rank",
                  q=str(quarter))
    start = datetime.combine(quarter.start, datetime.min.time())
    end = datetime.combine(quarter.end, datetime.min.time())
    revenue = sum(o.amount for o in expected.orders.values() if o.status == "completed" and start <= o.ts < end)
    assert int(table["customers"].sum()) == customers
    assert float(table["revenue"].sum()) == pytest.approx(float(revenue), abs=0.01)
    assert float(table["revenue_share"].sum()) == pytest.approx(1.0)


def check_baskets(url: str, quarter: Quarter, expected: Expected) -> pd.DataFrame:
    """marts.tier_basket_rules holds exactly the rules counted here from the export: baskets = the
    quarter's completed orders with items, by the tier of their customer at the close; pairs among
    each tier's 100 most-bought items in at least 1 % and 5 of its baskets; the 50 best by lift."""
    got = query(url, "SELECT * FROM marts.tier_basket_rules WHERE quarter = :q", q=str(quarter))
    settings = basket_settings()
    tiers = query(url, "SELECT k.customer_id, t.tier FROM marts.customer_tier_snapshot AS t "
                       "JOIN ops.customer_keys AS k ON k.customer_key = t.customer_key WHERE t.as_of_date = :d",
                  d=quarter.end).set_index("customer_id")["tier"].to_dict()
    start, end = (datetime.combine(d, datetime.min.time()) for d in (quarter.start, quarter.end))
    by_tier: dict[str, list[set[str]]] = defaultdict(list)
    for order in expected.orders.values():
        if order.status == "completed" and start <= order.ts < end and order.items and order.customer in tiers:
            by_tier[tiers[order.customer]].append(order.items)
    want = []
    for tier, baskets in by_tier.items():
        n, counts = len(baskets), Counter(item for basket in baskets for item in basket)
        top = {item for item, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:settings["top_items"]]
               if c / n >= settings["min_support"]}
        pairs = Counter(pair for basket in baskets for pair in combinations(sorted(basket & top), 2))
        for (a, b), both in pairs.items():
            if both >= settings["min_pair_baskets"] and both / n >= settings["min_support"]:
                want += [{"tier": tier, "antecedent": x, "consequent": y, "baskets": n, "pair_baskets": both,
                          "confidence": both / counts[x], "lift": both * n / (counts[x] * counts[y])}
                         for x, y in ((a, b), (b, a))]
    want = pd.DataFrame(want, columns=["tier", "antecedent", "consequent", "baskets", "pair_baskets", "confidence",
                                       "lift"])
    key = ["tier", "antecedent", "consequent"]
    assert got.groupby("tier").size().to_dict() == \
        want.groupby("tier").size().clip(upper=settings["max_rules"]).to_dict()
    joined = got.merge(want, on=key, suffixes=("", "_want"), validate="one_to_one")
    assert len(joined) == len(got)  # every published rule is one counted here, with the same figures
    assert (joined["baskets"] == joined["baskets_want"]).all()
    assert (joined["pair_baskets"] == joined["pair_baskets_want"]).all()
    assert joined["confidence"].tolist() == pytest.approx(joined["confidence_want"].tolist())
    assert joined["lift"].tolist() == pytest.approx(joined["lift_want"].tolist())
    return got


def check_potential(url: str, as_of: date, expected: Expected) -> pd.Series:
    """Every customer who completed an order before ``as_of`` has a potential, recorded with the
    scorer and why; the baseline's holdout error (last year's spend against the next year's,
    for the customers who bought before the holdout year) is the one worked out here."""
    run = query(url, "SELECT * FROM audit.potential_runs WHERE as_of_date = :d", d=as_of).iloc[-1]
    got = published_features(url, as_of)
    cutoff = datetime.combine(as_of, datetime.min.time())
    buyers = {o.customer for o in expected.orders.values() if o.status == "completed" and o.ts < cutoff}
    assert set(got.index[got["potential_365d"].notna()]) == buyers
    assert (got["potential_365d"].dropna() >= 0).all()
    assert run["scorer"] in ("model", "last_year_spend")
    assert run["reason"]
    if run["scorer"] == "last_year_spend":  # potential = the last 365 days' completed spend
        assert got.loc[list(buyers), "potential_365d"].astype(float).tolist() == \
            pytest.approx(got.loc[list(buyers), "monetary_365d"].astype(float).tolist(), abs=0.01)
    if pd.notna(run["holdout_customers"]):
        start = pd.Timestamp(run["holdout_start"]).date()
        before, year, after = defaultdict(Decimal), defaultdict(Decimal), defaultdict(Decimal)
        for o in expected.orders.values():
            if o.status != "completed" or o.ts >= cutoff:
                continue
            if o.ts.date() < start:
                before[o.customer] += o.amount
                if o.ts.date() >= start - timedelta(days=365):
                    year[o.customer] += o.amount
            else:
                after[o.customer] += o.amount
        errors = [abs(float(year[c] - after[c])) for c in before]
        assert int(run["holdout_customers"]) == len(before)
        assert float(run["baseline_mae"]) == pytest.approx(sum(errors) / len(errors), rel=1e-6)
    return run


FEATURES = ["recency_days", "orders_365d", "monetary_365d", "refunds_365d"]


# ----------------------------------------------------------------------------------------
# Superstore


SUPERSTORE_NAMED = ["DP-13000", "RB-19360", "TA-21385", "NB-18580", "HO-15234"]


@pytest.mark.airflow
def test_superstore_graded_end_to_end(airflow_db: str, use_mapping, warehouse_url: str) -> None:
    """BOM, day/month/two-digit-year dates, order lines, negative profit, Segment/Region."""
    conns = use_mapping("superstore")
    expected = superstore()
    assert len(expected.orders) == 5111
    assert len(expected.first_seen) == 804
    assert sum(o.amount for o in expected.orders.values()) == Decimal("2326534.35")

    as_ofs = [date(2022, 1, 1), date(2022, 7, 1), date(2023, 1, 1)]
    for as_of in as_ofs[:-1]:
        summary = pipeline.run_grading(conns, as_of)
        assert summary["extract"]["rejected"] == {}
    assert run_dag("customer_grading", as_of=as_ofs[-1].isoformat()) == "success"
    assert run_dag("quarterly_review", quarter="2022Q4") == "success"

    raw = query(warehouse_url, "SELECT COUNT(*) AS orders, SUM(amount) AS sales, SUM(margin) AS margin, "
                               "MIN(margin) AS worst, COUNT(DISTINCT customer_id) AS buyers FROM raw.orders")
    assert int(raw.at[0, "orders"]) == 5111
    assert Decimal(str(raw.at[0, "sales"])) == Decimal("2326534.35")
    assert float(raw.at[0, "worst"]) < 0  # negative profit survives
    assert int(query(warehouse_url, "SELECT COUNT(*) AS n FROM raw.customers").at[0, "n"]) == 804
    segments = query(warehouse_url, "SELECT industry, COUNT(*) AS n FROM raw.customers GROUP BY industry")
    assert set(segments["industry"]) == {"Consumer", "Corporate", "Home Office"}

    for as_of in as_ofs:
        want = expected.features(as_of)
        got = published_features(warehouse_url, as_of)
        assert_features(got, want, FEATURES)
    want = expected.features(as_ofs[-1])
    named = want.loc[SUPERSTORE_NAMED]
    assert named.loc["RB-19360", "monetary_365d"] == pytest.approx(14203.28)  # the top 2022 customer
    assert named.loc["NB-18580", "orders_365d"] == 0
    assert named.loc["NB-18580", "recency_days"] > 1000
    got = published_features(warehouse_url, as_ofs[-1]).loc[SUPERSTORE_NAMED]
    assert got["recency_days"].tolist() == named["recency_days"].tolist()
    assert got["orders_365d"].tolist() == named["orders_365d"].tolist()
    assert got["monetary_365d"].tolist() == pytest.approx(named["monetary_365d"].tolist(), abs=0.001)

    check_review(warehouse_url, Quarter(2022, 4), expected, customers=804)
    rules = check_baskets(warehouse_url, Quarter(2022, 4), expected)  # sub-categories bought together
    assert set(rules["tier"]) >= {"normal"}
    assert (rules["item_level"] == "category").all()
    check_potential(warehouse_url, as_ofs[-1], expected)


# ----------------------------------------------------------------------------------------
# Online Retail


RETAIL_NAMED = ["17850", "12346", "14646", "18102", "13047"]


def guests_in(lines: list[datetime], start: datetime | None, cutoff: datetime) -> int:
    return sum(1 for ts in lines if ts < cutoff and (start is None or ts >= start))


@pytest.mark.airflow
def test_online_retail_graded_end_to_end(airflow_db: str, use_mapping, warehouse_url: str) -> None:
    """gzip CSV, invoice lines -> orders, C invoices -> refunds, lines without a customer rejected and counted."""
    conns = use_mapping("online_retail")
    expected = online_retail()
    assert len(expected.guest_lines) == 135080  # the data set's README

    as_ofs = [date(2011, 7, 1), date(2011, 10, 1), date(2011, 12, 9)]
    start = None
    for as_of in as_ofs:
        cutoff = datetime.combine(as_of, datetime.min.time())
        summary = pipeline.run_grading(conns, as_of)
        # Lines without a customer cannot be keyed: rejected, and counted per extraction window.
        assert summary["extract"]["rejected"]["orders"] == {
            "missing customer_id": guests_in(expected.guest_lines, start, cutoff)}
        start = cutoff - LOOKBACK
    assert run_dag("quarterly_review", quarter="2011Q3") == "success"

    as_of = as_ofs[-1]
    cutoff = datetime.combine(as_of, datetime.min.time())
    before = {k: o for k, o in expected.orders.items() if o.ts < cutoff}
    assert int(query(warehouse_url, "SELECT COUNT(*) AS n FROM raw.orders").at[0, "n"]) == len(before)
    assert len(expected.customers_before(cutoff)) == len(published_features(warehouse_url, as_of))

    # Customers, orders and net revenue (completed less refunded) as of 2011-12-09.
    got = query(warehouse_url, "SELECT customer_id, "
                               "COUNT(CASE WHEN status = 'completed' THEN 1 END) AS orders, "
                               "COUNT(CASE WHEN status = 'refunded' THEN 1 END) AS refunds, "
                               "SUM(CASE WHEN status = 'completed' THEN amount ELSE -amount END) AS net "
                               "FROM raw.orders GROUP BY customer_id").set_index("customer_id")
    want: dict[str, Counter] = defaultdict(Counter)
    net: dict[str, Decimal] = defaultdict(Decimal)
    for order in before.values():
        want[order.customer]["orders" if order.status == "completed" else "refunds"] += 1
        net[order.customer] += order.amount if order.status == "completed" else -order.amount
    assert sorted(got.index) == sorted(want)
    for customer in want:
        assert (int(got.at[customer, "orders"]), int(got.at[customer, "refunds"])) == \
            (want[customer]["orders"], want[customer]["refunds"]), customer
        assert Decimal(str(got.at[customer, "net"])) == net[customer], customer
    assert net["12346"] == 0
    assert want["12346"]["refunds"] == 1
    assert net["14646"] > 200_000  # the largest wholesale customer
    for customer in RETAIL_NAMED:
        assert want[customer]["orders"] > 0

    features = expected.features(as_of)
    assert_features(published_features(warehouse_url, as_of), features, FEATURES)
    check_review(warehouse_url, Quarter(2011, 3), expected,
                 customers=len(expected.customers_before(datetime(2011, 10, 1))))
    rules = check_baskets(warehouse_url, Quarter(2011, 3), expected)  # no categories: products (StockCode)
    assert len(rules) > 0
    # a year of invoices: too short to judge the model on a holdout year, so last year's spend scores
    assert check_potential(warehouse_url, as_ofs[-1], expected)["scorer"] == "last_year_spend"


def test_online_retail_whole_file_rejects_every_guest_line(grading_home: Path, monkeypatch: pytest.MonkeyPatch) \
        -> None:
    """All 541,909 lines in one extraction: every one of the 135,080 lines without a CustomerID is counted."""
    monkeypatch.setenv("GRADING_SOURCE_MAPPING", "online_retail")
    monkeypatch.setenv("GRADING_DATA_DIR", str(DATA))
    grading_home.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("AIRFLOW_CONN_GRADING_WAREHOUSE", f"duckdb:///{grading_home / 'w.duckdb'}")
    summary = pipeline.extract_stage(pipeline.Connections.resolve(), date(2012, 1, 1), "test__whole_file")
    assert summary["rejected"]["orders"] == {"missing customer_id": 135080}
    assert summary["rows"]["customers"] == 4372  # the data set's README
    assert summary["rows"]["orders"] == 25900 - len(_guest_only_invoices())  # README: 25,900 invoices


def _guest_only_invoices() -> set[str]:
    invoices: dict[str, bool] = {}
    with gzip.open(DATA / "online_retail" / "online_retail.csv.gz", "rt", encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            invoices[row["InvoiceNo"]] = invoices.get(row["InvoiceNo"], False) or bool(row["CustomerID"])
    return {k for k, has_customer in invoices.items() if not has_customer}


# ----------------------------------------------------------------------------------------
# Olist


OLIST_NAMED = [
    "8d50f5eadf50201ccdcedfb9e2ac8455",  # five orders
    "26ca20ff263502c115769540069e351f",  # four reviews
    "94ab38525c16d9d5ce977b3fe3405ab8",  # late deliveries, lowest scores
    "2fc5e667ccf2a1c87a798be23f1c920a",
    "b703d83e085a6a8b339dc548f4878ca8",  # a late delivery and a cancellation
]
SERVICE = ["tickets_365d", "complaints_365d", "csat_mean_365d"]


@pytest.mark.airflow
def test_olist_graded_end_to_end(airflow_db: str, use_mapping, warehouse_url: str) -> None:
    """Person = customer_unique_id, review scores -> CSAT, late deliveries and cancellations -> tickets."""
    conns = use_mapping("olist")
    expected = olist()
    assert len(expected.orders) == 20864
    assert len(expected.first_seen) == 20702

    # Late deliveries come in bursts (1019 in the first half of 2018, 601 in the half before):
    # periods of similar volume keep the validation's volume band (0.7-2x the trailing average).
    as_ofs = [date(2018, 2, 1), date(2018, 4, 1), date(2018, 10, 1)]
    assert run_dag("customer_grading", as_of=as_ofs[0].isoformat()) == "success"
    for as_of in as_ofs[1:]:
        pipeline.run_grading(conns, as_of)
    pipeline.review_stage(conns, Quarter(2018, 3), "test__review__2018Q3")

    for as_of in as_ofs:
        want = expected.features(as_of)
        got = published_features(warehouse_url, as_of)
        assert_features(got, want, SERVICE + FEATURES)
    want = expected.features(as_ofs[-1]).loc[OLIST_NAMED]
    got = published_features(warehouse_url, as_ofs[-1]).loc[OLIST_NAMED]
    assert want["complaints_365d"].sum() >= 3
    assert want["csat_mean_365d"].notna().sum() >= 3
    assert got["complaints_365d"].tolist() == want["complaints_365d"].tolist()
    assert got["tickets_365d"].tolist() == want["tickets_365d"].tolist()
    assert got["csat_mean_365d"].astype(float).fillna(-1).tolist() == \
        pytest.approx(want["csat_mean_365d"].astype(float).fillna(-1).tolist(), abs=1e-4)

    cutoff = datetime.combine(as_ofs[-1], datetime.min.time())
    surveys = int(query(warehouse_url, "SELECT COUNT(*) AS n FROM raw.surveys").at[0, "n"])
    assert surveys == sum(1 for _, ts, _ in expected.surveys if ts < cutoff)
    check_review(warehouse_url, Quarter(2018, 3), expected,
                 customers=len(expected.customers_before(cutoff)))
    # Few Olist orders hold two products and no pair recurs in 5 of them: the analysis finds
    # none, and says so (the same count done here agrees).
    assert check_baskets(warehouse_url, Quarter(2018, 3), expected).empty
    assert int(query(warehouse_url, "SELECT COUNT(*) AS n FROM raw.order_lines").at[0, "n"]) > 0
    check_potential(warehouse_url, as_ofs[-1], expected)
