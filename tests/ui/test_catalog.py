"""The catalog page (`/ui/catalog`: every definition, searchable as you type and by `?q=`) and the
detail pages of views, on-demand views, entities, services and sources, on the demo's state."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pytest

from featurestore import FeatureStore
from featurestore.server.ui.catalog import ROWS_SHOWN, matches, words
from tests.repo_builder import make_repo
from tests.ui.conftest import KEYS, ui_client

READER = {"X-API-Key": "key-rita-read-000000"}


def main_of(html: str) -> str:
    return html.split('<main id="main">', 1)[1].split("</main>", 1)[0]


def rows_of(body: str) -> list[str]:
    return re.findall(r"<tr data-search=.*?</tr>", body, flags=re.S)


def visible(body: str) -> list[str]:
    return [r for r in rows_of(body) if not re.match(r'<tr data-search="[^"]*" hidden>', r)]


# -- the catalog ----------------------------------------------------------------------------------


def test_catalog_lists_every_kind_of_definition_with_its_details(open_client):
    r = open_client.get("/ui/catalog")
    assert r.status_code == 200
    body = main_of(r.text)
    assert body.count("<h1>") == 1
    for heading in (
        "Entities",
        "Feature views",
        "On-demand views",
        "Features",
        "Feature services",
        "Sources",
    ):
        assert f">{heading}</h2>" in body
    # views, linked, with entity, source, ttl, owner, tags and the watermark of the demo's materialization
    view_row = next(r for r in rows_of(body) if 'href="/ui/views/driver_hourly_stats">' in r)
    assert 'href="/ui/sources/driver_stats_push">driver_stats_push</a>' in view_row
    assert "<td>1d</td>" in view_row and "rides-ml@example.com" in view_row
    assert '<span class="tag">team=rides</span>' in view_row
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", view_row)
    assert 'href="/ui/views/driver_trip_activity">driver_trip_activity</a>' in body
    assert 'href="/ui/views/trip_shape">trip_shape</a>' in body  # the on-demand view
    # one row per feature: type, description and where its view is defined
    feature = next(r for r in rows_of(body) if ">driver_hourly_stats:conv_rate</a>" in r)
    assert "Float64" in feature and "Share of offers the driver converted" in feature
    assert "features.py:34" in feature
    assert 'href="/ui/services/driver_activity">driver_activity</a>' in body
    assert 'href="/ui/entities/driver">driver</a>' in body
    source = next(r for r in rows_of(body) if 'href="/ui/sources/driver_stats">' in r)
    assert "data/driver_stats.parquet" in source and "event_timestamp" in source
    # the search box filters as you type (static/ui.js), over every row's search text
    assert re.search(r'<label for="catalog-search">', body)
    assert 'id="catalog-search"' in body and 'data-filter="#catalog"' in body
    assert body.count("data-filter-group") == 6
    assert len(visible(body)) == len(rows_of(body)) > 20


def test_search_filters_on_the_server_by_the_same_rule_as_the_script(open_client):
    body = main_of(open_client.get("/ui/catalog", params={"q": "Driver  CONV"}).text)
    shown = visible(body)
    assert shown and all("driver" in r.lower() and "conv" in r.lower() for r in shown)
    assert any(">driver_hourly_stats:conv_rate</a>" in r for r in shown)
    assert not any(">driver_hourly_stats:acc_rate</a>" in r for r in shown)
    assert 'value="Driver  CONV"' in body
    assert f"<span data-filter-count>{len(shown)}</span>" in body
    # a section with nothing left is hidden as a whole
    assert '<section data-filter-group hidden aria-labelledby="cat-sources">' in body
    # owner, tag and type are searched too
    tagged = visible(main_of(open_client.get("/ui/catalog?q=team%3Drides").text))
    assert tagged and all("team=rides" in r for r in tagged)
    nothing = main_of(open_client.get("/ui/catalog?q=no-such-thing-at-all").text)
    assert visible(nothing) == [] and "<span data-filter-count>0</span>" in nothing
    assert words(" A  b ") == ["a", "b"] and matches("abc view", ["view", "b"]) and not matches("abc", ["x"])


def test_catalog_needs_a_key_when_keys_are_configured(demo_repo):
    with ui_client(demo_repo, keys=KEYS) as client:
        anonymous = client.get("/ui/catalog", follow_redirects=False)
        reader = client.get("/ui/catalog", headers=READER)
    assert anonymous.status_code == 303
    assert anonymous.headers["location"].startswith("/ui/login")
    assert reader.status_code == 200 and "driver_hourly_stats" in reader.text


HOSTILE = """
from featurestore import Entity, FeatureView, Field, Float64, Int64, ParquetSource

