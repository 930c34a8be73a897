"""`fs serve`'s connections (server/connection.py): the header cap and the read timeout, with
everything HTTP/1.1 asks of a connection still right (raw sockets, so nothing is smoothed over)."""

from __future__ import annotations

import json
import socket
import time
from contextlib import contextmanager

import pytest
from fastapi import APIRouter, WebSocket  # module level: the endpoint's annotations resolve here

from tests.server.conftest import serve

LOOKUP = json.dumps({"features": ["driver_stats:trips"], "entities": {"driver_id": [1, 2]}}).encode()


def post(body: bytes, extra: bytes = b"") -> bytes:
    return (
        b"POST /features/online HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n%s\r\n" % (len(body), extra)
    ) + body


GET_HEALTH = b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n"


def read_answers(sock: socket.socket, n: int) -> list[tuple[int, dict[str, str], bytes]]:
    """n Content-Length framed answers, in the order they came."""
    buf, out = b"", []
    while len(out) < n:
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {len(out)} answers"
            buf += chunk
        head, _, buf = buf.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers["content-length"])
        while len(buf) < length:
            buf += sock.recv(65536)
        out.append((int(lines[0].split()[1]), headers, buf[:length]))
        buf = buf[length:]
    return out


def connect(server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def test_pipelined_requests_are_answered_in_order(sqlite_server_live):
    bad = json.dumps({"features": ["driver_stats:nope"], "entities": {"driver_id": [1]}}).encode()
    with connect(sqlite_server_live) as sock:
        sock.sendall(post(LOOKUP) + GET_HEALTH + post(bad) + GET_HEALTH + post(LOOKUP))
        answers = read_answers(sock, 5)
    assert [a[0] for a in answers] == [200, 200, 404, 200, 200]
    assert json.loads(answers[1][2]) == {"status": "ok"} and json.loads(answers[3][2]) == {"status": "ok"}
    assert "nope" in json.loads(answers[2][2])["error"]
    assert json.loads(answers[0][2]) == json.loads(answers[4][2])


def test_connection_close_expect_continue_and_chunked_bodies(sqlite_server_live):
    with connect(sqlite_server_live) as sock:  # Expect: 100-continue: the body is sent after the 100
        sock.sendall(
            post(b"", b"Expect: 100-continue\r\n").replace(
                b"Content-Length: 0", b"Content-Length: %d" % len(LOOKUP)
            )
        )
        assert sock.recv(100).startswith(b"HTTP/1.1 100")
        sock.sendall(LOOKUP)
        [(status, _, _)] = read_answers(sock, 1)
        assert status == 200
    with connect(sqlite_server_live) as sock:  # a chunked body, then Connection: close
        half = len(LOOKUP) // 2
        sock.sendall(
            b"POST /features/online HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n"
            % (half, LOOKUP[:half], len(LOOKUP) - half, LOOKUP[half:])
        )
        [(status, headers, _)] = read_answers(sock, 1)
        assert status == 200 and headers.get("connection") == "close"
        assert sock.recv(100) == b""  # the server closed the connection


def test_a_client_that_goes_away_mid_body_does_not_break_the_server(sqlite_server_live):
    with connect(sqlite_server_live) as sock:
        sock.sendall(post(LOOKUP)[:-10])
    with connect(sqlite_server_live) as sock:
        sock.sendall(post(LOOKUP))
        assert read_answers(sock, 1)[0][0] == 200


def delay_reads(monkeypatch, store, seconds: float) -> None:
    """The async reads of `store`'s online store wait `seconds` before reading."""
    import asyncio

    cls = type(store.online_store)
    original = cls.read_async

    async def slow(self, keys):
        await asyncio.sleep(seconds)
        return await original(self, keys)

    monkeypatch.setattr(cls, "read_async", slow)


@pytest.fixture
def slow_lookups(monkeypatch, sqlite_store):
    """Lookups that take 0.3 s (the store awaits before reading)."""
    delay_reads(monkeypatch, sqlite_store, 0.3)


def test_keep_alive_requests_are_each_answered(sqlite_server_live):
    with connect(sqlite_server_live) as sock:
        for _ in range(3):
            sock.sendall(post(LOOKUP))
            assert read_answers(sock, 1)[0][0] == 200


def test_a_client_gone_while_its_lookup_runs_leaves_the_server_serving(sqlite_store, slow_lookups, caplog):
    with serve(sqlite_store) as server:
        sock = connect(server)
        sock.sendall(post(LOOKUP))
        sock.close()  # gone before the answer
        with connect(server) as other:
            other.sendall(post(LOOKUP))
            assert read_answers(other, 1)[0][0] == 200
    assert "no complete answer" not in caplog.text and "Traceback" not in caplog.text


def test_shutdown_finishes_the_lookup_in_flight_then_closes(sqlite_store, slow_lookups):
    import threading
    import time

    from featurestore.server import create_app
    from tests.server.conftest import LiveServer

    server = LiveServer(create_app(sqlite_store)).start()
    with connect(server) as sock:
        sock.sendall(post(LOOKUP))
        stopping = threading.Thread(target=server.stop)
        time.sleep(0.1)  # the lookup is under way
        stopping.start()
        [(status, headers, _)] = read_answers(sock, 1)
        assert status == 200 and headers.get("connection") == "close"
        assert sock.recv(100) == b""
        stopping.join(10)
    assert not server.thread.is_alive()


def test_a_refused_caller_is_answered_before_its_body_is_read(tmp_path):
    """No key, a big declared body: the 401 comes at once, not after the body (which never comes)."""
    from tests.server.conftest import build_repo

    store = build_repo(tmp_path, "sqlite", api_keys=True)
    with serve(store) as server, connect(server) as sock:
        sock.sendall(
            b"POST /features/online HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: 50000\r\n\r\n" + LOOKUP
        )
        [(status, headers, body)] = read_answers(sock, 1)
        assert status == 401 and headers["www-authenticate"] == "Bearer"
    store.close()


def test_the_access_log_has_every_request(sqlite_store):
    import logging

    from featurestore.server import create_app
    from tests.server.conftest import LiveServer

    class Lines(logging.Handler):
        def __init__(self):
            super().__init__()
            self.lines: list[str] = []

        def emit(self, record):
            self.lines.append(record.getMessage())

    server = LiveServer(
        create_app(sqlite_store), access_log=True, log_level="info"
    )  # configures uvicorn's loggers
    lines = Lines()
    access = logging.getLogger("uvicorn.access")
    access.addHandler(lines)
    try:
        server.start()
        with connect(server) as sock:
            sock.sendall(post(LOOKUP) + GET_HEALTH)
            assert [a[0] for a in read_answers(sock, 2)] == [200, 200]
    finally:
        server.stop()
        access.removeHandler(lines)
    lines = lines.lines
    assert any('"POST /features/online HTTP/1.1" 200' in line for line in lines), lines
    assert any('"GET /health HTTP/1.1" 200' in line for line in lines), lines


def test_a_lookup_cut_short_by_shutdown_gets_a_500_and_a_close(sqlite_store, monkeypatch):
    """uvicorn cancels what is still running after timeout_graceful_shutdown: the client learns it."""
    import threading

    from featurestore.server import create_app
    from tests.server.conftest import LiveServer

    delay_reads(monkeypatch, sqlite_store, 5)
    server = LiveServer(create_app(sqlite_store), timeout_graceful_shutdown=0.3).start()
    with connect(server) as sock:
        sock.sendall(post(LOOKUP))
        stopping = threading.Thread(target=server.stop)
        stopping.start()
        [(status, headers, body)] = read_answers(sock, 1)
        assert status == 500 and headers.get("connection") == "close"  # uvicorn's own 500
        assert sock.recv(100) == b""
        stopping.join(10)


# -- the header cap and the read timeout (server/connection.py) -------------------------------------


@contextmanager
def limited(store, *, max_header_bytes: int = 64 * 1024, read_timeout: float = 10.0, **options):
    """`store` served with these connection limits."""
    from featurestore.server import create_app
    from featurestore.server.connection import LimitedConnection
    from tests.server.conftest import LiveServer

    http = LimitedConnection.factory(max_header_bytes=max_header_bytes, read_timeout=read_timeout)
    server = LiveServer(create_app(store), http=http, **options).start()
    try:
        yield server
    finally:
        server.stop()


def closed_within(sock: socket.socket, seconds: float) -> tuple[float, bytes]:
    """(seconds until the server closed `sock`, what it wrote before): fails after `seconds`."""
    sock.settimeout(seconds)
    start, got = time.monotonic(), b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        pytest.fail(f"the connection was still open after {seconds}s (got {got[:80]!r})")
    return time.monotonic() - start, got


def test_headers_up_to_the_cap_are_served_and_over_it_answered_431(sqlite_store):
    with limited(sqlite_store, max_header_bytes=8192) as server:
        with connect(server) as sock:  # just under the cap: served as usual
            sock.sendall(post(LOOKUP, b"X-Pad: %s\r\n" % (b"a" * 7000)))
            assert read_answers(sock, 1)[0][0] == 200
        for pad in (9000, 256 * 1024):  # over it, in one piece or in many
            with connect(server) as sock:
                sock.sendall(post(LOOKUP, b"X-Pad: %s\r\n" % (b"a" * pad)))
                _, got = closed_within(sock, 5)
                assert got.startswith(b"HTTP/1.1 431 "), got[:100]
                assert b"connection: close" in got and b"larger than the server accepts" in got
        with connect(server) as sock:  # many small headers count too
            sock.sendall(post(LOOKUP, b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 90) for i in range(100))))
            assert closed_within(sock, 5)[1].startswith(b"HTTP/1.1 431 ")
        with connect(server) as sock:  # the server still serves
            sock.sendall(post(LOOKUP))
            assert read_answers(sock, 1)[0][0] == 200


