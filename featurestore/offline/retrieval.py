"""Training sets: `store.get_historical_features(entity_df, features)` -> a `RetrievalJob`.

    job = store.get_historical_features(entity_df, features=["driver_hourly_stats:conv_rate"])
    job.to_pandas(); job.to_arrow(); job.to_parquet("train.parquet")

The point-in-time rules (SPEC §6) and the SQL live in `featurestore.offline.pit`; this module
checks and normalizes the inputs, picks where each view's feature rows come from, and assembles
the answer.

- `entity_df` is a pandas DataFrame, an Arrow table (or anything with `__arrow_c_stream__`), or a
  SQL string run in DuckDB, where the repo's sources can be read by name
  (`SELECT driver_id, ts AS event_timestamp FROM trips`) and relative paths are read from the repo
  folder. It needs an `event_timestamp` column: timestamps (naive ones are UTC; aware ones are
  converted), dates (midnight UTC) or ISO 8601 strings, without nulls.
- The result holds the entity_df's columns exactly as given (values, types, order, duplicate rows),
  then the features, named `feature` or `view__feature` (`full_feature_names=True`), with their
  declared types (to_pandas: integers and booleans as nullable pandas dtypes, so nulls stay nulls).
  The pandas index of the entity_df is not kept; rows come back in the same order.
- Each view's rows come from offline storage when the view has been materialized, else from its
  source directly. A stored file that cannot be read raises `CorruptOfflineFileError` naming it
  (see `featurestore.offline.storage`: a damaged day of pushed rows is moved to the quarantine).
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa

from ..catalog import Catalog, ViewRequest
from ..definitions import DuckDBSource, FeatureView, names_source
from ..errors import DefinitionError, RetrievalError, did_you_mean
from ..keys import arrow_key_column, rule_of
from ..on_demand_plan import OnDemandPlan, expand
from .features import EVENT_TS, source_rows_sql, ts_literal
from .fingerprint import view_fingerprint
from .pit import ENTITY_TS, ROW_ID, STRATEGIES, PitView, pit_join_sql
from .sources import (
    DUCKDB_FLOATS,
    DUCKDB_INTEGERS,
    DUCKDB_WIDE_INTEGERS,
    SourceReader,
    arrow_table,
    duckdb_connection,
    first_line,
    quote_ident,
    quote_literal,
)
from .storage import PUSHED

if TYPE_CHECKING:
    import pandas as pd

    from ..models.lineage import TrainingSet
    from ..store import FeatureStore
    from .spark import SparkResult

TIMESTAMP_COLUMN = "event_timestamp"
_ENTITY = "__entity"


def get_historical_features(
    store: FeatureStore,
    entity_df: Any = None,
    features: Any = None,
    full_feature_names: bool = False,
    bitemporal: bool = False,
    strategy: str = "auto",
    spine: str | None = None,
    start: Any = None,
    end: Any = None,
) -> RetrievalJob:
    """A point-in-time-correct training set for `entity_df` (see the module docstring and SPEC §6).

    Instead of an entity_df, `spine=` names a source or a feature view whose rows with
    `start <= timestamp <= end` are the entity rows (`featurestore.offline.spine`).
    The inputs are checked now (unknown features, missing columns, name collisions raise here);
    the join runs on the first `to_arrow()` / `to_pandas()` / `to_parquet()`. `strategy` forces one
    join strategy of `featurestore.offline.pit` (tests and benchmarks; the answer is the same).
    """
    if spine is not None:
        if entity_df is not None:
            raise RetrievalError("pass entity_df or spine=, not both")
        from .spine import spine_rows

        entity_df = spine_rows(store, store.catalog, spine, start, end)
    elif entity_df is None:
        raise RetrievalError(
            "get_historical_features needs entity_df (the entity rows) or spine= (their source)"
        )
    elif start is not None or end is not None:
        raise RetrievalError("start= and end= select the rows of a spine=; filter an entity_df yourself")
    if strategy not in STRATEGIES:
        raise RetrievalError(f"strategy must be one of {list(STRATEGIES)}, got {strategy!r}")
    if strategy == "asof" and bitemporal:
        raise RetrievalError(
            "bitemporal retrieval needs the 'range' strategy (ASOF cannot check created times)"
        )
    catalog = store.catalog
    requests, names, on_demand = expand(
        catalog, catalog.resolve(features), full_feature_names, store.repo_path
    )
    table = entity_table(entity_df, store, catalog)
    times = _check_columns(table, requests, names)
    if on_demand is not None:
        on_demand.check_entity_df(table.column_names)
    job = RetrievalJob(
        store,
        catalog,
        table,
        requests,
        names,
        features=features,
        full_feature_names=full_feature_names,
        bitemporal=bitemporal,
        strategy=strategy,
        event_times=times,
        on_demand=on_demand,
    )
    job.spine = None if spine is None else {"name": spine, "start": _iso(start), "end": _iso(end)}
    return job


def _iso(value: Any) -> str | None:
    from .spine import spine_time

    parsed = spine_time(value, "time")
    return None if parsed is None else parsed.isoformat()


class RetrievalJob:
    """A training set, computed once on first use and then kept.

    Attributes for lineage: `entity_df` (the entity rows as an Arrow table), `features` (as they
    were passed: refs, a service or its name), `feature_refs` ("view:feature" each),
    `full_feature_names`, `bitemporal`, `columns` (of the result).
    """

    def __init__(
        self,
        store: FeatureStore,
        catalog: Catalog,
        entity_df: pa.Table,
        requests: Sequence[ViewRequest],
        names: Sequence[Sequence[str]],
        features: Any,
        full_feature_names: bool,
        bitemporal: bool,
        strategy: str = "auto",
        event_times: pa.ChunkedArray | None = None,
        on_demand: OnDemandPlan | None = None,
    ):
        self.store = store
        self.entity_df = entity_df
        self.features = features
        self.full_feature_names = full_feature_names
        self.bitemporal = bitemporal
        self.feature_refs = [f"{r.view.name}:{f}" for r in requests for f in r.features]
        self.columns = [*entity_df.column_names, *(n for cols in names for n in cols)]
        self._on_demand = on_demand  # computes on-demand features after the join (on_demand_plan.py)
        if on_demand is not None:  # the features asked for, not the inputs read for them
            self.feature_refs = list(on_demand.refs)
            self.columns = [*entity_df.column_names, *on_demand.order]
        self._catalog = catalog
        self._requests = list(requests)
        self._names = [list(cols) for cols in names]
        self._strategy = strategy
        self._times = event_times  # entity_df's event_timestamp as timestamp[us, UTC], when already known
        self._result: pa.Table | None = None
        self._spark: SparkResult | None = None  # the Spark engine's output files, kept with the job
        self.spine: dict[str, Any] | None = None  # {"name", "start", "end"} when the rows came from a spine

    def __repr__(self) -> str:
        return (
            f"RetrievalJob({self.entity_df.num_rows} entity rows, features={self.feature_refs}, "
            f"bitemporal={self.bitemporal})"
        )

    def to_arrow(self) -> pa.Table:
        """The training set as an Arrow table (entity_df columns, then features)."""
        if self._result is None:
            self._result = self._run()
        return self._result

    def to_pandas(self) -> pd.DataFrame:
        """The training set as a pandas DataFrame; integer and boolean features use nullable dtypes."""
        import pandas as pd

        table = self.to_arrow()
        n_entity = self.entity_df.num_columns
        entity: pd.DataFrame = table.select(range(n_entity)).to_pandas()
        feature_table = table.select(range(n_entity, table.num_columns)).replace_schema_metadata(None)
        feats: pd.DataFrame = feature_table.to_pandas(types_mapper=nullable_pandas_dtype)
        feats.index = entity.index  # rows align by position (an Arrow entity_df may carry a pandas index)
        return pd.concat([entity, feats], axis=1)

    def to_parquet(self, path: str | os.PathLike[str]) -> Path:
        """Write the training set to a Parquet file; returns its path. On the Spark engine the rows
        stream from the executors' output to the file, a batch at a time (see `to_batches`)."""
        import pyarrow.parquet as pq

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if self._result is not None or self.store.config.offline.engine != "spark":
            pq.write_table(self.to_arrow(), path)
            return path
        batches = self.to_batches()
        first = next(batches, None)
        if first is None:
            pq.write_table(self.to_arrow(), path)  # no rows: the schema of an empty result
            return path
        with pq.ParquetWriter(path, first.schema) as writer:
            writer.write_batch(first)
            for batch in batches:
                writer.write_batch(batch)
        return path

    @property
    def streams_batches(self) -> bool:
        """Whether `to_batches` streams (the Spark engine, the result not yet in memory) rather than
        cut the in-memory result: what `save` and `compare` read a training set with."""
        return self._result is None and self.store.config.offline.engine == "spark"

    def to_batches(self) -> Iterator[pa.RecordBatch]:
        """The training set as Arrow record batches, in entity_df's row order.

        On the Spark engine the join runs once (on first use) and its rows stream from the Parquet
        files the executors wrote, so the driver holds one batch of features at a time (and
        entity_df, which it was given); the files are removed with the job::

            for batch in job.to_batches():
                train_on(batch)
        """
        if self._result is not None or self.store.config.offline.engine != "spark":
            yield from self.to_arrow().to_batches()
            return
        offset = 0
        for batch in self._spark_output().batches():
            part = self._assemble(
                self.entity_df.slice(offset, batch.num_rows), pa.Table.from_batches([batch]), offset
            )
            offset += batch.num_rows
            yield from part.to_batches()

    def save(self, name: str, description: str = "", overwrite: bool = False) -> TrainingSet:
        """Record this training set and its fingerprint under `name` (see featurestore.models.lineage)."""
        return self.store.save_training_set(name, self, description=description, overwrite=overwrite)

    # -- the join ------------------------------------------------------------------------------

    def _run(self) -> pa.Table:
        if self.store.config.offline.engine == "spark":
            return self._assemble(self.entity_df, self._spark_output().read_all())
        con = self._open()
        try:
            slim, views, times = self._plan(con)
            con.register(_ENTITY, slim)  # its key columns as the key rule reads them (featurestore.keys)
            sql = pit_join_sql(
                _ENTITY, views, bitemporal=self.bitemporal, strategy=self._strategy, ts_range=_min_max(times)
            )
            try:
                joined = arrow_table(con, sql)
            except duckdb.Error as e:
                # The stored files' footers were read and sound; a damaged data page shows only now.
                raise self._read_failed(e, f"the point-in-time join of {_names(views)} failed") from None
            if joined.num_rows != slim.num_rows:  # the SQL guarantees one row per entity row
                raise AssertionError(
                    f"the point-in-time join gave {joined.num_rows} rows for {slim.num_rows} entity rows"
                )
            return self._assemble(self.entity_df, joined)
        finally:
            con.close()

    def _open(self) -> duckdb.DuckDBPyConnection:
        attaches = any(isinstance(s, DuckDBSource) and s.database for s in self._catalog.sources.values())
        return _connection(private=attaches)

    def _plan(self, con: duckdb.DuckDBPyConnection) -> tuple[pa.Table, list[PitView], pa.ChunkedArray]:
        """The slim entity table (`__row_id`, `__ts`, keys as the key rule reads them), each view's
        part of the join, and the entity rows' times: what either engine runs."""
        entity = self.entity_df
        n = entity.num_rows
        times = self._times if self._times is not None else event_times(entity.column(TIMESTAMP_COLUMN))
        keys = list(dict.fromkeys(k for r in self._requests for k in r.view.join_keys))
        slim = pa.table(
            {
                ROW_ID: pa.array(np.arange(n, dtype=np.int64)),
                ENTITY_TS: times,
                **{k: _key_column(entity.column(k)) for k in keys},
            }
        )
        reader = SourceReader(con, self.store.repo_path, self._catalog.sources)
        views = []
        for request, outs in zip(self._requests, self._names):
            view = request.view
            rows_sql, stored = feature_rows_sql(self.store, reader, view)
            slim = _check_key_types(con, slim, view, rows_sql, stored)
            views.append(
                PitView(
                    name=view.name,
                    rows_sql=rows_sql,
                    join_keys=view.join_keys,
                    features=request.features,
                    output_names=tuple(outs),
                    tie_break=view.feature_names,
                    ttl=view.ttl,
                    **_aggregating(view, request.features),
                )
            )
        return slim, views, times

    def _assemble(self, entity: pa.Table, joined: pa.Table, first_row: int = 0) -> pa.Table:
        """entity_df's rows (`entity`, a slice of it from row `first_row`) with their joined
        features appended in their declared types, then the on-demand features."""
        result = entity
        for request, outs in zip(self._requests, self._names):
            dtypes = _declared_types(request.view)
            for feature, out in zip(request.features, outs):
                result = result.append_column(
                    pa.field(out, dtypes[feature]), joined.column(out).cast(dtypes[feature])
                )
        if self._on_demand is not None:
            return self._on_demand.apply_offline(result, entity.num_columns, first_row)
        return result

    def _read_failed(self, e: duckdb.Error, what: str) -> RetrievalError:
        """The error of a DuckDB read of the views' rows that failed: CorruptOfflineFileError
        (raised here) when a stored file of a view is damaged, else a RetrievalError to raise."""
        for request in self._requests:
            self.store.offline_storage.check(request.view)  # raises CorruptOfflineFileError
        return RetrievalError(f"{what}: {first_line(e)}")

    def _spark_output(self) -> SparkResult:
        if self._spark is None:
            self._spark = self._spark_join()
        return self._spark

    def _spark_join(self) -> SparkResult:
        """The join on Spark (`featurestore.offline.spark`): the executors write it as Parquet."""
        from .spark import SparkView, spark_pit_join, staging_root
        from .spark_session import spark_session

        con = _connection(private=True)  # spark_pit_join bounds its memory
        try:
            slim, views, times = self._plan(con)
            parts = []
            for request, view in zip(self._requests, views):
                dtypes = _declared_types(request.view)
                parts.append(SparkView(view, tuple(dtypes[f] for f in request.features)))
            spark = spark_session(self.store.config.offline.spark_master)
            try:
                return spark_pit_join(
                    spark,
                    staging_root(self.store.config.offline_path),
                    con,
                    slim,
                    parts,
                    bitemporal=self.bitemporal,
                    strategy=self._strategy,
                    ts_range=_min_max(times),
                )
            except duckdb.Error as e:  # staging the feature rows read a damaged data page
                raise self._read_failed(
                    e, f"staging the feature rows of {_names(views)} for Spark failed"
                ) from None
        finally:
            con.close()


