"""A small Redis Cluster client for the online store: batches of single-slot commands, one
pipeline per node, all nodes in flight at once, redirects followed.

    client = ClusterClient("redis://node-1:6379,node-2:6379", timeout=1.0)   # seeds, tried in order
    replies = client.execute([(slot, packed_command), ...])       # in the order given
    values = client.get_many(keys, slots)                         # GETs: a lookup
    values = await client.start_get_many(keys, slots)             # sent before it returns

Why not redis-py's `RedisCluster`: its pipeline costs several microseconds of Python per command
(a lookup of 100 entities is 100 commands on a cluster, since MGET cannot span slots), and it
connects when built (a store must open while its server is down). So this client speaks RESP on
its own sockets (cluster_connection.py), parses replies with hiredis, and keeps a slot map from
CLUSTER SLOTS.

How a batch runs: commands are grouped by the master that serves their slot; each node's commands
are joined into one payload; every payload is written before any reply is read, so the nodes work
in parallel and a batch costs one round trip per node (the slowest one), with no threads. This
first round is lean (an index map from slot to node, one join, replies filed in place); only the
commands answered by a redirect or an error go on to the general loop:
- `MOVED <slot> <host:port>`: the slot moved for good (a reshard, a failover): the map entry is
  fixed at once, the whole map refreshed (and the entry fixed again over it: the node that answered
  may not know of the move yet), and the command sent again to the new owner.
- `ASK <slot> <host:port>`: the slot is moving and this key is already there: the command is sent
  to that node once, preceded by ASKING; the map is unchanged.
- `TRYAGAIN`, `CLUSTERDOWN`: a short pause, then again; after three rounds of CLUSTERDOWN,
  OnlineStoreUnavailable: the cluster is down.
Other error replies are returned in place, as `hiredis.ReplyError` values, for the caller to judge
(e.g. NOSCRIPT). A node that refuses or drops the connection: the map is refreshed from any node
that answers (those that failed last are asked last) and an idempotent batch is sent again once;
then OnlineStoreUnavailable naming the node. A node that does not answer within `timeout` fails the
batch at once (sending again would wait as long again), and all rounds of a batch share one
deadline, twice `timeout` (`RedisClusterOnlineStore.async_read_bound`).

The url may name several seed nodes, comma-separated (`seed_nodes`), tried in order.

Reads are a GET per key. A read-only script per node (Redis 7 `allow-cross-slot-keys`) GETting all
its keys in one command was tried: slower here, a Lua call per key costs more server time than a
pipelined GET.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple

import hiredis
import redis

from ..compat import timeout as async_timeout
from ..config import redacted_text, redacted_url
from ..errors import ConfigError, OnlineStoreUnavailable
from .cluster_connection import Address, AsyncConnection, SyncConnection, expire, get_command, pack
from .cluster_keys import SLOTS
from .loop_sockets import connect, sweep_closed

Command = tuple[int, bytes]  # (hash slot, one command packed as RESP)

_ASKING = b"*1\r\n$6\r\nASKING\r\n"
_CLUSTER_SLOTS = b"*2\r\n$7\r\nCLUSTER\r\n$5\r\nSLOTS\r\n"
_GET = b"*2\r\n$3\r\nGET\r\n"
_BULK_HEADS = [b"$%d\r\n" % n for n in range(1024)]  # "$<length>\r\n" of short bulk strings, made once
_MAX_ROUNDS = 16  # rounds of redirects one batch may take before it gives up
_DOWN_ROUNDS = 3  # rounds answered CLUSTERDOWN before a batch gives up: the cluster is down
_MAX_IDLE = 16  # idle connections kept per node (per event loop for asyncio)


class _Sent(NamedTuple):
    """A node's payload written on `conn`, `replies` replies to read."""

    address: Address
    conn: SyncConnection
    replies: int


class _Group(NamedTuple):
    """The commands of one batch sent to one node: their indexes, and which are preceded by ASKING."""

    indexes: list[int]
    asking: list[bool]
    payload: bytes
    replies: int  # replies to read: one per command, plus one per ASKING


