"""A real PostgreSQL database for tests: a new, uniquely named one on the local server, dropped after.

The server is $FS_TEST_POSTGRES_URL's (default postgresql://postgres@127.0.0.1:5432/postgres, the
machine's own, trust auth); each `temporary_database()` creates a database no other test uses and
drops it (closing whatever connections are left) on exit. Without a reachable server the test is
skipped, and under CI=true it fails (`tests.redis_server.missing`).

    with temporary_database() as url:
        store = PostgresRegistryStore(url)

`each_registry` is a fixture that runs a test twice: on the SQLite registry, then with
FS_REGISTRY_URL naming a new database (and FS_MODELS_PATH, FS_MONITORING_LOG_PATH set, as a
PostgreSQL registry needs). A module uses it with `pytestmark = pytest.mark.usefixtures("each_registry")`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.redis_server import missing

SERVER_URL = os.environ.get("FS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _admin() -> Any:
    """An autocommit connection to the server's maintenance database, or a skip (a failure under CI)."""
    try:
        import psycopg
    except ImportError:
        missing("needs psycopg (pip install 'featurestore[postgres]')")
    try:
        return psycopg.connect(SERVER_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as e:
        missing(f"needs PostgreSQL at {SERVER_URL} ({str(e).strip().splitlines()[0]})")


def database_url(name: str) -> str:
    """The URL of database `name` on the test server."""
    base, _, _ = SERVER_URL.rpartition("/")
    return f"{base}/{name}"


@contextmanager
def temporary_database(prefix: str = "fs_test") -> Iterator[str]:
    """Create a new empty database; yield its URL; drop it afterwards, whatever was left connected."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with _admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield database_url(name)
    finally:
        with _admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def each_registry(request: Any, monkeypatch: Any, tmp_path_factory: Any) -> Iterator[str]:
    """The test's repos use a SQLite registry, then (the second run) a PostgreSQL one; yields which."""
    if request.param == "sqlite":
        yield "sqlite"
        return
    with temporary_database() as url:
        shared = tmp_path_factory.mktemp("shared")
        monkeypatch.setenv("FS_REGISTRY_URL", url)
        monkeypatch.setenv("FS_MODELS_PATH", str(shared / "models"))
        monkeypatch.setenv("FS_MONITORING_LOG_PATH", str(shared / "predictions"))
        yield "postgresql"
        monkeypatch.delenv("FS_REGISTRY_URL")