def test_the_default_cap_refuses_a_256_kib_header_on_a_valid_lookup(sqlite_server_live):
    with connect(sqlite_server_live) as sock:
        sock.sendall(post(LOOKUP, b"X-Pad: %s\r\n" % (b"a" * 60_000)))
        assert read_answers(sock, 1)[0][0] == 200
    with connect(sqlite_server_live) as sock:
        sock.sendall(post(LOOKUP, b"X-Pad: %s\r\n" % (b"a" * 256 * 1024)))
        assert closed_within(sock, 5)[1].startswith(b"HTTP/1.1 431 ")


def test_endless_header_values_keep_memory_flat(sqlite_server_live):
    """Three connections each try to send a 100 MiB header value (no end of headers): the server
    closes each after the cap, so the senders stop early and the server's memory does not grow."""
    import psutil

    process = psutil.Process()
    before = process.memory_info().rss
    chunk = b"a" * 65536
    sent_each = []
    for _ in range(3):
        sock = connect(sqlite_server_live)
        sock.sendall(b"POST /features/online HTTP/1.1\r\nHost: t\r\nX-Big: ")
        sent = 0
        try:
            while sent < 100 * 1024 * 1024:  # bounded: at most 100 MiB per connection
                sock.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            sock.close()
        sent_each.append(sent)
    grown = process.memory_info().rss - before
    # what the kernel's socket buffers take before the reset: a few MiB, never the 100 MiB
    assert max(sent_each) < 32 * 1024 * 1024, sent_each
    assert grown < 40 * 1024 * 1024, f"the server grew by {grown / 2**20:.0f} MiB"
    with connect(sqlite_server_live) as sock:
        sock.sendall(post(LOOKUP))
        assert read_answers(sock, 1)[0][0] == 200


