"""The canonical source schema: the tables the pipeline reads and the columns it keeps.

One source of truth for extraction (what to select, how to type it), validation
(required columns, keys) and the raw layer's DDL. PII columns of the source
(name, email, phone) are deliberately absent: they are never extracted.
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

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.key, *self.texts, *self.timestamps, *self.amounts, *self.integers, *self.flags)


SOURCE_TABLES: dict[str, SourceTable] = {
    t.name: t
    for t in (
        SourceTable("customers", key="customer_id", event_time="created_at",
                    timestamps=("created_at",), texts=("region", "industry", "channel")),
        SourceTable("orders", key="order_id", event_time="order_ts",
                    timestamps=("order_ts",), texts=("customer_id", "status"), amounts=("amount", "margin")),
        SourceTable("tickets", key="ticket_id", event_time="opened_at",
                    timestamps=("opened_at", "closed_at"),
                    texts=("customer_id", "category", "severity"), flags=("resolved",)),
        SourceTable("surveys", key="survey_id", event_time="responded_at",
                    timestamps=("responded_at",), texts=("customer_id",), integers=("csat", "nps")),
    )
}

ORDER_STATUSES = ("completed", "cancelled", "refunded")
TICKET_CATEGORIES = ("complaint", "inquiry", "after-sales")
