"""Spines: the entity rows of a training set taken from a source or a feature view (SPEC §11).

    store.get_historical_features(spine="trip_labels", features=[...], start="2026-01-01", end="2026-01-31")

A spine's rows with `start <= timestamp <= end` (both inclusive, as materialization's range; either may be
left out) become the entity_df: every column of the source (join keys, labels, ...) as it is, with its
timestamp column named `event_timestamp`, ordered by that time and then by every column, so the same
spine gives the same training set row for row. A feature view as spine gives its rows as offline reads
use them (materialized storage, its source, rows pushed offline): join keys, its row columns, times.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from ..catalog import Catalog
from ..errors import DefinitionError, RetrievalError, did_you_mean
from .features import CREATED_TS, EVENT_TS, ts_literal
from .sources import SourceReader, arrow_table, duckdb_connection, first_line, quote_ident

if TYPE_CHECKING:
    from ..store import FeatureStore

TIMESTAMP_COLUMN = "event_timestamp"


def spine_rows(
    store: FeatureStore, catalog: Catalog, name: str, start: Any = None, end: Any = None
) -> pa.Table:
    """The entity rows of spine `name` (a source or a feature view) in [start, end], as an Arrow table."""
    if not isinstance(name, str):
        raise RetrievalError(
            f"spine must be the name of a source or a feature view, got {type(name).__name__}"
        )
    low, high = spine_time(start, "start"), spine_time(end, "end")
    if low is not None and high is not None and low > high:
        raise RetrievalError(f"spine '{name}': start {low.isoformat()} is after end {high.isoformat()}")
    con = duckdb_connection()
    try:
        reader = SourceReader(con, store.repo_path, catalog.sources)
        if name in catalog.views:
            sql, ts = _view_rows(store, reader, catalog, name), EVENT_TS
        elif name in catalog.sources:
            sql, ts = _source_rows(reader, catalog, name)
        else:
            raise RetrievalError(
                f"spine '{name}' is neither a source nor a feature view"
                f"{did_you_mean(name, [*catalog.sources, *catalog.views])}"
            )
        where = [f"{quote_ident(ts)} IS NOT NULL"]
        if low is not None:
            where.append(f"CAST({quote_ident(ts)} AS TIMESTAMPTZ) >= {ts_literal(low)}")
        if high is not None:
            where.append(f"CAST({quote_ident(ts)} AS TIMESTAMPTZ) <= {ts_literal(high)}")
        try:
            selected = f"SELECT * RENAME ({quote_ident(ts)} AS {TIMESTAMP_COLUMN}) FROM ({sql}) WHERE {' AND '.join(where)}"
            order = [TIMESTAMP_COLUMN, *(c for c in con.sql(selected).columns if c != TIMESTAMP_COLUMN)]
            table = arrow_table(con, f"{selected} ORDER BY {', '.join(map(quote_ident, order))}")
        except duckdb.Error as e:
            raise RetrievalError(f"spine '{name}' cannot be read: {first_line(e)}") from None
    finally:
        con.close()
    return table


def spine_time(value: Any, what: str) -> datetime | None:
    """A spine's start or end as an aware UTC datetime (naive = UTC; a date is its midnight, so
    `end="2026-01-31"` ends at the start of that day), or None."""
    from ..errors import MaterializationError
    from ..materialize import parse_time

    if value is None:
        return None
    try:
        return parse_time(value, f"spine {what}")
    except MaterializationError as e:
        raise RetrievalError(str(e)) from None


def _source_rows(reader: SourceReader, catalog: Catalog, name: str) -> tuple[str, str]:
    source = catalog.sources[name]
    try:
        relation = reader.relation(source)
        columns = reader.schema(source).names
    except DefinitionError as e:
        raise RetrievalError(f"spine '{name}': {e}") from None
    ts = source.timestamp_field
    if ts not in columns:
        raise RetrievalError(
            f"spine '{name}': its timestamp column '{ts}' is not a column (columns: {columns})"
        )
    if ts != TIMESTAMP_COLUMN and TIMESTAMP_COLUMN in columns:
        raise RetrievalError(
            f"spine '{name}' has a column '{TIMESTAMP_COLUMN}' besides its timestamp column '{ts}': "
            "rename one in the source (e.g. a DuckDBSource query)"
        )
    return f"SELECT * FROM {relation}", ts


def _view_rows(store: FeatureStore, reader: SourceReader, catalog: Catalog, name: str) -> str:
    from .retrieval import feature_rows_sql

    view = catalog.views[name]
    rows, _ = feature_rows_sql(store, reader, view)
    return f"SELECT * EXCLUDE ({CREATED_TS}) FROM ({rows})"


__all__ = ["spine_rows"]
