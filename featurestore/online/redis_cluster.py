"""The online store on a Redis Cluster (`[online] cluster = true`, url of one or more nodes).

The same contract and row blobs as the single-Redis store (redis.py), with keys a cluster can
serve: each row key carries its entity as a hash tag (`rides:driver_stats:{1001}`, see
cluster_keys.py), so all views of one entity live in one slot. Commands go through
`cluster_client.ClusterClient`: one pipeline per node, all nodes in flight at once, MOVED and ASK
followed. Since MGET and scripts cannot span slots, every command here touches one key:

- `read`: a GET per key; a lookup is one round trip per node involved, in parallel.
- `write`: newest wins per key through a Lua script (EVALSHA per row, compare the 8-byte event-time
  headers, set when not older), as on one Redis; the view's newest-event mark (`ZADD ... GT`) and
  its layout (`HSETNX`) ride in the same batch.
- `update` (aggregating views' tiles): optimistic per key: GET the batch, run `fn`, then a
  compare-and-set script per key that writes only if the key still holds what was read; the keys
  another writer changed meanwhile are redone, alone, from fresh values. Atomic per key (a batch
  spans slots, so not as a whole; the contract lets `fn` be rerun on any subset).
- `delete_view`, `count_rows`: SCAN every master for the view's keys.

Meta keys (`<ns>__layouts`, `<ns>__newest`) keep their standalone names and are used by
single-key commands; the identity is held in every slot (cluster_identity.py), so that a master
that comes back empty is noticed. `featurestore.online.migrate` copies a standalone Redis into
this layout.
"""

from __future__ import annotations

import hashlib
import random
import time
import uuid
from binascii import crc_hqx
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import hiredis
import pyarrow as pa

from ..config import redacted_text, redacted_url
from ..definitions import FeatureView
from ..errors import FeatureStoreError, OnlineStoreUnavailable
from . import cluster_identity
from .base import OnlineStore, from_micros, micros
from .cluster_client import ClusterClient, Command, InFlight
from .cluster_connection import get_command, pack
from .cluster_keys import check_namespace, cluster_key, key_slot
from .encoding import Layout, encode_rows, glob_escape, record_batches, view_prefix

# KEYS[1]: a row key; ARGV[1]: its new blob, starting with the event time as a big-endian int64.
_WRITE_SCRIPT = b"""
local old = redis.call('GET', KEYS[1])
if (not old) or struct.unpack('>i8', old) <= struct.unpack('>i8', ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1])
  return 1
end
return 0
"""
# KEYS[1]: a key; ARGV: '1' and the blob read ('0', '' if none was), then '1' and the new blob ('0', ''
# to delete). Writes only if the key still holds what was read.
_CAS_SCRIPT = b"""
local cur = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if cur ~= ARGV[2] then return 0 end
elseif cur then
  return 0
end
if ARGV[3] == '1' then redis.call('SET', KEYS[1], ARGV[4]) else redis.call('DEL', KEYS[1]) end
return 1
"""
# KEYS[1]: a key; ARGV[1]: a blob. Set where the key holds nothing (1); 2: it holds that very blob;
# 0: it holds another.
_ABSENT_SCRIPT = b"""
local cur = redis.call('GET', KEYS[1])
if not cur then
  redis.call('SET', KEYS[1], ARGV[1])
  return 1
end
if cur == ARGV[1] then return 2 end
return 0
"""
_WRITE_SHA = hashlib.sha1(_WRITE_SCRIPT).hexdigest().encode()
_ABSENT_SHA = hashlib.sha1(_ABSENT_SCRIPT).hexdigest().encode()
_CAS_SHA = hashlib.sha1(_CAS_SCRIPT).hexdigest().encode()
_ROWS_PER_BATCH = 10_000  # rows encoded and sent per batch
_KEYS_PER_UPDATE = 1_000
_UPDATE_ATTEMPTS = 100
_SCAN_COUNT = b"1000"


