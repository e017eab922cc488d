"""Benchmark of the customer grading pipeline against bare-SQL and tutorial-pandas baselines.

A benchmark, not a test: it generates data at a scale with a fixed seed, writes it as the
pipeline's source (a DuckDB file in the canonical schema), runs every stage through the real
stage functions of grading.pipeline on the embedded DuckDB warehouse and on PostgreSQL (a
database it creates and drops), each stage in a fresh worker process as an Airflow task
would run, and records wall time and the worker's peak RSS per stage. In the same run it
times the baselines on the same data (among them the whole job written as plain SQL,
bench/plain_job.py, on each warehouse asked for: the reference of issue 24) and writes bench/results/<scale>.json and
bench/RESULTS.md (all scales run so far, the machine, and the targets of issues 8 and 24).

    .venv/bin/python bench/run.py --scale S --warehouse both
    .venv/bin/python bench/run.py --scale M --warehouse both
    .venv/bin/python bench/run.py --scale L --warehouse duckdb --pipeline features --raw direct

Scales: S = 10,000 customers; M = 100,000 customers / 2,000,000 orders / 300,000 tickets;
L = 1,000,000 / 20,000,000 / 3,000,000. grading.demo makes about 8 orders and 2 tickets per
customer over three years, so the bench tops orders and tickets up to the target counts by
resampling generated rows of the same customers, shifted back in time (bench-only knobs).

The code the workers run is in bench/workers.py, the report (RESULTS.md and the targets) in
bench/report.py; ``grading`` is the package installed (editable) in the venv.
"""

# SQL here is built from table names and dates of this script, never from input: S608 does not apply.
# ruff: noqa: S608

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path

# siblings in bench/ (this folder is on the path when run.py runs as a script, and in its spawned workers)
from report import GiB, load_results, render
from workers import (
    direct_raw_worker,
    duckdb_baseline_worker,
    in_fresh_process,
    pg_baseline_worker,
    plain_job_worker,
    stage_worker,
    tutorial_pandas_worker,
)

BENCH = Path(__file__).resolve().parent
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
        step("extract (direct load)", direct_raw_worker, str(duck_source), warehouse_url, str(home), batch,
             AS_OF.isoformat())
    # export (the CRM hand-off) runs after publish; bench/report.py keeps it out of the grading total
    stages = ["validate", "features", "churn", "tiers", "flags", "publish", "export"] if pipeline == "full" \
        else ["features"]
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
        for stage in ["validate", "features", "churn", "tiers", "flags", "publish", "export"]:
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



def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
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
    return parser.parse_args(argv)


def prepare_workdir(args: argparse.Namespace, scale_label: str) -> Path:
    """An empty work folder for the scale; a kept ``--source`` inside it is moved out first."""
    work = args.workdir / scale_label
    if args.source and args.source.resolve().is_relative_to(work.resolve()):
        # a source kept by an earlier run (--keep) lies in the folder about to be cleared
        kept = args.workdir / f"{scale_label}-source.duckdb"
        shutil.move(args.source, kept)
        args.source = kept
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    return work


def reuse_source(source: Path, duck_source: Path, scale_label: str) -> dict:
    """Copy a kept source file into place; returns its row counts for the record."""
    import duckdb

    shutil.copyfile(source, duck_source)
    con = duckdb.connect(str(duck_source), read_only=True)
    counts = {name: con.execute(f"SELECT COUNT(*) FROM {name}").fetchone()[0]
              for name in ("customers", "orders", "tickets", "surveys", "interactions")
              if con.execute("SELECT COUNT(*) FROM information_schema.tables WHERE table_name = ?",
                             [name]).fetchone()[0]}
    con.close()
    print(f"scale {scale_label}: reusing {source}: {counts}", flush=True)
    return {"rows": counts}


def generate_source(customers: int, orders: int | None, tickets: int | None, duck_source: Path,
                    scale_label: str) -> dict:
    """Generate the data and write it as the DuckDB source file; returns counts and timings for the record."""
    from grading.contract import SOURCE_TABLES

    print(f"scale {scale_label}: generating (seed {SEED}) ...", flush=True)
    started = time.perf_counter()
    tables = make_data(customers, orders, tickets, SEED)
    gen_s = time.perf_counter() - started
    counts = {name: len(frame) for name, frame in tables.items()}
    cutoff = datetime.combine(AS_OF, datetime.min.time())
    before = {name: int((frame[SOURCE_TABLES[name].event_time] < cutoff).sum()) for name, frame in tables.items()}
    print(f"  rows: {counts} (before as-of {AS_OF}: {before}) in {gen_s:.1f}s", flush=True)
    started = time.perf_counter()
    write_duckdb_source(tables, duck_source)
    write_s = time.perf_counter() - started
    del tables
    print(f"  source written to {duck_source} in {write_s:.1f}s", flush=True)
    return {"rows": counts, "rows_before_as_of": before, "generate_s": gen_s, "write_source_s": write_s}


