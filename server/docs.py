"""`/docs` (Swagger UI) and `/redoc` (ReDoc) served with their scripts and styles from the package.

FastAPI's own pages load them from a CDN (and a favicon from fastapi.tiangolo.com, and ReDoc its
fonts from Google): on a machine without outside network `/docs` is a blank page. Here the assets
are the vendored files of `docs_assets/` (versions and licenses in its README.md), answered under
`/docs/assets/` with a long cache lifetime. Swagger UI's validator badge (a request to
validator.swagger.io) is turned off.
"""

from __future__ import annotations

import functools
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from starlette.responses import FileResponse, HTMLResponse, Response

ASSETS = Path(__file__).parent / "docs_assets"
ASSET_VERSION = "swagger-ui-5.35.0,redoc-2.5.4"  # in the asset URLs: a new version is a new URL
REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
BLANK_SVG = b"data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E"
MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
FILES = (
    frozenset(p.name for p in ASSETS.iterdir() if p.suffix in MEDIA_TYPES) if ASSETS.is_dir() else frozenset()
)

router = APIRouter(include_in_schema=False)


def _asset(request: Request, name: str) -> str:
    return f"{request.scope.get('root_path', '')}/docs/assets/{name}?v={ASSET_VERSION}"


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    """GET /docs: Swagger UI with its assets from the package."""
    app: FastAPI = request.app
    return get_swagger_ui_html(
        openapi_url=request.scope.get("root_path", "") + (app.openapi_url or "/openapi.json"),
        title=f"{app.title} - API docs",
        swagger_js_url=_asset(request, "swagger-ui-bundle.js"),
        swagger_css_url=_asset(request, "swagger-ui.css"),
        swagger_favicon_url=_asset(request, "favicon-32x32.png"),
        swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from validator.swagger.io
    )


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    """GET /redoc: ReDoc with its script from the package."""
    app: FastAPI = request.app
    return get_redoc_html(
        openapi_url=request.scope.get("root_path", "") + (app.openapi_url or "/openapi.json"),
        title=f"{app.title} - ReDoc",
        redoc_js_url=_asset(request, "redoc.standalone.js"),
        redoc_favicon_url=_asset(request, "favicon-32x32.png"),
        with_google_fonts=False,
    )


@router.get("/docs/assets/{name}")
async def asset(name: str) -> Response:
    """One vendored asset of /docs or /redoc (listed files only)."""
    if name not in FILES:  # only the listed files: no path is built from the request
        return Response("no such asset", status_code=404, media_type="text/plain")
    path = ASSETS / name
    headers = {"Cache-Control": "public, max-age=31536000, immutable"}
    if name == "redoc.standalone.js":
        return Response(_redoc_js(), media_type=MEDIA_TYPES[".js"], headers=headers)
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=headers)


@functools.cache
def _redoc_js() -> bytes:
    """ReDoc's bundle with its one remote image (the "API docs by Redocly" logo, which no option turns
    off) made a blank data: image, so the page requests nothing from another host. The vendored file
    stays as published."""
    return (ASSETS / "redoc.standalone.js").read_bytes().replace(REDOC_LOGO, BLANK_SVG)
