"""Connections to one Redis node for the cluster client: RESP out, hiredis in, error replies as
values (a cluster client must see each MOVED or ASK in its place, not an exception that loses the
replies after it).

- `SyncConnection`: a blocking socket; `read(n)` returns the next n replies.
- `AsyncConnection`: an asyncio protocol that feeds the parser as data arrives and wakes the one
  waiting request once its n replies are complete (no stream reader between).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from typing import Any

import hiredis

Address = tuple[str, int]
_RECV_BYTES = 1 << 17


def _collect(parser: hiredis.Reader, replies: list[Any], n: int) -> bool:
    """Move parsed replies into `replies` until it holds n (True) or the parser needs more (False)."""
    while len(replies) < n:
        reply = parser.gets()
        if reply is False:
            return False
        replies.append(reply)
    return True


class SyncConnection:
    """A blocking socket to one node and its hiredis parser (error replies come back as values)."""

    __slots__ = ("sock", "parser")

    def __init__(self, address: Address, timeout: float, hello: bytes, hello_replies: int) -> None:
        sock = socket.create_connection(address, timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock, self.parser = sock, hiredis.Reader()
        if hello_replies:
            try:
                self.sock.sendall(hello)
                errors = [r for r in self.read(hello_replies) if isinstance(r, hiredis.ReplyError)]
                if errors:
                    raise ConnectionError(f"the node refused the login: {errors[0]}")
            except BaseException:
                self.close()
                raise

    def read(self, n: int) -> list[Any]:
        replies: list[Any] = []
        while not _collect(self.parser, replies, n):
            data = self.sock.recv(_RECV_BYTES)
            if not data:
                raise ConnectionError("connection closed by the server")
            self.parser.feed(data)
        return replies

    def close(self) -> None:
        self.sock.close()


class AsyncConnection(asyncio.Protocol):
    """A connection to one node for asyncio code: feeds the parser as data arrives and wakes the one
    waiting request once its replies are complete (error replies come back as values)."""

    def __init__(self) -> None:
        self.parser = hiredis.Reader()
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[list[Any]] | None = None
        self.wanted = 0
        self.replies: list[Any] = []
        self.lost = False
        self.sock: socket.socket | None = None  # our own (loop_sockets.py): closed once its loop is

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream connection gets a Transport

    def data_received(self, data: bytes) -> None:
        self.parser.feed(data)
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        try:
            if _collect(self.parser, self.replies, self.wanted):
                waiter.set_result(self.replies)
        except hiredis.ProtocolError as e:
            waiter.set_exception(e)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed by the server"))

    def send(self, payload: bytes, n: int) -> asyncio.Future[list[Any]]:
        if self.lost or self.transport is None or self.transport.is_closing():
            raise ConnectionError("connection closed by the server")
        self.replies, self.wanted = [], n
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(payload)
        return self.waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def expire(reply: asyncio.Future[list[Any]], seconds: float) -> None:
    if not reply.done():
        reply.set_exception(asyncio.TimeoutError(f"no reply within {seconds:g}s"))


def pack(args: Sequence[bytes]) -> bytes:
    """One command as RESP (an array of bulk strings)."""
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def get_command(key: bytes) -> bytes:
    """GET key, packed as RESP."""
    return b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(key), key)