def test_partial_headers_get_408_and_a_close_within_the_read_timeout(sqlite_store):
    with limited(sqlite_store, read_timeout=1.0) as server:
        with connect(server) as sock:  # the request line and one header, then nothing
            sock.sendall(b"POST /features/online HTTP/1.1\r\nHost: t\r\n")
            took, got = closed_within(sock, 1.0 + 1.0)
            assert got.startswith(b"HTTP/1.1 408 ") and took >= 0.8
        with connect(server) as sock:  # a connection that never sends a byte
            took, got = closed_within(sock, 1.0 + 1.0)
            assert got.startswith(b"HTTP/1.1 408 ")


def test_a_partial_body_is_closed_within_the_read_timeout(sqlite_store, caplog):
    with limited(sqlite_store, read_timeout=1.0) as server:
        with connect(server) as sock:
            sock.sendall(post(LOOKUP)[:-10])  # headers whole, the body short of 10 bytes
            took, got = closed_within(sock, 1.0 + 1.0)
            assert got == b"" and took >= 0.8  # the app may be reading the body: no status is written
        with connect(server) as sock:
            sock.sendall(post(LOOKUP))
            assert read_answers(sock, 1)[0][0] == 200
    assert "Traceback" not in caplog.text


def test_trickled_requests_are_closed_though_bytes_keep_coming(sqlite_store):
    """Slowloris: 50 connections each sending a header byte every 0.2 s; all are closed within the
    read timeout (from each request's first byte) + 1 s, and the server answers others meanwhile."""
    with limited(sqlite_store, read_timeout=1.0) as server:
        socks = [connect(server) for _ in range(50)]
        for sock in socks:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        start = time.monotonic()
        open_socks = list(socks)
        while open_socks and time.monotonic() - start < 3.0:  # bounded: at most 3 s of trickling
            for sock in list(open_socks):
                try:
                    sock.sendall(b"a")
                except (BrokenPipeError, ConnectionResetError):
                    open_socks.remove(sock)
            time.sleep(0.2)
        with connect(server) as other:  # served while the trickling went on
            other.sendall(GET_HEALTH)
            assert read_answers(other, 1)[0][0] == 200
        for sock in socks:
            took, got = closed_within(sock, 1.0 + 1.0 - min(time.monotonic() - start, 2.0) + 0.5)
            assert got == b"" or got.startswith(b"HTTP/1.1 408 ")
            sock.close()
        assert time.monotonic() - start < 1.0 + 1.0 + 1.0


