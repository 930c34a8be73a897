"""tiles.py against the brute-force oracle (SPEC §11): events arriving as a clock moves, reads at many
times (on tile edges, one microsecond either side, between), merges in any order and grouping."""

from __future__ import annotations

import math
import random
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featurestore import Aggregation, Entity, FeatureView, Field, Float64, Int64, PushSource, String
from featurestore.online import tile_schedule
from featurestore.online.tiles import FAST, LEAST, Tiles, TileSpec, coarse_factor, read_values
from tests.aggregations.oracle import Event, aggregate, expected

S = 1_000_000  # one second in us
FLOAT_FUNCTIONS = ("count", "sum", "mean", "min", "max", "std", "var", "first", "last", "count_distinct")
entity = Entity(name="card", join_keys=["card"])
source = PushSource(name="events")


FIELDS = [Field("x", Float64), Field("n", Int64), Field("s", String)]


def make_view(aggregations: list[Aggregation], hop_s: int) -> FeatureView:
    return FeatureView(
        name="activity",
        entities=[entity],
        source=source,
        schema=[f for f in FIELDS if f.name in {a.column for a in aggregations}],
        aggregations=aggregations,
        hop=timedelta(seconds=hop_s),
    )


def close(got, want) -> bool:
    if got is None or want is None:
        return got is None and want is None
    if isinstance(want, float):
        return isinstance(got, float) and math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-6)
    return type(got) is type(want) and got == want


def raw(event: Event, columns: tuple[str, ...]) -> list:
    created = LEAST if event.created_us is None else event.created_us
    return [event.event_us, created, *(event.values.get(c) for c in columns)]


aggregation = st.builds(
    lambda column, function, window_s: Aggregation(
        column, function, window=None if window_s is None else timedelta(seconds=window_s)
    ),
    st.sampled_from(["x", "n", "s"]),
    st.sampled_from(FLOAT_FUNCTIONS),
    st.none() | st.integers(1, 400),
).filter(
    lambda a: a.column != "s" or a.function in ("count", "min", "max", "first", "last", "count_distinct")
)


def unique(aggs: list[Aggregation]) -> list[Aggregation]:
    seen: dict[str, Aggregation] = {}
    for a in aggs:
        seen.setdefault(a.feature_name, a)
    return list(seen.values())


step = st.tuples(
    st.integers(0, 120),  # seconds the clock moves before the step
    st.sampled_from([0, 0, 1, -1]),  # and microseconds, to land on and beside tile edges
    st.lists(
        st.tuples(
            st.sampled_from([("a",), ("b",)]),
            st.integers(-500, 60) | st.sampled_from([-61, -30, -5, -1, 0]),  # event - clock (s): late,
            # on time or up to a minute ahead; often in the same tiles as others
            st.sampled_from([0, 0, 1, -1]),
            st.none() | st.sampled_from([0, 5]),  # created - event time (s), or none
            st.none() | st.floats(-3, 3, allow_nan=False),
            st.none() | st.integers(-5, 5),
            st.none() | st.sampled_from(["p", "q", "r"]),
        ),
        max_size=4,
    ),
    st.lists(st.tuples(st.integers(0, 900), st.sampled_from([0, 1, -1])), min_size=1, max_size=4),
)


