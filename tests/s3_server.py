"""A real S3-compatible server for tests: moto's server mode on a loopback port, a bucket per test.

No S3 server installs on this machine, so the tests run moto's `ThreadedMotoServer`: an HTTP
server in a thread of the test process that speaks the S3 protocol. The store reaches it only
through s3fs over HTTP (`endpoint_url`), exactly as it would reach AWS or MinIO; nothing is
patched in-process. Credentials are dummies set in the standard AWS variables, which s3fs reads.

Without moto (the featurestore[dev] extra), tests that need it are skipped, or fail under CI=true.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from tests.redis_server import free_port, missing


@dataclass(frozen=True)
class S3Server:
    """A running moto S3 server."""

    endpoint_url: str

    def filesystem(self) -> Any:
        """An s3fs client of this server, apart from the store's (other credentials: its own instance)."""
        import s3fs

        return s3fs.S3FileSystem(endpoint_url=self.endpoint_url, key="testing", secret="testing")


@dataclass(frozen=True)
class Bucket:
    """One test's bucket on the server."""

    server: S3Server
    name: str

    def url(self, prefix: str = "") -> str:
        return f"s3://{self.name}/{prefix}".rstrip("/")

    def listed(self, pattern: str) -> list[str]:
        """URLs of the objects on the server matching a glob under the bucket, asked now (no cache)."""
        fs = self.server.filesystem()
        fs.invalidate_cache()
        return sorted(f"s3://{p}" for p in fs.glob(self.url(pattern)))

    @property
    def options_toml(self) -> str:
        """The `[offline] storage_options` line that points a repo at this server."""
        return f'storage_options = {{endpoint_url = "{self.server.endpoint_url}"}}'


@contextmanager
def running_s3_server() -> Iterator[S3Server]:
    """moto's S3 server on a free loopback port, for as long as the block runs."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        missing("needs moto[server] (pip install 'featurestore[dev]') for an S3-compatible test server")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield S3Server(f"http://127.0.0.1:{port}")
    finally:
        server.stop()


def new_bucket(server: S3Server, monkeypatch: pytest.MonkeyPatch) -> Bucket:
    """A new empty bucket, and dummy AWS credentials in the environment (as s3fs reads them)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("FS_S3_ENDPOINT_URL", raising=False)
    name = f"fstest-{uuid.uuid4().hex[:12]}"
    server.filesystem().mkdir(name)
    return Bucket(server, name)
