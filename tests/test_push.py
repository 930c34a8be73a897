"""store.push (SPEC §5): rows checked against every view of the push source first, then written whole."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore import (
    DefinitionError,
    Entity,
    FeatureStore,
    FeatureView,
    Field,
    Float64,
    Int64,
    ParquetSource,
    PushError,
    PushSource,
    String,
    UnixTimestamp,
    UnknownNameError,
)
from featurestore.catalog import Catalog
from featurestore.online.lookup import NOT_FOUND, PRESENT
from tests.repo_builder import make_repo

T0 = datetime(2026, 1, 10, 12, 0, tzinfo=timezone.utc)
driver = Entity(name="driver", join_keys=["driver_id"])
batch = ParquetSource(
    name="driver_batch",
    path="data/drivers.parquet",
    timestamp_field="event_timestamp",
    created_timestamp_field="created",
)
push_src = PushSource(name="driver_push", batch_source=batch)
stats = FeatureView(
    name="driver_stats",
    entities=[driver],
    schema=[Field("driver_id", Int64), Field("conv_rate", Float64), Field("trips", Int64)],
    source=push_src,
)
profile = FeatureView(
    name="driver_profile",
    entities=[driver],
    schema=[Field("city", String), Field("joined", UnixTimestamp)],
    source=push_src,
)
archive = FeatureView(
    name="driver_archive", entities=[driver], schema=[Field("trips", Int64)], source=push_src, online=False
)


@pytest.fixture
def store(tmp_path):
    make_repo(tmp_path, {}, project="push_test")
    store = FeatureStore(tmp_path)
    store.apply(
        Catalog(
            entities={"driver": driver},
            sources={"driver_batch": batch, "driver_push": push_src},
            views={v.name: v for v in (stats, profile, archive)},
        )
    )
    yield store
    store.close()


def frame(**overrides) -> pd.DataFrame:
    data = {
        "driver_id": [1, 2, 3],
        "conv_rate": [0.1, 0.2, 0.3],
        "trips": [10, 20, 30],
        "city": ["Oslo", "Rome", None],
        "joined": [T0 - timedelta(days=400)] * 3,
        "event_timestamp": [T0, T0, T0 + timedelta(minutes=1)],
        "unused": ["x", "y", "z"],
    }
    data.update(overrides)
    return pd.DataFrame(data)


def online(store, refs=("driver_stats:trips", "driver_profile:city"), ids=(1, 2, 3)):
    return store.get_online_features(list(refs), {"driver_id": list(ids)})


def offline_rows(store, view: str) -> pa.Table:
    files = store.offline_storage.files(view)
    return pa.concat_tables([pq.read_table(f) for f in files]) if files else pa.table({})


def test_push_online_writes_every_online_view_of_the_source(store):
    assert store.push("driver_push", frame(), to="online") == 3
    resp = online(store)
    assert resp.values["trips"] == [10, 20, 30]
    assert resp.values["city"] == ["Oslo", "Rome", None]
    assert resp.statuses["city"] == [PRESENT] * 3
    assert resp.event_timestamps["trips"][2] == T0 + timedelta(minutes=1)
    assert not store.offline_storage.has_data("driver_stats")


def test_push_offline_appends_feature_rows_and_leaves_online_alone(store):
    assert store.push("driver_push", frame(), to="offline") == 3
    table = offline_rows(store, "driver_stats").sort_by("driver_id")
    assert table.column_names == ["driver_id", "conv_rate", "trips", "__event_ts", "__created_ts"]
    assert table.column("trips").to_pylist() == [10, 20, 30]
    created = table.column("__created_ts").to_pylist()
    assert all(c is not None and c > T0 for c in created)  # no created column pushed: the push time
    assert offline_rows(store, "driver_archive").num_rows == 3  # offline-only views get the rows too
    assert online(store).statuses["trips"] == [NOT_FOUND] * 3


def test_push_both_writes_offline_then_online(store):
    assert store.push("driver_push", frame(created=[T0] * 3), to="both") == 3
    assert offline_rows(store, "driver_profile").column("__created_ts").to_pylist() == [T0] * 3
    assert online(store).values["trips"] == [10, 20, 30]


def test_an_older_push_does_not_replace_newer_online_values(store):
    store.push("driver_push", frame())
    store.push("driver_push", frame(trips=[0, 0, 0], event_timestamp=[T0 - timedelta(hours=1)] * 3))
    assert online(store).values["trips"] == [10, 20, 30]


def test_arrow_input_iso_strings_naive_times_and_pandas_ints_with_gaps(store):
    table = pa.table(
        {
            "driver_id": [7],
            "conv_rate": [0.5],
            "trips": [3],
            "city": ["Oslo"],
            "joined": ["2025-01-01T00:00:00Z"],
            "event_timestamp": ["2026-01-10T12:00:00"],
        }
    )
    assert store.push("driver_push", table) == 1
    resp = online(store, ("driver_stats:trips", "driver_profile:joined"), ids=(7,))
    assert resp.values["joined"] == [datetime(2025, 1, 1, tzinfo=timezone.utc)]
    assert resp.event_timestamps["trips"] == [T0]  # naive = UTC
    store.push("driver_push", frame(trips=[1.0, None, 3.0], event_timestamp=[T0 + timedelta(hours=1)] * 3))
    assert online(store).values["trips"] == [1, None, 3]


@pytest.mark.parametrize(
    "df, message",
    [
        (frame().drop(columns=["trips"]), "column 'trips' .*missing"),
        (frame().drop(columns=["event_timestamp"]), "column 'event_timestamp' .*missing"),
        (
            frame(trips=["10", "20", "x"]),
            "column 'trips' has type (large_)?string, but the view declares it Int64",
        ),
        (frame(trips=[1.0, 2.0, 2.5]), "column 'trips' row 2: value 2.5 is not a valid Int64"),
        (frame(driver_id=[1.0, 2.0, None]), "join key 'driver_id' is null in row 2"),
        (
            frame(event_timestamp=["2026-01-10T12:00:00", "2026-01-10T12:00:00", "yesterday"]),
            "timestamp column 'event_timestamp' row 2: 'yesterday' is not an ISO 8601",
        ),
        (frame(event_timestamp=[T0, T0, None]), "timestamp column 'event_timestamp' is null in row 2"),
        (frame(city=[1, 2, 3]), "column 'city' has type int64, but the view declares it String"),
    ],
)
def test_a_bad_batch_is_refused_whole_naming_column_and_row(store, df, message):
    with pytest.raises(PushError, match=message):
        store.push("driver_push", df, to="both")
    assert online(store).statuses["trips"] == [NOT_FOUND] * 3
    for view in ("driver_stats", "driver_profile", "driver_archive"):
        assert not store.offline_storage.has_data(view)


def test_a_batch_bad_for_the_second_view_writes_nothing_to_the_first(store):
    with pytest.raises(PushError, match="feature view 'driver_profile'.*'joined'"):
        store.push("driver_push", frame().drop(columns=["joined"]), to="online")
    assert online(store, ("driver_stats:trips",)).statuses["trips"] == [NOT_FOUND] * 3


def test_push_refuses_unknown_targets_sources_and_non_push_sources(store):
    with pytest.raises(PushError, match="'nowhere' is not one of"):
        store.push("driver_push", frame(), to="nowhere")
    with pytest.raises(UnknownNameError, match="did you mean 'driver_push'"):
        store.push("driver_pus", frame())
    with pytest.raises(DefinitionError, match="not a PushSource"):
        store.push("driver_batch", frame())
    with pytest.raises(PushError, match="expected a pandas DataFrame or an Arrow table"):
        store.push("driver_push", [{"driver_id": 1}])
    assert store.push("driver_push", frame().iloc[:0]) == 0


def test_an_empty_batch_is_checked_too(store):
    assert store.push("driver_push", frame().iloc[0:0], to="both") == 0
    with pytest.raises(PushError, match="driver_id"):
        store.push("driver_push", pd.DataFrame([{}, {}]), to="online")


def test_rows_from_the_future_are_refused_online_and_kept_offline(store):
    """A future row online would hide every real update of its entity until its time (newest wins)."""
    now = datetime.now(timezone.utc)
    future = frame(event_timestamp=[now, now + timedelta(seconds=30), now + timedelta(days=365 * 30)])
    for to in ("online", "both"):
        with pytest.raises(
            PushError, match=r"driver_stats.*'event_timestamp' row 2 is 20\d\d-.*from the future"
        ):
            store.push("driver_push", future, to=to)
        assert online(store).statuses["trips"] == [NOT_FOUND] * 3
        assert not store.offline_storage.has_data("driver_stats")
    millis = pa.table(
        {
            **{c: pa.array(future[c]) for c in ("driver_id", "conv_rate", "trips", "city", "joined")},
            "event_timestamp": pa.array([int(now.timestamp() * 1000)] * 3, pa.timestamp("s")),
        }
    )
    with pytest.raises(PushError, match=r"row 0 is \d+ us after 1970 \(past year 9999\)"):  # ms read as s
        store.push("driver_push", millis)
    assert store.push("driver_push", future, to="offline") == 3  # planned values, read by time-travel only
    assert store.push("driver_push", future.iloc[:2], to="online") == 2  # within the clock skew
    assert online(store).values["trips"] == [10, 20, None]


# -- join keys typed by the source (issue 12.1): a wrongly typed push cannot poison offline storage ----

UNDECLARED = """
from featurestore import Entity, FeatureView, Field, Float64, Int64, ParquetSource, PushSource

