"""The order of stages for one as-of date, shared by the DAG tasks and the CLI.

Each stage opens the warehouse, does one job, records a row in audit.run_audit and
returns a small JSON-able summary (what an Airflow task may pass on through XCom); the
data itself moves through the warehouse. Each also logs its result as one line (rows and
seconds, grading.stage_lines), which is what a task log or the command line's progress shows.
``run_grading`` runs every stage in one process.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from grading import candidates, churn, extract, features, ledger, periods, privacy, publish, tiers, validation
from grading.catalog import apply_comments
from grading.frames import bulk_insert
from grading.potential import score_potential
from grading.review.quarters import Quarter, review_checks
from grading.review.tables import build_review
from grading.rules.model import RuleFile
from grading.rules.pins import in_effect, load_rules, load_service, run_rules, run_service_levels
from grading.settings import (
    SOURCE_CONN_ID,
    WAREHOUSE_CONN_ID,
    connection_url,
    grading_home,
    mask_urls,
    pseudonym_key,
    source_mapping,
)
from grading.sources import load_mapping
from grading.stage_lines import Progress, reported
from grading.warehouse import migrate, open_engine

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Connections:
    source_url: str
    warehouse_url: str
    source_mapping: str | None = None  # a mapping file (GRADING_SOURCE_MAPPING); None: canonical source

    @classmethod
    def resolve(cls, *, ask_airflow: bool = False) -> Connections:
        mapping = source_mapping()
        return cls(connection_url(SOURCE_CONN_ID, ask_airflow=ask_airflow),
                   connection_url(WAREHOUSE_CONN_ID, ask_airflow=ask_airflow),
                   str(mapping) if mapping else None)


def new_run_id(as_of: date) -> str:
    return f"cli__{as_of.isoformat()}__{uuid.uuid4().hex[:8]}"


def as_of_instant(as_of: date) -> datetime:
    """The cutoff of an as-of date: everything strictly before its midnight (UTC) counts."""
    return datetime.combine(as_of, datetime.min.time())


@contextmanager
def audited(warehouse: Engine, run_id: str, as_of: date, stage: str,
            rule_version: str | None = None) -> Iterator[dict]:
    """Record the stage's outcome, duration and output rows in audit.run_audit, even on failure."""
    started = datetime.now(UTC).replace(tzinfo=None)
    clock = time.perf_counter()
    outcome = {"rows_out": None, "message": None}
    status = "success"
    try:
        yield outcome
    except Exception as exc:
        status, outcome["message"] = "failed", f"{type(exc).__name__}: {exc}"[:4000]
        raise
    finally:
        finished = started + timedelta(seconds=time.perf_counter() - clock)
        with warehouse.begin() as conn:
            message = outcome["message"] and privacy.redact(conn, mask_urls(outcome["message"]))  # BI-readable
            row = pd.DataFrame([{
                "run_id": run_id, "as_of_date": as_of, "stage": stage, "status": status,
                "rows_out": outcome["rows_out"], "started_at": started, "finished_at": finished,
                "rule_version": rule_version, "message": message,
            }]).astype({"rows_out": "Int64", "rule_version": "string", "message": "string"})
            bulk_insert(conn, "audit.run_audit", row)
        # a success says more in the stage's one-line result (grading.stage_lines)
        log.log(logging.DEBUG if status == "success" else logging.INFO, "stage %s for %s: %s in %.2fs", stage, as_of,
                status, (finished - started).total_seconds())


def prepare_warehouse(warehouse: Engine) -> list[str]:
    """Apply pending migrations and refresh the published tables' comments; returns migrations applied."""
    applied = migrate(warehouse)
    with warehouse.begin() as conn:
        apply_comments(conn)
    return applied


