"""The point-in-time join on the Spark engine equals the DuckDB engine's, row for row.

The data and requests are those of the brute-force oracle suite (`tests.offline.test_pit_oracle`:
hot keys on a two-value key space, null keys, duplicate entity rows, ties on event and created
time, ttl edges, bitemporal, several views of different join keys, offline storage or sources), with
fewer examples: one Spark job per view and example.
"""

from __future__ import annotations

import shutil

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurestore.offline.retrieval import get_historical_features
from tests.offline.pit_repo import VIEWS, build_store, write_rows, write_storage
from tests.offline.test_pit_oracle import ZONES, entity_table, reference, requests, same, world
from tests.spark.conftest import on_spark


@pytest.fixture(scope="module")
def stores(spark, tmp_path_factory):
    duck = build_store(tmp_path_factory.mktemp("pit-spark") / "repo")
    return duck, on_spark(duck)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    strategy=st.sampled_from(["auto", "range", "asof"]),
    data=world(),
    request=requests(),
    bitemporal=st.booleans(),
    fmt=st.sampled_from(["arrow", "pandas"]),
    zone=st.sampled_from([None, *ZONES]),
    stored=st.sets(st.sampled_from(sorted(VIEWS))),
)
def test_spark_equals_duckdb_row_for_row(stores, strategy, data, request, bitemporal, fmt, zone, stored):
    duck, spark = stores
    feature_rows, rows = data
    write_rows(duck.repo_path, feature_rows, tz="UTC")
    shutil.rmtree(duck.config.offline_path, ignore_errors=True)
    for view in stored:
        write_storage(duck, view, feature_rows[VIEWS[view][0]])
    reqs, full = request
    refs = [f"{v}:{f}" for v, fs, _ in reqs for f in fs]
    entity_df = entity_table(rows, fmt, zone)
    names = [n for _, _, ns in reqs for n in ns]
    expected = reference(rows, reqs, feature_rows, bitemporal)
    if bitemporal and strategy == "asof":
        strategy = "range"  # asof cannot check created times
    kwargs = dict(full_feature_names=full, bitemporal=bitemporal, strategy=strategy)
    want = get_historical_features(duck, entity_df, refs, **kwargs).to_arrow()
    got = get_historical_features(spark, entity_df, refs, **kwargs).to_arrow()
    assert got.schema == want.schema
    # Row for row, NaN equal to NaN (Arrow's equals compares NaN unequal unless the buffers match).
    differ = [
        n
        for n in want.column_names
        if not all(same(g, w) for g, w in zip(got.column(n).to_pylist(), want.column(n).to_pylist()))
    ]
    assert not differ, f"strategy {strategy}: Spark and DuckDB differ in {differ}"
    for i, (g, e) in enumerate(zip(got.select(names).to_pylist(), expected)):
        assert all(same(g[n], e[n]) for n in names), f"row {i} ({rows[i]}): {g} != {e}"


def test_null_keys_and_duplicate_rows_come_out_once_each(stores):
    """Feast's Ray join drops these; here every entity row comes out once, in its place."""
    duck, spark = stores
    t = pa.array
    from datetime import datetime, timezone

    ts = datetime(2026, 1, 2, 0, 5, tzinfo=timezone.utc)
    user = [
        {"user_id": 1, "ts": ts, "created": None, "u_int": 7, "u_float": 1.5, "u_str": "a", "u_bool": True}
    ]
    write_rows(duck.repo_path, {"user": user, "route": []})
    shutil.rmtree(duck.config.offline_path, ignore_errors=True)
    entity_df = pa.table(
        {
            "user_id": t([1, None, 1, None, 2], pa.int64()),
            "event_timestamp": t([ts] * 5, pa.timestamp("us", "UTC")),
        }
    )
    got = get_historical_features(spark, entity_df, ["user_none:u_int"]).to_arrow()
    assert got.column("user_id").to_pylist() == [1, None, 1, None, 2]
    assert got.column("u_int").to_pylist() == [7, None, 7, None, None]
    assert got.equals(get_historical_features(duck, entity_df, ["user_none:u_int"]).to_arrow())


CSV_DEFS = """
from featurestore import *
driver = Entity(name="driver", join_keys=["driver_id"])
trips = CsvSource(name="trips", path="data/trips.csv")
stats = FeatureView(name="stats", entities=[driver], source=trips, online=False,
                    schema=[Field("driver_id", Int64), Field("rate", Float64), Field("city", String)])
"""


