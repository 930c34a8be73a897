"""The Spark engine (`[offline] engine = "spark"`, SPEC §14): the point-in-time join of
`featurestore.offline.pit`, run per bucket of join keys on Spark executors.

    result = spark_pit_join(spark, staging_root, con, slim, views, ...)  # executors write Parquet
    for batch in result.batches(): ...                                  # read back in __row_id order

There is still one implementation of the join. Each view is planned as on DuckDB (its feature-rows
SELECT, its PitView); then:

1. the entity rows (`__row_id`, `__ts`, keys) are written to Parquet, and each view's feature rows are
   staged as Parquet by DuckDB (a streaming COPY; sources Spark cannot read, such as DuckDB databases
   and CSV with DuckDB's type rules, read the same as on DuckDB);
2. both sides get `__bucket = pmod(xxhash64(keys...), N)` (keys cast to one type on both sides;
   bucket i labelled so that Spark's hash partitioning puts it in partition i), and are
   repartitioned by it into N partitions: every partition has work, and the cogroup needs no
   second shuffle;
3. `cogroup(...).applyInArrow(join_bucket)` runs `pit_join_sql` in an in-process DuckDB on each
   bucket's two Arrow tables: one row per entity row of the bucket. A null key hashes to some
   bucket like any value and matches nothing there; duplicate entity rows keep their own `__row_id`;
4. views with different join keys are bucketed each by its own keys and joined by `__row_id`;
   the result is sorted by `__row_id` and written as Parquet by the executors. Nothing is collected
   on the driver: `SparkResult.batches()` streams the files back with pyarrow.

Aggregating views take the same road (`pit_join_sql` computes their aggregates per bucket). The
rows of one key value land in one bucket, so one key's rows must fit one Python worker's memory
(DuckDB spills the join itself to disk).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import socket
import tempfile
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cache, partial
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import RetrievalError
from .features import EVENT_TS, ts_literal
from .pit import ENTITY_TS, ROW_ID, PitView, pit_join_sql
from .sources import arrow_table, duckdb_connection, quote_literal

if TYPE_CHECKING:
    import duckdb
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.types import DataType, StructType

BUCKET = "__bucket"
#: feature rows plus entity rows per bucket: one bucket's join runs in one Python worker
ROWS_PER_BUCKET = 500_000
#: DuckDB's memory while it stages feature rows in the driver (it spills beyond it)
STAGING_MEMORY = "64MB"
#: the size of the output's Parquet row groups, which bounds what the driver holds while reading it back
OUTPUT_ROW_GROUP_BYTES = 2**20
#: DuckDB's memory for one bucket's join in a Python worker (it spills beyond it)
KERNEL_MEMORY = "1GB"


@dataclass(frozen=True)
class SparkView:
    """One view's part of a Spark join: its PitView, the Arrow types of its requested features and
    its position in the request (`index`, which names its columns inside Spark)."""

    pit: PitView
    dtypes: tuple[pa.DataType, ...]  # of pit.output_names, the declared types
    index: int = 0

    @property
    def schema(self) -> pa.Schema:
        """What a bucket's join returns: `__row_id` and the requested features, as declared, under
        positional names (`__f<view>_<feature>`): Spark resolves column names case-insensitively,
        so `a:val` and `b:VAL` of one request would collide (DuckDB's output keeps both)."""
        return pa.schema(
            [
                pa.field(ROW_ID, pa.int64()),
                *(pa.field(f"__f{self.index}_{i}", t) for i, t in enumerate(self.dtypes)),
            ]
        )

    @property
    def output_schema(self) -> pa.Schema:
        """`schema` under the features' output names: what the result is read back as."""
        names = [ROW_ID, *self.pit.output_names]
        return pa.schema([f.with_name(n) for f, n in zip(self.schema, names)])


class SparkResult:
    """A Spark join's output: Parquet files written by the executors, in `__row_id` order.

    The staging folder (entity rows, staged feature rows, the output) is removed when this object
    is garbage collected."""

    def __init__(
        self, staging: Path, output: Path | None, schema: pa.Schema, rows: int, columns: Sequence[str] = ()
    ):
        self.staging = staging
        self.output = output
        self.schema = schema
        #: the output files' column names for `schema`'s fields (positional names, see SparkView.schema)
        self.columns = list(columns) or schema.names
        self.rows = rows
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(staging), True)

    def files(self) -> list[Path]:
        """The output's Parquet files; Spark numbers them in the order of the sort."""
        if self.output is None:
            return []
        return sorted(self.output.glob("part-*.parquet"))

    def batches(self, batch_size: int = 16_384) -> Iterator[pa.RecordBatch]:
        """The joined rows (`__row_id` and features, declared types) in `__row_id` order, a batch at a time."""
        expected = 0
        for path in self.files():
            # Spark writes timestamps as INT96 by default: read them at microseconds, as instants in UTC.
            file = pq.ParquetFile(path, coerce_int96_timestamp_unit="us")
            for batch in file.iter_batches(batch_size=batch_size, columns=self.columns):
                batch = _cast_batch(batch, self.columns, self.schema)
                ids = batch.column(0)
                if len(ids) and (
                    ids[0].as_py() != expected or ids[len(ids) - 1].as_py() != expected + len(ids) - 1
                ):
                    raise AssertionError(
                        f"the Spark join's output is not one row per entity row at row {expected}"
                    )
                expected += len(ids)
                yield batch
        if expected != self.rows:
            raise AssertionError(f"the Spark join gave {expected} rows for {self.rows} entity rows")

    def read_all(self) -> pa.Table:
        """All joined rows as one table (the driver holds them: what `RetrievalJob.to_arrow` asks for)."""
        return pa.Table.from_batches(list(self.batches()), schema=self.schema)

    def close(self) -> None:
        """Remove the staging folder now."""
        self._cleanup()


