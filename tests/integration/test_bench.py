"""Smoke run of the benchmark harness (bench/run.py) at a tiny scale: it runs and writes a table.

No timing assertions: the benchmark's figures belong in bench/RESULTS.md, not in CI. The
script runs as a command, as a developer would run it (its stages run in spawned workers).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT

BENCH = ROOT / "bench" / "run.py"


def test_bench_smoke_run_writes_a_table(tmp_path: Path) -> None:
    results, markdown = tmp_path / "results", tmp_path / "RESULTS.md"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--scale", "500", "--warehouse", "duckdb", "--pipeline", "features",
         "--raw", "direct", "--no-baselines", "--workdir", str(tmp_path / "work"), "--results", str(results),
         "--markdown", str(markdown)],
        capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    text = markdown.read_text()
    assert "| stage |" in text
    assert "## Targets of issue 8" in text
    features = next(line for line in text.splitlines() if line.startswith("| features |"))
    assert "failed" not in features
    assert "failed" not in text.split("## Targets")[0]
    assert (results / "500.json").exists()
