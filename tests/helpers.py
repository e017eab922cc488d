"""Small helpers the tests share: hand-made raw rows and comparable table snapshots."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import sqlalchemy as sa

from grading.warehouse import bulk_insert, migrate, open_engine, read_frame

MARTS_BY_PERIOD = (
    "customer_features_snapshot", "customer_tier_snapshot", "elimination_candidates", "winback_candidates",
)


def load_raw(url: str, **tables: pd.DataFrame) -> None:
    """Migrate the warehouse at ``url`` and append hand-made rows to raw tables."""
    with open_engine(url) as engine:
        migrate(engine)
        with engine.begin() as conn:
            for name, frame in tables.items():
                frame = frame.copy()
                frame["extracted_at"] = datetime(2000, 1, 1)
                bulk_insert(conn, f"raw.{name}", frame)


def normalised(frame: pd.DataFrame) -> pd.DataFrame:
    """A frame comparable across engines: plain Python values, None for missing, sorted rows."""
    out = frame.astype(object).where(frame.notna(), None)
    for column in out.columns:
        out[column] = out[column].map(lambda v: float(v) if isinstance(v, (int, float)) and v is not None else v)
    return out.sort_values(list(out.columns), key=lambda s: s.astype(str)).reset_index(drop=True)


def published(url: str, as_of=None) -> dict[str, pd.DataFrame]:
    """Every per-period marts table (one as-of date, or all), normalised for comparison."""
    where = "" if as_of is None else " WHERE as_of_date = :as_of"
    with open_engine(url) as engine, engine.connect() as conn:
        return {
            table: normalised(read_frame(conn, f"SELECT * FROM marts.{table}{where}",  # noqa: S608 - identifiers from code constants, values bound
                                         {} if as_of is None else {"as_of": as_of}))
            for table in MARTS_BY_PERIOD
        }


def scalar(url: str, sql: str, **params):
    with open_engine(url) as engine, engine.connect() as conn:
        return conn.execute(sa.text(sql), params).scalar()
