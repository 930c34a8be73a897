"""RedisOnlineStore.read's own blocking connections: one MGET per read on a reused connection, URLs
(AUTH, SELECT, unix sockets), threads, forked children, the >10,000-key split, a restarted server."""

from __future__ import annotations

import multiprocessing
import random
import tempfile
import threading
from pathlib import Path

import pytest
import redis

from featurestore import OnlineStoreUnavailable
from featurestore.online.redis import _MAX_IDLE_SYNC, RedisOnlineStore

pytestmark = pytest.mark.redis


def values(client: redis.Redis, prefix: bytes, n: int) -> dict[bytes, bytes]:
    data = {prefix + b"k%d" % i: b"v%d-" % i + bytes(50) for i in range(n)}
    client.mset(data)
    return data


def mget_calls(client: redis.Redis) -> int:
    return client.info("commandstats").get("cmdstat_mget", {}).get("calls", 0)


def test_each_read_is_one_mget_on_a_reused_connection(own_redis):
    server = own_redis()
    admin = redis.Redis(port=server.port)
    data = values(admin, b"p:", 300)
    keys = list(data)
    store = RedisOnlineStore(f"redis://127.0.0.1:{server.port}/0", b"p:", timeout=1.0)
    before, clients = mget_calls(admin), admin.info("clients")["connected_clients"]
    for i in range(50):
        mine = keys[i : i + 1 + i % 120] + [b"p:missing"]
        assert store.read(mine) == [data[k] for k in mine[:-1]] + [None]
    assert mget_calls(admin) - before == 50
    assert admin.info("clients")["connected_clients"] == clients + 1  # one connection, kept and reused
    big = keys * 40 + [b"p:missing"]  # 12,001 keys: two MGETs in one round trip, replies in key order
    assert store.read(big) == [data[k] for k in big[:-1]] + [None]
    assert mget_calls(admin) - before == 52
    assert store.read([]) == []
    store.close()
    assert store._sync_idle == []


def test_auth_and_select_from_the_url_and_unix_sockets(own_redis):
    server = own_redis("--requirepass", "s3cr:et")
    data = values(redis.Redis(port=server.port, password="s3cr:et", db=3), b"p:", 10)
    redis.Redis(port=server.port, password="s3cr:et", db=0).set(b"p:k0", b"db0")  # must not be read
    keys = list(data)
    for url in (
        f"redis://:s3cr%3Aet@127.0.0.1:{server.port}/3",
        f"redis://default:s3cr%3Aet@127.0.0.1:{server.port}/3",
    ):
        store = RedisOnlineStore(url, b"p:", timeout=1.0)
        assert store.read(keys) == list(data.values())
        assert store.read(keys[:1]) == [data[keys[0]]]  # again, on the kept connection
        store.close()
    for url in (f"redis://:wrong@127.0.0.1:{server.port}/3", f"redis://127.0.0.1:{server.port}/3"):
        store = RedisOnlineStore(url, b"p:", timeout=1.0)
        with pytest.raises(OnlineStoreUnavailable, match="WRONGPASS|NOAUTH"):
            store.read(keys)
        assert store._sync_idle == []  # a connection that got an error reply is not kept
        store.close()

    path = (
        Path(tempfile.mkdtemp(prefix="fsr-")) / "r.sock"
    )  # short: unix socket paths are limited to ~100 bytes
    own_redis("--unixsocket", str(path), "--unixsocketperm", "700")
    data = values(redis.Redis(unix_socket_path=str(path), db=2), b"p:", 5)
    store = RedisOnlineStore(f"unix://{path}?db=2", b"p:", timeout=1.0)
    assert store.read(list(data)) == list(data.values())
    store.close()


def test_threads_reading_at_once_get_their_own_values(redis_url, key_prefix):
    prefix = key_prefix.encode() + b":"
    data = values(redis.Redis.from_url(redis_url), prefix, 2000)
    keys = list(data)
    store = RedisOnlineStore(redis_url, prefix, timeout=2.0)
    errors: list[BaseException] = []

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(150):
                mine = rng.sample(keys, rng.randrange(1, 200)) + [prefix + b"missing"]
                assert store.read(mine) == [data[k] for k in mine[:-1]] + [None]
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert 1 <= len(store._sync_idle) <= _MAX_IDLE_SYNC
    store.close()


def _child_reads(
    store: RedisOnlineStore, data: dict[bytes, bytes], rounds: int, out: multiprocessing.Queue
) -> None:
    try:
        keys = list(data)
        for i in range(rounds):
            mine = keys[i % 50 : i % 50 + 30]
            if store.read(mine) != [data[k] for k in mine]:
                out.put("wrong values")
                return
        out.put("ok")
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        out.put(repr(e))


def test_a_forked_child_does_not_share_the_parents_connections(redis_url, key_prefix):
    prefix = key_prefix.encode() + b":"
    data = values(redis.Redis.from_url(redis_url), prefix, 100)
    keys = list(data)
    store = RedisOnlineStore(redis_url, prefix, timeout=2.0)
    assert store.read(keys[:3]) == [data[k] for k in keys[:3]]  # the parent now holds an idle connection
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    children = [context.Process(target=_child_reads, args=(store, data, 300, out)) for _ in range(2)]
    for child in children:
        child.start()
    for i in range(300):  # meanwhile, the parent reads on its own connection
        mine = keys[i % 70 : i % 70 + 30]
        assert store.read(mine) == [data[k] for k in mine]
    for child in children:
        child.join(30)
    assert [out.get(timeout=5) for _ in children] == ["ok", "ok"]
    store.close()


def test_a_restarted_server_costs_one_retry_not_an_error(own_redis):
    server = own_redis()
    url = f"redis://127.0.0.1:{server.port}/0"
    redis.Redis(port=server.port).set(b"p:a", b"1")
    store = RedisOnlineStore(url, b"p:", timeout=0.5)
    assert store.read([b"p:a"]) == [b"1"]
    server.kill()
    with pytest.raises(OnlineStoreUnavailable, match="unavailable"):
        store.read([b"p:a"])
    assert store._sync_idle == []
    server.start()  # empty: nothing saved
    assert store.read([b"p:a"]) == [None]
    redis.Redis(port=server.port).set(b"p:a", b"2")
    assert store.read([b"p:a"]) == [b"2"]
    server.kill()  # the kept connection goes stale while idle...
    server.start()
    assert store.read([b"p:a"]) == [None]  # ...and is replaced on the next read, without an error
    store.close()
