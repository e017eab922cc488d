"""`python -m grading` as a user runs it: a real subprocess on the embedded defaults. Progress per
stage, --version, a description and an example in every command's --help, the exit statuses (0 done,
1 a data error, 2 a usage error) and nothing of DuckDB's "nanobind: leaked" at exit."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from grading import cli
from grading.errors import DataError
from tests.helpers import ROOT, Source

STAGES = ["extract", "validate", "features", "churn", "tiers", "flags", "publish", "export"]
STAGE_LINE = re.compile(r"^(?P<stage>[a-z]+): (?P<result>.+) in \d+\.\d s$")


def grading(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_GRADING")}
    environment["GRADING_HOME"] = str(home)
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "grading", *args], env=environment, capture_output=True, text=True,
                          timeout=300, cwd=ROOT)


def stage_lines(stderr: str) -> dict[str, str]:
    """The progress lines of a run: stage -> its one-line result."""
    return {m["stage"]: m["result"] for line in stderr.splitlines() if (m := STAGE_LINE.match(line))}


def test_generate_run_summary_review_and_rules(tmp_path: Path) -> None:
    out = grading(tmp_path, "generate", "--customers", "300", "--seed", "3")
    assert out.returncode == 0, out.stderr
    assert "300 customers" in out.stdout
    assert (tmp_path / "source.sqlite").exists()
    # a second generate would replace the source: a usage error naming it, unless --force
    out = grading(tmp_path, "generate", "--customers", "300", "--seed", "3")
    assert out.returncode == 2
    assert out.stderr.startswith(f"error: the source sqlite:///{tmp_path / 'source.sqlite'} exists already"), out.stderr
    assert "Pass --force to overwrite it" in out.stderr
    assert grading(tmp_path, "generate", "--customers", "300", "--seed", "3", "--force").returncode == 0

    out = grading(tmp_path, "run", "--as-of", "2025-01-01")
    assert out.returncode == 0, out.stderr
    assert "Customer grading as of 2025-01-01" in out.stdout
    assert "marts.customer_tier_snapshot" in out.stdout
    assert "300 rows" in out.stdout
    assert (tmp_path / "warehouse.duckdb").exists()
    # a line per stage as it ended, in order, on stderr: what it did, in rows, and its seconds
    progress = stage_lines(out.stderr)
    assert list(progress) == STAGES, out.stderr
    assert progress["extract"].startswith("300 customers, ")
    assert progress["tiers"].startswith("300 customers graded (")
    assert "customer_tier_snapshot 300" in progress["publish"]
    # -q: no progress; --json: the summaries, parseable on stdout
    out = grading(tmp_path, "run", "--as-of", "2025-01-01", "-q", "--json")
    assert out.returncode == 0, out.stderr
    assert stage_lines(out.stderr) == {}
    assert sum(json.loads(out.stdout)["tiers"]["tiers"].values()) == 300

    out = grading(tmp_path, "review", "--quarter", "2024Q4", "--proposed-tiers",
                  "include/rules/examples/tiers_weighted_score.yaml")
    assert out.returncode == 0, out.stderr
    assert "Quarterly review 2024Q4" in out.stdout
    assert "platinum" in out.stdout
    report = tmp_path / "reviews" / "2024Q4" / "review.html"
    assert report.exists()
    assert "What the proposed rules would have done" in report.read_text()
    # a fourth quarter closes the year: its annual review too, flagged as one quarter of four
    assert "Annual review 2024: " in out.stdout
    assert "from 1 of 4 quarters (2024Q4) - INCOMPLETE" in out.stdout
    assert (tmp_path / "reviews" / "2024" / "annual.html").exists()
    out = grading(tmp_path, "review", "--year", "2024")
    assert out.returncode == 0, out.stderr
    assert "annual review 2024: 2024 is incomplete: 1 of its 4 quarters reviewed (2024Q4)" in out.stderr
    out = grading(tmp_path, "review", "--year", "2023")
    assert out.returncode == 1
    assert out.stderr.startswith("error: no quarter of 2023 was reviewed"), out.stderr
    assert grading(tmp_path, "review", "--year", "2024", "--proposed-tiers", "x.yaml").returncode == 2

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
    # a rule on the stored scores (churn, customer potential) dry-runs too
    scored = tmp_path / "tiers_potential.yaml"
    scored.write_text((ROOT / "include/rules/tiers.yaml").read_text().replace(
        "feature: monetary_window", "feature: potential_365d", 1))
    out = grading(tmp_path, "rules", "dry-run", "--as-of", "2025-01-01", "--tiers", str(scored))
    assert out.returncode == 0, out.stderr
    assert "platinum_band" in out.stdout

    # calibrate: thresholds for 80/15/5 of the customers, a candidate file that checks and grades as shown
    out = grading(tmp_path, "rules", "calibrate", "--as-of", "2025-01-01", "--shares", "80/15/5")
    assert out.returncode == 0, out.stderr
    candidate = tmp_path / "calibrated" / "tiers_2025-01-01.yaml"
    assert f"Candidate rule file: {candidate}" in out.stdout
    assert grading(tmp_path, "rules", "check", str(candidate)).returncode == 0
    dry = grading(tmp_path, "rules", "dry-run", "--as-of", "2025-01-01", "--tiers", str(candidate))
    counts = {line.split()[1]: int(line.split()[2]) for line in dry.stdout.splitlines()[2:]}
    assert abs(counts["platinum"] / sum(counts.values()) - 0.05) < 0.03, dry.stdout
    assert abs(counts["normal"] / sum(counts.values()) - 0.80) < 0.05, dry.stdout
    assert grading(tmp_path, "rules", "calibrate", "--as-of", "2025-01-01", "--shares", "80/25/5").returncode == 2


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
    broken = tmp_path / "broken.yaml"  # a rule file that does not parse: a data error, in one line
    broken.write_text((ROOT / "include" / "rules" / "tiers.yaml").read_text().replace(
        "tiers: [normal, gold, platinum]", "tiers: [normal, gold, platinum"))
    out = grading(tmp_path, "backtest", "--tiers", str(broken))
    assert out.returncode == 1
    assert out.stderr.startswith(f"error: {broken}:"), out.stderr
    assert "Traceback" not in out.stderr
    out = grading(tmp_path, "run", "--as-of", "2025-01-01", "--no-such-flag")
    assert out.returncode == 2
    assert "unrecognized arguments: --no-such-flag" in out.stderr
    out = grading(tmp_path, "erase", "--customer-id", "C1")  # no --yes and no terminal to ask on
    assert out.returncode == 2
    assert out.stderr.strip() == ("error: erase deletes the customer's rows for good: pass --yes to confirm (or "
                                  "--dry-run to see what it would remove)")


def subcommands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every (sub)command of the parser, nested ones too, as the words that name it."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield (*path, name)
                yield from subcommands(child, (*path, name))


def test_every_subcommand_has_a_description_and_an_example_in_its_help(tmp_path: Path) -> None:
    commands = list(subcommands(cli.build_parser()))
    assert len(commands) >= 20, commands
    assert {("generate",), ("erase",), ("rules", "check"), ("eliminations", "decide")} <= set(commands)
    out = grading(tmp_path, "--help")
    assert out.returncode == 0
    assert "Exit status: 0 done; 1 a data error" in out.stdout
    for words in commands:
        out = grading(tmp_path, *words, "--help")
        assert out.returncode == 0, words
        usage, description = out.stdout.split("\n\n")[:2]
        assert usage.startswith(f"usage: python -m grading {' '.join(words)}"), words
        assert len(description) > 30, words
        assert not description.startswith(("options:", "positional")), words
        assert "Example" in out.stdout, words
        assert f"  python -m grading {' '.join(words)}" in out.stdout.split("Example")[1], words


def test_version_is_the_installed_distributions(tmp_path: Path) -> None:
    from importlib.metadata import version

    out = grading(tmp_path, "--version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"python -m grading {version('customer-grading')}"
    assert cli.version() == version("customer-grading")


def test_exit_statuses_by_kind_of_error(grading_home: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture) -> None:
    """0 done, 1 a data error (any DataError, and the errors of bad files and data), 2 a usage error
    (argparse's and UsageError), 130 interrupted; always one line, no traceback."""
    def raising(error: BaseException):
        def command(args: argparse.Namespace) -> int:
            raise error
        return command

    class Refused(DataError):
        """A data error that is nothing else (no ValueError, no LookupError)."""

    for error, status in ((Refused("the batch was rejected"), 1), (LookupError("nothing published"), 1),
                          (OSError("disk full"), 1), (cli.UsageError("quarter must look like 2024Q4"), 2),
                          (KeyboardInterrupt(), 130)):
        monkeypatch.setattr(cli, "cmd_summary", raising(error))
        assert cli.main(["summary", "--as-of", "2025-01-01"]) == status, error
        err = capsys.readouterr().err
        assert err == (f"error: {error}\n" if status != 130 else "interrupted\n")
    monkeypatch.setattr(cli, "cmd_summary", lambda args: 0)
    assert cli.main(["summary", "--as-of", "2025-01-01"]) == 0
    with pytest.raises(SystemExit) as usage:
        cli.main(["summary", "--as-of", "2025-13-01"])
    assert usage.value.code == 2
    assert "expected a date like 2025-01-01, got '2025-13-01'" in capsys.readouterr().err


def test_a_rejected_run_exits_1_and_duckdb_says_nothing_at_exit(tmp_path: Path) -> None:
    """A batch validation rejects is a data error (exit 1, the checks that failed, no traceback); the
    interpreter's exit after it, with Great Expectations and DuckDB loaded, prints nothing of DuckDB's
    bindings ("nanobind: leaked ..."): grading.cli frees DuckDB's modules before the teardown."""
    source = Source.generated(tmp_path / "source.sqlite", customers=80, seed=4)
    source.sql("INSERT INTO customers SELECT * FROM customers LIMIT 5")  # five customer ids twice
    out = grading(tmp_path, "run", "--as-of", "2025-01-01", env={"GRADING_DATA_DOCS_DIR": "off"})
    assert out.returncode == 1, out.stderr
    assert "expect_column_values_to_be_unique failed in 10 row(s)" in out.stderr
    assert list(stage_lines(out.stderr)) == ["extract"]
    assert "Traceback" not in out.stderr
    assert "nanobind" not in out.stderr
    assert "leaked" not in out.stderr


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
