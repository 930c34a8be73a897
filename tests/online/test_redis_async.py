"""RedisOnlineStore.read_async's own RESP connections: URLs (AUTH, SELECT, unix sockets), concurrency,
the >10,000-key split, outages and hung servers on one long-lived event loop."""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
import time
from pathlib import Path

import pytest
import redis

from featurestore import OnlineStoreUnavailable
from featurestore.online.redis import _MAX_IDLE_ASYNC, RedisOnlineStore

pytestmark = pytest.mark.redis
PREFIX = b"fstest-async:"


def fill(client: redis.Redis, n: int) -> dict[bytes, bytes]:
    data = {PREFIX + b"k%d" % i: b"v%d-" % i + bytes(100) for i in range(n)}
    client.mset(data)
    return data


def test_auth_and_select_from_the_url(own_redis):
    server = own_redis("--requirepass", "s3cr:et")
    admin = redis.Redis(port=server.port, password="s3cr:et", db=3)
    data = fill(admin, 10)
    redis.Redis(port=server.port, password="s3cr:et", db=0).set(PREFIX + b"k0", b"db0")  # must not be read
    keys = list(data) + [PREFIX + b"missing"]

    async def main():
        for url in (
            f"redis://:s3cr%3Aet@127.0.0.1:{server.port}/3",
            f"redis://default:s3cr%3Aet@127.0.0.1:{server.port}/3",
        ):
            store = RedisOnlineStore(url, PREFIX, timeout=1.0)
            assert await store.read_async(keys) == list(data.values()) + [None]
            assert await store.read_async(keys[:1]) == [data[keys[0]]]  # again, on the pooled connection
            await store.aclose()
        for url in (f"redis://:wrong@127.0.0.1:{server.port}/3", f"redis://127.0.0.1:{server.port}/3"):
            store = RedisOnlineStore(url, PREFIX, timeout=1.0)
            with pytest.raises(OnlineStoreUnavailable, match="WRONGPASS|NOAUTH"):
                await store.read_async(keys)
            await store.aclose()

    asyncio.run(main())


def test_unix_socket_url(own_redis, tmp_path):
    path = (
        Path(tempfile.mkdtemp(prefix="fsr-")) / "r.sock"
    )  # short: unix socket paths are limited to ~100 bytes
    server = own_redis("--unixsocket", str(path), "--unixsocketperm", "700")
    data = fill(redis.Redis(unix_socket_path=str(path), db=2), 5)

    async def main():
        store = RedisOnlineStore(f"unix://{path}?db=2", PREFIX, timeout=1.0)
        assert await store.read_async(list(data)) == list(data.values())
        await store.aclose()

    asyncio.run(main())
    assert server.process.poll() is None


def test_many_concurrent_reads_on_one_loop_get_their_own_values(redis_url):
    data = fill(redis.Redis.from_url(redis_url), 30_000)
    keys = list(data)
    store = RedisOnlineStore(redis_url, PREFIX, timeout=2.0)

    async def one(i: int) -> None:
        mine = keys[i * 7 % 1000 : i * 7 % 1000 + 1 + i % 150] + [PREFIX + b"missing%d" % i]
        for _ in range(3):
            assert await store.read_async(mine) == [data[k] for k in mine[:-1]] + [None]
            await asyncio.sleep(0)

    async def main():
        await asyncio.gather(*(one(i) for i in range(200)))
        # idle connections are bounded; the >10,000-key split returns all replies in order
        assert len(store._raw_pools[asyncio.get_running_loop()]) <= _MAX_IDLE_ASYNC
        big = keys[::-1] + [PREFIX + b"missing"]
        assert await asyncio.gather(store.read_async(big), store.read_async(keys[:5])) == [
            [data[k] for k in big[:-1]] + [None],
            [data[k] for k in keys[:5]],
        ]
        await store.aclose()
        assert asyncio.get_running_loop() not in store._raw_pools

    asyncio.run(main())
    store.close()