class RedisClusterOnlineStore(OnlineStore):
    """The OnlineStore contract over a Redis Cluster; see the module docstring.

    store = RedisClusterOnlineStore("redis://node-1:6379", b"rides:", timeout=1.0)
    """

    def __init__(self, url: str, namespace: bytes, timeout: float = 1.0):
        check_namespace(namespace)
        self.url = url
        self.key_prefix = namespace
        self.timeout = timeout
        self.client = ClusterClient(url, timeout)
        self._ns_len = len(namespace)
        self._layouts_key = namespace + b"__layouts"
        self._newest_key = namespace + b"__newest"
        self._layouts_saved: set[int] = set()

    @property
    def async_read_bound(self) -> float:
        # One deadline per lookup, across its rounds (cluster_client.py): twice `timeout`.
        return 2 * self.timeout

    def _reply_error(self, what: str, reply: Any) -> OnlineStoreUnavailable:
        return OnlineStoreUnavailable(
            redacted_text(
                f"the Redis Cluster online store at {redacted_url(self.url)} refused {what}: {reply}; "
                "check the nodes' logs (memory limit, a node that is loading)",
                self.url,
            )
        )

    def _run(
        self,
        what: str,
        commands: Sequence[Command],
        idempotent: bool = True,
        inflight: InFlight | None = None,
    ) -> list[Any]:
        """Execute (or finish, when `inflight`), with a lost script cache (a node restarted, SCRIPT
        FLUSH) loaded again and the commands it refused sent again; any other error reply raises."""
        if inflight is not None:
            replies = self.client.finish(inflight, idempotent)
        else:
            replies = self.client.execute(commands, idempotent)
        missing = [
            i for i, r in enumerate(replies) if isinstance(r, hiredis.ReplyError) and "NOSCRIPT" in str(r)
        ]
        if missing:
            self._load_scripts()
            for i, r in zip(missing, self.client.execute([commands[i] for i in missing], idempotent)):
                replies[i] = r
        for r in replies:
            if isinstance(r, hiredis.ReplyError):
                raise self._reply_error(what, r)
        return replies

    def _load_scripts(self) -> None:
        """Load the scripts on every master; a node that lost them may have lost the layouts too."""
        self._layouts_saved.clear()
        load = [pack((b"SCRIPT", b"LOAD", s)) for s in (_WRITE_SCRIPT, _CAS_SCRIPT, _ABSENT_SCRIPT)]
        for node in self.client.masters():
            self.client.on_node(node, load)

    # -- writes ---------------------------------------------------------------------------------

    def _write_commands(self, keys: Sequence[bytes], blobs: Sequence[bytes]) -> list[Command]:
        """The newest-wins script call of each row (standalone row key, blob)."""
        head = b"*5\r\n$7\r\nEVALSHA\r\n$40\r\n%s\r\n$1\r\n1\r\n" % _WRITE_SHA
        return [
            (slot, head + b"$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(ck), ck, len(blob), blob))
            for ck, slot, blob in zip(*self._targets(keys), blobs)
        ]

    def write(self, view: FeatureView, batches: pa.Table | Iterable[pa.RecordBatch]) -> int:
        # Batches are pipelined as on one Redis: batch k is sent, batch k+1 is encoded while the
        # nodes run k's scripts, and only then are k's replies read.
        layout = Layout.of(view)
        prefix = view_prefix(self.key_prefix, view.name)
        what = f"a write of view '{view.name}'"
        accepted = 0
        inflight: InFlight | None = None
        try:
            for batch in record_batches(batches):
                for start in range(0, batch.num_rows, _ROWS_PER_BATCH):
                    keys, stamps, blobs = encode_rows(
                        view, layout, prefix, batch.slice(start, _ROWS_PER_BATCH)
                    )
                    if not keys:
                        continue
                    commands = self._write_commands(keys, blobs)
                    if layout.id not in self._layouts_saved:
                        commands.append(
                            self._meta(b"HSETNX", self._layouts_key, b"%d" % layout.id, layout.encoded)
                        )
                    mark = (b"%d" % max(stamps), view.name.encode())
                    commands.append(self._meta(b"ZADD", self._newest_key, b"GT", *mark))
                    if inflight is not None:
                        done, inflight = inflight, None  # finished (or failed) whatever happens next
                        self._run(what, done.commands, inflight=done)
                        self._layouts_saved.add(layout.id)
                    inflight = self.client.send(commands)
                    accepted += len(keys)
            if inflight is not None:
                done, inflight = inflight, None
                self._run(what, done.commands, inflight=done)
                self._layouts_saved.add(layout.id)
        finally:
            if inflight is not None:  # sent, its replies unread (an error while encoding the next)
                self.client.abandon(inflight)
        return accepted

    def copy_rows(self, keys: Sequence[bytes], blobs: Sequence[bytes]) -> int:
        """Write encoded row blobs under their standalone row keys, newest wins as in `write` (for
        `featurestore.online.migrate`); returns the number of rows that replaced or filled a key."""
        written = 0
        for i in range(0, len(keys), _ROWS_PER_BATCH):
            commands = self._write_commands(keys[i : i + _ROWS_PER_BATCH], blobs[i : i + _ROWS_PER_BATCH])
            written += sum(self._run("a copy of rows", commands))
        return written

    def copy_absent(self, keys: Sequence[bytes], blobs: Sequence[bytes]) -> list[int]:
        """Write blobs under their standalone keys only where the cluster holds none, for
        `featurestore.online.migrate`'s tiles: merged state, which newest-wins would wrongly pick
        between. Returns, per key: 1 written, 2 the key held that blob already, 0 it held another."""
        done: list[int] = []
        for i in range(0, len(keys), _ROWS_PER_BATCH):
            chunk = keys[i : i + _ROWS_PER_BATCH]
            targets = zip(*self._targets(chunk), blobs[i : i + _ROWS_PER_BATCH])
            commands = [(slot, pack((b"EVALSHA", _ABSENT_SHA, b"1", ck, blob))) for ck, slot, blob in targets]
            done += self._run("a copy of tiles", commands)
        return done

    def save_layouts(self, layouts: Mapping[int, bytes]) -> None:
        """Record encoded layouts by id where absent (for `featurestore.online.migrate`)."""
        if layouts:
            self._run(
                "a write of layouts",
                [self._meta(b"HSETNX", self._layouts_key, b"%d" % i, enc) for i, enc in layouts.items()],
            )

    def adopt_identity(self, identity: str) -> str:
        """Take over another store's identity unless this one holds one already; returns the one held."""
        return cluster_identity.establish(self, identity)

    def _meta(self, *args: bytes) -> Command:
        """A single-key command on a meta key (args[1])."""
        return key_slot(args[1]), pack(args)

    # -- reads ----------------------------------------------------------------------------------

    def _targets(self, keys: Sequence[bytes]) -> tuple[list[bytes], list[int]]:
        """The cluster keys of row keys and their slots: `cluster_key` of each, computed in a few
        C-level passes over the batch when every entity is its own tag (this runs for every key of
        every lookup), else key by key."""
        ns_len = self._ns_len
        cuts = [k.find(b":", ns_len) + 1 for k in keys]
        if 0 not in cuts:
            entities = [k[c:] for k, c in zip(keys, cuts)]
            joined = b"\x00".join(entities)
            # any entity empty, holding a "}" or starting with "#" shows here (and a few others do:
            # those batches just take the slower road)
            if (
                entities
                and entities[0]
                and entities[-1]
                and b"}" not in joined
                and b"\x00\x00" not in joined
                and b"\x00#" not in joined
                and joined[:1] != b"#"
            ):
                return (
                    [b"%b{%b}" % (k[:c], e) for k, c, e in zip(keys, cuts, entities)],
                    [crc_hqx(e, 0) & 16383 for e in entities],
                )
        out: list[bytes] = []
        slots: list[int] = []
        for k in keys:
            key, slot = cluster_key(ns_len, k)
            out.append(key)
            slots.append(slot)
        return out, slots

    def read(self, keys: Sequence[bytes]) -> list[bytes | None]:
        if not keys:
            return []
        return self._blobs(self.client.get_many(*self._targets(keys)))

    def _blobs(self, replies: list[Any]) -> list[bytes | None]:
        if hiredis.ReplyError in set(map(type, replies)):  # (one C-level pass: this runs per lookup)
            raise self._reply_error("a lookup", next(r for r in replies if isinstance(r, hiredis.ReplyError)))
        return replies

    async def read_async(self, keys: Sequence[bytes]) -> list[bytes | None]:
        return await self.start_read(keys)

    def start_read(self, keys: Sequence[bytes]) -> Awaitable[list[bytes | None]]:
        return self._finish_read(self.client.start_get_many(*self._targets(keys)))

    async def _finish_read(self, replies: Awaitable[list[Any]]) -> list[bytes | None]:
        return self._blobs(await replies)

    def read_layouts(self, layout_ids: Iterable[int]) -> dict[int, bytes]:
        ids = list(layout_ids)
        if not ids:
            return {}
        (values,) = self._run(
            "a read of layouts", [self._meta(b"HMGET", self._layouts_key, *(b"%d" % i for i in ids))]
        )
        return {i: v for i, v in zip(ids, values) if v is not None}

    # -- read-modify-write ----------------------------------------------------------------------

    def update(
        self, keys: Sequence[bytes], fn: Callable[[list[bytes], list[bytes | None]], list[bytes | None]]
    ) -> int:
        written = 0
        for i in range(0, len(keys), _KEYS_PER_UPDATE):
            written += self._update_batch(list(keys[i : i + _KEYS_PER_UPDATE]), fn)
        return written

    def _update_batch(
        self, keys: list[bytes], fn: Callable[[list[bytes], list[bytes | None]], list[bytes | None]]
    ) -> int:
        written = 0
        head = b"*8\r\n$7\r\nEVALSHA\r\n$40\r\n%s\r\n$1\r\n1\r\n" % _CAS_SHA
        for attempt in range(_UPDATE_ATTEMPTS):
            targets = list(zip(*self._targets(keys)))
            old: list[bytes | None] = self._run("an update's read", [(s, get_command(k)) for k, s in targets])
            new = fn(keys, old)
            if len(new) != len(keys):
                raise ValueError(f"update: {len(keys)} keys but {len(new)} new values")
            todo = [i for i, (o, n) in enumerate(zip(old, new)) if o is not None or n is not None]
            if not todo:
                return written
            commands: list[Command] = []
            for i in todo:
                (ck, slot), o, n = targets[i], old[i], new[i]
                args = (ck, b"0" if o is None else b"1", o or b"", b"0" if n is None else b"1", n or b"")
                commands.append((slot, head + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)))
            done = self._run("an update", commands, idempotent=False)
            written += sum(1 for r in done if r == 1)
            keys = [keys[i] for i, r in zip(todo, done) if r != 1]  # changed meanwhile: redo them alone
            if not keys:
                return written
            time.sleep(random.uniform(0, 0.001 * min(attempt + 1, 20)))
        raise FeatureStoreError(
            f"online store update of {len(keys)} keys (first: {keys[0]!r}) gave up after {_UPDATE_ATTEMPTS} "
            "attempts: other writers changed them every time; try again"
        )

    # -- newest event times ---------------------------------------------------------------------

    def mark_newest(self, newest: Mapping[str, datetime]) -> None:
        if not newest:
            return
        pairs = [part for view, ts in newest.items() for part in (b"%d" % micros(ts), view.encode())]
        self._run("a newest-event mark", [self._meta(b"ZADD", self._newest_key, b"GT", *pairs)])

    def _newest(self, reply: Any) -> dict[str, datetime]:
        if isinstance(reply, hiredis.ReplyError):
            raise self._reply_error("a read of newest events", reply)
        return {m.decode(): from_micros(int(s)) for m, s in zip(reply[::2], reply[1::2])}

    def newest_events(self) -> dict[str, datetime]:
        (reply,) = self.client.execute([self._newest_command()])
        return self._newest(reply)

    async def newest_events_async(self) -> dict[str, datetime]:
        (reply,) = await self.client.execute_async([self._newest_command()])
        return self._newest(reply)

    def _newest_command(self) -> Command:
        return self._meta(b"ZRANGE", self._newest_key, b"0", b"-1", b"WITHSCORES")

    # -- admin ----------------------------------------------------------------------------------

    def _scan(self, view_name: str) -> Iterable[list[bytes]]:
        """The view's keys, a page at a time, from every master (a slot moving meanwhile may make a
        key appear twice or not at all: an inspection, like SCAN itself)."""
        pattern = glob_escape(view_prefix(self.key_prefix, view_name)) + b"*"
        for node in self.client.masters():
            cursor = b"0"
            while True:
                (reply,) = self.client.on_node(
                    node, [pack((b"SCAN", cursor, b"MATCH", pattern, b"COUNT", _SCAN_COUNT))]
                )
                if isinstance(reply, hiredis.ReplyError):
                    raise self._reply_error("a SCAN", reply)
                cursor, found = reply
                if found:
                    yield found
                if cursor == b"0":
                    break

    def delete_view(self, view_name: str) -> None:
        self._run("a delete", [self._meta(b"ZREM", self._newest_key, view_name.encode())])
        for page in self._scan(view_name):
            self._run("a delete", [(key_slot(k), pack((b"UNLINK", k))) for k in page])

    def count_rows(self, view_name: str) -> int:
        return sum(len(page) for page in self._scan(view_name))

    def identity(self, create: bool = False) -> str | None:
        # held by every hash slot, so the loss of any master's data is noticed (cluster_identity.py)
        if create:
            return cluster_identity.establish(self, uuid.uuid4().hex)
        return cluster_identity.read_identity(self)

    def read_keys(self, keys: Sequence[bytes], slots: Sequence[int]) -> list[bytes | None]:
        """GET of keys whose slots are known (for cluster_identity), in one round trip per master."""
        return self._blobs(self.client.get_many(keys, slots))

    def run_commands(self, commands: Sequence[Command]) -> list[Any]:
        """Run single-slot commands (for cluster_identity); an error reply raises."""
        return self._run("a command", commands)

    def compare_and_set(self, key: bytes, old: bytes, new: bytes) -> bool:
        """Set `key` to `new` if it still holds `old`, atomically."""
        head = b"*8\r\n$7\r\nEVALSHA\r\n$40\r\n%s\r\n$1\r\n1\r\n" % _CAS_SHA
        args = (key, b"1", old, b"1", new)
        command = head + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
        return bool(self._run("a compare-and-set", [(key_slot(key), command)], idempotent=False)[0] == 1)

    def close(self) -> None:
        self.client.close()

    async def aclose(self) -> None:
        await self.client.aclose()
