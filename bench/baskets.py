"""Benchmark of the quarterly basket analysis (include/sql/review/tier_basket_rules.sql, issue 23).

A benchmark, not a test: it builds a synthetic warehouse in SQL (on DuckDB a temporary database
file, on PostgreSQL a database of a unique name that it drops afterwards) holding only the tables
and columns the query reads - raw.orders, raw.order_lines, marts.customer_tier_snapshot and
ops.customer_keys - and runs the query through the real loader (grading.frames.read_query_file
on a grading.warehouse.open_engine connection, so with the pipeline's DuckDB memory limit and
PostgreSQL work_mem) in a fresh worker process, as the review stage's Airflow task would, for
quarter 2024Q4 at item level ``category`` and at ``product``. It records the wall time of the
query, the worker's peak RSS, the lines in the quarter, the rules found per tier and whether the
planted pair is platinum's top rule, prints them and writes them as JSON.

    .venv/bin/python bench/baskets.py --warehouse duckdb                                  # L
    .venv/bin/python bench/baskets.py --warehouse postgresql --customers 100000 --orders 2000000

The data (deterministic: every value is a seeded hash of a row number, so a run at the same
size makes the same rows on the same warehouse; DuckDB's hash() and PostgreSQL's
hashint8extended() differ, so the two warehouses' rows differ in detail, not in shape):

- N customers (ops.customer_keys; the key is an md5 pseudonym), tiers 80/15/5 % normal / gold /
  platinum in the snapshot of 2024-12-01 (the one the review of 2024Q4 reads) and in one of
  2024-09-01 (the as-of filter has something to skip);
- the orders spread evenly over 2022-01-01 .. 2025-01-01 (so a quarter holds 1/12 of them and the
  date filter is measured on all of them), numbered in time order as a warehouse loaded by daily
  batches holds them (``--shuffled-time``: at random, the worst case for DuckDB's zone maps);
  85 % completed, 10 % refunded, 5 % cancelled;
- 1-5 lines per order (2.6 on average), products from a catalogue of 2,000 (``--products``) in 40 categories with
  Zipf popularity (2 % of lines without a category, 0.1 % without a product); the planted pair
  P1999 + P2000 (the two least popular products) is in 30 % of platinum customers' orders and 0.3 % of
  the others', so it must be platinum's top rule at product level, and its categories' pair at
  category level.

PostgreSQL gets the indexes the pipeline's warehouse has on these tables (raw.orders (order_id)
from the validation gate, the snapshot's primary key and as-of index), then ANALYZE.
Results: bench/results/baskets/baskets_<scale>.json (scale: S, M or L when the sizes are the
bench's, else the customer count). Not bench/results/ itself: bench/report.py renders every
bench/results/*.json as a scale of the pipeline's report.
"""

# SQL here is built from numbers and names of this script, never from input: S608 does not apply.
# ruff: noqa: S608

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import uuid
from datetime import date, datetime
from pathlib import Path

# siblings in bench/ (this folder is on the path when baskets.py runs as a script, and in its spawned workers)
from workers import _env, _peak_rss, in_fresh_process

BENCH = Path(__file__).resolve().parent
SCALES = {"S": (10_000, 200_000), "M": (100_000, 2_000_000), "L": (1_000_000, 20_000_000)}
QUARTER = "2024Q4"
SNAPSHOT = date(2024, 12, 1)          # the review of 2024Q4 reads the snapshot published in the quarter
EARLIER_SNAPSHOT = date(2024, 9, 1)
ORDERS_FROM = "2022-01-01"            # orders spread evenly over three years
ORDERS_DAYS = 1096                    # 2022-01-01 .. 2024-12-31
PRODUCTS = 2000                       # the catalogue (--products)
CATEGORIES = 40
SEED = 20250101
PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
WORKER_TIMEOUT = 3600


# --------------------------------------------------------------------------- the synthetic warehouse

def _u(dialect: str, expr: str, salt: int) -> str:
    """A uniform double in [0, 1) that is a seeded hash of the integer ``expr``."""
    prime = 1_000_000_007
    if dialect == "duckdb":
        return f"(CAST(hash({expr}, {SEED + salt}) % {prime} AS DOUBLE) / {prime})"
    return f"(CAST(((hashint8extended(CAST({expr} AS BIGINT), {SEED + salt}) % {prime}) + {prime}) % {prime} " \
           f"AS DOUBLE PRECISION) / {prime})"


def _customer_tier(u: str) -> str:
    return f"CASE WHEN {u} < 0.80 THEN 'normal' WHEN {u} < 0.95 THEN 'gold' ELSE 'platinum' END"


