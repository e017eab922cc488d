"""One customer, by source id, as a CRM operator sees them: tier, reasons, entitlements, open flags.

Reads the crm schema's views (the only place where published results meet source ids), so
on PostgreSQL it works for the crm_operator role and is refused for the BI role.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from sqlalchemy.engine import Engine

from grading.frames import read_frame


class UnknownCustomer(LookupError):
    """No customer of the latest published period has that source id."""


@dataclass(frozen=True)
class CustomerView:
    customer: pd.Series  # crm.current_customers: tier, reason, since, entitlements
    actions: pd.DataFrame  # crm.current_actions: lists, reasons, actions, review status


def lookup(warehouse: Engine, customer_id: str) -> CustomerView:
    """The customer's current tier, entitlements and open flags; UnknownCustomer if not graded."""
    with warehouse.connect() as conn:
        customer = read_frame(conn, "SELECT * FROM crm.current_customers WHERE customer_id = :id", {"id": customer_id})
        actions = read_frame(conn, "SELECT list, rule_name, reason, action, status, control_group FROM "
                                   "crm.current_actions WHERE customer_id = :id ORDER BY list", {"id": customer_id})
    if customer.empty:
        raise UnknownCustomer(f"no customer {customer_id!r} in the latest published period (crm.current_customers); "
                              "check the id as the source writes it, or whether the customer was erased")
    return CustomerView(customer.iloc[0], actions)


def describe(view: CustomerView) -> list[str]:
    """The view as lines of text, for the CLI."""
    c = view.customer
    lines = [
        f"customer {c['customer_id']} (key {c['customer_key']}) as of {pd.Timestamp(c['as_of_date']):%Y-%m-%d}",
        f"  tier: {c['tier']} since {pd.Timestamp(c['since']):%Y-%m-%d}" if pd.notna(c["since"])
        else f"  tier: {c['tier']}",
        f"  why: {c['tier_reason']}",
    ]
    if pd.notna(c["spend_to_next_tier"]):
        lines.append(f"  to the next tier: {c['spend_to_next_tier']:,.2f} more in the qualification window")
    lines += [
        f"  service: {c['label']} ({c['service_level']})",
        f"    first response within {c['response_time_hours']:g} h, {c['service_hours']}; dedicated account manager: "
        f"{'yes' if c['dedicated_account_manager'] else 'no'}",
        f"    channels: {c['support_channels']}; visits: {c['visit_frequency']}; reviews: {c['review_frequency']}",
        f"    discount: {c['discount_policy']} credit: {c['credit_policy']}",
    ]
    if c["benefits"]:
        lines.append(f"    benefits: {c['benefits']}")
    if view.actions.empty:
        lines.append("  open flags: none")
    for row in view.actions.itertuples():
        control = " (control group: leave alone)" if pd.notna(row.control_group) and bool(row.control_group) else ""
        lines.append(f"  flag: {row.list} - {row.action} [{row.status}]{control}: {row.reason}")
    return lines
