"""No identity leaks: published tables, stored validation results and Data Docs carry pseudonyms
only, messages never quote a customer's id or contact data, the development key is refused
outside the demo, and erasure leaves nothing behind - in the tables, the quarantine, the Data
Docs, the bytes of a DuckDB file - nor lets the customer back in through the source."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from grading import pipeline, privacy
from grading.convert import SourceDataError
from grading.erasure import compact, erase
from grading.frames import read_frame
from grading.keys import pseudonym
from grading.pipeline import Connections
from grading.settings import pseudonym_key
from grading.validation import ValidationFailed
from grading.warehouse import open_engine
from tests.helpers import ROOT, Source, WarehouseCopies, scalar

P1, P2 = date(2024, 11, 1), date(2024, 12, 1)


@dataclass
class Graded:
    kind: str
    folder: Path
    source: Source
    copies: WarehouseCopies


@pytest.fixture(scope="module", params=["duckdb", "postgresql"])
def graded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Graded]:
    folder = tmp_path_factory.mktemp(f"privacy-{request.param}")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("GRADING_HOME", str(folder / "home"))
        env.setenv("GRADING_DATA_DOCS_DIR", str(folder / "docs"))
        source = Source.generated(folder / "source.sqlite", customers=150, seed=23)
        with WarehouseCopies(request.param, folder) as copies:
            url = copies.create("p1")
            pipeline.run_grading(Connections(source.url, url), P1, run_id="p1")
            copies.keep("graded-p1", url)
            yield Graded(request.param, folder, source, copies)


def _identities(data) -> list[str]:
    customers = data.customers
    return [*customers["customer_id"], *customers["name"], *customers["email"], *customers["phone"]]


def _everything_published(url: str) -> str:
    """Every row of every marts and audit table and view, as text."""
    with open_engine(url) as engine, engine.connect() as conn:
        names = conn.execute(sa.text("SELECT table_schema, table_name FROM information_schema.tables "
                                     "WHERE table_schema IN ('marts', 'audit')")).all()
        return "\n".join(read_frame(conn, f"SELECT * FROM {schema}.{name}").to_csv(index=False)  # noqa: S608
                         for schema, name in names)


def _docs_text(folder: Path) -> str:
    return "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in folder.rglob("*") if p.is_file())


def test_no_source_identity_in_marts_validation_results_or_data_docs_after_failures(
    graded: Graded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = tmp_path / "docs"
    monkeypatch.setenv("GRADING_DATA_DOCS_DIR", str(docs))
    source = graded.source.copy(tmp_path / "source.sqlite")
    url = graded.copies.copy("graded-p1", f"privacy-{tmp_path.name[-10:]}")
    conns = Connections(source.url, url)
    customers = source.data.customers.sort_values("customer_id")
    twin = customers[customers["created_at"].between("2024-11-01", "2024-11-27")].iloc[0]
    # 1. a customer of the period delivered twice: a critical stop whose GX detail lists the duplicated ids
    source.sql("INSERT INTO customers (customer_id, created_at, region, industry, channel, name, email, phone) "
               "VALUES (:c, '2024-11-20 08:00:00', 'West', 'retail', 'online', :n, :e, :p)",
               c=twin["customer_id"], n=twin["name"], e=twin["email"], p=twin["phone"])
    with pytest.raises(ValidationFailed, match="expect_column_values_to_be_unique"):
        pipeline.run_grading(conns, P2, run_id="duplicate")
    source.sql("DELETE FROM customers WHERE rowid = (SELECT MAX(rowid) FROM customers)")
    # 2. an order whose customer id carries a NUL: the extraction stops, naming the row by pseudonym
    victim = source.data.customers.sort_values("customer_id").iloc[7]
    source.sql("INSERT INTO orders (order_id, customer_id, order_ts, status, amount, margin) "
               "VALUES ('NUL1', :c || char(0), '2024-11-21 10:00:00', 'completed', 5, 1)", c=victim["customer_id"])
    with pytest.raises(SourceDataError, match="NUL character") as stopped:
        pipeline.run_grading(conns, P2, run_id="nul")
    assert victim["customer_id"] not in str(stopped.value)
    assert "customer_key " in str(stopped.value)
    source.sql("DELETE FROM orders WHERE order_id = 'NUL1'")
    # 3. a survey of an unknown customer: quarantined, and the run goes on
    source.sql("INSERT INTO surveys (survey_id, customer_id, responded_at, csat, nps) "
               "VALUES ('S_ORPHAN', 'C9999999', '2024-11-22 10:00:00', 4, 8)")
    pipeline.run_grading(conns, P2, run_id="graded")
    assert scalar(url, "SELECT COUNT(*) FROM audit.run_audit WHERE status = 'failed'") == 2

    published, stored = _everything_published(url), _docs_text(docs)
    assert "expect_column_values_to_be_unique" in stored
    assert "C9999999" not in published
    leaks = [i for i in [*_identities(source.data), "C9999999"] if i in published or i in stored]
    assert leaks == []
    # the duplicate's detail is there, by pseudonym
    assert pseudonym(twin["customer_id"], pseudonym_key()) in stored


def test_a_message_keeps_no_contact_data_and_names_customers_by_pseudonym(graded: Graded) -> None:
    url = graded.copies.copy("graded-p1", "redact")
    customer = graded.source.data.customers.sort_values("customer_id").iloc[0]
    key = pseudonym(customer["customer_id"], pseudonym_key())
    message = (f"mapping.yaml:12: value {customer['customer_id']!r} of column 'Email' (ada@example.com, "
               f"+86-10-12345678) is not a number; 12 rows")
    with open_engine(url) as engine, engine.connect() as conn:
        assert privacy.redact(conn, message) == \
            f"mapping.yaml:12: value '{key}' of column 'Email' (<e-mail>, <phone>) is not a number; 12 rows"


def test_the_development_key_is_refused_outside_the_demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRADING_ENV", raising=False)
    monkeypatch.delenv("GRADING_PSEUDONYM_KEY", raising=False)
    with pytest.raises(ValueError, match="GRADING_PSEUDONYM_KEY is not set: published customer keys made with it can "
                                         "be traced back"):
        pseudonym_key()
    monkeypatch.setenv("GRADING_PSEUDONYM_KEY", "grading-dev-key-change-me")
    with pytest.raises(ValueError, match="is the public development key"):
        pseudonym_key()
    monkeypatch.setenv("GRADING_PSEUDONYM_KEY", "a-real-secret")
    assert pseudonym_key() == b"a-real-secret"
    monkeypatch.delenv("GRADING_PSEUDONYM_KEY")
    monkeypatch.setenv("GRADING_ENV", "demo")
    assert pseudonym_key() == b"grading-dev-key-change-me"
    # the command line says so, and --allow-dev-key lets the demo's key through
    env = {k: v for k, v in os.environ.items() if k not in ("GRADING_ENV", "GRADING_PSEUDONYM_KEY")
           and not k.startswith("AIRFLOW_CONN_GRADING")} | {"GRADING_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "grading", "erase", "--customer-id", "C1", "--yes"], env=env,
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 1
    assert out.stderr.startswith("error: GRADING_PSEUDONYM_KEY is not set")
    out = subprocess.run([sys.executable, "-m", "grading", "--allow-dev-key", "migrate"], env=env,
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    out = subprocess.run([sys.executable, "-m", "grading", "--allow-dev-key", "erase", "--customer-id", "C1", "--yes"],
                         env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 1
    assert "no rows of that customer" in out.stderr


def test_erasure_leaves_nothing_behind_and_keeps_the_customer_out(graded: Graded, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    docs = tmp_path / "docs"
    monkeypatch.setenv("GRADING_DATA_DOCS_DIR", str(docs))
    source = graded.source.copy(tmp_path / "source.sqlite")
    odd = 'C"7\\x'  # a quote and a backslash: escaped in the quarantine's JSON copies
    source.sql("INSERT INTO customers (customer_id, created_at, region, industry, channel) "
               "VALUES (:c, '2024-11-05 08:00:00', 'West', 'retail', 'online')", c=odd)
    source.sql("INSERT INTO orders (order_id, customer_id, order_ts, status, amount, margin) VALUES "
               "('ODD1', :c, '2024-11-12 10:00:00', 'completed', -5, -5), "
               "('ODD2', :c, '2024-11-13 10:00:00', 'completed', 300, 30)", c=odd)
    url = graded.copies.copy("graded-p1", f"erase-{tmp_path.name[-10:]}")
    conns = Connections(source.url, url)
    pipeline.run_grading(conns, P2, run_id="with-odd")
    key = pseudonym(odd, pseudonym_key())
    assert scalar(url, "SELECT COUNT(*) FROM ops.quarantine WHERE row_key = 'ODD1'") == 1
    assert scalar(url, "SELECT COUNT(*) FROM marts.customer_tier_snapshot WHERE customer_key = :k", k=key) == 1
    with open_engine(url) as engine:
        deleted = erase(engine, odd, pseudonym_key(), docs)
    assert deleted["ops.quarantine"] == 1
    assert deleted["raw.orders"] == 1
    assert _everything_published(url).count(key) == 0
    assert key not in _docs_text(docs)
    assert odd not in _docs_text(docs)
    if graded.kind == "duckdb":  # freed blocks keep the old bytes until the file is rewritten
        path = Path(sa.make_url(url).database)
        probe = source.data.customers.sort_values("customer_id").iloc[3]["customer_id"]
        with open_engine(url) as engine:
            erase(engine, probe, pseudonym_key(), docs)
        with open_engine(url) as engine, engine.connect() as conn:
            conn.exec_driver_sql("CHECKPOINT")
        assert probe.encode() in path.read_bytes()
        with open_engine(url) as engine:
            compact(engine)
        assert probe.encode() not in path.read_bytes()
    # still in the source, and buying again: the next run skips the customer's rows, counted, instead of
    # stopping on orders of a customer raw no longer knows, and grades everyone else
    source.sql("INSERT INTO orders (order_id, customer_id, order_ts, status, amount, margin) "
               "VALUES ('ODD3', :c, '2024-12-10 10:00:00', 'completed', 80, 8)", c=odd)
    summary = pipeline.run_grading(conns, date(2025, 1, 1), run_id="after-erasure")
    assert summary["extract"]["suppressed"]["orders"] >= 1
    assert scalar(url, "SELECT COUNT(*) FROM raw.customers WHERE customer_id = :c", c=odd) == 0
    assert scalar(url, "SELECT COUNT(*) FROM marts.customer_tier_snapshot WHERE as_of_date = '2025-01-01' "
                       "AND customer_key = :k", k=key) == 0
    assert scalar(url, "SELECT message FROM audit.run_audit WHERE run_id = 'after-erasure' AND stage = 'extract'") \
        .startswith("skipped the rows of erased customers (ops.erasures): orders ")
    assert isinstance(pd.Timestamp(scalar(url, "SELECT MAX(erased_at) FROM ops.erasures")), pd.Timestamp)
