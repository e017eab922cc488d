"""Erasure (grading.erasure) on a DuckDB warehouse: every row of one customer - by id, by key and in
the quarantine's JSON copies - deleted, and nobody else's (an id with LIKE wildcards and a quote);
the erasure recorded by key only; Data Docs scrubbed; the file rewritten without the deleted bytes."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from grading.erasure import ERASED, compact, erase, scrub_docs

KEY = b"unit-test-pseudonym-key-32-bytes"
GONE, KEPT = 'ERASE_ME"7', 'ERASEXME"7'  # KEPT matches GONE as a LIKE pattern if "_" is not escaped
GONE_KEY, KEPT_KEY = "key-gone", "key-kept"


@pytest.fixture
def warehouse(migrated_warehouse: Engine) -> Engine:
    """Two customers in raw, the key map, a published snapshot and the quarantine (JSON as each engine spaces it)."""
    engine = migrated_warehouse
    with engine.begin() as conn:
        for customer, key in ((GONE, GONE_KEY), (KEPT, KEPT_KEY)):
            values = {"c": customer, "k": key}
            conn.execute(sa.text("INSERT INTO raw.customers (customer_id, created_at, extracted_at) "
                                 "VALUES (:c, '2024-01-01', '2024-02-01')"), values)
            for n in (1, 2):
                conn.execute(sa.text("INSERT INTO raw.orders VALUES (:o, :c, '2024-03-01', 'completed', 10, 1, "
                                     "'2024-04-01')"), {**values, "o": f"{customer}-{n}"})
            conn.execute(sa.text("INSERT INTO ops.customer_keys VALUES (:c, :k)"), values)
            conn.execute(sa.text("INSERT INTO marts.customer_tier_snapshot (as_of_date, customer_key, tier, "
                                 "tier_rank, tier_rule, tier_reason, rule_version) "
                                 "VALUES ('2024-10-01', :k, 'gold', 2, 'gold_band', 'why', '1')"), values)
            for separators in ((",", ":"), (", ", ": ")):
                row = json.dumps({"order_id": "o", "customer_id": customer, "amount": -5}, separators=separators)
                conn.execute(sa.text(
                    "INSERT INTO ops.quarantine VALUES ('r', '2024-10-01', 'orders', 'o', 'amount_positive', "
                    "'amount', 'negative', :row, '2024-04-01', '2024-04-01')"), {"row": row})
    return engine


def test_erasing_a_customer_deletes_every_row_of_theirs_and_nobody_elses(warehouse: Engine, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    (docs / "validations").mkdir(parents=True)
    (docs / "index.html").write_text(f"<td>{GONE_KEY}</td><td>{KEPT_KEY}</td>", encoding="utf-8")
    (docs / "validations" / "result.json").write_text(json.dumps({"unexpected": [GONE]}), encoding="utf-8")
    (docs / "validations" / "other.json").write_text(json.dumps({"unexpected": [KEPT]}), encoding="utf-8")

    deleted = erase(warehouse, GONE, KEY, docs)

    assert deleted == {"raw.customers": 1, "raw.orders": 2, "ops.customer_keys": 1,
                       "marts.customer_tier_snapshot": 1, "ops.quarantine": 2, "data docs (files)": 2}
    with warehouse.connect() as conn:
        def ids(sql: str) -> list:
            return sorted(conn.execute(sa.text(sql)).scalars())

        assert ids("SELECT customer_id FROM raw.customers") == [KEPT]
        assert ids("SELECT customer_id FROM raw.orders") == [KEPT, KEPT]
        assert ids("SELECT customer_key FROM marts.customer_tier_snapshot") == [KEPT_KEY]
        assert [json.loads(r)["customer_id"] for r in ids("SELECT row_json FROM ops.quarantine")] == [KEPT, KEPT]
        # the suppression list names the key, never the id
        assert conn.execute(sa.text("SELECT customer_key, rows_deleted FROM ops.erasures")).all() == [(GONE_KEY, 7)]
    assert (docs / "index.html").read_text(encoding="utf-8") == f"<td>{ERASED}</td><td>{KEPT_KEY}</td>"
    assert json.loads((docs / "validations" / "result.json").read_text(encoding="utf-8")) == {"unexpected": [ERASED]}
    assert json.loads((docs / "validations" / "other.json").read_text(encoding="utf-8")) == {"unexpected": [KEPT]}

    with pytest.raises(LookupError, match="no rows of that customer in the warehouse; nothing erased"):
        erase(warehouse, GONE, KEY)


def test_scrubbing_leaves_binary_files_and_a_missing_folder_alone(tmp_path: Path) -> None:
    assert scrub_docs(tmp_path / "no-docs", (GONE,)) == 0
    (tmp_path / "chart.png").write_bytes(GONE.encode())
    (tmp_path / "page.md").write_text(f"{GONE} and {GONE}", encoding="utf-8")
    assert scrub_docs(tmp_path, (GONE,)) == 1
    assert (tmp_path / "page.md").read_text(encoding="utf-8") == f"{ERASED} and {ERASED}"
    assert (tmp_path / "chart.png").read_bytes() == GONE.encode()


def test_compacting_rewrites_the_file_without_the_erased_values(warehouse: Engine) -> None:
    erase(warehouse, GONE, KEY)
    path = Path(warehouse.url.database)
    before, after = compact(warehouse)
    assert before > 0
    assert after == path.stat().st_size
    assert GONE.encode() not in path.read_bytes()
    with warehouse.connect() as conn:
        assert conn.execute(sa.text("SELECT customer_id FROM raw.customers")).scalars().all() == [KEPT]
    with pytest.raises(ValueError, match="compact rewrites an embedded DuckDB file"):
        compact(sa.create_engine("sqlite://"))


def test_erasing_a_customer_rewrites_the_local_crm_exports_without_them(warehouse: Engine, tmp_path: Path) -> None:
    import pandas as pd

    from grading.export.changes import to_csv
    from grading.export.files import write_period

    exports = tmp_path / "exports"
    rows = pd.DataFrame({"change": ["tier_changed", "tier_changed"], "customer_id": [GONE, KEPT],
                         "list": pd.Series([None, None], dtype="string"), "tier": ["gold", "normal"]})
    write_period(exports, date(2024, 10, 1), None, rows, to_csv(rows))
    untouched = rows.tail(1).reset_index(drop=True)
    write_period(exports, date(2025, 1, 1), date(2024, 10, 1), untouched, to_csv(untouched))
    before = (exports / "2025-01-01" / "changes.parquet").read_bytes()
    first = (exports / "2024-10-01" / "changes.parquet").read_bytes()
    assert erase(warehouse, GONE, KEY, exports=exports, dry_run=True)["crm exports (periods)"] == 1
    assert (exports / "2024-10-01" / "changes.parquet").read_bytes() == first  # the dry run rewrote nothing

    deleted = erase(warehouse, GONE, KEY, exports=exports)

    assert deleted["crm exports (periods)"] == 1
    kept = pd.read_parquet(exports / "2024-10-01" / "changes.parquet")
    assert kept["customer_id"].tolist() == [KEPT]
    assert GONE not in (exports / "2024-10-01" / "changes.csv").read_text()
    manifest = json.loads((exports / "2024-10-01" / "manifest.json").read_text())
    assert manifest["rows"] == 1
    assert (exports / "2025-01-01" / "changes.parquet").read_bytes() == before  # nothing of theirs there


def test_a_dry_run_counts_what_would_go_and_changes_nothing(warehouse: Engine, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.html").write_text(f"<td>{GONE_KEY}</td>", encoding="utf-8")

    def everything() -> dict:
        with warehouse.connect() as conn:
            return {table: sorted(map(tuple, conn.execute(sa.text(f"SELECT * FROM {table}")).all()))  # noqa: S608
                    for table in ("raw.customers", "raw.orders", "ops.customer_keys", "ops.quarantine",
                                  "marts.customer_tier_snapshot", "ops.erasures")}

    before = everything()
    counted = erase(warehouse, GONE, KEY, docs, dry_run=True)

    # a table with both customer_id and customer_key (ops.customer_keys) counts its row once
    assert counted == {"ops.customer_keys": 1, "ops.quarantine": 2, "marts.customer_tier_snapshot": 1,
                       "raw.customers": 1, "raw.orders": 2, "data docs (files)": 1}
    assert everything() == before
    assert (docs / "index.html").read_text(encoding="utf-8") == f"<td>{GONE_KEY}</td>"
    assert erase(warehouse, GONE, KEY, docs) == counted  # what the dry run said is what goes
    with pytest.raises(LookupError, match="nothing erased"):
        erase(warehouse, GONE, KEY, dry_run=True)
