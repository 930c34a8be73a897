"""Connection limits uvicorn does not have: a cap on a request's header bytes, and a read timeout.

uvicorn with httptools buffers a request's headers without bound (three connections sending 100 MiB
header values grew a server by 300 MB), and has no timeout for a request that arrives slowly: a
client trickling a byte every few seconds holds its connection, and its file descriptor, forever
(slowloris). `LimitedConnection` is an `asyncio.Protocol` around uvicorn's own HTTP protocol that
adds both, and nothing else:

- **Header cap** (`max_header_bytes`, default 64 KiB): the request line and headers of one request,
  and its trailers if the body is chunked; the chunk sizes of a chunked body (and their extensions)
  have the same cap beside a few bytes per chunk. A request over it is answered
  `431 Request Header Fields Too Large` and the connection closed; the bytes over the cap never reach
  uvicorn's parser, so memory stays flat whatever a client sends.
- **Read timeout** (`read_timeout`, default 10 s): a request's headers and body must arrive within it,
  counted from its first byte (for a new connection, from the moment it opened). Past it the
  connection is closed, after a `408 Request Timeout` when its headers had not all arrived.
  Idle keep-alive connections between requests are uvicorn's (`timeout_keep_alive`).

The wrapper follows request boundaries with a parser of its own (httptools, fed the same bytes, with
the same leniency as uvicorn's), and passes every byte on to uvicorn's protocol unchanged. It keeps
following after an upgrade request (uvicorn serves any upgrade but a WebSocket as plain HTTP), and
stops only when uvicorn hands the connection to another protocol (a WebSocket) or closes it. It
implements only the public `asyncio.Protocol` methods and uses uvicorn only through its constructor,
so uvicorn's internals stay uvicorn's. An error answer is written only on a connection's first
request (a later one may have answers in flight ahead of it, which a written status would cut into):
there the connection is just closed. A refused client that does not read is cut off a second later.

    uvicorn.run(app, http=LimitedConnection.factory(max_header_bytes=65536, read_timeout=10.0))
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("featurestore.server")

_ANSWERS = {
    408: b"HTTP/1.1 408 Request Timeout\r\n",
    431: b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
}
_MESSAGES = {
    408: b'{"error":"the request did not arrive within the read timeout"}',
    431: b'{"error":"the request headers are larger than the server accepts"}',
}


class LimitedConnection(asyncio.Protocol):
    """One connection: uvicorn's HTTP protocol (`inner`), with the header cap and the read timeout of
    the module docstring. Built by uvicorn through `LimitedConnection.factory(...)`."""

    @classmethod
    def factory(
        cls,
        *,
        max_header_bytes: int,
        read_timeout: float,
        inner: Callable[..., asyncio.Protocol] = HttpToolsProtocol,
    ) -> Callable[..., LimitedConnection]:
        """What to give uvicorn as its `http` setting (a picklable callable, for `--workers`)."""
        return functools.partial(
            cls, max_header_bytes=max_header_bytes, read_timeout=read_timeout, inner=inner
        )

    def __init__(
        self,
        *,
        max_header_bytes: int,
        read_timeout: float,
        inner: Callable[..., asyncio.Protocol] = HttpToolsProtocol,
        **uvicorn_arguments: Any,
    ) -> None:
        self.inner = inner(**uvicorn_arguments)
        self.max_header_bytes = max_header_bytes
        self.read_timeout = read_timeout
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser: httptools.HttpRequestParser | None = httptools.HttpRequestParser(self)
        # as uvicorn's own parser: bytes after a `Connection: close` request are no parse error
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self.timer: asyncio.TimerHandle | None = None
        self.first = True  # no request of this connection has been read whole yet
        self.messages = 0  # requests begun on this connection
        self.refused = False  # over a limit: nothing more goes to uvicorn
        self._new_request()

    def _new_request(self) -> None:
        """The counts of one request, from its first byte."""
        self.in_headers = False  # it has begun and its headers have not ended
        self.in_body = False  # its headers have ended, the request has not
        self.header_bytes = 0  # its URL and headers (trailers too) as parsed so far
        self.streamed = 0  # the chunks that came wholly inside its headers
        self.framing = (
            0  # bytes of the chunks wholly inside its body that are no body (chunk sizes, trailers)
        )
        self.chunks = 0  # chunk headers of a chunked body
        self.fed_body = 0  # body bytes parsed from the chunk being fed

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._arm()  # the first request must begin, and arrive, within the read timeout
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        if self.parser is not None:
            self._follow(data)
            if self.refused:
                return
        self.inner.data_received(data)
        transport = self.transport
        if transport is not None and transport.get_protocol() is not self:
            # uvicorn handed the connection to a protocol of its own (a WebSocket): no requests any more
            self.parser = None
            self._disarm()

    def _follow(self, data: bytes) -> None:
        """Feed `data` to our parser, count it, and refuse the request when it is over the cap."""
        parser = self.parser
        assert parser is not None
        begun, in_headers, in_body = self.messages, self.in_headers, self.in_body
        self.fed_body = 0
        rest = data
        while rest:
            try:
                parser.feed_data(rest)
                rest = b""
            except httptools.HttpParserUpgrade as upgrade:
                # httptools goes on parsing after an upgrade: uvicorn serves any upgrade but a
                # WebSocket as plain HTTP (a WebSocket is noticed in data_received), so keep following
                rest = rest[upgrade.args[0] :] if upgrade.args and isinstance(upgrade.args[0], int) else b""
            except httptools.HttpParserError:
                self.parser = None  # uvicorn's own parser answers 400 and closes; the timer stays armed
                return
            if self.refused:
                return
        if self.messages == begun:  # a chunk wholly inside one phase of one request counts whole
            if in_headers and self.in_headers:
                self.streamed += len(data)
            elif in_body and self.in_body:
                self.framing += len(data) - self.fed_body
        # Both header counts are at most the true size (a header still arriving is in `streamed`
        # alone), so nobody under the cap is refused, and the parser never holds more than the cap
        # and one read. After the headers, what is no body (chunk sizes with their extensions,
        # trailers) has the same cap, beside a few bytes per chunk.
        if self.in_headers and max(self.streamed, self.header_bytes) > self.max_header_bytes:
            self._refuse(431)
        elif self.in_body and max(self.framing - 32 * self.chunks, self.header_bytes) > self.max_header_bytes:
            self._refuse(431)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.parser = None
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    # -- httptools callbacks of our own parser ---------------------------------------------------

    def on_message_begin(self) -> None:
        self.messages += 1
        self._new_request()
        self.in_headers = True
        self._arm()

    def on_url(self, url: bytes) -> None:
        self.header_bytes += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value) + 3  # at least ":" and CRLF (a trailer too)
        if self.in_body and self.header_bytes > self.max_header_bytes:
            self._refuse(431)

    def on_headers_complete(self) -> None:
        self.in_headers = False
        self.in_body = True
        if self.header_bytes > self.max_header_bytes:
            self._refuse(431)

    def on_chunk_header(self) -> None:
        self.chunks += 1

    def on_body(self, body: bytes) -> None:
        self.fed_body += len(body)

    def on_message_complete(self) -> None:
        self.in_body = False
        self._disarm()
        self.first = False

    # -- the limits ------------------------------------------------------------------------------

    def _arm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_later(self.read_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _timed_out(self) -> None:
        self.timer = None
        log.debug("closing a connection whose request did not arrive within %gs", self.read_timeout)
        self._refuse(None if self.in_body else 408)

    def _refuse(self, status: int | None) -> None:
        """Answer `status` (on a connection's first request only) and close; uvicorn hears no more.
        A client that does not read the answer is cut off after a second (close waits for it)."""
        self.refused = True
        self.parser = None
        self._disarm()
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if status is not None and self.first:
            body = _MESSAGES[status]
            transport.write(
                _ANSWERS[status]
                + b"content-type: application/json\r\nconnection: close\r\ncontent-length: %d\r\n\r\n"
                % len(body)
                + body
            )
        transport.close()
        self.loop.call_later(1.0, transport.abort)