def _declared_types(view: FeatureView) -> dict[str, pa.DataType]:
    """{feature: its declared Arrow type} of `view`: what the joined columns are cast to."""
    return {f.name: f.dtype.to_arrow() for f in view.features}


def _names(views: Sequence[PitView]) -> str:
    return ", ".join(repr(v.name) for v in views)


# -- inputs ------------------------------------------------------------------------------------


def entity_table(
    entity_df: Any, store: FeatureStore | None = None, catalog: Catalog | None = None
) -> pa.Table:
    """The entity rows as an Arrow table: pandas and Arrow are converted, SQL strings are run."""
    if isinstance(entity_df, str):
        if store is None or catalog is None:
            raise RetrievalError("an entity_df given as SQL needs a feature store to run in")
        return _run_entity_sql(entity_df, store, catalog)
    if isinstance(entity_df, pa.Table):
        return entity_df
    if isinstance(entity_df, pa.RecordBatch):
        return pa.Table.from_batches([entity_df])
    if isinstance(entity_df, pa.RecordBatchReader):
        return entity_df.read_all()
    if type(entity_df).__module__.startswith("pandas") and hasattr(entity_df, "columns"):
        try:
            return pa.Table.from_pandas(entity_df, preserve_index=False)
        except (pa.ArrowException, TypeError, ValueError) as e:
            raise RetrievalError(
                f"entity_df cannot be converted to Arrow: {e} "
                "(give each column one type, e.g. with df[col].astype(...))"
            ) from None
    if hasattr(entity_df, "__arrow_c_stream__"):  # polars, DuckDB relations, ...
        return pa.table(entity_df)
    raise RetrievalError(
        f"entity_df must be a pandas DataFrame, an Arrow table or a SQL string, "
        f"got {type(entity_df).__name__}"
    )


