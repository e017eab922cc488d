"""The warehouse model: engines and their session settings, migrations (an older warehouse upgraded
in place), table statistics, the catalogue and BI access."""

from __future__ import annotations

import uuid
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa

from grading import demo
from grading.catalog import load_catalogue, published_columns, render_dictionary
from grading.pipeline import Connections, prepare_warehouse, run_grading
from grading.warehouse import migrate, migration_files, open_engine
from tests.helpers import ROOT, scalar


def demo_connections(tmp_path: Path, warehouse_url: str, customers: int = 200) -> Connections:
    source_url = f"sqlite:///{tmp_path / 'source.sqlite'}"
    demo.write_source(demo.generate(customers=customers, seed=9), source_url)
    return Connections(source_url=source_url, warehouse_url=warehouse_url)


def test_an_older_warehouse_upgrades_in_place_and_keeps_its_data(warehouse_url: str) -> None:
    with open_engine(warehouse_url) as engine:
        assert migrate(engine, up_to="0001") == ["0001_initial.sql"]
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO marts.customer_tier_snapshot VALUES "
                                 "('2024-10-01', 'k1', 'gold', 2, 'gold_band', 'why', '1.0.0')"))
        later = [p.name for p in migration_files()][1:]
        assert later
        assert prepare_warehouse(engine) == later
        assert prepare_warehouse(engine) == []
    assert scalar(warehouse_url, "SELECT tier FROM marts.customer_tier_snapshot WHERE customer_key = 'k1'") == "gold"
    assert scalar(warehouse_url, "SELECT COUNT(*) FROM ops.schema_migrations") == len(migration_files())


def test_a_warehouse_graded_before_the_batch_ledger_registers_its_batches_and_periods(warehouse_url: str) -> None:
    """Upgrading: the stamps in raw become batches - passed where validation passed them, without
    a verdict otherwise (the next extraction takes those rows over and validates them) - and the
    graded and published periods are registered in date order, none stale."""
    from grading.periods import period_states

    passed, unchecked = "2024-10-01 01:00:00", "2024-11-01 01:00:00"
    with open_engine(warehouse_url) as engine:
        migrate(engine, up_to="0011")
        with engine.begin() as conn:
            for stamp, customer in ((passed, "C1"), (unchecked, "C2")):
                conn.execute(sa.text("INSERT INTO raw.customers (customer_id, created_at, extracted_at) "
                                     "VALUES (:c, '2024-01-01', :s)"), {"c": customer, "s": stamp})
            conn.execute(sa.text(
                "INSERT INTO ops.validation_batches (run_id, as_of_date, source_table, extracted_at, status, "
                "rows_checked, rows_quarantined, validated_at) VALUES ('old', '2024-10-01', 'customers', :s, "
                "'passed', 1, 0, :s)"), {"s": passed})
            for as_of in ("2024-10-01", "2024-11-01"):
                values = {"d": as_of}
                conn.execute(sa.text("INSERT INTO staging.customer_tiers (as_of_date, customer_id, tier, tier_rank, "
                                     "tier_rule, tier_reason, rule_version) VALUES (:d, 'C1', 'gold', 2, 'r', 'why', "
                                     "'1')"), values)
                conn.execute(sa.text("INSERT INTO marts.customer_tier_snapshot (as_of_date, customer_key, tier, "
                                     "tier_rank, tier_rule, tier_reason, rule_version) VALUES (:d, 'k1', 'gold', 2, "
                                     "'r', 'why', '1')"), values)
        prepare_warehouse(engine)
        with engine.connect() as conn:
            batches = dict(conn.execute(sa.text("SELECT CAST(batch_id AS VARCHAR), status FROM ops.batches")).all())
            states = period_states(conn)
            published = conn.execute(sa.text("SELECT COUNT(*) FROM marts.published_periods WHERE NOT stale")).scalar()
    assert {k[:19]: v for k, v in batches.items()} == {passed: "passed", unchecked: "extracted"}
    assert [(s.as_of, s.graded_after, s.stale) for s in states.values()] == [
        (date(2024, 10, 1), None, False), (date(2024, 11, 1), date(2024, 10, 1), False)]
    assert published == 2


def test_postgresql_knows_the_size_of_every_table_a_run_loaded(tmp_path: Path, pg_url: str) -> None:
    # The planner sizes its plans on the statistics (reltuples: -1 until a table is analyzed);
    # every stage refreshes those of the tables it loaded, whether or not autovacuum runs.
    conns = demo_connections(tmp_path, pg_url)
    for as_of in (date(2024, 10, 1), date(2025, 1, 1)):
        run_grading(conns, as_of)
    loaded = ("raw.orders", "raw.customers", "ops.customer_keys", "staging.customer_features",
              "staging.customer_tiers", "staging.customer_flags",
              "marts.customer_tier_snapshot", "marts.tier_history", "marts.winback_candidates")
    for table in loaded:
        rows = scalar(pg_url, f"SELECT COUNT(*) FROM {table}")  # noqa: S608 - names of this test
        assert scalar(pg_url, "SELECT reltuples FROM pg_class WHERE oid = CAST(:t AS regclass)", t=table) == rows, table
        assert rows > 0, table
    # ... and reads or replaces one period of them by index, not by scanning the history
    assert scalar(pg_url, "SELECT COUNT(*) FROM pg_indexes WHERE schemaname IN ('staging', 'marts') "
                          "AND indexdef LIKE '%(as_of_date)' AND indexname NOT LIKE '%_pkey'") == 9


