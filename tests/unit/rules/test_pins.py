"""The rule files a run pinned: load_rules checks a pair of files together, in_effect refuses
rules not yet effective, and run_rules grades every stage of a run with the bytes it started with."""

from __future__ import annotations

import hashlib
import logging
import shutil
from datetime import date
from pathlib import Path

import pytest

from grading.frames import read_frame
from grading.rules.files import RuleError
from grading.rules.pins import load_rules, run_rules
from grading.warehouse import migrate, open_engine
from tests.helpers import ROOT


@pytest.fixture
def include(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of include/ in force (GRADING_INCLUDE_DIR), whose rule files a test may change."""
    folder = tmp_path / "include"
    shutil.copytree(ROOT / "include", folder)
    monkeypatch.setenv("GRADING_INCLUDE_DIR", str(folder))
    return folder


def pins(url: str, run_id: str):
    with open_engine(url) as engine, engine.connect() as conn:
        return read_frame(conn, "SELECT role, file_path, content, content_sha256 FROM ops.run_rule_pins "
                                "WHERE run_id = :run ORDER BY role", {"run": run_id})


def test_rules_take_effect_on_their_effective_date(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rule file grades as-of dates from its effective_date on; an earlier period is refused
    before anything is read or written."""
    import shutil
    from datetime import date

    from grading.pipeline import Connections, run_grading
    from grading.rules.pins import in_effect

    include = tmp_path / "include"
    shutil.copytree(ROOT / "include", include)
    tiers = include / "rules" / "tiers.yaml"
    tiers.write_text(tiers.read_text().replace("effective_date: 2010-01-01", "effective_date: 2025-06-01"))
    monkeypatch.setenv("GRADING_INCLUDE_DIR", str(include))
    conns = Connections(f"sqlite:///{tmp_path / 'none.sqlite'}", f"duckdb:///{tmp_path / 'w.duckdb'}")
    with pytest.raises(RuleError, match=r"tiers\.yaml: version 1\.2\.0 takes effect on 2025-06-01, after the as-of "
                                        r"date 2025-01-01: it cannot grade that period"):
        run_grading(conns, date(2025, 1, 1))
    assert not (tmp_path / "w.duckdb").exists()
    assert not (tmp_path / "none.sqlite").exists()
    assert in_effect(load_rules(), date(2025, 6, 1))[0].source.effective_date == date(2025, 6, 1)


def test_a_run_keeps_the_rules_it_pinned_when_the_files_change(include: Path, tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    tiers = include / "rules" / "tiers.yaml"
    with open_engine(url) as engine:
        migrate(engine)
        first = run_rules(engine, "run-1")
        tiers.write_text(tiers.read_text().replace('version: "1.2.0"', 'version: "1.3.0"')
                         .replace('op: ">=", value: 10000', 'op: ">=", value: 20000'))
        retried = run_rules(engine, "run-1")  # a later stage or a retry of run-1, after a deploy
        later = run_rules(engine, "run-2")
        with pytest.raises(RuleError, match=r"version 1\.2\.0 takes effect on 2010-01-01, after the as-of date "
                                            r"2009-12-31"):
            run_rules(engine, "run-1", date(2009, 12, 31))
    assert (first[0].source.version, retried[0].source.version, later[0].source.version) == ("1.2.0", "1.2.0", "1.3.0")
    assert retried[0].rules[1].when.children[0].value == 10000
    assert later[0].rules[1].when.children[0].value == 20000
    pinned = pins(url, "run-1")
    assert pinned["role"].tolist() == ["candidates", "protected_list", "service_levels", "tiers"]
    assert pinned["file_path"].tolist() == [str(include / "rules" / name) for name in
                                            ("candidates.yaml", "protected_customers.txt", "service_levels.yaml",
                                             "tiers.yaml")]
    original = (ROOT / "include" / "rules" / "tiers.yaml").read_bytes()
    assert pinned["content"].iloc[3] == original.decode("utf-8")
    assert pinned["content_sha256"].iloc[3] == hashlib.sha256(original).hexdigest()


def test_a_broken_rule_file_stops_the_run_before_anything_is_pinned(include: Path, tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    tiers = include / "rules" / "tiers.yaml"
    tiers.write_text(tiers.read_text().replace('op: ">", value: 50000', 'op: ">", value: 5000'))
    with open_engine(url) as engine:
        migrate(engine)
        with pytest.raises(RuleError, match=r"tiers\.yaml: rule 'gold_band': can never match: 'platinum_band'"):
            run_rules(engine, "run-1")
    assert pins(url, "run-1").empty


def test_a_proposed_tier_file_may_lack_tiers_the_candidate_rules_name(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """In force, candidate rules naming a tier the tier file lacks stop the pair; beside a
    proposal (a backtest, a dry run) the same finding is only a warning."""
    proposed = tmp_path / "tiers.yaml"
    proposed.write_text((ROOT / "include" / "rules" / "tiers.yaml").read_text()
                        .replace("tiers: [normal, gold, platinum]", "tiers: [normal, gold, diamond]")
                        .replace("tier: platinum\n", "tier: diamond\n"))
    with pytest.raises(RuleError, match=r"tier_year_ago compared with 'platinum', not a tier of tiers\.yaml"):
        load_rules(tier_file=proposed)
    with caplog.at_level(logging.WARNING, logger="grading.rules.pins"):
        tiers, _ = load_rules(tier_file=proposed, proposal=True)
    assert tiers.tiers == ("normal", "gold", "diamond")
    assert any("tier_year_ago compared with 'platinum'" in r.getMessage() and r.getMessage().endswith("(warning)")
               for r in caplog.records)
