"""A brute-force reference of SPEC §11's time-window aggregations: the truth the engine is tested against.

Written for clarity, not speed: for every entity row, every event is looked at. Times are integer
microseconds since the epoch; an event is (keys, event_us, created_us or None, {column: value or None}).
A float NaN is skipped like a null (docs/decisions.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from featurestore import Aggregation


@dataclass(frozen=True)
class Event:
    keys: tuple[Any, ...]
    event_us: int
    created_us: int | None
    values: dict[str, Any]


def align(us: int, hop_us: int) -> int:
    """Round down to a multiple of hop since the epoch (floor, also before 1970)."""
    return (us // hop_us) * hop_us


def is_null(value: Any) -> bool:
    """Null for aggregations: None, and a float NaN (skipped like a null, SPEC §11 as decided)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def in_window(event: Event, t_us: int, window_us: int | None, hop_us: int, bitemporal: bool) -> bool:
    if event.event_us >= t_us:
        return False  # the end is exact and excludes t
    if window_us is not None and event.event_us < align(t_us - window_us, hop_us):
        return False
    if bitemporal:
        created = event.created_us if event.created_us is not None else event.event_us
        if created > t_us:
            return False
    return True


def _created_rank(created_us: int | None) -> tuple[int, int]:
    return (0, 0) if created_us is None else (1, created_us)  # a null created time ranks lowest


def aggregate(function: str, picked: Sequence[tuple[Event, Any]]) -> Any:
    """One aggregate of the non-null values `picked` ((event, value) pairs) of a window."""
    values = [v for _, v in picked]
    n = len(values)
    if function == "count":
        return n
    if function == "count_distinct":
        return len(set(values))
    if n == 0:
        return None
    if function == "sum":
        return sum(values) if all(isinstance(v, int) for v in values) else math.fsum(values)
    if function == "mean":
        return math.fsum(values) / n
    if function == "min":
        return min(values)
    if function == "max":
        return max(values)
    if function in ("var", "std"):
        if n < 2:
            return None
        mean = math.fsum(values) / n
        var = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
        return var if function == "var" else math.sqrt(var)
    if function in ("first", "last"):
        ranked = sorted(picked, key=lambda p: (p[0].event_us, _created_rank(p[0].created_us), p[1]))
        return ranked[-1][1] if function == "last" else ranked[0][1]
    raise ValueError(function)


def expected(
    events: Sequence[Event],
    rows: Sequence[tuple[tuple[Any, ...], int]],
    aggregations: Sequence[Aggregation],
    hop_us: int,
    bitemporal: bool = False,
) -> dict[str, list[Any]]:
    """Feature name -> the value for each entity row (keys, t_us), by SPEC §11. A null key matches nothing."""
    out: dict[str, list[Any]] = {a.feature_name: [] for a in aggregations}
    for keys, t_us in rows:
        mine = [e for e in events if None not in keys and e.keys == keys]
        for a in aggregations:
            picked = [
                (e, e.values.get(a.column))
                for e in mine
                if not is_null(e.values.get(a.column)) and in_window(e, t_us, a.window_us, hop_us, bitemporal)
            ]
            out[a.feature_name].append(aggregate(a.function, picked))
    return out
