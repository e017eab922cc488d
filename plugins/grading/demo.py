"""Generated demo data in the canonical source schema, written to any SQLAlchemy URL.

The generator is vectorised with NumPy so the benchmark sizes (millions of orders) are
made in seconds. It plants the patterns the pipeline must find: heavy-tailed spend,
seasonality, customers who stop buying, and rare buyers who complain often.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

REGIONS = ["North", "South", "East", "West", "Central"]
INDUSTRIES = ["retail", "manufacturing", "services", "technology", "healthcare", "education"]
CHANNELS = ["online", "direct", "partner"]
FIRST_NAMES = ["Wei", "Fang", "Anna", "Luis", "Mira", "Omar", "Jun", "Sara", "Ivan", "Lena"]
LAST_NAMES = ["Li", "Wang", "Smith", "Garcia", "Khan", "Chen", "Novak", "Rossi", "Kim", "Diaz"]
# Relative order volume per calendar month: a slow start of the year, a strong Q4.
MONTH_WEIGHT = np.array([0.8, 0.8, 1.0, 1.0, 1.0, 1.0, 0.9, 0.9, 1.0, 1.1, 1.4, 1.5])
# Order lines: categories by popularity, five products each. Planted for the basket analysis:
# a quarter of every customer's orders hold paper and pens together, and 40 % of the orders of
# the biggest spenders (the top 15 % by typical order value) a printer with its toner.
CATEGORIES = ["paper", "pens", "binders", "storage", "chairs", "desks", "phones", "software", "printers", "toner"]
CATEGORY_WEIGHT = np.array([0.18, 0.16, 0.14, 0.12, 0.1, 0.08, 0.08, 0.08, 0.03, 0.03])
EVERYDAY_PAIR, PREMIUM_PAIR = ("paper", "pens"), ("printers", "toner")


@dataclass(frozen=True)
class DemoData:
    customers: pd.DataFrame
    orders: pd.DataFrame
    tickets: pd.DataFrame
    surveys: pd.DataFrame
    interactions: pd.DataFrame
    order_lines: pd.DataFrame

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"customers": self.customers, "orders": self.orders, "tickets": self.tickets,
                "surveys": self.surveys, "interactions": self.interactions, "order_lines": self.order_lines}


def _seconds(rng: np.random.Generator, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """A uniform instant between each start and end (datetime64[s] arrays)."""
    span = (end - start).astype("int64")
    return start + (rng.random(len(start)) * np.maximum(span, 0)).astype("int64").astype("timedelta64[s]")


def _seasonal_instants(rng: np.random.Generator, owner: np.ndarray, start: np.ndarray,
                       end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Instants for each owner index, thinned by month weight to plant seasonality."""
    ts = _seconds(rng, start[owner], end[owner])
    months = ts.astype("datetime64[M]").astype(int) % 12
    keep = rng.random(len(ts)) < MONTH_WEIGHT[months] / MONTH_WEIGHT.max()
    return owner[keep], ts[keep]


