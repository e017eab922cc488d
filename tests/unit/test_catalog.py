"""The catalogue of published tables (grading.catalog): marts.yml written as table and column
comments into a real DuckDB warehouse, and the data dictionary rendered from it and the columns
the warehouse really has, with gaps shown rather than hidden."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from sqlalchemy.engine import Engine

from grading import catalog
from grading.settings import include_dir
from grading.warehouse import migrate, open_engine


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated DuckDB warehouse file, made once; each test works on its own copy."""
    path = tmp_path_factory.mktemp("catalog") / "w.duckdb"
    with open_engine(f"duckdb:///{path}") as engine:
        migrate(engine)
    return path


@pytest.fixture
def warehouse(migrated: Path, tmp_path: Path) -> Iterator[Engine]:
    shutil.copy(migrated, tmp_path / "w.duckdb")
    with open_engine(f"duckdb:///{tmp_path}/w.duckdb") as engine:
        yield engine


def _catalogue_file(folder: Path, monkeypatch: pytest.MonkeyPatch, relations: dict) -> None:
    """A marts.yml of ``relations`` in an include folder of its own (after the warehouse is migrated)."""
    (folder / "sql").mkdir(parents=True)
    (folder / "sql" / "marts.yml").write_text(yaml.safe_dump({"relations": relations}), encoding="utf-8")
    monkeypatch.setenv("GRADING_INCLUDE_DIR", str(folder))


def test_comments_reach_every_published_table_column_and_view(warehouse: Engine) -> None:
    documented = catalog.load_catalogue()
    with warehouse.begin() as conn:
        statements = catalog.apply_comments(conn)
    with warehouse.connect() as conn:
        tables = dict(conn.execute(sa.text(
            "SELECT table_name, comment FROM duckdb_tables() WHERE schema_name IN ('marts', 'audit')")).all())
        view_comments = dict(conn.execute(sa.text(
            "SELECT view_name, comment FROM duckdb_views() WHERE schema_name IN ('marts', 'audit')")).all())
        columns = {(t, c): text for t, c, text in conn.execute(sa.text(
            "SELECT table_name, column_name, comment FROM duckdb_columns() "
            "WHERE schema_name IN ('marts', 'audit')")).all()}
        views = catalog.views(conn)
    assert views == set(view_comments)
    assert views  # the catalogue has views (their columns keep no comment in DuckDB)
    for relation, spec in documented.items():
        assert {**tables, **view_comments}[relation] == spec["description"], relation
        if relation not in views:
            for column, text in spec["columns"].items():
                assert columns[(relation, column)] == text, (relation, column)
    table_columns = sum(len(documented[t]["columns"]) for t in tables)
    assert statements == len(tables) + len(views) + table_columns


def test_relations_and_columns_documented_ahead_of_their_migration_are_skipped(
        warehouse: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _catalogue_file(tmp_path / "include", monkeypatch, {
        "run_audit": {"grain": "one row per stage run", "description": "Runs, it's audited.", "schema": "audit",
                      "columns": {"run_id": "The run.", "coming_next": "A column of the next migration."}},
        "not_yet_published": {"grain": "?", "description": "Later.", "columns": {"a": "A."}},
    })
    with warehouse.begin() as conn:
        assert catalog.apply_comments(conn) == 2  # the table's comment and run_id's
    with warehouse.connect() as conn:
        assert conn.execute(sa.text("SELECT comment FROM duckdb_tables() WHERE table_name = 'run_audit'")).scalar() \
            == "Runs, it's audited."


def test_the_dictionary_lists_what_is_published_and_marks_what_is_undocumented(
        warehouse: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = yaml.safe_load((include_dir() / "sql" / "marts.yml").read_text(encoding="utf-8"))["relations"]
    tier_summary = real["tier_summary"]
    _catalogue_file(tmp_path / "include", monkeypatch, {
        "tier_summary": {**tier_summary, "columns": {**tier_summary["columns"], "tier": "Gold | Silver | Bronze."}},
    })
    with warehouse.connect() as conn:
        published, views, schemas = catalog.published_columns(conn), catalog.views(conn), catalog.schemas_of(conn)
        path = catalog.write_dictionary(conn, tmp_path / "docs" / "nested" / "data-dictionary.md")
    text = path.read_text(encoding="utf-8")
    # every published relation has a section, in name order, documented or not
    sections = [line for line in text.splitlines() if line.startswith("## ")]
    assert sections == [f"## `{schemas[r]}.{r}` ({'view' if r in views else 'table'})" for r in sorted(published)]
    assert {schemas[r] for r in ("run_audit", "validation_results", "model_runs", "run_rule_files")} == {"audit"}
    assert "## `marts.tier_summary` (view)" in sections
    assert "| `tier` | VARCHAR | Gold \\| Silver \\| Bronze. |" in text
    assert f"Grain: {tier_summary['grain']}." in text
    run_audit = text.split("## `audit.run_audit` (table)", 1)[1].split("## ", 1)[0]
    assert "(undocumented)" in run_audit
    assert "Grain: ?." in run_audit
    assert "| `run_id` | VARCHAR | (undocumented) |" in run_audit