def planted(products: int = PRODUCTS) -> tuple[str, str]:
    """The planted pair: the two least popular products of the catalogue."""
    return _product_id(products - 1, products), _product_id(products, products)


def _product_id(rank: int, products: int) -> str:
    return "P" + str(rank).zfill(max(4, len(str(products))))


def build_statements(dialect: str, customers: int, orders: int, shuffled: bool = False,
                     products: int = PRODUCTS) -> list[tuple[str, str]]:
    """(label, statement) pairs that create and fill the minimal warehouse.

    Orders are numbered in time order (row order follows time, as in a warehouse filled by daily
    extraction batches, so DuckDB's zone maps can skip what is outside a window); ``shuffled``
    spreads each order's time at random over the three years instead (no skipping possible).
    """
    duck = dialect == "duckdb"
    rows = (lambda n, col: f"range(1, {n + 1}) AS g_{col}({col})") if duck else \
        (lambda n, col: f"generate_series(1, {n}) AS g_{col}({col})")
    text = "VARCHAR"
    interval = (lambda secs: f"to_seconds(CAST({secs} AS BIGINT))") if duck else \
        (lambda secs: f"make_interval(secs => {secs})")
    unlogged = "" if duck else "UNLOGGED "  # the data is thrown away; how it is logged does not change reads
    # an order's customer, time and size, all functions of its number o
    cust = f"(1 + CAST(floor({_u(dialect, 'o', 1)} * {customers}) AS BIGINT))"
    offset = f"floor({_u(dialect, 'o', 2)} * {ORDERS_DAYS * 86400})" if shuffled else \
        f"floor((o - 1 + {_u(dialect, 'o', 2)}) * {ORDERS_DAYS * 86400 / orders!r})"
    ts = f"(TIMESTAMP '{ORDERS_FROM}' + {interval(offset)})"
    tier_u = _u(dialect, "c", 10)  # the customer's tier, a function of its number c
    platinum = f"({_u(dialect, cust, 10)} >= 0.95)"
    planted = f"({_u(dialect, 'o', 5)} < CASE WHEN {platinum} THEN 0.30 ELSE 0.003 END)"
    size_u = _u(dialect, "o", 4)
    size = (f"(CASE WHEN {planted} THEN 2 ELSE 1 END + CASE WHEN {size_u} < 0.25 THEN 0 WHEN {size_u} < 0.50 "
            f"THEN 1 WHEN {size_u} < 0.75 THEN 2 WHEN {size_u} < 0.90 THEN 3 ELSE 4 END)")
    # product rank by Zipf(1) popularity: P(rank <= r) = ln(r) / ln(products + 1)
    rank = f"LEAST({products}, CAST(floor(exp({_u(dialect, 'o * 8 + k', 6)} * ln({products + 1}))) AS BIGINT))"
    product_rank = (f"CASE WHEN {planted} AND k = 1 THEN {products - 1} WHEN {planted} AND k = 2 THEN {products} "
                    f"ELSE {rank} END")
    lpad_rank = f"lpad(CAST(r AS VARCHAR), {max(4, len(str(products)))}, '0')"
    return [
        ("schemas", "CREATE SCHEMA raw; CREATE SCHEMA marts; CREATE SCHEMA ops"),
        ("ops.customer_keys",
         f"CREATE {unlogged}TABLE ops.customer_keys AS SELECT CAST('C' || CAST(c AS VARCHAR) AS {text}) "
         f"AS customer_id, CAST(md5('C' || CAST(c AS VARCHAR)) AS {text}) AS customer_key FROM {rows(customers, 'c')}"),
        ("marts.customer_tier_snapshot",
         f"CREATE {unlogged}TABLE marts.customer_tier_snapshot AS "
         f"SELECT CAST(d AS DATE) AS as_of_date, CAST(md5('C' || CAST(c AS VARCHAR)) AS {text}) AS customer_key, "
         f"CAST(tier AS {text}) AS tier, CASE tier WHEN 'platinum' THEN 1 WHEN 'gold' THEN 2 ELSE 3 END AS tier_rank "
         f"FROM (SELECT c, DATE '{SNAPSHOT}' AS d, {_customer_tier(tier_u)} AS tier FROM {rows(customers, 'c')} "
         f"UNION ALL SELECT c, DATE '{EARLIER_SNAPSHOT}', {_customer_tier(_u(dialect, 'c', 11))} "
         f"FROM {rows(customers, 'c')}) AS s"),
        ("raw.orders",
         f"CREATE {unlogged}TABLE raw.orders AS SELECT CAST('O' || CAST(o AS VARCHAR) AS {text}) AS order_id, "
         f"CAST('C' || CAST({cust} AS VARCHAR) AS {text}) AS customer_id, {ts} AS order_ts, "
         f"CAST(CASE WHEN {_u(dialect, 'o', 3)} < 0.85 THEN 'completed' WHEN {_u(dialect, 'o', 3)} < 0.95 "
         f"THEN 'refunded' ELSE 'cancelled' END AS {text}) AS status, "
         f"CAST(round(CAST(5 + 200 * {_u(dialect, 'o', 7)} AS NUMERIC), 2) AS NUMERIC(18, 2)) AS amount, "
         f"CAST(NULL AS NUMERIC(18, 2)) AS margin, TIMESTAMP '2025-01-02 00:00:00' AS extracted_at "
         f"FROM {rows(orders, 'o')}"),
        ("raw.order_lines",
         f"CREATE {unlogged}TABLE raw.order_lines AS "
         f"SELECT CAST('L' || CAST(o AS VARCHAR) || '-' || CAST(k AS VARCHAR) AS {text}) AS line_id, "
         f"CAST('O' || CAST(o AS VARCHAR) AS {text}) AS order_id, "
         f"CAST('C' || CAST({cust} AS VARCHAR) AS {text}) AS customer_id, {ts} AS order_ts, "
         f"CASE WHEN {_u(dialect, 'o * 8 + k', 8)} < 0.001 THEN NULL "
         f"ELSE CAST('P' || {lpad_rank} AS {text}) END AS product_id, "
         f"CASE WHEN {_u(dialect, 'o * 8 + k', 9)} < 0.02 THEN NULL "
         f"ELSE CAST('cat' || lpad(CAST(r * 7 % {CATEGORIES} AS VARCHAR), 2, '0') AS {text}) END AS category, "
         f"1 AS quantity, CAST(9.90 AS NUMERIC(18, 2)) AS amount, TIMESTAMP '2025-01-02 00:00:00' AS extracted_at "
         f"FROM (SELECT o, k, {product_rank} AS r FROM {rows(orders, 'o')} "
         f"CROSS JOIN {rows(5, 'k')} WHERE k <= {size}) AS l"),
    ]