def generate(customers: int = 2000, seed: int = 42, end: date = date(2024, 12, 31),
             history_years: int = 3) -> DemoData:
    """Make a reproducible demo data set of ``customers`` customers ending on ``end``."""
    rng = np.random.default_rng(seed)
    n = customers
    end_ts = np.datetime64(datetime.combine(end + timedelta(days=1), datetime.min.time()), "s")
    start_ts = end_ts - np.timedelta64(365 * history_years, "D")

    created = _seconds(rng, np.full(n, start_ts), np.full(n, end_ts - np.timedelta64(30, "D")))
    satisfaction = rng.normal(0.0, 1.0, n)
    churner = rng.random(n) < 0.25
    complainer = rng.random(n) < 0.05
    satisfaction[churner] -= 0.5
    satisfaction[complainer] -= 1.5
    stop = np.where(churner, _seconds(rng, created, np.full(n, end_ts)), end_ts)

    orders_per_year = rng.lognormal(np.log(4.0), 0.9, n)
    orders_per_year[complainer] = 1.5
    mean_amount = rng.lognormal(np.log(1000.0), 0.9, n)
    active_years = (stop - created).astype("int64") / (365 * 86400)

    ids = np.array([f"C{i:07d}" for i in range(1, n + 1)])
    first = rng.choice(FIRST_NAMES, n)
    last = rng.choice(LAST_NAMES, n)
    customers_df = pd.DataFrame({
        "customer_id": ids,
        "created_at": created.astype("datetime64[s]"),
        "region": rng.choice(REGIONS, n, p=[0.25, 0.2, 0.25, 0.2, 0.1]),
        "industry": rng.choice(INDUSTRIES, n),
        "channel": rng.choice(CHANNELS, n, p=[0.5, 0.3, 0.2]),
        "name": np.char.add(np.char.add(first, " "), last),
        "email": [f"{f.lower()}.{s.lower()}{i}@example.com" for i, (f, s) in enumerate(zip(first, last, strict=True))],
        "phone": [f"+86-10-{x:08d}" for x in rng.integers(0, 10**8, n)],
    })

    # Orders: oversample for the seasonal thinning, then draw amounts and statuses.
    counts = rng.poisson(orders_per_year * active_years * MONTH_WEIGHT.max() / MONTH_WEIGHT.mean())
    owner, order_ts = _seasonal_instants(rng, np.repeat(np.arange(n), counts), created, stop)
    m = len(owner)
    amount = np.round(mean_amount[owner] * rng.lognormal(0.0, 0.4, m), 2)
    unhappy = satisfaction[owner] < -1.0
    status = np.where(rng.random(m) < np.where(unhappy, 0.10, 0.03), "refunded",
                      np.where(rng.random(m) < 0.05, "cancelled", "completed"))
    orders_df = pd.DataFrame({
        "order_id": np.char.add("O", np.arange(1, m + 1).astype(str)),
        "customer_id": ids[owner],
        "order_ts": order_ts,
        "status": status,
        "amount": amount,
        "margin": np.round(amount * rng.uniform(0.05, 0.35, m), 2),
    }).sort_values(["order_ts", "order_id"], ignore_index=True)

    # Tickets: more, and more complaints, from unhappy customers; some arrive after they stop.
    ticket_rate = 1.0 * np.exp(-0.5 * satisfaction) * np.where(complainer, 4.0, 1.0)
    ticket_end = np.minimum(stop + np.timedelta64(60, "D"), end_ts)
    t_owner = np.repeat(np.arange(n), rng.poisson(ticket_rate * np.maximum(active_years, 0.05)))
    t = len(t_owner)
    opened = _seconds(rng, created[t_owner], ticket_end[t_owner])
    p_complaint = 1.0 / (1.0 + np.exp(1.5 * satisfaction[t_owner] + 2.0))
    roll = rng.random(t)
    category = np.where(roll < p_complaint, "complaint",
                        np.where(roll < p_complaint + (1 - p_complaint) / 2, "inquiry", "after-sales"))
    severity = rng.choice(["low", "medium", "high"], t, p=[0.5, 0.35, 0.15])
    hours = rng.exponential(30.0, t) * np.where(severity == "high", 2.0, 1.0)
    closed = opened + (hours * 3600).astype("int64").astype("timedelta64[s]")
    still_open = (closed >= end_ts) | (rng.random(t) < 0.03)
    tickets_df = pd.DataFrame({
        "ticket_id": np.char.add("T", np.arange(1, t + 1).astype(str)),
        "customer_id": ids[t_owner],
        "opened_at": opened,
        "closed_at": pd.Series(np.where(still_open, np.datetime64("NaT"), closed)).astype("datetime64[s]"),
        "category": category,
        "severity": severity,
        "resolved": ~still_open & (rng.random(t) < 0.92),
    }).sort_values(["opened_at", "ticket_id"], ignore_index=True)

    # Surveys follow about a quarter of completed orders, a few days later.
    completed = orders_df[orders_df["status"] == "completed"]
    asked = completed[rng.random(len(completed)) < 0.25]
    s = len(asked)
    who = pd.Series(np.arange(n), index=ids).loc[asked["customer_id"]].to_numpy()
    responded = asked["order_ts"].to_numpy() + rng.integers(1, 7 * 86400, s).astype("timedelta64[s]")
    keep = responded < end_ts
    surveys_df = pd.DataFrame({
        "survey_id": np.char.add("S", np.arange(1, s + 1).astype(str)),
        "customer_id": asked["customer_id"].to_numpy(),
        "responded_at": responded,
        "csat": np.clip(np.round(3.8 + 0.9 * satisfaction[who] + rng.normal(0, 0.6, s)), 1, 5).astype(int),
        "nps": np.clip(np.round(7.0 + 2.0 * satisfaction[who] + rng.normal(0, 1.2, s)), 0, 10).astype(int),
    })[keep].reset_index(drop=True)

    # Interactions from their own random stream, so the other tables stay as they were.
    interactions_df = _interactions(np.random.default_rng(seed + 1), ids, created, stop, end_ts, orders_per_year)
    big_spender = mean_amount >= np.quantile(mean_amount, 0.85)
    lines_df = _order_lines(np.random.default_rng(seed + 2), orders_df, set(ids[big_spender]))
    return DemoData(customers_df, orders_df, tickets_df, surveys_df, interactions_df, lines_df)


