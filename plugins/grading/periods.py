"""The order of graded periods, and which published periods are stale.

Each period carries tiers, damping and elimination confirmations on from the latest period
graded before it (its predecessor). A period graded on a predecessor that has been graded
again since - a backfill, a rerun, or an earlier period that overtook it (runs started out
of order) - may differ from grading the periods in date order, and says so:

- the tiers and flags stages record, in the transaction that writes them and under
  ``PERIOD_STATE_LOCK``, a digest of what they wrote, their predecessor and the predecessor's
  digest as they read it (``ops.period_grades``). Digests, not times: a rerun that writes the
  same state changes nothing downstream;
- publish refuses a period whose own grading read a predecessor that changed since (rerun
  it from its tiers stage), so no run publishes a result it knows to be out of order;
- every publish refreshes ``marts.published_periods``: a period is stale when its predecessor
  was graded again after it, or when its predecessor is stale. Regrading the stale periods in
  date order clears them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from grading.errors import DataError
from grading.frames import bulk_insert, read_frame

# Held by every transaction that writes or reads a period's tier state (tiers, flags, publish).
PERIOD_STATE_LOCK = "grading.period_state"


class PeriodOrderError(DataError, RuntimeError):
    """A period's grading read the state of an earlier period that has been graded again since."""


@dataclass(frozen=True)
class PeriodState:
    as_of: date
    graded_after: date | None  # its predecessor
    stale: bool
    reason: str | None
    overtaken: bool = False  # stale because its own predecessor changed (not only one before it)


def _day(value) -> date | None:
    return None if value is None or pd.isna(value) else pd.Timestamp(value).date()


def frame_digest(frame: pd.DataFrame, order: list[str]) -> str:
    """A digest of a stage's output rows (sorted by ``order``): equal rows, equal digest.

    Rows already in order (tiers come in customer order) are not sorted into a copy first."""
    ordered = len(order) == 1 and frame[order[0]].is_monotonic_increasing
    rows = (frame if ordered else frame.sort_values(order, kind="stable")).reset_index(drop=True)
    values = pd.util.hash_pandas_object(rows, index=False).to_numpy()
    return hashlib.sha256(",".join(rows.columns).encode() + values.tobytes()).hexdigest()


def _period_digest(stage_digests: dict[str, str | None]) -> str | None:
    """A period's state: the digests of its stages (None for a period graded before the ledger)."""
    if all(d is None for d in stage_digests.values()):
        return None
    return hashlib.sha256("|".join(f"{k}={v}" for k, v in sorted(stage_digests.items())).encode()).hexdigest()


def _digests(conn: Connection, as_of: date) -> str | None:
    rows = conn.execute(sa.text("SELECT stage, state_digest FROM ops.period_grades WHERE as_of_date = :d "
                                "AND stage IN ('tiers', 'flags')"), {"d": as_of}).all()
    return _period_digest(dict(rows)) if rows else None


def record_grade(conn: Connection, as_of: date, stage: str, run_id: str, now: datetime, digest: str) -> None:
    """Note that ``stage`` graded ``as_of`` (writing rows of ``digest``) on the latest earlier
    period's state as it stands.

    Call it in the stage's writing transaction, holding PERIOD_STATE_LOCK, so the predecessor
    noted is the one the stage read.
    """
    previous = _day(conn.execute(sa.text("SELECT MAX(as_of_date) FROM staging.customer_tiers "
                                         "WHERE as_of_date < :as_of"), {"as_of": as_of}).scalar())
    previous_digest = None if previous is None else _digests(conn, previous)
    conn.execute(sa.text("DELETE FROM ops.period_grades WHERE as_of_date = :as_of AND stage = :stage"),
                 {"as_of": as_of, "stage": stage})
    conn.execute(sa.text(
        "INSERT INTO ops.period_grades (as_of_date, stage, run_id, graded_at, state_digest, previous_as_of, "
        "previous_digest) VALUES (:as_of, :stage, :run, :now, :digest, :previous, :previous_digest)"),
        {"as_of": as_of, "stage": stage, "run": run_id, "now": now, "digest": digest, "previous": previous,
         "previous_digest": previous_digest})


