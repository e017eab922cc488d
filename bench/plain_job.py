"""The whole grading job written as plain SQL with no framework: the baseline of issue 24.

What a strong engineer would write by hand on the same data, warehouse by warehouse, stage
by stage (each stage timed, the whole job in one fresh worker process, whose peak RSS is
reported):

- ``copy``: the source tables (rows before the as-of date) into ``raw.*`` of the warehouse:
  DuckDB ``ATTACH`` + ``CREATE TABLE AS``; PostgreSQL typed tables filled by psycopg
  ``COPY FROM STDIN`` streamed from the DuckDB source in Arrow batches (CSV), then ANALYZE.
- ``validate``: the checks of ``include/expectations/*.json`` compiled to one aggregate query
  per table (the orders, tickets, ... joined once to the customers for the known-customer and
  not-before-creation checks), plus the column-set check from the catalogue and the
  quarantine-share bound; one row per check into ``validation_results``.
- ``features``: the pipeline's own ``include/sql/features/customer_features.sql`` (plain SQL),
  its parameters inlined, as ``CREATE TABLE features``.
- ``churn``: the features at ``as_of - 180`` and ``as_of - 90`` days (the same query), labels by
  SQL (no completed order in the 90 days after), at most 200,000 customers by a hash of the id,
  the same calibrated HistGradientBoosting model judged on the holdout against a recency-decile
  rule, then every customer scored from the features read in Arrow batches (DuckDB) or a
  server-side cursor (PostgreSQL) and the scores written back (Arrow insert / COPY); then the
  customer potential, as the pipeline's churn stage does it: ``potential_inputs.sql`` at
  ``as_of - 365`` and at ``as_of``, the same BG/NBD + Gamma-Gamma fit (``grading.potential``)
  judged on the holdout year, every buyer scored (since 2026-12-07; earlier rounds' plain job
  had no potential, so its churn stage did less than the pipeline's).
- ``tiers_flags``: the year-ago features (the same query at ``as_of - 365``, as the flags stage
  computes them), the tier bands of ``include/rules/tiers.yaml`` and the elimination / win-back /
  core lists of ``include/rules/candidates.yaml`` compiled to CASE expressions (thresholds read
  from the YAML), with downgrade damping, confirmation periods, exemptions, the protected list,
  precedence, churn reasons and hash control groups.
- ``snapshot``: the period's snapshot with keyed-hash customer keys computed in SQL
  (PostgreSQL: pgcrypto ``hmac(id, key, 'sha256')``, the pipeline's own pseudonym; DuckDB, which
  has no HMAC function: the same HMAC spelt out with its sha256), first 32 hex digits.
"""

# SQL here is built from the rule files, suites and dates of the bench, never from input.
# ruff: noqa: S608

from __future__ import annotations

import io
import json
import pickle
import re
import time
from datetime import date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INCLUDE = ROOT / "include"
STAGES = ("copy", "validate", "features", "churn", "tiers_flags", "snapshot")
KEY = "bench-key"  # the pseudonym key the bench's pipeline workers use (GRADING_PSEUDONYM_KEY)
HORIZON = 90
MAX_TRAIN_ROWS = 200_000  # churn.sample_customers' default cap (GRADING_CHURN_MAX_TRAIN_ROWS)
SEED = 20250101
MODEL_FEATURES = (
    "recency_days", "tenure_days", "orders_365d", "monetary_365d", "margin_365d", "refunds_365d",
    "orders_lifetime", "monetary_lifetime", "tickets_365d", "complaints_365d", "surveys_365d",
    "csat_mean_365d", "nps_mean_365d", "avg_order_value_365d", "monetary_90d", "monetary_prev_90d",
    "refund_rate_365d", "complaint_rate_365d", "resolution_hours_365d", "open_tickets",
)
# the canonical columns of the source tables (grading.contract.SOURCE_TABLES): name -> (event time, {column: type})
TEXT, TS, NUM, INT, BOOL = "TEXT", "TIMESTAMP", "NUMERIC(18,2)", "INTEGER", "BOOLEAN"
TABLES = {
    "customers": ("created_at", {"customer_id": TEXT, "region": TEXT, "industry": TEXT, "channel": TEXT,
                                 "created_at": TS}),
    "orders": ("order_ts", {"order_id": TEXT, "customer_id": TEXT, "status": TEXT, "order_ts": TS, "amount": NUM,
                            "margin": NUM}),
    "tickets": ("opened_at", {"ticket_id": TEXT, "customer_id": TEXT, "category": TEXT, "severity": TEXT,
                              "opened_at": TS, "closed_at": TS, "resolved": BOOL}),
    "surveys": ("responded_at", {"survey_id": TEXT, "customer_id": TEXT, "responded_at": TS, "csat": INT,
                                 "nps": INT}),
    "interactions": ("ts", {"interaction_id": TEXT, "customer_id": TEXT, "kind": TEXT, "ts": TS}),
    "order_lines": ("order_ts", {"line_id": TEXT, "order_id": TEXT, "customer_id": TEXT, "product_id": TEXT,
                                 "category": TEXT, "order_ts": TS, "amount": NUM, "quantity": INT}),
}


# --------------------------------------------------------------------------- warehouses