def pg_finish_statements() -> list[tuple[str, str]]:
    """The indexes the pipeline's PostgreSQL warehouse has on these tables, then statistics."""
    return [
        ("indexes", "CREATE INDEX orders_order_id_idx ON raw.orders (order_id); "
                    "ALTER TABLE marts.customer_tier_snapshot ADD CONSTRAINT customer_tier_snapshot_pkey "
                    "PRIMARY KEY (as_of_date, customer_key); "
                    "CREATE INDEX customer_tier_snapshot_as_of_date_idx ON marts.customer_tier_snapshot (as_of_date)"),
        ("analyze", "ANALYZE ops.customer_keys; ANALYZE marts.customer_tier_snapshot; ANALYZE raw.orders; "
                    "ANALYZE raw.order_lines"),
    ]


def build_duckdb(path: Path, customers: int, orders: int, shuffled: bool, products: int) -> dict[str, float]:
    import duckdb

    timings = {}
    con = duckdb.connect(str(path))
    try:
        for label, statement in build_statements("duckdb", customers, orders, shuffled, products):
            started = time.perf_counter()
            con.execute(statement)
            timings[label] = round(time.perf_counter() - started, 2)
            print(f"  {label}: {timings[label]:.1f} s", flush=True)
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return timings


def pg_admin(sql: str) -> None:
    import psycopg
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as con:
        con.execute(sql)


def build_postgresql(db: str, customers: int, orders: int, shuffled: bool, products: int) -> dict[str, float]:
    import psycopg

    timings = {}
    pg_admin(f"CREATE DATABASE {db}")
    with psycopg.connect(f"host=127.0.0.1 port=5432 user=postgres dbname={db}", autocommit=True) as con:
        con.execute("SET work_mem = '256MB'")
        con.execute("SET maintenance_work_mem = '1GB'")
        statements = build_statements("postgresql", customers, orders, shuffled, products) + pg_finish_statements()
        for label, statement in statements:
            started = time.perf_counter()
            for part in statement.split("; "):
                con.execute(part)
            timings[label] = round(time.perf_counter() - started, 2)
            print(f"  {label}: {timings[label]:.1f} s", flush=True)
    return timings


# --------------------------------------------------------------------------- the worker