def test_a_slow_answer_is_not_cut_by_the_read_timeout(sqlite_store, monkeypatch):
    """The timeout is for reading a request: a lookup taking longer than it still gets its answer, and
    the connection serves the next request."""
    delay_reads(monkeypatch, sqlite_store, 1.5)
    with limited(sqlite_store, read_timeout=1.0) as server, connect(server) as sock:
        sock.sendall(post(LOOKUP))
        assert read_answers(sock, 1)[0][0] == 200
        sock.sendall(post(LOOKUP))
        assert read_answers(sock, 1)[0][0] == 200


def test_keep_alive_and_pipelining_under_the_limits(sqlite_store):
    """Requests sent a little apart on one connection, and pipelined ones split at odd places, are all
    answered: the timer is each request's own, the header count restarts per request."""
    with limited(sqlite_store, max_header_bytes=2048, read_timeout=1.0) as server, connect(server) as sock:
        for _ in range(3):  # 3 x 0.6 s: longer than the read timeout in all, shorter per request
            time.sleep(0.6)
            sock.sendall(post(LOOKUP, b"X-Pad: %s\r\n" % (b"p" * 1500)))
            assert read_answers(sock, 1)[0][0] == 200
        stream = (post(LOOKUP, b"X-Pad: %s\r\n" % (b"p" * 1500)) + GET_HEALTH) * 4
        for i in range(0, len(stream), 777):
            sock.sendall(stream[i : i + 777])
        assert [a[0] for a in read_answers(sock, 8)] == [200] * 8


def test_fs_serve_takes_the_limits_from_the_config(tmp_path, monkeypatch):
    from featurestore.config import load_config
    from featurestore.server.run import uvicorn_options
    from tests.server.conftest import build_repo

    build_repo(tmp_path, "sqlite").close()
    monkeypatch.setenv("FS_MAX_HEADER_BYTES", "4096")
    monkeypatch.setenv("FS_READ_TIMEOUT_SECONDS", "2.5")
    http = uvicorn_options(load_config(tmp_path).server)["http"]
    assert http.keywords["max_header_bytes"] == 4096 and http.keywords["read_timeout"] == 2.5
    import pickle  # the setting crosses to --workers processes

    assert pickle.loads(pickle.dumps(http)).keywords == http.keywords


# -- found by a hostile review: no request shape turns the limits off --------------------------------