class Warehouse:
    """The few calls the job makes, on DuckDB (a file) or PostgreSQL (a database)."""

    def __init__(self, kind: str, target: str):
        self.kind = kind
        if kind == "duckdb":
            import duckdb
            self.con = duckdb.connect(target)
            self.con.execute("SET memory_limit = '1GiB'")  # as the pipeline's workers (GRADING_DUCKDB_MEMORY_LIMIT)
        else:
            import psycopg
            self.con = psycopg.connect(f"host=127.0.0.1 port=5432 user=postgres dbname={target}", autocommit=True,
                                       options="-c work_mem=64MB -c TimeZone=UTC")  # as GRADING_PG_WORK_MEM

    def execute(self, sql: str) -> None:
        self.con.execute(sql)

    def rows(self, sql: str) -> list[tuple]:
        return self.con.execute(sql).fetchall()

    def scalar(self, sql: str):
        return self.rows(sql)[0][0]

    def analyze(self, table: str) -> None:
        if self.kind == "postgresql":
            self.con.execute(f"ANALYZE {table}")

    def close(self) -> None:
        self.con.close()


def _lit(value) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, datetime):
        return f"TIMESTAMP '{value.isoformat(sep=' ')}'"
    if isinstance(value, date):
        return f"DATE '{value.isoformat()}'"
    return "'" + str(value).replace("'", "''") + "'"


# --------------------------------------------------------------------------- copy

