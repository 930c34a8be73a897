"""Tiles: the online form of a time-window aggregating view (SPEC §11), pure Python, no I/O.

One blob per (view, entity) holds mergeable partial aggregates ("partials"):

- **fine tiles** of `hop`, grouped per **period** of `hop * k` (a coarse tile), each period with the
  merge of its fine tiles (its *coarse partial*) and its fine tiles packed apart, so a read decodes
  the fine tiles of at most two periods (where the window starts, and where it ends if the read is
  earlier than the last write) and uses coarse partials in between;
- **open events**: the raw events of the fine tile holding the writer's clock and of any later tile
  (pushes may be up to a minute ahead), so the end of a window stays exact: a read at `t` counts
  only those with an event time `< t`. A later write seals tiles whose end has passed;
- a **lifetime partial** (views with a lifetime aggregate) of everything older than the retained
  periods, the *edge*. Periods that end before `align(clock - longest window)` are folded into it at
  write time (or dropped, without a lifetime aggregate).

A read at `t` for window `w` merges `[align(t - w), t)`, so values decay as time passes with no job
running. Because the answer only changes when a tile leaves a window or an open event's time comes,
a write also stores a *value schedule* (tile_schedule.py): the values at its clock `c` and at each
of the next change points (up to `tile_schedule.CAP` of them), and `until`, the first change point
it does not hold (`FOREVER` when none is left). A read at `c <= t < until` bisects the change points
and decodes one row, without merging, hours or days after the write as just after it; any other read
merges tiles. The clock is `now_us()`; tests freeze it with `monkeypatch.setattr(tiles, "now_us", ...)`.

Partials, per (column, statistic) "slot": count (non-null values); sum (int or float, None = no
value); min; max; m2 = [n, mean, M2] merged with Chan's formula (never a sum of squares); first and
last = [event us, created us (a null one as the least int64), value], ordered by that triple;
distinct = the list of distinct values. Only the slots the view's functions need are kept.

Blob = `FAST`: `encoding.HEADER` (newest event us, layout id), valid_from (the write clock) and
valid_until (the schedule's `until`; int64), the length of the schedule section (uint32) and its
number of change points M (uint16); then the schedule section (M change points as int64, M + 2 row
offsets as uint32, M + 1 msgpack rows of feature values: see tile_schedule.py); then the packed slow
part `[edge, lifetime, period starts, coarse partials, fine tiles, open events]`: period starts as
the first one, then the periods from each to the next (small ints); a fine tiles item is the packed
`[tile starts, tile partials]` of one period (bytes), or the hops from the period's start to the
start of its one tile (an int: its partial is then the coarse one); an open event is `[event us, created us,
value per aggregated column]`. The layout id is a crc of "tiles/2" (this format), the aggregations,
the hop and k, so a blob of another definition or format is recognised (and read as "nothing stored").
"""

from __future__ import annotations

import math
import struct
import time
import zlib
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from operator import itemgetter
from typing import Any

import msgpack

from ..definitions import FeatureView
from . import tile_schedule
from .encoding import HEADER
from .tile_schedule import FOREVER

LEAST = -(2**63)  # the created time of an event without one: ranks below every real one
# The fixed part of a blob: HEADER's event time and layout id, then valid_from, valid_until, the
# length of the value schedule that follows and its number of change points (one unpack reads what
# a lookup needs first).
FAST = struct.Struct(">qIqqIH")
PREFIX = FAST.size
assert HEADER.format.lstrip(">") == FAST.format.lstrip(">")[:2]

Partial = list[Any]  # one value per slot of the view's TileSpec
Event = Sequence[Any]  # [event us, created us (LEAST for none), value per aggregated column]


def now_us() -> int:
    """The clock of online aggregations (reads and writes): microseconds since the epoch, UTC."""
    return time.time_ns() // 1000


def coarse_factor(longest_us: int, hop_us: int) -> int:
    """k, the fine tiles per period: about sqrt(longest window / hop / 2), at least 1, so a read of
    the longest window merges about as many fine tiles (at its start) as coarse ones (in between)."""
    return max(1, round(math.sqrt(longest_us / hop_us / 2)))


