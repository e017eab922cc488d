"""The CRM export's file target (grading.export.files): a folder per period, atomic, with a manifest."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from grading.export import files
from grading.export.changes import checksum, to_csv

AS_OF, BASELINE = date(2025, 1, 1), date(2024, 10, 1)


def rows(n: int) -> pd.DataFrame:
    return pd.DataFrame({"change": ["tier_changed"] * n, "customer_id": [f"C{i}" for i in range(n)],
                         "list": pd.Series([pd.NA] * n, dtype="string"), "tier": ["gold"] * n})


def test_a_period_is_written_with_csv_parquet_and_a_manifest_of_counts_and_checksums(tmp_path: Path) -> None:
    frame = rows(3)
    folder = files.write_period(tmp_path, AS_OF, BASELINE, frame, to_csv(frame))
    assert folder == tmp_path / "2025-01-01"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert (manifest["period"], manifest["baseline"], manifest["rows"]) == ("2025-01-01", "2024-10-01", 3)
    assert manifest["rows_by_change"] == {"tier_changed": 3}
    for name in ("changes.csv", "changes.parquet"):
        assert manifest["files"][name]["sha256"] == checksum((folder / name).read_bytes())
    assert pq.read_table(folder / "changes.parquet").to_pandas()["customer_id"].tolist() == ["C0", "C1", "C2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2025-01-01"]  # no work folders left


def test_writing_a_period_again_gives_the_same_bytes_and_replaces_the_folder(tmp_path: Path) -> None:
    frame = rows(2)
    first = files.write_period(tmp_path, AS_OF, BASELINE, frame, to_csv(frame))
    before = {p.name: p.read_bytes() for p in first.iterdir()}
    again = files.write_period(tmp_path, AS_OF, BASELINE, frame, to_csv(frame))
    assert {p.name: p.read_bytes() for p in again.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2025-01-01"]


def test_a_write_that_fails_leaves_the_earlier_export_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    frame = rows(2)
    files.write_period(tmp_path, AS_OF, BASELINE, frame, to_csv(frame))
    before = {p.name: p.read_bytes() for p in (tmp_path / "2025-01-01").iterdir()}

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.pq, "write_table", full_disk)
    with pytest.raises(OSError, match="No space left"):
        files.write_period(tmp_path, AS_OF, BASELINE, rows(5), to_csv(rows(5)))
    assert {p.name: p.read_bytes() for p in (tmp_path / "2025-01-01").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2025-01-01"]