def spark_pit_join(
    spark: SparkSession,
    staging_root: Path,
    con: duckdb.DuckDBPyConnection,
    slim: pa.Table,
    views: Sequence[SparkView],
    bitemporal: bool,
    strategy: str,
    ts_range: tuple[datetime, datetime] | None,
) -> SparkResult:
    """Join `slim` (`__row_id` 0..n-1, `__ts`, keys) with every view on Spark; see the module docstring.

    `con` (a connection of its own: its settings change) stages each view's feature rows
    (`pit.rows_sql` is DuckDB SQL over the view's sources and offline storage). Raises
    RetrievalError when Spark or a bucket's join fails; a DuckDB error of the staging propagates."""
    # Staging streams: bounded buffers, rows in any order (the join does not depend on it).
    con.execute("SET preserve_insertion_order = false")
    con.execute(f"SET memory_limit = {quote_literal(STAGING_MEMORY)}")
    staging = new_staging(staging_root, "pit")
    views = [replace(v, index=i) for i, v in enumerate(views)]
    schema = pa.schema([pa.field(ROW_ID, pa.int64()), *(f for v in views for f in list(v.output_schema)[1:])])
    columns = [ROW_ID, *(n for v in views for n in v.schema.names[1:])]
    if slim.num_rows == 0:
        return SparkResult(staging, None, schema, 0, columns)
    try:
        staged = [
            _stage_rows(con, staging / f"rows-{i}.parquet", v.pit, ts_range) for i, v in enumerate(views)
        ]
        entity_path = staging / "entity.parquet"
        # Row groups of 64k rows: the writer buffers one at a time (and Spark splits the file by them).
        pq.write_table(_typed_keys(slim, views, staged), entity_path, row_group_size=65_536)
        entity = spark.read.parquet(str(entity_path))
        parts = []
        for view, (rows_path, count) in zip(views, staged):
            buckets = max(
                spark.sparkContext.defaultParallelism, math.ceil((count + slim.num_rows) / ROWS_PER_BUCKET)
            )
            parts.append(_view_join(spark, entity, rows_path, view, bitemporal, strategy, ts_range, buckets))
        joined = parts[0]
        for part in parts[1:]:
            joined = joined.join(part, ROW_ID)
        output = staging / "result"
        # Small row groups: the driver reads the output back a row group at a time.
        joined.orderBy(ROW_ID).write.option("parquet.block.size", OUTPUT_ROW_GROUP_BYTES).parquet(str(output))
    except Exception as e:
        shutil.rmtree(staging, ignore_errors=True)
        if is_spark_error(e):
            names = ", ".join(repr(v.pit.name) for v in views)
            raise RetrievalError(
                f"the point-in-time join of {names} failed on Spark: {first_error_line(e)}"
            ) from None
        raise
    return SparkResult(staging, output, schema, slim.num_rows, columns)


