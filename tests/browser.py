"""A headless browser for tests: Playwright driving Debian's Chromium at /usr/bin/chromium.

Never a downloaded browser (`playwright install` is not run): `.ci/run` installs the `chromium`
package when it is missing. Without it (or without the playwright package) a test is skipped, and
fails under CI=true (`tests.redis_server.missing`).

    with open_page() as (page, log):
        page.goto(path.as_uri())
        assert not log.errors and not log.foreign_requests

    with launch() as browser:                  # many pages or contexts (cookies, bypass_csp...)
        page = browser.new_context().new_page()
        log = watch(page)
        assert not log.foreign_to("http://127.0.0.1:8000")   # a served page: its own server is not foreign
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from tests.redis_server import missing

CHROMIUM = Path("/usr/bin/chromium")
# No update checks, no sync, no first-run pages: the browser makes no request of its own.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@dataclass
class PageLog:
    """What a page did: console errors, uncaught exceptions and every URL it requested."""

    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    @property
    def foreign_requests(self) -> list[str]:
        """Requests to any host (http, https, ws...): a local file or data: URL is not one."""
        return [u for u in self.requests if urlparse(u).scheme not in ("file", "data", "about", "blob")]

    def foreign_to(self, origin: str) -> list[str]:
        """Requests to any host but that of `origin` ("http://127.0.0.1:8000"): for a server's pages."""
        host = urlparse(origin).netloc
        return [u for u in self.foreign_requests if urlparse(u).netloc != host]


def chromium() -> str:
    """The path of the system Chromium, or a skip (a failure under CI=true)."""
    if not (CHROMIUM.exists() or shutil.which("chromium")):
        missing(f"needs Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing("needs the playwright package (pip install -e '.[dev]')")
    return str(CHROMIUM if CHROMIUM.exists() else shutil.which("chromium"))


@contextlib.contextmanager
def launch() -> Iterator[Any]:
    """Headless system Chromium (a Playwright Browser), for tests that open many pages or contexts."""
    from playwright.sync_api import sync_playwright

    executable = chromium()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def watch(page: Any) -> PageLog:
    """Record `page`'s console errors, uncaught exceptions and requests from now on."""
    log = PageLog()
    page.on("console", lambda m: log.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: log.errors.append(str(e)))
    page.on("request", lambda r: log.requests.append(r.url))
    return log


@contextlib.contextmanager
def open_page(width: int = 1200, height: int = 900) -> Iterator[tuple[Any, PageLog]]:
    """A fresh page in headless Chromium, recording console errors and requests into a PageLog."""
    with launch() as browser:
        page = browser.new_page(viewport={"width": width, "height": height})
        yield page, watch(page)
