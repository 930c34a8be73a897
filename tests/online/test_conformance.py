"""The online store conformance suite: every test runs against SQLite and a real Redis server.

What any backend must do (SPEC §7): values round-trip exactly, the newest event time wins whatever
the order of writes, statuses per value, many views x many entities in one round trip, composite
keys, projects isolated by key prefix, delete.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import threading
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurestore import FeatureStore, RetrievalError, UnknownNameError
from featurestore.online.lookup import NOT_FOUND, OUTSIDE_MAX_AGE, PRESENT
from tests.online.conftest import ALL_TYPES, NOW, catalog, rows


def fixture_settings(examples: int) -> settings:
    # The store fixture is shared by the examples of one test: each example uses keys of its own
    # or overwrites with an equal event time (which wins), so examples do not see each other.
    return settings(
        max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )


ALL_REFS = [f"all_types:{f.name}" for f in ALL_TYPES]


def view(store: FeatureStore, name: str):
    return store.catalog.view(name)


def same(a, b) -> bool:
    """Exact equality that also holds for NaN == NaN and tells int from float and bool from int."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


# -- values ----------------------------------------------------------------------------------

int32s = st.integers(-(2**31), 2**31 - 1)
int64s = st.integers(-(2**63), 2**63 - 1)
float32s = st.floats(width=32)
float64s = st.floats()
texts = st.text()
times = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(timezone.utc)
)


def nullable(s):
    return st.none() | s


ROW = st.fixed_dictionaries(
    {
        "i32": nullable(int32s),
        "i64": nullable(int64s),
        "f32": nullable(float32s),
        "f64": nullable(float64s),
        "s": nullable(texts),
        "b": nullable(st.booleans()),
        "ts": nullable(times),
        "raw": nullable(st.binary()),
        "ints": nullable(st.lists(nullable(int64s), max_size=5)),
        "strs": nullable(st.lists(nullable(texts), max_size=5)),
        "floats": nullable(st.lists(nullable(float64s), max_size=5)),
        "flags": nullable(st.lists(nullable(st.booleans()), max_size=5)),
        "times": nullable(st.lists(nullable(times), max_size=5)),
        "blobs": nullable(st.lists(nullable(st.binary()), max_size=5)),
    }
)


@fixture_settings(40)
@given(values=st.lists(ROW, min_size=1, max_size=5))
def test_every_type_round_trips_exactly(store, values):
    v = view(store, "all_types")
    ids = list(range(len(values)))
    data = {"driver_id": ids, **{f.name: [row[f.name] for row in values] for f in ALL_TYPES}}
    assert store.online_store.write(v, rows(v, data, NOW)) == len(values)
    got = store.get_online_features(ALL_REFS, {"driver_id": ids}).to_dict()
    for f in ALL_TYPES:
        for i, row in enumerate(values):
            expected = row[f.name]
            if f.name == "f32" and expected is not None:
                expected = float(np.float32(expected))
            assert same(got[f.name][i], expected), (f.name, got[f.name][i], expected)


def test_null_and_nan_stay_distinct_and_ints_stay_ints(store):
    v = view(store, "all_types")
    data = {
        "driver_id": [1, 2],
        "f64": [float("nan"), None],
        "i64": [7, None],
        "floats": [[float("nan"), None], None],
        "b": [False, None],
        "i32": [0, -1],
    }
    store.online_store.write(v, rows(v, data, NOW))
    got = store.get_online_features(
        ["all_types:f64", "all_types:i64", "all_types:floats", "all_types:b", "all_types:i32"],
        [{"driver_id": 1}, {"driver_id": 2}],
    )
    d = got.to_dict()
    assert math.isnan(d["f64"][0]) and d["f64"][1] is None
    assert d["i64"] == [7, None] and type(d["i64"][0]) is int
    assert math.isnan(d["floats"][0][0]) and d["floats"][0][1] is None and d["floats"][1] is None
    assert d["b"] == [False, None] and d["b"][0] is False
    assert d["i32"] == [0, -1]
    assert got.statuses["f64"] == [PRESENT, PRESENT]  # a stored null is a present value
    table = got.to_arrow()
    assert table.schema.field("i64").type == pa.int64() and table.column("f64").null_count == 1
    df = got.to_pandas()
    assert str(df["i64"].dtype) == "Int64" and df["i64"][0] == 7


