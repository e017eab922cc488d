"""Rule files pinned to a run: every stage of a run grades with the bytes the run started with.

Airflow runs a grading's tasks minutes apart, and any of them may be retried later still;
a rules deploy in between would publish rows stamped with one rule version but graded on
another's windows. So a run pins its rule files when its first stage starts - the tier file,
the candidate file and the protected list it names, content and sha256 - in
``ops.run_rule_pins``, and every later stage and every retry loads the rules from there.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from grading.features import RULE_FEATURES
from grading.rules import CandidateRules, Reader, TierRules, load_candidate_rules, load_tier_rules, rules_dir
from grading.warehouse import bulk_insert, exclusive, read_frame


def load_rules(tier_file: Path | None = None, candidate_file: Path | None = None,
               read: Reader = Path.read_bytes) -> tuple[TierRules, CandidateRules]:
    """The tier and candidate rule files in force (include/rules/), or the ones given, checked."""
    folder = rules_dir()
    return (load_tier_rules(tier_file or folder / "tiers.yaml", RULE_FEATURES, read),
            load_candidate_rules(candidate_file or folder / "candidates.yaml", RULE_FEATURES, read))


def run_rules(warehouse: Engine, run_id: str) -> tuple[TierRules, CandidateRules]:
    """The rules of run ``run_id``: as pinned by an earlier stage of the run, or pinned now.

    Pinning stores exactly the bytes that were checked, and a broken rule file stops the
    run before anything is stored; the rules returned are always loaded from the pinned bytes.
    """
    with exclusive(warehouse, "grading.rule_pins") as conn:
        pinned = read_frame(conn, "SELECT role, file_path, content FROM ops.run_rule_pins WHERE run_id = :run",
                            {"run": run_id})
        if pinned.empty:
            pinned = _pin(conn, run_id)
        files = {path: content.encode("utf-8") for path, content in zip(pinned["file_path"], pinned["content"],
                                                                         strict=True)}
        paths = dict(zip(pinned["role"], pinned["file_path"], strict=True))

        def read(path: Path) -> bytes:
            if str(path) not in files:
                raise FileNotFoundError(path)
            return files[str(path)]

        return load_rules(Path(paths["tiers"]), Path(paths["candidates"]), read)


def _pin(conn: sa.Connection, run_id: str) -> pd.DataFrame:
    """Check the rule files in force and store the bytes that were checked."""
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
    return pins
