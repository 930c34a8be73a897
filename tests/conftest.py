"""Shared fixtures: a real Redis server, and small feature repos on disk."""

from __future__ import annotations

import uuid

import pytest

from tests.redis_server import missing, start_redis


@pytest.fixture(scope="session")
def redis_server():
    """A real Redis server for the session (our own redis-server on a free port when installed)."""
    server = start_redis()
    if server is None:
        missing("no Redis: install redis-server (apt-get install redis-server) or set FS_TEST_REDIS_URL")
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server) -> str:
    return redis_server.url


@pytest.fixture
def key_prefix() -> str:
    """A unique key prefix, so tests never touch each other's (or anybody's) keys."""
    return f"fstest-{uuid.uuid4().hex[:10]}"
