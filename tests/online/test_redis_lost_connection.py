"""A connection lost in the middle of a pipelined write (killed by the server, or the server restarted
or stopped): the write completes on a new connection or raises OnlineStoreUnavailable, and the rows
stored are then right (newest wins; nothing looks newer than it is); a re-run ends in the clean state."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest
import redis

from featurestore import FeatureStore, OnlineStoreUnavailable
from tests.online.conftest import NOW, open_store, rows
from tests.redis_server import missing, start_redis
from tests.repo_builder import make_repo

pytestmark = pytest.mark.redis
N = 60_000
BATCH = 5_000  # one write chunk each: while the generator makes batch k+1, chunk k is in flight
OLD, NEW = NOW - timedelta(hours=1), NOW


@pytest.fixture
def server():
    server = start_redis()
    if server is None or not server.owned:
        missing("needs a redis-server binary to kill connections of and restart")
    yield server
    server.stop()


def batches(view, when: datetime, offset: int, on_batch: Callable[[int], None]) -> Iterator[pa.RecordBatch]:
    """N rows (trips = driver_id + offset) in BATCH-row batches; on_batch(k) runs before batch k is made."""
    for k, start in enumerate(range(0, N, BATCH)):
        on_batch(k)
        ids = list(range(start, start + BATCH))
        table = rows(
            view, {"driver_id": ids, "trips": [i + offset for i in ids], "conv_rate": [0.5] * BATCH}, when
        )
        yield from table.to_batches()


def stored(store) -> list:
    return store.get_online_features(["driver_stats:trips"], {"driver_id": list(range(N))}).values["trips"]


def seed(store) -> None:
    """Drivers 0..999 already hold a NEWER row (trips -1), drivers 1000..1999 an older one (trips -2)."""
    view = store.catalog.view("driver_stats")
    ids = list(range(2_000))
    store.online_store.write(
        view,
        rows(view, {"driver_id": ids[:1000], "trips": [-1] * 1000, "conv_rate": [0.1] * 1000}, NEW),
    )
    store.online_store.write(
        view,
        rows(
            view,
            {"driver_id": ids[1000:], "trips": [-2] * 1000, "conv_rate": [0.1] * 1000},
            OLD - timedelta(hours=1),
        ),
    )


def expected(offset: int = 0) -> list:
    return [-1 if i < 1000 else i + offset for i in range(N)]


def test_a_connection_killed_by_the_server_mid_write_is_redone_on_a_new_one(tmp_path, server):
    store = open_store(tmp_path, "redis", server.url, key_prefix="killed")
    seed(store)
    admin = redis.Redis.from_url(server.url)
    connections_before = admin.info("stats")["total_connections_received"]
    killed: list[int] = []

    def kill_in_flight(k: int) -> None:
        if k in (3, 7):  # chunks 2 and 6 are sent, their replies not read yet
            killed.append(admin.client_kill_filter(_type="normal", skipme=True))

    view = store.catalog.view("driver_stats")
    assert store.online_store.write(view, batches(view, OLD, 0, kill_in_flight)) == N
    assert killed and all(n >= 1 for n in killed)  # the writer's connection really was cut, twice
    assert admin.info("stats")["total_connections_received"] > connections_before + 1
    assert stored(store) == expected()  # every row, and the newer rows were not overwritten
    store.close()


def test_a_server_restarted_mid_write_loses_its_data_and_a_rerun_ends_clean(tmp_path, server):
    store = open_store(tmp_path, "redis", server.url, key_prefix="restarted", timeout=0.5)
    view = store.catalog.view("driver_stats")

    def restart_in_flight(k: int) -> None:
        if k == 4:
            server.stop()  # the data and the cached write script go with it
            server.restart()

    # The server is back at once: the chunk in flight is redone on a new connection (the script loaded
    # again), and the write completes.
    assert store.online_store.write(view, batches(view, OLD, 0, restart_in_flight)) == N
    after = stored(store)
    # The rows of the chunks before the restart went with the old process; all the others are there.
    assert all(v is None for v in after[: 3 * BATCH])
    # Chunk 3 was in flight: redone on the new server, unless all its replies had arrived (then it was
    # acknowledged by the old one, and went with it). Never a part of it.
    assert after[3 * BATCH : 4 * BATCH] in ([None] * BATCH, list(range(3 * BATCH, 4 * BATCH)))
    assert after[4 * BATCH :] == list(range(4 * BATCH, N))
    store.online_store.write(view, batches(view, OLD, 0, lambda k: None))  # the re-run
    assert stored(store) == list(range(N))
    store.close()


def test_a_server_gone_mid_write_raises_fast_and_a_rerun_after_it_is_back_ends_clean(tmp_path, server):
    store = open_store(tmp_path, "redis", server.url, key_prefix="gone", timeout=0.5)
    seed(store)
    view = store.catalog.view("driver_stats")

    def stop_in_flight(k: int) -> None:
        if k == 4:
            server.stop()

    began = time.monotonic()
    with pytest.raises(OnlineStoreUnavailable, match="unavailable"):
        store.online_store.write(view, batches(view, OLD, 0, stop_in_flight))
    assert time.monotonic() - began < 10
    server.restart()  # empty: the seeded rows are gone with the old process
    seed(store)
    store.online_store.write(view, batches(view, OLD, 0, lambda k: None))
    assert stored(store) == expected()
    store.close()


DEFS = """
from featurestore import *
driver = Entity(name="driver", join_keys=["driver_id"])
src = ParquetSource(name="trips", path="data/trips.parquet")
driver_stats = FeatureView(name="driver_stats", entities=[driver], ttl=None,
                           schema=[Field("trips", Int64), Field("conv_rate", Float64)], source=src)
