"""Where things are: the project's include/ folder, the local home, and the two connections.

Connections follow Airflow's conventions so one setting serves the DAG and the CLI:
``AIRFLOW_CONN_GRADING_SOURCE`` / ``AIRFLOW_CONN_GRADING_WAREHOUSE`` hold a URL. Inside an
Airflow task a connection defined in the metadata database or a secrets backend is found
too. When neither is set, both fall back to embedded files under ``GRADING_HOME``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from sqlalchemy.engine import URL

from grading.errors import ConnectionConfigError

SOURCE_CONN_ID = "grading_source"
WAREHOUSE_CONN_ID = "grading_warehouse"
# The Airflow asset customer_grading updates when it publishes a period (quarterly_review
# listens to it); kept here so both DAG files name the same asset.
PUBLISHED_ASSET_NAME = "grading_published_period"
PUBLISHED_ASSET_URI = "file:///grading/marts/customer_tier_snapshot"

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# Airflow connection URIs name PostgreSQL "postgres"; SQLAlchemy needs a dialect+driver.
_SCHEME_ALIASES = {
    "postgres": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
}


def include_dir() -> Path:
    """The folder holding sql/, rules/, expectations/ and mappings/.

    GRADING_INCLUDE_DIR when set; else, in an installed wheel, the copy shipped inside the package
    (grading/_include, see pyproject.toml); else the repository's include/ (a checkout, the editable
    install, Airflow's plugins folder), where no packaged copy exists.
    """
    if os.environ.get("GRADING_INCLUDE_DIR"):
        return Path(os.environ["GRADING_INCLUDE_DIR"])
    from importlib.resources import files

    packaged = files("grading") / "_include"
    if isinstance(packaged, Path) and packaged.is_dir():
        return packaged
    return PROJECT_ROOT / "include"


def _default_home() -> Path:
    """``.grading`` in the checkout; for an installed wheel (no checkout around the package), in the
    current directory, never inside site-packages."""
    return PROJECT_ROOT / ".grading" if (PROJECT_ROOT / "plugins" / "grading").is_dir() else Path.cwd() / ".grading"


def grading_home() -> Path:
    """The local folder for embedded databases, demo data and reports (GRADING_HOME)."""
    home = Path(os.environ.get("GRADING_HOME") or _default_home())
    home.mkdir(parents=True, exist_ok=True)
    return home


CRM_CONN_ID = "grading_crm"  # the CRM export's webhook (an http/https connection); no connection, no webhook
EXPORT_TARGETS = ("files", "webhook")


def export_dir() -> Path:
    """Where the CRM export's file target writes a folder per period (GRADING_EXPORT_DIR)."""
    return Path(os.environ.get("GRADING_EXPORT_DIR") or grading_home() / "exports")


def export_targets() -> tuple[str, ...]:
    """The CRM export's targets (GRADING_EXPORT_TARGETS, comma-separated; ``off`` for none).

    Default ``files,webhook``: the webhook target takes part only where the grading_crm
    connection is defined.
    """
    value = os.environ.get("GRADING_EXPORT_TARGETS", ",".join(EXPORT_TARGETS)).strip().lower()
    if value in ("off", "none", ""):
        return ()
    names = tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
    unknown = [name for name in names if name not in EXPORT_TARGETS]
    if unknown:
        raise ValueError(f"GRADING_EXPORT_TARGETS names {', '.join(unknown)}; use {', '.join(EXPORT_TARGETS)} or off")
    return names


def default_url(conn_id: str) -> str:
    """The embedded default: a SQLite source file and a DuckDB warehouse file."""
    if conn_id == SOURCE_CONN_ID:
        return f"sqlite:///{grading_home() / 'source.sqlite'}"
    if conn_id == WAREHOUSE_CONN_ID:
        return f"duckdb:///{grading_home() / 'warehouse.duckdb'}"
    raise ValueError(f"unknown connection id {conn_id!r}")


def to_sqlalchemy_url(uri: str, conn_id: str = "grading") -> str:
    """Turn an Airflow connection URI into a SQLAlchemy URL, parsed as Airflow parses it."""
    if "://" not in uri:
        raise ConnectionConfigError(f"connection {conn_id!r}: not a connection URL: {mask_urls(uri)!r}")
    from airflow.sdk import Connection

    return _url_of(Connection.from_uri(uri, conn_id=conn_id))


