"""Value-band thresholds proposed from the data for a target tier distribution (``rules calibrate``).

Fixed bands written for one business fit another badly: the shipped 10,000 / 50,000 bands put
Superstore's 804 customers at 801 normal, 3 gold and 0 platinum. Rather than guess new numbers,
an operator names the distribution they want - shares of customers (80/15/5) or shares of
revenue - and gets the thresholds that make it on the data as of a date, the resulting
distribution with each tier's revenue share, and a candidate rule file to review, dry-run,
backtest and adopt like any other rule change. Nothing here writes to the warehouse.

Thresholds are rounded to two significant figures (12,345 -> 12,000) so the published
criteria read as round numbers; the distribution shown is the one the rounded thresholds make.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

BY = ("customers", "revenue")


@dataclass(frozen=True)
class Target:
    """Shares per tier, lowest tier first, summing to 1, counted over customers or over revenue."""

    shares: tuple[float, ...]
    by: str = "customers"

    @classmethod
    def parse(cls, text: str, tiers: Sequence[str], by: str = "customers") -> Target:
        """``80/15/5`` (percentages, lowest tier first) for ``tiers``; a ValueError says what is wrong."""
        if by not in BY:
            raise ValueError(f"--by must be one of {', '.join(BY)}, not {by!r}")
        try:
            parts = [float(part) for part in text.replace(",", "/").split("/")]
        except ValueError:
            raise ValueError(f"shares must be numbers separated by '/', e.g. 80/15/5, not {text!r}") from None
        if len(parts) != len(tiers):
            raise ValueError(f"{len(parts)} share(s) given for {len(tiers)} tiers ({', '.join(tiers)}), lowest first")
        if any(part <= 0 for part in parts) or not math.isclose(sum(parts), 100, abs_tol=0.01):
            raise ValueError(f"shares must be positive percentages adding up to 100, not {text!r}")
        return cls(tuple(part / 100 for part in parts), by)


def round_figure(value: float, digits: int = 2) -> float:
    """``value`` to ``digits`` significant figures (12,345 -> 12,000; 0.0456 -> 0.046)."""
    if value <= 0 or not math.isfinite(value):
        return float(value)
    return float(round(value, digits - 1 - int(math.floor(math.log10(value)))))


def propose_thresholds(values: pd.Series, target: Target, rounded: bool = True) -> list[float]:
    """The lowest value of each tier above the lowest (ascending), so that ``value >= threshold``
    puts the target's share of customers (or of revenue) in each tier.

    By customers, a tier's threshold is the value of the customer at its share's rank from the
    top. By revenue, customers are added from the most valuable down until the tiers above hold
    their share of total revenue (negative values count as none).
    """
    ordered = np.sort(pd.to_numeric(values, errors="coerce").fillna(0).to_numpy(dtype=float))[::-1]
    if not len(ordered):
        raise ValueError("no customers to calibrate on")
    weights = np.ones(len(ordered)) if target.by == "customers" else np.clip(ordered, 0, None)
    if weights.sum() <= 0:
        raise ValueError("no revenue to calibrate on: every customer's value is zero or less")
    reached = np.cumsum(weights) / weights.sum()
    thresholds = []
    above = 0.0
    for share in reversed(target.shares[1:]):  # the highest tier first
        above += share
        position = min(int(np.searchsorted(reached, above - 1e-12)), len(ordered) - 1)
        value = float(ordered[position])
        thresholds.append(round_figure(value) if rounded else value)
    thresholds.sort()
    if any(low >= high for low, high in zip(thresholds, thresholds[1:], strict=False)) or thresholds[0] <= 0:
        raise ValueError(f"the values are too few or too tied to make {len(target.shares)} tiers with these shares "
                         f"(thresholds {', '.join(f'{t:,.2f}' for t in thresholds)}): choose other shares")
    return thresholds


def distribution(values: pd.Series, thresholds: Sequence[float], tiers: Sequence[str]) -> pd.DataFrame:
    """Customers and revenue per tier under ``thresholds`` (ascending; ``value >= t`` enters a tier)."""
    numbers = pd.to_numeric(values, errors="coerce").fillna(0).astype(float)
    rank = np.searchsorted(np.asarray(thresholds, dtype=float), numbers.to_numpy(), side="right")
    frame = pd.DataFrame({"tier": pd.Categorical.from_codes(rank, categories=list(tiers)), "value": numbers})
    table = frame.groupby("tier", observed=False).agg(customers=("value", "size"), revenue=("value", "sum"),
                                                      lowest=("value", "min"), highest=("value", "max"))
    table["customer_share"] = table["customers"] / max(len(frame), 1)
    table["revenue_share"] = table["revenue"] / (frame["value"].clip(lower=0).sum() or 1)
    table.insert(0, "from_value", [0.0, *thresholds])
    return table.reset_index()


def _plain(value):
    """Plain dicts, lists and scalars (the YAML loader's line-aware containers do not dump)."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def candidate_document(current: dict, thresholds: Sequence[float], feature: str, version: str,
                       description: str) -> dict:
    """A band rule file (kind tiers) built from ``current``'s tiers, default, damping and
    qualification, with one ``feature >= threshold`` rule per tier above the lowest."""
    tiers = list(current["tiers"])
    rules = [{"name": f"{tier}_band", "tier": tier,
              "description": f"{feature} of at least {threshold:,.2f} (calibrated).",
              "when": {"all": [{"feature": feature, "op": ">=", "value": threshold}]}}
             for tier, threshold in reversed(list(zip(tiers[1:], thresholds, strict=True)))]
    document = {key: current[key] for key in ("kind", "effective_date", "owner") if key in current}
    document.update(version=version, description=description, tiers=tiers, rules=rules,
                    default={"name": f"below_{tiers[1]}_band", "tier": tiers[0]})
    for key in ("damping", "qualification"):
        if key in current:
            document[key] = current[key]
    return _plain(document)