def _stage_rows(
    con: duckdb.DuckDBPyConnection, path: Path, view: PitView, ts_range: tuple[datetime, datetime] | None
) -> tuple[Path, int]:
    """Copy the view's feature rows that some entity row can use to one Parquet file (streaming)."""
    where = ""
    if ts_range is not None:
        where = f" WHERE {EVENT_TS} <= {ts_literal(ts_range[1])}"  # aggregates use `<`: this keeps more
    sql = f"COPY (SELECT * FROM ({view.rows_sql}){where}) TO {quote_literal(str(path))} (FORMAT parquet)"
    row = con.execute(sql).fetchone()
    return path, int(row[0]) if row else 0


def _typed_keys(slim: pa.Table, views: Sequence[SparkView], staged: Sequence[tuple[Path, int]]) -> pa.Table:
    """`slim` with each all-null key column (Arrow's null type, which Parquet readers refuse) given
    the type of that key in a view's feature rows: it still matches nothing."""
    for view, (path, _) in zip(views, staged):
        rows = pq.read_schema(path)
        for key in view.pit.join_keys:
            index = slim.schema.get_field_index(key)
            if pa.types.is_null(slim.schema.field(index).type):
                slim = slim.set_column(index, key, slim.column(index).cast(rows.field(key).type))
    return slim


def _view_join(
    spark: SparkSession,
    entity: DataFrame,
    rows_path: Path,
    view: SparkView,
    bitemporal: bool,
    strategy: str,
    ts_range: tuple[datetime, datetime] | None,
    buckets: int,
) -> DataFrame:
    """(`__row_id`, the view's features) for every entity row: a cogroup of both sides by bucket."""
    rows = spark.read.parquet(str(rows_path))
    keys = view.pit.join_keys
    entity = entity.select(ROW_ID, ENTITY_TS, *keys)
    types = {f.name: f.dataType for f in rows.schema.fields}
    left = bucketed(entity, keys, types, buckets)
    right = bucketed(rows, keys, types, buckets)
    kernel = partial(join_bucket, view.pit, view.schema, bitemporal, strategy, ts_range)
    return left.groupBy(BUCKET).cogroup(right.groupBy(BUCKET)).applyInArrow(kernel, spark_schema(view.schema))


def bucketed(df: DataFrame, keys: Sequence[str], types: dict[str, DataType], buckets: int) -> DataFrame:
    """`df` with its `__bucket` column, repartitioned into `buckets` partitions by it: bucket i in
    partition i, so every partition has work (see `bucket_labels`) and a cogroup or groupBy by
    `__bucket` needs no second shuffle."""
    return df.withColumn(BUCKET, bucket_column(keys, types, buckets)).repartition(buckets, BUCKET)


def bucket_column(keys: Sequence[str], types: dict[str, DataType], buckets: int) -> Column:
    """The bucket of a row: `pmod(xxhash64(keys...), buckets)`, each key cast to the type both sides
    hash it as (`types`: the keys' types in the feature rows), given as its label (`bucket_labels`).
    A null key hashes like any value (xxhash64 skips it)."""
    from pyspark.sql import functions as F

    index = F.pmod(F.xxhash64(*(F.col(k).cast(_hash_type(types[k])) for k in keys)), F.lit(buckets))
    labels = F.array(*(F.lit(v).cast("long") for v in bucket_labels(buckets)))
    return F.element_at(labels, (index + 1).cast("int"))


