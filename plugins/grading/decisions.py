"""Reviewers' decisions on elimination candidates: proposed -> approved / rejected (or expired).

Elimination ends or reduces a relationship, so the list is a proposal: a named reviewer
approves or rejects each candidate, and the decision is kept (appended, never updated) with
who made it and when. A candidate nobody decided expires once a later period no longer
lists the customer. The status of every candidate is the view marts.elimination_status.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from grading.frames import bulk_insert, read_frame
from grading.warehouse import exclusive

DECISIONS = ("approved", "rejected")


def decide(warehouse: Engine, customer_key: str, as_of: date, decision: str, reviewer: str,
           note: str | None = None) -> None:
    """Record ``reviewer``'s decision on the candidate; only a proposed candidate can be decided."""
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {', '.join(DECISIONS)}, got {decision!r}")
    if not reviewer.strip():
        raise ValueError("a decision needs the reviewer's name")
    with exclusive(warehouse, "grading.decisions") as conn:
        rows = conn.execute(sa.text(
            "SELECT review_status FROM marts.elimination_status WHERE customer_key = :key AND as_of_date = :as_of"),
            {"key": customer_key, "as_of": as_of}).all()  # all(): DuckDB wants the result drained
        status = rows[0][0] if rows else None
        if status is None:
            raise LookupError(f"no elimination candidate {customer_key} as of {as_of}")
        if status != "proposed":
            raise ValueError(f"candidate {customer_key} as of {as_of} is {status}; only proposed candidates "
                             "can be decided")
        bulk_insert(conn, "marts.elimination_decisions", pd.DataFrame([{
            "customer_key": customer_key, "as_of_date": as_of, "decision": decision, "reviewer": reviewer.strip(),
            "note": note, "decided_at": datetime.now(UTC).replace(tzinfo=None)}]).astype({"note": "string"}))


def candidates_by_status(warehouse: Engine, status: str | None = None, as_of: date | None = None) -> pd.DataFrame:
    """Elimination candidates with their review status, newest first."""
    where, params = [], {}
    if status:
        where.append("review_status = :status")
        params["status"] = status
    if as_of:
        where.append("as_of_date = :as_of")
        params["as_of"] = as_of
    clause = f"WHERE {' AND '.join(where)} " if where else ""
    with warehouse.connect() as conn:
        return read_frame(conn, f"SELECT * FROM marts.elimination_status {clause}"  # noqa: S608 - fixed fragments
                                "ORDER BY as_of_date DESC, customer_key", params)
