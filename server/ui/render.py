"""Rendering UI pages: one Jinja environment per app, the shared page frame, static files, HTML errors.

    return ui.page(request, viewer, "catalog.html.j2", title="Catalog", nav="catalog", views=rows)

Every page extends `templates/base.html.j2` (header, navigation for the viewer's role, sign-out) and
gets `viewer`, `csrf`, `project`, `static(name)` and the filters of `featurestore.monitoring.formats`
(`num`, `pct`, `duration`, `utc`) plus `svg` (mark a chart string made by our own svg code as
safe HTML). Autoescaping is on: everything else is escaped.

Responses carry a strict Content-Security-Policy (scripts and styles from this server only, no inline
script), `X-Frame-Options: DENY`, no caching of pages (they show live state and role-dependent
buttons), and `Server-Timing: app;dur=<ms>` from the viewer check to the rendered page.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import jinja2
from fastapi import Request
from markupsafe import Markup
from starlette.responses import FileResponse, HTMLResponse, Response

from featurestore import FeatureStore
from featurestore.monitoring.formats import FILTERS

from .session import Viewer, set_csrf_cookie

T = TypeVar("T")
HERE = Path(__file__).parent
STATIC = HERE / "static"
STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class NavItem:
    """One link of the navigation bar, shown to viewers whose role holds `role`."""

    key: str
    label: str
    path: str
    role: str  # the role a viewer needs to see it


NAV = (
    NavItem("home", "Home", "/ui/", "read"),
    NavItem("catalog", "Catalog", "/ui/catalog", "read"),
    NavItem("lineage", "Lineage", "/ui/lineage", "read"),
    NavItem("training-sets", "Training sets", "/ui/training-sets", "read"),
    NavItem("models", "Models", "/ui/models", "read"),
    NavItem("runs", "Runs", "/ui/runs", "read"),
    NavItem("audit", "Audit", "/ui/audit", "admin"),
)


def svg(text: str | None) -> Markup | None:
    """A chart made by featurestore.monitoring.svg (which escapes every text it draws) as HTML."""
    return None if text is None else Markup(text)


class Renderer:
    """The templates and static files of the UI, loaded once per app (`app.state.ui`)."""

    def __init__(self, project: str):
        self.project = project
        self.lock = threading.Lock()  # for `app_part`: the app's other UI objects are made once
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,
        )
        self.env.filters.update(FILTERS)
        self.env.globals.update(svg=svg, static=self.static_url, nav_items=NAV)
        self.files = {p.name: p for p in STATIC.iterdir() if p.suffix in STATIC_TYPES}
        # A file's URL changes with its content, so browsers may keep it for good.
        self.versions = {
            name: hashlib.sha256(p.read_bytes()).hexdigest()[:12] for name, p in self.files.items()
        }

    def static_url(self, name: str) -> str:
        return f"/ui/static/{name}?v={self.versions[name]}"

    def render(self, template: str, **context: Any) -> str:
        return self.env.get_template(template).render(**context)

    def static(self, name: str) -> Response:
        path = self.files.get(name)
        if path is None:
            return Response("no such file", status_code=404, media_type="text/plain")
        return FileResponse(
            path,
            media_type=STATIC_TYPES[path.suffix],
            headers={
                "Cache-Control": "public, max-age=31536000, immutable",
                "X-Content-Type-Options": "nosniff",
            },
        )


def store_of(request: Request) -> FeatureStore:
    """The FeatureStore of the app serving `request`."""
    store: FeatureStore = request.app.state.fs.store
    return store


def app_part(request: Request, name: str, make: Callable[[], T]) -> T:
    """The app's one UI object called `name` (kept as `app.state.<name>`), made by `make()` on first
    use; two first requests at once make it once (the lock is the app's Renderer's)."""
    state = request.app.state
    found = getattr(state, name, None)
    if found is None:
        with renderer(request).lock:
            found = getattr(state, name, None)
            if found is None:
                found = make()
                setattr(state, name, found)
    part: T = found
    return part


def renderer(request: Request) -> Renderer:
    """The Renderer of the app serving `request`."""
    found: Renderer = request.app.state.ui
    return found


def _headers(request: Request) -> dict[str, str]:
    """The security headers, and Server-Timing from the viewer check to now."""
    headers = dict(SECURITY_HEADERS)
    started = request.scope.get("state", {}).get("ui_started")
    if started is not None:
        headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.2f}"
    return headers


def page(
    request: Request,
    viewer: Viewer | None,
    template: str,
    *,
    status: int = 200,
    nav: str = "",
    title: str = "",
    **context: Any,
) -> HTMLResponse:
    """The HTML response of `template` in the page frame, for `viewer` (None: the login page)."""
    ui = renderer(request)
    html = ui.render(
        template,
        request=request,
        viewer=viewer,
        csrf=viewer.csrf if viewer else "",
        project=ui.project,
        nav=nav,
        title=title,
        **context,
    )
    headers = _headers(request)
    response = HTMLResponse(html, status_code=status, headers=headers)
    if viewer is not None and viewer.new_csrf_cookie:
        set_csrf_cookie(response, request, viewer.csrf)
    return response


def partial(request: Request, viewer: Viewer, template: str, **context: Any) -> HTMLResponse:
    """An HTML fragment (no page frame) that a page's script puts in place (`data-src`)."""
    ui = renderer(request)
    html = ui.render(
        template, request=request, viewer=viewer, csrf=viewer.csrf, project=ui.project, **context
    )
    headers = _headers(request)
    return HTMLResponse(html, headers=headers)


def error_page(
    request: Request, status: int, message: str, headers: dict[str, str] | None = None
) -> HTMLResponse:
    """The UI's answer to an error: the message in the page frame (no viewer: no navigation)."""
    response = page(
        request,
        None,
        "error.html.j2",
        status=status,
        title=f"Error {status}",
        status_code=status,
        message=message,
    )
    for k, v in (headers or {}).items():
        response.headers[k] = v
    return response


def is_ui_request(request: Request) -> bool:
    """Whether `request` is for a page of the UI (its errors are HTML pages)."""
    path = request.url.path
    return path == "/ui" or path.startswith("/ui/")
