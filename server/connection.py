"""Connection limits uvicorn does not have: a cap on a request's header bytes, and a read timeout.

uvicorn with httptools buffers a request's headers without bound (three connections sending 100 MiB
header values grew a server by 300 MB), and has no timeout for a request that arrives slowly: a
client trickling a byte every few seconds holds its connection, and its file descriptor, forever
(slowloris). `LimitedConnection` is an `asyncio.Protocol` around uvicorn's own HTTP protocol that
adds both, and nothing else:

- **Header cap** (`max_header_bytes`, default 64 KiB): the request line and headers of one request.
  A request over it is answered `431 Request Header Fields Too Large` and the connection closed; the
  bytes over the cap never reach uvicorn's parser, so memory stays flat whatever a client sends.
- **Read timeout** (`read_timeout`, default 10 s): a request's headers and body must arrive within it,
  counted from its first byte (for a new connection, from the moment it opened). Past it the
  connection is closed, after a `408 Request Timeout` when nothing was read yet of the request's body.
  Idle keep-alive connections between requests are uvicorn's (`timeout_keep_alive`).

The wrapper follows request boundaries with a parser of its own (httptools, fed the same bytes,
with callbacks for the message's begin, URL, headers and end, never its body), and passes every byte
on to uvicorn's protocol unchanged. It implements only the public `asyncio.Protocol` methods and
uses uvicorn only through its constructor, so uvicorn's internals stay uvicorn's. An error answer is
written only on a connection's first request (a later one may have answers in flight ahead of it,
which a written status would cut into): there the connection is just closed.

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
        self.timer: asyncio.TimerHandle | None = None
        self.first = True  # no request of this connection has been read whole yet
        self.in_headers = False  # a request has begun and its headers have not ended
        self.header_bytes = 0  # of the request being read: its URL and the headers parsed so far
        self.streamed = 0  # of the request being read: the chunks that came wholly inside its headers
        self.headers_read = False  # of the request being read (408 only before its body)
        self.websocket = False  # the request being read asks for a WebSocket upgrade
        self.refused = False  # over a limit: nothing more goes to uvicorn

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._arm()  # the first request must begin, and arrive, within the read timeout
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        parser = self.parser
        if parser is not None:
            if self.in_headers:  # begun inside a request's headers: header bytes, unless they end in it
                self.streamed += len(data)
            try:
                parser.feed_data(data)
            except httptools.HttpParserUpgrade:
                # uvicorn hands a WebSocket to a protocol of its own (whose lifetime is not a request's);
                # any other upgrade it serves as plain HTTP, so that request keeps its read timeout
                self.parser = None
                if self.websocket:
                    self._disarm()
            except httptools.HttpParserError:
                self._stop_following()  # uvicorn's own parser answers 400
            if self.refused:
                return
            # Headers not ended yet: both counts are at most their true size (a header still arriving
            # is in `streamed` alone), so nobody under the cap is refused, and the parser never holds
            # more than the cap and one chunk.
            if self.in_headers and max(self.streamed, self.header_bytes) > self.max_header_bytes:
                self._refuse(431)
                return
        self.inner.data_received(data)

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
        self.in_headers = True
        self.header_bytes = self.streamed = 0
        self.headers_read = self.websocket = False
        self._arm()

    def on_url(self, url: bytes) -> None:
        self.header_bytes += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value) + 4  # ": " and CRLF
        if len(name) == 7 and name.lower() == b"upgrade":
            self.websocket = value.strip().lower() == b"websocket"

    def on_headers_complete(self) -> None:
        self.in_headers = False
        self.headers_read = True
        if self.header_bytes > self.max_header_bytes:
            self._refuse(431)

    def on_message_complete(self) -> None:
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
        self._refuse(None if self.headers_read else 408)

    def _stop_following(self) -> None:
        """No more request boundaries to follow (an upgrade, or bytes uvicorn will refuse itself)."""
        self.parser = None
        self.in_headers = False
        self._disarm()

    def _refuse(self, status: int | None) -> None:
        """Answer `status` (on a connection's first request only) and close; uvicorn hears no more."""
        self.refused = True
        self._stop_following()
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