def _run_entity_sql(sql: str, store: FeatureStore, catalog: Catalog) -> pa.Table:
    con = duckdb_connection()
    try:
        # Relative paths in the query are read from the repo folder (then the current one).
        con.execute(f"SET file_search_path = {quote_literal(str(store.repo_path) + ',' + os.getcwd())}")
        reader = SourceReader(con, store.repo_path, catalog.sources)
        for name, source in catalog.sources.items():
            if names_source(sql, name):
                try:
                    relation = reader.relation(source)
                except DefinitionError:
                    continue  # only a problem if the query really reads it; DuckDB will say so
                con.execute(f"CREATE OR REPLACE TEMP VIEW {quote_ident(name)} AS SELECT * FROM {relation}")
        try:
            return arrow_table(con, sql)
        except duckdb.Error as e:
            raise RetrievalError(
                f"the entity_df SQL failed: {first_line(e)} (sources readable by name: "
                f"{', '.join(sorted(catalog.sources)) or 'none'})"
            ) from None
    finally:
        con.close()


def _check_columns(
    table: pa.Table, requests: Sequence[ViewRequest], names: Sequence[Sequence[str]]
) -> pa.ChunkedArray:
    """Refuse malformed entity_dfs and name collisions; returns the event times (see event_times)."""
    columns = table.column_names
    shown = ", ".join(f"'{c}'" for c in columns) or "none"
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise RetrievalError(f"entity_df has more than one column named {', '.join(map(repr, repeated))}")
    if TIMESTAMP_COLUMN not in columns:
        times = [f.name for f in table.schema if pa.types.is_timestamp(f.type) or pa.types.is_date(f.type)]
        hint = (
            f"; rename '{times[0]}' to '{TIMESTAMP_COLUMN}'"
            if len(times) == 1
            else f"; add the time each row is observed at as '{TIMESTAMP_COLUMN}'"
        )
        raise RetrievalError(f"entity_df has no '{TIMESTAMP_COLUMN}' column (its columns: {shown}){hint}")
    times = event_times(table.column(TIMESTAMP_COLUMN))  # raises when they are not timestamps
    for request, outs in zip(requests, names):
        view = request.view
        for key in view.join_keys:
            if key not in columns:
                raise RetrievalError(
                    f"feature view '{view.name}' joins on '{key}', which entity_df lacks (its columns: {shown})"
                    f"{_suggest(key, columns)}"
                )
        for feature, out in zip(request.features, outs):
            if out in columns:
                raise RetrievalError(
                    f"feature '{view.name}:{feature}' would be returned as '{out}', which is already a column "
                    "of entity_df: rename that column, or pass full_feature_names=True"
                )
    return times


