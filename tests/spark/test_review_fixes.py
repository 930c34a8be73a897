"""Regressions found in review of the Spark engine: parallelism of small joins, JVM errors,
case-differing feature names, the user's own session, staging leaks, on-demand row numbers."""

from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from featurestore.offline.spark import BUCKET, bucketed


@pytest.mark.parametrize("buckets", [2, 3, 16])
def test_every_bucket_has_a_partition_of_its_own(spark, buckets):
    """A small join (as many buckets as cores) must use every core: bucket i lands in partition i."""
    from pyspark.sql import types as T

    df = spark.range(500).withColumnRenamed("id", "k")
    parts = bucketed(df, ["k"], {"k": T.LongType()}, buckets).select(
        BUCKET, F.spark_partition_id().alias("p")
    )
    assert parts.select("p").distinct().count() == buckets
    # one bucket per partition, so the cogroup by bucket runs one group per task
    assert parts.groupBy("p").agg(F.countDistinct(BUCKET).alias("n")).where("n != 1").count() == 0


def test_a_jvm_error_is_a_retrieval_error_naming_its_cause(spark, tmp_path, monkeypatch):
    """A failure inside the JVM (here a staged file gone before the job runs, like a lost disk)
    comes out as a RetrievalError with Spark's one-line message, not a py4j error with a Java trace."""
    import os
    from datetime import datetime, timezone

    import pandas as pd

    from featurestore.errors import RetrievalError
    from featurestore.offline import spark as engine
    from tests.offline.pit_repo import build_store, write_rows
    from tests.spark.conftest import on_spark

    duck = build_store(tmp_path / "repo")
    t = datetime(2026, 1, 2, tzinfo=timezone.utc)
    row = dict(user_id=1, ts=t, created=None, u_int=1, u_float=1.0, u_str="a", u_bool=True)
    write_rows(duck.repo_path, {"user": [row], "route": []})
    view_join = engine._view_join

    def vanishing(spark, entity, rows_path, *args):
        joined = view_join(spark, entity, rows_path, *args)
        os.remove(rows_path)
        return joined

    monkeypatch.setattr(engine, "_view_join", vanishing)
    entity_df = pd.DataFrame({"user_id": [1], "event_timestamp": [t]})
    with pytest.raises(
        RetrievalError, match=r"user_none.*failed on Spark: org\.apache\.\S+: \[FAILED_READ"
    ) as e:
        on_spark(duck).get_historical_features(entity_df, ["user_none:u_int"]).to_arrow()
    assert "\tat " not in str(e.value) and len(str(e.value)) < 1000


CASE_DEFS = """
from featurestore import *
d = Entity(name="d", join_keys=["id"])
a = FeatureView(name="a", entities=[d], online=False, source=ParquetSource(name="sa", path="data/a.parquet"),
                schema=[Field("id", Int64), Field("val", Int64)])
b = FeatureView(name="b", entities=[d], online=False, source=ParquetSource(name="sb", path="data/b.parquet"),
                schema=[Field("id", Int64), Field("VAL", Int64)])
"""


def test_features_differing_only_in_case_across_views(spark, tmp_path):
    """Spark resolves names case-insensitively; `a:val` and `b:VAL` still come out as on DuckDB."""
    from datetime import datetime, timezone

    import pyarrow as pa

    from featurestore import FeatureStore
    from tests.repo_builder import make_repo
    from tests.spark.conftest import on_spark

    t = datetime(2026, 1, 1, tzinfo=timezone.utc)
    ts = pa.array([t, t], pa.timestamp("us", "UTC"))
    files = {
        "data/a.parquet": pa.table({"id": [1, 2], "event_timestamp": ts, "val": [10, 11]}),
        "data/b.parquet": pa.table({"id": [1, 2], "event_timestamp": ts, "VAL": [20, 21]}),
    }
    duck = FeatureStore(make_repo(tmp_path / "repo", {"d.py": CASE_DEFS}, files))
    duck.apply()
    entity_df = pa.table({"id": [2, 1, 3], "event_timestamp": pa.array([t] * 3, pa.timestamp("us", "UTC"))})
    want = duck.get_historical_features(entity_df, ["a:val", "b:VAL"]).to_arrow()
    got = on_spark(duck).get_historical_features(entity_df, ["a:val", "b:VAL"]).to_arrow()
    assert got.equals(want)
    assert got.column("VAL").to_pylist() == [21, 20, None]