rider = Entity(name="rider", join_keys=["rider_id"], description="<b>bold</b> & co")
src = ParquetSource(name="src", path="data/src.parquet", description="<img src=x onerror=alert(2)>")
hostile = FeatureView(
    name="hostile", entities=[rider], source=src, owner="<i>eve</i>",
    schema=[Field("rider_id", Int64), Field("score", Float64, description="<script>alert(3)</script>")],
    description="<script>alert(1)</script>", tags={"note": "\\"><svg onload=alert(4)>"},
)
"""


def hostile_repo(root: Path) -> Path:
    from datetime import datetime, timezone

    table = pa.table(
        {
            "rider_id": pa.array([1, 2], pa.int64()),
            "score": pa.array([0.5, 0.7]),
            "event_timestamp": pa.array([datetime(2026, 1, 1, tzinfo=timezone.utc)] * 2),
        }
    )
    repo = make_repo(root, {"features.py": HOSTILE}, {"data/src.parquet": table})
    store = FeatureStore(repo)
    store.apply()
    store.close()
    return repo


def test_definitions_text_is_escaped_everywhere(tmp_path):
    repo = hostile_repo(tmp_path / "hostile")
    with ui_client(repo) as client:
        pages = {
            url: client.get(url)
            for url in (
                "/ui/catalog",
                "/ui/catalog?q=%3Cscript%3E",
                "/ui/views/hostile",
                "/ui/entities/rider",
                "/ui/sources/src",
            )
        }
    for url, r in pages.items():
        assert r.status_code == 200, url
        body = main_of(r.text)
        assert "<script" not in body and "<img" not in body and "<svg onload" not in body, url
        assert "<b>bold" not in body and "<i>eve" not in body, url
    catalog = main_of(pages["/ui/catalog"].text)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in catalog  # in the row's search text
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in catalog  # the feature's description
    assert "&lt;i&gt;eve&lt;/i&gt;" in catalog
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in main_of(pages["/ui/views/hostile"].text)
    searched = main_of(pages["/ui/catalog?q=%3Cscript%3E"].text)
    assert 'value="&lt;script&gt;"' in searched
    assert any('href="/ui/views/hostile">' in r for r in visible(searched))


def test_an_empty_registry_says_run_fs_apply(tmp_path):
    repo = make_repo(tmp_path / "empty", {"features.py": ""})
    with ui_client(repo) as client:
        r = client.get("/ui/catalog")
    assert r.status_code == 200 and "fs apply" in main_of(r.text)


# -- detail pages ---------------------------------------------------------------------------------


def test_view_page_shows_schema_freshness_runs_users_and_statistics(open_client):
    r = open_client.get("/ui/views/driver_hourly_stats")
    assert r.status_code == 200
    body = main_of(r.text)
    assert body.count("<h1>") == 1 and "Feature view driver_hourly_stats" in body
    assert 'href="/ui/lineage?focus=view:driver_hourly_stats">Lineage</a>' in body
    assert 'href="/ui/entities/driver">driver</a>' in body and "driver_id" in body
    assert 'href="/ui/sources/driver_stats_push">' in body
    assert "features.py:34" in body and "rides-ml@example.com" in body
    assert '<tr id="feature-conv_rate"><td class="mono">conv_rate</td><td class="mono">Float64</td>' in body
    assert "<dt>Watermark</dt><dd>20" in body and "<dt>Rows online</dt><dd>500</dd>" in body
    assert "84,000" in body  # the materialization run's rows
    # what uses it: the service, the on-demand view and both model versions
    assert 'href="/ui/services/driver_activity">driver_activity</a>' in body
    assert 'href="/ui/views/trip_shape">trip_shape</a>' in body
    assert 'href="/ui/models/trip_completion/versions/1">trip_completion v1</a>' in body
    assert 'href="/ui/models/trip_completion/versions/2">trip_completion v2</a>' in body
    # statistics per feature, a histogram per numeric one, top values of the string one
    assert "<h2>Statistics</h2>" in body
    assert body.count("<svg") == 3  # conv_rate, acc_rate, avg_daily_trips
    assert "<title>conv_rate: share of rows per bin</title>" in body
    assert re.search(r'<span class="tag">(van|sedan|suv) \([\d,]+\)</span>', body)


def test_on_demand_view_page_shows_inputs_request_fields_and_function(open_client):
    body = main_of(open_client.get("/ui/views/trip_shape").text)
    assert "On-demand view trip_shape" in body
    assert 'href="/ui/views/driver_hourly_stats">driver_hourly_stats</a>' in body
    assert 'href="/ui/sources/trip_request">trip_request</a>' in body and "distance_km" in body
    assert "features.py:trip_shape" in body and "<dd>python</dd>" in body
    assert 'href="/ui/models/trip_completion/versions/1">' in body


def test_an_unknown_view_is_a_404_page_with_a_suggestion(open_client):
    r = open_client.get("/ui/views/driver_hourly")
    assert r.status_code == 404
    assert "text/html" in r.headers["content-type"]
    assert "driver_hourly" in r.text and "did you mean &#39;driver_hourly_stats&#39;" in r.text
    assert open_client.get("/ui/entities/nobody").status_code == 404
    assert open_client.get("/ui/services/nothing").status_code == 404
    assert open_client.get("/ui/sources/nowhere").status_code == 404


def test_entity_service_and_source_pages(open_client):
    entity = main_of(open_client.get("/ui/entities/driver").text)
    assert "Entity driver" in entity and "driver_id" in entity
    assert (
        'href="/ui/views/driver_hourly_stats">' in entity
        and 'href="/ui/views/driver_trip_activity">' in entity
    )
    service = main_of(open_client.get("/ui/services/driver_activity").text)
    assert "Feature service driver_activity" in service
    assert 'href="/ui/lineage?focus=service:driver_activity">Lineage</a>' in service
    assert "conv_rate, acc_rate, avg_daily_trips" in service
    assert 'href="/ui/models/trip_completion">trip_completion</a>' in service
    batch = main_of(open_client.get("/ui/sources/driver_stats").text)
    assert "data/driver_stats.parquet" in batch and "event_timestamp" in batch
    assert 'href="/ui/views/driver_hourly_stats">' in batch  # read through its push source
    assert 'href="/ui/sources/driver_stats_push">' in batch
    assert 'href="/ui/lineage?focus=source:driver_stats">Lineage</a>' in batch
    request = main_of(open_client.get("/ui/sources/trip_request").text)
    assert "On-demand view" in request and 'href="/ui/views/trip_shape">' in request


# -- a catalog larger than a page: at most ROWS_SHOWN rows per section, the server searches ----------

VIEWS = 150  # 300 features: views and features both have more rows than a page shows
BIG = """
from featurestore import Entity, FeatureService, FeatureView, Field, Float64, Int64, ParquetSource

rider = Entity(name="rider", join_keys=["rider_id"], description="A rider")
rides = ParquetSource(name="rides", path="data/rides.parquet", timestamp_field="event_timestamp")
views = [
    FeatureView(
        name=f"view_{i:04d}", entities=[rider], source=rides, owner=f"team{i % 3}@example.com",
        schema=[Field("rider_id", Int64), Field("f0", Float64), Field("f1", Float64)],
    )
    for i in range(VIEWS)
]
first = FeatureService(name="first", features=views[:5])
for v in views:
    globals()[v.name] = v
"""


def big_repo(root: Path) -> Path:
    from datetime import datetime, timezone

    table = pa.table(
        {
            "rider_id": pa.array([1, 2], pa.int64()),
            "f0": pa.array([0.5, 0.7]),
            "f1": pa.array([1.5, 1.7]),
            "event_timestamp": pa.array([datetime(2026, 1, 1, tzinfo=timezone.utc)] * 2),
        }
    )
    text = BIG.replace("range(VIEWS)", f"range({VIEWS})")
    repo = make_repo(root, {"features.py": text}, {"data/rides.parquet": table})
    store = FeatureStore(repo)
    store.apply()
    store.close()
    return repo


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return big_repo(tmp_path_factory.mktemp("ui-big") / "repo")


def section_of(body: str, key: str) -> str:
    return body.split(f'aria-labelledby="cat-{key}">', 1)[1].split("</section>", 1)[0]


def names_in(section: str) -> list[str]:
    """The views a section's rows link to first (a view row's name, a feature row's view)."""
    return re.findall(r'<tr><td(?: class="mono")?><a href="/ui/views/([^"#]+)', section)


def results_of(html: str) -> str:
    body = main_of(html)
    return body[body.index('<div id="catalog"') :].strip()


def test_a_large_catalog_shows_the_first_rows_of_each_section_and_how_many_there_are(big):
    with ui_client(big) as client:
        r = client.get("/ui/catalog")
    assert r.status_code == 200
    body = main_of(r.text)
    views, features = section_of(body, "views"), section_of(body, "features")
    assert names_in(views) == [f"view_{i:04d}" for i in range(ROWS_SHOWN)]
    assert len(names_in(features)) == ROWS_SHOWN
    assert "Showing 100 of 150 feature views: type in the search to find the others." in views
    assert "Showing 100 of 300 features: type in the search to find the others." in features
    assert "Showing" not in section_of(body, "entities") + section_of(body, "services")
    # the server searches: the input says where, and no row carries its search text
    assert 'data-filter="#catalog" data-filter-src="/ui/catalog/results"' in body
    assert "data-search" not in body
    assert "<span data-filter-count>453</span> of 453 match" in body  # 1 + 150 + 300 + 1 + 1
    assert '<form method="get" action="/ui/catalog"' in body and '<button type="submit">' in body
    assert len(r.content) < 100_000


def test_a_search_of_a_large_catalog_finds_rows_beyond_the_first_page_and_counts_them_all(big):
    with ui_client(big) as client:
        narrow = main_of(client.get("/ui/catalog", params={"q": "VIEW_014"}).text)
        wide = main_of(client.get("/ui/catalog", params={"q": "f1"}).text)
        nothing = main_of(client.get("/ui/catalog", params={"q": "no-such-thing"}).text)
    tail = [f"view_{i:04d}" for i in range(140, 150)]
    assert names_in(section_of(narrow, "views")) == tail
    assert names_in(section_of(narrow, "features")) == [n for n in tail for _ in (0, 1)]
    assert "<span data-filter-count>30</span> of 453 match" in narrow and "Showing" not in narrow
    assert '<section data-filter-group hidden aria-labelledby="cat-services">' in narrow
    assert 'value="VIEW_014"' in narrow
    # every view's f1 matches: the first 100 of the 150 are shown, and all are counted
    shown = section_of(wide, "features")
    assert len(names_in(shown)) == ROWS_SHOWN and ">view_0099:f1</a>" in shown and ":f0</a>" not in shown
    assert "Showing 100 of 150 matching features: add words to the search to narrow it." in shown
    assert "<span data-filter-count>150</span>" in wide
    assert "<span data-filter-count>0</span>" in nothing and "<tr><td" not in nothing


def test_the_results_fragment_is_the_pages_results(big, tmp_path):
    with ui_client(big) as client:
        for q in ("", "view_014", "f1 team2", "nothing-at-all"):
            page = client.get("/ui/catalog", params={"q": q})
            part = client.get("/ui/catalog/results", params={"q": q})
            assert part.status_code == 200 and "text/html" in part.headers["content-type"]
            assert "<html" not in part.text and "server-timing" in part.headers
            assert part.text.strip() == results_of(page.text), q
        assert 'data-filter-shown="30"' in client.get("/ui/catalog/results?q=view_014").text
    with ui_client(big, keys=KEYS) as client:
        anonymous = client.get("/ui/catalog/results?q=x", follow_redirects=False)
        ended = client.get("/ui/catalog/results?q=x", headers={"X-FS-Fragment": "1"}, follow_redirects=False)
        reader = client.get("/ui/catalog/results?q=view_0140", headers=READER)
    assert anonymous.status_code == 303 and reader.status_code == 200 and "view_0140" in reader.text
    assert ended.status_code == 401 and "session ended" in ended.text  # what ui.js sends and shows
    empty = make_repo(tmp_path / "empty", {"features.py": ""})
    with ui_client(empty) as client:
        assert "fs apply" in client.get("/ui/catalog/results").text


def test_a_small_catalog_is_sent_whole_for_the_script_to_filter(open_client):
    body = main_of(open_client.get("/ui/catalog").text)
    assert "data-filter-src" not in body and "Showing" not in body
    assert all(r.startswith('<tr data-search="') for r in rows_of(body))
    part = open_client.get("/ui/catalog/results", params={"q": "conv"}).text
    assert part.strip() == results_of(open_client.get("/ui/catalog", params={"q": "conv"}).text)


def test_detail_pages_read_the_locations_once_per_applied_catalog(big):
    with ui_client(big) as client:
        store = client.app.state.fs.store
        registry = store.registry
        reads = []
        every = registry.locations
        registry.locations = lambda: reads.append(1) or every()
        pages = ["/ui/views/view_0001", "/ui/views/view_0002", "/ui/entities/rider"]
        pages += ["/ui/sources/rides", "/ui/services/first", "/ui/catalog", "/ui/catalog?q=f0"]
        bodies = [main_of(client.get(url).text) for url in pages]
        assert len(reads) == 1
        assert "features.py:" in bodies[0] and "features.py:" in bodies[-1]
        # a moved definition: the next apply is a new catalog, and its locations are read again
        features = big / "features.py"
        text = features.read_text()
        try:
            features.write_text("\n\n\n" + text)
            before = re.search(r"features\.py:(\d+)", bodies[0])
            store.apply()
            after = re.search(r"features\.py:(\d+)", main_of(client.get("/ui/views/view_0001").text))
        finally:
            features.write_text(text)
            store.apply()
        assert before and after and int(after[1]) == int(before[1]) + 3
        assert len(reads) == 2


@pytest.mark.slow
def test_typing_searches_a_large_catalog_on_the_server_in_a_browser(big):
    from featurestore.server import create_app
    from tests.browser import launch, watch
    from tests.server.conftest import LiveServer
    from tests.ui.test_browser import blocking_violations

    store = FeatureStore(big)
    live = LiveServer(create_app(store)).start()
    try:
        with launch() as browser:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            log = watch(page)
            page.set_default_timeout(15_000)
            page.goto(f"{live.url}/ui/catalog")
            views = page.locator("#catalog section[aria-labelledby='cat-views'] tbody tr")
            count = page.locator("[data-filter-count]")
            assert views.count() == ROWS_SHOWN and count.inner_text() == "453"
            row = page.locator("#catalog a[href='/ui/views/view_0142']").first
            assert row.count() == 0  # beyond the first page

            page.locator("#catalog-search").press_sequentially("view_0142", delay=30)
            row.wait_for(state="visible")
            assert views.count() == 1 and count.inner_text() == "3"  # the view and its 2 features
            assert page.locator("#catalog a[href='/ui/views/view_0001']").count() == 0
            assert page.locator("#catalog section[aria-labelledby='cat-services']").is_hidden()
            assert "q=view_0142" in page.url

            # answers that come back out of order: the one to the latest search is the one shown
            held: list = []

            def hold(route):  # answered below, in the order the test chooses
                held.append(route)

            page.route("**/ui/catalog/results?*", hold)
            for n, q in enumerate(("view_0001", "view_0002"), start=1):
                page.fill("#catalog-search", q)
                for _ in range(100):
                    if len(held) == n:
                        break
                    page.wait_for_timeout(20)
                assert len(held) == n, f"the search for {q} was not sent"
            held[1].continue_()
            page.locator("#catalog a[href='/ui/views/view_0002']").first.wait_for(state="visible")
            with page.expect_response(lambda r: "q=view_0001" in r.url):
                held[0].continue_()
            page.wait_for_timeout(300)  # time for a late answer to be (wrongly) put in place
            assert page.locator("#catalog a[href='/ui/views/view_0002']").first.is_visible()
            assert page.locator("#catalog a[href='/ui/views/view_0001']").count() == 0
            assert "q=view_0002" in page.url and count.inner_text() == "4"  # and the service
            page.unroute("**/ui/catalog/results?*")

            page.fill("#catalog-search", "")
            page.locator("#catalog a[href='/ui/views/view_0099']").first.wait_for(state="visible")
            assert views.count() == ROWS_SHOWN and count.inner_text() == "453"
            assert not log.errors, log.errors
            assert not log.foreign_to(live.url), log.foreign_to(live.url)
            # the accessibility pass (axe is injected as an inline script: this context alone bypasses the CSP)
            axe = browser.new_context(bypass_csp=True).new_page()
            for url in ("/ui/catalog", "/ui/catalog?q=f1"):
                axe.goto(live.url + url)
                found = blocking_violations(axe)
                assert not found, f"{url}:\n" + "\n".join(found)
    finally:
        live.stop()
        store.close()
