"""Which rows of a SQL source fall in an extraction window, compared as instants.

A window is ``[start, cutoff)`` in naive UTC (start None: all history). Comparing a source's
event time with those bounds is right only where the source stores a timestamp:

- a timestamp (or date) column: the source database compares it with typed bounds, in a
  session whose time zone is UTC (``utc_sessions``), so zoned columns compare as instants;
- SQLite, where every value is what was written (text, a number, anything): a text
  comparison with the bound drops rows silently (``'2024-05-28 00:00:00'`` sorts before the
  bound ``'2024-05-28 00:00:00.000000'``; ``15/11/2024``, an offset or an epoch number never
  sorts where its instant is). The column is normalised by SQLite's own date functions
  (offsets applied, any precision, date-only values at midnight) and compared with a margin
  of a day, then cut exactly once converted;
- a text column on any other database: read whole and cut once converted.

Rows whose event time is missing or denotes no instant are always read too, never filtered
away: the conversion then stops the extraction naming the table, column, count and keys
(grading.convert), or a source mapping counts them as rejected. Nothing is dropped silently.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

# Normalised SQLite values can be a millisecond off (SQLite keeps milliseconds): the margin
# makes the SQL filter wide, the cut after conversion makes it exact.
MARGIN = timedelta(days=1)
_SQLITE_INSTANT = "strftime('%Y-%m-%d %H:%M:%f', {column})"
_SQLITE_BOUND = "%Y-%m-%d %H:%M:%S.000"
_SQLITE_DATED = "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*"


def source_columns(engine: Engine, table: str, schema: str | None = None) -> dict[str, str]:
    """The columns of a source table with their declared types (upper case); {} if it has none."""
    with engine.connect() as conn:
        if engine.dialect.name == "duckdb":  # duckdb_engine's inspector cannot list columns
            rows = conn.execute(sa.text(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = :t "
                "AND table_schema = COALESCE(:s, current_schema()) ORDER BY ordinal_position"),
                {"t": table, "s": schema}).all()
            return {name: kind.upper() for name, kind in rows}
        inspector = sa.inspect(conn)
        if not inspector.has_table(table, schema=schema):
            return {}
        return {c["name"]: str(c["type"]).upper() for c in inspector.get_columns(table, schema=schema)}


def is_typed(engine: Engine, declared: str) -> bool:
    """Whether a column declared ``declared`` holds timestamps or dates (SQLite's never do:
    whatever its declaration, a SQLite column holds what was written)."""
    return engine.dialect.name != "sqlite" and declared.startswith(("TIMESTAMP", "DATE"))


def where_in_window(engine: Engine, event: sa.ColumnClause, start: datetime | None, cutoff: datetime,
                    typed: bool) -> tuple[sa.ColumnElement | None, bool]:
    """The WHERE clause selecting the window's rows plus every row whose time cannot be placed,
    and whether the rows must still be cut exactly after conversion (None: read every row)."""
    if typed:
        inside = event < sa.bindparam("cutoff", cutoff, type_=sa.DateTime())
        if start is not None:
            inside = sa.and_(event >= sa.bindparam("start", start, type_=sa.DateTime()), inside)
        return sa.or_(inside, event.is_(None)), False
    if engine.dialect.name != "sqlite":
        return None, True
    column = event.compile(dialect=engine.dialect)
    instant = sa.literal_column(_SQLITE_INSTANT.format(column=column))
    inside = instant < sa.bindparam("cutoff", (cutoff + MARGIN).strftime(_SQLITE_BOUND))
    if start is not None:
        inside = sa.and_(instant >= sa.bindparam("start", (start - MARGIN).strftime(_SQLITE_BOUND)), inside)
    # SQLite's date functions also read a number as a Julian day and 'now' as the current time:
    # only a text starting with a date is placed by them, anything else is read and judged by
    # grading.convert
    value = sa.literal_column(str(column))
    dated = sa.and_(sa.func.typeof(value) == "text", value.op("GLOB")(sa.bindparam("dated", _SQLITE_DATED)))
    return sa.or_(inside, instant.is_(None), sa.not_(dated)), True