def query_params(item_level: str) -> dict:
    from grading.review.quarters import Quarter
    from grading.settings import basket_settings

    quarter = Quarter.parse(QUARTER)
    return {"quarter": str(quarter), "quarter_start": quarter.start, "quarter_end": quarter.end,
            "snapshot": SNAPSHOT, **basket_settings(), "item_level": item_level}


# the session's server process and the database's bytes written to temporary files so far
_PG_STATS = "SELECT pg_backend_pid(), temp_bytes FROM pg_stat_database WHERE datname = current_database()"


def _vm_hwm(pid: int) -> int | None:
    """Peak RSS of a local server process (PostgreSQL's backend: the query's memory is there, not in the
    worker); None when the server is not local or not readable. Counts the shared buffers it touched."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return next((int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmHWM:")), None)


def basket_worker(url: str, home: str, item_level: str) -> dict:
    """tier_basket_rules.sql through the pipeline's loader in this (fresh) process; times the query only."""
    _env(Path(home))
    from grading.frames import read_query_file
    from grading.warehouse import open_engine

    params = query_params(item_level)
    server: dict = {}
    with open_engine(url) as wh, wh.connect() as conn:
        if wh.dialect.name == "postgresql":
            pid, temp = conn.exec_driver_sql(_PG_STATS).one()
            conn.commit()
        started = time.perf_counter()
        frame = read_query_file(conn, "review/tier_basket_rules", params)
        seconds = time.perf_counter() - started
        if wh.dialect.name == "postgresql":
            conn.commit()
            time.sleep(1)  # the parallel workers' statistics reach pg_stat_database when they exit
            conn.exec_driver_sql("SELECT pg_stat_clear_snapshot()")
            server["temp_bytes"] = conn.exec_driver_sql(_PG_STATS).one()[1] - temp
            server["backend_peak_rss"] = _vm_hwm(pid)
    summary: dict = {"rows": len(frame), "rules_per_tier": {}, "baskets_per_tier": {}, "top_rule_per_tier": {}}
    for tier, rules in frame.groupby("tier"):
        top = rules.sort_values("rule_rank").iloc[0]
        summary["rules_per_tier"][tier] = len(rules)
        summary["baskets_per_tier"][tier] = int(rules["baskets"].iloc[0])
        summary["top_rule_per_tier"][tier] = {
            "antecedent": top["antecedent"], "consequent": top["consequent"], "lift": round(float(top["lift"]), 3),
            "support": round(float(top["support"]), 5), "confidence": round(float(top["confidence"]), 4)}
    return {"seconds": seconds, "rss": _peak_rss(), "server": server, "summary": summary,
            "params": {k: str(v) for k, v in params.items()}}


# --------------------------------------------------------------------------- figures

def count_sql() -> str:
    from grading.review.quarters import Quarter

    q = Quarter.parse(QUARTER)
    return (f"SELECT COUNT(*), COUNT(DISTINCT l.order_id) FROM raw.order_lines AS l "
            f"JOIN raw.orders AS o ON o.order_id = l.order_id WHERE o.status = 'completed' "
            f"AND o.order_ts >= TIMESTAMP '{q.start}' AND o.order_ts < TIMESTAMP '{q.end}'")


def quarter_counts(dialect: str, target: str) -> dict:
    """Lines and orders in the quarter (completed), and the table sizes; untimed, outside the worker."""
    sizes = "SELECT (SELECT COUNT(*) FROM raw.orders), (SELECT COUNT(*) FROM raw.order_lines)"
    if dialect == "duckdb":
        import duckdb
        con = duckdb.connect(target, read_only=True)
        lines, baskets = con.execute(count_sql()).fetchone()
        orders, all_lines = con.execute(sizes).fetchone()
        con.close()
    else:
        import psycopg
        with psycopg.connect(f"host=127.0.0.1 port=5432 user=postgres dbname={target}") as con:
            con.execute("SET work_mem = '256MB'")
            lines, baskets = con.execute(count_sql()).fetchone()
            orders, all_lines = con.execute(sizes).fetchone()
    return {"orders": orders, "order_lines": all_lines, "completed_lines_in_quarter": lines,
            "completed_orders_with_lines_in_quarter": baskets}


def planted_is_top(run: dict, item_level: str, products: int) -> bool | None:
    top = (run.get("summary") or {}).get("top_rule_per_tier", {}).get("platinum")
    if not top:
        return None
    pair = {top["antecedent"], top["consequent"]}
    if item_level == "product":
        return pair == set(planted(products))
    planted_categories = {f"cat{(int(p[1:]) * 7 % CATEGORIES):02d}" for p in planted(products)}
    return pair == planted_categories


