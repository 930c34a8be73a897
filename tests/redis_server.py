"""A real Redis server for tests and benchmarks: our own `redis-server` on a free port.

We start our own server whenever `redis-server` is installed, so tests may flush it freely. Without
the binary we fall back to $FS_TEST_REDIS_URL (never flushed: tests use unique key prefixes). Under
CI=true, no Redis at all is a failure, not a skip.

`start_redis(tls=True)` starts a server that speaks TLS only (`--tls-port`, no plain port), with a
throwaway CA and server certificate made by the `openssl` command (`tls_certificates`); its `url` is
`rediss://127.0.0.1:<port>/0?ssl_ca_certs=<ca.pem>`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


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


@dataclass(frozen=True)
class TlsFiles:
    """A throwaway certificate authority and a server certificate it signed (for 127.0.0.1, localhost)."""

    ca_cert: str
    cert: str
    key: str


def tls_certificates(directory: str) -> TlsFiles:
    """Make a CA and a server certificate in `directory` with the openssl command (no download)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        missing("needs the openssl command to make TLS certificates (apt-get install openssl)")
    d = Path(directory)
    files = TlsFiles(ca_cert=str(d / "ca.pem"), cert=str(d / "server.pem"), key=str(d / "server.key"))
    (d / "san.cnf").write_text("subjectAltName = IP:127.0.0.1, DNS:localhost\n")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, cwd=d)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=featurestore test CA",
        "-keyout", "ca.key", "-out", files.ca_cert)  # fmt: skip
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        files.key,
        "-out",
        "server.csr",
    )
    run("x509", "-req", "-in", "server.csr", "-CA", files.ca_cert, "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-extfile", "san.cnf", "-out", files.cert)  # fmt: skip
    return files


@dataclass
class RedisServer:
    url: str
    owned: bool  # True: we started it and may flush it
    process: subprocess.Popen | None = None
    port: int | None = None
    workdir: str | None = None
    tls: TlsFiles | None = None  # set: the server speaks TLS only, on `port`

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
        self.process = _spawn(self.port, self.workdir, self.tls)
        _wait_ready(self.port, tls=self.tls)


def _spawn(port: int, workdir: str | None, tls: TlsFiles | None = None) -> subprocess.Popen:
    ports = ["--port", str(port)]
    if tls is not None:  # TLS only: no plain port, clients need not present a certificate
        ports = ["--port", "0", "--tls-port", str(port), "--tls-cert-file", tls.cert, "--tls-key-file", tls.key,
                 "--tls-ca-cert-file", tls.ca_cert, "--tls-auth-clients", "no"]  # fmt: skip
    return subprocess.Popen(
        [
            "redis-server",
            *ports,
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


def _wait_ready(port: int, timeout: float = 10.0, tls: TlsFiles | None = None) -> None:
    import redis

    deadline = time.monotonic() + timeout
    options = {} if tls is None else {"ssl": True, "ssl_ca_certs": tls.ca_cert}
    while True:
        try:
            redis.Redis(port=port, socket_connect_timeout=0.2, **options).ping()
            return
        except redis.exceptions.ConnectionError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {port} did not start within {timeout}s") from None
            time.sleep(0.05)


def start_redis(tls: bool = False) -> RedisServer | None:
    """Our own server if redis-server is installed, else $FS_TEST_REDIS_URL if it answers, else None.

    tls=True: our own server speaking TLS only (never $FS_TEST_REDIS_URL), or None without the binary."""
    if shutil.which("redis-server"):
        port = free_port()
        workdir = tempfile.mkdtemp(prefix="fs-redis-")
        certs = tls_certificates(workdir) if tls else None
        proc = _spawn(port, workdir, certs)
        try:
            _wait_ready(port, tls=certs)
        except RuntimeError:
            proc.kill()
            raise
        if certs is not None:
            url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={certs.ca_cert}"
        else:
            url = f"redis://127.0.0.1:{port}/0"
        return RedisServer(url=url, owned=True, process=proc, port=port, workdir=workdir, tls=certs)
    if tls:
        return None
    url = os.environ.get("FS_TEST_REDIS_URL")
    if url:
        import redis

        try:
            redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
            return RedisServer(url=url, owned=False)
        except redis.exceptions.ConnectionError:
            pass
    return None
