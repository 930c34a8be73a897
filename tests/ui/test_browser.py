"""The web UI in a real browser: Playwright driving Debian's Chromium (`tests.browser`) against a
real server (uvicorn on a loopback port) of the demo repo after monitoring and a retrain.

Every page of the tour loads with status 200, no console error, no request to another host (`/docs`
and `/redoc` included), no part left unloaded and an <h1>; a full-page screenshot of each is saved
under the test's tmp dir (`screens/<page>.png`). Search filters the catalog as one types; the
approve button moves the `production` alias for an approver and is absent for a reader. The
accessibility pass runs axe-core (vendored in tests/ui/vendor) on each UI page and fails on any
violation of impact "serious" or "critical".

Skipped without Chromium or the playwright package, a failure under CI=true (`tests.browser.chromium`).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from featurestore import FeatureStore
from featurestore.config import ApiKey
from featurestore.server import create_app
from tests.browser import PageLog, chromium, launch, watch
from tests.server.conftest import LiveServer
from tests.ui.conftest import KEYS

# `system_chromium` first: without a browser the tests skip before the demo state is built.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("system_chromium")]

AXE = Path(__file__).parent / "vendor" / "axe.min.js"
AXE_VERSION = "4.14.1"
BLOCKING = ("serious", "critical")
TIMEOUT_MS = 15_000

# (test id, path): every page of the UI, as admin, plus the API docs.
TOUR = [
    ("home", "/ui/"),
    ("catalog", "/ui/catalog"),
    ("view", "/ui/views/driver_hourly_stats"),
    ("on-demand-view", "/ui/views/trip_shape"),
    ("entity", "/ui/entities/driver"),
    ("service", "/ui/services/driver_activity"),
    ("source", "/ui/sources/driver_stats"),
    ("lineage", "/ui/lineage"),
    ("lineage-focus", "/ui/lineage?focus=view:driver_hourly_stats"),
    ("training-sets", "/ui/training-sets"),
    ("training-set", "/ui/training-sets/trip_completion_train"),
    ("models", "/ui/models"),
    ("model", "/ui/models/trip_completion"),
    ("model-version", "/ui/models/trip_completion/versions/1"),
    ("model-version-pending", "/ui/models/trip_completion/versions/2"),
    ("monitoring", "/ui/models/trip_completion/monitoring"),
    ("monitoring-v2", "/ui/models/trip_completion/monitoring?version=2"),
    ("runs", "/ui/runs"),
    ("run", "/ui/runs/1"),
    ("audit", "/ui/audit"),
    ("docs", "/docs"),
    ("redoc", "/redoc"),
]
# /docs and /redoc are third-party pages (Swagger UI, ReDoc, vendored in server/docs_assets): the
# accessibility pass covers only the UI's own pages.
AXE_TOUR = [(name, path) for name, path in TOUR if not path.startswith(("/docs", "/redoc"))] + [
    ("not-found", "/ui/views/no_such_view"),  # the HTML error page
]


def key_of(name: str) -> ApiKey:
    return next(k for k in KEYS if k.name == name)


@contextmanager
def live_server(repo: Path) -> Iterator[LiveServer]:
    """The full app of `repo`, with the test keys, served by uvicorn on a free loopback port."""
    store = FeatureStore(repo)
    server = LiveServer(create_app(store, api_keys=list(KEYS))).start()
    try:
        yield server
    finally:
        server.stop()
        store.close()


def signed_in(browser: Any, live: LiveServer, name: str, **options: Any) -> Any:
    """A browser context signed in through the real login form with key `name`."""
    context = browser.new_context(viewport={"width": 1200, "height": 900}, **options)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    log = watch(page)
    page.goto(f"{live.url}/ui/login?next=/ui/")
    page.fill("#key", key_of(name).key)
    with page.expect_navigation():
        page.click("form[action='/ui/login'] button[type=submit]")
    assert page.url == f"{live.url}/ui/", f"signing in as {name} ended on {page.url}"
    assert any(c["name"] == "fs_ui" for c in context.cookies()), "no session cookie"
    assert_clean(log, live)
    page.close()
    return context


def assert_clean(log: PageLog, live: LiveServer) -> None:
    assert not log.errors, f"console errors: {log.errors}"
    assert not log.foreign_to(live.url), f"requests to other hosts: {log.foreign_to(live.url)}"


def settle(page: Any) -> None:
    """Wait until the page and its `data-src` parts are loaded (ui.js replaces each when it comes)."""
    page.wait_for_load_state("networkidle")
    page.wait_for_function("() => document.querySelector('[data-src]') === null", timeout=TIMEOUT_MS)


@pytest.fixture(scope="session")
def system_chromium() -> str:
    return chromium()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launch() as b:
        yield b


@pytest.fixture(scope="module")
def tour_server(demo_built: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server of a module-wide copy of the demo state: the tour only reads it."""
    repo = tmp_path_factory.mktemp("ui-browser") / "repo"
    shutil.copytree(demo_built, repo)
    with live_server(repo) as live:
        yield live


