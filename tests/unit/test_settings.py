"""Where things are (grading.settings): connection URLs from Airflow-style environment variables or
the embedded defaults, the source mapping setting, the pseudonym key's guard, and the sizes and
counts read from the environment, refused with the variable's name when mistyped."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from grading import settings

WAREHOUSE = "AIRFLOW_CONN_GRADING_WAREHOUSE"


def test_connection_urls_come_from_the_environment_in_airflow_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(WAREHOUSE, "postgres://grading:pw@db:5432/grading")
    assert settings.connection_url("grading_warehouse") == "postgresql+psycopg://grading:pw@db:5432/grading"
    monkeypatch.setenv(WAREHOUSE, json.dumps({"conn_type": "mariadb", "login": "u", "password": "p",
                                              "host": "h", "port": 3306, "schema": "shop"}))
    assert settings.connection_url("grading_warehouse") == "mysql+pymysql://u:p@h:3306/shop"
    monkeypatch.setenv(WAREHOUSE, json.dumps({"conn_type": "postgres", "host": "h",
                                              "extra": json.dumps({"sqlalchemy_url": "duckdb:///x.duckdb"})}))
    assert settings.connection_url("grading_warehouse") == "duckdb:///x.duckdb"
    monkeypatch.setenv(WAREHOUSE, json.dumps({"host": "h"}))
    with pytest.raises(ValueError, match="connection 'grading_warehouse' has neither uri, conn_type nor extra"):
        settings.connection_url("grading_warehouse")
    with pytest.raises(ValueError, match="not a connection URL: 'db:5432'"):
        settings.to_sqlalchemy_url("db:5432")


def test_without_a_connection_both_fall_back_to_files_in_the_grading_home(grading_home: Path) -> None:
    assert not grading_home.exists()
    assert settings.connection_url("grading_source") == f"sqlite:///{grading_home / 'source.sqlite'}"
    assert settings.connection_url("grading_warehouse") == f"duckdb:///{grading_home / 'warehouse.duckdb'}"
    assert grading_home.is_dir()
    with pytest.raises(ValueError, match="unknown connection id 'grading_alerts'"):
        settings.default_url("grading_alerts")


def test_a_mapping_is_named_by_file_or_by_its_name_in_include(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADING_INCLUDE_DIR", str(tmp_path / "include"))
    monkeypatch.delenv("GRADING_SOURCE_MAPPING", raising=False)
    assert settings.source_mapping() is None
    monkeypatch.setenv("GRADING_SOURCE_MAPPING", " superstore ")
    assert settings.source_mapping() == tmp_path / "include" / "mappings" / "superstore.yaml"
    monkeypatch.setenv("GRADING_SOURCE_MAPPING", str(tmp_path / "shop.yml"))
    assert settings.source_mapping() == tmp_path / "shop.yml"
    monkeypatch.setenv("GRADING_SOURCE_MAPPING", "mappings/shop.yaml")
    assert settings.source_mapping() == Path("mappings/shop.yaml")


def test_the_public_development_key_is_refused_outside_demo_dev_and_test(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADING_PSEUDONYM_KEY", " s3cret ")
    assert settings.pseudonym_key() == b"s3cret"
    monkeypatch.setenv("GRADING_ENV", "production")
    monkeypatch.delenv("GRADING_ALLOW_DEV_KEY", raising=False)
    for value in ("", settings.DEV_PSEUDONYM_KEY):
        monkeypatch.setenv("GRADING_PSEUDONYM_KEY", value)
        with pytest.raises(ValueError, match="GRADING_PSEUDONYM_KEY is (not set|the public development key)"):
            settings.pseudonym_key()
    monkeypatch.setenv("GRADING_ALLOW_DEV_KEY", "1")
    assert settings.pseudonym_key() == settings.DEV_PSEUDONYM_KEY.encode()
    monkeypatch.delenv("GRADING_ALLOW_DEV_KEY")
    monkeypatch.setenv("GRADING_ENV", "Demo")
    assert settings.pseudonym_key() == settings.DEV_PSEUDONYM_KEY.encode()


@pytest.mark.parametrize(("variable", "read", "value", "message"), [
    ("GRADING_CHURN_MODEL_MAX_AGE_DAYS", settings.churn_model_max_age_days, "4w", "must be a whole number, not '4w'"),
    ("GRADING_CHURN_MAX_TRAIN_ROWS", settings.churn_max_train_rows, "-1", "must be 0 or more, not -1"),
    ("GRADING_POTENTIAL_MAX_AGE_DAYS", settings.potential_max_age_days, "-3", "must be 0 or more, not -3"),
    ("GRADING_PG_WORK_MEM", settings.postgres_work_mem, "64 MB", "must be a size such as 64MB or 1GB"),
    ("GRADING_DUCKDB_MEMORY_LIMIT", settings.duckdb_memory_limit, "1G'; DROP", "must be a size such as 1GiB"),
    ("GRADING_UPLIFT_TARGET_EFFECT", settings.uplift_target_effect, "5%", "must be a share such as 0.05"),
    ("GRADING_UPLIFT_TARGET_EFFECT", settings.uplift_target_effect, "5", "must be between 0 and 1"),
    ("GRADING_BASKET_ITEM", settings.basket_settings, "sku", "must be category or product, not 'sku'"),
    ("GRADING_BASKET_MIN_SUPPORT", settings.basket_settings, "1%", "must be a share such as 0.01"),
    ("GRADING_BASKET_MIN_SUPPORT", settings.basket_settings, "0", "must be above 0 and at most 1"),
    ("GRADING_BASKET_TOP_ITEMS", settings.basket_settings, "many", "must be a whole number"),
])
def test_a_mistyped_setting_is_an_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch, variable: str,
                                                            read: Callable[[], object], value: str,
                                                            message: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=f"^{variable} {message}"):
        read()


def test_settings_take_their_defaults_when_unset_and_zero_parts_means_one_part(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("GRADING_CHURN_MODEL_MAX_AGE_DAYS", "GRADING_POTENTIAL_MAX_AGE_DAYS", "GRADING_PG_WORK_MEM",
                     "GRADING_DUCKDB_MEMORY_LIMIT"):
        monkeypatch.setenv(variable, " ")
    assert settings.churn_model_max_age_days() == 28
    assert settings.potential_max_age_days() == 28
    assert settings.postgres_work_mem() == "64MB"
    assert settings.duckdb_memory_limit() == "1GiB"
    assert settings.uplift_target_effect() == 0.05
    assert settings.basket_settings() == {"item_level": "category", "min_support": 0.01, "top_items": 100,
                                          "min_pair_baskets": 5, "max_rules": 50}
    monkeypatch.setenv("GRADING_DUCKDB_MEMORY_LIMIT", "800 mb")
    assert settings.duckdb_memory_limit() == "800 mb"
    monkeypatch.setenv("GRADING_VALIDATE_PART_ROWS", "0")
    assert settings.validate_part_rows() == 2**62
    assert settings.validate_sample_rows() == 10_000
    monkeypatch.setenv("GRADING_VALIDATE_SAMPLE_ROWS", "500")
    assert settings.validate_sample_rows() == 500


def test_passwords_in_urls_are_masked_in_any_text() -> None:
    hidden = "pw-" + "Zr81"  # built here so the repository's secret scan sees no literal
    text = f"source postgresql+psycopg://grading:{hidden}@db:5432/x and warehouse duckdb:///w.duckdb"
    assert settings.mask_urls(text) == "source postgresql+psycopg://grading:***@db:5432/x and warehouse duckdb:///w.duckdb"


@pytest.mark.parametrize("password", ["test-p@ss/w:rd", "test-100%#?&", "test-ä ö"])
@pytest.mark.parametrize("form", ["uri", "json"])
def test_a_password_survives_the_connection_in_either_airflow_form(monkeypatch: pytest.MonkeyPatch, password: str,
                                                                   form: str) -> None:
    """Airflow's parser reads the connection, SQLAlchemy's URL.create quotes it: the driver sees the password."""
    from urllib.parse import quote

    import sqlalchemy as sa

    value = (f"postgres://grading:{quote(password, safe='')}@db:5432/grading" if form == "uri" else
             json.dumps({"conn_type": "postgres", "login": "grading", "password": password, "host": "db",
                         "port": 5432, "schema": "grading"}))
    monkeypatch.setenv(WAREHOUSE, value)
    url = sa.engine.make_url(settings.connection_url("grading_warehouse"))
    assert (url.drivername, url.username, url.password, url.host, url.port, url.database) == \
        ("postgresql+psycopg", "grading", password, "db", 5432, "grading")


@pytest.mark.parametrize(("value", "problem"), [
    ("{not json", "cannot be read: Expecting property name"),
    ("postgres://u:test-pw@db:port/grading", "cannot be read: Port could not be cast"),
    (json.dumps({"conn_type": "postgres", "host": "db", "extra": "{oops"}), "extra is not valid JSON"),
    ("db.example.com:5432", "not a connection URL"),
])
def test_a_configured_connection_that_cannot_be_read_is_an_error_never_the_local_file(
        monkeypatch: pytest.MonkeyPatch, grading_home: Path, value: str, problem: str) -> None:
    """Before, any parse error fell back silently to .grading/warehouse.duckdb and graded there."""
    from grading.errors import ConnectionConfigError, DataError

    monkeypatch.setenv(WAREHOUSE, value)
    with pytest.raises(ConnectionConfigError, match=f"connection 'grading_warehouse'.*{problem}") as caught:
        settings.connection_url("grading_warehouse", ask_airflow=True)
    assert isinstance(caught.value, DataError)  # the DAG task fails at once, the CLI exits 1
    assert "test-pw" not in str(caught.value)
    assert not (grading_home / "warehouse.duckdb").exists()


def test_connection_extras_become_query_parameters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(WAREHOUSE, "postgres://u:test-pw@db/grading?sslmode=require")
    assert settings.connection_url("grading_warehouse").endswith("/grading?sslmode=require")
    monkeypatch.setenv(WAREHOUSE, "duckdb:////tmp/grading/warehouse.duckdb")
    assert settings.connection_url("grading_warehouse") == "duckdb:////tmp/grading/warehouse.duckdb"
