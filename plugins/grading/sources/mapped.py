"""Reading a mapped source: the canonical rows of a table and window, from the files or
tables a mapping names, joined, filtered, converted, grouped and cut to the window exactly.
"""

from __future__ import annotations

import logging
import operator
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import reduce

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from grading import source_window
from grading.contract import SOURCE_TABLES
from grading.convert import SourceDataError
from grading.sources.files import FileStore, check_columns, read_file
from grading.sources.model import Feed, Join, ReadOptions, SourceMapping
from grading.sources.values import Rows, as_numbers, as_text, canonical, cents, row_label, where_mask

log = logging.getLogger(__name__)

# Rows of files and SQL windows are read with this margin around the interval, then cut
# exactly after their times are converted to UTC (a local day may start up to 14 h off).
_MARGIN = timedelta(days=1)
_END_OF_TIME = datetime(9000, 1, 1)
_DTYPES = {"timestamp": "datetime64[us]", "amount": "float64", "integer": "Int64", "flag": "boolean",
           "text": "string"}


@dataclass
class MappedRows:
    """A canonical frame for one table and window, with the rows the mapping had to reject."""

    frame: pd.DataFrame
    rejected: Counter = field(default_factory=Counter)  # reason -> rows (within the window)
    notes: list[str] = field(default_factory=list)