def period_states(conn: Connection) -> dict[date, PeriodState]:
    """Every graded period, in date order, with its predecessor and whether it is stale."""
    grades = read_frame(conn, "SELECT as_of_date, stage, state_digest, previous_as_of, previous_digest "
                              "FROM ops.period_grades WHERE stage IN ('tiers', 'flags')")
    stages: dict[date, dict[str, str | None]] = {}
    read: dict[date, list[tuple[str, date | None, str | None]]] = {}
    for as_of, stage, digest, previous, previous_digest in grades.itertuples(index=False):
        day = _day(as_of)
        stages.setdefault(day, {})[stage] = None if pd.isna(digest) else digest
        read.setdefault(day, []).append((stage, _day(previous), None if pd.isna(previous_digest) else previous_digest))
    states: dict[date, PeriodState] = {}
    predecessor = None
    for day in sorted(d for d, graded in stages.items() if "tiers" in graded):
        expected = (predecessor, None if predecessor is None else _period_digest(stages[predecessor]))
        moved = [(stage, previous) for stage, previous, digest in read[day] if (previous, digest) != expected]
        if moved:
            stage, previous = moved[0]
            if previous == predecessor:
                reason = f"its {stage} carried on from {previous}, which has been graded again since, differently"
            else:
                reason = (f"its {stage} carried on from {previous or 'no earlier period'}, but the period before it "
                          f"is now {predecessor or 'none'}")
        elif predecessor is not None and states[predecessor].stale:
            reason = f"it follows {predecessor}, which is stale"
        else:
            reason = None
        states[day] = PeriodState(day, predecessor, reason is not None, reason, bool(moved))
        predecessor = day
    return states


def record_features(conn: Connection, as_of: date, run_id: str, started: datetime) -> None:
    """Note when the features of ``as_of`` began reading raw (see ``check_in_order``)."""
    conn.execute(sa.text("DELETE FROM ops.period_grades WHERE as_of_date = :as_of AND stage = 'features'"),
                 {"as_of": as_of})
    conn.execute(sa.text("INSERT INTO ops.period_grades (as_of_date, stage, run_id, graded_at) "
                         "VALUES (:as_of, 'features', :run, :started)"), {"as_of": as_of, "run": run_id,
                                                                          "started": started})


def check_in_order(conn: Connection, as_of: date) -> None:
    """Refuse to publish ``as_of`` when its grading no longer follows from what came before it:
    its own tiers or flags read a predecessor that was graded again since, or rows before its
    as-of date were validated after its features read raw (an earlier period's run overtook it)."""
    state = period_states(conn).get(as_of)
    if state is not None and state.overtaken:
        raise PeriodOrderError(
            f"{as_of} cannot be published: {state.reason} (an earlier period was graded while this run was going). "
            "Its tiers and candidate lists would differ from grading the periods in date order: rerun the period "
            "from its tiers task (or python -m grading run --as-of ...), after the earlier period has finished.")
    started = conn.execute(sa.text("SELECT MAX(graded_at) FROM ops.period_grades WHERE as_of_date = :as_of "
                                   "AND stage = 'features'"), {"as_of": as_of}).scalar()
    if started is None:
        return
    late = conn.execute(sa.text(
        "SELECT b.run_id, b.as_of_date FROM ops.batches AS b JOIN ops.batch_windows AS w ON w.batch_id = b.batch_id "
        "WHERE b.status IN ('passed', 'published') AND b.updated_at > :started "
        "AND (w.window_start IS NULL OR w.window_start < :cutoff) ORDER BY b.updated_at LIMIT 1"),
        {"started": started, "cutoff": datetime.combine(as_of, datetime.min.time())}).all()
    if late:
        run, other = late[0]
        raise PeriodOrderError(
            f"{as_of} cannot be published: run {run} (as of {_day(other)}) validated rows dated before {as_of} "
            "after this period's features had read raw, so they miss them. Rerun the period from its features "
            "task (or python -m grading run --as-of ...).")


def refresh_published(conn: Connection, as_of: date, run_id: str, now: datetime) -> list[PeriodState]:
    """Record the publish of ``as_of`` and restate every published period's staleness; returns
    the stale periods."""
    states = period_states(conn)
    published = read_frame(conn, "SELECT as_of_date, run_id, published_at FROM marts.published_periods "
                                 "WHERE as_of_date <> :as_of", {"as_of": as_of})
    runs = {_day(d): (run, pd.Timestamp(at).to_pydatetime()) for d, run, at in published.itertuples(index=False)}
    runs[as_of] = (run_id, now)
    rows = []
    for day, (run, at) in sorted(runs.items()):
        state = states.get(day, PeriodState(day, None, False, None))
        rows.append({"as_of_date": day, "run_id": run, "published_at": at, "graded_after": state.graded_after,
                     "stale": state.stale, "stale_reason": state.reason})
    conn.execute(sa.text("DELETE FROM marts.published_periods"))
    bulk_insert(conn, "marts.published_periods", pd.DataFrame(rows).astype({
        "published_at": "datetime64[us]", "stale": "bool", "stale_reason": "string"}))
    return [states[day] for day in sorted(runs) if day in states and states[day].stale]