@pytest.fixture(scope="module")
def admin(browser: Any, tour_server: LiveServer) -> Iterator[Any]:
    context = signed_in(browser, tour_server, "ada")
    yield context
    context.close()


@pytest.fixture(scope="module")
def admin_for_axe(browser: Any, tour_server: LiveServer) -> Iterator[Any]:
    # axe is injected as a <script> with content, which the pages' CSP (script-src 'self') blocks:
    # this context alone bypasses the CSP (the tour checks the pages under it).
    context = signed_in(browser, tour_server, "ada", bypass_csp=True)
    yield context
    context.close()


@pytest.mark.parametrize(("name", "path"), TOUR, ids=[name for name, _ in TOUR])
def test_page_loads_clean(admin: Any, tour_server: LiveServer, name: str, path: str, tmp_path: Path) -> None:
    page = admin.new_page()
    log = watch(page)
    try:
        response = page.goto(tour_server.url + path)
        assert response is not None and response.status == 200, (
            f"{path}: status {response and response.status}"
        )
        settle(page)
        screens = tmp_path / "screens"
        screens.mkdir()
        page.screenshot(path=str(screens / f"{name}.png"), full_page=True)
        assert_clean(log, tour_server)
        assert page.locator("h1").count() >= 1, f"{path} has no <h1>"
        assert (screens / f"{name}.png").stat().st_size > 0
    finally:
        page.close()


def test_search_filters_the_catalog(admin: Any, tour_server: LiveServer) -> None:
    page = admin.new_page()
    log = watch(page)
    try:
        page.goto(f"{tour_server.url}/ui/catalog")
        settle(page)
        rows = page.locator("#catalog [data-search]")
        count = page.locator("[data-filter-count]").first
        views = page.locator("#catalog section[aria-labelledby='cat-views'] tr[data-search]")
        route_row = views.filter(has=page.locator("a[href='/ui/views/route_stats']"))
        driver_row = views.filter(has=page.locator("a[href='/ui/views/driver_hourly_stats']"))
        total = rows.count()
        assert total > 5 and count.inner_text() == str(total)
        assert route_row.is_visible()

        page.locator("#catalog-search").press_sequentially("driver_hourly", delay=20)
        visible = page.locator("#catalog [data-search]:visible").count()
        assert 0 < visible < total
        assert count.inner_text() == str(visible)
        assert route_row.is_hidden()
        assert driver_row.is_visible()
        assert "q=driver_hourly" in page.url

        page.fill("#catalog-search", "")
        assert page.locator("#catalog [data-search]:visible").count() == total
        assert count.inner_text() == str(total)
        assert route_row.is_visible()
        assert_clean(log, tour_server)
    finally:
        page.close()


APPROVE = re.compile(r"^\s*approve", re.I)
REJECT = re.compile(r"^\s*reject", re.I)
DECISION_FORMS = "form[action$='/approve'], form[action$='/reject']"


def alias_row(page: Any, alias: str) -> str:
    """The text of the table row that starts with `alias` (the model page's Aliases table), or ""."""
    rows = [row.inner_text() for row in page.locator("main tr").all()]
    return next((text for text in rows if text.split("\t", 1)[0].strip() == alias), "")