class MappedSource:
    """Reads the tables of one mapping: a file drop, or a SQL source through ``engine``.

    One instance serves one extraction: each file is parsed once (the columns every feed
    needs from it) and shared by the tables that read it, e.g. orders and the customers
    derived from the same order lines.
    """

    def __init__(self, mapping: SourceMapping, engine: Engine | None = None):
        self.mapping = mapping
        self.engine = engine
        if mapping.kind == "sql" and engine is None:
            raise ValueError(f"{mapping.path}: a SQL mapping needs the source connection")
        self.store = FileStore(mapping.location, mapping.connection) if mapping.kind == "files" else None
        self.wanted = mapping.sources()
        self._cache: dict[tuple[str, str, ReadOptions], pd.DataFrame] = {}
        self._lines = {}
        for feeds in mapping.feeds.values():
            for feed in feeds:
                for column in feed.columns.values():
                    for name in column.expr.columns():
                        self._lines.setdefault(name, f"{mapping.path.name}:{column.line}")
                for join in feed.joins:
                    for name in (join.left, join.right, *join.provides):
                        self._lines.setdefault(name, f"{mapping.path.name}:{join.line}")

    # -- reading ----------------------------------------------------------------------

    def _read(self, source: str, options: ReadOptions, window: tuple[datetime | None, datetime] | None = None,
              pushdown: str | None = None) -> pd.DataFrame:
        """The wanted columns of ``source``; with ``window``, only files (or rows) that can hold it."""
        columns = sorted(self.wanted[(source, options)])
        if self.store is not None:
            files = self.store.files(source)
            if not files:
                raise SourceDataError(f"no file matches {source!r} under {self.store.location} "
                                      f"({self.mapping.path.name})")
            if window is not None:
                start, cutoff = window
                files = [f for f in files if f.period is None or (
                    f.period[0] < pd.Timestamp(cutoff) + _MARGIN
                    and (start is None or f.period[1] > pd.Timestamp(start) - _MARGIN))]
            frames = []
            for file in files:
                key = (source, file.name, options)
                if key not in self._cache:
                    self._cache[key] = read_file(self.store, file, columns, options, self._lines)
                frames.append(self._cache[key])
            if not frames:
                return pd.DataFrame({c: pd.Series(dtype="string") for c in [*columns, "__file"]}
                                    | {"__row": pd.Series(dtype="int64")})
            return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)
        if pushdown:
            return self._read_sql(source, columns, window, pushdown)
        key = (source, "", options)  # a whole table (a lookup, or an event time that needs parsing)
        if key not in self._cache:
            self._cache[key] = self._read_sql(source, columns, None, None)
        return self._cache[key]

    def _read_sql(self, table: str, columns: list[str], window: tuple[datetime | None, datetime] | None,
                  event_column: str | None) -> pd.DataFrame:
        schema, _, name = table.rpartition(".")
        declared = source_window.source_columns(self.engine, name, schema or None)
        if not declared:
            raise SourceDataError(f"the source database has no table {table!r} ({self.mapping.path.name})")
        check_columns(f"table {table}", list(declared), columns, self._lines)
        query = sa.select(*(sa.column(c) for c in columns)).select_from(sa.table(name, schema=schema or None))
        if window is not None and event_column is not None:
            # with a margin, cut exactly once converted (_feed_rows); rows whose time cannot be
            # placed are read too, so they are counted as rejected instead of vanishing
            start, cutoff = window
            typed = source_window.is_typed(self.engine, declared.get(event_column, ""))
            where, _ = source_window.where_in_window(
                self.engine, sa.column(event_column), None if start is None else start - _MARGIN, cutoff + _MARGIN,
                typed)
            if where is not None:
                query = query.where(where)
        with self.engine.connect() as conn:
            frame = pd.read_sql(query, conn)
        frame["__file"] = f"table {table}"
        frame["__row"] = np.arange(1, len(frame) + 1, dtype="int64")
        return frame

    def _lookup(self, feed: Feed, join: Join) -> pd.DataFrame:
        right = self._read(join.source, feed.read)
        rows = Rows(right, self.mapping, feed)
        frame = right[[join.right, *join.take]].copy()
        frame[join.right] = as_text(frame[join.right])
        frame = frame[frame[join.right].notna()]
        if join.sum:
            sums = pd.DataFrame({c: as_numbers(rows, right[c], f"column {c!r} of {join.source}") for c in join.sum})
            sums[join.right] = frame[join.right]
            added = sums.groupby(join.right, sort=False).sum(min_count=1)
            firsts = frame.groupby(join.right, sort=False)[list(join.take)].first() if join.take else None
            return added if firsts is None else firsts.join(added)
        duplicated = frame[join.right].duplicated(keep=False)
        if duplicated.any():  # named by row, not by value: a join key may identify a person
            raise SourceDataError(
                f"{join.source}: {int(duplicated.sum())} rows share a value of {join.right!r} (the first: "
                f"{row_label(right, duplicated)}), "
                f"so the lookup of {feed.table} ({self.mapping.path.name}:{join.line}) is ambiguous; "
                "use sum: for columns to add up per key, or join on a unique column")
        return frame.set_index(join.right)

    # -- mapping ----------------------------------------------------------------------

    def _feed_rows(self, feed: Feed, start: datetime | None, cutoff: datetime) -> MappedRows:
        """Map one feed's rows, group its lines, and keep what falls in [start, cutoff)."""
        spec = feed.spec
        event_map = feed.columns[spec.event_time]
        pushdown = event_map.expr.column if (self.mapping.kind == "sql" and event_map.expr.op == "column"
                                             and event_map.format is None) else None
        frame = self._read(feed.source, feed.read, (start, cutoff), pushdown)
        frame = frame[[c for c in frame.columns if c in feed.main_columns() or c.startswith("__")]]
        for join in feed.joins:
            looked_up = self._lookup(feed, join)
            clash = [c for c in looked_up.columns if c in frame.columns]
            if clash:
                raise SourceDataError(f"{join.source}: column {clash[0]!r} is already in {feed.source}; "
                                      f"a join adds new columns only ({self.mapping.path.name}:{join.line})")
            keyed = frame.assign(__key=as_text(frame[join.left]))
            frame = keyed.merge(looked_up, how="left", left_on="__key", right_index=True).drop(columns="__key")
        frame = frame.reset_index(drop=True)
        rows = Rows(frame, self.mapping, feed)
        if feed.where:
            keep = reduce(operator.and_, (where_mask(rows, c) for c in feed.where))
            frame = frame[keep].reset_index(drop=True)
            rows = Rows(frame, self.mapping, feed)
        out = pd.DataFrame({name: canonical(rows, column) for name, column in feed.columns.items()},
                           index=frame.index)
        out["__seq"] = np.arange(len(out))
        result = MappedRows(out)

        # Rows that cannot be keyed or placed are rejected and counted, never guessed at.
        event = out[spec.event_time]
        in_window = event.isna() | ((event < cutoff) & (event >= start if start is not None else True))
        keep = pd.Series(True, index=out.index)
        for name in spec.not_null:
            missing = out[name].isna() & keep
            if missing.any():
                counted = int((missing & in_window).sum())
                if counted:
                    result.rejected[f"missing {name}"] += counted
                    log.warning("%s: rejected %d row(s) of %s without %s (first: %s)", feed.table, counted,
                                feed.source, name, row_label(frame, missing & in_window))
                keep &= ~missing
        out = out[keep]

        if feed.group_by:
            out = self._group(feed, out, result.notes)
        for name, column in feed.columns.items():
            if column.kind == "amount":
                values = out[name].abs() if column.absolute else out[name]
                out[name] = cents(values)
        event = out[spec.event_time]
        window = event < cutoff
        if start is not None:
            window &= event >= start
        result.frame = out[window].drop(columns="__seq")
        return result

    def _group(self, feed: Feed, out: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
        """Lines to one row per group_by value: amounts add up, the event time is the earliest,
        other columns come from the earliest line (ties: the order of the source)."""
        spec, key = feed.spec, feed.group_by
        ordered = out.sort_values([spec.event_time, "__seq"], kind="stable")
        grouped = ordered.groupby(key, sort=False)
        how = {}
        for name, column in feed.columns.items():
            if name == key:
                continue
            default = "sum" if column.kind == "amount" else "min" if name == spec.event_time else "first"
            how[name] = column.aggregate or default
        plain = {name: (name, agg) for name, agg in how.items() if agg != "sum"}
        result = grouped.agg(**plain, __seq=("__seq", "min")) if plain else grouped.agg(__seq=("__seq", "min"))
        for name, agg in how.items():
            if agg == "sum":
                result[name] = grouped[name].sum(min_count=1)
        if "customer_id" in how and how["customer_id"] == "first":
            several = grouped["customer_id"].nunique()
            several = several[several > 1]
            if len(several):
                note = (f"{feed.table}: {len(several)} {key} value(s) have lines of several customers "
                        f"(e.g. {several.index[0]!r}); each was given the customer of its first line")
                notes.append(note)
                log.warning(note)
        result = result.reset_index()
        return result[[*feed.columns, "__seq"]]

    def has_rows(self, table: str) -> bool:
        """Whether the source holds any row for ``table`` at all (all time; False if it is not mapped).

        For checks that must tell a quiet period from a broken feed; reads the whole source,
        so call it only when a period came out empty.
        """
        return table in self.mapping.feeds and not self.read_table(table, None, _END_OF_TIME).frame.empty

    def read_table(self, table: str, start: datetime | None, cutoff: datetime,
                   known_customers: Callable[[], set[str]] | None = None) -> MappedRows:
        """The canonical rows of ``table`` whose event time falls in [start, cutoff).

        A table the mapping does not feed has no rows. Customers derived by grouping order
        lines are first seen at their earliest line; ``known_customers`` lists those raw
        already holds from before the window, so a window that reads only its own period's
        files never re-creates them.
        """
        spec = SOURCE_TABLES[table]
        feeds = self.mapping.feeds.get(table, ())
        combined = MappedRows(pd.DataFrame({c: pd.Series(dtype=_DTYPES[spec.kind(c)]) for c in spec.columns}))
        parts = []
        for feed in feeds:
            mapped = self._feed_rows(feed, start, cutoff)
            combined.rejected.update(mapped.rejected)
            combined.notes.extend(mapped.notes)
            parts.append(mapped.frame)
        if parts:
            frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0].reset_index(drop=True)
            for column in spec.columns:
                if column not in frame.columns:
                    frame[column] = pd.Series(index=frame.index, dtype=_DTYPES[spec.kind(column)])
            frame = frame[list(spec.columns)]
            if table == "customers" and known_customers is not None and any(f.group_by for f in feeds) \
                    and start is not None:
                frame = frame[~frame["customer_id"].isin(known_customers())]
            combined.frame = frame.astype({c: _DTYPES[spec.kind(c)] for c in spec.columns})
        return combined
