"""Small helpers the tests share: hand-made raw rows, comparable table snapshots and source mapping files."""

from __future__ import annotations

import os
import shutil
import socket
import textwrap
import uuid
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from grading import demo, ledger
from grading.frames import bulk_insert, read_frame
from grading.sources import MappedSource, load_mapping
from grading.warehouse import migrate, open_engine

MARTS_BY_PERIOD = (
    "customer_features_snapshot", "customer_tier_snapshot", "elimination_candidates", "winback_candidates",
)


ROOT = Path(__file__).resolve().parents[1]  # the project (conftest.py keeps its own: it runs before any import)


def load_dag(dag_id: str):
    """A DAG parsed as Airflow 3 parses it: a bundle DagBag puts dags/ on sys.path (dags/common.py)."""
    from airflow.dag_processing.dagbag import BundleDagBag

    dags = ROOT / "dags"
    return BundleDagBag(dag_folder=str(dags / f"{dag_id}.py"), bundle_path=dags).dags[dag_id]


def load_raw(url: str, **tables: pd.DataFrame) -> None:
    """Migrate the warehouse at ``url`` and append hand-made rows to raw tables."""
    with open_engine(url) as engine:
        migrate(engine)
        with engine.begin() as conn:
            for name, frame in tables.items():
                frame = frame.copy()
                frame["extracted_at"] = datetime(2000, 1, 1)
                bulk_insert(conn, f"raw.{name}", frame)


def normalised(frame: pd.DataFrame) -> pd.DataFrame:
    """A frame comparable across engines: plain Python values, None for missing, sorted rows."""
    out = frame.astype(object).where(frame.notna(), None)
    for column in out.columns:
        out[column] = out[column].map(lambda v: float(v) if isinstance(v, (int, float)) and v is not None else v)
    return out.sort_values(list(out.columns), key=lambda s: s.astype(str)).reset_index(drop=True)


def published(url: str, as_of=None) -> dict[str, pd.DataFrame]:
    """Every per-period marts table (one as-of date, or all), normalised for comparison."""
    where = "" if as_of is None else " WHERE as_of_date = :as_of"
    with open_engine(url) as engine, engine.connect() as conn:
        return {
            table: normalised(read_frame(conn, f"SELECT * FROM marts.{table}{where}",  # noqa: S608 - identifiers from code constants, values bound
                                         {} if as_of is None else {"as_of": as_of}))
            for table in MARTS_BY_PERIOD
        }


def scalar(url: str, sql: str, **params):
    with open_engine(url) as engine, engine.connect() as conn:
        return conn.execute(sa.text(sql), params).scalar()


def pass_batch(warehouse: Engine, batch: datetime) -> None:
    """Give an extracted batch the verdict *passed* in the ledger - what validation does once its
    checks pass - for tests of extraction windows that do not run the checks themselves."""
    with warehouse.begin() as conn:
        ledger.pass_batch(conn, batch, datetime.now())


def extract_validated(conns, as_of, run_id: str) -> dict:
    """Extract a period and validate the batch, as the DAG's first two tasks do: what every
    later stage requires (grading.ledger)."""
    from grading.pipeline import extract_stage, validate_stage

    extracted = extract_stage(conns, as_of, run_id)
    validate_stage(conns, as_of, run_id, extracted["batch"])
    return extracted


MAPPING_CUTOFF = datetime(2030, 1, 1)


def mapping_file(folder: Path, body: str, *, source: str | None = None) -> Path:
    """A source mapping file in ``folder`` reading CSV files from the same folder (unless ``source`` is given)."""
    header = source or "source: {type: files, location: ., format: csv}"
    path = folder / "mapping.yaml"
    path.write_text(f"kind: source_mapping\nversion: '1'\n{header}\n{textwrap.dedent(body)}", encoding="utf-8")
    return path