driver = Entity(name="driver", join_keys=["driver_id"])
stats = ParquetSource(name="stats", path="data/stats.parquet", timestamp_field="event_timestamp")
stats_push = PushSource(name="stats_push", batch_source=stats)
live_push = PushSource(name="live_push", timestamp_field="event_timestamp")
driver_stats = FeatureView(name="driver_stats", entities=[driver], source=stats_push,
                           schema=[Field("conv_rate", Float64), Field("trips", Int64)])
driver_live = FeatureView(name="driver_live", entities=[driver], source=live_push, schema=[Field("speed", Float64)])
"""


def undeclared_store(root) -> FeatureStore:
    """driver_id declared nowhere: its type (int64) comes from the Parquet batch source, as in definitions/."""
    make_repo(
        root,
        {"features.py": UNDECLARED},
        {
            "data/stats.parquet": pa.table(
                {
                    "driver_id": pa.array([1, 2], pa.int64()),
                    "conv_rate": [0.1, 0.2],
                    "trips": [1, 2],
                    "event_timestamp": pa.array([T0 - timedelta(days=1)] * 2, pa.timestamp("us", tz="UTC")),
                }
            )
        },
    )
    store = FeatureStore(root)
    store.apply()
    return store


def pushed(ids, **overrides) -> pd.DataFrame:
    data = {
        "driver_id": ids,
        "conv_rate": [0.5] * len(ids),
        "trips": [7] * len(ids),
        "speed": [9.5] * len(ids),
    }
    data["event_timestamp"] = [T0] * len(ids)
    return pd.DataFrame({**data, **overrides})


def training(store, ids, refs=("driver_stats:trips",)):
    entity_df = pd.DataFrame({"driver_id": ids, "event_timestamp": [T0 + timedelta(hours=1)] * len(ids)})
    return store.get_historical_features(entity_df, list(refs)).to_pandas()


def day_files(store, view):
    return {f: f.read_bytes() for f in store.offline_storage.files(view)}


@pytest.fixture
def undeclared(tmp_path):
    store = undeclared_store(tmp_path)
    yield store
    store.close()


@pytest.mark.parametrize(
    "bad, message",
    [
        (pushed([3, "abc"]), r"column 'driver_id' row 1: 'abc' is a str, but the column holds int values"),
        (pushed(["3", "abc"]), r"column 'driver_id'.*Int64, its type in source 'stats' \(row 0: '3'\)"),
        (pushed([3.5]), r"column 'driver_id' row 0: value 3.5 is not a valid Int64"),
        (
            pushed([3], conv_rate=["abc"]),
            r"column 'conv_rate' has type (large_)?string, but the view declares it Float64 \(row 0: 'abc'\)",
        ),
    ],
)
@pytest.mark.parametrize("to", ["both", "offline", "online"])
def test_a_wrongly_typed_push_is_refused_and_stored_files_keep_their_types(undeclared, bad, message, to):
    store = undeclared
    assert store.push("stats_push", pushed([1, 2], trips=[11, 12]), to="both") == 2
    before = day_files(store, "driver_stats")
    with pytest.raises(PushError, match=message):
        store.push("stats_push", bad, to=to)
    assert day_files(store, "driver_stats") == before  # nothing rewritten
    assert store.get_online_features(["driver_stats:trips"], [{"driver_id": 3}]).statuses["trips"] == [
        NOT_FOUND
    ]
    # later training sets and integer pushes still work
    assert training(store, [1, 2])["trips"].tolist() == [11, 12]
    assert store.push("stats_push", pushed([3], trips=[13]), to="both") == 1
    assert training(store, [3])["trips"].tolist() == [13]
    for f in store.offline_storage.files("driver_stats"):
        assert pq.read_schema(f).field("driver_id").type == pa.int64()


def test_lossless_key_casts_are_made(undeclared):
    store = undeclared
    table = pa.Table.from_pandas(pushed([1, 2]), preserve_index=False)
    table = table.set_column(0, "driver_id", table.column("driver_id").cast(pa.int32()))
    assert store.push("stats_push", table, to="both") == 2
    assert store.push("stats_push", pushed([3.0]), to="both") == 1  # pandas ints with gaps are floats
    assert training(store, [1, 2, 3])["trips"].tolist() == [7, 7, 7]
    (f,) = store.offline_storage.files("driver_stats", "pushed")
    assert pq.read_schema(f).field("driver_id").type == pa.int64()


def test_a_key_known_only_from_pushed_rows_keeps_its_type(undeclared):
    """A push source without a batch source: the first push to offline storage sets the key's type."""
    store = undeclared
    assert store.push("live_push", pushed([1]), to="offline") == 1
    with pytest.raises(PushError, match=r"column 'driver_id'.*Int64, its type in its offline storage"):
        store.push("live_push", pushed(["abc"]), to="both")
    assert training(store, [1], ["driver_live:speed"])["speed"].tolist() == [9.5]


def test_offline_storage_refuses_rows_that_would_change_a_stored_column_type(undeclared):
    """The guard under push: appending rows of another column type to a day file is refused."""
    store = undeclared
    store.push("stats_push", pushed([1]), to="offline")
    before = day_files(store, "driver_stats")
    (path,) = before
    view = store.catalog.view("driver_stats")
    rows = pa.table(
        {
            "driver_id": ["abc"],
            "conv_rate": [0.5],
            "trips": pa.array([1], pa.int64()),
            "__event_ts": pa.array([T0], pa.timestamp("us", tz="UTC")),
            "__created_ts": pa.array([T0], pa.timestamp("us", tz="UTC")),
        }
    )
    with pytest.raises(PushError, match=rf"'driver_id' is int64 in offline storage \({path}\) but string"):
        store.offline_storage.append(view, rows)
    assert day_files(store, "driver_stats") == before
    narrower = rows.set_column(0, "driver_id", pa.array([2], pa.int32()))
    assert store.offline_storage.append(view, narrower) == 1  # lossless: stored as int64
    assert pq.read_schema(path).field("driver_id").type == pa.int64()
    assert training(store, [1, 2])["trips"].tolist() == [7, 1]
