"""A view's feature rows in the one shape every offline query uses.

Feature rows have the view's join keys, its features (cast to their declared types), and two
internal columns: `__event_ts` and `__created_ts` (TIMESTAMPTZ, UTC; `__created_ts` is NULL when
the source has no created timestamp). Offline storage holds rows in exactly this shape, so the
point-in-time join reads storage or a source the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

from ..definitions import FeatureView
from .sources import SourceReader, quote_ident, quote_literal

EVENT_TS = "__event_ts"
CREATED_TS = "__created_ts"


def latest_first(alias: str, feature_names: Sequence[str]) -> str:
    """ORDER BY terms putting first the row taken as "the latest" of several rows of one entity: newest
    event time, then newest created time (null lowest), then the feature values in declared order,
    greatest first, nulls lowest (SPEC §6). The point-in-time join and the rows materialization writes
    online both order by it, so both choose the same row."""
    return ", ".join(
        [
            f"{alias}.{EVENT_TS} DESC NULLS LAST",
            f"{alias}.{CREATED_TS} DESC NULLS LAST",
            *(f"{alias}.{quote_ident(f)} DESC NULLS LAST" for f in feature_names),
        ]
    )


def feature_columns(view: FeatureView) -> list[str]:
    """Column order of feature rows: join keys, features, event time, created time."""
    return [*view.join_keys, *(f.name for f in view.row_fields), EVENT_TS, CREATED_TS]


def source_rows_sql(reader: SourceReader, view: FeatureView, where: str | None = None) -> str:
    """SELECT over the view's source projecting feature rows; `where` filters on __event_ts/__created_ts."""
    src = view.source
    declared = view.key_fields
    cols = []
    for key in view.join_keys:
        expr = quote_ident(key)
        if key in declared:
            expr = f"CAST({expr} AS {declared[key].to_duckdb()})"
        cols.append(f"{expr} AS {quote_ident(key)}")
    for f in view.row_fields:
        cols.append(f"CAST({quote_ident(f.name)} AS {f.dtype.to_duckdb()}) AS {quote_ident(f.name)}")
    cols.append(f"CAST({quote_ident(src.timestamp_field)} AS TIMESTAMPTZ) AS {EVENT_TS}")
    if src.created_timestamp_field:
        cols.append(f"CAST({quote_ident(src.created_timestamp_field)} AS TIMESTAMPTZ) AS {CREATED_TS}")
    else:
        cols.append(f"CAST(NULL AS TIMESTAMPTZ) AS {CREATED_TS}")
    inner = f"SELECT {', '.join(cols)} FROM {reader.relation(src)}"
    if not where:
        return inner
    return f"SELECT * FROM ({inner}) WHERE {where}"


def ts_literal(dt: datetime) -> str:
    """A TIMESTAMPTZ literal for an aware or naive (= UTC) datetime."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return f"TIMESTAMPTZ {quote_literal(dt.astimezone(timezone.utc).isoformat())}"