@cache
def bucket_labels(buckets: int) -> tuple[int, ...]:
    """For each bucket i, a long whose hash partition among `buckets` partitions is i.

    `repartition(n, col)` puts a row in partition `pmod(murmur3(col, seed 42), n)` (Spark's `hash`
    function). Labelled 0..n-1 the buckets would collide (two buckets often share one partition,
    leaving others empty, so a small join ran on fewer cores); these labels map one to one."""
    labels: dict[int, int] = {}
    value = 0
    while len(labels) < buckets:
        labels.setdefault(_murmur3_long(value) % buckets, value)
        value += 1
    return tuple(labels[i] for i in range(buckets))


def _murmur3_long(value: int, seed: int = 42) -> int:
    """Spark's `hash(value)` of one long: Murmur3 x86 32-bit over its two 32-bit halves."""
    mask = 0xFFFFFFFF

    def rotl(x: int, r: int) -> int:
        return ((x << r) | (x >> (32 - r))) & mask

    def mix(h: int, k: int) -> int:
        k = rotl((k * 0xCC9E2D51) & mask, 15)
        h ^= (k * 0x1B873593) & mask
        return (rotl(h, 13) * 5 + 0xE6546B64) & mask

    u = value & 0xFFFFFFFFFFFFFFFF
    h = mix(mix(seed, u & mask), u >> 32) ^ 8
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & mask
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & mask
    h ^= h >> 16
    return h - (1 << 32) if h >= 1 << 31 else h


def _hash_type(rows_type: DataType) -> DataType:
    """The type a key is hashed as: equal values must hash equally whatever their width (an Int32 key
    of the rows, an int64 column of entity_df; a float entity column against integer rows)."""
    from pyspark.sql import types as T

    if isinstance(rows_type, (T.ByteType, T.ShortType, T.IntegerType, T.LongType)):
        return T.LongType()
    if isinstance(rows_type, (T.FloatType, T.DoubleType, T.DecimalType)):
        return T.DoubleType()
    return rows_type


def join_bucket(
    view: PitView,
    schema: pa.Schema,
    bitemporal: bool,
    strategy: str,
    ts_range: tuple[datetime, datetime] | None,
    entity: pa.Table,
    rows: pa.Table,
) -> pa.Table:
    """One bucket's point-in-time join, run in a Spark Python worker: `pit_join_sql` in DuckDB over
    the bucket's entity rows and feature rows; returns `schema` (one row per entity row)."""
    if entity.num_rows == 0:
        return schema.empty_table()
    con = kernel_connection()
    try:
        con.register("__entity", entity.drop_columns([BUCKET]))
        con.register("__rows", rows.drop_columns([BUCKET]))
        bucket_view = replace(view, rows_sql="SELECT * FROM __rows")
        joined = arrow_table(con, pit_join_sql("__entity", [bucket_view], bitemporal, strategy, ts_range))
    finally:
        con.close()
    names = [ROW_ID, *view.output_names]
    return pa.table([joined.column(n).cast(f.type) for n, f in zip(names, schema)], schema=schema)


def kernel_connection() -> duckdb.DuckDBPyConnection:
    """A DuckDB connection for one bucket's work in a Spark Python worker: one thread (Spark runs
    the buckets in parallel), bounded memory, spilling to the system's temp folder."""
    con = duckdb_connection(threads=1, memory_limit=KERNEL_MEMORY)
    spill = Path(tempfile.gettempdir()) / f"featurestore-spark-{os.getpid()}"
    con.execute(f"SET temp_directory = {quote_literal(str(spill))}")
    return con


def spark_schema(schema: pa.Schema) -> StructType:
    """The Spark struct type of an Arrow schema of featurestore's value types."""
    from pyspark.sql import types as T

    return T.StructType([T.StructField(f.name, _spark_type(f.type), True) for f in schema])


