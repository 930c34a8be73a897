"""The embedded online store: one SQLite file (WAL), shared safely by threads and processes.

    CREATE TABLE feature_rows (key BLOB PRIMARY KEY, ts INTEGER, value BLOB) WITHOUT ROWID

`key` is the row key (`<prefix>:<view>:<entity>`, see encoding.py), so one file can hold several
projects and a view's rows are one contiguous key range (deleted with one range DELETE). A lookup
is one `SELECT ... WHERE key IN (...)`. Newest wins through the upsert's
`WHERE excluded.ts >= feature_rows.ts`, which SQLite applies atomically per row. The newest event
time written per view (`newest_events`) is a row of `newest_events`, moved forward with `max()` in
the write's own transaction.

Each thread (and each process after a fork) gets its own connection; WAL lets readers run while
one writer writes, and writers wait for each other (busy timeout) instead of failing.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path

import pyarrow as pa

from ..definitions import FeatureView
from ..errors import OnlineStoreUnavailable
from .base import OnlineStore, from_micros, micros
from .encoding import HEADER, Layout, encode_rows, record_batches, view_prefix

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feature_rows (key BLOB PRIMARY KEY, ts INTEGER NOT NULL, value BLOB NOT NULL)
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS layouts (prefix BLOB NOT NULL, id INTEGER NOT NULL, layout BLOB NOT NULL,
    PRIMARY KEY (prefix, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS markers (prefix BLOB PRIMARY KEY, identity TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS newest_events (prefix BLOB NOT NULL, view TEXT NOT NULL, ts INTEGER NOT NULL,
    PRIMARY KEY (prefix, view)) WITHOUT ROWID;
"""
_MARK = (
    "INSERT INTO newest_events (prefix, view, ts) VALUES (?, ?, ?) ON CONFLICT (prefix, view) DO UPDATE "
    "SET ts = max(newest_events.ts, excluded.ts)"
)
_UPSERT = (
    "INSERT INTO feature_rows (key, ts, value) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
    "ts = excluded.ts, value = excluded.value WHERE excluded.ts >= feature_rows.ts"
)
_MAX_PARAMS = 30_000  # below SQLite's default limit of 32,766 bound parameters


