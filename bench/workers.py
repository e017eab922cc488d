"""The code the benchmark runs in fresh worker processes: the pipeline's stages and the baselines.

bench/run.py hands these functions to ``in_fresh_process``, which runs each in a newly spawned
interpreter (as one Airflow task runs); a spawned worker gets the parent's ``sys.path``, so this
sibling module imports there as it does in run.py, and ``grading`` is the package installed in
the venv.
"""

# SQL here is built from table names and dates of the bench, never from input: S608 does not apply.
# ruff: noqa: S608

from __future__ import annotations

import concurrent.futures as cf
import json
import multiprocessing as mp
import os
import resource
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path


def _peak_rss() -> int:
    """This worker's peak RSS in bytes; called last in a worker, so it also mutes its stderr:
    DuckDB 2.0's bindings print "nanobind: leaked ..." at interpreter exit, which is noise."""
    # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over fork + exec, so a spawned
    # worker would report at least the bench process's RSS (the generated data) at spawn time.
    status = Path("/proc/self/status")
    if status.exists():
        peak = next(int(line.split()[1]) * 1024 for line in status.read_text().splitlines()
                    if line.startswith("VmHWM:"))
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux, bytes on macOS
    sys.stderr.flush()
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
    return peak


def _env(home: Path) -> None:
    os.environ["GRADING_HOME"] = str(home)
    os.environ.setdefault("GRADING_PSEUDONYM_KEY", "bench-key")


def stage_worker(stage: str, source_url: str, warehouse_url: str, home: str, as_of: str,
                 run_id: str, extra: dict) -> dict:
    """One stage through grading.pipeline in this (fresh) process; times the call only."""
    _env(Path(home))
    import logging
    logging.basicConfig(level=logging.WARNING)
    from grading import pipeline
    from grading.review.quarters import Quarter

    conns = pipeline.Connections(source_url, warehouse_url, None)
    day = date.fromisoformat(as_of)
    started = time.perf_counter()
    if stage == "extract":
        out = pipeline.extract_stage(conns, day, run_id)
    elif stage == "validate":
        out = pipeline.validate_stage(conns, day, run_id, extra["batch"])
    elif stage == "review":
        quarter = Quarter.parse(extra.get("quarter") or str(Quarter.closing_on(day)))
        out = pipeline.review_stage(conns, quarter, run_id, output_dir=Path(home) / "review")
    else:
        out = getattr(pipeline, f"{stage}_stage")(conns, day, run_id)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rss": _peak_rss(), "summary": json.loads(json.dumps(out, default=str))}


def direct_raw_worker(duck_source: str, warehouse_url: str, home: str, batch: str, as_of: str) -> dict:
    """Load raw.* (rows before ``as_of``) straight from the source (no pd.read_sql), register keys and watermarks.

    Used at L (and whenever extraction cannot be run): DuckDB INSERT ... SELECT from the
    attached source file; PostgreSQL COPY streamed from the source file.
    """
    _env(Path(home))
    import duckdb
    import psycopg
    import sqlalchemy as sa

    from grading import extract
    from grading.contract import SOURCE_TABLES
    from grading.pipeline import prepare_warehouse
    from grading.settings import pseudonym_key
    from grading.warehouse import open_engine

    started = time.perf_counter()
    cutoff = datetime.combine(date.fromisoformat(as_of), datetime.min.time())
    with open_engine(warehouse_url) as wh:
        prepare_warehouse(wh)
        rows = {}
        if wh.dialect.name == "duckdb":
            with wh.begin() as conn:
                conn.exec_driver_sql(f"ATTACH '{duck_source}' AS src (READ_ONLY)")
                for name, spec in SOURCE_TABLES.items():
                    cols = ", ".join(spec.columns)
                    conn.exec_driver_sql(f"DELETE FROM raw.{name}")
                    conn.exec_driver_sql(
                        f"INSERT INTO raw.{name} ({cols}, extracted_at) SELECT {cols}, TIMESTAMP '{batch}' "
                        f"FROM src.{name} WHERE {spec.event_time} < TIMESTAMP '{cutoff}'")
                    rows[name] = conn.exec_driver_sql(f"SELECT COUNT(*) FROM raw.{name}").scalar()
        else:
            import io

            import pyarrow.csv as pacsv
            duck = duckdb.connect(duck_source, read_only=True)
            dsn = wh.url.set(drivername="postgresql").render_as_string(hide_password=False)
            with psycopg.connect(dsn) as con:
                for name, spec in SOURCE_TABLES.items():
                    cols = ", ".join(spec.columns)
                    con.execute(f"DELETE FROM raw.{name}")
                    reader = duck.sql(
                        f"SELECT {cols}, TIMESTAMP '{batch}' AS extracted_at FROM {name} "
                        f"WHERE {spec.event_time} < TIMESTAMP '{cutoff}'").to_arrow_reader(500_000)
                    n = 0
                    statement = f"COPY raw.{name} ({cols}, extracted_at) FROM STDIN WITH (FORMAT csv)"
                    with con.cursor().copy(statement) as cp:
                        for b in reader:
                            sink = io.BytesIO()
                            pacsv.write_csv(b, sink, pacsv.WriteOptions(include_header=False))
                            cp.write(sink.getvalue())
                            n += b.num_rows
                    rows[name] = n
                con.commit()
            duck.close()
        with wh.begin() as conn:
            conn.execute(sa.text("DELETE FROM ops.extract_watermarks"))
            for name in SOURCE_TABLES:
                conn.execute(sa.text("INSERT INTO ops.extract_watermarks (source_table, extracted_through, updated_at) "
                                     "VALUES (:t, :c, :n)"),
                             {"t": name, "c": cutoff, "n": datetime.fromisoformat(batch)})
        rows["customer_keys_added"] = extract.register_customer_keys(wh, pseudonym_key())
    return {"seconds": time.perf_counter() - started, "rss": _peak_rss(), "summary": {"rows": rows}}