def write_source_file(folder: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    """A file of a drop: ``text`` dedented, without its leading newline, in ``encoding``."""
    path = folder / name
    path.write_bytes(textwrap.dedent(text).lstrip("\n").encode(encoding))
    return path


def read_mapped(path: Path, table: str, start: datetime | None = None, cutoff: datetime = MAPPING_CUTOFF):
    """The canonical rows of ``table`` in [start, cutoff) read through the mapping file at ``path``."""
    return MappedSource(load_mapping(path)).read_table(table, start, cutoff)


# Order lines (one row per line of an order, no customer table) and their mapping: orders are
# grouped from lines and customers derived from them.
LINES_MAPPING = """
tables:
  customers:
    from: lines.csv
    group_by: customer_id
    columns:
      customer_id: Client
      created_at: {column: Day, format: "%d/%m/%y"}
      region: Area
  orders:
    from: lines.csv
    group_by: order_id
    columns:
      order_id: Order
      customer_id: Client
      order_ts: {column: Day, format: "%d/%m/%y"}
      status: {column: State, map: {done: completed, back: refunded}}
      amount: {multiply: [Qty, Price], absolute: true}
      margin: Profit
"""

LINES = """
Order,Client,Day,State,Qty,Price,Profit,Area
A1,c1,03/01/24,done,2,1.0625,-0.50,North
A1,c1,03/01/24,done,1,0.0,0.25,South
A2,c2,04/01/24,done,1,0.125,0.10,East
A3,c1,05/02/24,done,1,0.135,0.10,South
R1,c2,06/02/24,back,-3,2.00,,East
A4,,07/02/24,done,1,5.00,1.00,West
"""


class Source:
    """A SQLite source of generated data that cases change with SQL."""

    def __init__(self, path: Path, data: demo.DemoData) -> None:
        self.path, self.data, self.url = path, data, f"sqlite:///{path}"

    @classmethod
    def generated(cls, path: Path, customers: int, seed: int) -> Source:
        source = cls(path, demo.generate(customers=customers, seed=seed))
        demo.write_source(source.data, source.url)
        return source

    def plant_negative_order(self, start: str, end: str) -> pd.Series:
        """Turn a completed order of [start, end) into one of -50 (margin too), which validation
        quarantines and a grading of an unchecked batch publishes; returns the order."""
        order = self.order(start, end)
        self.sql("UPDATE orders SET amount = -50, margin = -50 WHERE order_id = :k", k=order["order_id"])
        return order

    def sql(self, statement: str, **params) -> None:
        engine = sa.create_engine(self.url)
        with engine.begin() as conn:
            conn.execute(sa.text(statement), params)
        engine.dispose()

    def copy(self, path: Path) -> Source:
        shutil.copy(self.path, path)
        return Source(path, self.data)

    def order(self, start: str, end: str, n: int = 0) -> pd.Series:
        """The n-th completed order (by id) placed in [start, end)."""
        orders = self.data.orders
        picked = orders[(orders["order_ts"] >= start) & (orders["order_ts"] < end) & (orders["status"] == "completed")]
        return picked.sort_values("order_id").iloc[n]


def source_with_a_bad_order(env, folder: Path, seed: int) -> tuple[Source, pd.Series]:
    """For module fixtures that grade generated data: a quiet grading home in ``folder`` (no Data
    Docs) set on ``env`` (a MonkeyPatch), a 200-customer source there, and its completed order of
    -50 in the middle of November 2024 (older than a December rerun's look-back)."""
    env.setenv("GRADING_HOME", str(folder / "home"))
    env.setenv("GRADING_DATA_DOCS_DIR", "off")
    source = Source.generated(folder / "source.sqlite", customers=200, seed=seed)
    return source, source.plant_negative_order("2024-11-10", "2024-11-20")


RUN_STAMPS = ("run_id", "validated_at", "trained_at", "published_at", "decided_at")


def fingerprint(url: str, tables: tuple[str, ...] | None = None) -> dict[str, str]:
    """Published tables as sorted CSV text: equal fingerprints mean the same published rows.

    By default every table and view of marts and audit but the run audit, without the columns that only
    say which run wrote a row and when (RUN_STAMPS): what two runs that published the same
    grading share."""
    out = {}
    with open_engine(url) as engine, engine.connect() as conn:
        schema_of = dict(conn.execute(sa.text(
            "SELECT table_name, table_schema FROM information_schema.tables WHERE table_schema IN ('marts', 'audit')"
        )).all())
        names = tables or tuple(sorted(set(schema_of) - {"run_audit"}))
        for table in names:
            frame = read_frame(conn, f"SELECT * FROM {schema_of.get(table, 'marts')}.{table}")  # noqa: S608 - test constants
            if tables is None:
                frame = frame.drop(columns=[c for c in RUN_STAMPS if c in frame.columns])
            frame = frame.sort_values(list(frame.columns), key=lambda s: s.astype(str)).reset_index(drop=True)
            out[table] = frame.to_csv(index=False, date_format="%Y-%m-%d %H:%M:%S.%f")
    return out


class WarehouseCopies(AbstractContextManager):
    """Named copies of one warehouse's state, to start many cases from the same point: DuckDB
    files copied, PostgreSQL databases made from a template. Every database made is dropped
    on leaving the block."""

    def __init__(self, kind: str, folder: Path) -> None:
        self.kind, self.folder = kind, folder
        self.prefix = f"grading_test_{uuid.uuid4().hex[:8]}"
        self.databases: list[str] = []
        self.admin = None
        if kind == "postgresql":
            from tests.conftest import _pg_admin_engine

            self.admin = _pg_admin_engine()

    def url(self, name: str) -> str:
        if self.kind == "duckdb":
            return f"duckdb:///{self.folder / f'{name}.duckdb'}"
        return self.admin.url.set(database=f"{self.prefix}_{name}").render_as_string(hide_password=False)

    def _database(self, name: str, template: str | None = None) -> str:
        database = f"{self.prefix}_{name}"
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{database}"' + (f' TEMPLATE "{template}"' if template else "")))
        self.databases.append(database)
        return self.url(name)

    def create(self, name: str) -> str:
        """An empty warehouse called ``name``."""
        return self.url(name) if self.kind == "duckdb" else self._database(name)

    def keep(self, name: str, url: str) -> None:
        """Save the current state of the warehouse at ``url`` as ``name``."""
        if self.kind == "duckdb":
            shutil.copy(sa.make_url(url).database, self.folder / f"{name}.duckdb")
        else:
            self._database(name, sa.make_url(url).database)

    def copy(self, name: str, new: str) -> str:
        """A new warehouse ``new`` holding the state saved as ``name``."""
        if self.kind == "duckdb":
            shutil.copy(self.folder / f"{name}.duckdb", self.folder / f"{new}.duckdb")
            return self.url(new)
        return self._database(new, f"{self.prefix}_{name}")

    def engine(self, url: str):
        return open_engine(url)

    def __exit__(self, *exc_info) -> None:
        if self.admin is not None:
            with self.admin.connect() as conn:
                for database in self.databases:
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            self.admin.dispose()


# Two published periods by hand, for the CRM export and the operators' lookup: c1 moves from normal
# to gold, c2 stays normal and is an approved elimination in July, c3 is a win-back candidate in
# April only, c4 a core customer in both periods.
APRIL, JULY = datetime(2024, 4, 1).date(), datetime(2024, 7, 1).date()


def publish_by_hand(engine: Engine) -> None:
    from grading.decisions import restate
    from grading.rules.model import ReviewPolicy
    from grading.rules.pins import load_rules, load_service
    from grading.rules.service import entitlements_frame, treatments_frame

    levels = load_service(load_rules())
    tiers = {APRIL: {"c1": "normal", "c2": "normal", "c3": "gold", "c4": "platinum"},
             JULY: {"c1": "gold", "c2": "normal", "c3": "gold", "c4": "platinum"}}
    ranks = {"normal": 1, "gold": 2, "platinum": 3}
    with engine.begin() as conn:
        bulk_insert(conn, "ops.customer_keys", pd.DataFrame({"customer_id": ["C1", "C2", "C3", "C4"],
                                                             "customer_key": ["c1", "c2", "c3", "c4"]}))
        for as_of, by_key in tiers.items():
            bulk_insert(conn, "marts.customer_tier_snapshot", pd.DataFrame([{
                "as_of_date": as_of, "customer_key": key, "tier": tier, "tier_rank": ranks[tier], "tier_rule": "r",
                "tier_reason": f"{tier}_band: monetary_window={ranks[tier] * 10000}", "rule_version": "1",
                "tier_since": APRIL, "spend_to_next_tier": 5000.0 if tier != "platinum" else None}
                for key, tier in by_key.items()]))
            for table, frame in (("service_entitlements", entitlements_frame(levels, ("normal", "gold", "platinum"))),
                                 ("action_treatments", treatments_frame(levels))):
                frame.insert(0, "as_of_date", as_of)
                bulk_insert(conn, f"marts.{table}", frame)
            bulk_insert(conn, "marts.core_customers", pd.DataFrame([{
                "as_of_date": as_of, "customer_key": "c4", "rule_name": "long_steady_satisfied", "reason": "steady",
                "action": "dedicated_account_manager", "rule_version": "1"}]))
        bulk_insert(conn, "marts.winback_candidates", pd.DataFrame([{
            "as_of_date": APRIL, "customer_key": "c3", "rule_name": "lapsed_valuable", "reason": "lapsed",
            "action": "contact_and_offer", "rule_version": "1", "control_group": False}]))
        bulk_insert(conn, "marts.elimination_candidates", pd.DataFrame([{
            "as_of_date": JULY, "customer_key": "c2", "rule_name": "few_orders_many_complaints",
            "reason": "complaints", "action": "reduce_service_level", "rule_version": "1", "periods_met": 2,
            "control_group": pd.NA}]).astype({"control_group": "boolean"}))
        bulk_insert(conn, "marts.elimination_decisions", pd.DataFrame([{
            "customer_key": "c2", "as_of_date": JULY, "decision": "approved", "reviewer": "alice", "note": None,
            "decided_at": datetime(2024, 7, 3)}]).astype({"note": "string"}))
        restate(conn, ReviewPolicy())


def free_port() -> int:
    """A local port nothing listens on now (bound, then released): for a server to start on, or
    for a client to be refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "?"


def processes_of(home: Path) -> list[int]:
    """Live processes whose environment carries this AIRFLOW_HOME (ours, whatever their group)."""
    marker = f"AIRFLOW_HOME={home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                status = (entry / "stat").read_text().split()
                if status[2] != "Z":
                    found.append(int(entry.name))
        except OSError:
            continue
    return found