def _url_of(conn) -> str:
    """The SQLAlchemy URL of an Airflow connection; URL.create quotes every part of it.

    ``extra.sqlalchemy_url`` wins when set. Other extras (``sslmode``...) become query
    parameters, as they were in the URI's query string.
    """
    try:
        extra = json.loads(conn.extra) if conn.extra else {}
    except ValueError as exc:  # Airflow's extra_dejson would log it and carry on with no extras
        raise ConnectionConfigError(f"connection {conn.conn_id!r}: extra is not valid JSON ({exc})") from None
    if extra.get("sqlalchemy_url"):
        return str(extra["sqlalchemy_url"])
    if not conn.conn_type:
        raise ConnectionConfigError(f"connection {conn.conn_id!r} has neither uri, conn_type nor extra.sqlalchemy_url")
    base, plus, driver = conn.conn_type.partition("+")
    drivername = f"{base}+{driver}" if plus else _SCHEME_ALIASES.get(base, base)
    query = {key: str(value) for key, value in extra.items() if key != "__extra__" and not isinstance(value, dict)}
    url = URL.create(drivername, username=conn.login or None, password=conn.password or None,
                     host=conn.host or None, port=conn.port or None, database=conn.schema or None, query=query)
    return url.render_as_string(hide_password=False)


def _from_environment(conn_id: str) -> str | None:
    """``AIRFLOW_CONN_<ID>`` (a URI or JSON) parsed as Airflow's environment secrets backend does.

    Airflow's own lookup would log a malformed value at debug level and report the
    connection as missing, which here would mean grading into the local DuckDB file: a
    configured connection that cannot be read is an error naming it instead.
    """
    variable = f"AIRFLOW_CONN_{conn_id.upper()}"
    value = os.environ.get(variable, "").strip()
    if not value:
        return None
    from airflow.sdk import Connection

    try:
        if value.startswith("{"):
            conn = Connection.from_json(value, conn_id=conn_id)
        elif "://" in value:
            conn = Connection.from_uri(value, conn_id=conn_id)
        else:
            raise ConnectionConfigError(f"connection {conn_id!r} ({variable}): not a connection URL or JSON: "
                                        f"{mask_urls(value)!r}")
        return _url_of(conn)
    except ConnectionConfigError:
        raise
    except Exception as exc:  # JSON, ports, unknown fields, bad URIs: all mean the setting is wrong
        raise ConnectionConfigError(
            f"connection {conn_id!r} ({variable}) cannot be read: {mask_urls(str(exc))}") from None


def airflow_connection(conn_id: str):
    """The Airflow connection ``conn_id`` (environment, secrets backend or metadata DB), or None
    where Airflow knows none; other failures are raised."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return Connection.get(conn_id)
    except AirflowNotFoundException:
        return None


def _from_airflow(conn_id: str) -> str | None:
    """A connection stored in Airflow (metadata DB, secrets backend), asked from inside a task.

    A connection Airflow does not know is None (the embedded default then serves); any other
    failure is raised, naming the connection, rather than grading somewhere else.
    """
    try:
        conn = airflow_connection(conn_id)
    except Exception as exc:
        raise RuntimeError(f"connection {conn_id!r}: Airflow could not be asked for it: {mask_urls(str(exc))}") \
            from exc
    return None if conn is None else _url_of(conn)


def connection_url(conn_id: str, *, ask_airflow: bool = False) -> str:
    """The SQLAlchemy URL for ``conn_id``: environment, then Airflow (in tasks), then the embedded default.

    Only a connection defined nowhere falls back to the embedded file; one that is defined
    but cannot be read raises ConnectionConfigError.
    """
    return (
        _from_environment(conn_id)
        or (_from_airflow(conn_id) if ask_airflow else None)
        or default_url(conn_id)
    )


def source_mapping() -> Path | None:
    """The source mapping file named by GRADING_SOURCE_MAPPING; None reads the canonical schema.

    A bare name (``superstore``) means ``include/mappings/<name>.yaml``; anything else is a
    path to a mapping file.
    """
    value = os.environ.get("GRADING_SOURCE_MAPPING", "").strip()
    if not value:
        return None
    path = Path(value).expanduser()
    if len(path.parts) == 1 and not path.suffix:
        return include_dir() / "mappings" / f"{value}.yaml"
    return path


# scheme://user:password@host: the password part of a URL in any text
_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)(?P<password>[^@\s/]*)(?=@)")


def mask_urls(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ***, for messages and logs."""
    return _URL_PASSWORD.sub(lambda m: f"{m.group('head')}***", text)


