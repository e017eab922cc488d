"""Benchmark of the customer grading pipeline against bare-SQL and tutorial-pandas baselines.

A benchmark, not a test: it generates data at a scale with a fixed seed, writes it as the
pipeline's source (a DuckDB file in the canonical schema), runs every stage through the real
stage functions of grading.pipeline on the embedded DuckDB warehouse and on PostgreSQL (a
database it creates and drops), each stage in a fresh worker process as an Airflow task
would run, and records wall time and the worker's peak RSS per stage. In the same run it
times the baselines on the same data and writes bench/results/<scale>.json and
bench/RESULTS.md (all scales run so far, the machine, and the targets of issue 8).

    .venv/bin/python bench/run.py --scale S --warehouse both
    .venv/bin/python bench/run.py --scale M --warehouse both
    .venv/bin/python bench/run.py --scale L --warehouse duckdb --pipeline features --raw direct

Scales: S = 10,000 customers; M = 100,000 customers / 2,000,000 orders / 300,000 tickets;
L = 1,000,000 / 20,000,000 / 3,000,000. grading.demo makes about 8 orders and 2 tickets per
customer over three years, so the bench tops orders and tickets up to the target counts by
resampling generated rows of the same customers, shifted back in time (bench-only knobs).
"""

# SQL here is built from table names and dates of this script, never from input: S608 does not apply.
# ruff: noqa: S608

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import multiprocessing as mp
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path

BENCH = Path(__file__).resolve().parent
PROJECT = BENCH.parent
SCALES = {  # customers, orders, tickets (None: whatever grading.demo makes)
    "S": (10_000, 200_000, 30_000),
    "M": (100_000, 2_000_000, 300_000),
    "L": (1_000_000, 20_000_000, 3_000_000),
}
SEED = 20250101
# The full run grades as of 2024-12-01; the source also holds that day's rows, which the
# daily incremental run (as of 2024-12-02) picks up. (Not 2025-01-01: the generator's
# seasonality halves the volume from December to January, which the validation's volume
# band rightly rejects as a partial delivery.)
DATA_END = date(2024, 12, 1)      # source holds rows through 2024-12-01 23:59:59
AS_OF = date(2024, 12, 1)
AS_OF_NEXT = date(2024, 12, 2)
REVIEW_QUARTER = "2024Q4"         # the quarter the as-of snapshot falls in
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
GRADING_STAGES = ("extract", "validate", "features", "churn", "tiers", "flags", "publish")
GiB = 1024 ** 3


# --------------------------------------------------------------------------- data

def make_data(customers: int, orders: int | None, tickets: int | None, seed: int):
    """grading.demo's data, with orders and tickets topped up to the requested counts."""
    import numpy as np
    import pandas as pd

    from grading.demo import generate

    data = generate(customers=customers, seed=seed, end=DATA_END)
    tables = dict(data.tables())
    rng = np.random.default_rng(seed + 1)
    end_ts = np.datetime64(datetime.combine(DATA_END + timedelta(days=1), datetime.min.time()), "s")
    created = pd.Series(tables["customers"]["created_at"].to_numpy(),
                        index=tables["customers"]["customer_id"].to_numpy())

    def top_up(frame, target, key, prefix, time_cols):
        have = len(frame)
        if target is None or have >= target:
            return frame
        extra = frame.iloc[rng.integers(0, have, target - have)].reset_index(drop=True)
        # move each copy by -400..+400 days, wrapped into its customer's active span
        # [created, last original row], so churners stay churned and daily volume stays even
        who = extra["customer_id"].to_numpy()
        first = created.loc[who].to_numpy().astype("datetime64[s]").astype("int64")
        last = frame.groupby("customer_id")[time_cols[0]].max().astype("datetime64[s]")
        last = last.loc[who].to_numpy().astype("int64")
        base = extra[time_cols[0]].to_numpy().astype("datetime64[s]").astype("int64")
        first = np.minimum(first, base)
        shift = rng.integers(-400 * 86400, 400 * 86400, len(extra))
        moved = first + np.mod(base + shift - first, last - first + 1)
        delta = (moved - base).astype("timedelta64[s]")
        for col in time_cols:
            values = extra[col].to_numpy().astype("datetime64[s]")
            extra[col] = pd.Series(values + delta).where(~pd.isna(values)).astype("datetime64[s]")
        extra[key] = prefix + pd.Series(np.arange(have + 1, target + 1)).astype(str)
        out = pd.concat([frame, extra], ignore_index=True)
        assert (out[time_cols[0]] < pd.Timestamp(end_ts)).all()
        return out

    tables["orders"] = top_up(tables["orders"], orders, "order_id", "O", ["order_ts"])
    tables["tickets"] = top_up(tables["tickets"], tickets, "ticket_id", "T", ["opened_at", "closed_at"])
    return tables


