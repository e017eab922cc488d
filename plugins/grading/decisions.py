"""Reviewers' decisions on elimination candidates, and a review queue that closes.

Elimination ends or reduces a relationship, so the list is a proposal: a named reviewer
approves or rejects it, and the decision is kept (appended, never updated) with who made it
and when. The status of every candidate row is restated into marts.elimination_status by
publish and by every decision (:func:`restate`), following the rule file's review policy
(grading.rules.model.ReviewPolicy):

- ``approved`` / ``rejected``: decided on this row, or carried from an earlier decision on
  the customer while the same rule lists them and no figure of ``material_change`` moved
  more than its share since (``decided_as_of`` names the row decided);
- ``proposed``: awaiting a decision - at most one row per customer, the latest;
- ``superseded``: an older undecided row of a customer proposed again in the next period;
- ``expired``: undecided and no longer listed in the next period, or proposed for
  ``proposal_expiry_days`` without a decision (the expiry then carries like a decision
  until the facts change).

Only approved rows produce their action in the CRM export (grading.export).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from grading.frames import bulk_insert, read_frame
from grading.rules.model import ReviewPolicy
from grading.warehouse import exclusive

DECISIONS = ("approved", "rejected")
STATUSES = ("proposed", "approved", "rejected", "superseded", "expired")
LOCK = "grading.decisions"


def decide(warehouse: Engine, customer_key: str, as_of: date, decision: str, reviewer: str,
           note: str | None = None, policy: ReviewPolicy | None = None) -> None:
    """Record ``reviewer``'s decision on the candidate; only a proposed candidate can be decided.

    The statuses are restated first and after, under ``policy`` (default: the rule file's defaults).
    """
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {', '.join(DECISIONS)}, got {decision!r}")
    if not reviewer.strip():
        raise ValueError("a decision needs the reviewer's name")
    policy = policy or ReviewPolicy()
    with exclusive(warehouse, LOCK) as conn:
        restate(conn, policy)
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
        restate(conn, policy)


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


@dataclass(frozen=True)
class _Anchor:
    """The decision (or expiry) later rows of a customer carry while the facts hold."""

    status: str
    as_of: date
    rule_name: str
    facts: dict[str, float]
    reviewer: str | None = None
    decided_at: datetime | None = None


def material(before: dict[str, float], now: dict[str, float], policy: ReviewPolicy) -> str | None:
    """The first figure of the policy that moved materially from ``before`` to ``now``, in words; else None."""
    for feature, share in policy.material_change:
        old, new = before.get(feature, math.nan), now.get(feature, math.nan)
        if math.isnan(old) and math.isnan(new):
            continue
        if math.isnan(old) or math.isnan(new) or (old == 0 and new != 0) \
                or (old != 0 and abs(new - old) / abs(old) > share):
            return f"{feature} {old:g} -> {new:g}"
    return None


def _frames(conn: Connection, policy: ReviewPolicy) -> tuple[pd.DataFrame, dict, list[date]]:
    columns = "".join(f", f.{feature}" for feature, _ in policy.material_change)
    candidates = read_frame(conn, (
        f"SELECT e.as_of_date, e.customer_key, e.rule_name, e.action, e.severity, e.control_group{columns} "  # noqa: S608 - column names checked against the catalogue when the rules load
        "FROM marts.elimination_candidates AS e LEFT JOIN marts.customer_features_snapshot AS f "
        "ON f.customer_key = e.customer_key AND f.as_of_date = e.as_of_date ORDER BY e.customer_key, e.as_of_date"))
    decided = read_frame(conn, "SELECT customer_key, as_of_date, decision, reviewer, decided_at "
                               "FROM marts.elimination_decisions ORDER BY decided_at")
    decisions = {(key, pd.Timestamp(day).date()): (decision, reviewer, when) for key, day, decision, reviewer, when
                 in decided.itertuples(index=False)}
    graded = read_frame(conn, "SELECT DISTINCT as_of_date FROM marts.customer_tier_snapshot ORDER BY as_of_date")
    return candidates, decisions, [pd.Timestamp(d).date() for d in graded["as_of_date"]]


@dataclass
class _Customer:
    """Where the walk through one customer's rows stands."""

    key: str | None = None
    anchor: _Anchor | None = None
    since: date | None = None  # first as-of date of the open proposal
    previous: date | None = None  # the customer's previous candidate row


@dataclass(frozen=True)
class _Context:
    decisions: dict
    following: dict  # graded period -> the next graded period (None for the last)
    listed: set  # (customer_key, as_of_date) of every candidate row
    features: list[str]
    policy: ReviewPolicy


def statuses(candidates: pd.DataFrame, decisions: dict, periods: list[date], policy: ReviewPolicy) -> pd.DataFrame:
    """The review status of every candidate row (see the module docstring); pure, for tests.

    One pass over the rows in customer and date order (a groupby per customer cost seconds at
    ten thousand customers).
    """
    candidates = candidates.assign(as_of_date=pd.to_datetime(candidates["as_of_date"]).dt.date).sort_values(
        ["customer_key", "as_of_date"], kind="stable")
    context = _Context(decisions, dict(zip(periods, [*periods[1:], None], strict=True)),
                       set(zip(candidates["customer_key"], candidates["as_of_date"], strict=True)),
                       [feature for feature, _ in policy.material_change], policy)
    out, customer = [], _Customer()
    for row in candidates.itertuples(index=False):
        if row.customer_key != customer.key:
            customer = _Customer(row.customer_key)
        out.append(_status(row, customer, context))
    columns = ["as_of_date", "customer_key", "rule_name", "action", "severity", "control_group", "review_status",
               "reviewer", "decided_at", "decided_as_of", "proposed_since", "expires_on", "status_reason"]
    frame = pd.DataFrame(out, columns=columns)
    return frame.astype({"severity": "string", "control_group": "boolean", "reviewer": "string",
                         "decided_at": "datetime64[us]", "decided_as_of": "datetime64[us]",
                         "proposed_since": "datetime64[us]", "expires_on": "datetime64[us]"})


def _status(row, customer: _Customer, context: _Context) -> dict:
    """The status of one candidate row, moving ``customer`` on."""
    key, as_of, policy = customer.key, row.as_of_date, context.policy
    facts = {f: float(getattr(row, f)) if pd.notna(getattr(row, f)) else math.nan for f in context.features}
    if customer.previous is None or context.following.get(customer.previous) != as_of:
        customer.since = as_of  # a new stretch of consecutive listings
    customer.previous = as_of
    record = {"as_of_date": as_of, "customer_key": key, "rule_name": row.rule_name, "action": row.action,
              "severity": row.severity, "control_group": row.control_group, "reviewer": None, "decided_at": None,
              "decided_as_of": None, "proposed_since": None, "expires_on": None}
    explicit = context.decisions.get((key, as_of))
    anchor = customer.anchor
    if explicit:
        customer.anchor = _Anchor(explicit[0], as_of, row.rule_name, facts, explicit[1], explicit[2])
        return {**record, "review_status": explicit[0], "reviewer": explicit[1], "decided_at": explicit[2],
                "decided_as_of": as_of, "status_reason": f"{explicit[0]} by {explicit[1]}"}
    changed = None if anchor is None else (
        "listed by " + row.rule_name if row.rule_name != anchor.rule_name else material(anchor.facts, facts, policy))
    if anchor is not None and changed is None:
        return {**record, "review_status": anchor.status, "reviewer": anchor.reviewer,
                "decided_at": anchor.decided_at, "decided_as_of": anchor.as_of,
                "status_reason": f"{anchor.status} on {anchor.as_of} carried: the same rule lists the customer and "
                                 "no figure changed materially"}
    if changed is not None:
        customer.since, customer.anchor = as_of, None  # the facts changed: a new proposal
    since = customer.since
    expires = since + timedelta(days=policy.proposal_expiry_days) if policy.proposal_expiry_days else None
    record.update(proposed_since=since, expires_on=expires)
    nxt = context.following.get(as_of)
    if nxt is not None and (key, nxt) not in context.listed:
        return {**record, "review_status": "expired", "status_reason": f"undecided and no longer listed on {nxt}"}
    if expires is not None and as_of >= expires:
        customer.anchor = _Anchor("expired", as_of, row.rule_name, facts)
        return {**record, "review_status": "expired", "decided_as_of": as_of,
                "status_reason": f"undecided since {since}: expired after {policy.proposal_expiry_days} days"}
    if nxt is not None:
        return {**record, "review_status": "superseded", "status_reason": f"proposed again on {nxt}"}
    return {**record, "review_status": "proposed",
            "status_reason": "awaiting a decision" + (f" ({changed})" if changed else "")}


def restate(conn: Connection, policy: ReviewPolicy) -> pd.DataFrame:
    """Rewrite marts.elimination_status from the candidates and decisions; returns it."""
    candidates, decisions, periods = _frames(conn, policy)
    frame = statuses(candidates, decisions, periods, policy)
    conn.execute(sa.text("DELETE FROM marts.elimination_status"))
    bulk_insert(conn, "marts.elimination_status", frame)
    return frame
