"""Human-readable summaries of what the warehouse holds for a period and of recent runs, for the CLI and the demo.

Everything is read back from the published tables, so the summary shows what BI tools
will see, whichever process (the CLI or Airflow tasks) did the run.
"""

from __future__ import annotations

from datetime import date

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from grading.candidates import pending_counts
from grading.frames import read_frame
from grading.publish import published_counts
from grading.settings import mask_urls
from grading.validation import data_docs_dir
from grading.warehouse import open_engine


class NothingPublished(LookupError):
    """No successful run has published the requested as-of date."""


def print_run_summary(warehouse_url: str, as_of: date) -> None:
    """Print customers per tier, candidates, validation, tables written and the latest review."""
    with open_engine(warehouse_url) as warehouse, warehouse.connect() as conn:
        if not conn.execute(sa.text("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'audit' "
                                    "AND table_name = 'run_audit'")).scalar():
            raise NothingPublished(f"{mask_urls(warehouse_url)} holds no graded period yet: grade one with "
                                   "python -m grading run --as-of DATE")
        runs = read_frame(conn, "SELECT run_id FROM audit.run_audit WHERE as_of_date = :as_of AND stage = 'publish' "
                                "AND status = 'success' ORDER BY finished_at DESC", {"as_of": as_of})
        if runs.empty:
            raise NothingPublished(f"no successful run has published as-of {as_of} in {mask_urls(warehouse_url)}")
        run_id = runs["run_id"].iloc[0]
        tiers = read_frame(conn, "SELECT tier, customers, monetary_365d FROM marts.tier_summary "
                                 "WHERE as_of_date = :as_of ORDER BY tier_rank DESC", {"as_of": as_of})
        checks = read_frame(conn, "SELECT success, severity, unexpected_count FROM audit.validation_results "
                                  "WHERE run_id = :run_id", {"run_id": run_id})
        rows = published_counts(conn, as_of)
        pending = pending_counts(conn, as_of)
        lost = read_frame(conn, "SELECT status, COUNT(*) AS n FROM marts.lost_customers "
                                "GROUP BY status ORDER BY status")
        stale = read_frame(conn, "SELECT as_of_date, stale_reason FROM marts.published_periods WHERE stale "
                                 "ORDER BY as_of_date")
        queue = read_frame(conn, "SELECT review_status, COUNT(*) AS n FROM marts.elimination_status "
                                 "WHERE as_of_date = :as_of GROUP BY review_status ORDER BY review_status",
                           {"as_of": as_of})
        exports = read_frame(conn, "SELECT target, status, rows_exported, baseline_as_of, location, message "
                                   "FROM ops.exports WHERE as_of_date = :as_of ORDER BY finished_at", {"as_of": as_of})
        review = read_frame(conn, "SELECT quarter, tier, customers, customer_share, revenue, revenue_share "
                                  "FROM marts.review_tier_distribution WHERE quarter = "
                                  "(SELECT MAX(quarter) FROM marts.review_tier_distribution) ORDER BY tier_rank DESC")
        review_note = conn.execute(sa.text(
            "SELECT message FROM audit.run_audit WHERE stage = :stage AND status = 'success' "
            "ORDER BY finished_at DESC LIMIT 1"), {"stage": f"review {review['quarter'].iloc[0]}"}).scalar() \
            if not review.empty else None

    print(f"Customer grading as of {as_of} (run {run_id})")
    print("  customers per tier:")
    for row in tiers.itertuples():
        print(f"    {row.tier:<10} {row.customers:>8,}   365-day revenue {row.monetary_365d:>16,.2f}")
    print(f"  elimination candidates: {listed(rows['elimination_candidates'], pending.get('elimination'))}   "
          f"win-back candidates: {listed(rows['winback_candidates'], pending.get('win_back'))}   "
          f"core customers: {listed(rows['core_customers'], pending.get('core'))}")
    if not queue.empty:
        print("  elimination review (marts.elimination_status): " + ", ".join(
            f"{n:,} {status}" for status, n in queue.itertuples(index=False)))
    for row in exports.drop_duplicates("target", keep="last").itertuples():
        since = f"since {row.baseline_as_of:%Y-%m-%d}" if pd.notna(row.baseline_as_of) else "first export, in full"
        outcome = f"{row.rows_exported:,} change(s) {since} -> {row.location}" if row.status == "success" \
            else f"FAILED ({row.message})"
        print(f"  CRM export ({row.target}): {outcome}")
    if not lost.empty:
        print("  lost-customer register: " + ", ".join(f"{n:,} {s}" for s, n in lost.itertuples(index=False)))
    failed = checks[~checks["success"].astype(bool)]
    docs = data_docs_dir()
    print(f"  validation: {len(checks)} checks (Great Expectations and SQL), {len(failed)} failed, "
          f"{int(failed.loc[failed['severity'] == 'row', 'unexpected_count'].fillna(0).sum()):,} row(s) "
          "quarantined (ops.quarantine); results in audit.validation_results")
    if docs is not None and (docs / "index.html").exists():
        print(f"  Data Docs: {docs / 'index.html'}")
    for row in stale.itertuples():
        print(f"  STALE: the published period {row.as_of_date:%Y-%m-%d} no longer follows from the ones before it "
              f"({row.stale_reason}); regrade the stale periods in date order (marts.published_periods)")
    print(f"  warehouse: {make_url(warehouse_url).render_as_string(hide_password=True)}")
    for table, count in rows.items():
        print(f"    marts.{table:<28} {count:>8,} rows for {as_of}")
    print("    marts.tier_history, marts.lost_customers, marts.dim_customer, audit.model_runs, "
          "marts.published_periods; views "
          "marts.current_* (tiers, features, service, each list), marts.tier_summary; run log audit.run_audit")
    if not review.empty:
        _print_review(review, review_note)


