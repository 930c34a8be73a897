"""Fixtures for the online store suite: one feature store per backend (SQLite file, real Redis, a
local 3-master Redis Cluster)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pytest

from featurestore import (
    Array,
    Bool,
    Bytes,
    Entity,
    FeatureService,
    FeatureStore,
    FeatureView,
    Field,
    Float32,
    Float64,
    Int32,
    Int64,
    PushSource,
    String,
    UnixTimestamp,
)
from featurestore.catalog import Catalog
from tests.redis_cluster import start_cluster
from tests.redis_server import free_port, missing
from tests.repo_builder import make_repo

EVENT_TS = "__event_ts"
NOW = datetime.now(timezone.utc).replace(microsecond=123456)

driver = Entity(name="driver", join_keys=["driver_id"])
customer = Entity(name="customer", join_keys=["customer_id"])
route = Entity(name="route", join_keys=["origin", "destination"])
driver_src = PushSource(name="driver_push")
customer_src = PushSource(name="customer_push")
route_src = PushSource(name="route_push")
types_src = PushSource(name="types_push")

ALL_TYPES = [
    Field("i32", Int32),
    Field("i64", Int64),
    Field("f32", Float32),
    Field("f64", Float64),
    Field("s", String),
    Field("b", Bool),
    Field("ts", UnixTimestamp),
    Field("raw", Bytes),
    Field("ints", Array(Int64)),
    Field("strs", Array(String)),
    Field("floats", Array(Float64)),
    Field("flags", Array(Bool)),
    Field("times", Array(UnixTimestamp)),
    Field("blobs", Array(Bytes)),
]


def catalog(extra_driver_feature: bool = False) -> Catalog:
    """Views over every shape the suite needs: all types, ttl, two entities, composite keys."""
    driver_fields = [Field("conv_rate", Float64), Field("trips", Int64)]
    if extra_driver_feature:
        driver_fields.append(Field("rating", Float64))
    views = [
        FeatureView(name="all_types", entities=[driver], schema=ALL_TYPES, source=types_src),
        FeatureView(
            name="driver_stats",
            entities=[driver],
            ttl=timedelta(days=1),
            schema=driver_fields,
            source=driver_src,
        ),
        FeatureView(
            name="customer_profile",
            entities=[customer],
            schema=[Field("age", Int64), Field("city", String)],
            source=customer_src,
        ),
        FeatureView(
            name="route_stats",
            entities=[route],
            ttl=timedelta(hours=1),
            schema=[Field("origin", Int64), Field("destination", String), Field("eta", Float64)],
            source=route_src,
        ),
        FeatureView(
            name="driver_customer",
            entities=[driver, customer],
            schema=[Field("rides", Int64)],
            source=driver_src,
        ),
        FeatureView(
            name="offline_only",
            entities=[driver],
            schema=[Field("x", Int64)],
            source=customer_src,
            online=False,
        ),
    ]
    service = FeatureService(name="ranking", features=[views[1][["trips"]], views[2]])
    return Catalog(
        entities={e.name: e for e in (driver, customer, route)},
        sources={s.name: s for s in (driver_src, customer_src, route_src, types_src)},
        views={v.name: v for v in views},
        services={service.name: service},
    )


def open_store(
    root: Path,
    backend: str,
    redis_url: str | None = None,
    key_prefix: str | None = None,
    timeout: float = 1.0,
    sqlite_path: Path | None = None,
) -> FeatureStore:
    if backend == "sqlite":
        online = f'[online]\ntype = "sqlite"\npath = "{sqlite_path or "data/online.db"}"\n'
        if key_prefix:
            online += f'key_prefix = "{key_prefix}"\n'
    else:
        online = (
            f'[online]\ntype = "redis"\nurl = "{redis_url}"\nkey_prefix = "{key_prefix}"\n'
            f"timeout_seconds = {timeout}\n"
        )
        if backend == "redis_cluster":
            online += "cluster = true\n"
    make_repo(root, {}, project="online_suite", config=online)
    store = FeatureStore(root)
    store.apply(catalog())
    return store


@pytest.fixture(scope="session")
def redis_cluster():
    """A local 3-master Redis Cluster for the session (tests/redis_cluster.py)."""
    cluster = start_cluster()
    if cluster is None:
        missing("no redis-server / redis-cli to start a local Redis Cluster (apt-get install redis-server)")
    yield cluster
    cluster.stop()


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("redis_cluster", marks=pytest.mark.redis),
    ]
)
def backend(request) -> str:
    return request.param


@pytest.fixture
def make_store(backend, tmp_path, request):
    """Build stores of the current backend: make_store(name, key_prefix=None) -> FeatureStore.

    Stores with different key prefixes share one server (Redis) or one file (SQLite)."""
    stores = []

    def make(name: str = "repo", key_prefix: str | None = None) -> FeatureStore:
        url = prefix = None
        if backend == "redis":
            url = request.getfixturevalue("redis_url")
            prefix = key_prefix or request.getfixturevalue("key_prefix")
        elif backend == "redis_cluster":
            url = request.getfixturevalue("redis_cluster").url
            prefix = key_prefix or request.getfixturevalue("key_prefix")
        else:
            prefix = key_prefix
        store = open_store(tmp_path / name, backend, url, prefix, sqlite_path=tmp_path / "online.db")
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()


@pytest.fixture
def store(make_store) -> FeatureStore:
    return make_store()


def rows(view: FeatureView, data: dict, event_ts) -> pa.Table:
    """A write batch for `view`: columns typed as the view declares, plus __event_ts."""
    n = len(next(iter(data.values())))
    if isinstance(event_ts, datetime):
        event_ts = [event_ts] * n
    types = {f.name: f.dtype.to_arrow() for f in view.schema}
    cols = {name: pa.array(values, type=types.get(name)) for name, values in data.items()}
    cols[EVENT_TS] = pa.array(event_ts, pa.timestamp("us", tz="UTC"))
    return pa.table(cols)


# -- redis-servers of a test's own (options such as a password or a unix socket; killed and restarted) --


class OwnRedis:
    """A redis-server of one test, with extra options (password, unix socket); restartable."""

    def __init__(self, *options: str):
        if not shutil.which("redis-server"):
            missing("needs a redis-server binary")
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="fs-redis-async-")
        self.options = options
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
                "--loglevel",
                "warning",
                *self.options,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.02)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.kill()


@pytest.fixture
def own_redis():
    servers: list[OwnRedis] = []
    yield lambda *options: servers.append(OwnRedis(*options)) or servers[-1]
    for s in servers:
        s.stop()
