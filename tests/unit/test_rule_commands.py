"""The rule commands (grading.rule_commands) as a user runs them: a real `python -m grading` subprocess."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import ROOT
from tests.unit.test_cli import grading


def test_rules_check_exit_codes_and_findings(tmp_path: Path) -> None:
    """0: valid; 1: an invalid file (message with file and line), or a warning with --strict; 2: usage."""
    shipped = (ROOT / "include" / "rules" / "tiers.yaml").read_text()
    swapped = tmp_path / "swapped.yaml"  # gold listed before platinum: platinum can never match
    swapped.write_text(shipped.replace("  - name: platinum_band", "  - name: tmp_band").replace(
        "  - name: gold_band", "  - name: platinum_band").replace("  - name: tmp_band", "  - name: gold_band")
        .replace('value: 50000', 'value: TMP').replace('value: 10000', 'value: 50000').replace('value: TMP',
                                                                                              'value: 10000')
        .replace("tier: platinum\n", "tier: TMP\n").replace("tier: gold\n", "tier: platinum\n")
        .replace("tier: TMP\n", "tier: gold\n"))
    gap = tmp_path / "gap.yaml"  # gold only up to 20,000: [20000, 50000] falls to normal
    gap.write_text(shipped.replace('{feature: monetary_window, op: ">=", value: 10000}',
                                   '{feature: monetary_window, op: ">=", value: 10000}\n'
                                   '        - {feature: monetary_window, op: "<", value: 20000}'))
    broken = tmp_path / "broken.yaml"
    broken.write_text(shipped.replace("tiers: [normal, gold, platinum]", "tiers: [normal, gold, platinum"))

    out = grading(tmp_path, "rules", "check")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("ok  ") == 3, out.stdout  # tiers, candidates, service levels
    out = grading(tmp_path, "rules", "check", str(swapped))
    assert out.returncode == 1
    assert "error: " in out.stderr
    assert "rule 'platinum_band': can never match: 'gold_band'" in out.stderr
    out = grading(tmp_path, "rules", "check", str(gap))
    assert out.returncode == 0
    assert "warning: " in out.stdout
    assert "[20000, 50000] match no rule" in out.stdout
    assert grading(tmp_path, "rules", "check", "--strict", str(gap)).returncode == 1
    out = grading(tmp_path, "rules", "check", str(broken))
    assert out.returncode == 1
    assert out.stderr.startswith(f"error: {broken}:")
    assert "not valid YAML" in out.stderr
    assert "Traceback" not in out.stderr
    assert grading(tmp_path, "rules", "check", "--no-such-flag").returncode == 2
