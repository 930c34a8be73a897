"""The OnlineStore contract: what every online backend (SQLite, Redis) promises.

A backend stores, per feature view and entity key, the latest feature row by event time, as one
opaque *row blob* under one *row key* (both built by `featurestore.online.encoding`, the same bytes
for every backend). Backends move bytes; encoding, decoding and statuses live above them.

- `write(view, batches)`: rows are Arrow record batches (or a table, or a RecordBatchReader) whose
  columns are the view's join keys, its features, and `__event_ts` (TIMESTAMPTZ UTC). For each
  entity key the row with the newest `__event_ts` wins, compared with what is already stored,
  atomically: a write never replaces a stored row whose event time is newer (equal times: the
  write wins), so out-of-order, duplicate and concurrent writes are safe. A row is stored whole:
  a feature column missing from the batch is stored as null. Rows whose join keys contain a null,
  or whose event time is null, are skipped. Returns the number of rows accepted from the input.
  The same transaction (SQLite) or pipeline (Redis) moves the view's newest-event mark forward.
- `mark_newest({view: time})` / `newest_events()`: the newest event time each view holds online
  (monitoring's freshness), per namespace. A mark only ever moves forward (the max of what it was
  and what is given). `write` marks its rows' newest time itself; writers of tiles through `update`
  (aggregating views) call `mark_newest`. `delete_view` removes the view's mark.
  `newest_events_async()` is the same for asyncio code.
- `read(keys)`: the row blobs stored under `keys` (None where nothing is stored), in the order of
  `keys`, fetched in ONE round trip whatever the number of views and entities.
  `read_async(keys)` is the same for asyncio code, and `start_read(keys)` begins it at once: called
  from a coroutine, it sends the request before it returns where the backend can (Redis, on an idle
  connection), so the caller can do other work during the round trip; await what it returns.
- `update(keys, fn)`: an atomic read-modify-write of row blobs (aggregating views' tiles, see
  tiles.py). Keys are taken in batches (in order); for each, `fn(batch keys, their stored blobs
  (None where none))` returns the new blob of each (None: delete it). For each key, no other
  `update` or `write` lands between the read and the write: the backend locks the keys meanwhile
  (SQLite) or runs `fn` again on fresh values when one did (Redis, on a smaller batch each time, so
  steady writes to a few keys cannot starve it), so `fn` must be a pure function of its arguments,
  for any subset of the keys. Each batch is atomic on its own. Returns the number of keys written or
  deleted.
- `read_layouts(ids)`: the feature layouts (names and types) that rows were written with; needed
  only to read rows written before a view's schema changed.
- `delete_view(view_name)`: forget every row of that view (of this project only).
- `identity(create)`: the random id the store itself holds for this project (not its URL: a cluster
  is reached through any node), written on first use with `create`; None when it holds none (a new
  store, or one emptied since). Watermarks of what is online are recorded per identity.
- `count_rows(view_name)`: how many entity rows of the view are stored (an inspection: may scan).
- `close()` / `aclose()`: release connections. A store is safe to share between threads.

Failures to reach the store raise `featurestore.errors.OnlineStoreUnavailable`, quickly, and the
store recovers by itself once its server answers again.

Backends are built by `open_online_store(config)`; nothing else in the package imports them.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone

import pyarrow as pa

from ..definitions import FeatureView

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def micros(dt: datetime) -> int:
    """A time as microseconds since 1970 (naive: UTC), the unit event times are stored in."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return (dt - _EPOCH) // timedelta(microseconds=1)


def from_micros(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(us))


class OnlineStore(ABC):
    """Base class of online backends. See the module docstring for the contract.

    `key_prefix` is this project's namespace (bytes every row key starts with), so several projects
    can share one Redis server or one SQLite file.
    """

    key_prefix: bytes

    @property
    def async_read_bound(self) -> float | None:
        """Seconds within which `read_async` gives up by itself (raising OnlineStoreUnavailable), or None
        when it has no bound of its own. A caller with a deadline at least this long needs no timer."""
        return None

    @abstractmethod
    def write(self, view: FeatureView, batches: pa.Table | Iterable[pa.RecordBatch]) -> int:
        """Store the newest row per entity key; returns the number of rows accepted (see module doc)."""

    @abstractmethod
    def read(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """The row blobs under `keys`, in order (None = no row), in one round trip."""

    async def read_async(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """`read` for asyncio code; the default runs `read` in a worker thread."""
        return await asyncio.to_thread(self.read, keys)

    def start_read(self, keys: Sequence[bytes]) -> Awaitable[list[bytes | None]]:
        """`read_async(keys)`, begun now where the backend can (see the module docstring); the default
        begins when awaited. Call it from a coroutine and await the result (or hand it to a task)."""
        return self.read_async(keys)

    @abstractmethod
    def update(
        self, keys: Sequence[bytes], fn: Callable[[list[bytes], list[bytes | None]], list[bytes | None]]
    ) -> int:
        """Atomically replace, batch by batch, the blobs under `keys` by `fn(keys, current blobs)`
        (None = delete); see the module docstring."""

    @abstractmethod
    def mark_newest(self, newest: Mapping[str, datetime]) -> None:
        """Move each view's newest-event mark forward to the given time (never back)."""

    @abstractmethod
    def newest_events(self) -> dict[str, datetime]:
        """view -> the newest event time written online for it (views never written are absent)."""

    async def newest_events_async(self) -> dict[str, datetime]:
        """`newest_events` for asyncio code; the default runs it in a worker thread."""
        return await asyncio.to_thread(self.newest_events)

    @abstractmethod
    def read_layouts(self, layout_ids: Iterable[int]) -> dict[int, bytes]:
        """Layout id -> encoded layout, for the ids that were ever written (see encoding.py)."""

    @abstractmethod
    def delete_view(self, view_name: str) -> None:
        """Forget every row of the view in this project's namespace."""

    @abstractmethod
    def identity(self, create: bool = False) -> str | None:
        """The random id this store holds for this namespace; with `create`, written if absent (an
        atomic write-if-absent, so concurrent first uses agree) and returned. None: it holds none."""

    @abstractmethod
    def count_rows(self, view_name: str) -> int:
        """The number of entity rows of the view stored in this namespace."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release connections; the store must not be used afterwards."""

    async def aclose(self) -> None:
        """`close` from asyncio code (also closes the connections of the running event loop)."""
        self.close()