def test_timestamps_come_back_as_utc_datetimes(store):
    v = view(store, "all_types")
    naive = datetime(2026, 3, 1, 12, 30, 0, 999999)
    other_zone = datetime(2026, 3, 1, 14, 30, tzinfo=timezone(timedelta(hours=2)))
    store.online_store.write(
        v,
        rows(
            v, {"driver_id": [1], "ts": pa.array([naive], pa.timestamp("us")), "times": [[other_zone]]}, NOW
        ),
    )
    d = store.get_online_features(["all_types:ts", "all_types:times"], [{"driver_id": 1}]).to_dict()
    assert d["ts"] == [naive.replace(tzinfo=timezone.utc)] and d["ts"][0].tzinfo == timezone.utc
    assert d["times"] == [[datetime(2026, 3, 1, 12, 30, tzinfo=timezone.utc)]]


# -- newest wins -----------------------------------------------------------------------------


WRITES = st.lists(
    st.tuples(st.integers(0, 4), st.integers(0, 6), st.integers(-1000, 1000)), min_size=1, max_size=40
)


@fixture_settings(30)
@given(writes=WRITES, cuts=st.lists(st.integers(1, 40), max_size=4), data=st.data())
def test_newest_event_time_wins_whatever_the_order(store, writes, cuts, data):
    v = view(store, "driver_stats")
    first = int.from_bytes(os.urandom(5), "big")  # entity ids of their own (hypothesis seeds random)
    order = data.draw(st.permutations(writes))
    base = NOW - timedelta(hours=1)
    # The oracle: apply writes one by one; a write replaces a row whose event time is not newer.
    expected: dict[int, tuple[int, int]] = {}
    for entity, ts, value in order:
        if entity not in expected or expected[entity][0] <= ts:
            expected[entity] = (ts, value)
    bounds = sorted({0, len(order), *(c for c in cuts if c < len(order))})
    for lo, hi in zip(bounds, bounds[1:]):  # several write calls, several rows per call
        part = order[lo:hi]
        store.online_store.write(
            v,
            rows(
                v,
                {
                    "driver_id": [first + e for e, _, _ in part],
                    "trips": [x for _, _, x in part],
                    "conv_rate": [0.5] * len(part),
                },
                [base + timedelta(seconds=t) for _, t, _ in part],
            ),
        )
    got = store.get_online_features(["driver_stats:trips"], {"driver_id": [first + e for e in range(5)]})
    for entity in range(5):
        if entity in expected:
            ts, value = expected[entity]
            assert got.values["trips"][entity] == value
            assert got.event_timestamps["trips"][entity] == base + timedelta(seconds=ts)
            assert got.statuses["trips"][entity] == PRESENT
        else:
            assert got.statuses["trips"][entity] == NOT_FOUND


def test_an_older_write_never_replaces_a_newer_row_and_equal_time_replaces(store):
    v = view(store, "driver_stats")
    write = store.online_store.write
    write(v, rows(v, {"driver_id": [1], "trips": [10], "conv_rate": [0.1]}, NOW))
    write(v, rows(v, {"driver_id": [1], "trips": [5], "conv_rate": [0.2]}, NOW - timedelta(seconds=1)))
    assert store.get_online_features(["driver_stats:trips"], {"driver_id": [1]}).values["trips"] == [10]
    write(v, rows(v, {"driver_id": [1], "trips": [11], "conv_rate": [0.3]}, NOW))
    assert store.get_online_features(["driver_stats:trips"], {"driver_id": [1]}).values["trips"] == [11]