@settings(max_examples=150, deadline=None)
@given(
    aggs=st.lists(aggregation, min_size=1, max_size=6).map(unique),
    hop_s=st.sampled_from([1, 5, 10, 60]),
    offset=st.sampled_from([0.0, 1e9]),
    steps=st.lists(step, min_size=1, max_size=12),
)
def test_reads_equal_the_oracle_as_events_arrive_and_time_passes(aggs, hop_s, offset, steps):
    view = make_view(aggs, hop_s)
    spec = TileSpec.of(view)
    clock = 1_767_225_600 * S  # 2026-01-01: tile edges are multiples of the hop since the epoch
    events: list[Event] = []
    blobs: dict[tuple, bytes | None] = {("a",): None, ("b",): None}
    for advance_s, nudge, new, reads in steps:
        clock += advance_s * S + nudge
        arrived: dict[tuple, list] = {}
        for keys, delta_s, delta_us, created_s, x, n, s in new:
            e = min(clock + delta_s * S + delta_us, clock + 60 * S)
            created = None if created_s is None else e + created_s * S
            ev = Event(keys, e, created, {"x": None if x is None else x + offset, "n": n, "s": s})
            events.append(ev)
            arrived.setdefault(keys, []).append(raw(ev, spec.columns))
        for keys, batch in arrived.items():
            tiles = Tiles.decode(spec, blobs[keys])
            tiles.add(batch, clock)
            blobs[keys] = tiles.encode(clock)
        times = [max(clock, clock + later_s * S // 2 + later_us) for later_s, later_us in reads]
        for keys, blob in blobs.items():  # and windows starting exactly at each stored tile (and beside)
            if blob is not None:
                stored_tiles = sorted({spec.align(ev.event_us) for ev in events if ev.keys == keys})
                for a in aggs:
                    if a.window_us is not None:
                        times += [ts + a.window_us + d for ts in stored_tiles[-6:] for d in (0, spec.hop - 1)]
                        # the value schedule's change points, and one microsecond before: a tile leaves
                        times += [ts + spec.hop + a.window_us - d for ts in stored_tiles for d in (0, 1)]
        # an event's time comes (it counts from one microsecond later), and reads hours to weeks later
        times += [ev.event_us + d for ev in events if ev.event_us >= clock for d in (0, 1)]
        times += [clock + later_s * S for later_s in (3_600, 86_400 + 7, 3 * 86_400, 21 * 86_400)]
        for t in sorted(t for t in set(times) if t >= clock):  # reads are not older than the last write
            for keys, blob in blobs.items():
                want = expected(events, [(keys, t)], aggs, spec.hop)
                stored = read_values(spec, blob, t)  # from the value schedule while it holds, else merged
                merged = Tiles.decode(spec, blob).values_at(t) if blob else list(spec.empty_values)
                one_pass = Tiles.decode(spec, blob).fast_values(t)[0] if blob else list(spec.empty_values)
                for a, got, slow, fast in zip(aggs, stored, merged, one_pass):
                    assert close(got, want[a.feature_name][0]), (a.feature_name, t, got, want)
                    assert close(slow, want[a.feature_name][0]), (a.feature_name, t, slow, want)
                    assert close(fast, want[a.feature_name][0]), (a.feature_name, t, fast, want)


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.none() | st.floats(-1, 1, allow_nan=False), min_size=1, max_size=40),
    offset=st.sampled_from([0.0, 1e9, -1e9]),
    seed=st.integers(0, 2**32),
)
def test_merges_in_any_order_and_grouping_equal_the_two_pass_result(values, offset, seed):
    aggs = [
        Aggregation("x", f) for f in ("count", "sum", "mean", "var", "std", "min", "max", "first", "last")
    ]
    spec = TileSpec.of(make_view(aggs, 1))
    rng = random.Random(seed)
    events = [
        Event(("a",), rng.randint(0, 5), rng.choice([None, 1, 2]), {"x": None if v is None else v + offset})
        for v in values
    ]
    partials = [spec.event_partial(raw(e, spec.columns)) for e in events]
    rng.shuffle(partials)
    while len(partials) > 1:  # random groupings: merge a random run of neighbours until one is left
        i = rng.randrange(len(partials))
        j = rng.randint(i + 1, len(partials))
        partials[i:j] = [spec.merge(partials[i:j])]
    got = spec.values({None: partials[0]})
    for a, value in zip(aggs, got):
        picked = [(e, e.values["x"]) for e in events if e.values["x"] is not None]
        assert close(value, aggregate(a.function, picked)), (a.function, value)


def test_first_and_last_break_ties_by_created_time_null_lowest_then_value():
    aggs = [Aggregation("s", "first"), Aggregation("s", "last")]
    spec = TileSpec.of(make_view(aggs, 5))
    t0 = 1_767_225_600 * S
    events = [
        Event(("a",), t0, None, {"s": "z"}),  # null created ranks lowest
        Event(("a",), t0, t0, {"s": "b"}),
        Event(("a",), t0, t0, {"s": "a"}),  # same event and created time: the greater value is last
        Event(("a",), t0 + 3 * S, t0, {"s": "m"}),
        Event(("a",), t0 + 3 * S, t0 + S, {"s": "k"}),
        Event(("a",), t0 + 3 * S, None, {"s": "y"}),
    ]
    for order in (events, events[::-1]):  # pushed one by one, in both orders, in tiles and open events
        for clock in (t0 + 3 * S, t0 + 60 * S):
            tiles = Tiles(spec)
            for ev in order:
                tiles.add([raw(ev, spec.columns)], clock)
            blob = tiles.encode(clock)
            assert read_values(spec, blob, t0 + 4 * S) == ["z", "k"]
            if clock == t0 + 3 * S:  # (reads are exact from the last write's clock on)
                assert Tiles.decode(spec, blob).values_at(t0 + 3 * S) == ["z", "b"]  # the end excludes t


def test_a_long_window_reads_few_tiles():
    # 7 days of 5-minute tiles: k = 32, so a read merges at most 2 * 32 fine tiles and 63 coarse ones
    assert coarse_factor(7 * 86_400 * S, 300 * S) == 32
    assert coarse_factor(60 * S, 300 * S) == 1


