"""The value schedule of a tiles blob (tiles.py): the feature values at every change point from the
write clock on, so a read hours or days after a write costs a bisect and one small decode, not a merge.

The values of a blob change only when a tile leaves a window (at tile start + hop + window) or an
open event's time comes (it counts from event us + 1). From the write clock `c`, the schedule holds
the first `CAP` change points `p1 < ... < pM` after `c` and the values of each interval
`[c, p1), [p1, p2), ..., [pM, until)`: `until` is the next change point, or `FOREVER` when none is
left (windows are then empty, lifetime aggregates stay as they are). A read outside `[c, until)`
merges tiles.

Computed incrementally: per window, its partial at a time is the merge of its tiles not yet left
(a suffix of them in time order) and of the open events counted and not yet left, so the suffix
merges are chained from the newest tile back, one pairwise merge per tile, and a window's features
are finished again only at its own change points.

Encoding (the blob's schedule section, right after `tiles.FAST`, which holds `c`, `until` and `M`):
the M change points (int64, big-endian), M + 2 row offsets (uint32, from the first row: 0, then the
end of each row), then the M + 1 rows, each the msgpack array of the feature values (view order) of
one interval. A read unpacks the points, bisects, unpacks two offsets and decodes one row.
"""

from __future__ import annotations

import struct
from bisect import bisect_left, bisect_right
from itertools import accumulate, repeat
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import msgpack

if TYPE_CHECKING:
    from .tiles import Partial, Tiles

CAP = 32  # change points kept per blob; later reads merge tiles
FOREVER = 2**62  # `until` when no change point is left
# POINTS[m]: the change points of a section with m of them; HEADS[m]: its points and row offsets
POINTS = [struct.Struct(f">{m}q") for m in range(CAP + 1)]
HEADS = [struct.Struct(f">{m}q{m + 2}I") for m in range(CAP + 1)]
ROW = struct.Struct(">II")  # where a row starts and ends (from the first row)


class _Window:
    """The state of one window as the schedule steps through its change points."""

    __slots__ = ("w", "leaves", "suffix", "base", "finish", "gone", "first_open", "key")

    def __init__(self, w: int, leaves: list[int], suffix: list[Partial], base: int, finish: Any) -> None:
        self.w = w
        self.leaves = leaves  # when each sealed tile in the window leaves it, in time order
        self.suffix = suffix  # suffix[base + i]: the merge of its sealed tiles i.. (and later ones)
        self.base = base
        self.finish = finish  # finish(row, partial): sets its features in the row
        self.gone = 0  # sealed tiles that have left
        self.first_open = 0  # open events that have left (they leave in event order)
        self.key: tuple[int, int, int] | None = None  # (gone, first_open, counted) of the row before


def _suffix(merge2: Any, partials: list[Partial], rest: Partial) -> list[Partial]:
    """suffix[i] = the merge of partials[i:] and rest (chained from the newest)."""
    suffix = [rest]
    for p in reversed(partials):
        suffix.append(merge2(p, suffix[-1]))
    suffix.reverse()
    return suffix


def _windows(tiles: Tiles, clock: int) -> list[_Window]:
    """The windows of `tiles` at `clock`, longest first, with their sealed tiles' suffix merges: one
    chain for all when the longest window's tiles are few enough to take one by one."""
    spec = tiles.spec
    hop, align = spec.hop, spec.align
    identity = list(spec.identity)
    features = dict(spec.window_setters)
    windows: list[_Window] = []
    longest = spec.by_length[-1]
    tile_starts, partials, rest = tiles.sealed_from(align(clock - longest), CAP + 1)
    if rest is None:  # every window's tiles are a suffix of the longest one's
        suffix = _suffix(spec.merge2, partials, identity)
        for w in reversed(spec.by_length):
            base = bisect_left(tile_starts, align(clock - w))
            leaves = [s + hop + w for s in tile_starts[base:]]
            windows.append(_Window(w, leaves, suffix, base, features[w]))
        return windows
    for w in reversed(spec.by_length):
        if w != longest:
            tile_starts, partials, rest = tiles.sealed_from(align(clock - w), CAP + 1)
        suffix = _suffix(spec.merge2, partials, identity if rest is None else rest)
        windows.append(_Window(w, [s + hop + w for s in tile_starts], suffix, 0, features[w]))
    return windows


def build(tiles: Tiles, clock: int) -> tuple[bytes, int, int]:
    """The schedule section of `tiles` written at `clock` (sealed at `clock`), the number of change
    points it holds and `until`."""
    spec = tiles.spec
    row: list[Any] = list(spec.empty_values)
    packer = msgpack.Packer()
    found = None if tiles.open or not spec.by_length else _sealed_only(tiles, clock, row, packer)
    if found is None:
        windows = _windows(tiles, clock) if spec.by_length else []
        lifetime: Partial | None = None
        if spec.lifetime:
            lifetime = spec.merge([p for p in (tiles.lifetime,) if p is not None] + tiles.coarse)
        found = _general(tiles, clock, windows, lifetime, row, packer)
    changes, until, rows = found
    m = len(changes)
    section = HEADS[m].pack(*changes, 0, *accumulate(map(len, rows))) + b"".join(rows)
    return section, m, until


