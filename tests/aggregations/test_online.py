"""Aggregations online (SPEC §11), SQLite and a real Redis: after materialize, push, re-materialize
and as a frozen clock steps forward, every function read online equals the brute-force oracle and
the training set at the same instant; one round trip per lookup."""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta, timezone

import pandas as pd
import pyarrow as pa
import pytest

from featurestore import (
    Aggregation,
    Entity,
    FeatureStore,
    FeatureView,
    Field,
    Float64,
    Int64,
    ParquetSource,
    PushSource,
    String,
)
from featurestore.catalog import Catalog
from featurestore.online import tiles
from featurestore.online.response import PRESENT
from tests.aggregations.oracle import Event, expected
from tests.repo_builder import make_repo, write_table

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
T0 = datetime(2026, 1, 10, tzinfo=timezone.utc)
US = timedelta(microseconds=1)
CARDS = [1, 2, 3, 4]
WINDOWS = (timedelta(minutes=10), timedelta(hours=2), None)  # shorter and longer than a period; lifetime
FUNCTIONS = {
    "amount": ("count", "sum", "mean", "min", "max", "std", "var", "first", "last", "count_distinct"),
    "merchant": ("count", "min", "max", "first", "last", "count_distinct"),
    "n": ("sum", "mean", "std"),
}
AGGS = [Aggregation(c, f, window=w) for c, fs in FUNCTIONS.items() for f in fs for w in WINDOWS]
REFS = [f"card_activity:{a.feature_name}" for a in AGGS]
card = Entity(name="card", join_keys=["card"])
source = ParquetSource(name="events", path="data/events.parquet", created_timestamp_field="created")
push_source = PushSource(name="events_push", batch_source=source)
view = FeatureView(
    name="card_activity",
    entities=[card],
    source=push_source,
    schema=[Field("card", Int64), Field("amount", Float64), Field("merchant", String), Field("n", Int64)],
    aggregations=AGGS,
    hop=timedelta(minutes=5),
)


def us(dt: datetime) -> int:
    return (dt - EPOCH) // US


