"""`/docs` (Swagger UI) and `/redoc` work without internet: their pages name only this server's URLs,
the vendored assets are served (and nothing else from that folder), and in a real browser both
render with no console error and no request to another host."""

from __future__ import annotations

import re
import warnings
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest

from featurestore.server.docs import ASSETS
from tests.server.conftest import serve

TITLE = "featurestore feature server"
ASSET_TYPES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
    "redoc.standalone.js": "text/javascript",
}


class Links(HTMLParser):
    """Every URL an HTML page names in an attribute (src, href, spec-url, action, ...)."""

    ATTRIBUTES = {"src", "href", "spec-url", "action", "data", "poster", "srcset"}

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_script = tag == "script"
        self.urls += [v for k, v in attrs if k in self.ATTRIBUTES and v is not None]

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)


def links(html: str) -> Links:
    parser = Links()
    parser.feed(html)
    return parser


@pytest.fixture(scope="module")
def client(sqlite_store):
    warnings.filterwarnings("ignore", message=".*httpx.*")
    from fastapi.testclient import TestClient

    from featurestore.server import create_app

    with TestClient(create_app(sqlite_store)) as c:
        yield c


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_the_docs_pages_name_only_local_urls(client, path):
    r = client.get(path)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    found = links(r.text)
    assert found.urls, "the page names its script"
    for url in found.urls:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc and url.startswith("/"), f"{path}: {url} is not local"
    for script in found.scripts:  # Swagger UI's inline set-up names the OpenAPI document
        assert not re.search(r"(?:https?:)?//[\w.-]", script), f"{path}: a host in {script!r}"
    assert not re.search(r"https?://", r.text), f"{path} names another host"
    assert "fonts.googleapis" not in r.text and "cdn.jsdelivr" not in r.text


def test_swagger_ui_asks_no_validator(client):
    html = client.get("/docs").text
    assert '"validatorUrl": null' in html


def test_the_vendored_assets_are_served_with_their_types_and_sizes(client):
    html = client.get("/docs").text + client.get("/redoc").text
    named = {urlsplit(u).path for u in links(html).urls if u.startswith("/docs/assets/")}
    assert named == {f"/docs/assets/{name}" for name in ASSET_TYPES}
    for name, media_type in ASSET_TYPES.items():
        r = client.get(f"/docs/assets/{name}")
        assert r.status_code == 200, name
        assert r.headers["content-type"].split(";")[0] == media_type, name
        assert int(r.headers["content-length"]) == len(r.content) > 0, name
        on_disk = (ASSETS / name).read_bytes()
        if r.content != on_disk:  # only ReDoc's may differ: its one CDN image URL made local
            assert name == "redoc.standalone.js" and b"cdn.redoc.ly" not in r.content, name
            assert abs(len(r.content) - len(on_disk)) < 1000, name
        assert "max-age=31536000" in r.headers["cache-control"]


@pytest.mark.parametrize(
    "path",
    [
        "/docs/assets/nothing.js",
        "/docs/assets/README.md",  # in the folder, but not an asset
        "/docs/assets/LICENSE.redoc",
        "/docs/assets/..%2fdocs.py",
        "/docs/assets/..%2f..%2fapp.py",
        "/docs/assets/%2e%2e%2fdocs.py",
        "/docs/assets/../docs.py",
        "/docs/assets/",
    ],
)
def test_no_other_file_is_served(client, path):
    r = client.get(path)
    assert r.status_code == 404, path
    assert b"def " not in r.content and b"import" not in r.content


def browse(server, path: str, *selectors: str) -> tuple[str, list[str], list[str]]:
    """Open `path` of `server` in Chromium and wait for each of `selectors`: (the text of the first,
    the console errors, the requests to any other host)."""
    from tests.browser import open_page

    own = urlsplit(server.url).netloc
    with open_page() as (page, log):
        page.goto(f"{server.url}{path}")
        texts = []
        for selector in selectors:
            found = page.wait_for_selector(selector, timeout=20_000)
            assert found is not None and found.is_visible(), selector
            texts.append(found.inner_text())
        page.wait_for_load_state("networkidle")
        assert any(u.endswith("/openapi.json") for u in log.requests)  # it read this server's API
        foreign = [
            u
            for u in log.requests
            if urlsplit(u).scheme not in ("data", "blob") and urlsplit(u).netloc != own
        ]
        return texts[0], list(log.errors), foreign


def test_swagger_ui_renders_in_a_browser_offline(sqlite_store):
    with serve(sqlite_store) as server:
        # the title, and the endpoints listed
        title, errors, foreign = browse(server, "/docs", ".swagger-ui .info .title", ".swagger-ui .opblock")
    assert TITLE in title
    assert not errors and not foreign, (errors, foreign)


def test_redoc_renders_in_a_browser_offline(sqlite_store):
    with serve(sqlite_store) as server:
        title, errors, foreign = browse(server, "/redoc", f"h1:has-text('{TITLE}')")
    assert TITLE in title
    assert not errors and not foreign, (errors, foreign)