def test_a_killed_server_fails_fast_then_the_store_recovers_on_the_same_loop(own_redis):
    server = own_redis()
    url = f"redis://127.0.0.1:{server.port}/0"
    store = RedisOnlineStore(url, PREFIX, timeout=0.5)

    async def main():
        data = fill(redis.Redis(port=server.port), 10)
        keys = list(data)
        await asyncio.gather(*(store.read_async(keys) for _ in range(4)))  # several pooled connections
        server.kill()
        for _ in range(3):
            began = time.monotonic()
            with pytest.raises(OnlineStoreUnavailable, match="unavailable"):
                await store.read_async(keys)
            assert time.monotonic() - began < 0.5
        server.start()  # empty again: the first read after the restart answers, no error first
        assert await store.read_async(keys) == [None] * 10
        data = fill(redis.Redis(port=server.port), 10)
        assert await store.read_async(keys) == list(data.values())

        # restarted while connections sit idle in the pool: stale ones are dropped, no error surfaces
        await asyncio.gather(*(store.read_async(keys) for _ in range(4)))
        server.kill()
        server.start()
        assert await store.read_async(keys) == [None] * 10
        await store.aclose()

    asyncio.run(main())
    store.close()


def test_a_hung_server_times_out_and_a_cancelled_read_does_not_poison_the_pool(own_redis):
    server = own_redis()
    store = RedisOnlineStore(f"redis://127.0.0.1:{server.port}/0", PREFIX, timeout=0.3)
    data = fill(redis.Redis(port=server.port), 3)
    keys = list(data)

    async def main():
        assert await store.read_async(keys) == list(data.values())
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            began = time.monotonic()
            with pytest.raises(OnlineStoreUnavailable, match="TimeoutError"):
                await store.read_async(keys)
            assert time.monotonic() - began < 1.0
            with pytest.raises(asyncio.TimeoutError):  # cancelled by the caller mid-read
                await asyncio.wait_for(store.read_async(keys), 0.05)
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        # the replies owed to the timed-out and cancelled reads must never reach a later read
        for _ in range(5):
            assert await store.read_async(keys[::-1]) == list(data.values())[::-1]
        await store.aclose()

    asyncio.run(main())
    store.close()


def _mget_calls(client: redis.Redis) -> int:
    return int(client.info("commandstats").get("cmdstat_mget", {}).get("calls", 0))


def test_start_read_sends_before_it_is_awaited_and_a_discarded_read_leaves_the_pool_sound(redis_url):
    """start_read on an idle connection sends the MGET at once (Redis has run it before anyone awaits);
    a read whose answer is not wanted finishes in the background and its reply never reaches another read."""
    from featurestore.online.lookup import PendingLookup

    client = redis.Redis.from_url(redis_url)
    data = fill(client, 50)
    keys = list(data)
    store = RedisOnlineStore(redis_url, PREFIX, timeout=1.0)

    async def main():
        loop = asyncio.get_running_loop()
        assert await store.read_async(keys[:1]) == [data[keys[0]]]  # one idle connection now
        before = _mget_calls(client)
        pending = store.start_read(keys[:10])
        time.sleep(0.2)  # blocks the loop: only a request already sent can have been run by Redis
        assert _mget_calls(client) == before + 1
        assert await pending == [data[k] for k in keys[:10]]

        # discarded: the next reads (on the same loop, at once) get their own replies, never its one
        PendingLookup(None, None, None, None, store.start_read(keys[:20])).discard()  # type: ignore[arg-type]
        for i in range(5):
            assert await store.read_async(keys[20 + i : 30 + i]) == [data[k] for k in keys[20 + i : 30 + i]]
        await asyncio.sleep(0.05)
        pool = store._raw_pools[loop]
        assert 1 <= len(pool) <= 2 and not any(conn.stale() for conn in pool)  # the discarded one came back

        # nothing idle: start_read connects when awaited (and still answers)
        while pool:
            pool.pop().close()
        assert await store.start_read(keys[:3]) == [data[k] for k in keys[:3]]
        assert await store.start_read([]) == []
        await store.aclose()

    asyncio.run(main())
    store.close()


def test_a_discarded_read_on_a_dead_server_is_dropped_quietly(own_redis, caplog):
    import gc

    from featurestore.online.lookup import PendingLookup

    server = own_redis()
    store = RedisOnlineStore(f"redis://127.0.0.1:{server.port}", PREFIX, timeout=0.5)

    async def main():
        assert await store.read_async([PREFIX + b"x"]) == [None]
        server.kill()
        PendingLookup(None, None, None, None, store.start_read([PREFIX + b"x"])).discard()  # type: ignore[arg-type]
        await asyncio.sleep(0.3)
        with pytest.raises(OnlineStoreUnavailable):
            await store.read_async([PREFIX + b"x"])
        await store.aclose()

    asyncio.run(main())
    gc.collect()  # an unretrieved task exception is reported when the task is collected
    store.close()
    assert "never retrieved" not in caplog.text
