"""The OnlineStore contract: what every online backend (SQLite, Redis) promises.

A backend stores, per feature view and entity key, the latest feature row by event time.

- `write(view, batches)`: rows are Arrow record batches (or a table) whose columns are the view's
  join keys, some or all of its features, and `__event_ts` (TIMESTAMPTZ UTC). For each entity key
  the row with the newest `__event_ts` wins, compared with what is already stored: a write never
  replaces a stored row whose event time is newer (equal times: the write wins). Rows whose join
  keys contain a null are skipped. Returns the number of rows it accepted from the input.
- `read(...)`: many views x many entity keys in ONE round trip (see the backend module).
- `delete_view(view_name)`: forget every row of that view (of this project only).
- `close()`: release connections.

Backends are built by `open_online_store(config)`; nothing else in the package imports them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable

import pyarrow as pa

from ..definitions import FeatureView


class OnlineStore(ABC):
    """Base class of online backends. See the module docstring for the contract."""

    @abstractmethod
    def write(self, view: FeatureView, batches: pa.Table | Iterable[pa.RecordBatch]) -> int: ...

    @abstractmethod
    def delete_view(self, view_name: str) -> None: ...

    def close(self) -> None:  # noqa: B027 - optional
        pass