def write_duckdb_source(tables, path: Path) -> None:
    """The canonical source schema in a DuckDB file (written from the frames via Arrow)."""
    import duckdb
    import pandas as pd

    path.unlink(missing_ok=True)
    con = duckdb.connect(str(path))
    try:
        for name, frame in tables.items():
            cols = []
            for col, dtype in frame.dtypes.items():
                if pd.api.types.is_datetime64_any_dtype(dtype):
                    cols.append(f"CAST({col} AS TIMESTAMP) AS {col}")
                elif pd.api.types.is_bool_dtype(dtype):
                    cols.append(f"CAST({col} AS BOOLEAN) AS {col}")
                elif pd.api.types.is_float_dtype(dtype):
                    cols.append(f"CAST({col} AS DOUBLE) AS {col}")
                elif pd.api.types.is_integer_dtype(dtype):
                    cols.append(f"CAST({col} AS INTEGER) AS {col}")
                else:
                    cols.append(f"CAST({col} AS VARCHAR) AS {col}")
            con.register("frame_view", frame)
            con.execute(f"CREATE TABLE {name} AS SELECT {', '.join(cols)} FROM frame_view")
            con.unregister("frame_view")
        con.execute("CHECKPOINT")
    finally:
        con.close()


PG_SOURCE_DDL = {
    "customers": "customer_id VARCHAR, created_at TIMESTAMP, region VARCHAR, industry VARCHAR, channel VARCHAR, "
                 "name VARCHAR, email VARCHAR, phone VARCHAR",
    "orders": "order_id VARCHAR, customer_id VARCHAR, order_ts TIMESTAMP, status VARCHAR, amount NUMERIC(18,2), "
              "margin NUMERIC(18,2)",
    "tickets": "ticket_id VARCHAR, customer_id VARCHAR, opened_at TIMESTAMP, closed_at TIMESTAMP, category VARCHAR, "
               "severity VARCHAR, resolved BOOLEAN",
    "surveys": "survey_id VARCHAR, customer_id VARCHAR, responded_at TIMESTAMP, csat INTEGER, nps INTEGER",
}


def pg_url(db: str) -> str:
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{db}"


def pg_admin(sql: str) -> None:
    import psycopg
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres", autocommit=True) as con:
        con.execute(sql)