DEV_PSEUDONYM_KEY = "grading-dev-key-change-me"
# Where the development key may be used: the demo, development and the tests (GRADING_ENV).
DEV_ENVIRONMENTS = ("demo", "dev", "test")


def pseudonym_key() -> bytes:
    """The secret key of customer pseudonyms and of the churn model's signature (GRADING_PSEUDONYM_KEY).

    The development key is public - in this repository - so anyone could compute every
    published customer_key from source ids (1,500 keys in 0.3 s) or sign a model pickle with
    it. It is used only where GRADING_ENV says demo, dev or test, or GRADING_ALLOW_DEV_KEY=1
    (``python -m grading --allow-dev-key``); anywhere else a missing key is an error.
    """
    value = os.environ.get("GRADING_PSEUDONYM_KEY", "").strip()
    if value and value != DEV_PSEUDONYM_KEY:
        return value.encode()
    if os.environ.get("GRADING_ENV", "").strip().lower() in DEV_ENVIRONMENTS \
            or os.environ.get("GRADING_ALLOW_DEV_KEY", "").strip() == "1":
        return DEV_PSEUDONYM_KEY.encode()
    raise ValueError(
        "GRADING_PSEUDONYM_KEY is " + ("the public development key" if value else "not set")
        + ": published customer keys made with it can be traced back to source ids by anyone. Set a secret key "
        "(e.g. openssl rand -hex 32) in GRADING_PSEUDONYM_KEY - the same one for every run of a warehouse - or, "
        "for the demo only, GRADING_ENV=demo (python -m grading --allow-dev-key).")


def _positive_int(name: str, default: int) -> int:
    """An integer setting from the environment; a clear error beats a silent fallback on a typo."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, not {value!r}") from None
    if number < 0:
        raise ValueError(f"{name} must be 0 or more, not {number}")
    return number


def churn_model_max_age_days() -> int:
    """How old (in days of as-of date) a stored churn model may be and still score a run
    (GRADING_CHURN_MODEL_MAX_AGE_DAYS, default 28; 0 retrains on every run).

    Training is the dearest part of the churn stage; a model a few weeks old ranks customers
    as well as a fresh one, so daily runs reuse it and only a run finding none young enough
    retrains.
    """
    return _positive_int("GRADING_CHURN_MODEL_MAX_AGE_DAYS", 28)


def potential_max_age_days() -> int:
    """How old (in days of as-of date) the customer-potential fit a run scored with may be and
    still score a later run without judging and fitting anew (GRADING_POTENTIAL_MAX_AGE_DAYS,
    default 28; 0 judges and fits on every run). The two summaries of a year of orders and the
    fits are most of the churn stage's time on a daily run."""
    return _positive_int("GRADING_POTENTIAL_MAX_AGE_DAYS", 28)


def churn_max_train_rows() -> int:
    """At most this many customers train (and judge) the churn model, chosen by a hash of the
    customer id (GRADING_CHURN_MAX_TRAIN_ROWS, default 200,000; 0 for no cap).

    Fit time grows with rows while the model's quality stops improving long before a million
    customers; a hash sample keeps the same customers on every rerun.
    """
    return _positive_int("GRADING_CHURN_MAX_TRAIN_ROWS", 200_000)


DUCKDB_SIZE = re.compile(r"^\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$", re.IGNORECASE)


POSTGRES_SIZE = re.compile(r"^\d+(kB|MB|GB)$")


def postgres_work_mem() -> str:
    """The ``work_mem`` of the pipeline's PostgreSQL sessions (GRADING_PG_WORK_MEM, default
    ``64MB``; PostgreSQL's own default is 4MB).

    Each sort or hash of a query may use this much before it spills to disk. At 4MB the
    churn stage's read of the customers who bought in a quarter (a DISTINCT over 2.3M orders
    at a million customers, read through COPY) spilled its hash table and ran for more than
    eight minutes; at 16MB or more, 1.8 s. The server's total is about this times the sorts
    and hashes running at once, so size it with the server's memory in mind.
    """
    value = os.environ.get("GRADING_PG_WORK_MEM", "").strip() or "64MB"
    if not POSTGRES_SIZE.match(value):
        raise ValueError(f"GRADING_PG_WORK_MEM must be a size such as 64MB or 1GB, not {value!r}")
    return value