@reported("extract")
def extract_stage(conns: Connections, as_of: date, run_id: str) -> dict:
    """Prepare the warehouse if needed, then extract every source table up to ``as_of``.

    With a source mapping, the mapping is checked before the warehouse is touched, a file
    drop needs no source database, and rows the mapping rejected are counted in the
    summary (``rejected``) and the audit message.
    """
    mapping = load_mapping(conns.source_mapping) if conns.source_mapping else None
    needs_source = mapping is None or mapping.kind == "sql"
    with open_engine(conns.warehouse_url) as warehouse, \
            (open_engine(conns.source_url) if needs_source else nullcontext()) as source:
        prepare_warehouse(warehouse)
        run_rules(warehouse, run_id, as_of)  # the run's rule files, pinned before its first row is read
        with audited(warehouse, run_id, as_of, "extract") as audit:
            batch = datetime.now(UTC).replace(tzinfo=None)
            rows = extract.extract(source, warehouse, as_of_instant(as_of), pseudonym_key(), batch=batch,
                                   mapping=mapping, run_id=run_id)
            rejected, suppressed = rows.pop("rejected", {}), rows.pop("suppressed", {})
            audit["rows_out"] = sum(v for k, v in rows.items() if k not in ("customer_keys_added", "absorbed"))
            notes = []
            if suppressed:
                notes.append("skipped the rows of erased customers (ops.erasures): " + ", ".join(
                    f"{table} {count}" for table, count in suppressed.items()))
            if rows.get("absorbed"):
                notes.append(f"took over the rows of {rows['absorbed']} earlier batch(es) left without a verdict")
            if rejected:
                notes.append("rejected by the source mapping: " + "; ".join(
                    f"{table} {count} ({reason})" for table, reasons in rejected.items()
                    for reason, count in reasons.items()))
            audit["message"] = "; ".join(notes) or None
    return {"batch": batch.isoformat(), "rows": rows, "rejected": rejected, "suppressed": suppressed}


@reported("validate")
def validate_stage(conns: Connections, as_of: date, run_id: str, batch: str) -> dict:
    """Gate the extract batch.

    A canonical SQL source is opened too, to tell a quiet period from a broken feed; a mapped
    source names its tables otherwise (or is a file drop), so earlier periods are the evidence.
    """
    with open_engine(conns.warehouse_url) as warehouse, \
            (nullcontext() if conns.source_mapping else open_engine(conns.source_url)) as source, \
            audited(warehouse, run_id, as_of, "validate") as audit:
        report = validation.run(warehouse, as_of, datetime.fromisoformat(batch), run_id, source=source)
        audit["rows_out"] = len(report.results)
    return {"checks": len(report.results), "failed": len(report.failed),
            "quarantined": report.quarantined, "data_docs": report.data_docs}


@contextmanager
def reading_raw(warehouse: Engine, stage: str) -> Iterator[tuple[int, datetime | None]]:
    """Around a stage that reads raw: no batch may be in flight when it starts, and none may
    arrive or get its verdict before it ends (grading.ledger.settled), so it grades only rows
    that passed validation. Yields the ledger token for a check inside a final transaction."""
    with warehouse.connect() as conn:
        token = ledger.settled(conn)
    yield token
    with warehouse.connect() as conn:
        ledger.unchanged(conn, token, stage)


@reported("features")
def features_stage(conns: Connections, as_of: date, run_id: str) -> dict:
    """Compute the period's features; the qualification window is the tier rule file's."""
    with open_engine(conns.warehouse_url) as warehouse, audited(warehouse, run_id, as_of, "features") as audit:
        started = datetime.now(UTC).replace(tzinfo=None)
        with reading_raw(warehouse, "features"):
            tier_rules, _ = run_rules(warehouse, run_id, as_of)
            audit["rows_out"] = features.compute_features(warehouse, as_of, tier_rules.qualification)
        with warehouse.begin() as conn:
            periods.record_features(conn, as_of, run_id, started)
    return {"customers": audit["rows_out"]}


@reported("churn")
def churn_stage(conns: Connections, as_of: date, run_id: str) -> dict:
    """Score every customer as of ``as_of`` with a recent stored churn model, training and
    judging one on history first when none is young enough; then their potential (the next
    365 days' expected value, grading.potential), judged on the last year against last year's spend."""
    with open_engine(conns.warehouse_url) as warehouse, audited(warehouse, run_id, as_of, "churn") as audit, \
            reading_raw(warehouse, "churn"):
        outcome = churn.score_churn(warehouse, as_of, run_id)
        report = outcome.report
        scored = score_potential(warehouse, as_of, run_id)
        audit["rows_out"] = report.holdout_rows
        audit["message"] = f"{outcome.note}; potential: {scored['scorer']} scored, as {scored['reason']}"
    return {"auc": report.auc, "baseline_auc": report.baseline_auc, "beats_baseline": report.beats_baseline,
            "scorer": report.scorer, "model_as_of": outcome.model_as_of.isoformat() if outcome.model_as_of else None,
            "note": outcome.note, "potential_scorer": scored["scorer"], "potential_reason": scored["reason"],
            "potential_customers": scored["customers"], "potential_holdout_mae": scored["holdout_mae"],
            "potential_baseline_mae": scored["baseline_mae"], "potential_holdout_rmse": scored["holdout_rmse"],
            "potential_baseline_rmse": scored["baseline_rmse"],
            "potential_holdout_relative_error": scored["holdout_relative_error"]}