def _suggest(name: str, candidates: Sequence[str]) -> str:
    hint = did_you_mean(name, candidates)
    return hint if "did you mean" in hint else ""


def event_times(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """entity_df's event_timestamp as timestamp[us, UTC]; naive = UTC, aware converted, ISO strings parsed."""
    t = column.type
    if pa.types.is_dictionary(t):
        column = column.cast(t.value_type)
        t = column.type
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        times = column.cast(pa.timestamp("us", "UTC"), safe=False)  # keeps the instant; ns are truncated
    elif pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        times = _parse_times(column)
    else:
        raise RetrievalError(
            f"entity_df column '{TIMESTAMP_COLUMN}' has type {t}; it must hold timestamps (naive ones are read "
            "as UTC), dates or ISO 8601 strings"
        )
    if times.null_count:
        first = times.is_null().to_numpy(zero_copy_only=False).argmax()
        raise RetrievalError(
            f"entity_df column '{TIMESTAMP_COLUMN}' has {times.null_count} null value(s) "
            f"(the first in row {first}): every row needs a time"
        )
    return times


def _parse_times(column: pa.ChunkedArray) -> pa.ChunkedArray:
    con = _connection()
    try:
        con.register("__times", pa.table({"t": column}))
        parsed = arrow_table(con, "SELECT TRY_CAST(t AS TIMESTAMPTZ) AS t FROM __times").column("t")
    finally:
        con.close()
    bad = np.flatnonzero(
        parsed.is_null().to_numpy(zero_copy_only=False) & column.is_valid().to_numpy(zero_copy_only=False)
    )
    if len(bad):
        raise RetrievalError(
            f"entity_df column '{TIMESTAMP_COLUMN}': {column[int(bad[0])].as_py()!r} "
            f"(row {bad[0]}) is not a timestamp; use ISO 8601, e.g. '2026-01-31 12:00:00'"
        )
    return parsed


def _aggregating(view: FeatureView, features: Sequence[str]) -> dict[str, Any]:
    """PitView's aggregation fields for the requested features of an aggregating view (else none):
    only the requested aggregates are computed."""
    if not view.is_aggregating:
        return {}
    by_name = {a.feature_name: a for a in view.aggregations}
    aggs = tuple(by_name[f] for f in features)
    return {
        "aggregations": aggs,
        "input_types": tuple(view.input_type(a.column) for a in aggs),
        "hop_us": view.hop_us,
    }


def feature_rows_sql(store: FeatureStore, reader: SourceReader, view: FeatureView) -> tuple[str, bool]:
    """SELECT of the view's feature rows, and whether any come from offline storage.

    Offline storage answers for the event-time ranges materialization has covered and whose source
    files are unchanged since (`featurestore.offline.fingerprint`: a late row appended inside a range
    is read from the source until that range is materialized again); the source for every other
    time (a view never materialized, or materialized for the last week only); rows pushed to
    offline storage are added to both. The files are stat'ed once per call, not per row."""
    storage = store.offline_storage
    storage.attach(reader.con)  # object storage: lets DuckDB read its s3:// files
    stored = storage.rows_sql(view)
    pushed = storage.rows_sql(view, PUSHED)
    covered: list[tuple[Any, Any]] = []
    if stored:
        fingerprint = view_fingerprint(store.repo_path, reader.sources, view)
        covered = store.registry.materialized_coverage(view.name, fingerprint)[0]
    in_storage = " OR ".join(f"({EVENT_TS} BETWEEN {ts_literal(a)} AND {ts_literal(b)})" for a, b in covered)
    parts = []
    try:
        source = source_rows_sql(reader, view)
    except DefinitionError:
        if not (stored or pushed):
            raise
        source = None  # a push source without a batch source, or a DataFrameSource of another process
    if stored and covered:
        parts.append(f"SELECT * FROM ({stored}) WHERE {in_storage}")
        if source is not None:
            parts.append(f"SELECT * FROM ({source}) WHERE NOT ({in_storage})")
    elif source is not None:
        parts.append(source)
    if pushed:
        parts.append(pushed)
    if not parts:  # only materialized files without a record of their range (should not happen)
        assert stored is not None  # without stored rows, the source was read or its error raised
        parts.append(stored)
    return " UNION ALL ".join(f"({p})" for p in parts), bool(stored or pushed)


def _check_key_types(
    con: duckdb.DuckDBPyConnection, slim: pa.Table, view: FeatureView, rows_sql: str, stored: bool
) -> pa.Table:
    """`slim` with its key columns read by the key rule (`featurestore.keys`: integer keys from digit
    strings and whole floats, string keys from strings only), or a RetrievalError naming key and row."""
    try:
        rel = con.sql(f"SELECT * FROM ({rows_sql})")  # binds the query (reads Parquet footers), runs nothing
        types = dict(zip(rel.columns, (str(t) for t in rel.types)))
    except duckdb.Error as e:
        if stored:
            raise RetrievalError(
                f"feature view '{view.name}': its offline storage cannot be read: {first_line(e)} "
                "(if the view changed since it was materialized, materialize it again)"
            ) from None
        raise RetrievalError(
            f"feature view '{view.name}': its source '{view.source.name}' cannot be read: {first_line(e)}"
        ) from None
    declared = view.key_fields
    for key in view.join_keys:
        rule = rule_of(declared[key]) if key in declared else _DUCKDB_RULES.get(types[key].upper())
        if rule is not None:
            index = slim.schema.get_field_index(key)
            slim = slim.set_column(index, key, arrow_key_column(slim.column(index), rule, key, view.name))
            continue
        ours, theirs = slim.schema.field(key).type, types[key]
        if not pa.types.is_null(ours) and _key_kind(ours) != _duckdb_kind(theirs):
            raise RetrievalError(
                f"join key '{key}' is {_key_kind(ours)} ({ours}) in entity_df but {_duckdb_kind(theirs)} "
                f"({theirs.lower()}) in feature view '{view.name}': convert the entity_df column "
                f"(e.g. df['{key}'].astype(...))"
            )
    return slim


# The key rule of a key without a declared type, by its type in the view's rows (as featurestore.keys
# infers it from the source for online lookups: every integer type reads as Int64).
_DUCKDB_RULES = {**dict.fromkeys(sorted(DUCKDB_INTEGERS), "Int64"), "VARCHAR": "String"}


def _key_column(column: pa.ChunkedArray) -> pa.ChunkedArray:
    # A column with no value at all (pandas makes those float or object) matches nothing, whatever its type.
    if column.null_count == len(column):
        return pa.chunked_array([pa.nulls(len(column))])
    return column


def _key_kind(t: pa.DataType) -> str:
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "number"  # pandas turns an integer column with missing values into floats
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return "binary"
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return "time"
    return str(t)


def _duckdb_kind(type_name: str) -> str:
    """_key_kind for a DuckDB type name."""
    name = type_name.upper()
    if name in DUCKDB_INTEGERS | DUCKDB_WIDE_INTEGERS | DUCKDB_FLOATS or name.startswith("DECIMAL"):
        return "number"
    if name == "VARCHAR" or name.startswith("ENUM"):
        return "string"
    if name == "BLOB":
        return "binary"
    if name.startswith(("TIMESTAMP", "DATE")):
        return "time"
    return name.lower()


def _min_max(times: pa.ChunkedArray) -> tuple[Any, Any] | None:
    if len(times) == 0:
        return None
    import pyarrow.compute as pc

    mm = pc.min_max(times)
    return mm["min"].as_py(), mm["max"].as_py()


_database: duckdb.DuckDBPyConnection | None = None
_database_pid = 0
_database_lock = threading.Lock()


def _connection(private: bool = False) -> duckdb.DuckDBPyConnection:
    """A connection for one job: a cursor on one in-memory database per process, since opening a
    database costs ~20 ms. `private=True` opens a database of its own (for sources that ATTACH files,
    which would be visible to every cursor)."""
    global _database, _database_pid
    if private:
        return _configure(duckdb_connection())
    with _database_lock:
        if _database is None or _database_pid != os.getpid():  # never reuse a database across fork()
            _database, _database_pid = _configure(duckdb_connection()), os.getpid()
        con = _database.cursor()
    con.execute("SET TimeZone = 'UTC'")  # a cursor starts with the default settings
    return con


def _configure(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    # Spill to the system's temp folder (DuckDB's default is ./.tmp) when a join outgrows memory.
    spill = Path(tempfile.gettempdir()) / f"featurestore-duckdb-{os.getpid()}"
    con.execute(f"SET temp_directory = {quote_literal(str(spill))}")
    limit = os.environ.get("FS_DUCKDB_MEMORY_LIMIT")
    if limit:
        con.execute(f"SET memory_limit = {quote_literal(limit)}")
    return con


def nullable_pandas_dtype(t: pa.DataType) -> Any:
    import pandas as pd

    mapping = {
        pa.int8(): pd.Int8Dtype(),
        pa.int16(): pd.Int16Dtype(),
        pa.int32(): pd.Int32Dtype(),
        pa.int64(): pd.Int64Dtype(),
        pa.bool_(): pd.BooleanDtype(),
    }
    return mapping.get(t)
