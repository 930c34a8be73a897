"""`GET /admin/audit`: the audit trail (pushes, applies, alias moves, ...). Needs the `admin` role.

Reading the trail is itself an admin action, and is recorded (who looked, and at what).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from .. import audit
from ..auth import require
from ..schemas import ERRORS, AuditList
from ..state import State

router = APIRouter(
    prefix="/admin", tags=["admin"], dependencies=[Depends(require("admin"))], responses=ERRORS(401, 403, 422)
)


@router.get("/audit", response_model=AuditList, summary="The audit trail, newest first")
async def audit_log(
    request: Request,
    state: State,
    action: Annotated[
        str | None, Query(max_length=100, description="Only entries of this action, e.g. push")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=10_000, description="At most this many entries")] = 100,
) -> AuditList:
    entries = await run_in_threadpool(state.store.registry.audit_log, action, limit)
    await audit.record(request, "read_audit", "audit", {"action": action, "limit": limit})
    return AuditList.model_validate({"entries": entries})  # (each entry's dict validated as an AuditEntry)