def test_approve_moves_the_alias_for_an_approver(browser: Any, demo_repo: Path) -> None:
    assert FeatureStore(demo_repo).models.aliases("trip_completion")["production"] == 1
    with live_server(demo_repo) as live:
        context = signed_in(browser, live, "abe")
        page = context.new_page()
        log = watch(page)
        page.goto(f"{live.url}/ui/models/trip_completion")
        settle(page)
        assert alias_row(page, "production").startswith("production\tv1")
        approve = page.get_by_role("button", name=APPROVE)
        assert approve.count() == 1, "the approver sees one Approve button (v2 is the one pending)"
        assert page.locator("form[action='/ui/models/trip_completion/versions/2/approve']").count() == 1
        with page.expect_navigation():
            approve.click()
        settle(page)
        assert page.url.startswith(f"{live.url}/ui/models/trip_completion"), page.url
        assert alias_row(page, "production").startswith("production\tv2"), "the page says v2 is production"
        assert page.get_by_role("button", name=APPROVE).count() == 0, "nothing is pending any more"
        assert_clean(log, live)
        context.close()
    assert FeatureStore(demo_repo).models.aliases("trip_completion")["production"] == 2


def test_no_decision_buttons_for_a_reader(browser: Any, tour_server: LiveServer) -> None:
    approver = signed_in(browser, tour_server, "abe")
    reader = signed_in(browser, tour_server, "rita")
    try:
        for path in ("/ui/models/trip_completion", "/ui/models/trip_completion/versions/2"):
            seen = approver.new_page()
            seen.goto(tour_server.url + path)
            settle(seen)
            assert seen.get_by_role("button", name=APPROVE).count() >= 1, f"{path}: the approver's button"
            page = reader.new_page()
            log = watch(page)
            response = page.goto(tour_server.url + path)
            assert response is not None and response.status == 200
            settle(page)
            assert page.get_by_role("button", name=APPROVE).count() == 0, f"{path}: Approve shown to a reader"
            assert page.get_by_role("button", name=REJECT).count() == 0, f"{path}: Reject shown to a reader"
            assert page.locator(DECISION_FORMS).count() == 0, f"{path}: a decision form for a reader"
            assert_clean(log, tour_server)
            seen.close()
            page.close()
    finally:
        approver.close()
        reader.close()


def blocking_violations(page: Any) -> list[str]:
    """axe-core's serious and critical violations of the page, one line each."""
    page.add_script_tag(path=str(AXE))
    assert page.evaluate("() => axe.version") == AXE_VERSION
    violations = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
    )
    return [
        f"{v['impact']}: {v['id']} ({v['help']}) at {[n['target'] for n in v['nodes'][:3]]}"
        for v in violations
        if v["impact"] in BLOCKING
    ]


@pytest.mark.parametrize(("name", "path"), AXE_TOUR, ids=[name for name, _ in AXE_TOUR])
def test_accessibility(admin_for_axe: Any, tour_server: LiveServer, name: str, path: str) -> None:
    page = admin_for_axe.new_page()
    try:
        page.goto(tour_server.url + path)
        settle(page)
        found = blocking_violations(page)
        assert not found, f"{path}:\n" + "\n".join(found)
    finally:
        page.close()


def test_accessibility_of_the_login_page(browser: Any, tour_server: LiveServer) -> None:
    context = browser.new_context(bypass_csp=True)
    try:
        page = context.new_page()
        page.goto(f"{tour_server.url}/ui/login")
        found = blocking_violations(page)
        assert not found, "/ui/login:\n" + "\n".join(found)
    finally:
        context.close()


def test_the_axe_pass_finds_a_planted_violation(browser: Any, tour_server: LiveServer) -> None:
    """The pass can fail: an image without alt text and an unlabelled field are critical violations."""
    context = browser.new_context(bypass_csp=True)
    try:
        page = context.new_page()
        page.goto(f"{tour_server.url}/ui/login")
        page.set_content(
            '<!doctype html><html lang="en"><head><title>t</title></head><body><main><h1>t</h1>'
            '<img src="/ui/static/favicon.svg"><input type="text"></main></body></html>'
        )
        found = " ".join(blocking_violations(page))
        assert "image-alt" in found and "label" in found, found
    finally:
        context.close()


def test_foreign_requests_are_those_to_another_host() -> None:
    log = PageLog(
        requests=[
            "http://127.0.0.1:8000/ui/",
            "data:image/png;base64,AA",
            "blob:http://127.0.0.1:8000/x",
            "http://127.0.0.1:8001/ui/",
            "https://cdn.example.com/a.js",
            "ws://127.0.0.1:8000/live",
            "http://localhost:8000/ui/",
        ]
    )
    assert log.foreign_to("http://127.0.0.1:8000") == [
        "http://127.0.0.1:8001/ui/",
        "https://cdn.example.com/a.js",
        "http://localhost:8000/ui/",
    ]
