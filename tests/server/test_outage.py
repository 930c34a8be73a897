"""Redis goes away while the server runs: 503 quickly, no hang; Redis comes back: answers again, no restart."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.redis_server import missing, start_redis
from tests.server.conftest import build_repo, serve

pytestmark = [pytest.mark.redis, pytest.mark.slow]

LOOKUP = {"features": ["driver_stats:trips"], "entities": [{"driver_id": 3}]}


@pytest.fixture
def own_redis():
    """A Redis server of this test alone: stopping it must not disturb the shared one."""
    server = start_redis()
    if server is None or not server.owned:
        missing("needs redis-server installed (this test stops and restarts its own server)")
    yield server
    server.stop()


def test_503_fast_while_redis_is_down_then_recovery_without_restart(tmp_path, own_redis):
    store = build_repo(
        tmp_path, "redis", redis_url=own_redis.url, key_prefix=f"fstest-{uuid.uuid4().hex[:8]}", timeout=0.5
    )
    with serve(store) as server, server.client(timeout=10) as client:
        assert client.post("/features/online", json=LOOKUP).json()["values"]["trips"] == [30]
        assert client.get("/ready").status_code == 200

        own_redis.stop()
        for _ in range(3):  # every request, not just the first, fails fast
            start = time.monotonic()
            r = client.post("/features/online", json=LOOKUP)
            elapsed = time.monotonic() - start
            assert r.status_code == 503, r.text
            assert elapsed < 2.0, f"503 took {elapsed:.2f}s"
            assert r.headers["retry-after"] == "1"
            assert "online store" in r.json()["error"] and "Traceback" not in r.text
        r = client.get("/ready")
        assert r.status_code == 503 and r.json()["error"].startswith("not ready")
        assert client.get("/health").status_code == 200  # liveness does no I/O
        metrics = client.get("/metrics").text
        assert 'fs_online_store_errors_total{reason="unavailable"}' in metrics

        own_redis.restart()
        deadline = time.monotonic() + 5
        while True:
            r = client.post("/features/online", json=LOOKUP)
            if r.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert r.status_code == 200, r.text
        # the restarted server is empty (no persistence): the key is simply not found now
        assert r.json()["values"]["trips"] == [None]
        assert client.get("/ready").status_code == 200
    store.close()


@pytest.mark.parametrize(
    "store_timeout, lookup_timeout",
    [(0.3, 0.8), (1.5, 0.3)],
    ids=["the store's timer", "the app's timer, set below the store's"],
)
def test_a_hung_store_answers_503_within_the_lookup_timeout(
    tmp_path, own_redis, store_timeout, lookup_timeout
):
    """SIGSTOP the Redis process: connections stay open but nothing answers."""
    import os
    import signal

    store = build_repo(
        tmp_path,
        "redis",
        redis_url=own_redis.url,
        key_prefix=f"fstest-{uuid.uuid4().hex[:8]}",
        timeout=store_timeout,
    )
    with serve(store, lookup_timeout=lookup_timeout) as server, server.client(timeout=10) as client:
        assert client.post("/features/online", json=LOOKUP).status_code == 200
        os.kill(own_redis.process.pid, signal.SIGSTOP)
        try:
            start = time.monotonic()
            r = client.post("/features/online", json=LOOKUP)
            elapsed = time.monotonic() - start
            assert r.status_code == 503, r.text
            assert elapsed < lookup_timeout + 0.5, f"503 took {elapsed:.2f}s"
        finally:
            os.kill(own_redis.process.pid, signal.SIGCONT)
        deadline = time.monotonic() + 5
        while client.post("/features/online", json=LOOKUP).status_code != 200:
            assert time.monotonic() < deadline, "no recovery after SIGCONT"
            time.sleep(0.05)
    store.close()


def test_a_store_without_bounded_reads_is_cut_off_at_the_lookup_timeout(sqlite_store, monkeypatch):
    """SQLite's async reads run in a thread and have no bound of their own: the app's lookup_timeout is."""
    from featurestore.online.sqlite import SqliteOnlineStore

    assert sqlite_store.online_store.async_read_bound is None
    original = SqliteOnlineStore.read

    def hung(self, keys):
        time.sleep(1.5)
        return original(self, keys)

    monkeypatch.setattr(SqliteOnlineStore, "read", hung)
    with serve(sqlite_store, lookup_timeout=0.3) as server, server.client(timeout=10) as client:
        start = time.monotonic()
        r = client.post(
            "/features/online", json={"features": ["driver_stats:trips"], "entities": [{"driver_id": 1}]}
        )
        elapsed = time.monotonic() - start
        assert r.status_code == 503 and "did not answer within 0.3s" in r.json()["error"], r.text
        assert r.headers["retry-after"] == "1"
        assert elapsed < 1.2, f"503 took {elapsed:.2f}s"
        assert 'fs_online_store_errors_total{reason="timeout"} 1.0' in client.get("/metrics").text
