"""The CRM export of a published period, to every configured target, recorded in ops.exports.

Per target, the period's changes are taken against the last period successfully exported
to that target before it, as the target last got it (none: a first, full export), and
exporting a period again reuses the baseline its first successful export used, so it sends
the same content. Every attempt
is recorded in ops.exports (target, period, baseline, rows, checksum, status, where). A
target that fails does not stop the others; the export then raises ExportFailed naming
each failure - the publish it follows is already committed and stays published.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from grading.export import changes as crm_changes
from grading.export import files
from grading.export.webhook import Webhook, WebhookError, send
from grading.frames import bulk_insert
from grading.settings import CRM_CONN_ID, export_dir, export_targets, mask_urls


class ExportFailed(RuntimeError):
    """A target did not take the export; its row in ops.exports says which and why."""


@dataclass(frozen=True)
class Target:
    name: str
    folder: Path | None = None  # the file target
    hook: Webhook | None = None  # the webhook target


@dataclass(frozen=True)
class Exported:
    target: str
    status: str
    rows: int
    baseline: date | None
    location: str | None
    counts: dict[str, int]
    message: str | None = None


def configured_targets() -> list[Target]:
    """The targets GRADING_EXPORT_TARGETS names; the webhook only where the grading_crm connection exists."""
    from grading.settings import airflow_connection

    targets = []
    for name in export_targets():
        if name == "files":
            targets.append(Target("files", folder=export_dir()))
        elif (conn := airflow_connection(CRM_CONN_ID)) is not None:
            targets.append(Target("webhook", hook=Webhook.from_connection(conn)))
    return targets


def baseline_for(conn: Connection, target: str, as_of: date) -> tuple[date | None, datetime | None]:
    """The period ``as_of``'s changes are taken against for ``target``, and when the CRM last got
    that period (see the module docstring); (None, None) for a first export."""
    again = conn.execute(sa.text(
        "SELECT baseline_as_of, baseline_exported_at FROM ops.exports WHERE target = :target "
        "AND as_of_date = :as_of AND status = 'success' ORDER BY finished_at LIMIT 1"),
        {"target": target, "as_of": as_of}).first()
    if again is not None:
        return _day(again[0]), _instant(again[1])
    before = conn.execute(sa.text(
        "SELECT as_of_date, MAX(finished_at) FROM ops.exports WHERE target = :target AND status = 'success' "
        "AND as_of_date = (SELECT MAX(as_of_date) FROM ops.exports WHERE target = :target AND status = 'success' "
        "AND as_of_date < :as_of) GROUP BY as_of_date"), {"target": target, "as_of": as_of}).first()
    return (_day(before[0]), _instant(before[1])) if before is not None else (None, None)


def _day(value) -> date | None:
    return None if value is None else pd.Timestamp(value).date()


def _instant(value) -> datetime | None:
    return None if value is None else pd.Timestamp(value).to_pydatetime()


def export(warehouse: Engine, as_of: date, run_id: str, targets: list[Target] | None = None) -> list[Exported]:
    """Export ``as_of`` to ``targets`` (default: the configured ones); ExportFailed if any failed."""
    targets = configured_targets() if targets is None else targets
    with warehouse.connect() as conn:
        published = conn.execute(sa.text("SELECT 1 FROM marts.customer_tier_snapshot WHERE as_of_date = :as_of "
                                         "LIMIT 1"), {"as_of": as_of}).first()
    if published is None:
        raise LookupError(f"nothing is published for {as_of}: publish the period before exporting it")
    results = [_export_one(warehouse, as_of, run_id, target) for target in targets]
    failed = [r for r in results if r.status != "success"]
    if failed:
        raise ExportFailed("; ".join(f"{r.target}: {r.message}" for r in failed)
                           + " (recorded in ops.exports; the period stays published - export it again with "
                             f"python -m grading export --as-of {as_of})")
    return results


def _export_one(warehouse: Engine, as_of: date, run_id: str, target: Target) -> Exported:
    started = datetime.now(UTC).replace(tzinfo=None)
    with warehouse.connect() as conn:
        baseline, baseline_exported_at = baseline_for(conn, target.name, as_of)
        rows = crm_changes.changes(conn, as_of, baseline, baseline_exported_at)
    csv = crm_changes.to_csv(rows)
    digest = crm_changes.checksum(csv)
    status, message, location = "success", None, None
    try:
        if target.folder is not None:
            location = str(files.write_period(target.folder, as_of, baseline, rows, csv))
        elif target.hook is not None:
            batches = send(target.hook, target.name, as_of, baseline, rows, digest)
            location = f"{mask_urls(target.hook.url)} ({batches} batch(es))"
    except (OSError, WebhookError) as exc:
        status, message = "failed", mask_urls(f"{type(exc).__name__}: {exc}")
        logging.getLogger(__name__).error("export of %s to %s failed: %s", as_of, target.name, message)
    record = pd.DataFrame([{
        "export_id": uuid.uuid4().hex, "target": target.name, "as_of_date": as_of, "baseline_as_of": baseline,
        "baseline_exported_at": baseline_exported_at, "rows_exported": len(rows), "checksum": digest,
        "status": status, "location": location, "message": message, "run_id": run_id, "started_at": started,
        "finished_at": datetime.now(UTC).replace(tzinfo=None)}])
    record = record.astype({"baseline_as_of": "datetime64[us]", "baseline_exported_at": "datetime64[us]",
                            "location": "string", "message": "string"})
    with warehouse.begin() as conn:
        bulk_insert(conn, "ops.exports", record)
    return Exported(target.name, status, len(rows), baseline, location, crm_changes.counts(rows), message)