def baseline_sql(as_of: date, prefix: str = "") -> str:
    """Per-customer RFM + complaint features with NTILE quintile scores (portable DuckDB / PostgreSQL)."""
    a = f"TIMESTAMP '{as_of.isoformat()}'"
    w = f"TIMESTAMP '{(as_of - timedelta(days=365)).isoformat()}'"
    return f"""
WITH o AS (
    SELECT customer_id, MAX(order_ts) AS last_order_at, COUNT(*) AS frequency, SUM(amount) AS monetary,
           SUM(margin) AS margin
    FROM {prefix}orders WHERE status = 'completed' AND order_ts >= {w} AND order_ts < {a}
    GROUP BY customer_id),
r AS (
    SELECT customer_id, COUNT(*) AS refunds FROM {prefix}orders
    WHERE status = 'refunded' AND order_ts >= {w} AND order_ts < {a} GROUP BY customer_id),
t AS (
    SELECT customer_id, COUNT(*) AS tickets,
           SUM(CASE WHEN category = 'complaint' THEN 1 ELSE 0 END) AS complaints
    FROM {prefix}tickets WHERE opened_at >= {w} AND opened_at < {a} GROUP BY customer_id),
base AS (
    SELECT c.customer_id, c.region,
           CAST({a} AS DATE) - CAST(o.last_order_at AS DATE) AS recency_days,
           COALESCE(o.frequency, 0) AS frequency, COALESCE(o.monetary, 0) AS monetary,
           COALESCE(o.margin, 0) AS margin, COALESCE(r.refunds, 0) AS refunds,
           COALESCE(t.tickets, 0) AS tickets, COALESCE(t.complaints, 0) AS complaints
    FROM {prefix}customers AS c
    LEFT JOIN o ON o.customer_id = c.customer_id
    LEFT JOIN r ON r.customer_id = c.customer_id
    LEFT JOIN t ON t.customer_id = c.customer_id
    WHERE c.created_at < {a})
SELECT base.*,
       NTILE(5) OVER (ORDER BY recency_days DESC NULLS FIRST) AS r_score,
       NTILE(5) OVER (ORDER BY frequency) AS f_score,
       NTILE(5) OVER (ORDER BY monetary) AS m_score
FROM base"""


def duckdb_baseline_worker(duck_source: str, as_of: str) -> dict:
    import duckdb
    con = duckdb.connect()  # in memory; the source file attached read-only
    con.execute(f"ATTACH '{duck_source}' AS src (READ_ONLY)")
    started = time.perf_counter()
    con.execute("CREATE TABLE rfm AS " + baseline_sql(date.fromisoformat(as_of), "src."))
    seconds = time.perf_counter() - started
    rows = con.execute("SELECT COUNT(*) FROM rfm").fetchone()[0]
    return {"seconds": seconds, "rss": _peak_rss(), "summary": {"rows": rows}}