def test_postgresql_declares_the_primary_keys_of_the_catalogue_and_the_lists_reference_the_snapshot(
        tmp_path: Path, pg_url: str) -> None:
    """Every marts table declares its key in marts.yml, and PostgreSQL holds exactly those keys; a
    graded run and a rerun of its period publish within them (foreign keys checked at commit)."""
    conns = demo_connections(tmp_path, pg_url, customers=120)
    run_grading(conns, date(2025, 1, 1))
    run_grading(conns, date(2025, 1, 1))
    with open_engine(pg_url) as engine, engine.connect() as conn:
        keys = {}
        for table, column, _position in conn.execute(sa.text(
                "SELECT tc.table_name, k.column_name, k.ordinal_position FROM information_schema.table_constraints "
                "AS tc JOIN information_schema.key_column_usage AS k ON k.constraint_name = tc.constraint_name "
                "AND k.table_schema = tc.table_schema WHERE tc.table_schema = 'marts' "
                "AND tc.constraint_type = 'PRIMARY KEY' ORDER BY 1, 3")):
            keys.setdefault(table, []).append(column)
        tables = set(conn.execute(sa.text("SELECT table_name FROM information_schema.tables "
                                          "WHERE table_schema = 'marts' AND table_type = 'BASE TABLE'")).scalars())
        references = set(conn.execute(sa.text(
            "SELECT table_name FROM information_schema.table_constraints WHERE table_schema = 'marts' "
            "AND constraint_type = 'FOREIGN KEY'")).scalars())
        exact = set(conn.execute(sa.text(
            "SELECT table_name || '.' || column_name FROM information_schema.columns WHERE table_schema = 'marts' "
            "AND data_type = 'numeric' AND numeric_precision = 18 AND numeric_scale = 2")).scalars())
        published = conn.execute(sa.text("SELECT SUM(monetary_365d) FROM marts.current_customer_features")).scalar()
    declared = {name: spec["primary_key"] for name, spec in load_catalogue().items() if "primary_key" in spec}
    assert set(declared) == tables  # every table of marts, and no view
    assert keys == declared
    assert references == {"elimination_candidates", "winback_candidates", "core_customers", "candidate_exemptions",
                          "elimination_status"}
    # money is exact on PostgreSQL, in the tables and the views over them
    assert {"customer_features_snapshot.monetary_365d", "customer_tier_snapshot.spend_to_next_tier",
            "current_customer_tier.qualifying_spend", "winback_candidates.value_before",
            "lost_customers.revenue_since_won_back", "review_uplift.treated_revenue"} <= exact
    assert str(published) == f"{published:.2f}"  # a Decimal to the cent


def test_the_declared_keys_hold_on_a_graded_embedded_warehouse(reviewed_warehouse) -> None:
    """DuckDB keeps no key (an in-memory index per key would outgrow a worker): the keys of marts.yml
    hold all the same on five graded and reviewed periods."""
    _, url, _ = reviewed_warehouse
    with open_engine(url) as engine, engine.connect() as conn:
        for name, spec in load_catalogue().items():
            if "primary_key" not in spec:
                continue
            columns = ", ".join(spec["primary_key"])
            rows = conn.execute(sa.text(f"SELECT COUNT(*) FROM marts.{name}")).scalar()  # noqa: S608 - catalogue names
            distinct = conn.execute(sa.text(
                f"SELECT COUNT(*) FROM (SELECT DISTINCT {columns} FROM marts.{name} "  # noqa: S608 - catalogue names
                f"WHERE {' AND '.join(c + ' IS NOT NULL' for c in spec['primary_key'])}) AS k")).scalar()
            assert distinct == rows, name