def pg_recreate(db: str) -> None:
    pg_admin(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    pg_admin(f"CREATE DATABASE {db}")


def copy_duckdb_to_pg(duck_path: Path, db: str, tables=("customers", "orders", "tickets", "surveys")) -> float:
    """COPY the source tables from the DuckDB file into PostgreSQL (text COPY, streamed); returns seconds."""
    import duckdb
    import psycopg

    started = time.perf_counter()
    duck = duckdb.connect(str(duck_path), read_only=True)
    with psycopg.connect(f"host=127.0.0.1 port=5432 user=postgres dbname={db}") as con:
        for name in tables:
            con.execute(f"DROP TABLE IF EXISTS {name}")
            con.execute(f"CREATE TABLE {name} ({PG_SOURCE_DDL[name]})")
            reader = duck.sql(f"SELECT * FROM {name}").to_arrow_reader(500_000)
            with con.cursor().copy(f"COPY {name} FROM STDIN WITH (FORMAT csv)") as copy:
                import pyarrow.csv as pacsv
                for batch in reader:
                    sink = __import__("io").BytesIO()
                    pacsv.write_csv(batch, sink, pacsv.WriteOptions(include_header=False))
                    copy.write(sink.getvalue())
        con.execute("ANALYZE")
        con.commit()
    duck.close()
    return time.perf_counter() - started


# --------------------------------------------------------------------------- workers

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
    sys.path.insert(0, str(PROJECT / "plugins"))


def stage_worker(stage: str, source_url: str, warehouse_url: str, home: str, as_of: str,
                 run_id: str, extra: dict) -> dict:
    """One stage through grading.pipeline in this (fresh) process; times the call only."""
    _env(Path(home))
    import logging
    logging.basicConfig(level=logging.WARNING)
    from grading import pipeline, review

    conns = pipeline.Connections(source_url, warehouse_url, None)
    day = date.fromisoformat(as_of)
    started = time.perf_counter()
    if stage == "extract":
        out = pipeline.extract_stage(conns, day, run_id)
    elif stage == "validate":
        out = pipeline.validate_stage(conns, day, run_id, extra["batch"])
    elif stage == "review":
        quarter = review.Quarter.parse(extra.get("quarter") or str(review.Quarter.closing_on(day)))
        out = pipeline.review_stage(conns, quarter, run_id, output_dir=Path(home) / "review")
    else:
        out = getattr(pipeline, f"{stage}_stage")(conns, day, run_id)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rss": _peak_rss(), "summary": json.loads(json.dumps(out, default=str))}


def direct_raw_worker(duck_source: str, warehouse_url: str, home: str, batch: str) -> dict:
    """Load raw.* straight from the source (no pd.read_sql), register keys and watermarks.

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
    cutoff = datetime.combine(AS_OF, datetime.min.time())
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


def in_fresh_process(fn, *args, timeout: float | None = None) -> dict:
    """Run ``fn`` in a new spawned interpreter (like one Airflow task) and return its dict."""
    ctx = mp.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        try:
            return pool.submit(fn, *args).result(timeout=timeout)
        except Exception as exc:  # a failed stage is a result, not a crash of the bench
            return {"seconds": None, "rss": None, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}


# --------------------------------------------------------------------------- running

def run_pipeline(label: str, duck_source: Path, warehouse_url: str, home: Path, pipeline: str, raw: str,
                 do_review: bool, do_incremental: bool) -> dict:
    """Every stage of one full run (and one incremental day) on one warehouse."""
    results: dict[str, dict] = {}
    source_url = f"duckdb:///{duck_source}"
    run_id = f"bench__{label}__{AS_OF.isoformat()}"
    batch = None

    def step(name, fn, *args):
        res = in_fresh_process(fn, *args)
        results[name] = res
        shown = f"{res['seconds']:.2f}s" if res.get("seconds") is not None else "FAILED " + res.get("error", "")
        rss = f"{res['rss'] / GiB:.2f} GiB" if res.get("rss") else "-"
        print(f"  [{label}] {name:<22} {shown:>10}  peak RSS {rss}", flush=True)
        return res

    if raw == "extract":
        res = step("extract", stage_worker, "extract", source_url, warehouse_url, str(home), AS_OF.isoformat(),
                   run_id, {})
        batch = (res.get("summary") or {}).get("batch")
        if batch is None:
            print(f"  [{label}] extraction failed; loading raw directly instead", flush=True)
            raw = "direct"
    if raw == "direct":
        batch = datetime.now().replace(microsecond=0).isoformat()
        step("extract (direct load)", direct_raw_worker, str(duck_source), warehouse_url, str(home), batch)
    stages = ["validate", "features", "churn", "tiers", "flags", "publish"] if pipeline == "full" else ["features"]
    for stage in stages:
        step(stage, stage_worker, stage, source_url, warehouse_url, str(home), AS_OF.isoformat(), run_id,
             {"batch": batch})
    if pipeline == "full" and do_review:
        step("review", stage_worker, "review", source_url, warehouse_url, str(home), AS_OF.isoformat(),
             f"{run_id}__review", {"quarter": REVIEW_QUARTER})
    if pipeline == "full" and do_incremental and raw == "extract":
        run2 = f"bench__{label}__{AS_OF_NEXT.isoformat()}"
        res = step("incr extract", stage_worker, "extract", source_url, warehouse_url, str(home),
                   AS_OF_NEXT.isoformat(), run2, {})
        batch2 = (res.get("summary") or {}).get("batch")
        for stage in ["validate", "features", "churn", "tiers", "flags", "publish"]:
            step(f"incr {stage}", stage_worker, stage, source_url, warehouse_url, str(home),
                 AS_OF_NEXT.isoformat(), run2, {"batch": batch2})
    return results


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = next((int(line.split()[1]) * 1024 for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), 0)
    import duckdb
    import pandas as pd
    import sqlalchemy
    try:
        pg = subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-tAc", "SHOW server_version"],
                            capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        pg = "?"
    try:
        from importlib.metadata import version
        airflow = version("apache-airflow")
        gx = version("great_expectations")
    except Exception:
        airflow = gx = "?"
    return {"nproc": os.cpu_count(), "memory_gib": round(mem / GiB, 1), "cpu": cpu,
            "python": platform.python_version(), "pandas": pd.__version__, "duckdb": duckdb.__version__,
            "sqlalchemy": sqlalchemy.__version__, "postgresql": pg, "airflow": airflow, "great_expectations": gx,
            "kernel": platform.release()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", default="S", help="S, M, L, or a number of customers")
    parser.add_argument("--warehouse", choices=["duckdb", "postgresql", "both"], default="both")
    parser.add_argument("--pipeline", choices=["full", "features", "none"], default="full",
                        help="every stage (default), only the features stage, or no pipeline")
    parser.add_argument("--raw", choices=["extract", "direct"], default="extract",
                        help="fill raw.* with the extract stage (default) or load it directly")
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--no-tutorial", action="store_true", help="skip the tutorial pandas baseline")
    parser.add_argument("--no-review", action="store_true")
    parser.add_argument("--no-incremental", action="store_true")
    parser.add_argument("--workdir", type=Path, default=BENCH / ".data")
    parser.add_argument("--results", type=Path, default=BENCH / "results")
    parser.add_argument("--markdown", type=Path, default=BENCH / "RESULTS.md")
    parser.add_argument("--keep", action="store_true", help="keep the data files and PostgreSQL databases")
    parser.add_argument("--source", type=Path, help="reuse this DuckDB source file (made by an earlier run at "
                        "the same scale, kept with --keep) instead of generating")
    parser.add_argument("--merge", action="store_true",
                        help="merge the baselines and runs into the scale's earlier results instead of replacing them")
    args = parser.parse_args(argv)

    scale = args.scale.upper()
    customers, orders, tickets = SCALES.get(scale) or (int(args.scale), None, None)
    scale_label = scale if scale in SCALES else f"{customers}"
    work = args.workdir / scale_label
    if args.source and args.source.resolve().is_relative_to(work.resolve()):
        # a source kept by an earlier run (--keep) lies in the folder about to be cleared
        kept = args.workdir / f"{scale_label}-source.duckdb"
        shutil.move(args.source, kept)
        args.source = kept
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    sys.path.insert(0, str(PROJECT / "plugins"))
    record: dict = {"scale": scale_label, "started": datetime.now().isoformat(timespec="seconds"),
                    "args": {k: str(v) for k, v in vars(args).items()}, "machine": machine(),
                    "targets_rows": {"customers": customers, "orders": orders, "tickets": tickets}}

    duck_source = work / "source.duckdb"
    if args.source:
        shutil.copyfile(args.source, duck_source)
        import duckdb
        con = duckdb.connect(str(duck_source), read_only=True)
        counts = {name: con.execute(f"SELECT COUNT(*) FROM {name}").fetchone()[0]
                  for name in ("customers", "orders", "tickets", "surveys", "interactions")
                  if con.execute("SELECT COUNT(*) FROM information_schema.tables WHERE table_name = ?",
                                 [name]).fetchone()[0]}
        con.close()
        print(f"scale {scale_label}: reusing {args.source}: {counts}", flush=True)
        record.update(rows=counts)
    else:
        print(f"scale {scale_label}: generating (seed {SEED}) ...", flush=True)
        started = time.perf_counter()
        tables = make_data(customers, orders, tickets, SEED)
        gen_s = time.perf_counter() - started
        counts = {name: len(frame) for name, frame in tables.items()}
        from grading.contract import SOURCE_TABLES
        cutoff = datetime.combine(AS_OF, datetime.min.time())
        before = {name: int((frame[SOURCE_TABLES[name].event_time] < cutoff).sum()) for name, frame in tables.items()}
        print(f"  rows: {counts} (before as-of {AS_OF}: {before}) in {gen_s:.1f}s", flush=True)
        started = time.perf_counter()
        write_duckdb_source(tables, duck_source)
        write_s = time.perf_counter() - started
        del tables
        print(f"  source written to {duck_source} in {write_s:.1f}s", flush=True)
        record.update(rows=counts, rows_before_as_of=before, generate_s=gen_s, write_source_s=write_s)

    pg_src = f"bench_src_{scale_label.lower()}"
    pg_wh = f"bench_wh_{scale_label.lower()}"
    use_pg = args.warehouse in ("postgresql", "both")
    use_duck = args.warehouse in ("duckdb", "both")
    baselines: dict[str, dict] = {}
    try:
        if not args.no_baselines:
            res = in_fresh_process(duckdb_baseline_worker, str(duck_source), AS_OF.isoformat())
            baselines["bare DuckDB SQL"] = res
            print(f"  baseline bare DuckDB: {res}", flush=True)
            if use_pg:
                pg_recreate(pg_src)
                copy_s = copy_duckdb_to_pg(duck_source, pg_src)
                baselines["COPY source into PostgreSQL"] = {"seconds": copy_s, "rss": None}
                res = in_fresh_process(pg_baseline_worker, pg_src, AS_OF.isoformat())
                baselines["bare PostgreSQL CTAS"] = res
                print(f"  COPY into PostgreSQL {copy_s:.1f}s; baseline bare PostgreSQL: {res}", flush=True)
            if not args.no_tutorial and customers <= 200_000:
                res = in_fresh_process(tutorial_pandas_worker, str(duck_source), AS_OF.isoformat())
                baselines["tutorial pandas (lambdas)"] = res
                print(f"  baseline tutorial pandas: {res}", flush=True)
        record["baselines"] = baselines

        runs = {}
        if args.pipeline != "none":
            if use_duck:
                home = work / "home_duckdb"
                home.mkdir()
                runs["duckdb"] = run_pipeline("duckdb", duck_source, f"duckdb:///{work / 'warehouse.duckdb'}", home,
                                              args.pipeline, args.raw, not args.no_review, not args.no_incremental)
            if use_pg:
                pg_recreate(pg_wh)
                home = work / "home_postgresql"
                home.mkdir()
                runs["postgresql"] = run_pipeline("postgresql", duck_source, pg_url(pg_wh), home, args.pipeline,
                                                  args.raw, not args.no_review, not args.no_incremental)
        record["runs"] = runs
    finally:
        if use_pg and not args.keep:
            for db in (pg_src, pg_wh):
                try:
                    pg_admin(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
                except Exception as exc:
                    print(f"  could not drop {db}: {exc}")
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    args.results.mkdir(parents=True, exist_ok=True)
    earlier = args.results / f"{scale_label}.json"
    if args.merge and earlier.exists():
        old = json.loads(earlier.read_text())
        # keep the first invocation's baselines (the report says so): the runs there were timed
        # against them; a later invocation only adds baselines that were missing
        for name, res in record.get("baselines", {}).items():
            old.setdefault("baselines", {}).setdefault(name, res)
        for wh, run in record.get("runs", {}).items():
            old.setdefault("runs", {})[wh] = run
        old.setdefault("merged", []).append(record["started"])
        record = old
    (args.results / f"{scale_label}.json").write_text(json.dumps(record, indent=2, default=str))
    text = render(load_results(args.results))
    args.markdown.write_text(text)
    print()
    print(text)
    return 0


# --------------------------------------------------------------------------- report

def load_results(folder: Path) -> dict[str, dict]:
    order = {"S": 0, "M": 1, "L": 2}
    found = {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")}
    return dict(sorted(found.items(), key=lambda kv: (order.get(kv[0], -1), kv[0])))


def _fmt_s(value) -> str:
    return "–" if value is None else f"{value:.2f}"


def _fmt_gib(value) -> str:
    return "–" if not value else f"{value / GiB:.2f}"


def full_time(run: dict, prefix: str = "") -> float | None:
    """Sum of the grading stages (extract .. publish) of a run; None when one is missing or failed."""
    total = 0.0
    for stage in GRADING_STAGES:
        res = run.get(prefix + stage)
        if res is None and stage == "extract" and not prefix:
            res = run.get("extract (direct load)")
        if res is None or res.get("seconds") is None:
            return None
        total += res["seconds"]
    return total


def peak(run: dict) -> int | None:
    values = [r.get("rss") for r in run.values() if r.get("rss")]
    return max(values) if values else None


def targets(results: dict[str, dict]) -> list[tuple[str, str, str, str]]:
    """(target, measured, status, note) for each target of issue 8."""
    def get(scale, wh):
        return results.get(scale, {}).get("runs", {}).get(wh)

    def base(scale, name):
        return (results.get(scale, {}).get("baselines", {}).get(name) or {}).get("seconds")

    rows = []

    def ratio_row(title, scale, wh, baseline, limit, fallback_scale="M"):
        run, b = get(scale, wh), base(scale, baseline)
        full = full_time(run) if run else None
        if full is not None and b:
            r = full / b
            rows.append((title, f"{full:.1f} s / {b:.2f} s = {r:.1f}×", "met" if r <= limit else "not met",
                         f"at {scale}"))
            return
        note = f"no full run at {scale}"
        lfeat = ((run or {}).get("features") or {}).get("seconds")
        if lfeat and b:
            note += f"; features stage alone at {scale}: {lfeat:.1f} s / {b:.2f} s = {lfeat / b:.1f}×"
        run, b = get(fallback_scale, wh), base(fallback_scale, baseline)
        full = full_time(run) if run else None
        if full is not None and b:
            note += f"; at {fallback_scale}: {full:.1f} s / {b:.2f} s = {full / b:.1f}× (limit {limit}×)"
        rows.append((title, "–", "not measured", note))

    ratio_row("full grading at L on DuckDB ≤ 1.5× bare DuckDB query", "L", "duckdb", "bare DuckDB SQL", 1.5)
    ratio_row("full grading at L on PostgreSQL ≤ 2× bare PostgreSQL aggregation", "L", "postgresql",
              "bare PostgreSQL CTAS", 2.0)

    tut = base("M", "tutorial pandas (lambdas)")
    run = get("M", "duckdb")
    full = full_time(run) if run else None
    if tut and full:
        feats = (run.get("features") or {}).get("seconds")
        rows.append(("≥ 50× faster than tutorial pandas at M (full grading, DuckDB)",
                     f"{tut:.1f} s / {full:.1f} s = {tut / full:.2f}×", "met" if tut / full >= 50 else "not met",
                     f"features stage alone: {tut / feats:.0f}×" if feats else ""))
    else:
        rows.append(("≥ 50× faster than tutorial pandas at M", "–", "not measured", "no M run with both"))

    l_runs = results.get("L", {}).get("runs", {})
    l_full = [(wh, full_time(r), peak(r)) for wh, r in l_runs.items()]
    measured = [(wh, p) for wh, f, p in l_full if p]
    if measured and any(f is not None for _, f, _ in l_full):
        for wh, worst in measured:
            rows.append((f"worker peak RSS ≤ 1.5 GiB at L ({wh})", f"{worst / GiB:.2f} GiB",
                         "met" if worst <= 1.5 * GiB else "not met",
                         "max over every stage run (full, daily and review)"))
    elif measured:
        worst = max(p for _, p in measured)
        rows.append(("worker peak RSS ≤ 1.5 GiB at L", f"{worst / GiB:.2f} GiB (stages run only)",
                     "not measured" if worst <= 1.5 * GiB else "not met",
                     "only the stages run at L (see table); a breach there already fails the target"))
    else:
        m = max((peak(r) or 0 for r in results.get("M", {}).get("runs", {}).values()), default=0)
        rows.append(("worker peak RSS ≤ 1.5 GiB at L", "–", "not measured",
                     f"at M: {m / GiB:.2f} GiB" if m else ""))

    for wh in ("duckdb", "postgresql"):
        lm, mm = get("L", wh), get("M", wh)
        lf, mf = (full_time(lm) if lm else None), (full_time(mm) if mm else None)
        if lf and mf:
            rows.append((f"L time / M time ≤ 12 ({wh})", f"{lf:.1f} / {mf:.1f} = {lf / mf:.1f}",
                         "met" if lf / mf <= 12 else "not met", "full grading"))
        else:
            lfe = ((lm or {}).get("features") or {}).get("seconds")
            mfe = ((mm or {}).get("features") or {}).get("seconds")
            note = f"features stage: {lfe:.1f} / {mfe:.1f} = {lfe / mfe:.1f}" if lfe and mfe else ""
            rows.append((f"L time / M time ≤ 12 ({wh})", "–", "not measured", note))

    for wh in ("duckdb", "postgresql"):
        best = None
        for scale in ("L", "M", "S"):
            run = get(scale, wh)
            if run and full_time(run) and full_time(run, "incr "):
                best = (scale, full_time(run, "incr "), full_time(run))
                break
        if best and best[0] == "L":
            r = best[1] / best[2]
            rows.append((f"daily incremental ≤ 10 % of full at L ({wh})", f"{best[1]:.1f} / {best[2]:.1f} = {r:.0%}",
                         "met" if r <= 0.10 else "not met", ""))
        elif best:
            r = best[1] / best[2]
            rows.append((f"daily incremental ≤ 10 % of full at L ({wh})", "–", "not measured",
                         f"at {best[0]}: {best[1]:.1f} / {best[2]:.1f} s = {r:.0%}"))
        else:
            rows.append((f"daily incremental ≤ 10 % of full at L ({wh})", "–", "not measured", ""))
    return rows


def render(results: dict[str, dict]) -> str:
    lines = ["# Benchmark results", "",
             "Written by `bench/run.py` (see the README's Performance section). Each stage ran through "
             "`grading.pipeline`'s stage function in a fresh worker process (as an Airflow task does); time is "
             "the stage call's wall time, peak RSS the worker process's high-water mark (`VmHWM`, imports "
             "included).", ""]
    any_machine = next(iter(results.values()))["machine"] if results else {}
    if any_machine:
        m = any_machine
        lines += ["## Machine", "",
                  f"- `nproc`: {m['nproc']}; memory: {m['memory_gib']} GiB; CPU: {m['cpu']}; kernel {m['kernel']}",
                  f"- Python {m['python']}, pandas {m['pandas']}, DuckDB {m['duckdb']}, SQLAlchemy {m['sqlalchemy']}, "
                  f"PostgreSQL {m['postgresql']}, Airflow {m['airflow']}, Great Expectations "
                  f"{m['great_expectations']}",
                  "- absolute times move with the machine and the day (the same VM's COPY baseline at L has "
                  "measured from 33 to 47 s); ratios within one invocation are the figures to read.", ""]
    for scale, rec in results.items():
        rows = rec.get("rows", {})
        lines += [f"## Scale {scale} ({rec.get('started', '')})", "",
                  "Rows in the source: " + ", ".join(f"{k} {v:,}" for k, v in rows.items())
                  + (f" (generated in {rec['generate_s']:.1f} s, written to a DuckDB source file in "
                     f"{rec.get('write_source_s', 0):.1f} s)." if "generate_s" in rec
                     else " (a source file kept from an earlier run at this scale, `--source`)."), ""]
        if rec.get("merged"):
            lines += ["Some runs below come from a later invocation on the same source file (`--source … --merge`, "
                      f"at {', '.join(rec['merged'])}); the baselines are from the first.", ""]
        runs = rec.get("runs", {})
        names: list[str] = []
        for run in runs.values():
            for name in run:
                if name not in names:
                    names.append(name)
        if runs:
            header = "| stage | " + " | ".join(f"{wh} s | {wh} peak RSS GiB" for wh in runs) + " |"
            lines += [header, "|---|" + "---:|---:|" * len(runs)]
            for name in names:
                cells = []
                for run in runs.values():
                    res = run.get(name)
                    if res is None:
                        cells += ["–", "–"]
                    elif res.get("seconds") is None:
                        cells += ["failed", "–"]
                    else:
                        cells += [_fmt_s(res["seconds"]), _fmt_gib(res.get("rss"))]
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
            totals = []
            for run in runs.values():
                totals += [_fmt_s(full_time(run)), _fmt_gib(peak(run))]
            lines.append("| **full grading (extract … publish)** | " + " | ".join(totals) + " |")
            if any(full_time(r, "incr ") for r in runs.values()):
                lines.append("| **daily incremental (+1 day, extract … publish)** | "
                             + " | ".join(f"{_fmt_s(full_time(r, 'incr '))} | –" for r in runs.values()) + " |")
            lines.append("")
            failures = [(wh, n, r["error"]) for wh, run in runs.items() for n, r in run.items() if r.get("error")]
            for wh, n, err in failures:
                lines.append(f"- {wh} {n} failed: `{err}`")
            if failures:
                lines.append("")
        base = rec.get("baselines", {})
        if base:
            lines += ["| baseline (same data) | s | peak RSS GiB |", "|---|---:|---:|"]
            for name, res in base.items():
                lines.append(f"| {name} | {_fmt_s(res.get('seconds'))} | {_fmt_gib(res.get('rss'))} |")
            lines.append("")
    lines += ["## Targets of issue 8", "", "| target | measured | status | note |", "|---|---|---|---|"]
    for row in targets(results):
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