class _Rounds:
    """What the rounds of one batch met: the MOVED targets (slot -> node, applied again over a map
    refreshed from a node that may not know them yet), the last CLUSTERDOWN or TRYAGAIN reply, and
    how many rounds were answered CLUSTERDOWN."""

    __slots__ = ("moved", "error", "down")

    def __init__(self) -> None:
        self.moved: dict[int, Address] = {}
        self.error: str | None = None
        self.down = 0


class InFlight(NamedTuple):
    """A batch begun by `ClusterClient.send` (sent None: writing it failed; `finish` sends again)."""

    commands: Sequence[Command]
    groups: dict[Address, _Group]
    sent: list[_Sent] | None


def _address(text: bytes | str, replied: Address) -> Address:
    """ "host:port" of a redirect or a slot map; an empty host means the node that answered."""
    host, _, port = (text.decode() if isinstance(text, bytes) else text).rpartition(":")
    return (host or replied[0], int(port))


def seed_nodes(url: str) -> tuple[list[Address], dict[str, Any]]:
    """The nodes a cluster URL names, in order, and its other parts (login, db) as redis-py parses
    them: `redis://[user:password@]host:port[,host:port...][/0]`, so that a process can start
    while the first node is down (each node may also be written as redis://host:port)."""
    rest = url[len("redis://") :].replace(",redis://", ",")
    netloc, slash, path = rest.partition("/")
    while "," in path:  # "redis://h1:1/0,redis://h2:2/0": the path ends at the first comma
        path, _, more = path.partition(",")
        netloc += "," + more.partition("/")[0]
    login, at, hosts = netloc.rpartition("@")
    seeds: list[Address] = []
    kw: dict[str, Any] = {}
    for part in hosts.split(","):
        part = part.strip()
        if not part:
            raise ConfigError(
                f"[online] url {redacted_url(url)!r}: an empty node in the list of cluster nodes"
            )
        try:
            kw = redis.connection.parse_url(f"redis://{login}{at}{part}{slash}{path}")
        except ValueError as e:
            raise ConfigError(f"[online] url {redacted_url(url)!r}: node {part!r}: {e}") from None
        seeds.append((kw.get("host") or "localhost", int(kw.get("port") or 6379)))
    return seeds, kw


def _sockets(pool: dict[Address, list[AsyncConnection]]) -> list[socket.socket | None]:
    return [conn.sock for conns in pool.values() for conn in conns]