def stage_copy(wh: Warehouse, source: str, as_of: date) -> dict:
    """The source tables' rows before the as-of date into raw.*."""
    import duckdb

    cutoff = _lit(datetime.combine(as_of, datetime.min.time()))
    wh.execute("CREATE SCHEMA IF NOT EXISTS raw")
    rows = {}
    if wh.kind == "duckdb":
        wh.execute(f"ATTACH '{source}' AS src (READ_ONLY)")
        present = {r[0] for r in wh.rows("SELECT table_name FROM information_schema.tables "
                                         "WHERE table_catalog = 'src'")}
        for name, (ts, cols) in TABLES.items():
            # typed as the canonical schema (money as exact NUMERIC, as the pipeline's raw tables)
            wh.execute(f"CREATE OR REPLACE TABLE raw.{name} (" + ", ".join(f"{c} {t}" for c, t in cols.items()) + ")")
            if name in present:  # else an optional table the source lacks: empty
                wh.execute(f"INSERT INTO raw.{name} SELECT {', '.join(cols)} FROM src.{name} WHERE {ts} < {cutoff}")
            rows[name] = wh.scalar(f"SELECT COUNT(*) FROM raw.{name}")
        wh.execute("DETACH src")
        return rows
    import pyarrow.csv as pacsv
    duck = duckdb.connect(source, read_only=True)
    present = {r[0] for r in duck.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    for name, (ts, cols) in TABLES.items():
        wh.execute(f"DROP TABLE IF EXISTS raw.{name}")
        wh.execute(f"CREATE TABLE raw.{name} (" + ", ".join(f"{c} {t}" for c, t in cols.items()) + ")")
        n = 0
        if name in present:
            reader = duck.sql(f"SELECT {', '.join(cols)} FROM {name} WHERE {ts} < {cutoff}").to_arrow_reader(500_000)
            with wh.con.cursor() as cur, cur.copy(f"COPY raw.{name} FROM STDIN WITH (FORMAT csv)") as cp:
                for batch in reader:
                    sink = io.BytesIO()
                    pacsv.write_csv(batch, sink, pacsv.WriteOptions(include_header=False))
                    cp.write(sink.getvalue())
                    n += batch.num_rows
        wh.analyze(f"raw.{name}")
        rows[name] = n
    duck.close()
    return rows


# --------------------------------------------------------------------------- validate

def _row_condition(kwargs: dict) -> str | None:
    cond = kwargs.get("row_condition")
    if not cond:
        return None
    op = {"==": "=", "!=": "<>"}.get(cond["operator"], cond["operator"])
    return f"t.{cond['column']['name']} {op} {_lit(cond['parameter'])}"


def _failing(check: dict, params: dict, key: str) -> str | None:
    """A boolean SQL expression true for a row the expectation rejects (None: not a row-level check)."""
    kind, k = check["type"], check.get("kwargs", {})

    def bound(v):
        return _lit(params[v["$PARAMETER"]]) if isinstance(v, dict) else _lit(v)

    if kind == "expect_column_values_to_not_be_null":
        expr = f"t.{k['column']} IS NULL"
    elif kind == "expect_column_values_to_be_between":
        parts = []
        if k.get("min_value") is not None:
            parts.append(f"t.{k['column']} < {bound(k['min_value'])}")
        if k.get("max_value") is not None:
            parts.append(f"t.{k['column']} > {bound(k['max_value'])}")
        expr = "(" + " OR ".join(parts) + ")"  # NULLs are not judged, as in GX
    elif kind == "expect_column_values_to_be_in_set":
        expr = f"t.{k['column']} NOT IN ({', '.join(_lit(v) for v in k['value_set'])})"
    elif kind == "expect_column_pair_values_a_to_be_greater_than_b":
        expr = f"t.{k['column_A']} {'<' if k.get('or_equal') else '<='} t.{k['column_B']}"
    elif kind == "expect_column_values_to_reference_known_customers":
        expr = f"(t.{k['column']} IS NOT NULL AND c.customer_id IS NULL)"
    elif kind == "expect_event_time_not_before_customer_created":
        expr = f"t.{k['column']} < c.created_at - INTERVAL '{int(k.get('tolerance_hours', 0))} hours'"
    else:
        return None
    cond = _row_condition(k)
    return f"({cond} AND {expr})" if cond else expr


def _judge(check: dict, counted: int | None, columns: set[str], total: int, before: int,
           quarantined: int) -> tuple[bool, int]:
    """(success, unexpected rows) of a check, from its count in the table's aggregate query."""
    kind, k = check["type"], check.get("kwargs", {})
    if counted is not None:
        return counted == 0, counted
    if kind == "expect_table_columns_to_match_set":
        missing = len(set(k["column_set"]) - columns)
        return missing == 0, missing
    if kind == "expect_interval_not_empty":  # the first period: everything before the as-of date
        return before > 0, 0
    if kind == "expect_quarantined_share_at_most":
        return quarantined <= int(k.get("min_rows", 10)) or quarantined <= float(k["max_share"]) * total, quarantined
    # expect_columns_to_have_usable_types: the job created the tables itself; expect_keys_not_loaded_by_an_earlier_batch
    # and the volume band: a first period has no earlier batch (the pipeline's first run skips them too)
    return True, 0


def stage_validate(wh: Warehouse, as_of: date) -> dict:
    """Every suite's checks as one aggregate query per table; a result row per check."""
    now = datetime.now().replace(microsecond=0)
    cutoff = datetime.combine(as_of, datetime.min.time())
    wh.execute("CREATE TABLE IF NOT EXISTS validation_results (as_of_date DATE, suite TEXT, check_type TEXT, "
               "check_column TEXT, severity TEXT, success BOOLEAN, unexpected BIGINT, checked_at TIMESTAMP)")
    wh.execute(f"DELETE FROM validation_results WHERE as_of_date = {_lit(as_of)}")
    columns_of = {}
    for table, column in wh.rows("SELECT table_name, column_name FROM information_schema.columns "
                                 "WHERE table_schema = 'raw'"):
        columns_of.setdefault(table, set()).add(column)
    results, failed = [], []
    for path in sorted((INCLUDE / "expectations").glob("*.json")):
        suite = json.loads(path.read_text())
        table = suite["meta"]["table"].split(".", 1)[1]
        if table not in TABLES or not columns_of.get(table):
            continue
        ts = TABLES[table][0]
        params = {"future_limit": now + timedelta(hours=suite["meta"].get("future_tolerance_hours", 24)),
                  "earliest_time": datetime(1900, 1, 1)}
        checks = suite["expectations"] + suite.get("checks", [])
        key = next(c["kwargs"]["column"] for c in checks if c["type"] == "expect_column_values_to_be_unique")
        joined = table != "customers"
        exprs, plan = [], []
        for check in checks:
            kind = check["type"]
            if kind == "expect_column_values_to_be_unique":
                exprs.append(f"COUNT(t.{key}) - COUNT(DISTINCT t.{key})")
            elif (cond := _failing(check, params, key)) is not None:
                exprs.append(f"COUNT(CASE WHEN {cond} THEN 1 END)")
            else:
                plan.append((check, None))
                continue
            plan.append((check, len(exprs) - 1))
        row_level = [_failing(c, params, key) for c in checks if c["meta"].get("severity") == "row"]
        row_level = [r for r in row_level if r]
        exprs += ["COUNT(*)", f"COUNT(CASE WHEN t.{ts} < {_lit(cutoff)} THEN 1 END)",
                  "COUNT(CASE WHEN " + (" OR ".join(row_level) or "FALSE") + " THEN 1 END)"]
        join = " LEFT JOIN raw.customers AS c ON c.customer_id = t.customer_id" if joined else ""
        values = wh.rows(f"SELECT {', '.join(exprs)} FROM raw.{table} AS t{join}")[0]
        total, before, quarantined = (int(v or 0) for v in values[-3:])
        for check, index in plan:
            k = check.get("kwargs", {})
            ok, unexpected = _judge(check, None if index is None else int(values[index] or 0),
                                    columns_of[table], total, before, quarantined)
            results.append((as_of, suite["name"], check["type"], k.get("column") or k.get("column_A"),
                            check["meta"].get("severity"), ok, unexpected, now))
            if not ok and check["meta"].get("severity") == "critical":
                failed.append(f"{suite['name']}: {check['type']} {k.get('column', '')}")
    wh.execute("INSERT INTO validation_results VALUES " + ", ".join(
        "(" + ", ".join("NULL" if v is None else _lit(v) for v in r) + ")" for r in results))
    if failed:
        raise RuntimeError("critical checks failed: " + "; ".join(failed))
    return {"checks": len(results), "failed": sum(1 for r in results if not r[5])}


# --------------------------------------------------------------------------- features

def _inlined(name: str, params: dict[str, str]) -> str:
    """The pipeline's include/sql/features/<name>.sql, comments dropped, its parameters inlined."""
    text = (INCLUDE / "sql" / "features" / f"{name}.sql").read_text()
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return re.sub(r"(?<![:\w]):([a-z_]+)\b", lambda m: params.get(m.group(1), m.group(0)), text)


def features_sql(as_of: date, window_days: int) -> str:
    """customer_features.sql with its parameters inlined (a rolling qualification window)."""
    start = as_of - timedelta(days=window_days)
    return _inlined("customer_features", {"as_of": _lit(as_of.isoformat()), "window_kind": "'rolling'",
                                          "window_start": _lit(start.isoformat()),
                                          "window_floor": _lit(start.isoformat())})


def _create_features(wh: Warehouse, table: str, day: date, window_days: int) -> int:
    wh.execute(f"DROP TABLE IF EXISTS {table}")
    wh.execute(f"CREATE TABLE {table} AS {features_sql(day, window_days)}")
    wh.analyze(table)
    return wh.scalar(f"SELECT COUNT(*) FROM {table}")


# --------------------------------------------------------------------------- churn

def _read_matrix(wh: Warehouse, sql: str, columns: tuple[str, ...]):
    """(customer ids, float matrix) of a query, read in batches."""
    import numpy as np
    import pyarrow as pa
    if wh.kind == "duckdb":
        table = wh.con.sql(sql).to_arrow_table()
        ids = table.column("customer_id").to_pylist()
        x = np.column_stack([table.column(c).cast(pa.float64()).to_numpy(zero_copy_only=False) for c in columns])
        return ids, x
    ids, parts = [], []
    with wh.con.transaction(), wh.con.cursor(name="matrix") as cur:
        cur.execute(sql)
        while rows := cur.fetchmany(100_000):
            ids += [r[0] for r in rows]
            parts.append(np.array([r[1:] for r in rows], dtype=float))
    return ids, (np.vstack(parts) if parts else np.empty((0, len(columns))))


def _labelled_sql(table: str, day: date, columns: tuple[str, ...], extra: str = "") -> str:
    end = day + timedelta(days=HORIZON)
    return f"""
WITH buyers AS (SELECT DISTINCT customer_id FROM raw.orders WHERE status = 'completed'
                AND order_ts >= {_lit(day)} AND order_ts < {_lit(end)}),
sample AS (SELECT f.* FROM {table} AS f WHERE f.last_order_at IS NOT NULL
           ORDER BY md5(f.customer_id), f.customer_id LIMIT {MAX_TRAIN_ROWS})
SELECT s.customer_id, {', '.join('s.' + c for c in columns)},
       CASE WHEN b.customer_id IS NULL THEN 1 ELSE 0 END AS churned {extra}
FROM sample AS s LEFT JOIN buyers AS b ON b.customer_id = s.customer_id
ORDER BY s.customer_id"""


def _top_decile(labels, scores) -> float:
    import numpy as np
    top = max(1, len(scores) // 10)
    return float(labels[np.argsort(-scores, kind="stable")[:top]].mean())


def stage_churn(wh: Warehouse, as_of: date, window_days: int) -> dict:
    """Train (features two horizons back, judged one back) and score every customer."""
    import numpy as np
    import pyarrow as pa
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.frozen import FrozenEstimator
    from sklearn.metrics import brier_score_loss, roc_auc_score

    train_day, hold_day = as_of - timedelta(days=2 * HORIZON), as_of - timedelta(days=HORIZON)
    marks = [time.perf_counter()]  # sub-timings: history features, labelled reads, fit + judge, scoring
    _create_features(wh, "churn_train_features", train_day, window_days)
    _create_features(wh, "churn_holdout_features", hold_day, window_days)
    marks.append(time.perf_counter())
    cols = (*MODEL_FEATURES, "churned")
    _, train = _read_matrix(wh, _labelled_sql("churn_train_features", train_day, MODEL_FEATURES), cols)
    _, hold = _read_matrix(wh, _labelled_sql("churn_holdout_features", hold_day, MODEL_FEATURES), cols)
    marks.append(time.perf_counter())
    x, y = train[:, :-1], train[:, -1].astype(int)
    usable = [i for i in range(x.shape[1]) if len(np.unique(x[~np.isnan(x[:, i]), i])) > 1]
    x = x[:, usable]
    held = np.arange(len(x)) % 5 == 4
    model = HistGradientBoostingClassifier(max_iter=150, learning_rate=0.05, max_leaf_nodes=15,
                                           early_stopping=False, random_state=SEED).fit(x[~held], y[~held])
    calibrated = CalibratedClassifierCV(FrozenEstimator(model), method="sigmoid", cv=5).fit(x[held], y[held])
    # the recency rule: the churn rate of the training recency decile
    rec_i = MODEL_FEATURES.index("recency_days")
    edges = np.nanquantile(train[:, rec_i], np.linspace(0.1, 0.9, 9))
    deciles = np.searchsorted(edges, train[:, rec_i], side="right")
    rates = np.array([y[deciles == d].mean() if (deciles == d).any() else y.mean() for d in range(10)])
    hx, hy = hold[:, :-1][:, usable], hold[:, -1].astype(int)
    mine = calibrated.predict_proba(hx)[:, 1]
    rule = rates[np.searchsorted(edges, hold[:, rec_i], side="right")]
    judged = {"auc": float(roc_auc_score(hy, mine)), "precision": _top_decile(hy, mine),
              "brier": float(brier_score_loss(hy, mine)), "rule_auc": float(roc_auc_score(hy, hold[:, rec_i])),
              "rule_precision": _top_decile(hy, hold[:, rec_i]), "rule_brier": float(brier_score_loss(hy, rule))}
    use_model = judged["precision"] > judged["rule_precision"] and judged["brier"] <= judged["rule_brier"] + 0.005
    wh.execute("CREATE TABLE IF NOT EXISTS churn_models (as_of_date DATE, trained_at TIMESTAMP, report TEXT, "
               f"model {'BLOB' if wh.kind == 'duckdb' else 'BYTEA'})")
    blob = pickle.dumps(calibrated)
    holders = "?, ?, ?, ?" if wh.kind == "duckdb" else "%s, %s, %s, %s"
    wh.con.execute(f"INSERT INTO churn_models VALUES ({holders})", (as_of, datetime.now(), json.dumps(judged), blob))
    marks.append(time.perf_counter())
    # score every customer, reading the current features in batches and writing the scores back
    wh.execute("CREATE TABLE IF NOT EXISTS churn_scores (as_of_date DATE, customer_id TEXT, churn_propensity DOUBLE "
               "PRECISION)")
    wh.execute(f"DELETE FROM churn_scores WHERE as_of_date = {_lit(as_of)}")
    names = [MODEL_FEATURES[i] for i in usable]
    select = f"SELECT customer_id, {', '.join(names)}, recency_days FROM features"
    scored = 0

    def scores_of(ids, feats):
        values = calibrated.predict_proba(feats[:, :-1])[:, 1] if use_model else \
            rates[np.searchsorted(edges, feats[:, -1], side="right")]
        return pa.table({"as_of_date": pa.array([as_of] * len(ids), pa.date32()), "customer_id": pa.array(ids),
                         "churn_propensity": np.round(values, 4)})

    if wh.kind == "duckdb":
        reader = wh.con.sql(select).to_arrow_reader(100_000)
        out = []
        for batch in reader:
            feats = np.column_stack([batch.column(i).cast(pa.float64()).to_numpy(zero_copy_only=False)
                                     for i in range(1, batch.num_columns)])
            out.append(scores_of(batch.column(0).to_pylist(), feats))
            scored += batch.num_rows
        _write(wh, "churn_scores", pa.concat_tables(out))
    else:
        ids, feats = _read_matrix(wh, select, (*names, "recency_days"))
        _write(wh, "churn_scores", scores_of(ids, feats))
        scored = len(ids)
    marks.append(time.perf_counter())
    split = dict(zip(("history_features_s", "read_labelled_s", "fit_judge_s", "score_write_s"),
                     (round(b - a, 2) for a, b in zip(marks, marks[1:], strict=False)), strict=True))
    return {"train_rows": len(train), "holdout_rows": len(hold), "scored": scored, **split,
            "scorer": "model" if use_model else "recency_rule", **{k: round(v, 4) for k, v in judged.items()}}


def _write(wh: Warehouse, table: str, rows) -> None:
    """An Arrow table appended to ``table``: DuckDB's Arrow scan; PostgreSQL COPY of its CSV."""
    if wh.kind == "duckdb":
        wh.con.register("rows_arrow", rows)
        wh.execute(f"INSERT INTO {table} SELECT * FROM rows_arrow")
        wh.con.unregister("rows_arrow")
        return
    import pyarrow.csv as pacsv
    sink = io.BytesIO()
    pacsv.write_csv(rows, sink, pacsv.WriteOptions(include_header=False))
    with wh.con.cursor() as cur, cur.copy(f"COPY {table} FROM STDIN WITH (FORMAT csv)") as cp:
        cp.write(sink.getvalue())
    wh.analyze(table)


# --------------------------------------------------------------------------- customer potential

def _potential_inputs(wh: Warehouse, cutoff: date, until: date):
    """The pipeline's potential_inputs.sql at ``cutoff`` as a frame in customer order (Arrow from
    DuckDB; PostgreSQL's CSV COPY read by pyarrow)."""
    import pyarrow.csv as pacsv
    sql = "SELECT * FROM (" + _inlined("potential_inputs", {
        "as_of": _lit(cutoff.isoformat()), "year_start": _lit((cutoff - timedelta(days=365)).isoformat()),
        "until": _lit(until.isoformat())}) + ") AS p ORDER BY customer_id"
    if wh.kind == "duckdb":
        return wh.con.sql(sql).to_arrow_table().to_pandas()
    sink = io.BytesIO()
    with wh.con.cursor() as cur, cur.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv, HEADER)") as cp:
        for part in cp:
            sink.write(part)
    sink.seek(0)
    return pacsv.read_csv(sink).to_pandas()


def stage_potential(wh: Warehouse, as_of: date) -> dict:
    """The customer potential as the pipeline's churn stage computes it: the same BG/NBD + Gamma-Gamma
    model (grading.potential's fit and predict, as the churn model is scikit-learn's on both sides)
    fitted on the history before ``as_of - 365``, judged on the year after against "next year = last
    year's spend", then fitted at ``as_of`` and every customer with a purchase scored."""
    import pyarrow as pa

    from grading.potential import HORIZON_DAYS, NotFitted, baseline, errors, fit, predict

    hold = _potential_inputs(wh, as_of - timedelta(days=HORIZON_DAYS), as_of)
    actual = hold["spend_after"].to_numpy(dtype=float)
    base = errors(hold["spend_year"].to_numpy(dtype=float), actual)
    use_model, mine = False, None
    if len(hold) and float(hold["age"].max()) >= HORIZON_DAYS:
        try:
            mine = errors(predict(fit(hold), hold)["potential_365d"].to_numpy(), actual)
            use_model = mine["rmse"] < base["rmse"]
        except NotFitted:
            pass
    current = _potential_inputs(wh, as_of, as_of)
    try:
        scores = predict(fit(current), current) if use_model else baseline(current)
    except NotFitted:
        use_model, scores = False, baseline(current)
    wh.execute("CREATE TABLE IF NOT EXISTS potential_scores (as_of_date DATE, customer_id TEXT, "
               "potential_365d DOUBLE PRECISION, expected_orders_365d DOUBLE PRECISION, p_alive DOUBLE PRECISION)")
    wh.execute(f"DELETE FROM potential_scores WHERE as_of_date = {_lit(as_of)}")
    _write(wh, "potential_scores", pa.table({
        "as_of_date": pa.array([as_of] * len(scores), pa.date32()), "customer_id": pa.array(scores["customer_id"]),
        **{c: pa.array(scores[c].to_numpy(dtype=float).round(4)) for c in
           ("potential_365d", "expected_orders_365d", "p_alive")}}))
    return {"potential_scorer": "model" if use_model else "last_year_spend", "potential_customers": len(scores),
            "potential_holdout_rmse": None if mine is None else round(mine["rmse"], 2),
            "potential_baseline_rmse": round(base["rmse"], 2) if base["rmse"] is not None else None}


# --------------------------------------------------------------------------- tiers and flags

_OPS = {">": ">", ">=": ">=", "<": "<", "<=": "<=", "==": "=", "!=": "<>"}


def condition(node: dict) -> str:
    """A rule file's condition (all / any / feature-op-value) as a SQL boolean expression."""
    if "all" in node:
        return "(" + " AND ".join(condition(n) for n in node["all"]) + ")"
    if "any" in node:
        return "(" + " OR ".join(condition(n) for n in node["any"]) + ")"
    if node["op"] == "in":
        return f"x.{node['feature']} IN ({', '.join(_lit(v) for v in node['value'])})"
    return f"x.{node['feature']} {_OPS[node['op']]} {_lit(node['value'])}"


def _first_match(rules: list[dict], field: str, default: str = "NULL") -> str:
    whens = " ".join(f"WHEN {condition(r['when'])} THEN {_lit(r[field])}" for r in rules)
    return f"CASE {whens} ELSE {default} END" if whens else default


def tier_case(tiers: dict, alias: str = "x") -> str:
    """The tier rank (1 = lowest) the band rules assign, first match wins."""
    rank = {t: i + 1 for i, t in enumerate(tiers["tiers"])}
    whens = " ".join(f"WHEN {condition(r['when'])} THEN {rank[r['tier']]}" for r in tiers["rules"])
    return f"CASE {whens} ELSE {rank[tiers['default']['tier']]} END".replace("x.", f"{alias}.")


def _hash_share(column: str, share: float) -> str:
    """True for a fixed ``share`` of customers, by the first two hex digits of an md5 of the id (control groups)."""
    digit = "(strpos('0123456789abcdef', substr(md5('control' || {c}), {i}, 1)) - 1)"
    value = f"({digit.format(c=column, i=1)} * 16 + {digit.format(c=column, i=2)})"
    return f"({value} < {round(share * 256)})"


def stage_tiers_flags(wh: Warehouse, as_of: date, window_days: int) -> dict:
    import yaml

    tiers = yaml.safe_load((INCLUDE / "rules" / "tiers.yaml").read_text())
    cands = yaml.safe_load((INCLUDE / "rules" / "candidates.yaml").read_text())
    names = tiers["tiers"]
    damping = tiers.get("damping", {})
    after, steps = int(damping.get("downgrade_after_periods", 1)), int(damping.get("max_steps_down") or len(names))
    tier_name = "CASE " + " ".join(f"WHEN {{r}} = {i + 1} THEN {_lit(t)}" for i, t in enumerate(names)) + " END"
    started = time.perf_counter()
    _create_features(wh, "features_year_ago", as_of - timedelta(days=365), window_days)
    year_ago_s = time.perf_counter() - started
    # --- tiers: bands, then downgrade damping against the previous period
    wh.execute("CREATE TABLE IF NOT EXISTS customer_tiers (as_of_date DATE, customer_id TEXT, tier TEXT, "
               "tier_rank INTEGER, assigned_rank INTEGER, periods_below INTEGER, spend_to_next_tier DOUBLE PRECISION)")
    wh.execute(f"DELETE FROM customer_tiers WHERE as_of_date = {_lit(as_of)}")
    bands = {r["tier"]: r["when"]["all"][0]["value"] for r in tiers["rules"]
             if len(r["when"].get("all", [])) == 1 and r["when"]["all"][0]["feature"] == "monetary_window"}
    next_spend = "CASE " + " ".join(f"WHEN d.tier_rank = {names.index(t)} THEN {_lit(v)} - d.monetary_window"
                                    for t, v in bands.items() if names.index(t) > 0) + " END"
    wh.execute(f"""
INSERT INTO customer_tiers
WITH assigned AS (SELECT x.customer_id, x.monetary_window, {tier_case(tiers)} AS assigned_rank FROM features AS x),
prev AS (SELECT customer_id, tier_rank, periods_below FROM customer_tiers
         WHERE as_of_date = (SELECT MAX(as_of_date) FROM customer_tiers WHERE as_of_date < {_lit(as_of)})),
d AS (SELECT a.customer_id, a.monetary_window, a.assigned_rank,
             CASE WHEN p.tier_rank IS NULL OR a.assigned_rank >= p.tier_rank THEN a.assigned_rank
                  WHEN COALESCE(p.periods_below, 0) + 1 < {after} THEN p.tier_rank
                  ELSE GREATEST(a.assigned_rank, p.tier_rank - {steps}) END AS tier_rank,
             CASE WHEN a.assigned_rank < p.tier_rank AND COALESCE(p.periods_below, 0) + 1 < {after}
                  THEN COALESCE(p.periods_below, 0) + 1 ELSE 0 END AS periods_below
      FROM assigned AS a LEFT JOIN prev AS p ON p.customer_id = a.customer_id)
SELECT {_lit(as_of)}, d.customer_id, {tier_name.format(r='d.tier_rank')}, d.tier_rank, d.assigned_rank,
       d.periods_below, {next_spend}
FROM d""")
    wh.analyze("customer_tiers")
    # --- flags: the context of every customer, then the three lists in precedence order
    protected = [line.strip() for line in (INCLUDE / "rules" / cands["protected_list"]).read_text().splitlines()
                 if line.strip() and not line.lstrip().startswith("#")]
    protected_sql = "SELECT CAST(NULL AS TEXT) AS customer_id WHERE FALSE" if not protected else \
        " UNION ALL ".join(f"SELECT {_lit(p)}" for p in protected)
    wh.execute("CREATE TABLE IF NOT EXISTS customer_flags (as_of_date DATE, customer_id TEXT, flag TEXT, "
               "rule TEXT, action TEXT, severity TEXT, churn_reason TEXT, control BOOLEAN)")
    wh.execute("CREATE TABLE IF NOT EXISTS elimination_met (as_of_date DATE, customer_id TEXT, periods INTEGER)")
    wh.execute(f"DELETE FROM customer_flags WHERE as_of_date = {_lit(as_of)}")
    wh.execute(f"DELETE FROM elimination_met WHERE as_of_date = {_lit(as_of)}")
    el, wb, core = cands["elimination"], cands["win_back"], cands["core"]
    lowest = names[0]

    def exempt(section):
        return " OR ".join(condition(e["when"]) for e in section.get("exemptions", [])) or "FALSE"

    el_rules = [{**r, "when": {"all": [r["when"], {"feature": "tier", "op": "in", "value": r.get("tiers", [lowest])}]}}
                for r in el["rules"]]
    wb_reason = _first_match(wb["churn_reasons"], "name", _lit("unknown"))
    wb_reason_action = _first_match(wb["churn_reasons"], "action", _lit(wb["unknown_reason_action"]))
    recent = 4  # candidates.RECENT_PERIODS
    wh.execute(f"""
CREATE TEMPORARY TABLE flag_context AS
WITH yt AS (SELECT x.customer_id, x.monetary_365d, x.avg_order_value_365d, {tier_case(tiers)} AS tier_rank
            FROM features_year_ago AS x),
peak AS (SELECT customer_id, MAX(tier_rank) AS peak_tier_rank_recent FROM customer_tiers
         WHERE as_of_date IN (SELECT as_of_date FROM (SELECT DISTINCT as_of_date FROM customer_tiers
                              WHERE as_of_date < {_lit(as_of)}) AS d ORDER BY as_of_date DESC LIMIT {recent})
         GROUP BY customer_id),
protected AS ({protected_sql}),
x AS (SELECT f.*, t.tier, t.tier_rank, {tier_name.format(r='yt.tier_rank')} AS tier_year_ago,
             yt.monetary_365d AS monetary_year_ago,
             CASE WHEN yt.avg_order_value_365d > 0 THEN f.avg_order_value_365d / yt.avg_order_value_365d - 1 END
                 AS aov_change_year,
             GREATEST(COALESCE(pk.peak_tier_rank_recent, t.tier_rank), t.tier_rank) AS peak_tier_rank_recent,
             s.churn_propensity,
             CASE WHEN pr.customer_id IS NULL THEN 0 ELSE 1 END AS is_protected
      FROM features AS f
      JOIN customer_tiers AS t ON t.customer_id = f.customer_id AND t.as_of_date = {_lit(as_of)}
      LEFT JOIN yt ON yt.customer_id = f.customer_id
      LEFT JOIN peak AS pk ON pk.customer_id = f.customer_id
      LEFT JOIN churn_scores AS s ON s.customer_id = f.customer_id AND s.as_of_date = {_lit(as_of)}
      LEFT JOIN protected AS pr ON pr.customer_id = f.customer_id)
SELECT x.customer_id,
       {_first_match(core['rules'], 'name')} AS core_rule, {_first_match(core['rules'], 'action')} AS core_action,
       CASE WHEN {exempt(core)} THEN 1 ELSE 0 END AS core_exempt,
       {_first_match(wb['rules'], 'name')} AS wb_rule, {_first_match(wb['rules'], 'action')} AS wb_action,
       CASE WHEN {exempt(wb)} THEN 1 ELSE 0 END AS wb_exempt,
       {wb_reason} AS wb_reason, {wb_reason_action} AS wb_reason_action,
       {_first_match(el_rules, 'name')} AS el_rule, {_first_match(el_rules, 'action')} AS el_action,
       {_first_match(el_rules, 'severity')} AS el_severity,
       CASE WHEN {exempt(el)} THEN 1 ELSE 0 END AS el_exempt
FROM x""")
    confirm = int(el.get("confirm_periods", 1))
    wh.execute(f"""
INSERT INTO elimination_met
SELECT {_lit(as_of)}, c.customer_id, COALESCE(m.periods, 0) + 1 FROM flag_context AS c
LEFT JOIN elimination_met AS m ON m.customer_id = c.customer_id
     AND m.as_of_date = (SELECT MAX(as_of_date) FROM elimination_met WHERE as_of_date < {_lit(as_of)})
WHERE c.el_rule IS NOT NULL AND c.el_exempt = 0""")
    el_control = _hash_share("c.customer_id", el.get("control_share", 0))
    el_control_actions = ", ".join(_lit(a) for a in el.get("control_actions", [])) or "NULL"
    wb_control = _hash_share("c.customer_id", wb.get("control_share", 0))
    wh.execute(f"""
INSERT INTO customer_flags
WITH c AS (SELECT c.*, m.periods AS el_periods FROM flag_context AS c
           LEFT JOIN elimination_met AS m ON m.customer_id = c.customer_id AND m.as_of_date = {_lit(as_of)}),
listed AS (
    SELECT c.*, c.core_rule IS NOT NULL AND c.core_exempt = 0 AS is_core,
           c.wb_rule IS NOT NULL AND c.wb_exempt = 0 AS is_wb,
           c.el_rule IS NOT NULL AND c.el_exempt = 0 AND c.el_periods >= {confirm} AS is_el
    FROM c)
SELECT {_lit(as_of)}, customer_id, 'core', core_rule, core_action, NULL, NULL, FALSE FROM listed WHERE is_core
UNION ALL
SELECT {_lit(as_of)}, customer_id, 'win_back', wb_rule, wb_reason_action, NULL, wb_reason,
       {wb_control.replace('c.customer_id', 'customer_id')}
FROM listed WHERE is_wb AND NOT is_core
UNION ALL
SELECT {_lit(as_of)}, customer_id, 'elimination', el_rule, el_action, el_severity, NULL,
       el_action IN ({el_control_actions}) AND {el_control.replace('c.customer_id', 'customer_id')}
FROM listed WHERE is_el AND NOT is_core AND NOT is_wb""")
    wh.analyze("customer_flags")
    wh.execute("DROP TABLE flag_context")
    counts = dict(wh.rows(f"SELECT flag, COUNT(*) FROM customer_flags WHERE as_of_date = {_lit(as_of)} GROUP BY flag"))
    by_tier = dict(wh.rows(f"SELECT tier, COUNT(*) FROM customer_tiers WHERE as_of_date = {_lit(as_of)} GROUP BY tier"))
    return {"tiers": by_tier, "flags": counts, "year_ago_features_s": round(year_ago_s, 2)}


# --------------------------------------------------------------------------- snapshot

def stage_snapshot(wh: Warehouse, as_of: date) -> dict:
    """The period's snapshot under keyed-hash customer keys."""
    if wh.kind == "duckdb":
        # DuckDB has sha256 but no hmac: HMAC-SHA256 spelt out from the key's two padded forms
        # (RFC 2104), so the keys are the pipeline's own, as pgcrypto's hmac gives them
        block = KEY.encode().ljust(64, b"\0")
        inner, outer = (bytes(b ^ pad for b in block).hex() for pad in (0x36, 0x5C))
        key_expr = (f"substr(sha256(unhex('{outer}') || unhex(sha256(unhex('{inner}') || encode(f.customer_id)))), "
                    "1, 32)")
        method = "hmac-sha256 (from the padded key)"
    else:
        try:
            wh.execute("CREATE EXTENSION IF NOT EXISTS pgcrypto")
            key_expr = f"substr(encode(hmac(f.customer_id, {_lit(KEY)}, 'sha256'), 'hex'), 1, 32)"
            method = "pgcrypto hmac-sha256"
        except Exception:
            key_expr = f"substr(encode(sha256(convert_to({_lit(KEY)} || f.customer_id, 'UTF8')), 'hex'), 1, 32)"
            method = "sha256(key || id)"
    wh.execute("""
CREATE TABLE IF NOT EXISTS customer_snapshot AS
SELECT CAST(NULL AS TEXT) AS customer_key, f.*, t.tier, t.tier_rank, t.spend_to_next_tier, s.churn_propensity,
       fl.flag, fl.rule AS flag_rule, fl.action AS flag_action, fl.churn_reason, fl.control
FROM features AS f, customer_tiers AS t, churn_scores AS s, customer_flags AS fl WHERE FALSE""")
    wh.execute(f"DELETE FROM customer_snapshot WHERE as_of_date = {_lit(as_of)}")
    wh.execute(f"""
INSERT INTO customer_snapshot
SELECT {key_expr}, f.*, t.tier, t.tier_rank, t.spend_to_next_tier, s.churn_propensity,
       fl.flag, fl.rule, fl.action, fl.churn_reason, fl.control
FROM features AS f
JOIN customer_tiers AS t ON t.customer_id = f.customer_id AND t.as_of_date = {_lit(as_of)}
LEFT JOIN churn_scores AS s ON s.customer_id = f.customer_id AND s.as_of_date = {_lit(as_of)}
LEFT JOIN customer_flags AS fl ON fl.customer_id = f.customer_id AND fl.as_of_date = {_lit(as_of)}""")
    wh.analyze("customer_snapshot")
    return {"rows": wh.scalar(f"SELECT COUNT(*) FROM customer_snapshot WHERE as_of_date = {_lit(as_of)}"),
            "key": method}


# --------------------------------------------------------------------------- the job

def _timed_potential(wh: Warehouse, as_of: date, churn: dict) -> dict:
    """The churn stage's summary with the potential's, and the seconds the potential took."""
    started = time.perf_counter()
    potential = stage_potential(wh, as_of)
    return {**churn, **potential, "potential_s": round(time.perf_counter() - started, 2)}


def run_job(kind: str, source: str, target: str, as_of: date) -> dict:
    """Every stage in order on one warehouse; seconds and a summary per stage."""
    import yaml
    window_days = int(yaml.safe_load((INCLUDE / "rules" / "tiers.yaml").read_text())["qualification"].get("days", 365))
    wh = Warehouse(kind, target)
    stages: dict[str, dict] = {}
    try:
        for name, call in (("copy", lambda: stage_copy(wh, source, as_of)),
                           ("validate", lambda: stage_validate(wh, as_of)),
                           ("features", lambda: {"rows": _create_features(wh, "features", as_of, window_days)}),
                           ("churn", lambda: _timed_potential(wh, as_of, stage_churn(wh, as_of, window_days))),
                           ("tiers_flags", lambda: stage_tiers_flags(wh, as_of, window_days)),
                           ("snapshot", lambda: stage_snapshot(wh, as_of))):
            started = time.perf_counter()
            summary = call()
            stages[name] = {"seconds": time.perf_counter() - started, "summary": summary}
    finally:
        wh.close()
    return stages