"""


def test_materialize_through_connections_killed_at_random_ends_in_the_clean_state(tmp_path, server):
    n, hours = 40_000, 3
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    source = pa.table(
        {
            "driver_id": pa.array([i for _ in range(hours) for i in range(n)], pa.int64()),
            "event_timestamp": pa.array(
                [t0 + timedelta(hours=h) for h in range(hours) for _ in range(n)], pa.timestamp("us", "UTC")
            ),
            "trips": pa.array([h * n + i for h in range(hours) for i in range(n)], pa.int64()),
            "conv_rate": pa.array([0.25] * (hours * n), pa.float64()),
        }
    )
    online = f'[online]\ntype = "redis"\nurl = "{server.url}"\nkey_prefix = "mat"\ntimeout_seconds = 1\n'
    store = FeatureStore(
        make_repo(tmp_path, {"defs.py": DEFS}, {"data/trips.parquet": source}, config=online)
    )
    store.apply()
    admin = redis.Redis.from_url(server.url)
    stop, kills = threading.Event(), []

    def killer() -> None:  # cuts every client connection whenever the write has made progress
        seen = 0
        while not stop.is_set():
            size = admin.dbsize()
            if size >= seen + 5_000:
                seen = size
                kills.append(admin.client_kill_filter(_type="normal", skipme=True))
            time.sleep(0.002)

    thread = threading.Thread(target=killer)
    thread.start()
    try:
        end = t0 + timedelta(hours=hours - 1)
        try:
            result = store.materialize(t0, end)
            assert result.online_rows == n
            recorded = True
        except OnlineStoreUnavailable:  # a chunk lost twice in a row: nothing is recorded
            recorded = False
            assert store.registry.watermark("driver_stats") is None
    finally:
        stop.set()
        thread.join()
    assert sum(kills) >= 1
    if not recorded:
        store.materialize(t0, end)  # the re-run, undisturbed
    assert store.registry.watermark("driver_stats") == end
    resp = store.get_online_features(["driver_stats:trips"], {"driver_id": list(range(n))})
    assert resp.values["trips"] == [(hours - 1) * n + i for i in range(n)]
    store.close()


class CuttingProxy:
    """A TCP relay to Redis that, when armed, resets the client's connection after relaying `cut_after`
    more bytes from it (a failover, a middlebox dropping the connection)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # inherited by accepted sockets
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.cut_after: int | None = None
        self.cuts = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            threading.Thread(target=self._relay, args=(upstream, client, None), daemon=True).start()
            threading.Thread(target=self._relay, args=(client, upstream, client), daemon=True).start()

    def _relay(self, src: socket.socket, dst: socket.socket, client: socket.socket | None) -> None:
        try:
            while data := src.recv(4096):
                if client is not None and self.cut_after is not None:
                    self.cut_after -= len(data)
                    if self.cut_after <= 0:
                        self.cut_after, self.cuts = None, self.cuts + 1
                        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        break  # closing with linger 0 sends a reset
                dst.sendall(data)
        except OSError:
            pass
        finally:
            src.close()
            dst.close()

    def close(self) -> None:
        self.listener.close()


def test_a_connection_reset_while_a_chunk_is_being_sent_is_redone_on_a_new_one(tmp_path, server):
    proxy = CuttingProxy(server.port)
    store = open_store(tmp_path, "redis", f"redis://127.0.0.1:{proxy.port}/0", key_prefix="reset", timeout=2)
    view = store.catalog.view("customer_profile")
    n, per_chunk, pad = 30_000, 10_000, "x" * 1_000  # 10 MB a chunk: more than the socket buffers hold

    def city(i: int) -> str:
        return f"{pad}{i}"

    def chunks() -> Iterator[pa.RecordBatch]:
        for k, start in enumerate(range(0, n, per_chunk)):
            if k == 2:
                # Chunk 1 is sent, up to ~4 MB of it still in socket buffers; the cut lands inside chunk
                # 2, while its sender still has more to write than the buffers hold.
                proxy.cut_after = 6_500_000
            ids = list(range(start, start + per_chunk))
            table = rows(view, {"customer_id": ids, "age": ids, "city": [city(i) for i in ids]}, OLD)
            yield from table.to_batches()

    assert store.online_store.write(view, chunks()) == n
    assert proxy.cuts == 1
    got = store.get_online_features(["customer_profile:city"], {"customer_id": list(range(n))})
    assert got.values["city"] == [city(i) for i in range(n)]
    store.close()
    proxy.close()