def test_values_decay_with_no_write_and_old_periods_are_dropped_or_folded():
    aggs = [Aggregation("n", "sum", window=timedelta(minutes=10)), Aggregation("n", "count")]
    spec = TileSpec.of(make_view(aggs, 60))
    t0 = 1_767_225_600 * S
    tiles = Tiles(spec)
    tiles.add([[t0, LEAST, 5], [t0 + 30 * S, LEAST, 1]], t0 + 61 * S)
    blob = tiles.encode(t0 + 61 * S)
    assert read_values(spec, blob, t0 + 61 * S) == [6, 2]
    assert read_values(spec, blob, t0 + 11 * 60 * S - 1) == [6, 2]
    assert read_values(spec, blob, t0 + 11 * 60 * S) == [None, 2]  # the tile left the window
    later = Tiles.decode(spec, blob)
    later.add([], t0 + 86_400 * S)
    folded = Tiles.decode(spec, later.encode(t0 + 86_400 * S))
    assert folded.starts == [] and folded.lifetime is not None  # folded into the lifetime partial
    assert folded.values_at(t0 + 86_400 * S) == [None, 2]


def test_a_blob_of_another_definition_reads_as_nothing_stored():
    t0 = 1_767_225_600 * S
    old = TileSpec.of(make_view([Aggregation("n", "sum", window=timedelta(minutes=10))], 60))
    new = TileSpec.of(make_view([Aggregation("n", "sum", window=timedelta(minutes=20))], 60))
    assert old.layout_id != new.layout_id
    tiles = Tiles(old)
    tiles.add([[t0, LEAST, 5]], t0 + 120 * S)
    blob = tiles.encode(t0 + 120 * S)
    assert read_values(old, blob, t0 + 120 * S) == [5]
    assert read_values(new, blob, t0 + 120 * S) == (None,)
    assert Tiles.decode(new, blob).empty


def test_a_read_days_after_the_write_comes_from_the_value_schedule_and_equals_the_merge():
    aggs = [Aggregation("x", f, window=timedelta(seconds=w)) for w in (60, 600) for f in ("sum", "max")]
    aggs.append(Aggregation("x", "count"))
    spec = TileSpec.of(make_view(aggs, 5))
    clock = 1_767_225_600 * S
    events = [Event(("a",), clock - k * 37 * S, None, {"x": float(k)}) for k in range(1, 12)]
    tiles = Tiles(spec)
    tiles.add([raw(ev, spec.columns) for ev in events], clock)
    blob = tiles.encode(clock)
    assert blob is not None
    _, _, valid_from, valid_until, _, changes = FAST.unpack_from(blob)
    assert (valid_from, valid_until) == (clock, tile_schedule.FOREVER) and 0 < changes <= tile_schedule.CAP
    for t in (clock + 3_600 * S, clock + 3 * 86_400 * S):  # every window is empty by then
        assert read_values(spec, blob, t) == [None, None, None, None, 11]
        assert Tiles.decode(spec, blob).values_at(t) == [None, None, None, None, 11]


@pytest.mark.parametrize("ahead_s", [15, -1])  # the last events still to come, or all sealed
def test_beyond_the_schedule_s_change_points_reads_merge_tiles(ahead_s):
    # over a hundred one-second tiles: many more change points than a blob schedules
    aggs = [
        Aggregation("n", f, window=timedelta(seconds=w)) for w in (30, 150) for f in ("count", "sum", "min")
    ]
    aggs.append(Aggregation("n", "last"))
    spec = TileSpec.of(make_view(aggs, 1))
    clock = 1_767_225_600 * S
    events = [
        Event(("a",), clock + (ahead_s - 115) * S + k * S // 2, None, {"n": k % 7 - 3}) for k in range(230)
    ]
    tiles = Tiles(spec)
    tiles.add([raw(ev, spec.columns) for ev in events], clock)
    blob = tiles.encode(clock)
    _, _, _, valid_until, _, changes = FAST.unpack_from(blob)
    assert changes == tile_schedule.CAP and valid_until < tile_schedule.FOREVER
    leaves = {spec.align(ev.event_us) + spec.hop + a.window_us for ev in events for a in aggs if a.window_us}
    comes = {ev.event_us + 1 for ev in events}
    points = sorted(p for p in leaves | comes if p > clock)
    assert valid_until == points[tile_schedule.CAP]
    for t in sorted({clock, *points[:60], *(p - 1 for p in points[:60]), clock + 200 * S}):
        want = expected(events, [(("a",), t)], aggs, spec.hop)
        got = read_values(spec, blob, t)
        assert got == [want[a.feature_name][0] for a in aggs], t