def run_plain_jobs(duck_source: Path, work: Path, pg_plain: str, use_duck: bool, use_pg: bool) -> dict:
    """The whole job as plain SQL (bench/plain_job.py) on each warehouse asked for, in a fresh worker each."""
    baselines = {}
    for kind, wanted in (("duckdb", use_duck), ("postgresql", use_pg)):
        if not wanted:
            continue
        if kind == "duckdb":
            target = str(work / "plain.duckdb")
        else:
            pg_recreate(pg_plain)
            target = pg_plain
        res = in_fresh_process(plain_job_worker, kind, str(duck_source), target, AS_OF.isoformat())
        baselines[f"plain-SQL job ({kind})"] = res
        stages = ", ".join(f"{name} {stage['seconds']:.2f}s" for name, stage in (res.get("stages") or {}).items())
        shown = f"{res['seconds']:.2f}s ({stages})" if res.get("seconds") is not None else "FAILED " + res["error"]
        print(f"  baseline plain-SQL job on {kind}: {shown}", flush=True)
    return baselines


def run_baselines(args: argparse.Namespace, duck_source: Path, pg_src: str, use_pg: bool, customers: int,
                  plain: dict | None = None) -> dict:
    """The bare-SQL baselines (and the tutorial pandas one up to 200,000 customers) on the same source,
    then the plain-SQL job (``plain``: run_plain_jobs' arguments)."""
    baselines: dict[str, dict] = {}
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
    if plain is not None:
        baselines.update(run_plain_jobs(duck_source, **plain))
    return baselines


def run_pipelines(args: argparse.Namespace, duck_source: Path, work: Path, pg_wh: str, use_duck: bool,
                  use_pg: bool) -> dict:
    """The pipeline on each warehouse asked for, each with its own GRADING_HOME."""
    runs = {}
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
    return runs


def clean_up(args: argparse.Namespace, work: Path, pg_dbs: tuple[str, ...], use_pg: bool) -> None:
    """Drop the PostgreSQL databases and the work folder, unless ``--keep``."""
    if use_pg and not args.keep:
        for db in pg_dbs:
            try:
                pg_admin(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
            except Exception as exc:
                print(f"  could not drop {db}: {exc}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


def merge_earlier(record: dict, earlier: dict) -> dict:
    """The scale's earlier results with this invocation's runs (and only its missing baselines) merged in."""
    # keep the first invocation's baselines (the report says so): the runs there were timed
    # against them; a later invocation only adds baselines that were missing
    for name, res in record.get("baselines", {}).items():
        earlier.setdefault("baselines", {}).setdefault(name, res)
    for wh, run in record.get("runs", {}).items():
        earlier.setdefault("runs", {})[wh] = run
    earlier.setdefault("merged", []).append(record["started"])
    return earlier


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    scale = args.scale.upper()
    customers, orders, tickets = SCALES.get(scale) or (int(args.scale), None, None)
    scale_label = scale if scale in SCALES else f"{customers}"
    work = prepare_workdir(args, scale_label)
    record: dict = {"scale": scale_label, "started": datetime.now().isoformat(timespec="seconds"),
                    "args": {k: str(v) for k, v in vars(args).items()}, "machine": machine(),
                    "targets_rows": {"customers": customers, "orders": orders, "tickets": tickets}}

    duck_source = work / "source.duckdb"
    if args.source:
        record.update(reuse_source(args.source, duck_source, scale_label))
    else:
        record.update(generate_source(customers, orders, tickets, duck_source, scale_label))

    pg_src = f"bench_src_{scale_label.lower()}"
    pg_wh = f"bench_wh_{scale_label.lower()}"
    pg_plain = f"bench_plain_{scale_label.lower()}"
    use_pg = args.warehouse in ("postgresql", "both")
    use_duck = args.warehouse in ("duckdb", "both")
    try:
        plain = {"work": work, "pg_plain": pg_plain, "use_duck": use_duck, "use_pg": use_pg}
        record["baselines"] = {} if args.no_baselines else run_baselines(args, duck_source, pg_src, use_pg,
                                                                         customers, plain)
        record["runs"] = {} if args.pipeline == "none" else run_pipelines(args, duck_source, work, pg_wh,
                                                                          use_duck, use_pg)
    finally:
        clean_up(args, work, (pg_src, pg_wh, pg_plain), use_pg)

    args.results.mkdir(parents=True, exist_ok=True)
    earlier = args.results / f"{scale_label}.json"
    if args.merge and earlier.exists():
        record = merge_earlier(record, json.loads(earlier.read_text()))
    (args.results / f"{scale_label}.json").write_text(json.dumps(record, indent=2, default=str))
    text = render(load_results(args.results))
    args.markdown.write_text(text)
    print()
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
