"""Backtest: what a proposed tier rule file would have done, without publishing anything.

Both the rules in force and the proposed ones are applied to the same stored features of
an as-of date (the rules' own assignments, before damping; a proposed file with another
qualification window sees that window's spend and orders), and compared: customers and
365-day revenue per tier, and who would move from which tier to which.
"""

from __future__ import annotations

from datetime import date

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from grading.features import features_as_of, load_features
from grading.frames import read_frame
from grading.rules.model import TierRules
from grading.tiers import assign_tiers


def latest_graded(warehouse: Engine) -> date:
    with warehouse.connect() as conn:
        value = conn.execute(sa.text("SELECT MAX(as_of_date) FROM marts.customer_tier_snapshot")).scalar()
    if value is None:
        raise LookupError("nothing graded yet: run customer_grading before a backtest, or give --as-of")
    return pd.Timestamp(value).date()


WINDOW_COLUMNS = ("window_start", "orders_window", "monetary_window")


def compare(features: pd.DataFrame, current: TierRules, proposed: TierRules,
            proposed_window: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """Summary per tier and moves between tiers of the two rule files on the same features.

    ``proposed_window`` (customer_id and the window columns) replaces the qualification
    window figures for the proposed rules when their window differs from the current one.
    """
    seen_by_proposed = features
    if proposed_window is not None:
        window = proposed_window.set_index("customer_id").reindex(features["customer_id"])
        seen_by_proposed = features.copy()
        for column in WINDOW_COLUMNS:
            seen_by_proposed[column] = window[column].to_numpy()
    now, new = assign_tiers(features, current), assign_tiers(seen_by_proposed, proposed)
    both = pd.DataFrame({"customer_id": features["customer_id"], "monetary_365d": features["monetary_365d"],
                         "current_tier": now["tier"], "proposed_tier": new["tier"]})
    tiers = list(dict.fromkeys([*proposed.tiers, *current.tiers]))
    summary = pd.DataFrame({
        "tier": tiers,
        "customers_current": both.groupby("current_tier").size().reindex(tiers, fill_value=0).to_numpy(),
        "customers_proposed": both.groupby("proposed_tier").size().reindex(tiers, fill_value=0).to_numpy(),
        "revenue_current": both.groupby("current_tier")["monetary_365d"].sum().reindex(tiers, fill_value=0.0)
        .round(2).to_numpy(),
        "revenue_proposed": both.groupby("proposed_tier")["monetary_365d"].sum().reindex(tiers, fill_value=0.0)
        .round(2).to_numpy(),
    })
    movers = both[both["current_tier"] != both["proposed_tier"]]
    moves = movers.groupby(["current_tier", "proposed_tier"]).size().rename("customers").reset_index()
    return {"summary": summary, "moves": moves, "movers": movers}


def backtest(warehouse: Engine, as_of: date, current: TierRules, proposed: TierRules) -> dict[str, pd.DataFrame]:
    """Compare the two rule files as of ``as_of``; movers are listed by pseudonymous key only."""
    with warehouse.connect() as conn:
        features = load_features(conn, as_of)
        if features.empty:  # not graded on that date: compute the features, still writing nothing
            features = features_as_of(conn, as_of, current.qualification)
        proposed_window = None
        if proposed.qualification != current.qualification:
            proposed_window = features_as_of(conn, as_of, proposed.qualification)
        keys = read_frame(conn, "SELECT customer_id, customer_key FROM ops.customer_keys")
    result = compare(features, current, proposed, proposed_window)
    movers = result["movers"].merge(keys, on="customer_id", how="left")
    result["movers"] = movers[["customer_key", "current_tier", "proposed_tier", "monetary_365d"]]
    result["meta"] = pd.DataFrame([{
        "as_of": as_of, "current": current.source.path.name, "current_version": current.source.version,
        "proposed": proposed.source.path.name, "proposed_version": proposed.source.version,
        "customers": len(features), "movers": len(movers),
    }])
    return result