def _interactions(rng: np.random.Generator, ids: np.ndarray, created: np.ndarray, stop: np.ndarray,
                  end_ts: np.datetime64, orders_per_year: np.ndarray) -> pd.DataFrame:
    """Calls, visits and e-mails: account managers contact busier customers more often while
    they buy, and some call after a customer has stopped (win-back attempts)."""
    n = len(ids)
    active_years = (stop - created).astype("int64") / (365 * 86400)
    owner = np.repeat(np.arange(n), rng.poisson((1.0 + 0.5 * orders_per_year) * np.maximum(active_years, 0.05)))
    after = np.repeat(np.arange(n), rng.poisson(np.where(stop < end_ts, 0.6, 0.0)))
    ts = np.concatenate([_seconds(rng, created[owner], stop[owner]),
                         _seconds(rng, stop[after], np.full(len(after), end_ts))])
    who = np.concatenate([owner, after])
    k = len(who)
    return pd.DataFrame({
        "interaction_id": np.char.add("I", np.arange(1, k + 1).astype(str)),
        "customer_id": ids[who],
        "ts": ts.astype("datetime64[s]"),
        "kind": rng.choice(["call", "e-mail", "visit"], k, p=[0.5, 0.35, 0.15]),
    }).sort_values(["ts", "interaction_id"], ignore_index=True)


def _order_lines(rng: np.random.Generator, orders: pd.DataFrame, big_spenders: set[str]) -> pd.DataFrame:
    """One to a few lines per order whose amounts add up to the order's, with the planted pairs
    (CATEGORIES): what the quarterly basket analysis must find, and in which tiers."""
    m = len(orders)
    premium = orders["customer_id"].isin(big_spenders).to_numpy() & (rng.random(m) < 0.4)
    everyday = rng.random(m) < 0.25
    extra = 1 + rng.poisson(0.8, m)
    per_order = extra + 2 * premium + 2 * everyday
    order = np.repeat(np.arange(m), per_order)
    start = np.repeat(np.cumsum(per_order) - per_order, per_order)
    position = np.arange(len(order)) - start  # the line's place in its order
    category = rng.choice(len(CATEGORIES), len(order), p=CATEGORY_WEIGHT)
    planted = np.where(premium[order] & (position < 2), position + CATEGORIES.index(PREMIUM_PAIR[0]), -1)
    first_everyday = 2 * premium[order]
    in_everyday = everyday[order] & (position >= first_everyday) & (position < first_everyday + 2)
    planted = np.where(in_everyday, position - first_everyday + CATEGORIES.index(EVERYDAY_PAIR[0]), planted)
    category = np.where(planted >= 0, planted, category)
    weight = rng.exponential(1.0, len(order))
    share = weight / np.bincount(order, weights=weight)[order]
    amounts = orders["amount"].to_numpy()
    amount = np.round(amounts[order] * share, 2)
    last = position == per_order[order] - 1  # the last line takes what rounding left over
    amount[last] += np.round(amounts - np.bincount(order, weights=amount, minlength=m), 2)
    names = np.array(CATEGORIES)
    return pd.DataFrame({
        "line_id": np.char.add("L", np.arange(1, len(order) + 1).astype(str)),
        "order_id": orders["order_id"].to_numpy()[order],
        "customer_id": orders["customer_id"].to_numpy()[order],
        "order_ts": orders["order_ts"].to_numpy()[order],
        "product_id": np.char.add(np.char.add(names[category], "-"), rng.integers(1, 6, len(order)).astype(str)),
        "category": names[category],
        "quantity": 1 + rng.poisson(0.5, len(order)),
        "amount": np.round(amount, 2),
    })


def existing_source(url: str) -> str | None:
    """What already holds source data at ``url`` (which ``write_source`` would replace), or None.

    An SQLite or DuckDB file counts as soon as it exists (it is not opened, so a missing one is
    not created); another database when it has one of the demo's tables.
    """
    parsed = sa.make_url(url)
    if parsed.get_backend_name() in ("sqlite", "duckdb"):
        path = parsed.database
        if path and path != ":memory:" and Path(path).exists():
            return f"the file {path}"
        return None
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            names = set(sa.inspect(conn).get_table_names())
    finally:
        engine.dispose()
    found = [name for name in DemoData.__dataclass_fields__ if name in names]
    return f"table(s) {', '.join(found)}" if found else None


def write_source(data: DemoData, url: str) -> dict[str, int]:
    """Replace the source tables at ``url`` with the demo data; returns rows per table."""
    database = sa.make_url(url).database
    if url.startswith("sqlite") and database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url)
    written = {}
    try:
        with engine.begin() as conn:
            for name, frame in data.tables().items():
                # dropped here rather than by to_sql's "replace", which reflects the table first:
                # duckdb_engine cannot (it has no pg_catalog.pg_collation)
                conn.execute(sa.text(f"DROP TABLE IF EXISTS {conn.dialect.identifier_preparer.quote(name)}"))
                frame.to_sql(name, conn, if_exists="append", index=False, chunksize=20_000)
                written[name] = len(frame)
    finally:
        engine.dispose()
    return written
