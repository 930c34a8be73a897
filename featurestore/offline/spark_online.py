"""Materialization's online write on the Spark engine: the latest row per entity, chosen and written
by the executors.

    online_rows = write_latest_online(spark, config, con, view, relation, staging)

The rows a run sends online (`relation`, DuckDB SQL over the run's staged rows) are staged once more
as Parquet; Spark buckets them by a hash of the join keys (every row of one entity in one bucket),
and each bucket, in a Python worker, picks its entities' latest rows with the same SQL as on DuckDB
(`featurestore.materialize.latest_rows_sql`: newest event, then created time, then feature values)
and writes them to the online store it opens from the repo's config. The online stores keep the
newest row per entity, so buckets write in any order and a retried task writes the same rows
again harmlessly. Only one count per bucket comes back to the driver.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from ..errors import MaterializationError
from .sources import arrow_table, quote_literal
from .spark import (
    BUCKET,
    ROWS_PER_BUCKET,
    bucketed,
    first_error_line,
    is_spark_error,
    kernel_connection,
    new_staging,
)

if TYPE_CHECKING:
    import duckdb
    from pyspark.sql import SparkSession

    from ..config import RepoConfig
    from ..definitions import FeatureView


def write_latest_online(
    spark: SparkSession,
    config: RepoConfig,
    con: duckdb.DuckDBPyConnection,
    view: FeatureView,
    relation: str,
    staging_root: Path,
) -> int:
    """Write the latest row per entity of `relation` (feature rows of `view`) online from the
    executors; returns the number of entity rows written. `con` (materialization's connection,
    memory bounded) stages the rows."""
    staging = new_staging(staging_root, "online")
    try:
        path = staging / "rows.parquet"
        row = con.execute(
            f"COPY (SELECT * FROM {relation}) TO {quote_literal(str(path))} (FORMAT parquet)"
        ).fetchone()
        count = int(row[0]) if row else 0
        if count == 0:
            return 0
        rows = spark.read.parquet(str(path))

        # A plain function, not a functools.partial: pyspark infers the UDF's kind from its type hints.
        def kernel(table: pa.Table) -> pa.Table:
            return write_bucket(config, view, table)

        buckets = max(spark.sparkContext.defaultParallelism, math.ceil(count / ROWS_PER_BUCKET))
        types = {f.name: f.dataType for f in rows.schema.fields}
        try:
            written = (
                bucketed(rows, view.join_keys, types, buckets)
                .groupBy(BUCKET)
                .applyInArrow(kernel, "rows long")
                .groupBy()
                .sum("rows")
                .first()
            )
        except Exception as e:
            if is_spark_error(e):
                raise MaterializationError(
                    f"view '{view.name}': writing its latest rows online from Spark failed: {first_error_line(e)}"
                ) from None
            raise
        return int(written[0] or 0) if written is not None else 0
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_bucket(config: RepoConfig, view: FeatureView, rows: pa.Table) -> pa.Table:
    """In a Spark Python worker: the bucket's latest row per entity, written to the online store."""
    from ..materialize import latest_rows_sql
    from ..online import open_online_store

    con = kernel_connection()
    try:
        con.register("__rows", rows.drop_columns([BUCKET]))
        latest = arrow_table(con, latest_rows_sql(view, "__rows"))
    finally:
        con.close()
    written = 0
    if latest.num_rows:
        store = open_online_store(config)
        try:
            written = store.write(view, latest)
        finally:
            store.close()  # its connections: a Python worker runs many buckets
    return pa.table({"rows": pa.array([written], pa.int64())})