def test_the_catalogue_documents_exactly_the_published_columns(tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    with open_engine(url) as engine:
        prepare_warehouse(engine)
        with engine.connect() as conn:
            columns = published_columns(conn)
            dictionary = render_dictionary(conn)
    catalogue = load_catalogue()
    assert set(catalogue) == set(columns)
    for relation, pairs in columns.items():
        assert list(catalogue[relation]["columns"]) == [c for c, _ in pairs], relation
    committed = (ROOT / "docs" / "data-dictionary.md").read_text(encoding="utf-8")
    assert committed == dictionary, "docs/data-dictionary.md is stale: run python -m grading docs"


def test_column_comments_reach_postgresql(pg_url: str) -> None:
    with open_engine(pg_url) as engine:
        prepare_warehouse(engine)
    comment = scalar(pg_url, "SELECT col_description('marts.customer_tier_snapshot'::regclass, 3)")
    assert comment == load_catalogue()["customer_tier_snapshot"]["columns"]["tier"]


def test_bi_role_reads_every_published_relation_and_nothing_else(tmp_path: Path, pg_url: str) -> None:
    from grading.access import create_bi_role

    conns = demo_connections(tmp_path, pg_url, customers=50)
    run_grading(conns, date(2025, 1, 1))
    role = f"bi_test_{uuid.uuid4().hex[:8]}"
    with open_engine(pg_url) as engine:
        create_bi_role(engine, role)
        create_bi_role(engine, role)  # rerunnable
    as_role = sa.make_url(pg_url).set(username=role).render_as_string(hide_password=False)
    try:
        with open_engine(as_role) as engine, engine.connect() as conn:
            for relation, spec in load_catalogue().items():
                conn.execute(sa.text(f"SELECT * FROM {spec['schema']}.{relation} LIMIT 1"))  # noqa: S608
            for forbidden in ("SELECT * FROM raw.orders", "SELECT * FROM ops.customer_keys",
                              "SELECT * FROM staging.customer_features",
                              "INSERT INTO audit.run_audit (run_id) VALUES ('x')",
                              "DELETE FROM marts.customer_tier_snapshot", "CREATE TABLE marts.mine (a int)",
                              "CREATE TEMPORARY TABLE scratch (a int)"):
                with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
                    conn.execute(sa.text(forbidden))
                conn.rollback()
    finally:
        with open_engine(pg_url) as engine, engine.begin() as conn:
            conn.execute(sa.text(f'DROP OWNED BY "{role}"'))
            conn.execute(sa.text(f'DROP ROLE "{role}"'))


def test_bi_role_names_are_checked(pg_url: str) -> None:
    from grading.access import create_bi_role

    with open_engine(pg_url) as engine, pytest.raises(ValueError, match="role name must match"):
        create_bi_role(engine, 'x"; DROP TABLE audit.run_audit; --')


def test_postgresql_sessions_get_the_work_mem_setting_unless_the_url_sets_it(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert scalar(pg_url, "SHOW work_mem") == "64MB"
    monkeypatch.setenv("GRADING_PG_WORK_MEM", "32MB")
    assert scalar(pg_url, "SHOW work_mem") == "32MB"
    assert scalar(f"{pg_url}?options=-c%20work_mem%3D5MB", "SHOW work_mem") == "5MB"
    monkeypatch.setenv("GRADING_PG_WORK_MEM", "32MB; DROP TABLE x")
    with pytest.raises(ValueError, match="GRADING_PG_WORK_MEM must be a size"):
        scalar(pg_url, "SHOW work_mem")


def _include_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of include/ the test may edit, used in place of the repository's."""
    import shutil

    copy = tmp_path / "include"
    shutil.copytree(ROOT / "include", copy)
    monkeypatch.setenv("GRADING_INCLUDE_DIR", str(copy))
    return copy


def test_an_applied_migration_edited_afterwards_is_refused(warehouse_url: str, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Applied migrations never run again: an edit would make two warehouses of one version differ."""
    from grading.errors import DataError
    from grading.warehouse import MigrationError

    include = _include_copy(tmp_path, monkeypatch)
    with open_engine(warehouse_url) as engine:
        migrate(engine, up_to="0003")
        recorded = scalar(warehouse_url, "SELECT checksum FROM ops.schema_migrations WHERE version = '0002'")
        assert len(recorded) == 64
        edited = next((include / "sql" / "migrations").glob("0002_*.sql"))
        edited.write_text(edited.read_text(encoding="utf-8") + "\n-- a harmless-looking comment\n", encoding="utf-8")
        with pytest.raises(MigrationError, match=rf"{edited.name}: migration 0002 was edited after it was applied"):
            migrate(engine)
        assert issubclass(MigrationError, DataError)
        assert scalar(warehouse_url, "SELECT COUNT(*) FROM ops.schema_migrations") == 3  # nothing more applied


def test_a_warehouse_migrated_by_newer_code_or_before_checksums_is_handled(warehouse_url: str, tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from grading.warehouse import MigrationError

    with open_engine(warehouse_url) as engine:
        migrate(engine, up_to="0002")
        with engine.begin() as conn:  # as the runner before checksums left it
            conn.execute(sa.text("ALTER TABLE ops.schema_migrations DROP COLUMN checksum"))
        migrate(engine, up_to="0002")
        assert scalar(warehouse_url, "SELECT COUNT(*) FROM ops.schema_migrations WHERE checksum IS NULL") == 0
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO ops.schema_migrations VALUES ('9999', '9999_future.sql', "
                                 "'2026-01-01', NULL)"))
        with pytest.raises(MigrationError, match="records migration\\(s\\) 9999 that this code does not have"):
            migrate(engine)
