"""Fixtures of the server tests: a small feature repo on disk, and the app served by a real uvicorn
on a free loopback port (in a thread of the test process)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pyarrow as pa
import pytest
import uvicorn

from featurestore import FeatureStore
from featurestore.server import create_app
from featurestore.server.run import uvicorn_options
from tests.redis_server import free_port
from tests.repo_builder import make_repo

NOW = datetime.now(timezone.utc).replace(microsecond=0)

DEFINITIONS = """
from datetime import timedelta
from featurestore import (Array, Bool, Bytes, Entity, FeatureService, FeatureView, Field, Float64, Int64,
                          PushSource, String, UnixTimestamp)

driver = Entity(name="driver", join_keys=["driver_id"])
route = Entity(name="route", join_keys=["origin", "destination"])

driver_push = PushSource(name="driver_push", timestamp_field="event_timestamp")
route_push = PushSource(name="route_push", timestamp_field="event_timestamp")

driver_stats = FeatureView(
    name="driver_stats", entities=[driver], ttl=timedelta(days=3650), source=driver_push,
    schema=[Field("driver_id", Int64), Field("conv_rate", Float64), Field("trips", Int64), Field("city", String),
            Field("photo", Bytes), Field("recent", Array(Int64)), Field("last_trip", UnixTimestamp),
            Field("active", Bool)],
    description="Driver statistics", owner="rides@example.com", tags={"team": "rides"},
)
driver_fresh = FeatureView(
    name="driver_fresh", entities=[driver], ttl=timedelta(hours=1), source=driver_push,
    schema=[Field("driver_id", Int64), Field("conv_rate", Float64)],
)
route_stats = FeatureView(
    name="route_stats", entities=[route], ttl=None, source=route_push,
    schema=[Field("origin", String), Field("destination", String), Field("duration", Float64)],
)
driver_activity = FeatureService(name="driver_activity", features=[driver_stats[["conv_rate", "trips"]]])
"""

KEYS = {
    "reader": ("read", "read-key-0123456789"),
    "writer": ("write", "write-key-0123456789"),
    "boss": ("admin", "admin-key-0123456789"),
}


def driver_rows() -> pa.Table:
    """Drivers 1..20; driver 7 has a NaN rate and null city; rows are 2 hours old (outside driver_fresh's ttl
    for the odd drivers, whose rows are older)."""
    ids = list(range(1, 21))
    return pa.table(
        {
            "driver_id": pa.array(ids, pa.int64()),
            "conv_rate": pa.array([float("nan") if i == 7 else i / 100 for i in ids], pa.float64()),
            "trips": pa.array([i * 10 for i in ids], pa.int64()),
            "city": pa.array([None if i == 7 else f"city-{i}" for i in ids], pa.string()),
            "photo": pa.array([bytes([i, 0, 255]) for i in ids], pa.binary()),
            "recent": pa.array([[i, i + 1] for i in ids], pa.list_(pa.int64())),
            "last_trip": pa.array([NOW - timedelta(days=i) for i in ids], pa.timestamp("us", tz="UTC")),
            "active": pa.array([i % 2 == 0 for i in ids], pa.bool_()),
            "event_timestamp": pa.array(
                [NOW - timedelta(hours=2 if i % 2 else 0, minutes=1) for i in ids],
                pa.timestamp("us", tz="UTC"),
            ),
        }
    )


def route_rows() -> pa.Table:
    return pa.table(
        {
            "origin": ["a", "a", "b"],
            "destination": ["b", "c", "a"],
            "duration": [1.5, 2.5, 3.5],
            "event_timestamp": pa.array([NOW] * 3, pa.timestamp("us", tz="UTC")),
        }
    )


def build_repo(
    root: Path,
    online: str,
    *,
    redis_url: str | None = None,
    key_prefix: str = "test",
    api_keys: bool = False,
    max_batch_rows: int = 1000,
    timeout: float = 0.5,
) -> FeatureStore:
    """A repo in `root` with the definitions above applied and rows pushed online; returns its store."""
    if online == "redis":
        online_cfg = f'[online]\ntype = "redis"\nurl = "{redis_url}"\nkey_prefix = "{key_prefix}"\n'
    else:
        online_cfg = '[online]\ntype = "sqlite"\npath = "data/online.db"\n'
    online_cfg += f"timeout_seconds = {timeout}\n"
    server_cfg = f"[server]\nmax_batch_rows = {max_batch_rows}\n"
    if api_keys:
        for name, (role, key) in KEYS.items():
            server_cfg += f'[[server.api_keys]]\nname = "{name}"\nrole = "{role}"\nkey = "{key}"\n'
    make_repo(root, {"features.py": DEFINITIONS}, config=online_cfg + server_cfg)
    store = FeatureStore(root)
    store.apply()
    store.push("driver_push", driver_rows(), to="online")
    store.push("route_push", route_rows(), to="online")
    return store


class LiveServer:
    """An app served by uvicorn on a free loopback port, in a daemon thread."""

    def __init__(self, app, port: int | None = None, **options):
        self.app = app
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # The settings of `fs serve` (its connection limits included), and any others given.
        settings = {"log_level": "warning", "lifespan": "on", "access_log": False, **options}
        config = uvicorn.Config(app, **uvicorn_options(host="127.0.0.1", port=self.port, **settings))
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, **{"timeout": 10, **kwargs})


@contextmanager
def serve(store: FeatureStore, **app_options) -> Iterator[LiveServer]:
    server = LiveServer(create_app(store, **app_options)).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory) -> Iterator[FeatureStore]:
    store = build_repo(tmp_path_factory.mktemp("sqlite-repo"), "sqlite")
    yield store
    store.close()


def redis_repo(folder: Path, redis_server, **options) -> FeatureStore:
    """The test repo on the shared Redis server, under a key prefix of its own."""
    import uuid

    return build_repo(
        folder, "redis", redis_url=redis_server.url, key_prefix=f"fstest-{uuid.uuid4().hex[:10]}", **options
    )


@contextmanager
def serve_redis_repo(folder: Path, redis_server, **options) -> Iterator[LiveServer]:
    """A live server of `redis_repo(folder, redis_server, **options)`; the store is closed afterwards."""
    store = redis_repo(folder, redis_server, **options)
    try:
        with serve(store) as server:
            yield server
    finally:
        store.close()


@pytest.fixture(scope="module")
def redis_store(tmp_path_factory, redis_server) -> Iterator[FeatureStore]:
    store = redis_repo(tmp_path_factory.mktemp("redis-repo"), redis_server)
    yield store
    store.close()


@pytest.fixture(scope="module")
def redis_server_live(redis_store) -> Iterator[LiveServer]:
    with serve(redis_store) as server:
        yield server


@pytest.fixture(scope="module")
def sqlite_server_live(sqlite_store) -> Iterator[LiveServer]:
    with serve(sqlite_store) as server:
        yield server


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def live(request) -> LiveServer:
    """The open server over each backend."""
    return request.getfixturevalue(f"{request.param}_server_live")
