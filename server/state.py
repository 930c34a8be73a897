"""What every request handler of one app shares: the store, the key checker, metrics and limits.

Routers reach it through the `get_state` dependency (or `request.app.state.fs`):

    @router.get("/things")
    def things(state: State): ...
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from featurestore import FeatureStore

from .auth import Authenticator
from .metrics import Metrics


@dataclass
class ServerState:
    """The shared parts of one app (see `create_app` for what each setting means)."""

    store: FeatureStore
    auth: Authenticator
    metrics: Metrics
    max_batch_rows: int
    lookup_timeout: float


async def get_state(request: Request) -> ServerState:
    """FastAPI dependency: the ServerState of the app serving this request."""
    state: ServerState = request.app.state.fs
    return state


State = Annotated[ServerState, Depends(get_state)]
"""Handler parameter type: `def handler(state: State): ...`."""