def pg_baseline_worker(db: str, as_of: str) -> dict:
    import psycopg
    with psycopg.connect(f"host=127.0.0.1 port=5432 user=postgres dbname={db}") as con:
        con.execute("DROP TABLE IF EXISTS rfm")
        started = time.perf_counter()
        con.execute("CREATE TABLE rfm AS " + baseline_sql(date.fromisoformat(as_of)))
        con.commit()
        seconds = time.perf_counter() - started
        rows = con.execute("SELECT COUNT(*) FROM rfm").fetchone()[0]
        con.execute("DROP TABLE rfm")
        con.commit()
    return {"seconds": seconds, "rss": _peak_rss(), "summary": {"rows": rows}}


def tutorial_pandas_worker(duck_source: str, as_of: str) -> dict:
    """The RFM of a typical pandas tutorial: groupby with Python lambdas, qcut, apply(axis=1)."""
    import duckdb
    import pandas as pd

    con = duckdb.connect(duck_source, read_only=True)
    customers = con.execute("SELECT * FROM customers").df()
    orders = con.execute("SELECT * FROM orders").df()
    tickets = con.execute("SELECT * FROM tickets").df()
    con.close()
    snapshot = pd.Timestamp(as_of)
    started = time.perf_counter()
    window = orders[(orders["order_ts"] < snapshot) & (orders["order_ts"] >= snapshot - pd.Timedelta(days=365))]
    done = window[window["status"] == "completed"]
    rfm = done.groupby("customer_id").agg({
        "order_ts": lambda x: (snapshot - x.max()).days,
        "order_id": lambda x: len(x.unique()),
        "amount": lambda x: x.sum(),
        "margin": lambda x: x.sum(),
    })
    rfm.columns = ["recency", "frequency", "monetary", "margin"]
    refunds = window.groupby("customer_id")["status"].apply(lambda s: (s == "refunded").sum()).rename("refunds")
    tk = tickets[(tickets["opened_at"] < snapshot) & (tickets["opened_at"] >= snapshot - pd.Timedelta(days=365))]
    tk = tk.groupby("customer_id").agg(tickets=("ticket_id", lambda x: len(x)),
                                        complaints=("category", lambda x: (x == "complaint").sum()))
    out = customers[customers["created_at"] < snapshot][["customer_id", "region"]].set_index("customer_id")
    out = out.join(rfm).join(refunds).join(tk)
    out[["frequency", "monetary", "margin", "refunds", "tickets", "complaints"]] = \
        out[["frequency", "monetary", "margin", "refunds", "tickets", "complaints"]].fillna(0)
    out["recency"] = out["recency"].fillna(9999)
    out["r_score"] = pd.qcut(out["recency"].rank(method="first"), 5, labels=[5, 4, 3, 2, 1]).astype(int)
    out["f_score"] = pd.qcut(out["frequency"].rank(method="first"), 5, labels=[1, 2, 3, 4, 5]).astype(int)
    out["m_score"] = pd.qcut(out["monetary"].rank(method="first"), 5, labels=[1, 2, 3, 4, 5]).astype(int)
    out["rfm_segment"] = out.apply(lambda row: f"{row['r_score']}{row['f_score']}{row['m_score']}", axis=1)
    out["complaint_rate"] = out.apply(lambda row: row["complaints"] / row["frequency"] if row["frequency"] else None,
                                      axis=1)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rss": _peak_rss(), "summary": {"rows": len(out)}}


def plain_job_worker(kind: str, duck_source: str, target: str, as_of: str) -> dict:
    """The whole job as plain SQL (bench/plain_job.py) on one warehouse, every stage in this one
    fresh process; the total and each stage's seconds, and the worker's peak RSS."""
    import plain_job  # a sibling module, as this one is in run.py

    started = time.perf_counter()
    stages = plain_job.run_job(kind, duck_source, target, date.fromisoformat(as_of))
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rss": _peak_rss(), "stages": json.loads(json.dumps(stages, default=str))}


def in_fresh_process(fn, *args, timeout: float | None = None) -> dict:
    """Run ``fn`` in a new spawned interpreter (like one Airflow task) and return its dict."""
    ctx = mp.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        try:
            return pool.submit(fn, *args).result(timeout=timeout)
        except Exception as exc:  # a failed stage is a result, not a crash of the bench
            return {"seconds": None, "rss": None, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
