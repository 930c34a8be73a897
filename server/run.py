"""Run the feature server with uvicorn: what `fs serve --host --port --workers` calls.

    from featurestore.server.run import serve
    serve("definitions", "127.0.0.1", 6566, workers=1)

uvloop and httptools are used when installed (the `server` extra brings them via uvicorn[standard]);
with httptools, the protocol is `featurestore.server.protocol.FastLaneProtocol` (uvicorn's, answering the fast
lane from the protocol).
With several workers, each process builds its own app from `$FS_REPO` through the factory
`featurestore.server.run:app_from_env`, and the workers share a metrics folder (`$FS_METRICS_DIR`, a temporary
one unless set) so a scrape of any worker counts the requests of all (`featurestore.server.metrics`). Running
`featurestore.server.run:app_from_env` under another process manager (gunicorn with uvicorn workers), set
`FS_METRICS_DIR` to a folder of that server's own, emptied before it starts (`serve` empties the
one it is given of earlier snapshots).
Access logs are off by default: `/metrics` counts every request.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from featurestore import FeatureStore
from featurestore.config import find_repo

from .app import create_app
from .metrics import SNAPSHOTS

REPO_ENV = "FS_REPO"
METRICS_DIR_ENV = "FS_METRICS_DIR"
log = logging.getLogger("featurestore.server")


def _fastest(preferred: str, fallback: str) -> str:
    return preferred if importlib.util.find_spec(preferred) is not None else fallback


def uvicorn_options(**overrides: Any) -> dict[str, Any]:
    """The uvicorn settings `fs serve` runs with (the tests' live servers use them too)."""
    http: Any = _fastest("httptools", "h11")
    if http == "httptools":
        from .protocol import FastLaneProtocol, hooks_uvicorn

        if hooks_uvicorn():
            http = FastLaneProtocol
    return {"loop": _fastest("uvloop", "asyncio"), "http": http, "server_header": False, **overrides}


def app_from_env() -> FastAPI:
    """App factory for uvicorn workers: the repo at `$FS_REPO` (else the current folder's)."""
    return create_app(
        FeatureStore(os.environ.get(REPO_ENV) or None), metrics_dir=os.environ.get(METRICS_DIR_ENV) or None
    )


def serve(
    repo_path: str | None,
    host: str = "127.0.0.1",
    port: int = 6566,
    workers: int = 1,
    *,
    log_level: str = "info",
    access_log: bool = False,
) -> None:
    """Serve the repo at `repo_path` (None: the current folder's) until interrupted."""
    import uvicorn

    options = uvicorn_options(host=host, port=port, log_level=log_level, access_log=access_log)
    if workers > 1:
        # Each worker is a fresh process: pass the repo by environment and let it build its own app.
        os.environ[REPO_ENV] = str(find_repo(repo_path))
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
        uvicorn.run(create_app(FeatureStore(repo_path)), **options)