def _sealed_only(
    tiles: Tiles, clock: int, row: list[Any], packer: msgpack.Packer
) -> tuple[list[int], int, list[bytes]] | None:
    """The change points, `until` and packed rows in the common case: no open event, and the longest
    window's tiles few enough to take one by one (else None), so each window changes only when its
    oldest tile leaves and its partials are suffixes of one chain of merges."""
    spec = tiles.spec
    hop, align = spec.hop, spec.align
    tile_starts, partials, rest = tiles.sealed_from(align(clock - spec.by_length[-1]), CAP + 1)
    if rest is not None:
        return None
    merge2 = spec.merge2
    part = list(spec.identity)
    suffix = [part] * (len(partials) + 1)  # suffix[i]: the merge of partials[i:]
    for i in range(len(partials) - 1, -1, -1):
        part = suffix[i] = merge2(partials[i], part)
    # (time, setter, partial after): each window's next partial from the time its oldest tile leaves
    steps: list[tuple[int, Any, Partial]] = []
    for w, finish in spec.window_setters:
        base = bisect_left(tile_starts, align(clock - w))
        finish(row, suffix[base])
        steps += zip([s + hop + w for s in tile_starts[base:]], repeat(finish), suffix[base + 1 :])
    if spec.lifetime:
        spec.lifetime_setter(row, spec.merge([p for p in (tiles.lifetime,) if p is not None] + tiles.coarse))
    steps.sort(key=itemgetter(0))
    pack = packer.pack
    rows = [pack(row)]
    changes: list[int] = []
    previous = None
    for r, finish, part in steps:
        if r != previous:
            if previous is not None:
                rows.append(pack(row))
                changes.append(previous)
                if len(changes) == CAP:
                    return changes, r, rows
            previous = r
        finish(row, part)
    if previous is not None:
        rows.append(pack(row))
        changes.append(previous)
    return changes, FOREVER, rows


def _general(
    tiles: Tiles,
    clock: int,
    windows: list[_Window],
    lifetime: Partial | None,
    row: list[Any],
    packer: msgpack.Packer,
) -> tuple[list[int], int, list[bytes]]:
    """The change points, `until` and packed rows in general: open events come and leave windows too,
    and a window's oldest tiles may be beyond those taken one by one (its `rest`)."""
    spec = tiles.spec
    hop, align, merge2 = spec.hop, spec.align, spec.merge2
    opens = tiles.open  # in event time order
    open_times = [ev[0] for ev in opens]
    open_tiles = [align(e) for e in open_times]
    open_parts = [spec.event_partial(ev) for ev in opens]
    points = {e + 1 for e in open_times if e >= clock}
    for win in windows:
        points.update(win.leaves)
        points.update(s + hop + win.w for s in open_tiles if s + hop + win.w > clock)
    changes = sorted(points)
    until = changes[CAP] if len(changes) > CAP else FOREVER
    changes = changes[:CAP]
    finish_lifetime = spec.lifetime_setter
    rows: list[bytes] = []
    n_open = len(opens)
    counted = 0  # open events whose time has come
    counted_before = -1
    for r in (clock, *changes):
        while counted < n_open and open_times[counted] < r:
            counted += 1
        for win in windows:
            gone, leaves = win.gone, win.leaves
            while gone < len(leaves) and leaves[gone] <= r:
                gone += 1
            first, edge = win.first_open, r - hop - win.w
            while first < n_open and open_tiles[first] <= edge:  # left: tile + hop + w <= r
                first += 1
            win.gone, win.first_open = gone, first
            key = (gone, first, counted)
            if key != win.key:
                win.key = key
                part = win.suffix[win.base + gone]
                for j in range(first, counted):
                    part = merge2(part, open_parts[j])
                win.finish(row, part)
        if lifetime is not None and counted != counted_before:
            part = lifetime
            for j in range(counted):
                part = merge2(part, open_parts[j])
            finish_lifetime(row, part)
        counted_before = counted
        rows.append(packer.pack(row))
    return changes, until, rows


def row_at(blob: bytes, offset: int, m: int, t: int) -> bytes:
    """The packed values row of a read at `t` (within the schedule) of a section at `offset` holding
    `m` change points."""
    i = bisect_right(POINTS[m].unpack_from(blob, offset), t)  # (lookup.py inlines this)
    lo, hi = ROW.unpack_from(blob, offset + 8 * m + 4 * i)
    rows = offset + 12 * m + 8
    return blob[rows + lo : rows + hi]
