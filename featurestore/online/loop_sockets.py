"""asyncio connections kept idle per event loop, whose sockets are closed once their loop is closed.

    sock, conn = await connect(MyProtocol, host="10.0.0.5", port=6379)    # or path="/run/redis.sock"
    pool = pools.get(loop)                                                # pools: dict[loop, ...]
    sweep_closed(pools, lambda pool: [c.sock for c in pool])              # on a new loop, on close()

Why: the online stores keep idle connections per event loop (a transport belongs to one loop). Each
`asyncio.run` (a script, a notebook, a sync wrapper around async code) makes a new loop and closes
it when done, with its transports still open: their sockets would stay open until the process
exits (a transport refers to its loop, so a WeakKeyDictionary keyed by the loop never lets go).
A transport cannot be closed once its loop is, so these connections are made on sockets of our
own, which `sweep_closed` can close itself: their loop's selector is closed too, so no loop has
the socket registered any more.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterable
from typing import TypeVar

P = TypeVar("P", bound=asyncio.Protocol)
T = TypeVar("T")


async def connect(
    factory: Callable[[], P], host: str | None = None, port: int | None = None, path: str | None = None
) -> tuple[socket.socket, P]:
    """A stream connection to host:port (TCP) or `path` (a unix socket), on a socket of our own."""
    loop = asyncio.get_running_loop()
    if path is not None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target: object = path
    else:
        family, kind, proto, _, target = (await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM))[0]
        sock = socket.socket(family, kind, proto)
    try:
        sock.setblocking(False)
        await loop.sock_connect(sock, target)  # type: ignore[arg-type]
        if path is not None:
            _, protocol = await loop.create_unix_connection(factory, sock=sock)
        else:
            _, protocol = await loop.create_connection(factory, sock=sock)
    except BaseException:
        sock.close()
        raise
    return sock, protocol


def sweep_closed(
    pools: dict[asyncio.AbstractEventLoop, T], sockets: Callable[[T], Iterable[socket.socket | None]]
) -> None:
    """Forget the pools of event loops that are closed, closing their connections' sockets."""
    for loop in [loop for loop in list(pools) if loop.is_closed()]:
        pool = pools.pop(loop, None)
        if pool is not None:
            for sock in sockets(pool):
                if sock is not None:
                    sock.close()
