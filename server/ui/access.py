"""The dependencies a UI page declares for the role it needs:

    @router.get("/ui/models/{name}")
    def model_page(request: Request, viewer: Reader, name: str) -> HTMLResponse: ...

`Reader` (role read), `Approver`, `Admin`; `needs(role)` for any other. Each gives the page's
`Viewer` (`featurestore.server.ui.session`), or sends the browser to the login page (no session),
or answers 403 (a role too low).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import cache
from typing import Annotated

from fastapi import Depends, Request

from .session import Viewer, current_viewer


@cache
def needs(role: str) -> Callable[[Request], Awaitable[Viewer]]:
    """The page dependency admitting viewers whose role holds `role`'s permissions."""

    async def viewer(request: Request) -> Viewer:
        return await current_viewer(request, role)

    viewer.__name__ = f"ui_viewer_{role}"
    return viewer


Reader = Annotated[Viewer, Depends(needs("read"))]
Approver = Annotated[Viewer, Depends(needs("approver"))]
Admin = Annotated[Viewer, Depends(needs("admin"))]