def test_the_users_session_is_used_as_it_is_and_its_time_zone_does_not_matter(spark, tmp_path):
    """From a thread without an active session the engine finds the application's session and
    changes none of its settings; a join under a non-UTC session time zone equals DuckDB's."""
    import threading

    from featurestore.offline.spark_session import spark_session
    from tests.spark import test_pit_spark

    zone = "spark.sql.session.timeZone"
    spark.conf.set(zone, "America/New_York")
    try:
        found: list[object] = []
        thread = threading.Thread(target=lambda: found.append(spark_session("local[*]")))
        thread.start()
        thread.join()
        assert found == [spark]
        assert spark.conf.get(zone) == "America/New_York"
        test_pit_spark.test_every_value_type_comes_back_as_on_duckdb(spark, tmp_path)  # timestamps
    finally:
        spark.conf.set(zone, "UTC")


def test_saving_a_spark_training_set_streams_and_fingerprints_as_on_duckdb(spark, tmp_path):
    """save() and compare() read a Spark result a batch at a time (never `to_arrow`), and the
    fingerprint, column hashes and profiles equal the DuckDB engine's for the same rows."""
    from datetime import datetime, timedelta, timezone

    import pyarrow as pa

    from tests.offline.pit_repo import build_store, write_rows
    from tests.spark.conftest import on_spark

    duck = build_store(tmp_path / "repo")
    t0 = datetime(2026, 1, 2, tzinfo=timezone.utc)
    user = [
        dict(user_id=i % 5, ts=t0 + timedelta(minutes=i), created=None, u_int=i, u_float=i / 3,
             u_str=f"s{i % 3}" if i % 4 else None, u_bool=i % 2 == 0)
        for i in range(40)
    ]  # fmt: skip
    write_rows(duck.repo_path, {"user": user, "route": []})
    n = 40_000  # several of to_batches' batches
    entity_df = pa.table(
        {
            "user_id": pa.array([None if i % 11 == 0 else i % 7 for i in range(n)], pa.int64()),
            "event_timestamp": pa.array(
                [t0 + timedelta(seconds=i % 3000) for i in range(n)], pa.timestamp("us", "UTC")
            ),
        }
    )
    refs = ["user_none:u_int", "user_none:u_float", "user_none:u_str", "user_2m:u_bool"]
    want = duck.get_historical_features(entity_df, refs).save("on_duckdb")
    job = on_spark(duck).get_historical_features(entity_df, refs)
    assert job.streams_batches

    def whole(*args, **kwargs):
        raise AssertionError("the whole result was read on the driver")

    job.to_arrow = whole  # type: ignore[method-assign]
    got = job.save("on_spark")
    assert got.fingerprint == want.fingerprint
    assert got.result == want.result and got.entity_rows == want.entity_rows
    # the sketches' bytes and the last bit of sums depend on the order of the scan (a file, not a table)
    a, b = _without_sketches(got.extra["profile"]), _without_sketches(want.extra["profile"])
    for c in a["columns"]:
        m2, want_m2 = a["columns"][c].pop("m2", None), b["columns"][c].pop("m2", None)
        assert m2 == want_m2 or m2 == pytest.approx(want_m2, rel=1e-12)
    assert a == b
    assert got.extra["reference"] == want.extra["reference"]
    assert on_spark(duck).training_sets.compare("on_duckdb").same


def _without_sketches(profile: dict) -> dict:
    return {
        **profile,
        "columns": {
            c: {k: v for k, v in d.items() if k not in ("distinct", "kll")}
            for c, d in profile["columns"].items()
        },
    }