def duckdb_memory_limit() -> str:
    """How much memory an embedded DuckDB warehouse may hold per worker process
    (GRADING_DUCKDB_MEMORY_LIMIT, default ``1GiB``; DuckDB's own default is 80 % of RAM).

    DuckDB keeps what it reads and sorts in its buffer pool up to the limit, so with its own
    default a worker's size follows the warehouse's; with a limit it evicts and spills a large
    join or sort to ``<warehouse>.duckdb.tmp``. Not everything spills: the feature query at a
    million customers needs 1 GiB (it failed with 768 MiB), so that is the default. (Rows
    appended from Python by many statements of one open transaction are not bounded by it:
    see grading.frames.append_batches.)
    """
    value = os.environ.get("GRADING_DUCKDB_MEMORY_LIMIT", "").strip() or "1GiB"
    if not DUCKDB_SIZE.match(value):
        raise ValueError(f"GRADING_DUCKDB_MEMORY_LIMIT must be a size such as 1GiB or 800MB, not {value!r}")
    return value


def validate_part_rows() -> int:
    """On the embedded warehouse, a GX expectation with no SQL form (none of the shipped suites
    has one) checks a batch in parts of about this many rows (GRADING_VALIDATE_PART_ROWS,
    default 1,000,000; 0 for one part however large).

    GX's pandas engine copies a frame several times while checking it; parts bound the
    worker's memory (one 20M-order frame peaked at 7 GiB) at the cost of sorting the batch by
    part once and running GX once per part.
    """
    return _positive_int("GRADING_VALIDATE_PART_ROWS", 1_000_000) or 2**62


def validate_sample_rows() -> int:
    """How many rows of each table's batch Great Expectations checks
    besides every failing check's first offending rows (GRADING_VALIDATE_SAMPLE_ROWS, default
    10,000); the verdict is counted in SQL over every row (grading.validation.aggregates).
    """
    return _positive_int("GRADING_VALIDATE_SAMPLE_ROWS", 10_000)


def uplift_target_effect() -> float:
    """The uplift (return-rate points) a control group should be large enough to detect
    (GRADING_UPLIFT_TARGET_EFFECT, default 0.05): the quarterly review reports, per list, the
    control group that needs and whether it had it."""
    value = os.environ.get("GRADING_UPLIFT_TARGET_EFFECT", "").strip()
    try:
        effect = float(value) if value else 0.05
    except ValueError:
        raise ValueError(f"GRADING_UPLIFT_TARGET_EFFECT must be a share such as 0.05, not {value!r}") from None
    if not 0 < effect < 1:
        raise ValueError(f"GRADING_UPLIFT_TARGET_EFFECT must be between 0 and 1 (0.05 = 5 points), not {effect}")
    return effect


def basket_settings() -> dict[str, object]:
    """How the quarterly basket analysis (marts.tier_basket_rules) counts, from the environment.

    GRADING_BASKET_ITEM: ``category`` (a line's category, its product where it has none) or
    ``product``; GRADING_BASKET_MIN_SUPPORT: the share of a tier's baskets a pair must be in
    (default 0.01); GRADING_BASKET_TOP_ITEMS: the most-bought items per tier that pairs are
    formed from (default 100), which bounds the work at any catalogue size - pairs of items
    ranked below it are not counted even when they reach the minimum support;
    GRADING_BASKET_MIN_PAIR_BASKETS: a rule needs at least this many baskets (default 5), so a
    small tier's few orders do not make rules of anecdotes.
    """
    item = os.environ.get("GRADING_BASKET_ITEM", "").strip() or "category"
    if item not in ("category", "product"):
        raise ValueError(f"GRADING_BASKET_ITEM must be category or product, not {item!r}")
    value = os.environ.get("GRADING_BASKET_MIN_SUPPORT", "").strip()
    try:
        support = float(value) if value else 0.01
    except ValueError:
        raise ValueError(f"GRADING_BASKET_MIN_SUPPORT must be a share such as 0.01, not {value!r}") from None
    if not 0 < support <= 1:
        raise ValueError(f"GRADING_BASKET_MIN_SUPPORT must be above 0 and at most 1 (0.01 = 1 %), not {support}")
    return {"item_level": item, "min_support": support,
            "top_items": _positive_int("GRADING_BASKET_TOP_ITEMS", 100),
            "min_pair_baskets": _positive_int("GRADING_BASKET_MIN_PAIR_BASKETS", 5),
            "max_rules": 50}
