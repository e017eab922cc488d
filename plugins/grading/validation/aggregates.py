"""Aggregates: a suite's row checks counted in one SQL pass over the batch, and the GX sample.

Great Expectations checked a batch either by reading every row into pandas (DuckDB, which
GX has no data source for: 49 of the pipeline's 76 s of validation at a million customers)
or with one query per metric in the database (PostgreSQL: 118 s), against 5 s for the same
checks as aggregate queries. So each GX expectation with a SQL form (the row-wise ones of
grading.validation.predicates and uniqueness) is counted over the whole batch in one
aggregate query per table, which gives the verdict, and Great Expectations itself checks a
bounded subset of the batch: the first offending rows of each failing check plus a hash
sample (GRADING_VALIDATE_SAMPLE_ROWS). The same counts are then taken over that subset, and
GX and SQL must agree check by check, row count for row count: a translation that drifted
from what GX means would otherwise judge, and quarantine, the wrong rows, so a disagreement
fails the stage. Data Docs show GX's result on the subset with the batch's counts.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from grading.errors import DataError
from grading.validation.predicates import condition, predicate
from grading.validation.results import CheckResult
from grading.validation.suites import ROW_LEVEL_GX, Check, Suite

UNIQUE = "expect_column_values_to_be_unique"
FAILING_ROWS = 20  # offending rows per failing check put in front of GX (its partial lists show 20)


class ChecksDisagree(DataError, RuntimeError):
    """GX and the SQL form of its expectation counted different rows on the same subset."""


@dataclass(frozen=True)
class Count:
    """One check over a set of rows: the rows, those it judges (its column present, its
    row_condition true) and those it rejects, counted as GX counts them."""

    rows: int
    judged: int
    unexpected: int

    def success(self, mostly: float | None = None) -> bool:
        """GX's verdict: no row rejected, or at least ``mostly`` (a check's kwarg) of the judged rows accepted."""
        if mostly is None:
            return self.unexpected == 0
        return self.judged == 0 or (self.judged - self.unexpected) / self.judged >= float(mostly)


def counted(check: Check) -> bool:
    """Whether the SQL pass can judge this GX expectation over the whole batch."""
    if not check.by_gx:
        return False
    if check.type == UNIQUE:
        return not check.kwargs.get("row_condition")
    return check.type in ROW_LEVEL_GX


def _judged(suite: Suite, check: Check, params: dict) -> str:
    """SQL counting the rows GX judges for ``check`` (alias ``r``)."""
    if check.type == "expect_column_values_to_not_be_null":
        present = "TRUE"
    elif check.type == "expect_column_pair_values_a_to_be_greater_than_b":
        # GX's default ignore_row_if="both_values_are_missing"
        present = f"(r.{check.kwargs['column_A']} IS NOT NULL OR r.{check.kwargs['column_B']} IS NOT NULL)"
    else:
        present = f"r.{check.column} IS NOT NULL"
    selected = condition(suite, check, params)
    return f"COUNT(CASE WHEN {present}{f' AND ({selected})' if selected else ''} THEN 1 END)"


def batch_relation(conn: Connection, columns: str, rows_from: str) -> str:
    """The batch's rows (``:batch``) as the relation this module counts over: ``columns`` and
    ``rows_from`` (alias ``r``), with ``gx_row``, the row's own number in its table."""
    row = "r.ctid" if conn.dialect.name == "postgresql" else "r.rowid"
    return f"(SELECT {row} AS gx_row, {columns} {rows_from} WHERE r.extracted_at = :batch)"


def _duplicated(relation: str, column: str, limit: str = "") -> str:
    """SQL of the values of ``column`` more than one row of ``relation`` holds, with their rows (``n``)."""
    return (f"SELECT d.{column}, COUNT(*) AS n FROM {relation} AS d WHERE d.{column} IS NOT NULL "  # noqa: S608
            f"GROUP BY d.{column} HAVING COUNT(*) > 1{limit}")


def _duplicated_rows(conn: Connection, relation: str, column: str, params: Mapping[str, Any]) -> int:
    """Rows whose value of ``column`` another row shares: GX's unexpected count for uniqueness."""
    return int(conn.execute(sa.text(f"SELECT COALESCE(SUM(n), 0) FROM ({_duplicated(relation, column)}) AS u"),  # noqa: S608
                            params).scalar_one())


def count(conn: Connection, suite: Suite, checks: Iterable[Check], relation: str, params: Mapping[str, Any],
          parameters: Mapping[str, Any]) -> dict[int, Count]:
    """Every check counted over ``relation`` (a table or a parenthesised query) in one pass, by check index.

    ``params`` binds the relation's own parameters, ``parameters`` the suites' $PARAMETER bounds.
    A uniqueness check found failing costs one more grouped query, for GX's count of the rows
    involved (the pass counts only the surplus).
    """
    checks = list(checks)
    bound: dict[str, Any] = dict(params)
    columns = ["COUNT(*)"]
    for check in checks:
        if check.type == UNIQUE:
            columns += [f"COUNT(r.{check.column})", f"COUNT(r.{check.column}) - COUNT(DISTINCT r.{check.column})"]
            continue
        rejected, values = predicate(suite, check, parameters)
        bound.update(values)
        columns += [_judged(suite, check, bound), f"COUNT(CASE WHEN {rejected} THEN 1 END)"]
    row = conn.execute(sa.text(f"SELECT {', '.join(columns)} FROM {relation} AS r"), bound).all()[0]  # noqa: S608
    rows, counts = int(row[0]), {}
    for number, check in enumerate(checks):
        judged, unexpected = int(row[1 + 2 * number]), int(row[2 + 2 * number])
        if check.type == UNIQUE and unexpected:
            unexpected = _duplicated_rows(conn, relation, check.column, params)
        counts[check.index] = Count(rows, judged, unexpected)
    return counts