class ClusterClient:
    """Batches of single-slot commands to a Redis Cluster; see the module docstring. Thread-safe."""

    def __init__(self, url: str, timeout: float) -> None:
        if not url.startswith("redis://"):
            raise ConfigError(
                f"[online] url {redacted_url(url)!r}: a Redis Cluster is reached by a redis://host:port URL of any "
                "node (TLS rediss:// and unix sockets are not supported with cluster = true)"
            )
        self.seeds, kw = seed_nodes(url)
        if int(kw.get("db") or 0) != 0:
            raise ConfigError(f"[online] url {redacted_url(url)!r}: a Redis Cluster has only database 0")
        self.url, self.timeout = url, timeout
        login: list[bytes] = []
        if kw.get("password") is not None:
            user = [kw["username"].encode()] if kw.get("username") else []
            login = [b"AUTH", *user, kw["password"].encode()]
        self._hello, self._hello_replies = (pack(login), 1) if login else (b"", 0)
        self._slots: list[Address] | None = None  # slot -> the master serving it
        self._masters: list[Address] = []
        # the read path's map: slot -> index of its master in the list that comes with it
        self._read_map: tuple[list[int], list[Address]] = ([], [])
        self._refresh_lock = threading.Lock()
        self._failed: set[Address] = set()  # nodes that failed since they last answered: tried last
        self._idle: dict[Address, list[SyncConnection]] = {}
        self._pid = os.getpid()
        # idle asyncio connections per event loop; those of closed loops are swept (loop_sockets.py)
        self._async_idle: dict[asyncio.AbstractEventLoop, dict[Address, list[AsyncConnection]]] = {}

    def unavailable(self, e: BaseException, where: Address | None = None) -> OnlineStoreUnavailable:
        node = f" (node {where[0]}:{where[1]})" if where else ""
        return OnlineStoreUnavailable(
            redacted_text(
                f"the Redis Cluster online store at {redacted_url(self.url)}{node} is unavailable "
                f"({type(e).__name__}: {e}); check that its nodes are running and reachable "
                "([online] url / FS_ONLINE_URL)",
                self.url,
            )
        )

    # -- the slot map ---------------------------------------------------------------------------

    def masters(self) -> list[Address]:
        """Every master that serves slots (from a fresh slot map: SCAN-style work must miss none)."""
        self.refresh()
        return list(self._masters)

    def _install(self, reply: Any, replied: Address) -> None:
        if isinstance(reply, hiredis.ReplyError):
            raise ConnectionError(f"CLUSTER SLOTS: {reply}")
        slots: list[Address | None] = [None] * SLOTS
        masters: dict[Address, None] = {}
        for start, end, master, *_ in reply:
            address = _address(b"%s:%d" % (master[0], master[1]), replied)
            masters[address] = None
            slots[start : end + 1] = [address] * (end - start + 1)
        missing = slots.count(None)
        if missing:
            raise ConnectionError(f"the cluster serves no node for {missing} of its {SLOTS} slots")
        nodes = list(masters)
        number = {a: i for i, a in enumerate(nodes)}
        # one assignment, so a reader in another thread sees the old map or the new one, whole
        self._read_map = ([number[a] for a in slots], nodes)  # type: ignore[index]
        self._slots, self._masters = slots, nodes  # type: ignore[assignment]

    def _candidates(self) -> list[Address]:
        """The masters, then the seeds; the nodes that failed last (a hung one costs a timeout)."""
        nodes = list(dict.fromkeys([*self._masters, *self.seeds]))
        failed = self._failed
        return [a for a in nodes if a not in failed] + [a for a in nodes if a in failed]

    def _left(self, deadline: float | None) -> float:
        """The seconds an I/O step may take: `timeout`, or less when the batch's deadline is near."""
        if deadline is None:
            return self.timeout
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no reply within the batch's time ({2 * self.timeout:g}s)")
        return min(self.timeout, left)

    def refresh(self, deadline: float | None = None) -> None:
        """Read the slot map (CLUSTER SLOTS) from the first node that answers (within `deadline`, a
        time.monotonic(), if given: a batch waits for no other thread's refresh beyond it)."""
        if not self._refresh_lock.acquire(timeout=-1 if deadline is None else self._left(deadline)):
            return  # another thread is refreshing the map: the caller goes on with what it has
        try:
            error: BaseException | None = None
            for address in self._candidates():
                if deadline is not None and deadline <= time.monotonic():
                    break
                try:
                    seconds = self._left(deadline)
                    conn = SyncConnection(address, seconds, self._hello, self._hello_replies)
                    try:
                        conn.sock.sendall(_CLUSTER_SLOTS)
                        reply = conn.read(1)[0]
                    finally:
                        conn.close()
                    self._install(reply, address)
                    self._failed.discard(address)
                    return
                except (OSError, hiredis.ProtocolError) as e:
                    error = e
                    self._failed.add(address)
            raise self.unavailable(error or TimeoutError("no node answered in the batch's time"))
        finally:
            self._refresh_lock.release()

    async def refresh_async(self, deadline: float | None = None) -> None:
        error: BaseException | None = None
        for address in self._candidates():
            if deadline is not None and deadline <= time.monotonic():
                break
            try:
                seconds = self._left(deadline)
                conn = await self._connect_async(address, seconds)
                try:
                    reply = (await self._await(conn.send(_CLUSTER_SLOTS, 1), seconds))[0]
                finally:
                    conn.close()
                self._install(reply, address)
                self._failed.discard(address)
                return
            except (OSError, asyncio.TimeoutError, hiredis.ProtocolError) as e:
                error = e
                self._failed.add(address)
        raise self.unavailable(error or TimeoutError("no node answered in the batch's time"))

    def _after_refresh(self, rounds: _Rounds) -> None:
        """Point the slots a MOVED named at their new owner again: the map just read may come from
        a node that has not learned of the move yet."""
        slots = self._slots
        if not rounds.moved or slots is None:
            return
        table, nodes = list(self._read_map[0]), list(self._read_map[1])
        for slot, address in rounds.moved.items():
            if address not in nodes:
                nodes.append(address)
            table[slot] = nodes.index(address)
            slots[slot] = address
        self._read_map = (table, nodes)

    def _gave_up(self, rounds: _Rounds) -> OnlineStoreUnavailable:
        if rounds.down >= _DOWN_ROUNDS:
            return self.unavailable(RuntimeError(f"the cluster is down ({rounds.error})"))
        last = f" (last reply: {rounds.error})" if rounds.error else ""
        return self.unavailable(
            RuntimeError(f"slots still moving after {_MAX_ROUNDS} rounds of redirects{last}")
        )

    # -- batches --------------------------------------------------------------------------------

    def _groups(
        self, commands: Sequence[Command], pending: Sequence[int], asked: dict[int, Address]
    ) -> dict[Address, _Group]:
        slots = self._slots
        assert slots is not None
        parts: dict[Address, tuple[list[int], list[bool], list[bytes]]] = {}
        for i in pending:
            slot, payload = commands[i]
            ask = asked.get(i)
            address = ask or slots[slot]
            group = parts.get(address)
            if group is None:
                group = parts[address] = ([], [], [])
            group[0].append(i)
            group[1].append(ask is not None)
            group[2].append(_ASKING + payload if ask is not None else payload)
        return {
            a: _Group(idx, asking, b"".join(ps), len(idx) + sum(asking))
            for a, (idx, asking, ps) in parts.items()
        }

    def _settle(
        self,
        commands: Sequence[Command],
        results: dict[Address, list[Any]],
        groups: dict[Address, _Group],
        replies: list[Any],
        asked: dict[int, Address],
        rounds: _Rounds,
    ) -> tuple[list[int], bool]:
        """File a round's replies; returns the commands to send again and whether the map moved."""
        again: list[int] = []
        moved = down = False
        asked.clear()
        slots = self._slots
        assert slots is not None
        for address, got in results.items():
            group = groups[address]
            it = iter(got)
            for i, ask in zip(group.indexes, group.asking):
                if ask:
                    next(it)  # ASKING's +OK
                reply = next(it)
                if isinstance(reply, hiredis.ReplyError):
                    text = str(reply)
                    if text.startswith("MOVED "):
                        _, slot, where = text.split(" ")
                        slots[int(slot)] = rounds.moved[int(slot)] = _address(where, address)
                        moved = True
                        again.append(i)
                        continue
                    if text.startswith("ASK "):
                        asked[i] = _address(text.split(" ")[2], address)
                        again.append(i)
                        continue
                    if text.startswith(("TRYAGAIN", "CLUSTERDOWN")):
                        rounds.error = text
                        down = down or text.startswith("CLUSTERDOWN")
                        again.append(i)
                        continue
                replies[i] = reply
        rounds.down += down
        return again, moved

    def execute(self, commands: Sequence[Command], idempotent: bool = True) -> list[Any]:
        """Run single-slot commands, one pipeline per node, all nodes at once; replies in order.
        `idempotent`: the batch may be sent again after a lost connection (not so for a
        compare-and-set, whose first run may have landed)."""
        if not commands:
            return []
        if self._slots is None:
            self.refresh()
        started = time.monotonic()
        groups = self._command_groups(commands)
        replies: list[Any] = [None] * len(commands)
        return self._first_round(
            groups, replies, lambda redo: [commands[i] for i in redo], idempotent, started
        )

    def _first_round(
        self,
        groups: dict[Address, _Group],
        replies: list[Any],
        again: Callable[[list[int]], list[Command]],
        idempotent: bool,
        started: float,
        sent: list[_Sent] | None = None,
    ) -> list[Any]:
        """The first round trip of a batch (already `sent`, or sent now), with as little Python per
        command as can be; the commands answered by a redirect or an error (`again(their
        indexes)`) go the long road, within the batch's deadline: twice `timeout` from `started`
        (a time.monotonic()), or one `timeout` from the end of this round if later (a long write).
        A node that does not answer within `timeout` fails the batch at once: sending again would
        only wait for it again."""
        lost = False
        deadline: float | None = None
        try:
            results = self._receive(sent if sent is not None else self._send(groups))
        except (OSError, hiredis.ProtocolError) as e:
            if not idempotent or isinstance(e, TimeoutError):
                raise self.unavailable(e, getattr(e, "address", None)) from e
            lost, results = True, {}
            deadline = self._deadline(started)
            try:  # a node went away (failover, restart): a fresh map, and once more
                self.refresh(deadline)
            except TimeoutError as t:
                raise self.unavailable(t, getattr(e, "address", None)) from e
        redo = self._file(groups, results, replies)
        if redo:
            deadline = deadline or self._deadline(started)
            for i, reply in zip(redo, self._long_road(again(redo), idempotent, lost, deadline)):
                replies[i] = reply
        return replies

    def _deadline(self, started: float) -> float:
        return max(started + 2 * self.timeout, time.monotonic() + self.timeout)

    def _command_groups(self, commands: Sequence[Command]) -> dict[Address, _Group]:
        table, nodes = self._read_map
        by_node: list[list[int]] = [[] for _ in nodes]
        adds = [idx.append for idx in by_node]
        for i, (slot, _) in enumerate(commands):
            adds[table[slot]](i)
        return {
            address: _Group(idx, [], b"".join([commands[i][1] for i in idx]), len(idx))
            for address, idx in zip(nodes, by_node)
            if idx
        }

    def _long_road(
        self, commands: Sequence[Command], idempotent: bool, lost_once: bool, deadline: float
    ) -> list[Any]:
        """Rounds of `commands` until none is redirected: MOVED, ASK, TRYAGAIN followed; a node
        refusing or dropping the connection is met once (a fresh map, then again), one that does
        not answer fails the batch; CLUSTERDOWN a few rounds at most. All before `deadline`."""
        replies: list[Any] = [None] * len(commands)
        pending: Sequence[int] = range(len(commands))
        asked: dict[int, Address] = {}
        rounds = _Rounds()
        where: Address | None = None
        try:
            for round_ in range(_MAX_ROUNDS):
                groups = self._groups(commands, pending, asked)
                try:
                    results = self._round_trip(groups, self._left(deadline))
                except (OSError, hiredis.ProtocolError) as e:
                    where = getattr(e, "address", None)
                    if lost_once or not idempotent or isinstance(e, TimeoutError):
                        raise self.unavailable(e, where) from e
                    lost_once = True  # a node went away (failover, restart): a fresh map, once more
                    self.refresh(deadline)
                    self._after_refresh(rounds)
                    continue
                pending, moved = self._settle(commands, results, groups, replies, asked, rounds)
                if not pending:
                    return replies
                if rounds.down >= _DOWN_ROUNDS:
                    break
                if moved:
                    self.refresh(deadline)
                    self._after_refresh(rounds)
                elif not asked:
                    time.sleep(min(0.005 * (round_ + 1), max(0.0, deadline - time.monotonic())))
        except TimeoutError as e:  # the batch's deadline passed (in _left or a refresh)
            raise self.unavailable(e, where) from e
        raise self._gave_up(rounds)

    def _read_groups(self, keys: Sequence[bytes], slots: Sequence[int]) -> dict[Address, _Group]:
        table, nodes = self._read_map
        by_node: list[list[int]] = [[] for _ in nodes]
        adds = [idx.append for idx in by_node]
        for i, slot in enumerate(slots):
            adds[table[slot]](i)
        groups = {}
        for address, idx in zip(nodes, by_node):
            if not idx:
                continue
            ks = [keys[i] for i in idx]
            parts = [b"\r\n"] * (4 * len(ks))  # GET $<len>\r\n<key>\r\n per key, joined once
            parts[0::4] = [_GET] * len(ks)
            parts[1::4] = [_BULK_HEADS[len(k)] if len(k) < 1024 else b"$%d\r\n" % len(k) for k in ks]
            parts[2::4] = ks
            groups[address] = _Group(idx, [], b"".join(parts), len(ks))
        return groups

    @staticmethod
    def _file(groups: dict[Address, _Group], results: dict[Address, list[Any]], out: list[Any]) -> list[int]:
        """Put each node's values in place; returns the keys to read again by the long road (their
        replies were redirects or errors, or their node's round trip failed)."""
        redo: list[int] = []
        for address, group in groups.items():
            got = results.get(address)
            if got is None:
                redo += group.indexes
                continue
            for i, value in zip(group.indexes, got):
                out[i] = value
            if hiredis.ReplyError in set(map(type, got)):
                redo += [i for i, value in zip(group.indexes, got) if isinstance(value, hiredis.ReplyError)]
        return redo

    def get_many(self, keys: Sequence[bytes], slots: Sequence[int]) -> list[Any]:
        """The values of `keys` (their slots given), in order, in one round trip per node (see the
        module docstring); error replies are returned in place."""
        if not keys:
            return []
        started = time.monotonic()
        if self._slots is None:
            self.refresh()
        out: list[Any] = [None] * len(keys)
        return self._first_round(
            self._read_groups(keys, slots),
            out,
            lambda redo: [(slots[i], get_command(keys[i])) for i in redo],
            True,
            started,
        )

    def start_get_many(self, keys: Sequence[bytes], slots: Sequence[int]) -> Awaitable[list[Any]]:
        """`get_many` for asyncio code, begun now (sent before this returns on the nodes with an
        idle connection). Call from a coroutine."""
        sent: dict[Address, tuple[AsyncConnection, asyncio.Future[list[Any]]]] = {}
        groups: dict[Address, _Group] | None = None
        if keys and self._slots is not None:
            groups = self._read_groups(keys, slots)
            self._send_idle(groups, sent)
        return self._get_many_async(keys, slots, groups, sent, time.monotonic() + 2 * self.timeout)

    async def _get_many_async(
        self,
        keys: Sequence[bytes],
        slots: Sequence[int],
        groups: dict[Address, _Group] | None,
        sent: dict[Address, tuple[AsyncConnection, asyncio.Future[list[Any]]]],
        deadline: float,
    ) -> list[Any]:
        """The first round as in `_first_round` (a node silent for `timeout` fails the lookup at
        once), the rest by `_execute_async`, all before `deadline`: `async_read_bound` holds."""
        if not keys:
            return []
        if self._slots is None:
            await self.refresh_async(deadline)
        if groups is None:
            groups = self._read_groups(keys, slots)
        out: list[Any] = [None] * len(keys)
        try:
            results = await self._round_trip_async(groups, sent, deadline)
        except (OSError, asyncio.TimeoutError, hiredis.ProtocolError) as e:
            if isinstance(e, TimeoutError):
                raise self.unavailable(e, getattr(e, "address", None)) from e
            results = {}
        redo = self._file(groups, results, out)
        if redo:
            redo_commands = [(slots[i], get_command(keys[i])) for i in redo]
            again = await self._execute_async(redo_commands, None, {}, deadline)
            for i, value in zip(redo, again):
                out[i] = value
        return out

    def _take(self, address: Address) -> SyncConnection:
        if self._pid != os.getpid():  # a forked child: the parent's sockets are not its own
            self._idle, self._pid = {}, os.getpid()
        idle = self._idle.get(address)
        if idle:
            try:
                return idle.pop()
            except IndexError:  # another thread took the last one
                pass
        return SyncConnection(address, self.timeout, self._hello, self._hello_replies)

    def _give_back(self, address: Address, conn: SyncConnection) -> None:
        idle = self._idle.setdefault(address, [])
        if len(idle) < _MAX_IDLE:
            idle.append(conn)
        else:
            conn.close()

    def _round_trip(
        self, groups: dict[Address, _Group], seconds: float | None = None
    ) -> dict[Address, list[Any]]:
        """Write every node's payload, then read every node's replies (each read, and each write,
        within `seconds` if given, else `timeout`)."""
        return self._receive(self._send(groups, seconds), seconds is not None)

    def _send(self, groups: dict[Address, _Group], seconds: float | None = None) -> list[_Sent]:
        """Write every node's payload (replies unread), under the socket timeout `seconds` if given
        (`_receive(..., reset=True)` puts `timeout` back). On a failure the connections taken are
        closed and the error raised (an OSError carries the node's address as `.address`)."""
        sent: list[_Sent] = []
        address: Address | None = None
        try:
            for address, group in groups.items():
                conn = self._take(address)
                sent.append(_Sent(address, conn, group.replies))
                if seconds is not None:
                    conn.sock.settimeout(seconds)
                conn.sock.sendall(group.payload)
        except BaseException as e:
            self._fail(sent, e, address)
            raise
        return sent

    def _receive(self, sent: list[_Sent], reset: bool = False) -> dict[Address, list[Any]]:
        """Read every node's replies; the connections go back to the idle lists (their socket
        timeout set back to `timeout` if `reset`). A connection that failed is closed (replies may
        be left unread), with those not read yet."""
        results: dict[Address, list[Any]] = {}
        pending = list(sent)
        address: Address | None = None
        try:
            while pending:
                address, conn, n = pending[0]
                results[address] = conn.read(n)
                pending.pop(0)
                if reset:
                    conn.sock.settimeout(self.timeout)
                self._give_back(address, conn)
        except BaseException as e:
            self._fail(pending, e, address)
            raise
        return results

    def _fail(self, sent: list[_Sent], e: BaseException, address: Address | None) -> None:
        for item in sent:
            item.conn.close()
        if isinstance(e, OSError) and address is not None:
            e.address = address  # type: ignore[attr-defined]
            self._failed.add(address)
            for stale in self._idle.pop(address, []):  # its idle sockets are likely stale too
                stale.close()

    # -- a batch in flight while the caller works (writes: the next batch is encoded meanwhile) --

    def send(self, commands: Sequence[Command]) -> InFlight:
        """Begin `execute(commands)`: the payloads are written, the replies are read by `finish`
        (or dropped, with their connections, by `abandon`)."""
        if self._slots is None:
            self.refresh()
        groups = self._command_groups(commands)
        try:
            sent: list[_Sent] | None = self._send(groups)
        except (OSError, hiredis.ProtocolError):
            sent = None  # finish() sends again, on a fresh map
        return InFlight(commands, groups, sent)

    def finish(self, inflight: InFlight, idempotent: bool = True) -> list[Any]:
        """The replies of a batch begun by `send`, in order; as `execute` from there on."""
        commands = inflight.commands
        replies: list[Any] = [None] * len(commands)
        if inflight.sent is None:
            if not idempotent:
                raise self.unavailable(ConnectionError("a node could not be written to"))
            return self.execute(commands)
        return self._first_round(
            inflight.groups,
            replies,
            lambda redo: [commands[i] for i in redo],
            idempotent,
            time.monotonic(),
            inflight.sent,
        )

    def abandon(self, inflight: InFlight) -> None:
        """Drop a batch begun by `send` without reading its replies (its connections are closed)."""
        for item in inflight.sent or []:
            item.conn.close()

    # -- batches from asyncio code --------------------------------------------------------------

    def _async_pool(self) -> dict[Address, list[AsyncConnection]]:
        loop = asyncio.get_running_loop()
        pool = self._async_idle.get(loop)
        if pool is None:  # a new event loop: the idle connections of loops closed meanwhile go
            sweep_closed(self._async_idle, _sockets)
            pool = self._async_idle[loop] = {}
        return pool

    async def _connect_async(self, address: Address, seconds: float | None = None) -> AsyncConnection:
        async with async_timeout(self.timeout if seconds is None else seconds):
            sock, conn = await connect(AsyncConnection, address[0], address[1])
            conn.sock = sock
            if self._hello_replies:
                try:
                    got = await conn.send(self._hello, self._hello_replies)
                except BaseException:
                    conn.close()
                    raise
                if any(isinstance(r, hiredis.ReplyError) for r in got):
                    conn.close()
                    raise ConnectionError(f"the node refused the login: {got[0]}")
        return conn

    async def _await(self, reply: asyncio.Future[list[Any]], seconds: float | None = None) -> list[Any]:
        seconds = self.timeout if seconds is None else seconds
        timer = asyncio.get_running_loop().call_later(seconds, expire, reply, seconds)
        try:
            return await reply
        finally:
            timer.cancel()

    def _send_idle(
        self,
        groups: dict[Address, _Group],
        sent: dict[Address, tuple[AsyncConnection, asyncio.Future[list[Any]]]],
    ) -> None:
        """Send each group now on an idle connection of its node, where there is one."""
        pool = self._async_pool()
        for address, group in groups.items():
            idle = pool.get(address)
            while idle:
                conn = idle.pop()
                try:
                    sent[address] = (conn, conn.send(group.payload, group.replies))
                    break
                except OSError:
                    conn.close()

    async def execute_async(self, commands: Sequence[Command]) -> list[Any]:
        return await self._execute_async(commands, None, {}, time.monotonic() + 2 * self.timeout)

    async def _execute_async(
        self,
        commands: Sequence[Command],
        groups: dict[Address, _Group] | None,
        sent: dict[Address, tuple[AsyncConnection, asyncio.Future[list[Any]]]],
        deadline: float,
    ) -> list[Any]:
        """`_long_road` for asyncio code (the same rules, the same deadline)."""
        if not commands:
            return []
        if self._slots is None:
            await self.refresh_async(deadline)
        replies: list[Any] = [None] * len(commands)
        pending: Sequence[int] = range(len(commands))
        asked: dict[int, Address] = {}
        rounds = _Rounds()
        lost_once = False
        for round_ in range(_MAX_ROUNDS):
            if groups is None:
                groups = self._groups(commands, pending, asked)
            try:
                results = await self._round_trip_async(groups, sent, deadline)
            except (OSError, asyncio.TimeoutError, hiredis.ProtocolError) as e:
                if lost_once or isinstance(e, TimeoutError):
                    raise self.unavailable(e, getattr(e, "address", None)) from e
                lost_once = True
                groups, sent = None, {}
                await self.refresh_async(deadline)
                self._after_refresh(rounds)
                continue
            pending, moved = self._settle(commands, results, groups, replies, asked, rounds)
            groups, sent = None, {}
            if not pending:
                return replies
            if rounds.down >= _DOWN_ROUNDS:
                break
            if moved:
                await self.refresh_async(deadline)
                self._after_refresh(rounds)
            elif not asked:
                await asyncio.sleep(min(0.005 * (round_ + 1), max(0.0, deadline - time.monotonic())))
        raise self._gave_up(rounds)

    async def _round_trip_async(
        self,
        groups: dict[Address, _Group],
        sent: dict[Address, tuple[AsyncConnection, asyncio.Future[list[Any]]]],
        deadline: float,
    ) -> dict[Address, list[Any]]:
        pool = self._async_pool()
        inflight = dict(sent)
        results: dict[Address, list[Any]] = {}
        address: Address | None = None
        try:
            for address, group in groups.items():
                if address not in inflight:
                    conn = await self._connect_async(address, self._left(deadline))
                    inflight[address] = (conn, conn.send(group.payload, group.replies))
            for address, (conn, reply) in list(inflight.items()):
                results[address] = await self._await(reply, self._left(deadline))
                del inflight[address]
                idle = pool.setdefault(address, [])
                if len(idle) < _MAX_IDLE:
                    idle.append(conn)
                else:
                    conn.close()
        except BaseException as e:
            for conn, _ in inflight.values():
                conn.close()
            if isinstance(e, OSError) and address is not None:
                e.address = address  # type: ignore[attr-defined]
                self._failed.add(address)
                for conn in pool.pop(address, []):
                    conn.close()
            raise
        return results

    # -- per node -------------------------------------------------------------------------------

    def on_node(self, address: Address, commands: Sequence[bytes]) -> list[Any]:
        """Run commands on one given node (SCAN a master, load a script), in one round trip."""
        group = _Group(list(range(len(commands))), [False] * len(commands), b"".join(commands), len(commands))
        try:
            return self._round_trip({address: group})[address]
        except (OSError, hiredis.ProtocolError) as e:
            raise self.unavailable(e, address) from e

    def close(self) -> None:
        idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()
        sweep_closed(self._async_idle, _sockets)
        self._async_idle.clear()  # the transports of running loops belong to them; see aclose()

    async def aclose(self) -> None:
        for conns in self._async_idle.pop(asyncio.get_running_loop(), {}).values():
            for conn in conns:
                conn.close()
        self.close()
