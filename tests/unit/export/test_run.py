"""The CRM export of a period to its targets (grading.export.run): baselines, ops.exports, failures."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from grading.export.run import ExportFailed, Target, baseline_for, export
from grading.export.webhook import Webhook
from grading.frames import read_frame
from tests.conftest import CrmReceiver
from tests.helpers import APRIL, JULY, publish_by_hand


def exports(engine: Engine):
    with engine.connect() as conn:
        return read_frame(conn, "SELECT target, as_of_date, baseline_as_of, rows_exported, checksum, status, message "
                                "FROM ops.exports ORDER BY finished_at")


def test_each_period_is_exported_against_the_last_one_exported_and_again_with_the_same_content(
        migrated_warehouse: Engine, tmp_path: Path) -> None:
    publish_by_hand(migrated_warehouse)
    target = Target("files", folder=tmp_path)
    (april,) = export(migrated_warehouse, APRIL, "r1", [target])
    (july,) = export(migrated_warehouse, JULY, "r2", [target])
    (again,) = export(migrated_warehouse, JULY, "r3", [target])
    assert (april.baseline, april.rows, july.baseline, july.rows) == (None, 6, APRIL, 3)
    assert again.baseline == APRIL
    assert again.counts == july.counts
    log = exports(migrated_warehouse)
    assert log["status"].tolist() == ["success"] * 3
    assert log["checksum"].iloc[1] == log["checksum"].iloc[2]  # the rerun sent the same content
    with migrated_warehouse.connect() as conn:
        baseline, exported_at = baseline_for(conn, "files", JULY)
        assert (baseline, exported_at.date()) == (APRIL, date.today())
        assert baseline_for(conn, "webhook", JULY) == (None, None)  # another target keeps its own history


def test_a_failing_target_is_recorded_does_not_stop_the_others_and_is_retried_from_the_same_baseline(
        migrated_warehouse: Engine, tmp_path: Path, crm_server: CrmReceiver) -> None:
    publish_by_hand(migrated_warehouse)
    crm_server.fail_always = True
    webhook = Target("webhook", hook=Webhook(crm_server.url, {}, attempts=2, backoff_seconds=0.01))
    with pytest.raises(ExportFailed, match=r"webhook: WebhookError: webhook did not take batch 1/1 of 2024-04-01 "
                                           r"after 2 attempts: HTTP 503 .*python -m grading export --as-of 2024-04-01"):
        export(migrated_warehouse, APRIL, "r1", [webhook, Target("files", folder=tmp_path)])
    assert (tmp_path / "2024-04-01" / "manifest.json").exists()
    log = exports(migrated_warehouse)
    assert log[["target", "status"]].values.tolist() == [["webhook", "failed"], ["files", "success"]]
    crm_server.fail_always, crm_server.fail_first = False, 0
    export(migrated_warehouse, APRIL, "r2", [webhook])
    assert len(crm_server.rows()) == 6
    with migrated_warehouse.connect() as conn:
        assert baseline_for(conn, "webhook", JULY)[0] == APRIL  # the failed attempt is no baseline, the retry is


def test_a_period_nothing_published_cannot_be_exported(migrated_warehouse: Engine, tmp_path: Path) -> None:
    with pytest.raises(LookupError, match="nothing is published for 2024-04-01"):
        export(migrated_warehouse, APRIL, "r1", [Target("files", folder=tmp_path)])
