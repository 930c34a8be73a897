"""Audit entries for writes and admin actions, recorded in the registry's audit trail.

Each entry says who (the API key's name, `anonymous` on an open server), what (action and target),
when (the registry stamps it, UTC) and details such as the number of rows. The registry write is
blocking SQLite work, so it runs in the threadpool.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from .auth import ANONYMOUS


async def record(request: Request, action: str, target: str, detail: dict[str, Any] | None = None) -> None:
    """Append one audit entry for the caller of `request` (set by the `require(...)` dependency)."""
    principal = getattr(request.state, "principal", ANONYMOUS)
    registry = request.app.state.fs.store.registry
    await run_in_threadpool(registry.audit, action, target, detail or {}, actor=principal.name)