def _print_review(review: pd.DataFrame, note: str | None) -> None:
    """The latest review's tier distribution and the warnings its run recorded (grading.pipeline)."""
    print(f"  quarterly review {review['quarter'].iloc[0]} (marts.review_tier_distribution):")
    for row in review.itertuples():
        print(f"    {row.tier:<10} {row.customers:>8,} customers ({row.customer_share:6.1%})   "
              f"revenue {row.revenue:>14,.2f} ({row.revenue_share:6.1%})")
    for warning in (note or "").split("; WARNING: ")[1:]:
        print(f"    WARNING: {warning}")


def listed(count: int, pending: int | None) -> str:
    """A list's size, with the customers waiting for its confirmation periods: '0 (2,345 pending confirmation)'."""
    return f"{count:,} ({pending:,} pending confirmation)" if pending else f"{count:,}"


def recent_runs(warehouse_url: str, as_of: date | None = None, failed_only: bool = False,
                limit: int | None = None) -> pd.DataFrame:
    """The runs recorded in audit.run_audit (of one as-of date, if given), newest first."""
    with open_engine(warehouse_url) as warehouse, warehouse.connect() as conn:
        if not sa.inspect(conn).has_table("run_audit", schema="audit"):
            raise LookupError("the warehouse has no audit.run_audit yet: nothing has run against it "
                              "(python -m grading migrate creates it)")
        audit = read_frame(conn, "SELECT run_id, as_of_date, stage, status, rows_out, started_at, finished_at, "
                                 "rule_version, message FROM audit.run_audit "
                                 "WHERE CAST(:as_of AS DATE) IS NULL OR as_of_date = CAST(:as_of AS DATE)",
                           {"as_of": as_of})
    for column in ("started_at", "finished_at"):
        audit[column] = pd.to_datetime(audit[column])
    runs = run_table(audit)
    if failed_only:
        runs = runs[runs["status"] == "failed"]
    return runs.head(limit) if limit is not None else runs


def run_table(audit: pd.DataFrame) -> pd.DataFrame:
    """One row per run from audit.run_audit rows: when, how long, how it ended, and why not.

    A stage's outcome is its latest row (a retried stage leaves a failed row, then a good one);
    a run failed if any stage's latest attempt failed, succeeded if its publish (or review) did.
    """
    audit = audit.sort_values(["run_id", "finished_at"])
    rows = []
    for run_id, stages in audit.groupby("run_id", sort=False):
        latest = stages.drop_duplicates("stage", keep="last")
        failed = latest[latest["status"] != "success"]
        done = latest[latest["status"] == "success"]["stage"]
        status = "failed" if not failed.empty else \
            "success" if done.eq("publish").any() or done.str.startswith("review").any() else "incomplete"
        seconds = int((stages["finished_at"].max() - stages["started_at"].min()).total_seconds())
        publish = latest[latest["stage"] == "publish"]["rows_out"]
        versions = latest["rule_version"].dropna()
        problem = "" if failed.empty else f"{failed['stage'].iloc[-1]}: {failed['message'].iloc[-1] or ''}"
        rows.append({
            "run_id": run_id, "as_of": stages["as_of_date"].max(), "started_utc": stages["started_at"].min(),
            "duration": f"{seconds // 60}m{seconds % 60:02d}s", "status": status,
            "last_stage": stages.iloc[-1]["stage"], "retries": len(stages) - stages["stage"].nunique(),
            "published_rows": "" if publish.empty or pd.isna(publish.iloc[0]) else int(publish.iloc[0]),
            "rules": versions.iloc[0] if not versions.empty else "",
            "problem": problem if len(problem) <= 100 else problem[:99] + "…",
        })
    columns = ["run_id", "as_of", "started_utc", "duration", "status", "last_stage", "retries", "published_rows",
               "rules", "problem"]
    return pd.DataFrame(rows, columns=columns).sort_values("started_utc", ascending=False, ignore_index=True)
