"""Human-readable summaries of what a run published, for the CLI and the demo."""

from __future__ import annotations

from datetime import date

from sqlalchemy.engine import make_url

from grading.warehouse import open_engine, read_frame


def print_run_summary(warehouse_url: str, as_of: date, summary: dict) -> None:
    """Print customers per tier, candidates flagged and the tables written, read back from marts."""
    with open_engine(warehouse_url) as warehouse, warehouse.connect() as conn:
        tiers = read_frame(conn, "SELECT tier, customers, monetary_365d FROM marts.tier_summary "
                                 "WHERE as_of_date = :as_of ORDER BY tier_rank DESC", {"as_of": as_of})
    print(f"Customer grading as of {as_of} (run {summary['run_id']})")
    print("  customers per tier:")
    for row in tiers.itertuples():
        print(f"    {row.tier:<10} {row.customers:>8,}   365-day revenue {row.monetary_365d:>16,.2f}")
    flags = summary["flags"]
    print(f"  elimination candidates: {flags['elimination']:,}   win-back candidates: {flags['win_back']:,}")
    print(f"  validation: {summary['validate']['checks']} checks, {summary['validate']['failed']} failed")
    print(f"  warehouse: {make_url(warehouse_url).render_as_string(hide_password=True)}")
    for table, rows in summary["publish"].items():
        print(f"    marts.{table:<28} {rows:>8,} rows for {as_of}")
    print("    views: marts.current_customer_tier, marts.tier_summary; audit: marts.run_audit")