def test_a_csv_source_and_every_way_out_agree(spark, tmp_path):
    """A source Spark does not read (CSV, DuckDB's type rules) is staged by DuckDB; to_arrow,
    to_pandas, to_parquet and to_batches give the same rows as the DuckDB engine."""
    from datetime import datetime, timedelta, timezone

    import pyarrow.parquet as pq

    from featurestore import FeatureStore
    from tests.repo_builder import make_repo

    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    trips = pa.table(
        {
            "driver_id": [i % 7 for i in range(60)],
            "event_timestamp": [(t0 + timedelta(minutes=i)).isoformat() for i in range(60)],
            "rate": [i / 3 for i in range(60)],
            "city": [f"c{i % 4}" for i in range(60)],
        }
    )
    duck = FeatureStore(make_repo(tmp_path / "repo", {"defs.py": CSV_DEFS}, {"data/trips.csv": trips}))
    duck.apply()
    entity_df = pa.table(
        {
            "driver_id": pa.array([i % 9 for i in range(200)], pa.int64()),
            "event_timestamp": pa.array(
                [t0 + timedelta(seconds=17 * i) for i in range(200)], pa.timestamp("us", "UTC")
            ),
        }
    )
    refs = ["stats:rate", "stats:city"]
    want = get_historical_features(duck, entity_df, refs).to_arrow()
    job = get_historical_features(on_spark(duck), entity_df, refs)
    assert pa.Table.from_batches(list(job.to_batches())).equals(want)
    assert pq.read_table(job.to_parquet(tmp_path / "train.parquet")).equals(want)
    assert job.to_arrow().equals(want)
    assert job.to_pandas().equals(want.to_pandas())
    assert want.column("rate").null_count < 200  # the rows did match


TYPES_DEFS = """
from featurestore import *
item = Entity(name="item", join_keys=["item_id"])
src = ParquetSource(name="items", path="data/items.parquet")
items = FeatureView(name="items", entities=[item], source=src, online=False,
                    schema=[Field("item_id", String), Field("tags", Array(String)), Field("scores", Array(Float64)),
                            Field("blob", Bytes), Field("seen", UnixTimestamp), Field("small", Int32),
                            Field("ratio", Float32), Field("ok", Bool)])
"""


def test_every_value_type_comes_back_as_on_duckdb(spark, tmp_path):
    """Lists, bytes, timestamps, 32-bit numbers and string keys through Spark's Arrow and Parquet."""
    from datetime import datetime, timedelta, timezone

    from featurestore import FeatureStore
    from tests.repo_builder import make_repo

    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    n = 30
    utc = pa.timestamp("us", "UTC")
    items = pa.table(
        {
            "item_id": [f"i{i % 6}" for i in range(n)],
            "event_timestamp": pa.array([t0 + timedelta(minutes=i) for i in range(n)], utc),
            "tags": [[f"t{i}", "x"] if i % 4 else None for i in range(n)],
            "scores": [[i / 2, float("nan")] if i % 3 else [] for i in range(n)],
            "blob": [bytes([i, 0, 255]) if i % 5 else None for i in range(n)],
            "seen": pa.array([t0 - timedelta(days=i) for i in range(n)], utc),
            "small": pa.array(range(n), pa.int32()),
            "ratio": pa.array([i / 7 for i in range(n)], pa.float32()),
            "ok": [i % 2 == 0 for i in range(n)],
        }
    )
    duck = FeatureStore(make_repo(tmp_path / "repo", {"defs.py": TYPES_DEFS}, {"data/items.parquet": items}))
    duck.apply()
    entity_df = pa.table(
        {
            "item_id": [f"i{i % 8}" for i in range(40)],
            "event_timestamp": pa.array([t0 + timedelta(seconds=50 * i) for i in range(40)], utc),
        }
    )
    refs = [f"items:{f}" for f in ("tags", "scores", "blob", "seen", "small", "ratio", "ok")]
    want = get_historical_features(duck, entity_df, refs).to_arrow()
    got = get_historical_features(on_spark(duck), entity_df, refs).to_arrow()
    assert got.schema == want.schema
    assert str(got.to_pylist()) == str(want.to_pylist())  # NaN inside lists prints alike
    assert want.column("small").null_count < 40