def random_events(rng: random.Random, n: int, start: datetime, span: timedelta) -> pd.DataFrame:
    """Events on and beside tile edges, with ties, nulls, duplicates and values offset by 1e9."""
    rows = []
    for _ in range(n):
        offset = rng.choice(
            [rng.randrange(span // US), rng.randrange(max(1, span // timedelta(minutes=5))) * 300_000_000]
        )
        t = start + offset * US + rng.choice([0 * US, 0 * US, US, -US])
        rows.append(
            {
                "card": rng.choice(CARDS),
                "amount": rng.choice([None, 1e9 + rng.random(), 1e9 + rng.randint(0, 3)]),
                "merchant": rng.choice([None, "a", "b", "c"]),
                "n": rng.choice([None, rng.randint(-9, 9)]),
                "event_timestamp": t,
                "created": t + rng.choice([0, 1, 1]) * timedelta(seconds=rng.randint(0, 30)),
            }
        )
    rows += rows[: n // 20]  # duplicate events
    return pd.DataFrame(rows)


def to_events(df: pd.DataFrame) -> list[Event]:
    out = []
    for r in df.to_dict("records"):
        created = r.get("created")
        created = None if created is None or pd.isna(created) else us(pd.Timestamp(created).to_pydatetime())
        values = {c: (None if pd.isna(r[c]) else r[c]) for c in FUNCTIONS}
        values = {c: (int(v) if c == "n" and v is not None else v) for c, v in values.items()}
        out.append(
            Event((int(r["card"]),), us(pd.Timestamp(r["event_timestamp"]).to_pydatetime()), created, values)
        )
    return out


def write_source(store: FeatureStore, df: pd.DataFrame) -> None:
    table = pa.Table.from_pandas(df, preserve_index=False).cast(
        pa.schema(
            [
                ("card", pa.int64()),
                ("amount", pa.float64()),
                ("merchant", pa.string()),
                ("n", pa.int64()),
                ("event_timestamp", pa.timestamp("us", tz="UTC")),
                ("created", pa.timestamp("us", tz="UTC")),
            ]
        )
    )
    write_table(store.repo_path / "data" / "events.parquet", table)


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def backend(request) -> str:
    return str(request.param)


@pytest.fixture
def store(backend, tmp_path, request, monkeypatch):
    if backend == "sqlite":
        online = '[online]\ntype = "sqlite"\npath = "data/online.db"\n'
    else:
        url, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("key_prefix")
        online = f'[online]\ntype = "redis"\nurl = "{url}"\nkey_prefix = "{prefix}"\n'
    make_repo(tmp_path, {}, project="agg_online", config=online)
    fs = FeatureStore(tmp_path)
    write_source(fs, random_events(random.Random(0), 5, T0, timedelta(hours=1)))
    fs.apply(
        Catalog(
            entities={"card": card},
            sources={"events": source, "events_push": push_source},
            views={"card_activity": view},
        )
    )
    yield fs
    fs.close()


class Clock:
    """The frozen clock of online aggregations (tiles.now_us)."""

    def __init__(self, monkeypatch, at: datetime):
        self.us = us(at)
        monkeypatch.setattr(tiles, "now_us", lambda: self.us)

    def set(self, at: datetime) -> None:
        self.us = us(at)


def same(got, want) -> bool:
    if got is None or want is None:
        return got is None and want is None
    if isinstance(want, float):
        return math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-6)
    return type(got) is type(want) and got == want


def check_online(store: FeatureStore, events: list[Event], t: int, cards=(*CARDS, 99)) -> None:
    """Online at the frozen clock == the oracle at t, for every function (an unknown card included)."""
    resp = store.get_online_features(REFS, {"card": list(cards)})
    values = resp.to_dict()
    want = expected(events, [((c,), t) for c in cards], AGGS, view.hop_us)
    for a in AGGS:
        for c, got, w in zip(cards, values[a.feature_name], want[a.feature_name]):
            assert same(got, w), (a.feature_name, c, t, got, w)
        assert resp.statuses[a.feature_name] == [PRESENT] * len(cards)


def check_offline(store: FeatureStore, events: list[Event], t: int) -> None:
    """The training set at t == the oracle (so online == offline at the same instant)."""
    at = EPOCH + t * US
    entity_df = pd.DataFrame({"card": [*CARDS, 99], "event_timestamp": [at] * (len(CARDS) + 1)})
    got = store.get_historical_features(entity_df, REFS).to_pandas()
    want = expected(events, [((c,), t) for c in [*CARDS, 99]], AGGS, view.hop_us)
    bad = []
    for a in AGGS:
        values = [None if pd.isna(v) else v for v in got[a.feature_name]]
        for v, w in zip(values, want[a.feature_name]):
            w = float(w) if isinstance(w, int) and isinstance(v, float) else w
            v = int(v) if isinstance(w, int) and not isinstance(w, bool) and v is not None else v
            if not same(v, w):
                bad.append((a.feature_name, v, w))
    assert not bad, bad


def test_after_materialize_online_equals_the_oracle_and_the_training_set(store, monkeypatch):
    df = random_events(random.Random(1), 300, T0, timedelta(hours=4))
    write_source(store, df)
    end = T0 + timedelta(hours=4)
    clock = Clock(monkeypatch, end + timedelta(seconds=30))
    store.materialize(T0 - timedelta(days=1), end)
    events = to_events(df)
    for later in (
        timedelta(0),
        US,
        timedelta(minutes=5) - US,
        timedelta(minutes=17),
        timedelta(hours=1, minutes=55),
        timedelta(hours=3),
        # on a tile edge and beside it (every window is a multiple of the hop: its start is on one too)
        timedelta(minutes=4, seconds=30) - US,
        timedelta(minutes=4, seconds=30),
        timedelta(minutes=4, seconds=30) + US,
        timedelta(minutes=14, seconds=30) - US,
        timedelta(minutes=14, seconds=30),
    ):
        clock.set(end + timedelta(seconds=30) + later)
        check_online(store, events, clock.us)
    check_offline(store, events, clock.us)
    assert store.online_store.count_rows("card_activity") == len(set(df["card"]))


def test_pushes_are_merged_at_once_and_count_only_from_their_time(store, monkeypatch):
    df = random_events(random.Random(2), 120, T0, timedelta(hours=2))
    write_source(store, df)
    now = T0 + timedelta(hours=2)
    clock = Clock(monkeypatch, now)
    store.materialize(T0, now)
    events = to_events(df)
    rng = random.Random(3)
    for step in range(12):
        now += timedelta(seconds=rng.choice([1, 40, 299, 300, 301, 900]))
        clock.set(now)
        pushed = random_events(
            rng, 3, now - timedelta(minutes=30), timedelta(minutes=31)
        )  # up to a minute ahead
        pushed = pushed[pushed["event_timestamp"] <= now + timedelta(minutes=1)]
        store.push("events_push", pushed, to="both" if step % 2 else "online")
        events += to_events(pushed)
        check_online(store, events, clock.us)
        ahead = now + timedelta(seconds=rng.choice([0, 30, 60]))
        exact = random_events(rng, 1, ahead, US)  # an event at exactly the next read time
        exact["event_timestamp"] = ahead
        store.push("events_push", exact, to="online")
        events += to_events(exact)
        for at in (ahead, ahead + US, ahead + timedelta(seconds=1)):  # not counted at its own time
            clock.set(at)
            check_online(store, events, clock.us)  # events pushed ahead count once their time has come


def test_re_materializing_a_range_replaces_and_keeps_pushed_events(store, monkeypatch):
    df = random_events(random.Random(4), 200, T0, timedelta(hours=3))
    write_source(store, df)
    end = T0 + timedelta(hours=3)
    clock = Clock(monkeypatch, end + timedelta(minutes=1))
    store.materialize(T0, end)
    pushed = random_events(random.Random(5), 20, T0 + timedelta(hours=1), timedelta(hours=1))
    store.push("events_push", pushed, to="both")
    events = to_events(df) + to_events(pushed)
    check_online(store, events, clock.us)
    store.materialize(T0 + timedelta(hours=1, minutes=7), T0 + timedelta(hours=2, minutes=3))  # again
    store.materialize(T0 + timedelta(hours=1, minutes=7), T0 + timedelta(hours=2, minutes=3))
    check_online(store, events, clock.us)  # nothing doubled, the pushed events kept
    store.materialize(T0, end)
    check_online(store, events, clock.us)
    check_offline(store, events, clock.us)


def test_a_frozen_clock_stepping_forward_with_incremental_runs_late_rows_and_pushes(store, monkeypatch):
    rng = random.Random(6)
    now = T0 + timedelta(hours=1)
    clock = Clock(monkeypatch, now)
    history = random_events(rng, 80, T0, timedelta(hours=1))
    history = history[history["event_timestamp"] <= now]
    write_source(store, history)
    store.materialize_incremental(now)
    events = to_events(history)
    check_online(store, events, clock.us)
    for _ in range(6):
        now += timedelta(minutes=rng.choice([3, 5, 20, 70]))
        clock.set(now)
        fresh = random_events(rng, 25, now - timedelta(minutes=90), timedelta(minutes=91))
        fresh = fresh[fresh["event_timestamp"] <= now]
        fresh["created"] = now  # created after the watermark: late rows where the event time is older
        history = pd.concat([history, fresh], ignore_index=True)
        write_source(store, history)
        store.materialize_incremental(now)
        events += to_events(fresh)
        check_online(store, events, clock.us)
        pushed = random_events(rng, 2, now - timedelta(minutes=2), timedelta(minutes=3))
        pushed = pushed[pushed["event_timestamp"] <= now + timedelta(minutes=1)]
        store.push("events_push", pushed, to="both")
        events += to_events(pushed)
        check_online(store, events, clock.us)
    check_offline(store, events, clock.us)


def test_one_round_trip_per_lookup(store, monkeypatch):
    df = random_events(random.Random(7), 50, T0, timedelta(hours=1))
    write_source(store, df)
    Clock(monkeypatch, T0 + timedelta(hours=1))
    store.materialize(T0, T0 + timedelta(hours=1))
    calls = []
    read = store.online_store.read
    monkeypatch.setattr(store.online_store, "read", lambda keys: calls.append(len(keys)) or read(keys))
    store.get_online_features(REFS, {"card": [*CARDS, 99]})
    assert calls == [len(CARDS) + 1]


def test_composite_keys_and_timestamp_values(backend, tmp_path, request, monkeypatch):
    """Two join keys; min/max/last of a timestamp column come back as UTC datetimes."""
    from featurestore import UnixTimestamp

    if backend == "sqlite":
        online = '[online]\ntype = "sqlite"\npath = "data/online.db"\n'
    else:
        url, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("key_prefix")
        online = f'[online]\ntype = "redis"\nurl = "{url}"\nkey_prefix = "{prefix}"\n'
    make_repo(tmp_path, {}, project="agg_keys", config=online)
    rng = random.Random(8)
    times = [T0 + timedelta(seconds=rng.randrange(7200)) for _ in range(60)]
    table = pa.table(
        {
            "origin": [rng.choice(["a", "b"]) for _ in times],
            "dest": [rng.choice([1, 2]) for _ in times],
            "seen": pa.array(
                [T0 - timedelta(days=rng.randrange(9)) for _ in times], pa.timestamp("us", tz="UTC")
            ),
            "event_timestamp": pa.array(times, pa.timestamp("us", tz="UTC")),
        }
    )
    write_table(tmp_path / "data" / "trips.parquet", table)
    route = Entity(name="route", join_keys=["origin", "dest"])
    src = ParquetSource(name="trips", path="data/trips.parquet")
    pushed = PushSource(name="trips_push", batch_source=src)
    aggs = [
        Aggregation("seen", f, window=w)
        for f in ("max", "last", "count")
        for w in (timedelta(minutes=30), None)
    ]
    trips = FeatureView(
        name="trips",
        entities=[route],
        source=pushed,
        schema=[Field("origin", String), Field("dest", Int64), Field("seen", UnixTimestamp)],
        aggregations=aggs,
        hop=timedelta(minutes=5),
    )
    fs = FeatureStore(tmp_path)
    fs.apply(
        Catalog(
            entities={"route": route}, sources={"trips": src, "trips_push": pushed}, views={"trips": trips}
        )
    )
    end = T0 + timedelta(hours=2)
    clock = Clock(monkeypatch, end)
    fs.materialize(T0, end)
    extra = pa.table(
        {
            "origin": ["a"],
            "dest": [2],
            "seen": pa.array([T0 + timedelta(days=1)], pa.timestamp("us", tz="UTC")),
            "event_timestamp": pa.array([end - timedelta(minutes=1)], pa.timestamp("us", tz="UTC")),
        }
    )
    fs.push("trips_push", extra, to="online")
    clock.set(end + timedelta(minutes=1))
    events = [
        Event((r["origin"], r["dest"]), us(r["event_timestamp"]), None, {"seen": us(r["seen"])})
        for r in (*table.to_pylist(), *extra.to_pylist())
    ]
    routes = [("a", 1), ("a", 2), ("b", 1), ("b", 2), ("c", 9)]
    resp = fs.get_online_features(
        [f"trips:{a.feature_name}" for a in aggs],
        {"origin": [o for o, _ in routes], "dest": [d for _, d in routes]},
    ).to_dict()
    want = expected(events, [(r, clock.us) for r in routes], aggs, trips.hop_us)
    for a in aggs:
        w = want[a.feature_name]
        if a.function != "count":
            w = [None if v is None else EPOCH + v * US for v in w]
        assert resp[a.feature_name] == w, a.feature_name
    fs.close()


def test_a_first_range_mid_period_holds_every_event_of_its_widened_periods(store, monkeypatch):
    """The range is widened to period edges; events of those periods outside the range, never
    materialized, are read from the source as a training set reads them, so no period is half-built."""
    df = random_events(random.Random(7), 300, T0, timedelta(hours=4))
    write_source(store, df)
    clock = Clock(monkeypatch, T0 + timedelta(hours=4, minutes=1))
    start, end = T0 + timedelta(hours=1, minutes=7), T0 + timedelta(hours=2, minutes=3)
    store.materialize(start, end)
    spec = tiles.spec_of(view)
    lo, hi = spec.period_of(us(start)), spec.period_of(us(end)) + spec.period
    assert lo < us(start) and hi > us(end) + 1  # widened on both sides (the test means something)
    inside = [e for e in to_events(df) if lo <= e.event_us < hi]
    assert len(inside) > len([e for e in inside if us(start) <= e.event_us <= us(end)])
    windowed = [a for a in AGGS if a.window is not None]
    resp = store.get_online_features([f"card_activity:{a.feature_name}" for a in windowed], {"card": CARDS})
    want = expected(inside, [((c,), clock.us) for c in CARDS], windowed, view.hop_us)
    for a in windowed:
        for got, w in zip(resp.to_dict()[a.feature_name], want[a.feature_name]):
            assert same(got, w), (a.feature_name, got, w)
    # Lifetime aggregates are recomputed from every event older than the retained periods, as well.
    lifetime = [a for a in AGGS if a.window is None]
    resp = store.get_online_features([f"card_activity:{a.feature_name}" for a in lifetime], {"card": CARDS})
    older = [e for e in to_events(df) if e.event_us < hi]
    want = expected(older, [((c,), clock.us) for c in CARDS], lifetime, view.hop_us)
    for a in lifetime:
        for got, w in zip(resp.to_dict()[a.feature_name], want[a.feature_name]):
            assert same(got, w), (a.feature_name, got, w)


def test_nan_is_skipped_like_a_null_offline_online_and_in_pushes(store, monkeypatch):
    """pandas turns NaN into nulls; Arrow and Parquet keep NaN: aggregations skip it on every path."""
    at = [T0 + timedelta(minutes=m) for m in (1, 2, 3)]
    ts = pa.timestamp("us", tz="UTC")
    table = pa.table(
        {
            "card": pa.array([1, 1, 1], pa.int64()),
            "amount": pa.array([1.5, math.nan, 2.5]),
            "merchant": pa.array(["a", "b", None]),
            "n": pa.array([1, None, 2], pa.int64()),
            "event_timestamp": pa.array(at, ts),
            "created": pa.array(at, ts),
        }
    )
    write_table(store.repo_path / "data" / "events.parquet", table)
    Clock(monkeypatch, T0 + timedelta(minutes=10))
    store.materialize(T0, T0 + timedelta(minutes=5))
    pushed = table.slice(0, 2).set_column(5, "created", pa.array(at[:2], ts))
    pushed = pushed.set_column(4, "event_timestamp", pa.array([T0 + timedelta(minutes=6)] * 2, ts))
    store.push("events_push", pushed, to="both")
    refs = ["card_activity:amount_count", "card_activity:amount_max", "card_activity:amount_mean"]
    online = store.get_online_features(refs, [{"card": 1}]).to_dict()
    offline = (
        store.get_historical_features(
            pa.table({"card": [1], "event_timestamp": pa.array([T0 + timedelta(minutes=10)], ts)}), refs
        )
        .to_arrow()
        .to_pylist()[0]
    )
    # 1.5, 2.5 materialized and 1.5 pushed; each path's NaN is skipped
    assert online["amount_count"] == [3] and offline["amount_count"] == 3
    assert online["amount_max"] == [2.5] and offline["amount_max"] == 2.5
    assert math.isclose(online["amount_mean"][0], 5.5 / 3) and math.isclose(offline["amount_mean"], 5.5 / 3)


def test_a_backfill_a_day_later_does_not_count_open_events_twice(store, monkeypatch):
    """Events of the tile holding the writer's clock are kept raw ("open"); a later backfill that
    recomputes the lifetime partial from every stored event must not count them a second time."""
    df = random_events(random.Random(1), 40, T0, timedelta(hours=2))
    df["card"] = 1
    now = T0 + timedelta(hours=2, minutes=2)
    df.loc[0, ["event_timestamp", "created"]] = now - timedelta(minutes=1)
    write_source(store, df)
    clock = Clock(monkeypatch, now)
    store.materialize(T0, now)
    events = to_events(df)
    check_online(store, events, clock.us, cards=(1,))
    clock.set(now + timedelta(days=1))
    check_online(store, events, clock.us, cards=(1,))
    store.materialize(T0, T0 + timedelta(minutes=30))  # an old range: the lifetime is recomputed
    check_online(store, events, clock.us, cards=(1,))


def test_a_view_that_changes_kind_or_windows_reads_not_found_until_materialized(store, monkeypatch):
    """Blobs written under another definition (plain rows, other tiles) are no values of this one."""
    df = random_events(random.Random(8), 50, T0, timedelta(hours=2))
    write_source(store, df)
    now = T0 + timedelta(hours=2)
    Clock(monkeypatch, now)
    store.materialize(T0, now)
    sources = {"events": source, "events_push": push_source}
    plain = FeatureView(
        name="card_activity",
        entities=[card],
        source=push_source,
        schema=[Field("card", Int64), Field("n", Int64)],
    )
    store.apply(Catalog(entities={"card": card}, sources=sources, views={"card_activity": plain}))
    resp = store.get_online_features(["card_activity:n"], {"card": [1, 2]})
    assert resp.to_dict()["n"] == [None, None] and resp.statuses["n"] == ["NOT_FOUND"] * 2  # tiles, no row
    store.materialize(T0, now)
    other = FeatureView(
        name="card_activity",
        entities=[card],
        source=push_source,
        schema=[Field("card", Int64), Field("n", Int64)],
        aggregations=[Aggregation("n", "sum", window=timedelta(hours=1))],
    )
    store.apply(Catalog(entities={"card": card}, sources=sources, views={"card_activity": other}))
    resp = store.get_online_features(["card_activity:n_sum_1h"], {"card": [1, 2]})
    assert resp.statuses["n_sum_1h"] == ["NOT_FOUND"] * 2  # a plain row, not tiles of this definition
    store.materialize(T0, now)
    resp = store.get_online_features(["card_activity:n_sum_1h"], {"card": [1, 2]})
    assert resp.statuses["n_sum_1h"] == [PRESENT] * 2
