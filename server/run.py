"""Run the feature server with uvicorn: what `fs serve --host --port --workers` calls.

    from featurestore.server.run import serve
    serve("definitions", "127.0.0.1", 6566, workers=1)

uvicorn runs with uvloop and httptools (the `server` extra brings them via uvicorn[standard]), its
HTTP protocol inside `featurestore.server.connection.LimitedConnection`, which adds the header cap
and the read timeout of `[server]` (`max_header_bytes`, `read_timeout_seconds`) that uvicorn lacks.
Every request then goes through the ASGI app and its middleware as usual.
With several workers, each process builds its own app from `$FS_REPO` through the factory
`featurestore.server.run:app_from_env`, and the workers share a metrics folder (`$FS_METRICS_DIR`, a temporary
one unless set) so a scrape of any worker counts the requests of all (`featurestore.server.metrics`). Running
`featurestore.server.run:app_from_env` under another process manager (gunicorn with uvicorn workers), set
`FS_METRICS_DIR` to a folder of that server's own, emptied before it starts (`serve` empties the
one it is given of earlier snapshots).
Access logs are off by default: `/metrics` counts every request.
`fs ui` is `serve` with `open_browser=True`: the web UI's address (`ui_url`) opens in the browser once
the server listens, from a thread of its own, and only where a graphical browser can open.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from featurestore import FeatureStore
from featurestore.config import ServerConfig

from .app import create_app
from .connection import LimitedConnection
from .metrics import SNAPSHOTS

REPO_ENV = "FS_REPO"
METRICS_DIR_ENV = "FS_METRICS_DIR"
log = logging.getLogger("featurestore.server")


def uvicorn_options(server: ServerConfig | None = None, **overrides: Any) -> dict[str, Any]:
    """The uvicorn settings `fs serve` runs with, for the `[server]` settings `server` (default: the
    defaults); the tests' live servers use them too."""
    server = server or ServerConfig()
    http = LimitedConnection.factory(
        max_header_bytes=server.max_header_bytes, read_timeout=server.read_timeout_seconds
    )
    return {"loop": "auto", "http": http, "server_header": False, **overrides}


def app_from_env() -> FastAPI:
    """App factory for uvicorn workers: the repo at `$FS_REPO` (else the current folder's)."""
    store = FeatureStore(os.environ.get(REPO_ENV) or None)
    check_on_demand_files(store)
    return create_app(store, metrics_dir=os.environ.get(METRICS_DIR_ENV) or None)


def check_on_demand_files(store: FeatureStore) -> None:
    """Refuse to serve when an on-demand view's function on disk no longer matches the hash recorded
    at apply (DefinitionsChangedError): the server runs the repo's code, and only code that was applied."""
    from featurestore.errors import NotAppliedError
    from featurestore.on_demand_code import verify_functions

    try:
        catalog = store.catalog
    except NotAppliedError:
        return  # nothing applied: the server starts and says so per request
    verify_functions(catalog, store.repo_path)


def ui_url(host: str, port: int) -> str:
    """The web UI's address on a server bound to `host`:`port` (a wildcard host: this machine's)."""
    shown = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://{f'[{shown}]' if ':' in shown else shown}:{port}/ui/"


def can_open_browser() -> bool:
    """Whether a graphical browser can be opened here: $BROWSER names one, macOS, Windows, or an X or
    Wayland display. (Without one, `webbrowser` would start a text browser in the server's terminal.)"""
    if os.environ.get("BROWSER"):
        return True
    if sys.platform == "darwin" or sys.platform.startswith("win"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def open_when_listening(url: str, host: str, port: int, wait_seconds: float = 60.0) -> threading.Thread:
    """Open `url` in the browser once `host`:`port` takes connections, from a daemon thread: the
    server never waits for it, and no browser (or one that fails) is a line on stderr, not an error."""
    target = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)

    def opener() -> None:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                socket.create_connection((target, port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    return  # never listened (the port was taken, or it stopped): nothing to open
                time.sleep(0.1)
        opened = False
        if can_open_browser():
            import webbrowser

            try:
                opened = webbrowser.open(url)
            except Exception as e:  # noqa: BLE001 - a browser that fails must not stop the server
                log.warning("could not open a browser: %s", e)
        if not opened:
            print(f"No browser to open here: go to {url}", file=sys.stderr, flush=True)

    thread = threading.Thread(target=opener, name="fs-ui-open-browser", daemon=True)
    thread.start()
    return thread


def serve(
    repo_path: str | None,
    host: str = "127.0.0.1",
    port: int = 6566,
    workers: int = 1,
    *,
    log_level: str = "info",
    access_log: bool = False,
    open_browser: bool = False,
) -> None:
    """Serve the repo at `repo_path` (None: the current folder's) until interrupted; with
    `open_browser`, open the web UI in the browser once the server listens (`fs ui`)."""
    import uvicorn

    store = FeatureStore(repo_path)
    check_on_demand_files(store)
    if open_browser:
        open_when_listening(ui_url(host, port), host, port)
    options = uvicorn_options(
        store.config.server, host=host, port=port, log_level=log_level, access_log=access_log
    )
    if workers > 1:
        # Each worker is a fresh process: pass the repo by environment and let it build its own app.
        os.environ[REPO_ENV] = str(store.config.repo_path)
        own_metrics = None
        if not os.environ.get(METRICS_DIR_ENV):
            own_metrics = os.environ[METRICS_DIR_ENV] = tempfile.mkdtemp(prefix="fs-serve-metrics-")
        else:  # a folder of the caller's: the counts start from zero, as a restarted process's do
            for old in Path(os.environ[METRICS_DIR_ENV]).glob(SNAPSHOTS):
                old.unlink(missing_ok=True)
        try:
            uvicorn.run("featurestore.server.run:app_from_env", factory=True, workers=workers, **options)
        finally:
            if own_metrics is not None:
                shutil.rmtree(own_metrics, ignore_errors=True)
                del os.environ[METRICS_DIR_ENV]
    else:
        uvicorn.run(create_app(store), **options)