def test_staging_folders_of_killed_processes_are_swept(tmp_path):
    """A process killed mid-job leaves `.spark/pit-*` behind: the next job removes it (its pid is
    dead on this host), and those of other hosts once a day old; live ones stay."""
    import os
    import socket
    import subprocess
    import sys

    from featurestore.offline.spark import new_staging

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    host = socket.gethostname()
    names = {
        f"pit-{host}-{int(dead.stdout)}-abc": False,
        f"online-{host}-{int(dead.stdout)}-def": False,
        f"pit-{host}-{os.getpid()}-live": True,
        "pit-other-host-1-fresh": True,
        "pit-other-host-1-old": False,
        "pit-legacy_1": False,  # old: no owner in the name
        "notes": True,
    }
    for name in names:
        (tmp_path / name).mkdir()
    for name in ("pit-other-host-1-old", "pit-legacy_1"):
        os.utime(tmp_path / name, (0, 0))
    mine = new_staging(tmp_path, "pit")
    assert mine.name.startswith(f"pit-{host}-{os.getpid()}-")
    assert {n for n in names if (tmp_path / n).exists()} == {n for n, kept in names.items() if kept}


OD_DEFS = """
from featurestore import *
driver = Entity(name="driver", join_keys=["driver_id"])
stats = FeatureView(name="stats", entities=[driver], source=ParquetSource(name="src", path="data/stats.parquet"),
                    online=False, schema=[Field("driver_id", Int64), Field("conv_rate", Float64)])
@on_demand_feature_view(sources=[stats[["conv_rate"]]], schema=[Field("scaled", Float64)])
def scaled(row):
    return {"scaled": row["conv_rate"] * 2}
"""


def test_on_demand_errors_name_the_entity_df_row_when_streamed(spark, tmp_path):
    """to_parquet on Spark applies on-demand views a streamed batch at a time: a failure still
    names the row by its number in entity_df, not in its batch."""
    from datetime import datetime, timedelta, timezone

    import pyarrow as pa

    from featurestore import FeatureStore
    from featurestore.errors import TransformError
    from tests.repo_builder import make_repo
    from tests.spark.conftest import on_spark

    t = datetime(2026, 1, 1, tzinfo=timezone.utc)
    utc = pa.timestamp("us", "UTC")
    files = {
        "data/stats.parquet": pa.table(
            {"driver_id": [1], "event_timestamp": pa.array([t], utc), "conv_rate": [0.5]}
        )
    }
    duck = FeatureStore(make_repo(tmp_path / "repo", {"f.py": OD_DEFS}, files))
    duck.apply()
    n, bad = 17_000, 16_500  # past the first streamed batch
    ids = [2 if i == bad else 1 for i in range(n)]  # driver 2 has no conv_rate: the function fails
    entity_df = pa.table({"driver_id": ids, "event_timestamp": pa.array([t + timedelta(hours=1)] * n, utc)})
    with pytest.raises(TransformError, match=f"entity_df row {bad} "):
        on_spark(duck).get_historical_features(entity_df, ["scaled:scaled"]).to_parquet(
            tmp_path / "out.parquet"
        )


@pytest.mark.parametrize("batch", [1, 3, 8, 1000])
def test_hashing_batches_equals_hashing_the_table(batch):
    """TableHasher over any batching gives hash_table's digests (every kind of column, nulls)."""
    from datetime import datetime, timezone

    import pyarrow as pa

    from featurestore.models.batch_hash import TableHasher
    from featurestore.models.lineage import hash_table

    ts = pa.array(
        [datetime(2026, 1, 1, tzinfo=timezone.utc), None, datetime(2026, 2, 1, tzinfo=timezone.utc)]
    )
    table = pa.table(
        {
            "i": [1, None, 3],
            "f": [0.5, float("nan"), None],
            "s": ["x", None, "yy"],
            "b": [True, None, False],
            "bin": [b"a", None, b""],
            "l": [[1], None, []],
            "t": ts.cast(pa.timestamp("us", "UTC")),
            "d": pa.array(["u", "v", None]).dictionary_encode(),
        }
    )
    table = pa.concat_tables([table] * 7)
    for t in (table, table.slice(0, 0)):
        hasher = TableHasher(t.schema)
        for b in t.to_batches(max_chunksize=batch):
            hasher.update(b)
        assert hasher.digest() == hash_table(t)