# -- slots: the statistics kept, how they merge and how they end as feature values ----------------

_SLOTS_OF = {
    "count": ("count",),
    "sum": ("sum",),
    "mean": ("count", "sum"),
    "min": ("min",),
    "max": ("max",),
    "std": ("m2",),
    "var": ("m2",),
    "first": ("first",),
    "last": ("last",),
    "count_distinct": ("distinct",),
}


def _identity(kind: str) -> Any:
    if kind == "count":
        return 0
    if kind == "distinct":
        return []
    return None


def _reduce_sum(values: Sequence[Any]) -> Any:
    present = [v for v in values if v is not None]
    if not present:
        return None
    if type(present[0]) is float:  # a column's values are all floats or all ints
        try:
            return math.fsum(present)
        except (ValueError, OverflowError):  # inf + -inf, or a sum past the float range: as DuckDB
            return sum(present)
    return sum(present)


def _reduce_min(values: Sequence[Any]) -> Any:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def _reduce_max(values: Sequence[Any]) -> Any:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _reduce_m2(values: Sequence[Any]) -> Any:
    n, mean, m2 = 0, 0.0, 0.0
    for v in values:
        if v is None:
            continue
        nb, mb, m2b = v
        if n == 0:
            n, mean, m2 = nb, mb, m2b
            continue
        total = n + nb
        delta = mb - mean
        mean += delta * nb / total  # Chan et al.: exact merges of (count, mean, M2)
        m2 += m2b + delta * delta * n * nb / total
        n = total
    return None if n == 0 else [n, mean, m2]


def _rank(v: list[Any]) -> tuple[Any, ...]:
    return (v[0], v[1], v[2])


def _reduce_first(values: Sequence[Any]) -> Any:
    present = [v for v in values if v is not None]
    return min(present, key=_rank) if present else None


def _reduce_last(values: Sequence[Any]) -> Any:
    present = [v for v in values if v is not None]
    return max(present, key=_rank) if present else None


def _reduce_distinct(values: Sequence[Any]) -> Any:
    if len(values) == 1:
        return values[0]
    seen: dict[Any, None] = {}
    for v in values:
        seen.update(dict.fromkeys(v))
    return list(seen)


_REDUCE: dict[str, Callable[[Sequence[Any]], Any]] = {
    "count": sum,
    "sum": _reduce_sum,
    "min": _reduce_min,
    "max": _reduce_max,
    "m2": _reduce_m2,
    "first": _reduce_first,
    "last": _reduce_last,
    "distinct": _reduce_distinct,
}


# Pairwise merges (the value schedule chains them, one per tile): the same results as _REDUCE of two.