@pytest.mark.parametrize(
    "upgrade",
    [
        b"Connection: Upgrade\r\nUpgrade: h2c\r\n",  # what curl --http2 sends on http://
        b"Connection: Upgrade\r\nUpgrade: foo\r\n",
        b"Connection: Upgrade\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n",  # uvicorn reads the last
    ],
)
def test_an_upgrade_request_served_as_http_keeps_the_limits(sqlite_store, upgrade):
    with limited(sqlite_store, max_header_bytes=4096, read_timeout=1.0) as server:
        with connect(server) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n" + upgrade + b"\r\n")
            assert read_answers(sock, 1)[0][0] == 200
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\nX-Pad: %s\r\n\r\n" % (b"a" * 8000))
            took, got = closed_within(sock, 2.0)
            assert b"200 OK" not in got  # refused and closed (no status: not the first request)
        with connect(server) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n" + upgrade + b"\r\n")
            assert read_answers(sock, 1)[0][0] == 200
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n")  # then a partial request
            took, _ = closed_within(sock, 1.0 + 1.0)


def test_trailers_and_chunk_sizes_of_a_chunked_body_are_capped(sqlite_store):
    head = b"POST /features/online HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    body = b"%x\r\n%s\r\n" % (len(LOOKUP), LOOKUP)
    with limited(sqlite_store, max_header_bytes=4096, read_timeout=5.0) as server:
        with connect(server) as sock:  # small trailers: served
            sock.sendall(head + body + b"0\r\nX-Trailer: ok\r\n\r\n")
            assert read_answers(sock, 1)[0][0] == 200
        with connect(server) as sock:  # one endless trailer field, in pieces
            sock.sendall(head + body + b"0\r\nX-Trailer: ")
            sent = 0
            try:
                while sent < 8 * 1024 * 1024:  # bounded
                    sock.sendall(b"a" * 65536)
                    sent += 65536
            except (BrokenPipeError, ConnectionResetError):
                pass
            assert sent < 4 * 1024 * 1024, sent
        with connect(server) as sock:  # a chunk extension that never ends
            sock.sendall(head + b"5;ext=")
            try:
                for _ in range(8):  # bounded; past the cap it is refused
                    time.sleep(0.05)
                    sock.sendall(b"x" * 2000)
            except (BrokenPipeError, ConnectionResetError):
                pass
            took, got = closed_within(sock, 2.0)
            assert b"200 OK" not in got


def test_headers_written_tightly_up_to_the_cap_are_not_refused(sqlite_store):
    """The count never exceeds a request's true size: 300 headers written `a:b` with no space."""
    headers = b"".join(b"h%d:%s\r\n" % (i, b"v" * 20) for i in range(300))
    request = b"GET /health HTTP/1.1\r\nHost:t\r\n" + headers + b"\r\n"
    with limited(sqlite_store, max_header_bytes=len(request)) as server, connect(server) as sock:
        sock.sendall(request)
        assert read_answers(sock, 1)[0][0] == 200


def test_bytes_after_a_connection_close_request_stay_limited(sqlite_store):
    """As uvicorn's parser, ours accepts data after `Connection: close` (so it keeps counting)."""
    with limited(sqlite_store, max_header_bytes=4096, read_timeout=1.0) as server, connect(server) as sock:
        sock.sendall(
            GET_HEALTH.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n") + b"GET /x HTTP/1.1\r\nX: "
        )
        [(status, headers, _)] = read_answers(sock, 1)
        assert status == 200 and headers.get("connection") == "close"
        closed_within(sock, 2.0)


def test_a_websocket_lives_past_the_read_timeout(sqlite_store):
    """uvicorn hands a WebSocket to a protocol of its own: the request timer stops there."""
    from websockets.sync.client import connect as ws_connect

    from featurestore.server import create_app
    from featurestore.server.connection import LimitedConnection
    from tests.server.conftest import LiveServer

    router = APIRouter()

    @router.websocket("/echo")
    async def echo(ws: WebSocket):
        await ws.accept()
        while True:
            await ws.send_text(await ws.receive_text())

    http = LimitedConnection.factory(max_header_bytes=4096, read_timeout=0.5)
    server = LiveServer(create_app(sqlite_store, routers=[router]), http=http).start()
    try:
        with ws_connect(f"ws://127.0.0.1:{server.port}/echo", open_timeout=5) as ws:
            ws.send("one")
            assert ws.recv(timeout=5) == "one"
            time.sleep(1.2)  # over twice the read timeout
            ws.send("two")
            assert ws.recv(timeout=5) == "two"
    finally:
        server.stop()