class SqliteOnlineStore(OnlineStore):
    """The OnlineStore contract over one SQLite file; see the module docstring."""

    def __init__(self, path: str | os.PathLike[str], namespace: bytes, timeout: float = 30.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.key_prefix = namespace
        self.timeout = timeout
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        this = weakref.ref(self)

        def forget_in_child() -> None:
            store = this()
            if store is not None:
                store._forget_connections()

        os.register_at_fork(after_in_child=forget_in_child)
        self._select_sql: dict[int, str] = {}
        self._layouts_saved: set[int] = set()
        try:
            self._con().executescript(_SCHEMA)
        except sqlite3.OperationalError as e:
            raise self._unavailable(e) from e

    def _con(self) -> sqlite3.Connection:
        try:
            con: sqlite3.Connection = self._local.con
            return con
        except AttributeError:
            pass
        con = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        self._local.con = con
        with self._connections_lock:
            self._connections.append(con)
        return con

    def _forget_connections(self) -> None:
        """In a forked child: never touch the parent's connections (SQLite forbids it); open new ones."""
        self._local = threading.local()
        self._connections = []
        self._connections_lock = threading.Lock()

    def _unavailable(self, e: sqlite3.Error) -> OnlineStoreUnavailable:
        return OnlineStoreUnavailable(f"the SQLite online store {self.path} is unavailable: {e}")

    def write(self, view: FeatureView, batches: pa.Table | Iterable[pa.RecordBatch]) -> int:
        layout = Layout.of(view)
        prefix = view_prefix(self.key_prefix, view.name)
        accepted = 0
        try:
            con = self._con()
            self._save_layout(con, layout)
            for batch in record_batches(batches):
                keys, stamps, blobs = encode_rows(view, layout, prefix, batch)
                if not keys:
                    continue
                con.execute("BEGIN IMMEDIATE")
                try:
                    con.executemany(_UPSERT, zip(keys, stamps, blobs))
                    con.execute(_MARK, (self.key_prefix, view.name, max(stamps)))
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
                con.execute("COMMIT")
                accepted += len(keys)
        except sqlite3.OperationalError as e:  # locked past the busy timeout, unreadable file, full disk
            raise self._unavailable(e) from e
        return accepted

    def update(
        self, keys: Sequence[bytes], fn: Callable[[list[bytes], list[bytes | None]], list[bytes | None]]
    ) -> int:
        # One BEGIN IMMEDIATE transaction: it takes the write lock before reading, so no other writer
        # lands between the read and the write (they wait, up to the busy timeout).
        if not keys:
            return 0
        try:
            con = self._con()
            con.execute("BEGIN IMMEDIATE")
            try:
                found: dict[bytes, bytes] = {}
                for i in range(0, len(keys), _MAX_PARAMS):
                    chunk = keys[i : i + _MAX_PARAMS]
                    found.update(con.execute(self._select(len(chunk)), chunk).fetchall())
                new = fn(list(keys), [found.get(k) for k in keys])  # one batch: the lock is taken anyway
                if len(new) != len(keys):
                    raise ValueError(f"update: {len(keys)} keys but {len(new)} new values")
                rows = [(k, int(HEADER.unpack_from(b)[0]), b) for k, b in zip(keys, new) if b is not None]
                gone = [(k,) for k, b in zip(keys, new) if b is None and k in found]
                con.executemany(
                    "INSERT INTO feature_rows (key, ts, value) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE "
                    "SET ts = excluded.ts, value = excluded.value",
                    rows,
                )
                con.executemany("DELETE FROM feature_rows WHERE key = ?", gone)
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        except sqlite3.OperationalError as e:
            raise self._unavailable(e) from e
        return len(rows) + len(gone)

    def _save_layout(self, con: sqlite3.Connection, layout: Layout) -> None:
        if layout.id not in self._layouts_saved:
            con.execute(
                "INSERT OR IGNORE INTO layouts VALUES (?, ?, ?)", (self.key_prefix, layout.id, layout.encoded)
            )
            self._layouts_saved.add(layout.id)

    def read(self, keys: Sequence[bytes]) -> list[bytes | None]:
        n = len(keys)
        if n == 0:
            return []
        try:
            con = self._con()
            if n <= _MAX_PARAMS:
                found = dict(con.execute(self._select(n), keys).fetchall())
            else:  # several statements, one read transaction: still one consistent snapshot
                found = {}
                con.execute("BEGIN")
                try:
                    for i in range(0, n, _MAX_PARAMS):
                        chunk = keys[i : i + _MAX_PARAMS]
                        found.update(con.execute(self._select(len(chunk)), chunk).fetchall())
                finally:
                    con.execute("COMMIT")
        except sqlite3.OperationalError as e:
            raise self._unavailable(e) from e
        get = found.get
        return [get(k) for k in keys]

    def _select(self, n: int) -> str:
        sql = self._select_sql.get(n)
        if sql is None:
            sql = f"SELECT key, value FROM feature_rows WHERE key IN ({','.join('?' * n)})"
            if len(self._select_sql) < 512:
                self._select_sql[n] = sql
        return sql

    def read_layouts(self, layout_ids: Iterable[int]) -> dict[int, bytes]:
        ids = list(layout_ids)
        rows = (
            self._con()
            .execute(
                f"SELECT id, layout FROM layouts WHERE prefix = ? AND id IN ({','.join('?' * len(ids))})",
                (self.key_prefix, *ids),
            )
            .fetchall()
        )
        return dict(rows)

    def delete_view(self, view_name: str) -> None:
        low = view_prefix(self.key_prefix, view_name)
        high = low[:-1] + bytes([low[-1] + 1])  # the first key after every "<prefix>:<view>:..." key
        con = self._con()
        con.execute("DELETE FROM feature_rows WHERE key >= ? AND key < ?", (low, high))
        con.execute("DELETE FROM newest_events WHERE prefix = ? AND view = ?", (self.key_prefix, view_name))

    def mark_newest(self, newest: Mapping[str, datetime]) -> None:
        if not newest:
            return
        try:
            self._con().executemany(
                _MARK, [(self.key_prefix, view, micros(ts)) for view, ts in newest.items()]
            )
        except sqlite3.OperationalError as e:
            raise self._unavailable(e) from e

    def newest_events(self) -> dict[str, datetime]:
        try:
            rows = (
                self._con()
                .execute("SELECT view, ts FROM newest_events WHERE prefix = ?", (self.key_prefix,))
                .fetchall()
            )
        except sqlite3.OperationalError as e:
            raise self._unavailable(e) from e
        return {str(view): from_micros(ts) for view, ts in rows}

    def identity(self, create: bool = False) -> str | None:
        try:
            con = self._con()
            if create:
                con.execute(
                    "INSERT OR IGNORE INTO markers (prefix, identity) VALUES (?, ?)",
                    (self.key_prefix, uuid.uuid4().hex),
                )
            row = con.execute("SELECT identity FROM markers WHERE prefix = ?", (self.key_prefix,)).fetchone()
        except sqlite3.OperationalError as e:
            raise self._unavailable(e) from e
        return str(row[0]) if row else None

    def count_rows(self, view_name: str) -> int:
        low = view_prefix(self.key_prefix, view_name)
        high = low[:-1] + bytes([low[-1] + 1])
        try:
            row = (
                self._con()
                .execute("SELECT count(*) FROM feature_rows WHERE key >= ? AND key < ?", (low, high))
                .fetchone()
            )
        except sqlite3.OperationalError as e:
            raise self._unavailable(e) from e
        return int(row[0])

    def close(self) -> None:
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for con in connections:
            con.close()
        self._local = threading.local()
