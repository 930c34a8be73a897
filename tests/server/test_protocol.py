"""`fs serve`'s HTTP protocol (server/protocol.py): the fast lane answered from the protocol, with
everything HTTP/1.1 asks of a connection still right (raw sockets, so nothing is smoothed over)."""

from __future__ import annotations

import json
import socket

import pytest

from featurestore.server.protocol import FastLaneProtocol
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


@pytest.fixture
def answered_here(monkeypatch) -> list[tuple[str, str]]:
    """(road, path) of the requests the protocol answered itself: "whole" (read whole, one write) or
    "hook" (uvicorn's request cycle, then the app's layer directly)."""
    seen: list[tuple[str, str]] = []
    whole, hook = FastLaneProtocol._answer_whole, FastLaneProtocol._answer

    async def spy_whole(self, request):
        seen.append(("whole", request.scope["path"]))
        await whole(self, request)

    async def spy_hook(self, cycle, fs_app, lane):
        seen.append(("hook", cycle.scope["path"]))
        await hook(self, cycle, fs_app, lane)

    monkeypatch.setattr(FastLaneProtocol, "_answer_whole", spy_whole)
    monkeypatch.setattr(FastLaneProtocol, "_answer", spy_hook)
    return seen


def connect(server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def test_lookups_are_answered_by_the_protocol_with_the_apps_answer(
    sqlite_server_live, answered_here, monkeypatch
):
    from featurestore.server.middleware import ServerMiddleware

    as_bytes = []
    serve_bytes = ServerMiddleware.serve_bytes

    async def spy(self, scope, body, lane):
        as_bytes.append(scope["path"])
        return await serve_bytes(self, scope, body, lane)

    monkeypatch.setattr(ServerMiddleware, "serve_bytes", spy)
    with connect(sqlite_server_live) as sock:
        sock.sendall(post(LOOKUP))
        [(status, headers, body)] = read_answers(sock, 1)
    assert answered_here == [("whole", "/features/online")] and as_bytes == ["/features/online"]
    assert status == 200 and headers["content-type"] == "application/json"
    with sqlite_server_live.client() as client:  # the same answer as through httpx
        assert json.loads(body) == client.post("/features/online", content=LOOKUP).json()


def test_pipelined_fast_and_ordinary_requests_are_answered_in_order(sqlite_server_live, answered_here):
    bad = json.dumps({"features": ["driver_stats:nope"], "entities": {"driver_id": [1]}}).encode()
    with connect(sqlite_server_live) as sock:
        sock.sendall(post(LOOKUP) + GET_HEALTH + post(bad) + GET_HEALTH + post(LOOKUP))
        answers = read_answers(sock, 5)
    assert [a[0] for a in answers] == [200, 200, 404, 200, 200]
    assert json.loads(answers[1][2]) == {"status": "ok"} and json.loads(answers[3][2]) == {"status": "ok"}
    assert "nope" in json.loads(answers[2][2])["error"]
    assert json.loads(answers[0][2]) == json.loads(answers[4][2])
    # The first lookup is read whole; the later ones, pipelined behind other requests, queue in uvicorn.
    assert answered_here == [
        ("whole", "/features/online"),
        ("hook", "/features/online"),
        ("hook", "/features/online"),
    ]


def test_connection_close_expect_continue_and_chunked_bodies(sqlite_server_live, answered_here):
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
    assert answered_here == [("hook", "/features/online")] * 2  # uvicorn's road for both


def test_a_client_that_goes_away_mid_body_does_not_break_the_server(sqlite_server_live):
    with connect(sqlite_server_live) as sock:
        sock.sendall(post(LOOKUP)[:-10])
    with connect(sqlite_server_live) as sock:
        sock.sendall(post(LOOKUP))
        assert read_answers(sock, 1)[0][0] == 200


@pytest.mark.parametrize("telemetry", [False, True])
def test_the_fast_lane_keeps_out_of_fastapis_way_only_without_its_telemetry(
    sqlite_store, monkeypatch, telemetry
):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from featurestore.server import create_app

    app = create_app(sqlite_store)
    if not hasattr(app, "_native_telemetry"):
        pytest.skip("this FastAPI has no native telemetry")
    monkeypatch.setattr(app._native_telemetry, "enabled", lambda: telemetry)
    through_fastapi: list[str] = []
    fastapi_call = FastAPI.__call__

    async def spy(self, scope, receive, send):
        through_fastapi.append(scope.get("path", scope["type"]))
        await fastapi_call(self, scope, receive, send)

    monkeypatch.setattr(FastAPI, "__call__", spy)
    with TestClient(app) as client:
        assert client.post("/features/online", content=LOOKUP).status_code == 200
        assert client.get("/health").status_code == 200
    assert ("/features/online" in through_fastapi) is telemetry
    assert "/health" in through_fastapi


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


def test_keep_alive_requests_are_each_read_whole(sqlite_server_live, answered_here):
    with connect(sqlite_server_live) as sock:
        for _ in range(3):
            sock.sendall(post(LOOKUP))
            assert read_answers(sock, 1)[0][0] == 200
    assert answered_here == [("whole", "/features/online")] * 3


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


def test_the_bytes_road_answers_errors_exactly_as_the_asgi_road(tmp_path):
    """fs serve's protocol answers lookups without Request/Response objects (Lane.answer_bytes); every
    error must still be the app's own answer: compared with the same app behind TestClient."""
    from fastapi.testclient import TestClient

    from featurestore.server import create_app
    from tests.server.conftest import KEYS, build_repo

    store = build_repo(tmp_path, "sqlite", api_keys=True, max_batch_rows=5)
    reader, writer = KEYS["reader"][1], KEYS["writer"][1]
    good = {"features": ["driver_stats:trips"], "entities": {"driver_id": [1, 2]}}
    cases = [
        (reader, json.dumps(good).encode()),
        (None, json.dumps(good).encode()),  # 401
        ("not-a-key-0123456789", json.dumps(good).encode()),  # 401
        (reader, b'{"features": ["driver_stats:trips"], "entities": '),  # 422 bad JSON
        (reader, json.dumps({**good, "features": ["driver_stats:trip"]}).encode()),  # 404 with a suggestion
        (reader, json.dumps({**good, "entities": {"driver_id": list(range(6))}}).encode()),  # 413 batch
        (reader, json.dumps({**good, "entities": {"driver_id": [1], "x": [1, 2]}}).encode()),  # 422 ragged
        (writer, json.dumps({**good, "include_status": "yes"}).encode()),  # 422 field
    ]
    kept = ("content-type", "retry-after", "www-authenticate")
    with serve(store) as server, TestClient(create_app(store)) as asgi, connect(server) as sock:
        for key, body in cases:
            extra = b"X-API-Key: %s\r\n" % key.encode() if key else b""
            sock.sendall(post(body, extra))
            [(status, headers, answer)] = read_answers(sock, 1)
            expected = asgi.post("/features/online", content=body, headers={"X-API-Key": key} if key else {})
            assert status == expected.status_code, (key, body)
            assert json.loads(answer) == expected.json()
            assert {k: headers.get(k) for k in kept} == {k: expected.headers.get(k) for k in kept}
    store.close()


def test_a_refused_caller_is_answered_before_its_body_is_read(tmp_path, answered_here):
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
    assert answered_here == [("hook", "/features/online")]
    store.close()


def test_large_bodies_take_uvicorns_road(sqlite_server_live, answered_here):
    from featurestore.server.protocol import WHOLE_BODY_LIMIT

    ids = list(range(1, 21)) * (WHOLE_BODY_LIMIT // 60)  # over the limit, under max_batch_rows? no: 413
    big = json.dumps({"features": ["driver_stats:trips"], "entities": {"driver_id": ids}}).encode()
    assert len(big) > WHOLE_BODY_LIMIT
    with connect(sqlite_server_live) as sock:
        sock.sendall(post(big))
        [(status, _, body)] = read_answers(sock, 1)
    assert status == 413 and "max_batch_rows" in json.loads(body)["error"]
    assert answered_here == [("hook", "/features/online")]


def test_the_access_log_has_the_requests_answered_whole(sqlite_store):
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
        assert status == 500 and headers.get("connection") == "close"
        assert json.loads(body) == {"error": "internal server error: the server logged the details"}
        assert sock.recv(100) == b""
        stopping.join(10)
