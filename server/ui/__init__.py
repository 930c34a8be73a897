"""The web UI under `/ui`: server-rendered pages of the catalog, lineage, training sets, models,
monitoring, runs and the audit trail (SPEC §15), for `fs serve` and `fs ui`.

    app = create_app(store)            # the UI is part of every feature server app, at /ui/

Layout: one module per area, each with its own `router` and templates (`templates/<area>*.html.j2`),
listed in `PAGES` below; `render` (the page frame, static files, HTML errors), `session` and
`access` (who is looking, login cookie, CSRF), `graph` (the lineage graph as SVG), `index` (the
summaries of model versions, training sets and runs the pages share, rebuilt when the registry
changes), `cache` (a minute's cache for the parts that scan prediction logs). Pages take what they
show from the store's public API and that index, never the whole registry per request (the
catalog is held in memory by the store, re-read only when the registry changes). Charts are inline SVG made in
Python (`featurestore.monitoring.svg`), the one script is `static/ui.js` (search as you type, parts
of a page filled in after it loads), and nothing comes from another host.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from featurestore import FeatureStore

from . import pages
from .render import Renderer
from .session import LoginRequired, login_url


def _project(store: FeatureStore) -> str:
    return store.config.project


def install(app: FastAPI, store: FeatureStore) -> None:
    """Mount the UI on `app` (done by `create_app`)."""
    app.state.ui = Renderer(_project(store))
    for router in (pages.router, *pages.PAGES):
        app.include_router(router)

    async def to_login(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, LoginRequired)
        if request.headers.get("x-fs-fragment") == "1":  # a part of a page (ui.js): no login page in it
            return PlainTextResponse(
                "Your session ended: reload the page to sign in again.",
                status_code=401,
                headers={"Cache-Control": "no-store"},
            )
        return RedirectResponse(
            login_url(exc.next_path), status_code=303, headers={"Cache-Control": "no-store"}
        )

    app.add_exception_handler(LoginRequired, to_login)


__all__ = ["install"]