def run_warehouse(dialect: str, customers: int, orders: int, work: Path, keep: bool, shuffled: bool,
                  products: int) -> dict:
    out: dict = {"warehouse": dialect}
    if dialect == "duckdb":
        path = work / "baskets.duckdb"
        target, url = str(path), f"duckdb:///{path}"
        print(f"building the DuckDB warehouse {path}", flush=True)
    else:
        target = f"bench_baskets_{uuid.uuid4().hex[:10]}"
        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{target}"
        print(f"building the PostgreSQL database {target}", flush=True)
    started = time.perf_counter()
    try:
        build = build_duckdb if dialect == "duckdb" else build_postgresql
        out["build_steps_s"] = build(Path(target) if dialect == "duckdb" else target, customers, orders, shuffled,
                                     products)
        out["build_s"] = round(time.perf_counter() - started, 1)
        if dialect == "duckdb":
            out["database_bytes"] = Path(target).stat().st_size
        out["rows"] = quarter_counts(dialect, target)
        print(f"  rows: {out['rows']}", flush=True)
        for item_level in ("category", "product"):
            res = in_fresh_process(basket_worker, url, str(work / "home"), item_level, timeout=WORKER_TIMEOUT)
            res["planted_pair_top_for_platinum"] = planted_is_top(res, item_level, products)
            out[item_level] = res
            print_run(dialect, item_level, res)
    finally:
        if keep:
            out["kept"] = target
            print(f"  kept {target}")
        elif dialect == "postgresql":
            try:
                pg_admin(f"DROP DATABASE IF EXISTS {target} WITH (FORCE)")
            except Exception as exc:  # the figures still count
                print(f"  could not drop {target}: {exc}")
    return out


def print_run(dialect: str, item_level: str, res: dict) -> None:
    if res.get("seconds") is None:
        print(f"  {dialect} {item_level}: FAILED {res.get('error')}", flush=True)
        return
    s = res["summary"]
    print(f"  {dialect} {item_level}: {res['seconds']:.2f} s, peak RSS {res['rss'] / 2**30:.2f} GiB, "
          f"{s['rows']} rules; server {res.get('server')}; per tier {s['rules_per_tier']}; "
          f"baskets {s['baskets_per_tier']}; "
          f"planted pair top for platinum: {res['planted_pair_top_for_platinum']} "
          f"(platinum's top: {s['top_rule_per_tier'].get('platinum')})", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=SCALES["L"][0])
    parser.add_argument("--orders", type=int, default=SCALES["L"][1])
    parser.add_argument("--warehouse", choices=("duckdb", "postgresql", "both"), default="both")
    parser.add_argument("--keep", action="store_true",
                        help="keep the DuckDB file and the PostgreSQL database (their names are printed)")
    parser.add_argument("--products", type=int, default=PRODUCTS,
                        help="products in the catalogue; the results file is then baskets_<scale>_p<products>.json")
    parser.add_argument("--shuffled-time", action="store_true",
                        help="order times at random over the three years instead of in row order (the worst case "
                             "for DuckDB's zone maps); the results file is then baskets_<scale>_shuffled.json")
    parser.add_argument("--results", type=Path, default=BENCH / "results" / "baskets")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    scale = next((k for k, v in SCALES.items() if v == (args.customers, args.orders)), str(args.customers))
    work = Path(tempfile.mkdtemp(prefix=f"bench_baskets_{scale.lower()}_"))
    (work / "home").mkdir()
    record: dict = {"scale": scale, "started": datetime.now().isoformat(timespec="seconds"),
                    "customers": args.customers, "orders": args.orders, "quarter": QUARTER,
                    "snapshot": str(SNAPSHOT), "products": args.products, "planted_pair": list(planted(args.products)),
                    "shuffled_time": args.shuffled_time,
                    "runs": {}}
    record["params"] = {k: str(v) for k, v in query_params("category").items() if k != "item_level"}
    dialects = ("duckdb", "postgresql") if args.warehouse == "both" else (args.warehouse,)
    try:
        for dialect in dialects:
            record["runs"][dialect] = run_warehouse(dialect, args.customers, args.orders, work, args.keep,
                                                    args.shuffled_time, args.products)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    args.results.mkdir(parents=True, exist_ok=True)
    variant = ("" if args.products == PRODUCTS else f"_p{args.products}") + ("_shuffled" if args.shuffled_time else "")
    out = args.results / f"baskets_{scale}{variant}.json"
    if out.exists():  # keep the other warehouse's figures of an earlier run at this scale
        earlier = json.loads(out.read_text())
        record["runs"] = {**earlier.get("runs", {}), **record["runs"]}
    out.write_text(json.dumps(record, indent=2, default=str))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
