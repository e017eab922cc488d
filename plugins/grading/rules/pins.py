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
from grading.rules.service import ServiceLevels, check_coverage, load_service_levels
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


def candidate_actions(candidates: CandidateRules) -> set[str]:
    """Every action a candidate rule file can give a listed customer."""
    actions = {rule.action for rules_list in candidates.lists().values() for rule in rules_list.rules}
    return {a for a in actions | {r.action for r in candidates.churn_reasons} | {candidates.unknown_reason_action}
            if a}


def load_service(rules: tuple[TierRules, CandidateRules], path: Path | None = None,
                 read: Reader = Path.read_bytes) -> ServiceLevels:
    """The service-level file in force (or ``path``), checked against the tier and candidate rules
    it serves: a tier without a level is a RuleError, an action without a treatment a warning."""
    levels = load_service_levels(path or rules_dir() / "service_levels.yaml", read)
    for warning in check_coverage(levels, rules[0].tiers, candidate_actions(rules[1])):
        log.warning("%s (warning)", warning)
    return levels


def in_effect(rules: tuple[TierRules, CandidateRules], as_of: date,
              *service: ServiceLevels) -> tuple[TierRules, CandidateRules]:
    """The rules, if every file has taken effect by ``as_of``; RuleError otherwise.

    A rule file's effective_date is the first as-of date it may grade: criteria published
    later are not applied to earlier periods without saying so. To grade history with them
    (a first backfill), set effective_date to the first period they should grade.
    """
    for source in (rules[0].source, rules[1].source, *(rule.source for rule in service)):
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
    service = load_service((tiers, candidates), read=capture)
    now = datetime.now(UTC).replace(tzinfo=None)
    roles = {"tiers": tiers.source.path, "candidates": candidates.source.path,
             "protected_list": candidates.protected_list, "service_levels": service.source.path}
    pins = pd.DataFrame([{"run_id": run_id, "role": role, "file_path": str(path),
                          "content_sha256": hashlib.sha256(read[str(path)]).hexdigest(),
                          "content": read[str(path)].decode("utf-8"), "pinned_at": now}
                         for role, path in roles.items() if path is not None])
    bulk_insert(conn, "ops.run_rule_pins", pins)
    return tiers, candidates


def run_service_levels(warehouse: Engine, run_id: str,
                       rules: tuple[TierRules, CandidateRules]) -> ServiceLevels:
    """The service levels run ``run_id`` pinned with ``rules`` (its rules, from :func:`run_rules`,
    which pins all three files when the run's first stage starts)."""
    with warehouse.connect() as conn:
        pinned = read_frame(conn, "SELECT file_path, content FROM ops.run_rule_pins WHERE run_id = :run "
                                  "AND role = 'service_levels'", {"run": run_id})
    if pinned.empty:  # a run pinned before service levels were pinned: the file in force
        log.warning("run %s pinned no service-level file; using the one in force", run_id)
        return load_service(rules)
    content = pinned["content"].iloc[0].encode("utf-8")
    return load_service(rules, Path(pinned["file_path"].iloc[0]), lambda _path: content)
