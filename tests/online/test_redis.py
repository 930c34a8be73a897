"""Redis-only behaviour: failing fast when the server is down or hung, recovering when it is back."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
import redis

from featurestore import OnlineStoreUnavailable
from featurestore.online.lookup import NOT_FOUND
from tests.online.conftest import NOW, open_store, rows
from tests.redis_server import missing, start_redis

pytestmark = pytest.mark.redis
REFS = ["driver_stats:trips"]


def write_one(store, trips: int) -> None:
    v = store.catalog.view("driver_stats")
    store.online_store.write(v, rows(v, {"driver_id": [1], "trips": [trips], "conv_rate": [0.5]}, NOW))


def test_a_stopped_server_fails_fast_and_the_store_recovers_after_restart(tmp_path):
    server = start_redis()
    if server is None or not server.owned:
        missing("needs a redis-server binary to stop and restart")
    try:
        store = open_store(tmp_path, "redis", server.url, key_prefix="outage", timeout=0.5)
        write_one(store, 7)
        assert store.get_online_features(REFS, {"driver_id": [1]}).values["trips"] == [7]
        server.stop()
        for _attempt in range(3):
            began = time.monotonic()
            with pytest.raises(OnlineStoreUnavailable, match="unavailable"):
                store.get_online_features(REFS, {"driver_id": [1]})
            assert time.monotonic() - began < 0.5
        with pytest.raises(OnlineStoreUnavailable):
            write_one(store, 8)
        with pytest.raises(OnlineStoreUnavailable):
            asyncio.run(store.get_online_features_async(REFS, {"driver_id": [1]}))

        server.restart()  # an empty server: no data, no cached write script
        assert store.get_online_features(REFS, {"driver_id": [1]}).statuses["trips"] == [NOT_FOUND]
        write_one(store, 9)
        assert store.get_online_features(REFS, {"driver_id": [1]}).values["trips"] == [9]

        async def an_async_server_lives_through_an_outage():  # one event loop, as in `fs serve`
            lookup = store.get_online_features_async
            assert (await lookup(REFS, {"driver_id": [1]})).values["trips"] == [9]
            server.stop()
            began = time.monotonic()
            with pytest.raises(OnlineStoreUnavailable):
                await lookup(REFS, {"driver_id": [1]})
            assert time.monotonic() - began < 0.5
            server.restart()
            assert (await lookup(REFS, {"driver_id": [1]})).statuses["trips"] == [NOT_FOUND]
            await store.online_store.aclose()

        asyncio.run(an_async_server_lives_through_an_outage())
        store.close()
    finally:
        server.stop()


def test_a_hung_server_times_out_after_timeout_seconds(tmp_path):
    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        url = f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
        store = open_store(tmp_path, "redis", url, key_prefix="hung", timeout=0.3)
        began = time.monotonic()
        with pytest.raises(OnlineStoreUnavailable, match="TimeoutError"):
            store.get_online_features(REFS, {"driver_id": [1]})
        assert time.monotonic() - began < 1.5
        store.close()


def test_writes_survive_a_flushed_script_cache(tmp_path, redis_url, key_prefix):
    store = open_store(tmp_path, "redis", redis_url, key_prefix=key_prefix)
    write_one(store, 1)
    redis.Redis.from_url(redis_url).script_flush()
    write_one(store, 2)
    assert store.get_online_features(REFS, {"driver_id": [1]}).values["trips"] == [2]
    store.close()


def test_key_layout_is_one_string_per_view_and_entity_under_the_project_prefix(
    tmp_path, redis_url, key_prefix
):
    store = open_store(tmp_path, "redis", redis_url, key_prefix=key_prefix)
    write_one(store, 3)
    client = redis.Redis.from_url(redis_url)
    keys = sorted(client.scan_iter(match=f"{key_prefix}:*"))
    assert keys == [
        f"{key_prefix}:__layouts".encode(),
        f"{key_prefix}:__newest".encode(),  # the newest event time per view (monitoring's freshness)
        f"{key_prefix}:driver_stats:1".encode(),
    ]
    store.close()


def test_commands_are_packed_as_resp_arrays_of_bulk_strings():
    from featurestore.online.redis import _pack

    def plain(args):  # the RESP spelling, one argument at a time
        return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)

    commands = [
        [b"MGET", *(b"p:v:%d" % i for i in range(300))],
        (b"GET", b""),
        [b"SET", b"k", bytes(range(256)) * 40],
        [b"SET", b"\r\n$", b"x" * 1023],
        (b"PING",),
    ]
    for command in commands:
        assert _pack(command) == plain(command)
    import hiredis

    assert _pack(commands[0]) == hiredis.pack_command(tuple(commands[0]))
