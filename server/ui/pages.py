"""The UI's own routes (login, logout, static files, `/ui` itself) and the list of its page areas.

Each area is a module with a `router`; `PAGES` is the order they are mounted in.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from ..audit import record
from . import catalog, home, lineage, models, monitoring, runs, training_sets
from .render import page, renderer
from .session import (
    COOKIE_PATH,
    check_form,
    check_origin,
    clear_session,
    current_viewer,
    read_form,
    safe_next,
    session_token,
    set_session,
)

router = APIRouter(include_in_schema=False)

PAGES: tuple[APIRouter, ...] = (
    home.router,
    catalog.router,
    lineage.router,
    training_sets.router,
    models.router,
    monitoring.router,
    runs.router,
)


@router.get("/ui")
async def ui_root() -> Response:
    """`/ui` redirects to `/ui/` (the home page)."""
    return RedirectResponse(f"{COOKIE_PATH}/", status_code=308)


@router.get("/ui/static/{name}")
async def static(request: Request, name: str) -> Response:
    """One of the UI's static files (ui.css, ui.js, favicon.svg)."""
    return renderer(request).static(name)


@router.get("/ui/login")
async def login_form(request: Request, next: str = "/ui/") -> Response:  # noqa: A002 - the query name
    """GET /ui/login: the sign-in form (an open UI has none: on to `next`)."""
    if request.app.state.fs.auth.open:
        return RedirectResponse(safe_next(next), status_code=303)
    return page(request, None, "login.html.j2", title="Sign in", next_path=safe_next(next), error=None)


@router.post("/ui/login")
async def login(request: Request) -> Response:
    """POST /ui/login: check the key, set the session cookie, go on to `next`."""
    auth = request.app.state.fs.auth
    form = await read_form(request)
    next_path = safe_next(form.get("next"))
    if auth.open:
        return RedirectResponse(next_path, status_code=303)
    check_origin(request, "sign-in")
    principal = auth.identify(form.get("key", "").strip())
    if principal is None:
        response: Response = page(
            request,
            None,
            "login.html.j2",
            status=401,
            title="Sign in",
            next_path=next_path,
            error="That API key is not one of this server's keys.",
        )
        return response
    response = RedirectResponse(next_path, status_code=303)
    set_session(response, request, session_token(auth, principal.name))
    request.scope.setdefault("state", {})["principal"] = principal
    await record(request, "ui_login", principal.name, {"role": principal.role})
    return response


@router.post("/ui/logout")
async def logout(request: Request) -> Response:
    """POST /ui/logout: drop the session cookie (CSRF-checked)."""
    viewer = await current_viewer(request, "read")
    check_form(request, viewer, await read_form(request))
    response = RedirectResponse(f"{COOKIE_PATH}/login", status_code=303)
    clear_session(response)
    return response