def sample_table(conn: Connection, suite: Suite, checks: Iterable[Check], counts: Mapping[int, Count],
                 relation: str, params: Mapping[str, Any], parameters: Mapping[str, Any], sample_rows: int) -> str:
    """A table of the rows GX checks (its name returned): up to FAILING_ROWS offending rows of each failing
    check (all rows of its first duplicated values, for uniqueness) and ``sample_rows`` rows
    picked by a hash of the key. ``relation`` (see batch_relation) carries ``gx_row``, a row's
    unique number, so that rows picked twice are kept once and exact duplicates are kept apart.
    On PostgreSQL the table is a real one in ops, committed on ``conn`` (GX reads it through
    its own connection); drop it with drop_sample."""
    key, bound = suite.spec.key, dict(params)
    postgresql = conn.dialect.name == "postgresql"
    # a cheap hash of the key (PostgreSQL's md5 took 2.5 s over 2M orders, hashtext 0.5 s)
    hashed = f"hashtext(CAST(r.{key} AS TEXT))" if postgresql else f"hash(r.{key})"
    # identifiers from the contract, limits our integers: S608 does not apply below
    parts = [f"(SELECT * FROM {relation} AS r ORDER BY {hashed}, r.gx_row LIMIT {int(sample_rows)})"]  # noqa: S608
    for check in checks:
        if not counts[check.index].unexpected:
            continue
        if check.type == UNIQUE:
            first = _duplicated(relation, check.column, f" ORDER BY 1 LIMIT {FAILING_ROWS}")
            parts.append(f"(SELECT * FROM {relation} AS r WHERE r.{check.column} IN "  # noqa: S608
                         f"(SELECT u.{check.column} FROM ({first}) AS u))")
            continue
        rejected, values = predicate(suite, check, parameters)
        bound.update(values)
        parts.append(f"(SELECT * FROM {relation} AS r WHERE {rejected} ORDER BY r.{key}, r.gx_row "  # noqa: S608
                     f"LIMIT {FAILING_ROWS})")
    # GX reads a PostgreSQL sample through its own connection: a committed table, not a temporary one
    table = f"{'ops.' if postgresql else ''}gx_sample_{uuid.uuid4().hex}"
    columns = ", ".join(f"u.{c}" for c in suite.spec.columns)  # without gx_row, which GX would take for a column
    create = f"CREATE {'' if postgresql else 'TEMPORARY '}TABLE {table} AS "
    conn.execute(sa.text(f"{create}SELECT {columns} FROM ({' UNION '.join(parts)}) AS u"), bound)  # noqa: S608
    if postgresql:
        conn.commit()
    return table


def drop_sample(conn: Connection, table: str) -> None:
    """Drop a sample table of sample_table (committed at once on PostgreSQL, where it is a real table)."""
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
    if conn.dialect.name == "postgresql":
        conn.commit()


def agree(conn: Connection, suite: Suite, checks: Iterable[Check], table: str, on_sample: Iterable[CheckResult],
          parameters: Mapping[str, Any]) -> None:
    """Raise ChecksDisagree unless GX's counts on the sample ``table`` equal SQL's on it, check by check."""
    checks = list(checks)
    by_sql = count(conn, suite, checks, table, {}, parameters)
    by_gx = {r.check.index: r for r in on_sample if r.check is not None}
    wrong = [f"{check.type} on {check.column}: Great Expectations rejects {by_gx[check.index].unexpected_count} "
             f"row(s), the SQL form {by_sql[check.index].unexpected}"
             for check in checks if by_gx[check.index].unexpected_count != by_sql[check.index].unexpected]
    if wrong:
        rows = next(iter(by_sql.values())).rows
        raise ChecksDisagree(
            f"raw.{suite.table}: on the same {rows:,} sampled row(s) of the batch, "
            + "; ".join(wrong) + ". The verdict would not be Great Expectations'; nothing was published. "
            "The SQL translation in grading.validation.predicates no longer means what the expectation means: fix it "
            f"(or the expectation in include/expectations/{suite.table}.json), then rerun the period.")


def on_batch(result: CheckResult, counts: Mapping[int, Count]) -> CheckResult:
    """A check's result on the sample, given the verdict and count of the whole batch."""
    counted_ = counts.get(result.check.index) if result.check is not None else None
    if counted_ is None:
        return result
    return replace(result, success=counted_.success(result.check.kwargs.get("mostly")),
                   unexpected_count=counted_.unexpected)


def batch_gx_result(item: Any, counts: Mapping[int, Count]) -> Any:
    """GX's result on the sample with the batch's verdict and counts, for Data Docs; the values
    and keys shown are the sample's (the first offending rows of the batch)."""
    index = int(item.expectation_config.meta["check"])
    counted_ = counts.get(index)
    if counted_ is None:
        return item
    success = counted_.success((item.expectation_config.kwargs or {}).get("mostly"))
    result = {name: value for name, value in (item.result or {}).items()
              if name in ("partial_unexpected_list", "partial_unexpected_index_list")}
    result.update(element_count=counted_.rows, missing_count=counted_.rows - counted_.judged,
                  unexpected_count=counted_.unexpected,
                  unexpected_percent=100.0 * counted_.unexpected / counted_.judged if counted_.judged else 0.0)
    result.setdefault("partial_unexpected_list", [])
    return type(item)(success=success, expectation_config=item.expectation_config, result=result,
                      exception_info=item.exception_info, meta=item.meta)
