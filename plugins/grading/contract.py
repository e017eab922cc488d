"""The canonical source schema: the tables the pipeline reads and the columns it keeps.

One source of truth for extraction (what to select, how to type it), validation
(required columns, keys), source mappings (what a real export may be mapped onto, and
which values a column accepts) and the raw layer's DDL. PII columns of the source
(name, email, phone) are deliberately absent: they are never extracted, and a mapping
cannot name them because they are not canonical columns.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SourceTable:
    name: str
    key: str
    event_time: str  # the column that places a row in a data interval
    timestamps: tuple[str, ...]
    texts: tuple[str, ...]
    amounts: tuple[str, ...] = ()
    integers: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    # Must be present besides the key and the event time: extraction refuses a source row without
    # one, a source mapping rejects it (raw itself does not declare them NOT NULL).
    required: tuple[str, ...] = ()
    # An optional table may be missing from a source (or not fed by a mapping): it is then
    # extracted as empty instead of failing the run, and its features are zero.
    optional: bool = False

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.key, *self.texts, *self.timestamps, *self.amounts, *self.integers, *self.flags)

    @property
    def not_null(self) -> tuple[str, ...]:
        """Columns every raw row must have: the key, the event time and the required ones."""
        return (self.key, *(c for c in self.required if c != self.key), self.event_time)

    def kind(self, column: str) -> str:
        """How a column is typed: timestamp, amount, integer, flag or text."""
        for kind, columns in (("timestamp", self.timestamps), ("amount", self.amounts),
                              ("integer", self.integers), ("flag", self.flags)):
            if column in columns:
                return kind
        if column == self.key or column in self.texts:
            return "text"
        raise KeyError(f"{self.name} has no column {column!r}")


SOURCE_TABLES: dict[str, SourceTable] = {
    t.name: t
    for t in (
        SourceTable("customers", key="customer_id", event_time="created_at",
                    timestamps=("created_at",), texts=("region", "industry", "channel")),
        SourceTable("orders", key="order_id", event_time="order_ts",
                    timestamps=("order_ts",), texts=("customer_id", "status"), amounts=("amount", "margin"),
                    required=("customer_id", "status", "amount")),
        SourceTable("tickets", key="ticket_id", event_time="opened_at",
                    timestamps=("opened_at", "closed_at"),
                    texts=("customer_id", "category", "severity"), flags=("resolved",),
                    required=("customer_id", "category")),
        SourceTable("surveys", key="survey_id", event_time="responded_at",
                    timestamps=("responded_at",), texts=("customer_id",), integers=("csat", "nps"),
                    required=("customer_id",)),
        # Calls, visits and e-mails with a customer; many sources keep them elsewhere or not at all.
        SourceTable("interactions", key="interaction_id", event_time="ts", timestamps=("ts",),
                    texts=("customer_id", "kind"), required=("customer_id",), optional=True),
        # What each order held, product by product: only the quarterly basket analysis reads it
        # (marts.tier_basket_rules). It repeats the order's customer and time so that a window,
        # an erasure and the known-customer check need no join. Optional, like interactions.
        SourceTable("order_lines", key="line_id", event_time="order_ts", timestamps=("order_ts",),
                    texts=("order_id", "customer_id", "product_id", "category"), amounts=("amount",),
                    integers=("quantity",), required=("order_id", "customer_id", "product_id"), optional=True),
    )
}

ORDER_STATUSES = ("completed", "cancelled", "refunded")
TICKET_CATEGORIES = ("complaint", "inquiry", "after-sales")

# Columns whose values must come from a fixed set; a mapping translates the source's values.
VALUE_SETS: dict[tuple[str, str], tuple[str, ...]] = {
    ("orders", "status"): ORDER_STATUSES,
    ("tickets", "category"): TICKET_CATEGORIES,
}
