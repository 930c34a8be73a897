"""A real Redis server for tests and benchmarks: our own `redis-server` on a free port.

We start our own server whenever `redis-server` is installed, so tests may flush it freely. Without
the binary we fall back to $FS_TEST_REDIS_URL (never flushed: tests use unique key prefixes). Under
CI=true, no Redis at all is a failure, not a skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass


def missing(message: str) -> None:
    """A test that needs Redis (or the redis-server binary) and has none: skipped, but failed under CI=true."""
    import pytest

    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI=true and {message}")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RedisServer:
    url: str
    owned: bool  # True: we started it and may flush it
    process: subprocess.Popen | None = None
    port: int | None = None
    workdir: str | None = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def restart(self) -> None:
        """Start the same server again on the same port (after stop()), for outage tests."""
        assert self.owned and self.port is not None
        self.process = _spawn(self.port, self.workdir)
        _wait_ready(self.port)


def _spawn(port: int, workdir: str | None) -> subprocess.Popen:
    return subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir or tempfile.gettempdir(),
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait_ready(port: int, timeout: float = 10.0) -> None:
    import redis

    deadline = time.monotonic() + timeout
    while True:
        try:
            redis.Redis(port=port, socket_connect_timeout=0.2).ping()
            return
        except redis.exceptions.ConnectionError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {port} did not start within {timeout}s") from None
            time.sleep(0.05)


def start_redis() -> RedisServer | None:
    """Our own server if redis-server is installed, else $FS_TEST_REDIS_URL if it answers, else None."""
    if shutil.which("redis-server"):
        port = free_port()
        workdir = tempfile.mkdtemp(prefix="fs-redis-")
        proc = _spawn(port, workdir)
        _wait_ready(port)
        return RedisServer(
            url=f"redis://127.0.0.1:{port}/0", owned=True, process=proc, port=port, workdir=workdir
        )
    url = os.environ.get("FS_TEST_REDIS_URL")
    if url:
        import redis

        try:
            redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
            return RedisServer(url=url, owned=False)
        except redis.exceptions.ConnectionError:
            pass
    return None