def record_rule_file(warehouse: Engine, run_id: str, as_of: date, source: RuleFile) -> None:
    """Note in audit.run_rule_files which rule file (version and content hash) the run applied."""
    row = pd.DataFrame([{"run_id": run_id, "as_of_date": as_of, "kind": source.kind, "file_name": source.path.name,
                         "version": source.version, "rules_sha256": source.content_hash}])
    with warehouse.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit.run_rule_files WHERE run_id = :run_id AND kind = :kind"),
                     {"run_id": run_id, "kind": source.kind})
        bulk_insert(conn, "audit.run_rule_files", row)


@reported("tiers")
def tiers_stage(conns: Connections, as_of: date, run_id: str) -> dict:
    with open_engine(conns.warehouse_url) as warehouse:
        tier_rules, _ = run_rules(warehouse, run_id, as_of)
        version = tier_rules.source.version
        with audited(warehouse, run_id, as_of, "tiers", version) as audit:
            counts = tiers.grade(warehouse, as_of, tier_rules, run_id)
            record_rule_file(warehouse, run_id, as_of, tier_rules.source)
            audit["rows_out"] = int(counts.sum())
    return {"tiers": {k: int(v) for k, v in counts.items()}, "rule_version": version}


@reported("flags")
def flags_stage(conns: Connections, as_of: date, run_id: str) -> dict:
    with open_engine(conns.warehouse_url) as warehouse:
        tier_rules, candidate_rules = run_rules(warehouse, run_id, as_of)
        version = candidate_rules.source.version
        with audited(warehouse, run_id, as_of, "flags", version) as audit, reading_raw(warehouse, "flags"):
            counts = candidates.flag(warehouse, as_of, tier_rules, candidate_rules, run_id)
            record_rule_file(warehouse, run_id, as_of, candidate_rules.source)
            audit["rows_out"] = sum(counts.values())
    return counts


@reported("publish")
def publish_stage(conns: Connections, as_of: date, run_id: str) -> dict:
    """Publish the period; the summary names the published periods that are stale now."""
    with open_engine(conns.warehouse_url) as warehouse, audited(warehouse, run_id, as_of, "publish") as audit:
        rules = run_rules(warehouse, run_id)
        standards = publish.Standards(run_service_levels(warehouse, run_id, rules), rules[0].tiers, rules[1].review)
        with warehouse.connect() as conn:
            token = ledger.settled(conn)
        published = publish.publish(warehouse, as_of, run_id, token, standards)
        audit["rows_out"] = sum(published.rows.values())
        if published.stale:
            audit["message"] = "stale published periods (regrade them in date order): " + "; ".join(
                f"{state.as_of}: {state.reason}" for state in published.stale)
            log.warning("%s", audit["message"])
    return {**published.rows, "stale_periods": [state.as_of.isoformat() for state in published.stale]}


@reported("export")
def export_stage(conns: Connections, as_of: date, run_id: str) -> dict:
    """Hand the period's changes to the CRM targets (grading.export); a failed target raises
    ExportFailed after the others ran and every attempt is recorded in ops.exports."""
    from grading.export.run import export

    with open_engine(conns.warehouse_url) as warehouse, audited(warehouse, run_id, as_of, "export") as audit:
        results = export(warehouse, as_of, run_id)
        audit["rows_out"] = sum(r.rows for r in results)
        audit["message"] = "; ".join(f"{r.target}: {r.rows} change(s) since {r.baseline or 'the start'} to "
                                     f"{r.location}" for r in results) or "no export target configured"
    return {"targets": [{"target": r.target, "rows": r.rows, "baseline": r.baseline.isoformat() if r.baseline
                         else None, "location": r.location, "changes": r.counts} for r in results]}