def _spark_type(t: pa.DataType) -> DataType:
    from pyspark.sql import types as T

    if pa.types.is_list(t):
        return T.ArrayType(_spark_type(t.value_type), True)
    simple: dict[pa.DataType, DataType] = {
        pa.int32(): T.IntegerType(),
        pa.int64(): T.LongType(),
        pa.float32(): T.FloatType(),
        pa.float64(): T.DoubleType(),
        pa.string(): T.StringType(),
        pa.bool_(): T.BooleanType(),
        pa.binary(): T.BinaryType(),
    }
    if pa.types.is_timestamp(t):
        return T.TimestampType()
    if t in simple:
        return simple[t]
    raise TypeError(f"no Spark type for the Arrow type {t}")


def _cast_batch(batch: pa.RecordBatch, columns: Sequence[str], schema: pa.Schema) -> pa.RecordBatch:
    """`batch`'s `columns` as `schema` (names and types)."""
    arrays = []
    for name, field in zip(columns, schema):
        column = batch.column(batch.schema.get_field_index(name))
        if pa.types.is_timestamp(field.type) and column.type.tz is None:
            column = column.cast(pa.timestamp(column.type.unit)).cast(field.type)  # Spark's INT96: UTC
        arrays.append(column.cast(field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def is_spark_error(e: Exception) -> bool:
    """Whether `e` is an error pyspark raised (a failed job, a worker's exception) or one the JVM
    raised through py4j (a file gone, a lost executor, a full disk)."""
    from py4j.protocol import Py4JJavaError  # type: ignore[import-untyped]
    from pyspark.errors import PySparkException

    return isinstance(e, (PySparkException, Py4JJavaError))


def first_error_line(e: Exception) -> str:
    """The line of a Spark error that says what went wrong: for a JVM error the first
    `org.apache...Exception: [CLASS] message` line (its Java stack trace follows), else the last
    `Type: message` line (a Python worker's traceback ends in its exception), else the first line."""
    from py4j.protocol import Py4JJavaError

    lines = [line.strip().removeprefix(": ") for line in str(e).strip().splitlines() if line.strip()]
    if isinstance(e, Py4JJavaError):
        java = [line for line in lines if _RAISED.match(line)]
        if java:
            return java[0]
    raised = [line for line in lines if _RAISED.match(line)]
    if raised:
        return raised[-1]
    return lines[0] if lines else type(e).__name__


_RAISED = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Unavailable)\b.*: ")


#: a staging folder whose owner cannot be checked (another host) is removed once this old
STALE_STAGING_SECONDS = 24 * 3600


def new_staging(root: Path, kind: str) -> Path:
    """A new staging folder `<root>/<kind>-<host>-<pid>-<random>`, after sweeping away those a
    killed process left behind (`sweep_staging`)."""
    root.mkdir(parents=True, exist_ok=True)
    sweep_staging(root)
    return Path(tempfile.mkdtemp(prefix=f"{kind}-{socket.gethostname()}-{os.getpid()}-", dir=root))


def sweep_staging(root: Path) -> list[Path]:
    """Remove the staging folders under `root` whose owner is gone: its pid (in the name) is not
    alive on this host, or, for those of other hosts (a shared file system) and unnamed ones, the
    folder is older than a day. A live job's folder is never removed. Returns those removed."""
    host = socket.gethostname()
    removed = []
    for folder in root.glob("*-*"):
        kind, _, rest = folder.name.partition("-")
        if kind not in ("pit", "online") or not folder.is_dir():
            continue
        parts = rest.rsplit("-", 2)  # host, pid, mkdtemp's suffix (no dashes); a host may have dashes
        owner, pid = (parts[0], parts[1]) if len(parts) == 3 else ("", "")
        if owner == host and pid.isdigit():
            gone = not _alive(int(pid))
        else:
            try:
                gone = time.time() - folder.stat().st_mtime > STALE_STAGING_SECONDS
            except FileNotFoundError:
                continue
        if gone:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def staging_root(offline_path: Path) -> Path:
    """Where Spark joins stage their inputs and outputs: under the offline path, which every
    executor of a cluster must be able to read and write (a shared file system)."""
    return Path(offline_path) / ".spark"