def test_concurrent_writers_keep_the_newest_row(store):
    v = view(store, "driver_stats")
    stamps = list(range(200))
    random.Random(7).shuffle(stamps)

    def writer(part):
        for ts in part:
            store.online_store.write(
                v,
                rows(
                    v,
                    {"driver_id": [1, 2], "trips": [ts, -ts], "conv_rate": [0.0, 0.0]},
                    NOW - timedelta(seconds=1000 - ts),
                ),
            )

    threads = [threading.Thread(target=writer, args=(stamps[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.get_online_features(["driver_stats:trips"], {"driver_id": [1, 2]}).values["trips"] == [
        199,
        -199,
    ]


def test_write_skips_rows_with_a_null_key_or_time_and_counts_the_rest(store):
    v = view(store, "route_stats")
    batch = pa.table(
        {
            "origin": pa.array([1, None, 3], pa.int64()),
            "destination": ["a", "b", None],
            "eta": [1.0, 2.0, 3.0],
            "__event_ts": pa.array([NOW] * 3, pa.timestamp("us", tz="UTC")),
        }
    )
    assert store.online_store.write(v, batch) == 1
    v2 = view(store, "driver_stats")
    batch = rows(v2, {"driver_id": [1, 2], "trips": [1, 2], "conv_rate": [0.0, 0.0]}, [NOW, None])
    assert store.online_store.write(v2, batch.to_batches()) == 1


# -- statuses --------------------------------------------------------------------------------


def test_statuses_present_not_found_and_outside_max_age(store):
    v = view(store, "driver_stats")  # ttl = 1 day
    store.online_store.write(
        v,
        rows(
            v,
            {"driver_id": [1, 2, 3], "trips": [1, 2, 3], "conv_rate": [0.1, 0.2, 0.3]},
            [NOW, NOW - timedelta(days=1, seconds=60), NOW - timedelta(hours=23)],
        ),
    )
    p = view(store, "customer_profile")  # no ttl: never too old
    store.online_store.write(
        p, rows(p, {"customer_id": [9], "age": [40], "city": ["Oslo"]}, NOW - timedelta(days=3650))
    )
    resp = store.get_online_features(
        ["driver_stats:trips", "driver_stats:conv_rate", "customer_profile:age"],
        {"driver_id": [1, 2, 3, 4, None], "customer_id": [9, 9, 9, 9, 8]},
    )
    assert resp.statuses["trips"] == [PRESENT, OUTSIDE_MAX_AGE, PRESENT, NOT_FOUND, NOT_FOUND]
    assert resp.values["trips"] == [1, None, 3, None, None]
    assert resp.values["conv_rate"] == [0.1, None, 0.3, None, None]
    assert resp.event_timestamps["trips"][1] == NOW - timedelta(days=1, seconds=60)  # still reported
    assert resp.event_timestamps["trips"][3] is None
    assert resp.statuses["age"] == [PRESENT] * 4 + [NOT_FOUND]
    d = resp.to_dict(include_status=True, include_event_timestamps=True)
    assert list(d) == [
        "driver_id",
        "customer_id",
        "trips",
        "trips__status",
        "trips__event_timestamp",
        "conv_rate",
        "conv_rate__status",
        "conv_rate__event_timestamp",
        "age",
        "age__status",
        "age__event_timestamp",
    ]
    assert d["age__event_timestamp"][0] == NOW - timedelta(days=3650)
    df = resp.to_pandas(include_status=True)
    assert list(df["trips__status"]) == resp.statuses["trips"]


# -- reads -----------------------------------------------------------------------------------


def test_many_views_and_entities_are_read_in_one_round_trip(store):
    d, c, dc = view(store, "driver_stats"), view(store, "customer_profile"), view(store, "driver_customer")
    store.online_store.write(
        d,
        rows(
            d,
            {
                "driver_id": list(range(50)),
                "trips": list(range(50)),
                "conv_rate": [i / 100 for i in range(50)],
            },
            NOW,
        ),
    )
    store.online_store.write(
        c,
        rows(
            c,
            {"customer_id": [f"c{i}" for i in range(50)], "age": list(range(20, 70)), "city": ["Oslo"] * 50},
            NOW,
        ),
    )
    store.online_store.write(dc, rows(dc, {"driver_id": [3], "customer_id": ["c3"], "rides": [12]}, NOW))
    calls = []
    real_read = store.online_store.read
    store.online_store.read = lambda keys: calls.append(len(keys)) or real_read(keys)
    entity = {"driver_id": list(range(60)), "customer_id": [f"c{i}" for i in range(60)]}
    resp = store.get_online_features(
        [
            "driver_stats:trips",
            "customer_profile:age",
            "customer_profile:city",
            "driver_customer:rides",
            "driver_stats:conv_rate",
        ],
        entity,
    )
    assert calls == [180]
    d = resp.to_dict()
    assert list(d) == ["driver_id", "customer_id", "trips", "conv_rate", "age", "city", "rides"]
    assert d["trips"] == list(range(50)) + [None] * 10
    assert d["age"] == list(range(20, 70)) + [None] * 10
    assert d["rides"] == [None] * 3 + [12] + [None] * 56
    assert d["driver_id"] == entity["driver_id"]


def test_composite_keys_never_collide(store):
    v = view(store, "route_stats")
    origins = [1, 1, 2, 12]
    dests = ["a\x1f", "a", "\x1fb", "b"]
    store.online_store.write(
        v, rows(v, {"origin": origins, "destination": dests, "eta": [1.0, 2.0, 3.0, 4.0]}, NOW)
    )
    resp = store.get_online_features(
        ["route_stats:eta"], [{"origin": o, "destination": d} for o, d in zip(origins + [1], dests + ["2"])]
    )
    assert resp.values["eta"] == [1.0, 2.0, 3.0, 4.0, None]
    assert resp.values["origin"] == origins + [1]


def test_entity_rows_in_every_accepted_shape_and_key_types_are_lenient(store):
    v = view(store, "driver_stats")
    store.online_store.write(
        v, rows(v, {"driver_id": [1001, 1002], "trips": [1, 2], "conv_rate": [0.5, 0.6]}, NOW)
    )
    refs = ["driver_stats:trips"]
    expected = [1, 2]
    assert (
        store.get_online_features(refs, [{"driver_id": 1001}, {"driver_id": 1002}]).values["trips"]
        == expected
    )
    assert store.get_online_features(refs, {"driver_id": [1001, 1002]}).values["trips"] == expected
    assert store.get_online_features(refs, {"driver_id": np.array([1001, 1002])}).values["trips"] == expected
    assert (
        store.get_online_features(refs, pd.DataFrame({"driver_id": [1001, 1002]})).values["trips"] == expected
    )
    assert store.get_online_features(refs, pa.table({"driver_id": [1001, 1002]})).values["trips"] == expected
    assert store.get_online_features(refs, {"driver_id": 1002}).values["trips"] == [2]
    # the same key however it is spelled: an HTTP query string, a float column from pandas, numpy
    assert store.get_online_features(refs, {"driver_id": ["1001", 1002.0, np.int64(1001)]}).values[
        "trips"
    ] == [1, 2, 1]
    assert store.get_online_features(refs, []).to_dict() == {"driver_id": [], "trips": []}


def test_full_feature_names_and_services(store):
    v = view(store, "driver_stats")
    store.online_store.write(v, rows(v, {"driver_id": [1], "trips": [4], "conv_rate": [0.5]}, NOW))
    d = store.get_online_features(
        ["driver_stats:trips"], [{"driver_id": 1}], full_feature_names=True
    ).to_dict()
    assert d == {"driver_id": [1], "driver_stats__trips": [4]}
    d = store.get_online_features(v, [{"driver_id": 1}]).to_dict()  # a whole view
    assert d == {"driver_id": [1], "conv_rate": [0.5], "trips": [4]}
    expected = {"driver_id": [1], "customer_id": [9], "trips": [4], "age": [None], "city": [None]}
    assert store.get_online_features("ranking", {"driver_id": [1], "customer_id": [9]}).to_dict() == expected
    service = store.catalog.service("ranking")
    assert store.get_online_features(service, {"driver_id": [1], "customer_id": [9]}).to_dict() == expected
    with pytest.raises(UnknownNameError, match="did you mean 'ranking'"):
        store.get_online_features("rankin", {"driver_id": [1]})


def test_clear_errors_for_bad_requests(store):
    with pytest.raises(UnknownNameError, match="did you mean 'trips'"):
        store.get_online_features(["driver_stats:trip"], [{"driver_id": 1}])
    with pytest.raises(UnknownNameError, match="unknown feature view 'nope'"):
        store.get_online_features(["nope:x"], [{"driver_id": 1}])
    with pytest.raises(RetrievalError, match="join key 'customer_id'.*'customer_profile'.*entity row 1"):
        store.get_online_features(
            ["driver_stats:trips", "customer_profile:age"],
            [{"driver_id": 1, "customer_id": 1}, {"driver_id": 2}],
        )
    with pytest.raises(RetrievalError, match="join key 'destination'.*'route_stats'"):
        store.get_online_features(["route_stats:eta"], {"origin": [1]})
    with pytest.raises(RetrievalError, match="differ in length"):
        store.get_online_features(["route_stats:eta"], {"origin": [1, 2], "destination": ["a"]})
    with pytest.raises(RetrievalError, match="online=False"):
        store.get_online_features(["offline_only:x"], [{"driver_id": 1}])
    with pytest.raises(RetrievalError, match="list of dicts"):
        store.get_online_features(["driver_stats:trips"], 42)


# -- schema changes, isolation, delete --------------------------------------------------------


def test_rows_written_before_a_schema_change_are_read_by_name(store):
    v = view(store, "driver_stats")
    store.online_store.write(v, rows(v, {"driver_id": [1], "trips": [4], "conv_rate": [0.5]}, NOW))
    store.apply(catalog(extra_driver_feature=True))  # adds driver_stats:rating
    resp = store.get_online_features(["driver_stats:rating", "driver_stats:trips"], [{"driver_id": 1}])
    assert resp.values["trips"] == [4] and resp.statuses["trips"] == [PRESENT]
    assert resp.values["rating"] == [None] and resp.statuses["rating"] == [NOT_FOUND]
    v2 = view(store, "driver_stats")
    store.online_store.write(
        v2, rows(v2, {"driver_id": [1], "trips": [5], "conv_rate": [0.5], "rating": [4.9]}, NOW)
    )
    resp = store.get_online_features(["driver_stats:rating", "driver_stats:trips"], [{"driver_id": 1}])
    assert resp.to_dict(include_status=True) == {
        "driver_id": [1],
        "rating": [4.9],
        "rating__status": [PRESENT],
        "trips": [5],
        "trips__status": [PRESENT],
    }


def test_projects_with_different_key_prefixes_do_not_see_each_other(make_store):
    a = make_store("a", key_prefix="project_a")
    b = make_store("b", key_prefix="project_b")
    v = view(a, "driver_stats")
    a.online_store.write(v, rows(v, {"driver_id": [1], "trips": [1], "conv_rate": [0.1]}, NOW))
    b.online_store.write(
        v, rows(v, {"driver_id": [1], "trips": [2], "conv_rate": [0.2]}, NOW - timedelta(hours=1))
    )
    assert a.get_online_features(["driver_stats:trips"], {"driver_id": [1]}).values["trips"] == [1]
    assert b.get_online_features(["driver_stats:trips"], {"driver_id": [1]}).values["trips"] == [2]
    b.online_store.delete_view("driver_stats")
    assert b.get_online_features(["driver_stats:trips"], {"driver_id": [1]}).statuses["trips"] == [NOT_FOUND]
    assert a.get_online_features(["driver_stats:trips"], {"driver_id": [1]}).values["trips"] == [1]


def test_delete_view_forgets_only_that_view(store):
    d, c = view(store, "driver_stats"), view(store, "driver_customer")
    store.online_store.write(
        d,
        rows(d, {"driver_id": list(range(2500)), "trips": list(range(2500)), "conv_rate": [0.0] * 2500}, NOW),
    )
    store.online_store.write(c, rows(c, {"driver_id": [1], "customer_id": [1], "rides": [3]}, NOW))
    store.online_store.delete_view("driver_stats")
    resp = store.get_online_features(
        ["driver_stats:trips", "driver_customer:rides"], {"driver_id": [1, 2499], "customer_id": [1, 1]}
    )
    assert resp.statuses["trips"] == [NOT_FOUND, NOT_FOUND]
    assert resp.values["rides"] == [3, None]


# -- plans and async ---------------------------------------------------------------------------


def test_the_lookup_plan_is_built_once_and_rebuilt_after_apply(store, monkeypatch):
    from featurestore.online import lookup

    built = []
    real_build = lookup.LookupPlan.build
    monkeypatch.setattr(
        lookup.LookupPlan, "build", staticmethod(lambda *a: built.append(1) or real_build(*a))
    )
    for _ in range(3):
        store.get_online_features(["driver_stats:trips"], [{"driver_id": 1}])
    assert len(built) == 1
    store.apply(catalog(extra_driver_feature=True))
    store.get_online_features(["driver_stats:trips"], [{"driver_id": 1}])
    assert len(built) == 2
    assert store.get_online_features(["driver_stats:rating"], [{"driver_id": 1}]).statuses["rating"] == [
        NOT_FOUND
    ]


def test_definitions_applied_by_another_process_are_picked_up_within_the_poll_interval(store, monkeypatch):
    from featurestore import store as store_module

    store.get_online_features(["driver_stats:trips"], [{"driver_id": 1}])
    other = FeatureStore(store.repo_path)  # another process, as far as the registry can tell
    other.apply(catalog(extra_driver_feature=True))
    other.close()
    with pytest.raises(UnknownNameError):  # within the poll interval: the definitions this store had
        store.get_online_features(["driver_stats:rating"], [{"driver_id": 1}])
    monkeypatch.setattr(store_module, "CATALOG_POLL_SECONDS", 0.0)  # as if a second had passed
    assert store.get_online_features(["driver_stats:rating"], [{"driver_id": 1}]).statuses["rating"] == [
        NOT_FOUND
    ]


def test_async_lookup_matches_the_sync_one(store):
    v = view(store, "driver_stats")
    store.online_store.write(v, rows(v, {"driver_id": [1, 2], "trips": [1, 2], "conv_rate": [0.1, 0.2]}, NOW))

    async def main():
        many = await asyncio.gather(
            *(store.get_online_features_async(["driver_stats:trips"], {"driver_id": [i, 3]}) for i in (1, 2))
        )
        # begun at once, awaited later (what the server does around its validation)
        pending = [store.start_online_lookup(["driver_stats:trips"], [{"driver_id": i}]) for i in (2, 1, 3)]
        begun = [(await p).values["trips"] for p in pending]
        # mistakes in the request raise at the call, before anything is read
        with pytest.raises(UnknownNameError, match="did you mean 'trips'"):
            store.start_online_lookup(["driver_stats:trip"], [{"driver_id": 1}])
        with pytest.raises(RetrievalError, match="join key 'driver_id'"):
            store.start_online_lookup(["driver_stats:trips"], [{"driver": 1}])
        await store.online_store.aclose()
        return many, begun

    (first, second), begun = asyncio.run(main())
    assert begun == [[2], [1], [None]]
    assert first.values["trips"] == [1, None] and second.values["trips"] == [2, None]
    assert first.statuses["trips"] == [PRESENT, NOT_FOUND]
    sync = store.get_online_features(["driver_stats:trips"], {"driver_id": [1, 3]})
    assert sync.to_dict(include_status=True) == first.to_dict(include_status=True)


def test_write_takes_sliced_batches_readers_and_finer_or_naive_time_units(store):
    v = view(store, "all_types")
    ns = pa.timestamp("ns")  # naive, nanoseconds: read as UTC, truncated to microseconds
    table = pa.table(
        {
            "driver_id": pa.array([1, 2, 3], pa.int32()),
            "ts": pa.array([0, 1_500_000_001, None], ns),
            "times": pa.array([[1_000], None, [None, 2_000_999]], pa.list_(ns)),
            "s": pa.array(["a", "b", "c"], pa.large_string()),
            "__event_ts": pa.array([NOW.replace(tzinfo=None)] * 3, pa.timestamp("ns")),
        }
    )
    reader = pa.RecordBatchReader.from_batches(table.schema, table.slice(1).to_batches())
    assert store.online_store.write(v, reader) == 2
    d = store.get_online_features(
        ["all_types:ts", "all_types:times", "all_types:s"], {"driver_id": [1, 2, 3]}
    )
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    assert d.statuses["ts"] == [NOT_FOUND, PRESENT, PRESENT]
    assert d.values["ts"] == [None, epoch + timedelta(microseconds=1_500_000), None]
    assert d.values["times"] == [None, None, [None, epoch + timedelta(microseconds=2_000)]]
    assert d.values["s"] == [None, "b", "c"]
    assert d.event_timestamps["s"][1] == NOW
