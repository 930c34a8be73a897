"""Materialization on the Spark engine: the same offline files and the same online values as on DuckDB.

Two repos with the same definitions and data, one on each engine; the Spark run's latest rows are
chosen and written online by the executors (ties on event time broken by created time and then by
the feature values, as on DuckDB; null keys left out).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.parquet as pq

from featurestore import FeatureStore
from tests.repo_builder import make_repo
from tests.spark.conftest import on_spark

T0 = datetime(2026, 1, 1, 20, tzinfo=timezone.utc)
DEFS = """
from featurestore import *
driver = Entity(name="driver", join_keys=["driver_id"])
src = ParquetSource(name="stats", path="data/stats.parquet", created_timestamp_field="created")
stats = FeatureView(name="stats", entities=[driver], online=True, source=src,
                    schema=[Field("driver_id", Int64), Field("value", Float64), Field("tag", String)])
"""
DRIVERS = list(range(40))


def source() -> pa.Table:
    """Rows every 90 minutes across midnight (two day files), with ties on event time, on created time
    too, and a null key."""
    ids, ts, created, value, tag = [], [], [], [], []
    for d in DRIVERS:
        for h in range(0, 8):
            for tie in range(1 + (d % 3 == 0)):  # every third driver: two rows at each time
                ids.append(d)
                ts.append(T0 + timedelta(minutes=90 * h))
                created.append(None if d % 5 == 0 else T0 + timedelta(minutes=90 * h + (d % 2) * tie))
                value.append(float(d * 100 + h) + tie * 0.5)
                tag.append(f"d{d}h{h}t{tie}")
    ids.append(None)
    ts.append(T0)
    created.append(None)
    value.append(-1.0)
    tag.append("null key")
    utc = pa.timestamp("us", "UTC")
    return pa.table(
        {
            "driver_id": pa.array(ids, pa.int64()),
            "event_timestamp": pa.array(ts, utc),
            "created": pa.array(created, utc),
            "value": value,
            "tag": tag,
        }
    )


def _offline_files(store: FeatureStore) -> dict[str, bytes]:
    """Each stored day file of the view, by its path under the view's folder."""
    root = store.offline_storage.view_dir("stats")
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.parquet"))}


def test_spark_materialization_writes_what_duckdb_writes(spark, tmp_path):
    data = {"data/stats.parquet": source()}
    duck = FeatureStore(make_repo(tmp_path / "duck", {"defs.py": DEFS}, data))
    spark_store = on_spark(FeatureStore(make_repo(tmp_path / "spark", {"defs.py": DEFS}, data)))
    for store in (duck, spark_store):
        store.apply()
    start, end = T0 - timedelta(days=1), T0 + timedelta(days=1)
    ran = [store.materialize(start, end) for store in (duck, spark_store)]
    assert ran[1].rows == ran[0].rows and ran[1].online_rows == ran[0].online_rows == len(DRIVERS)
    offline = [_offline_files(store) for store in (duck, spark_store)]
    assert list(offline[1]) == list(offline[0]) and len(offline[0]) == 2  # two days
    for name in offline[0]:
        assert offline[1][name] == offline[0][name], f"offline file {name} differs"
        assert pq.read_table(pa.BufferReader(offline[0][name])).num_rows > 0
    entity_rows = [{"driver_id": d} for d in [*DRIVERS, 999]]
    refs = ["stats:value", "stats:tag"]
    want = duck.get_online_features(refs, entity_rows).to_dict()
    got = spark_store.get_online_features(refs, entity_rows).to_dict()
    assert got == want
    assert want["tag"][3] == "d3h7t1"  # a tie on event time, broken as the point-in-time join does
