"""What changed for the CRM between two published periods, as the rows an export hands over.

The rows come from include/sql/export/crm_changes.sql, set-based in the warehouse; here they
are put in one canonical order and serialised once, so the checksum, the files and the
webhook batches of an export all carry the same bytes, and exporting a period again gives
the same content.
"""

from __future__ import annotations

import hashlib
import io
from datetime import date, datetime

import pandas as pd
from sqlalchemy.engine import Connection

from grading.frames import read_computed_table
from grading.warehouse import sql_text

COLUMNS = ("change", "customer_id", "customer_key", "list", "tier", "previous_tier", "rule_name", "reason", "action",
           "action_owner", "contact_within_days", "offer", "service_level", "response_time_hours",
           "dedicated_account_manager", "support_channels", "visit_frequency", "discount_policy")


def changes(conn: Connection, as_of: date, baseline: date | None,
            baseline_exported_at: datetime | None = None) -> pd.DataFrame:
    """The change rows of ``as_of`` against ``baseline`` as exported at ``baseline_exported_at`` (None:
    everything, a first export), in canonical order.

    The baseline's elimination approvals count as the CRM got them: a reviewer's approval after
    the baseline was exported is handed over now, as a listing.
    """
    # computed first, then read through Arrow: DuckDB's working memory for the joins is given back
    # before the million-row frame is built (a first export at L peaked at 2.4 GiB; every column
    # is typed below)
    rows = read_computed_table(conn, sql_text("export/crm_changes", conn.dialect.name), {
        "as_of": as_of, "baseline": baseline, "baseline_exported_at": baseline_exported_at}).to_pandas()
    rows = rows.astype({column: "string" for column in COLUMNS if column not in (
        "contact_within_days", "response_time_hours", "dedicated_account_manager")})
    rows["contact_within_days"] = rows["contact_within_days"].astype("Int64")
    rows["response_time_hours"] = rows["response_time_hours"].astype("Float64")
    rows["dedicated_account_manager"] = rows["dedicated_account_manager"].astype("boolean")
    order = ["change", "list", "customer_id"]
    return rows[list(COLUMNS)].sort_values(order, na_position="first", kind="stable").reset_index(drop=True)


def to_csv(rows: pd.DataFrame) -> bytes:
    """The rows as UTF-8 CSV with a header: the canonical bytes an export's checksum is taken of.

    Written as bytes: a text buffer first holds every character in up to four bytes (one
    Chinese tier name does it), then the encoded copy beside it."""
    buffer = io.BytesIO()
    rows.to_csv(buffer, index=False, lineterminator="\n", encoding="utf-8")
    return buffer.getvalue()


def checksum(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def counts(rows: pd.DataFrame) -> dict[str, int]:
    """Rows per change (and list), e.g. {'tier_changed': 12, 'listed win_back': 3}."""
    keys = rows["change"] + rows["list"].map(lambda name: f" {name}" if pd.notna(name) else "").astype("string")
    return {str(k): int(v) for k, v in keys.value_counts().sort_index().items()}