def _sum2(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else a + b  # fsum of two is their rounded sum


def _min2(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None or not b < a else b


def _max2(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None or not b > a else b


def _m2_2(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else _reduce_m2((a, b))


def _first2(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None or not _rank(b) < _rank(a) else b


def _last2(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None or not _rank(b) > _rank(a) else b


def _distinct2(a: Any, b: Any) -> Any:
    return b if not a else a if not b else list(dict.fromkeys(a + b))


_MERGE2: dict[str, Callable[[Any, Any], Any]] = {
    "count": int.__add__,
    "sum": _sum2,
    "min": _min2,
    "max": _max2,
    "m2": _m2_2,
    "first": _first2,
    "last": _last2,
    "distinct": _distinct2,
}


def _of_value(kind: str, e: int, c: int, v: Any) -> Any:
    """The partial of one slot for one event's value `v` (not None)."""
    if kind == "count":
        return 1
    if kind in ("sum", "min", "max"):
        return v
    if kind == "m2":
        return [1, float(v), 0.0]
    if kind in ("first", "last"):
        return [e, c, v]
    return [v]  # distinct


def _finish(function: str, slots: list[Any]) -> Any:
    """The feature value of `function` from its slots' merged partials (in _SLOTS_OF order)."""
    if function in ("count", "sum", "min", "max"):
        return slots[0]
    if function == "mean":
        n, s = slots
        return None if not n else s / n
    if function in ("var", "std"):
        m = slots[0]
        if m is None or m[0] < 2:
            return None
        var = max(m[2], 0.0) / (m[0] - 1)
        return var if function == "var" else math.sqrt(var)
    if function in ("first", "last"):
        return None if slots[0] is None else slots[0][2]
    return len(slots[0])  # count_distinct


def _finisher(agg: _Agg) -> Callable[[Partial], Any]:
    """The feature value of `agg` from a merged partial (a fast path of `_finish` for one slot)."""
    if agg.function in ("count", "sum", "min", "max"):
        return itemgetter(agg.slots[0])
    if agg.function == "count_distinct":
        i = agg.slots[0]
        return lambda p: len(p[i])
    if agg.function == "mean":
        n, s = agg.slots
        return lambda p: p[s] / p[n] if p[n] else None
    slots, function = agg.slots, agg.function
    return lambda p: _finish(function, [p[i] for i in slots])


# The value schedule (tile_schedule.py) merges partials two at a time and finishes a window's features
# at every change point of every blob written: both are generated once per view as straight-line code
# (no loop over slots, no call per count or sum), as dataclasses and namedtuple generate theirs.


def _compiled_merge2(kinds: list[str]) -> Callable[[Partial, Partial], Partial]:
    """`merge([a, b])` for partials of slots of these kinds."""
    namespace: dict[str, Any] = {}
    terms = []
    for i, kind in enumerate(kinds):
        a, b = f"a[{i}]", f"b[{i}]"
        if kind == "count":
            terms.append(f"{a} + {b}")
        elif kind == "sum":
            terms.append(f"({b} if {a} is None else {a} if {b} is None else {a} + {b})")
        else:
            namespace[f"pair{i}"] = _MERGE2[kind]
            terms.append(f"pair{i}({a}, {b})")
    exec(f"def merge2(a, b):\n    return [{', '.join(terms)}]", namespace)
    return namespace["merge2"]  # type: ignore[no-any-return]


def _compiled_setter(features: list[tuple[int, _Agg]]) -> Callable[[list[Any], Partial], None]:
    """Sets `row[position]` to the value of each (position, aggregation) from a merged partial."""
    namespace: dict[str, Any] = {}
    lines = []
    for pos, agg in features:
        s = agg.slots
        if agg.function in ("count", "sum", "min", "max"):
            lines.append(f"row[{pos}] = p[{s[0]}]")
        elif agg.function == "mean":
            lines.append(f"row[{pos}] = p[{s[1]}] / p[{s[0]}] if p[{s[0]}] else None")
        elif agg.function == "count_distinct":
            lines.append(f"row[{pos}] = len(p[{s[0]}])")
        else:
            namespace[f"finish{pos}"] = _finisher(agg)
            lines.append(f"row[{pos}] = finish{pos}(p)")
    exec("def setter(row, p):\n    " + "\n    ".join(lines or ["pass"]), namespace)
    return namespace["setter"]  # type: ignore[no-any-return]


# -- the spec of a view --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Agg:
    function: str
    window_us: int | None
    slots: tuple[int, ...]  # indexes into TileSpec.slots


@dataclass(frozen=True)
class TileSpec:
    """What the tiles of one aggregating view hold, computed once from its definition."""

    hop: int
    k: int
    period: int  # hop * k
    longest: int  # the longest window in us (0: only lifetime aggregates)
    lifetime: bool  # the view has a lifetime aggregate
    columns: tuple[str, ...]  # the aggregated columns, in the order open events hold their values
    slots: tuple[tuple[int, str], ...]  # (column index, kind)
    aggs: tuple[_Agg, ...]
    windows: tuple[int | None, ...]  # the distinct windows (None: lifetime)
    by_length: tuple[int, ...]  # the distinct windows but lifetime, shortest first
    layout_id: int
    reducers: tuple[Callable[[Sequence[Any]], Any], ...] = field(repr=False)  # merge of each slot
    finishers: tuple[tuple[int | None, Callable[[Partial], Any]], ...] = field(repr=False)  # per feature
    identity: tuple[Any, ...] = field(repr=False)  # a partial with no value
    empty_values: tuple[Any, ...] = field(repr=False)  # the features of an entity never seen
    merge2: Callable[[Partial, Partial], Partial] = field(repr=False)  # merge([a, b]), faster
    # per window of by_length: setter(row, partial) sets its features in a row (view order)
    window_setters: tuple[tuple[int, Callable[[list[Any], Partial], None]], ...] = field(repr=False)
    lifetime_setter: Callable[[list[Any], Partial], None] = field(repr=False)  # the same for lifetime

    @staticmethod
    def of(view: FeatureView) -> TileSpec:
        hop = view.hop_us
        aggs = view.aggregations
        longest = max((a.window_us for a in aggs if a.window_us is not None), default=0)
        k = coarse_factor(longest, hop) if longest else 1
        columns = tuple(dict.fromkeys(a.column for a in aggs))
        slots: list[tuple[int, str]] = []
        specs = []
        for a in aggs:
            idx = []
            for kind in _SLOTS_OF[a.function]:
                slot = (columns.index(a.column), kind)
                if slot not in slots:
                    slots.append(slot)
                idx.append(slots.index(slot))
            specs.append(_Agg(a.function, a.window_us, tuple(idx)))
        text = (  # tiles/2: blobs with a value schedule
            "tiles/2|"
            + "|".join(f"{a.column}:{a.function}:{a.window_us}" for a in aggs)
            + f"|hop={hop}|k={k}"
        )
        identity = tuple(_identity(kind) for _, kind in slots)
        empty = tuple(_finish(a.function, [identity[i] for i in a.slots]) for a in specs)
        return TileSpec(
            hop=hop,
            k=k,
            period=hop * k,
            longest=longest,
            lifetime=any(a.window_us is None for a in aggs),
            columns=columns,
            slots=tuple(slots),
            aggs=tuple(specs),
            windows=tuple(dict.fromkeys(a.window_us for a in aggs)),
            by_length=tuple(sorted({a.window_us for a in aggs if a.window_us is not None})),
            layout_id=zlib.crc32(text.encode()),
            reducers=tuple(_REDUCE[kind] for _, kind in slots),
            finishers=tuple((a.window_us, _finisher(a)) for a in specs),
            identity=identity,
            empty_values=empty,
            merge2=_compiled_merge2([kind for _, kind in slots]),
            window_setters=tuple(
                (w, _compiled_setter([(i, a) for i, a in enumerate(specs) if a.window_us == w]))
                for w in sorted({a.window_us for a in aggs if a.window_us is not None})
            ),
            lifetime_setter=_compiled_setter([(i, a) for i, a in enumerate(specs) if a.window_us is None]),
        )

    # -- times ---------------------------------------------------------------------------------

    def align(self, us: int) -> int:
        return (us // self.hop) * self.hop

    def period_of(self, us: int) -> int:
        return (us // self.period) * self.period

    def edge(self, clock: int) -> int:
        """The start of the oldest period a read at `clock` or later needs; older ones are folded."""
        return self.period_of(self.align(clock - self.longest))

    def window_start(self, t: int, window_us: int | None) -> int | None:
        return None if window_us is None else self.align(t - window_us)

    # -- partials --------------------------------------------------------------------------------

    def event_partial(self, event: Event) -> Partial:
        """The partial of one event."""
        e, c = event[0], event[1]
        out = list(self.identity)
        for i, (col, kind) in enumerate(self.slots):
            v = event[2 + col]
            if v is not None:
                out[i] = _of_value(kind, e, c, v)
        return out

    def merge(self, partials: Sequence[Partial]) -> Partial:
        """One partial of several (any order, any grouping: the merges are associative)."""
        if len(partials) == 1:
            return list(partials[0])
        if not partials:
            return list(self.identity)
        return [reduce(values) for reduce, values in zip(self.reducers, zip(*partials))]

    def values(self, partials_per_window: dict[int | None, Partial]) -> list[Any]:
        """The feature values (view order) from one merged partial per window."""
        return [finish(partials_per_window[w]) for w, finish in self.finishers]


_specs: dict[int, tuple[FeatureView, TileSpec]] = {}


def spec_of(view: FeatureView) -> TileSpec:
    """`TileSpec.of(view)`, built once per view object (definitions are frozen)."""
    got = _specs.get(id(view))
    if got is not None and got[0] is view:
        return got[1]
    if len(_specs) >= 1024:
        _specs.clear()
    spec = TileSpec.of(view)
    _specs[id(view)] = (view, spec)
    return spec


# -- the state of one entity ---------------------------------------------------------------------


class Tiles:
    """The tiles of one entity, decoded from a blob (or empty), changed by writes, encoded again."""

    __slots__ = ("spec", "newest", "edge", "lifetime", "starts", "coarse", "fine", "open")

    def __init__(self, spec: TileSpec) -> None:
        self.spec = spec
        self.newest: int | None = None
        self.edge: int | None = None
        self.lifetime: Partial | None = None
        self.starts: list[int] = []
        self.coarse: list[Partial] = []
        self.fine: list[Any] = []  # per period: packed bytes, or (tile starts, partials) once decoded
        self.open: list[list[Any]] = []

    @staticmethod
    def decode(spec: TileSpec, blob: bytes | None) -> Tiles:
        """The tiles in `blob`; empty for None or a blob of another definition (layout id)."""
        tiles = Tiles(spec)
        if blob is None:
            return tiles
        newest, layout_id = HEADER.unpack_from(blob)
        if layout_id != spec.layout_id:
            return tiles
        n = FAST.unpack_from(blob)[4]
        slow = msgpack.unpackb(memoryview(blob)[PREFIX + n :])
        tiles.newest = newest
        tiles.edge, tiles.lifetime, gaps, tiles.coarse, fine, tiles.open = slow
        if gaps:
            period, hop = spec.period, spec.hop
            tiles.starts = starts = list(accumulate(gaps, lambda a, g: a + g * period))
            tiles.fine = [ps + f * hop if type(f) is int else f for ps, f in zip(starts, fine)]
        return tiles

    def fine_tiles(self, i: int) -> tuple[list[int], list[Partial]]:
        """The fine tiles (starts, partials) of period i, decoded once."""
        f = self.fine[i]
        if type(f) is int:  # a period of one tile: its partial is the coarse one
            return [f], [self.coarse[i]]
        if isinstance(f, (bytes, bytearray, memoryview)):
            starts, parts = msgpack.unpackb(f)
            f = self.fine[i] = (starts, parts)
        return f[0], f[1]

    def sealed_from(self, start: int, limit: int) -> tuple[list[int], list[Partial], Partial | None]:
        """The first `limit` sealed fine tiles at or after `start` (starts, partials, in time order) and
        the merged partial of the later ones (None: none), from coarse partials where it can."""
        spec = self.spec
        starts, coarse, fine = self.starts, self.coarse, self.fine
        tile_starts: list[int] = []
        partials: list[Partial] = []
        add_start, add_partial = tile_starts.append, partials.append
        j = bisect_right(starts, start - spec.period)  # the first period ending after start
        n = len(starts)
        while j < n and len(tile_starts) <= limit:
            f = fine[j]
            if type(f) is int:
                add_start(f)
                add_partial(coarse[j])
            else:
                ts, ps = self.fine_tiles(j)
                tile_starts += ts
                partials += ps
            j += 1
        if tile_starts and tile_starts[0] < start:  # (only the first period's)
            del partials[: bisect_left(tile_starts, start)], tile_starts[: bisect_left(tile_starts, start)]
        if len(tile_starts) > limit:
            rest = spec.merge([*partials[limit:], *coarse[j:]])
            del tile_starts[limit:], partials[limit:]
            return tile_starts, partials, rest
        return tile_starts, partials, spec.merge(coarse[j:]) if j < n else None

    @property
    def empty(self) -> bool:
        return not self.starts and not self.open and self.lifetime is None

    # -- reads ---------------------------------------------------------------------------------

    def partial(self, t: int, start: int | None) -> Partial:
        """The merged partial of the events in [start, t) (start None: lifetime, every event < t)."""
        spec = self.spec
        period = spec.period
        parts: list[Partial] = []
        if start is None:
            if self.lifetime is not None:
                parts.append(self.lifetime)
            i = 0
            lo = LEAST
        else:
            i = bisect_right(self.starts, start - period)  # the first period ending after start
            lo = start
        starts, coarse = self.starts, self.coarse
        for j in range(i, len(starts)):
            ps = starts[j]
            if ps >= t:
                break
            if ps >= lo and ps + period <= t:
                parts.append(coarse[j])
                continue
            tile_starts, partials = self.fine_tiles(j)
            a = bisect_left(tile_starts, lo)
            b = bisect_left(tile_starts, t)
            parts.extend(partials[a:b])
        for ev in self.open:
            if lo <= ev[0] < t:
                parts.append(spec.event_partial(ev))
        return spec.merge(parts)

    def values_at(self, t: int) -> list[Any]:
        """The feature values (view order) of a read at `t`, merged from the tiles."""
        spec = self.spec
        return spec.values({w: self.partial(t, spec.window_start(t, w)) for w in spec.windows})

    def fast_values(self, clock: int) -> tuple[list[Any], int]:
        """`values_at(clock)` and the first time after `clock` they may change (a window's oldest
        tile leaves it, or an open event's time comes), in one pass, for `clock` at or after the last
        write (every sealed tile has ended by then): windows from the shortest, each merging the
        longer window's new periods into the shorter one's partial, so every coarse partial is
        merged once."""
        spec = self.spec
        period, hop, align = spec.period, spec.hop, spec.align
        starts, coarse = self.starts, self.coarse

        def merge(parts: list[Partial]) -> Partial:  # read only: one part needs no copy
            return parts[0] if len(parts) == 1 else spec.merge(parts)

        until = FOREVER
        opened = []
        for ev in self.open:
            if ev[0] < clock:
                opened.append(ev)
            elif ev[0] + 1 < until:
                until = ev[0] + 1  # counted from then on
        windows = [(align(clock - w), w) for w in spec.by_length]  # shortest first: latest start first
        shared: Partial | None = None  # the merge of the periods wholly in the current window
        j = len(starts) - 1
        oldest_whole: int | None = None  # the oldest tile of those periods
        out: dict[int | None, Partial] = {}
        for start, w in windows:
            parts = [] if shared is None else [shared]
            took = j
            while j >= 0 and starts[j] >= start:
                parts.append(coarse[j])
                j -= 1
            if j != took:  # the oldest tile of the oldest period taken (decoded only if it has several)
                f = self.fine[j + 1]
                oldest_whole = f if type(f) is int else self.fine_tiles(j + 1)[0][0]
            if len(parts) > 1 or (parts and shared is None):
                shared = merge(parts)
            window_parts = [] if shared is None else [shared]
            oldest = oldest_whole
            if j >= 0 and starts[j] + period > start:  # the period where the window starts: its fine tiles
                tile_starts, partials = self.fine_tiles(j)
                a = bisect_left(tile_starts, start)
                if a < len(tile_starts):
                    window_parts.extend(partials[a:])
                    oldest = tile_starts[a]
            for ev in opened:
                if ev[0] >= start:
                    window_parts.append(spec.event_partial(ev))
                    tile = align(ev[0])
                    if oldest is None or tile < oldest:
                        oldest = tile
            if oldest is not None and oldest + hop + w < until:
                until = oldest + hop + w
            out[w] = merge(window_parts)
        if spec.lifetime:
            rest = coarse[: j + 1]
            life = [p for p in (shared, self.lifetime) if p is not None] + rest
            life += [spec.event_partial(ev) for ev in opened]
            out[None] = merge(life)
        return spec.values(out), until

    # -- writes --------------------------------------------------------------------------------

    def add(self, events: Sequence[Event], clock: int) -> None:
        """Merge events into the tiles at `clock` (sealed tiles, open events, or the lifetime partial)."""
        spec = self.spec
        edge = max(spec.edge(clock), self.edge if self.edge is not None else LEAST)
        sealed: dict[int, list[Partial]] = {}
        old: list[Partial] = []
        for ev in events:
            e = ev[0]
            if self.newest is None or e > self.newest:
                self.newest = e
            tile = spec.align(e)
            if tile + spec.hop > clock:
                self.open.append(list(ev))
            elif tile < edge:
                if spec.lifetime:
                    old.append(spec.event_partial(ev))
            else:
                sealed.setdefault(tile, []).append(spec.event_partial(ev))
        if old:
            self.lifetime = spec.merge([self.lifetime, *old] if self.lifetime is not None else old)
        for tile, partials in sorted(sealed.items()):
            self._merge_tile(tile, spec.merge(partials))
        self.open.sort(key=lambda ev: ev[0])

    def _merge_tile(self, tile: int, partial: Partial) -> None:
        spec = self.spec
        ps = spec.period_of(tile)
        i = bisect_left(self.starts, ps)
        if i == len(self.starts) or self.starts[i] != ps:
            self.starts.insert(i, ps)
            self.coarse.insert(i, partial)
            self.fine.insert(i, tile)
            return
        tile_starts, partials = self.fine_tiles(i)  # before the coarse partial changes (one-tile periods)
        tile_starts, partials = list(tile_starts), list(partials)
        self.coarse[i] = spec.merge([self.coarse[i], partial])
        j = bisect_left(tile_starts, tile)
        if j < len(tile_starts) and tile_starts[j] == tile:
            partials[j] = spec.merge([partials[j], partial])
        else:
            tile_starts.insert(j, tile)
            partials.insert(j, partial)
        self.fine[i] = (tile_starts, partials)

    def replace(
        self,
        rebuilt: Callable[[int], bool],
        tiles: tuple[list[int], list[int], list[Partial]],
        open_events: Sequence[Event],
        lifetime: Partial | None,
        clock: int,
        newest: int | None = None,
    ) -> None:
        """Materialization: the periods for which `rebuilt(period start)` holds, and the open events in
        them, become the sealed `tiles` (period starts, tile starts, partials: parallel lists in time
        order) and `open_events`; others stay. With `lifetime` (recomputed from every event before the
        edge at `clock`), it replaces the lifetime partial and the periods before it. `newest`: the
        newest event time among the new ones."""
        spec = self.spec
        periods, tile_starts, partials = tiles
        if len(set(periods)) == len(periods):  # one tile per period (sparse events): no merging
            starts, coarse = list(periods), list(partials)
            fine: list[Any] = list(tile_starts)
        else:
            starts, coarse, fine = [], [], []
            i, n = 0, len(periods)
            while i < n:
                ps = periods[i]
                j = i + 1
                while j < n and periods[j] == ps:
                    j += 1
                starts.append(ps)
                if j == i + 1:
                    coarse.append(partials[i])
                    fine.append(tile_starts[i])
                else:
                    coarse.append(spec.merge(partials[i:j]))
                    fine.append((tile_starts[i:j], partials[i:j]))
                i = j
        if self.starts:  # keep the stored periods that are not rebuilt
            merged = {ps: (c, f) for ps, c, f in zip(self.starts, self.coarse, self.fine) if not rebuilt(ps)}
            merged.update(zip(starts, zip(coarse, fine)))
            starts = sorted(merged)
            coarse = [merged[ps][0] for ps in starts]
            fine = [merged[ps][1] for ps in starts]
        self.starts, self.coarse, self.fine = starts, coarse, fine
        if self.open:
            self.open = [ev for ev in self.open if not rebuilt(spec.period_of(ev[0]))]
        if open_events:
            self.open.extend(list(ev) for ev in open_events)
            self.open.sort(key=lambda ev: ev[0])
        if newest is not None and (self.newest is None or newest > self.newest):
            self.newest = newest
        if lifetime is not None:
            self._set_lifetime(lifetime, clock)

    def _set_lifetime(self, lifetime: Partial, clock: int) -> None:
        """A lifetime partial recomputed from every event before the edge at `clock`: it replaces the
        stored one and the periods before that edge."""
        edge = self.spec.edge(clock)
        cut = bisect_left(self.starts, edge)
        del self.starts[:cut], self.coarse[:cut], self.fine[:cut]
        # Open events before the edge are in the recomputed partial too (a backfill run a day later).
        self.open = [ev for ev in self.open if ev[0] >= edge]
        self.lifetime = lifetime
        self.edge = edge

    def seal(self, clock: int) -> None:
        """Seal open events whose tile has ended by `clock`; fold (or drop) periods before the edge."""
        spec = self.spec
        if self.open and spec.align(self.open[0][0]) + spec.hop <= clock:
            ready = [ev for ev in self.open if spec.align(ev[0]) + spec.hop <= clock]
            self.open = [ev for ev in self.open if spec.align(ev[0]) + spec.hop > clock]
            self.add(ready, clock)
        edge = spec.edge(clock)
        if self.edge is not None and self.edge > edge:
            edge = self.edge
        cut = bisect_left(self.starts, edge)
        if cut:
            if spec.lifetime:
                old = self.coarse[:cut]
                self.lifetime = spec.merge([self.lifetime, *old] if self.lifetime is not None else old)
            del self.starts[:cut], self.coarse[:cut], self.fine[:cut]
        self.edge = edge

    def encode(self, clock: int) -> bytes | None:
        """The blob of these tiles written at `clock` (None when nothing is left to store)."""
        self.seal(clock)
        if self.empty:
            return None
        spec = self.spec
        schedule, m, until = tile_schedule.build(self, clock)
        pack = msgpack.packb
        # small ints where they can be: each period start after the first as the periods since the
        # one before, the start of a period's one tile as the hops since the period's start
        starts, period, hop = self.starts, spec.period, spec.hop
        gaps = [starts[0], *((b - a) // period for a, b in zip(starts, starts[1:]))] if starts else []
        fine = [
            (f - ps) // hop if type(f) is int else f if isinstance(f, bytes) else pack([f[0], f[1]])
            for ps, f in zip(starts, self.fine)
        ]
        slow = pack([self.edge, self.lifetime, gaps, self.coarse, fine, self.open])
        newest = self.newest if self.newest is not None else clock
        return FAST.pack(newest, spec.layout_id, clock, until, len(schedule), m) + schedule + slow


def read_values(spec: TileSpec, blob: bytes | None, t: int) -> tuple[Any, ...] | list[Any]:
    """The feature values (view order) of `blob` read at `t`: from its value schedule while it
    holds (`[write clock, until)`), else merged from its tiles."""
    if blob is None:
        return spec.empty_values
    _, layout_id, valid_from, valid_until, _, m = FAST.unpack_from(blob)
    if layout_id != spec.layout_id:
        return spec.empty_values
    if valid_from <= t < valid_until:
        return msgpack.unpackb(tile_schedule.row_at(blob, PREFIX, m, t))  # type: ignore[no-any-return]
    tiles = Tiles.decode(spec, blob)
    if t >= valid_from:  # every sealed tile ended by the write, so by t: the one-pass merge applies
        return tiles.fast_values(t)[0]
    return tiles.values_at(t)


def newest_event(blob: bytes) -> int:
    """The newest event time (us) a blob has seen (its header)."""
    return int(HEADER.unpack_from(blob)[0])
