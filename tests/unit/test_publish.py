"""The publish stage (grading.publish): a period's relations loaded by include/sql/publish in marts.yml
order, atomically (a failure leaves nothing of the period and earlier periods untouched), publishes
of several periods queued behind a lock, and tier history carried forward (append) or rebuilt
(backfill) to the same rows."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from grading.catalog import load_catalogue
from grading.frames import read_frame
from grading.pipeline import Connections, features_stage, flags_stage, publish_stage, run_grading, tiers_stage
from grading.publish import LOADED_ELSEWHERE, PUBLISHED_TABLES, STEP_FILES, PublishFilesError, publish_files
from grading.settings import include_dir
from grading.warehouse import open_engine, run_sql_file
from tests.helpers import Source, extract_validated, published, scalar


def demo_connections(tmp_path: Path, warehouse_url: str, customers: int = 200) -> Connections:
    source = Source.generated(tmp_path / "source.sqlite", customers=customers, seed=9)
    return Connections(source_url=source.url, warehouse_url=warehouse_url)


def load_period(conns: Connections, as_of: date, run_id: str) -> None:
    """The stages after extraction, as the DAG runs them."""
    features_stage(conns, as_of, run_id)
    tiers_stage(conns, as_of, run_id)
    flags_stage(conns, as_of, run_id)
    publish_stage(conns, as_of, run_id)


def test_a_failed_publish_leaves_nothing_of_the_period_and_earlier_periods_untouched(
    tmp_path: Path, warehouse_url: str
) -> None:
    conns = demo_connections(tmp_path, warehouse_url)
    run_grading(conns, date(2024, 10, 1))
    before = published(warehouse_url)
    extract_validated(conns, date(2025, 1, 1), "r2")
    # The fault: the last table the publish writes has lost a column, so the transaction
    # fails after the snapshot and tier tables of the period were already written in it.
    with open_engine(warehouse_url) as engine, engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE marts.winback_candidates RENAME COLUMN reason TO reason_lost"))
    with pytest.raises(sa.exc.DBAPIError):
        load_period(conns, date(2025, 1, 1), "r2")
    with open_engine(warehouse_url) as engine, engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE marts.winback_candidates RENAME COLUMN reason_lost TO reason"))
    after = published(warehouse_url)
    assert all(after[t].equals(before[t]) for t in before)
    assert scalar(warehouse_url, "SELECT COUNT(*) FROM marts.customer_features_snapshot "
                                 "WHERE as_of_date = '2025-01-01'") == 0
    assert scalar(warehouse_url, "SELECT status FROM audit.run_audit WHERE run_id = 'r2' AND stage = 'publish'") \
        == "failed"


def test_two_periods_load_in_parallel_as_they_would_one_after_the_other(tmp_path: Path, warehouse_url: str) -> None:
    conns = demo_connections(tmp_path, warehouse_url)
    periods = [date(2024, 10, 1), date(2025, 1, 1)]
    extract_validated(conns, periods[-1], "extract")
    for as_of in periods:
        load_period(conns, as_of, f"serial-{as_of}")
    serial = published(warehouse_url)
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda d: load_period(conns, d, f"parallel-{d}"), periods))
    parallel = published(warehouse_url)
    assert all(parallel[t].equals(serial[t]) for t in serial)
    assert scalar(warehouse_url, "SELECT COUNT(DISTINCT as_of_date) FROM marts.customer_tier_snapshot") == 2
    assert scalar(warehouse_url, "SELECT COUNT(*) FROM marts.tier_history WHERE valid_to IS NULL") == 200


def test_tier_history_has_one_open_row_per_customer_and_follows_the_snapshots(
    tmp_path: Path, warehouse_url: str
) -> None:
    conns = demo_connections(tmp_path, warehouse_url)
    for as_of in (date(2024, 7, 1), date(2024, 10, 1), date(2025, 1, 1)):
        run_grading(conns, as_of)
    with open_engine(warehouse_url) as engine, engine.connect() as conn:
        snapshots = conn.execute(sa.text(
            "SELECT customer_key, as_of_date, tier FROM marts.customer_tier_snapshot ORDER BY 1, 2")).all()
        history = conn.execute(sa.text(
            "SELECT customer_key, tier, valid_from, valid_to FROM marts.tier_history ORDER BY 1, 3")).all()
    # Replay the history: each snapshot must fall in exactly one stretch with its tier.
    for key, as_of, tier in snapshots:
        held = [h for h in history if h[0] == key and h[2] <= as_of and (h[3] is None or as_of < h[3])]
        assert [h[1] for h in held] == [tier]
    open_rows = [h for h in history if h[3] is None]
    assert len(open_rows) == len({h[0] for h in history})


def test_tier_history_carried_forward_by_each_period_is_the_history_rebuilt_from_every_snapshot(
    tmp_path: Path, warehouse_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    conns = demo_connections(tmp_path, warehouse_url)
    extract_validated(conns, date(2025, 4, 1), "extract")

    def history(conn: sa.Connection) -> pd.DataFrame:
        return read_frame(conn, "SELECT * FROM marts.tier_history ORDER BY customer_key, valid_from")

    def check(expected_how: str) -> None:
        assert [r.getMessage() for r in caplog.records if "tier history" in r.getMessage()][-1:] == \
            [f"tier history: {expected_how}"]
        with open_engine(warehouse_url) as engine, engine.connect() as conn:
            kept = history(conn)
            run_sql_file(conn, "publish/tier_history_rebuild")
            rebuilt = history(conn)
            conn.rollback()
        pd.testing.assert_frame_equal(kept, rebuilt)

    with caplog.at_level("INFO", logger="grading.publish"):
        for as_of in (date(2024, 10, 1), date(2025, 1, 1)):
            load_period(conns, as_of, f"run-{as_of}")
            check("append")
        # An operator reruns the latest period after regrading some of its customers (some into
        # a new tier, some back into their previous one): what its first publish opened and
        # closed is taken back before the new tiers are applied.
        with open_engine(warehouse_url) as engine, engine.begin() as conn:
            regraded = conn.execute(sa.text(
                "UPDATE staging.customer_tiers SET tier = 'regraded' "
                "WHERE as_of_date = '2025-01-01' AND customer_id IN (SELECT customer_id FROM staging.customer_tiers "
                "WHERE as_of_date = '2025-01-01' ORDER BY customer_id LIMIT 60)")).rowcount
            reverted = conn.execute(sa.text(
                "UPDATE staging.customer_tiers AS t SET tier = p.tier FROM staging.customer_tiers AS p "
                "WHERE t.as_of_date = '2025-01-01' AND p.as_of_date = '2024-10-01' AND p.customer_id = t.customer_id "
                "AND t.tier NOT IN (p.tier, 'regraded')")).rowcount
        assert regraded == 60
        assert reverted > 0
        publish_stage(conns, date(2025, 1, 1), "rerun")
        check("append")
        load_period(conns, date(2024, 7, 1), "backfill")  # earlier than the latest: rebuilt
        check("rebuild")
        load_period(conns, date(2025, 4, 1), "run-2025-04-01")
        check("append")
    with open_engine(warehouse_url) as engine, engine.connect() as conn:
        kept = history(conn)
    assert (kept["tier"] == "regraded").sum() == 60
    assert kept.groupby("customer_key").size().max() >= 3, "the demo data should change some tiers"


def test_publish_files_are_the_marts_relations_in_marts_yml_order(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    listed, relations = list(load_catalogue()), publish_files()
    assert relations == [relation for relation in listed if relation not in LOADED_ELSEWHERE]
    files = {path.name.split(".")[0] for path in (include_dir() / "sql" / "publish").glob("*.sql")}
    assert files == {*relations, *STEP_FILES}
    assert set(PUBLISHED_TABLES) <= set(relations)
    assert relations.index("lost_customers") > relations.index("winback_candidates")  # reads it

    sql = tmp_path / "sql"
    shutil.copytree(include_dir() / "sql" / "publish", sql / "publish")
    shutil.copy(include_dir() / "sql" / "marts.yml", sql / "marts.yml")
    monkeypatch.setenv("GRADING_INCLUDE_DIR", str(tmp_path))
    assert publish_files() == relations
    (sql / "publish" / "core_customers.sql").rename(sql / "publish" / "core_customer.sql")  # missing and extra
    with pytest.raises(PublishFilesError, match=r"core_customers\.sql is missing.*core_customer\.sql loads no"):
        publish_files()
    (sql / "publish" / "core_customer.sql").rename(sql / "publish" / "core_customers.sql")
    catalogue = yaml.safe_load((sql / "marts.yml").read_text(encoding="utf-8"))
    catalogue["relations"] = {"lost_customers": catalogue["relations"].pop("lost_customers"), **catalogue["relations"]}
    (sql / "marts.yml").write_text(yaml.safe_dump(catalogue, sort_keys=False, allow_unicode=True), encoding="utf-8")
    with pytest.raises(PublishFilesError, match="lists lost_customers before customer_tier_snapshot"):
        publish_files()