@reported("review")
def review_stage(conns: Connections, quarter: Quarter, run_id: str, output_dir: Path | None = None,
                 proposed_tiers: Path | None = None) -> dict:
    """Build the quarter's evaluation tables and write its report (HTML + CSV) to ``output_dir``.

    With ``proposed_tiers``, the report also shows what that rule file would have done at the
    quarter's close (a backtest; nothing of it is published). A fourth quarter closes the year:
    its review also builds the year's annual review (:func:`annual_stage`), in the folder beside
    the quarter's named after the year (reviews/2024Q4 and reviews/2024).
    """
    from grading import backtest
    from grading.review import html

    folder = output_dir or grading_home() / "reviews" / str(quarter)
    with open_engine(conns.warehouse_url) as warehouse:
        prepare_warehouse(warehouse)
        with audited(warehouse, run_id, quarter.end, f"review {quarter}") as audit:
            results = build_review(warehouse, quarter)
            with warehouse.connect() as conn:  # an unfinished quarter, stale periods, pending customers
                results.update(review_checks(conn, quarter, results["_meta"]["snapshot"].iloc[0]))
            warnings = results["_warnings"]["warning"].tolist()
            for warning in warnings:
                log.warning("review %s: %s", quarter, warning)
            compared = None
            if proposed_tiers:
                current, _ = load_rules()
                proposed, _ = load_rules(tier_file=proposed_tiers, proposal=True)
                snapshot = results["_meta"]["snapshot"].iloc[0]
                compared = backtest.backtest(warehouse, snapshot, current, proposed)
            page = html.write(folder, quarter, results, compared)
            audit["rows_out"] = sum(len(f) for name, f in results.items() if not name.startswith("_"))
            audit["message"] = f"report: {page}" + "".join(f"; WARNING: {w}" for w in warnings)
    summary = {"quarter": str(quarter), "report": str(page), "warnings": warnings,
               "tiers": results["tier_distribution"][["tier", "customers", "revenue_share"]].to_dict("records")}
    if quarter.number == 4:
        summary["annual"] = annual_stage(conns, quarter.year, run_id, folder.parent / str(quarter.year))
    return summary


def annual_stage(conns: Connections, year: int, run_id: str, output_dir: Path | None = None) -> dict:
    """Build the annual review of ``year`` from its stored quarterly reviews (marts.review_annual) and
    write its page (annual.html + annual.csv) to ``output_dir``, by default $GRADING_HOME/reviews/<year>.
    An incomplete year is built all the same, with its warnings in the page, the log and the run record."""
    from grading.review import annual_html
    from grading.review.annual import build_annual

    folder = output_dir or grading_home() / "reviews" / str(year)
    with open_engine(conns.warehouse_url) as warehouse:
        prepare_warehouse(warehouse)
        # stage "review 2024", as a quarter's is "review 2024Q4": `runs` counts a run that did it as done
        with audited(warehouse, run_id, date(year + 1, 1, 1), f"review {year}") as audit:
            results = build_annual(warehouse, year)
            warnings = results["_warnings"]["warning"].tolist()
            for warning in warnings:
                log.warning("annual review %s: %s", year, warning)
            page = annual_html.write(folder, year, results)
            audit["rows_out"] = len(results["annual"])
            audit["message"] = f"report: {page}" + "".join(f"; WARNING: {w}" for w in warnings)
    return {"year": year, "report": str(page), "warnings": warnings,
            "quarters_reviewed": list(results["_meta"]["quarters_reviewed"].iloc[0]), "rows": len(results["annual"])}


def run_grading(conns: Connections, as_of: date, run_id: str | None = None, progress: Progress | None = None) -> dict:
    """Every stage for ``as_of`` in order, in this process; returns each stage's summary.
    ``progress`` receives each stage's one-line result as the stage ends."""
    run_id = run_id or new_run_id(as_of)
    rules = load_rules()  # a broken or not yet effective rule file stops it before the warehouse is touched
    in_effect(rules, as_of, load_service(rules))
    summary = {"run_id": run_id, "as_of": as_of.isoformat()}
    summary["extract"] = extract_stage(conns, as_of, run_id, progress=progress)
    summary["validate"] = validate_stage(conns, as_of, run_id, summary["extract"]["batch"], progress=progress)
    summary["features"] = features_stage(conns, as_of, run_id, progress=progress)
    summary["churn"] = churn_stage(conns, as_of, run_id, progress=progress)
    summary["tiers"] = tiers_stage(conns, as_of, run_id, progress=progress)
    summary["flags"] = flags_stage(conns, as_of, run_id, progress=progress)
    summary["publish"] = publish_stage(conns, as_of, run_id, progress=progress)
    summary["export"] = export_stage(conns, as_of, run_id, progress=progress)
    return summary
