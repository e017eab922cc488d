"""Rule files pinned to a run: every stage of a run grades with the bytes the run started with.

Airflow runs a grading's tasks minutes apart, and any of them may be retried later still;
a rules deploy in between would publish rows stamped with one rule version but graded on
another's windows. So a run pins its rule files when its first stage starts - the tier file,
the candidate file and the protected list it names, content and sha256 - in
``ops.run_rule_pins``, and every later stage and every retry loads the rules from there.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from grading.features import RULE_FEATURES
from grading.frames import bulk_insert, read_frame
from grading.rules import checks as rule_checks
from grading.rules.files import Reader, RuleError, load_candidate_rules, load_tier_rules, rules_dir
from grading.rules.model import CandidateRules, TierRules
from grading.warehouse import exclusive

log = logging.getLogger(__name__)


def load_rules(tier_file: Path | None = None, candidate_file: Path | None = None,
               read: Reader = Path.read_bytes, *, proposal: bool = False) -> tuple[TierRules, CandidateRules]:
    """The tier and candidate rule files in force (include/rules/), or the ones given, checked
    each on its own and together (grading.rules.checks): an error raises RuleError listing
    every error found, a warning is logged.

    With ``proposal`` - a draft tried beside the other file in force, by a backtest, a dry-run
    or the criteria of a draft - what the pair gets wrong together (candidate rules naming
    tiers the draft does not have) is a warning: that pair does not grade anything.
    """
    folder = rules_dir()
    tiers = load_tier_rules(tier_file or folder / "tiers.yaml", RULE_FEATURES, read)
    candidates = load_candidate_rules(candidate_file or folder / "candidates.yaml", RULE_FEATURES, read)
    findings = rule_checks.tier_findings(tiers)
    findings += [f if not proposal else rule_checks.Finding("warning", f.source, f.rule, f.message)
                 for f in rule_checks.candidate_findings(candidates, tiers)]
    problems = rule_checks.errors(findings)
    if problems:
        raise RuleError("\n".join(str(f) for f in problems))
    for finding in findings:
        log.warning("%s (warning)", finding)
    return tiers, candidates


def in_effect(rules: tuple[TierRules, CandidateRules], as_of: date) -> tuple[TierRules, CandidateRules]:
    """The rules, if every file has taken effect by ``as_of``; RuleError otherwise.

    A rule file's effective_date is the first as-of date it may grade: criteria published
    later are not applied to earlier periods without saying so. To grade history with them
    (a first backfill), set effective_date to the first period they should grade.
    """
    for source in (rules[0].source, rules[1].source):
        if source.effective_date > as_of:
            raise RuleError(f"{source.path}: version {source.version} takes effect on {source.effective_date}, after "
                            f"the as-of date {as_of}: it cannot grade that period. Grade it with the rules in force "
                            "then, or set effective_date to the first period these rules should grade.")
    return rules


def run_rules(warehouse: Engine, run_id: str, as_of: date | None = None) -> tuple[TierRules, CandidateRules]:
    """The rules of run ``run_id``: as pinned by an earlier stage of the run, or pinned now;
    with ``as_of``, only if they have taken effect by then (``in_effect``).

    Pinning stores exactly the bytes that were checked, and a broken rule file stops the
    run before anything is stored; the rules returned are always loaded from exactly the pinned bytes.
    """
    with exclusive(warehouse, "grading.rule_pins") as conn:
        pinned = read_frame(conn, "SELECT role, file_path, content FROM ops.run_rule_pins WHERE run_id = :run",
                            {"run": run_id})
        # pinned now: loaded and checked from the very bytes just stored; else from the stored bytes
        rules = _pin(conn, run_id) if pinned.empty else _from_pins(pinned)
    return rules if as_of is None else in_effect(rules, as_of)


def _from_pins(pinned: pd.DataFrame) -> tuple[TierRules, CandidateRules]:
    """The rules loaded from the bytes a run pinned."""
    files = {path: content.encode("utf-8") for path, content in zip(pinned["file_path"], pinned["content"],
                                                                     strict=True)}
    paths = dict(zip(pinned["role"], pinned["file_path"], strict=True))

    def read(path: Path) -> bytes:
        if str(path) not in files:
            raise FileNotFoundError(path)
        return files[str(path)]

    return load_rules(Path(paths["tiers"]), Path(paths["candidates"]), read)


def _pin(conn: sa.Connection, run_id: str) -> tuple[TierRules, CandidateRules]:
    """Check the rule files in force, store the bytes that were checked, and return the rules."""
    read: dict[str, bytes] = {}

    def capture(path: Path) -> bytes:
        read[str(path)] = path.read_bytes()
        return read[str(path)]

    tiers, candidates = load_rules(read=capture)
    now = datetime.now(UTC).replace(tzinfo=None)
    roles = {"tiers": tiers.source.path, "candidates": candidates.source.path,
             "protected_list": candidates.protected_list}
    pins = pd.DataFrame([{"run_id": run_id, "role": role, "file_path": str(path),
                          "content_sha256": hashlib.sha256(read[str(path)]).hexdigest(),
                          "content": read[str(path)].decode("utf-8"), "pinned_at": now}
                         for role, path in roles.items() if path is not None])
    bulk_insert(conn, "ops.run_rule_pins", pins)
    return tiers, candidates
