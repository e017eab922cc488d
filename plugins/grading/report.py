"""Human-readable summaries of what the warehouse holds for a period, for the CLI and the demo.

Everything is read back from the published tables, so the summary shows what BI tools
will see, whichever process (the CLI or Airflow tasks) did the run.
"""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from grading.publish import published_counts
from grading.settings import mask_urls
from grading.validate import data_docs_dir
from grading.warehouse import open_engine, read_frame


class NothingPublished(LookupError):
    """No successful run has published the requested as-of date."""


def print_run_summary(warehouse_url: str, as_of: date) -> None:
    """Print customers per tier, candidates, validation, tables written and the latest review."""
    with open_engine(warehouse_url) as warehouse, warehouse.connect() as conn:
        if not conn.execute(sa.text("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'marts' "
                                    "AND table_name = 'run_audit'")).scalar():
            raise NothingPublished(f"{mask_urls(warehouse_url)} holds no graded period yet: grade one with "
                                   "python -m grading run --as-of DATE")
        runs = read_frame(conn, "SELECT run_id FROM marts.run_audit WHERE as_of_date = :as_of AND stage = 'publish' "
                                "AND status = 'success' ORDER BY finished_at DESC", {"as_of": as_of})
        if runs.empty:
            raise NothingPublished(f"no successful run has published as-of {as_of} in {mask_urls(warehouse_url)}")
        run_id = runs["run_id"].iloc[0]
        tiers = read_frame(conn, "SELECT tier, customers, monetary_365d FROM marts.tier_summary "
                                 "WHERE as_of_date = :as_of ORDER BY tier_rank DESC", {"as_of": as_of})
        checks = read_frame(conn, "SELECT success, severity, unexpected_count FROM marts.validation_results "
                                  "WHERE run_id = :run_id", {"run_id": run_id})
        rows = published_counts(conn, as_of)
        lost = read_frame(conn, "SELECT status, COUNT(*) AS n FROM marts.lost_customers "
                                "GROUP BY status ORDER BY status")
        stale = read_frame(conn, "SELECT as_of_date, stale_reason FROM marts.published_periods WHERE stale "
                                 "ORDER BY as_of_date")
        review = read_frame(conn, "SELECT quarter, tier, customers, customer_share, revenue, revenue_share "
                                  "FROM marts.review_tier_distribution WHERE quarter = "
                                  "(SELECT MAX(quarter) FROM marts.review_tier_distribution) ORDER BY tier_rank DESC")

    print(f"Customer grading as of {as_of} (run {run_id})")
    print("  customers per tier:")
    for row in tiers.itertuples():
        print(f"    {row.tier:<10} {row.customers:>8,}   365-day revenue {row.monetary_365d:>16,.2f}")
    print(f"  elimination candidates: {rows['elimination_candidates']:,}   "
          f"win-back candidates: {rows['winback_candidates']:,}   core customers: {rows['core_customers']:,}")
    if not lost.empty:
        print("  lost-customer register: " + ", ".join(f"{n:,} {s}" for s, n in lost.itertuples(index=False)))
    failed = checks[~checks["success"].astype(bool)]
    docs = data_docs_dir()
    print(f"  validation: {len(checks)} checks (Great Expectations and SQL), {len(failed)} failed, "
          f"{int(failed.loc[failed['severity'] == 'row', 'unexpected_count'].fillna(0).sum()):,} row(s) "
          "quarantined (ops.quarantine); results in marts.validation_results")
    if docs is not None and (docs / "index.html").exists():
        print(f"  Data Docs: {docs / 'index.html'}")
    for row in stale.itertuples():
        print(f"  STALE: the published period {row.as_of_date:%Y-%m-%d} no longer follows from the ones before it "
              f"({row.stale_reason}); regrade the stale periods in date order (marts.published_periods)")
    print(f"  warehouse: {make_url(warehouse_url).render_as_string(hide_password=True)}")
    for table, count in rows.items():
        print(f"    marts.{table:<28} {count:>8,} rows for {as_of}")
    print("    marts.tier_history, marts.lost_customers, marts.dim_customer, marts.model_runs, "
          "marts.published_periods; views "
          "marts.current_customer_tier, marts.tier_summary; run log marts.run_audit")
    if not review.empty:
        print(f"  quarterly review {review['quarter'].iloc[0]} (marts.review_tier_distribution):")
        for row in review.itertuples():
            print(f"    {row.tier:<10} {row.customers:>8,} customers ({row.customer_share:6.1%})   "
                  f"revenue {row.revenue:>14,.2f} ({row.revenue_share:6.1%})")
