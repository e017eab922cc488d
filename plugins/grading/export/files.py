"""The file target of the CRM export: one folder per period, written atomically.

``<dir>/<as_of>/`` holds changes.csv, changes.parquet and manifest.json (row counts per
change, and each file's bytes and sha256). The folder is written beside the final one and
renamed into place, so a reader sees the previous export of the period or the new one,
never half of one; the manifest names no time, so exporting a period again writes the
same bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from grading.export.changes import counts


def write_period(folder: Path, as_of: date, baseline: date | None, rows: pd.DataFrame, csv: bytes) -> Path:
    """Write the period's export under ``folder``; returns the period's folder."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / as_of.isoformat()
    work = folder / f".{as_of.isoformat()}.{uuid.uuid4().hex[:8]}.tmp"
    work.mkdir()
    try:
        (work / "changes.csv").write_bytes(csv)
        table = pa.Table.from_pandas(rows, preserve_index=False)
        pq.write_table(table, work / "changes.parquet", compression="zstd")
        files = {name: {"bytes": (work / name).stat().st_size, "sha256": file_checksum(work / name)}
                 for name in ("changes.csv", "changes.parquet")}
        manifest = {"period": as_of.isoformat(), "baseline": baseline.isoformat() if baseline else None,
                    "rows": len(rows), "rows_by_change": counts(rows), "files": files}
        (work / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        for path in work.iterdir():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
        _swap(work, final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


def file_checksum(path: Path) -> str:
    """The sha256 of a file, read a megabyte at a time (the file of a first export is hundreds)."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _swap(work: Path, final: Path) -> None:
    """Move ``work`` to ``final``, replacing an earlier export of the period."""
    if not final.exists():
        work.rename(final)
        return
    retired = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.old")
    final.rename(retired)
    work.rename(final)
    shutil.rmtree(retired, ignore_errors=True)
