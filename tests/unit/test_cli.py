"""`python -m grading` as a user runs it: a real subprocess on the embedded defaults."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT


def grading(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_GRADING")}
    env["GRADING_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "grading", *args], env=env, capture_output=True, text=True,
                          timeout=300, cwd=ROOT)


def test_generate_run_summary_review_and_rules(tmp_path: Path) -> None:
    out = grading(tmp_path, "generate", "--customers", "300", "--seed", "3")
    assert out.returncode == 0, out.stderr
    assert "300 customers" in out.stdout
    assert (tmp_path / "source.sqlite").exists()

    out = grading(tmp_path, "run", "--as-of", "2025-01-01")
    assert out.returncode == 0, out.stderr
    assert "Customer grading as of 2025-01-01" in out.stdout
    assert "marts.customer_tier_snapshot" in out.stdout
    assert "300 rows" in out.stdout
    assert (tmp_path / "warehouse.duckdb").exists()

    out = grading(tmp_path, "review", "--quarter", "2024Q4", "--proposed-tiers",
                  "include/rules/examples/tiers_weighted_score.yaml")
    assert out.returncode == 0, out.stderr
    assert "Quarterly review 2024Q4" in out.stdout
    assert "platinum" in out.stdout
    report = tmp_path / "reviews" / "2024Q4" / "review.html"
    assert report.exists()
    assert "What the proposed rules would have done" in report.read_text()

    out = grading(tmp_path, "backtest", "--tiers", "include/rules/examples/tiers_kmeans.yaml")
    assert out.returncode == 0, out.stderr
    assert "as of 2025-01-01; nothing published" in out.stdout
    assert "would change tier" in out.stdout

    out = grading(tmp_path, "criteria")
    assert out.returncode == 0
    assert (tmp_path / "criteria" / "criteria.html").exists()

    out = grading(tmp_path, "rules", "check")
    assert out.returncode == 0
    assert "tiers.yaml" in out.stdout
    assert "candidates.yaml" in out.stdout

    out = grading(tmp_path, "rules", "dry-run", "--as-of", "2025-01-01")
    assert out.returncode == 0, out.stderr
    assert "nothing written" in out.stdout
    assert "gold_band" in out.stdout


def test_errors_are_short_and_exit_non_zero(tmp_path: Path) -> None:
    """Exit 2 for a usage error (argparse's message), 1 for bad data or a bad file (one line, no traceback)."""
    out = grading(tmp_path, "review", "--quarter", "2024-Q4")
    assert out.returncode == 2
    assert out.stderr.strip() == "error: quarter must look like 2024Q4, got '2024-Q4'"
    out = grading(tmp_path, "run", "--as-of", "yesterday")
    assert out.returncode == 2
    assert "expected a date like 2025-01-01" in out.stderr
    out = grading(tmp_path, "summary", "--as-of", "2025-01-01")  # nothing graded here yet
    assert out.returncode == 1
    assert out.stderr.startswith("error: duckdb:///")
    assert "holds no graded period yet" \
        in out.stderr
    assert "Traceback" not in out.stderr
    out = grading(tmp_path, "rules", "check", "no/such/tiers.yaml")
    assert out.returncode == 1
    assert out.stderr.strip() == "error: no/such/tiers.yaml: No such file or directory"


def test_every_subcommand_has_help(tmp_path: Path) -> None:
    for args in (["--help"], ["generate", "--help"], ["run", "--help"], ["summary", "--help"],
                 ["review", "--help"], ["backtest", "--help"], ["criteria", "--help"], ["migrate", "--help"],
                 ["docs", "--help"], ["bi-role", "--help"], ["rules", "check", "--help"],
                 ["rules", "dry-run", "--help"]):
        out = grading(tmp_path, *args)
        assert out.returncode == 0
        assert "usage: python -m grading" in out.stdout


def test_a_password_in_the_warehouse_url_is_never_printed(tmp_path: Path, pg_url: str) -> None:
    import sqlalchemy as sa

    with_password = sa.make_url(pg_url).set(password="not-the-real-pw").render_as_string(hide_password=False)
    env = {**os.environ, "AIRFLOW_CONN_GRADING_WAREHOUSE": with_password, "GRADING_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "grading", "migrate"], env=env, capture_output=True, text=True,
                         timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    out = subprocess.run([sys.executable, "-m", "grading", "summary", "--as-of", "2025-01-01"], env=env,
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 1
    assert "no successful run has published" in out.stderr
    assert "not-the-real-pw" not in out.stderr + out.stdout
    assert ":***@" in out.stderr
