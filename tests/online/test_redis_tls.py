"""`rediss://` (TLS): writes, sync and async lookups against a real redis-server that speaks TLS only,
with a certificate made by the test; a wrong or missing CA is a clear error; a restart is survived."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
import redis

from featurestore import OnlineStoreUnavailable
from featurestore.online.lookup import NOT_FOUND, PRESENT
from tests.online.conftest import NOW, open_store, rows
from tests.redis_server import missing, start_redis, tls_certificates

pytestmark = pytest.mark.redis
REFS = ["driver_stats:trips", "driver_stats:conv_rate"]
N = 25_000  # three pipelined write chunks


@pytest.fixture
def tls_server():
    server = start_redis(tls=True)
    if server is None:
        missing("needs a redis-server binary (with TLS) to start one speaking TLS")
    yield server
    server.stop()


def write_drivers(store, n: int = N, trips_offset: int = 0) -> int:
    view = store.catalog.view("driver_stats")
    ids = list(range(n))
    batch = rows(
        view,
        {"driver_id": ids, "trips": [i + trips_offset for i in ids], "conv_rate": [i / n for i in ids]},
        NOW - timedelta(minutes=5),
    )
    return store.online_store.write(view, batch)


def test_a_rediss_url_writes_and_reads_over_tls_sync_and_async(tmp_path, tls_server):
    assert tls_server.url.startswith("rediss://")
    store = open_store(tmp_path / "repo", "redis", tls_server.url, key_prefix="tls")
    assert write_drivers(store) == N
    asked = [0, 1, 12_345, N - 1, N + 7]
    resp = store.get_online_features(REFS, {"driver_id": asked})
    assert resp.values["trips"] == [0, 1, 12_345, N - 1, None]
    assert resp.statuses["trips"] == [PRESENT] * 4 + [NOT_FOUND]
    assert store.get_online_features(REFS, {"driver_id": list(range(N))}).values["trips"] == list(range(N))

    async def lookups() -> list:
        out = [(await store.get_online_features_async(REFS, {"driver_id": asked})).values["trips"]]
        out.append((await store.get_online_features_async(REFS, {"driver_id": [5]})).values["conv_rate"])
        await store.online_store.aclose()
        return out

    assert asyncio.run(lookups()) == [[0, 1, 12_345, N - 1, None], [5 / N]]
    # The rows really went over TLS: the server has no plain-text port, and holds them.
    admin = redis.Redis.from_url(tls_server.url)
    assert admin.dbsize() >= N
    with pytest.raises(redis.exceptions.ConnectionError):
        redis.Redis(port=tls_server.port, socket_timeout=1).ping()
    store.close()


def test_plain_redis_or_an_untrusted_certificate_is_a_clear_error(tmp_path, tls_server):
    plain = open_store(tmp_path / "plain", "redis", f"redis://127.0.0.1:{tls_server.port}/0", key_prefix="p")
    with pytest.raises(OnlineStoreUnavailable, match="unavailable"):
        plain.get_online_features(REFS, {"driver_id": [1]})
    plain.close()
    other_ca = tls_certificates(str(tmp_path))  # a CA that did not sign the server's certificate
    url = f"rediss://127.0.0.1:{tls_server.port}/0?ssl_ca_certs={other_ca.ca_cert}"
    untrusted = open_store(tmp_path / "untrusted", "redis", url, key_prefix="u")
    with pytest.raises(OnlineStoreUnavailable, match="certificate verify failed"):
        untrusted.get_online_features(REFS, {"driver_id": [1]})
    with pytest.raises(OnlineStoreUnavailable, match="certificate verify failed"):
        write_drivers(untrusted, 10)
    with pytest.raises(OnlineStoreUnavailable, match="certificate verify failed"):
        asyncio.run(untrusted.get_online_features_async(REFS, {"driver_id": [1]}))
    untrusted.close()


def test_a_tls_store_recovers_after_the_server_restarts(tmp_path, tls_server):
    store = open_store(tmp_path / "repo", "redis", tls_server.url, key_prefix="tls", timeout=0.5)
    write_drivers(store, 100)
    assert store.get_online_features(REFS, {"driver_id": [7]}).values["trips"] == [7]
    tls_server.stop()
    with pytest.raises(OnlineStoreUnavailable):
        store.get_online_features(REFS, {"driver_id": [7]})
    tls_server.restart()  # empty, without the cached write script
    assert store.get_online_features(REFS, {"driver_id": [7]}).statuses["trips"] == [NOT_FOUND]
    write_drivers(store, 100, trips_offset=1)
    assert store.get_online_features(REFS, {"driver_id": [7]}).values["trips"] == [8]

    async def across_a_restart() -> None:  # one event loop, as in `fs serve`
        assert (await store.get_online_features_async(REFS, {"driver_id": [7]})).values["trips"] == [8]
        tls_server.stop()
        with pytest.raises(OnlineStoreUnavailable):
            await store.get_online_features_async(REFS, {"driver_id": [7]})
        tls_server.restart()
        resp = await store.get_online_features_async(REFS, {"driver_id": [7]})
        assert resp.statuses["trips"] == [NOT_FOUND]
        await store.online_store.aclose()

    asyncio.run(across_a_restart())
    store.close()
