"""The model monitoring page (`/ui/models/{name}/monitoring`) and its skew part: the report's content
in the page frame, for the demo's production version (whose conv_rate the demo shifts) and for a
version that served nothing yet."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from featurestore import FeatureStore
from tests.ui.conftest import ui_client

MODEL = "trip_completion"
PAGE = f"/ui/models/{MODEL}/monitoring"
DRIFT_ROW = re.compile(
    r'<tr class="drift-row">\s*<th scope="row"><a href="#hist-\d+">([^<]+)</a>.*?'
    r'<span class="status status-(\w+)">.*?<td class="num">([^<]+)</td>',
    re.S,
)


def main_of(html: str) -> str:
    return html.split('<main id="main">', 1)[1].split("</main>", 1)[0]


def section(body: str, start: str, end: str) -> str:
    return body.split(f'id="{start}"', 1)[1].split(f'id="{end}"', 1)[0]


@pytest.fixture(scope="module")
def client(demo_built: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    repo = tmp_path_factory.mktemp("monitoring-read") / "repo"
    shutil.copytree(demo_built, repo)
    with ui_client(repo) as c:
        yield c


@pytest.fixture(scope="module")
def production_page(client: Any) -> str:
    r = client.get(PAGE)
    assert r.status_code == 200
    return main_of(r.text)


def test_without_a_version_the_page_shows_production(production_page):
    assert "<h1>Monitoring of trip_completion v1" in production_page
    assert '<span class="badge">production</span>' in production_page
    assert '<option value="1" selected>v1 (production)</option>' in production_page
    # the last 7 days unless asked (the demo logged all its predictions within them)
    assert re.search(r"<dt>Window</dt><dd>\d{4}-\d\d-\d\d \d\d:\d\d UTC to now</dd>", production_page)
    assert '<option value="7" selected>last 7 days</option>' in production_page
    assert "<dt>Predictions logged</dt><dd>923</dd>" in production_page
    assert 'skew?version=1&amp;days=7"' in production_page


def test_everything_logged_is_an_explicit_choice_of_the_window_menu(client):
    body = main_of(client.get(PAGE, params={"days": "all"}).text)
    assert "<dt>Window</dt><dd>everything logged</dd>" in body
    assert '<option value="all" selected>everything logged</option>' in body
    assert "<dt>Predictions logged</dt><dd>923</dd>" in body
    assert 'skew?version=1&amp;days=all"' in body


def test_drift_rows_are_sorted_by_psi_highest_first_and_conv_rate_drifts(client, production_page):
    rows = DRIFT_ROW.findall(section(production_page, "drift", "histograms"))
    report = client.app.state.fs.store.monitor.drift(f"{MODEL}@1")
    assert len(rows) == len(report.features) + 1, "every feature, then the prediction"
    names = [name for name, _, _ in rows]
    assert names[-1] == "prediction"
    psi = [float(value) for _, _, value in rows[:-1]]
    assert psi == sorted(psi, reverse=True), names
    assert names[0] == "conv_rate" and rows[0][1] == "drift"
    assert set(names[:-1]) == set(report.features)
    assert '<span class="status status-drift">drift</span>' in production_page.split("<dt>Drift</dt>", 1)[1]


def test_charts_psi_bars_histograms_and_the_per_day_figures(client, production_page):
    drift = section(production_page, "drift", "histograms")
    assert drift.count("<svg") == 1, "the PSI bar chart"
    histograms = section(production_page, "histograms", "daily-drift")
    report = client.app.state.fs.store.monitor.drift(f"{MODEL}@1")
    assert histograms.count("<svg") == len(report.features) + 1
    assert "<figcaption>conv_rate</figcaption>" in histograms
    daily = section(production_page, "daily-drift", "performance")
    assert daily.count("<svg") == 1 and "PSI per day" in daily
    live = section(production_page, "performance", "skew")
    assert live.count("<svg") == 1 and "Live accuracy per day" in live and '<td class="num">920</td>' in live


def test_freshness_lists_only_the_views_the_version_reads(production_page):
    fresh = production_page.split('id="freshness"', 1)[1]
    for view in ("driver_hourly_stats", "customer_profile", "driver_trip_activity"):
        assert f'href="/ui/views/{view}">{view}</a>' in fresh
    assert "route_stats" not in fresh, "a view the model does not read"
    assert 'href="/ui/views/trip_shape"' in fresh and "on-demand" in fresh


def test_the_skew_audit_is_a_part_loaded_after_the_page(client, production_page):
    url = f"/ui/models/{MODEL}/monitoring/skew?version=1&days=7"
    assert f'data-src="{url.replace("&", "&amp;")}"' in production_page
    r = client.get(url)
    assert r.status_code == 200 and "<html" not in r.text
    assert "923 served rows recomputed point-in-time" in r.text
    assert "<td>conv_rate</td>" in r.text


def test_another_version_and_a_window(client):
    r = client.get(PAGE, params={"version": 2, "days": 7})
    assert r.status_code == 200
    body = main_of(r.text)
    assert "<h1>Monitoring of trip_completion v2" in body and "challenger" in body
    assert re.search(r"<dt>Window</dt><dd>\d{4}-\d\d-\d\d \d\d:\d\d UTC to now</dd>", body)
    assert '<option value="7" selected>last 7 days</option>' in body
    assert "<dt>Predictions logged</dt><dd>200</dd>" in body, "the challenger's shadow rows"
    assert 'data-src="/ui/models/trip_completion/monitoring/skew?version=2&amp;days=7"' in body


@pytest.mark.parametrize("query", ["days=0", "days=x", "version=0", "days=100000", "days=%D9%A3"])
def test_bad_query_values_are_a_422_page(client, query):
    r = client.get(f"{PAGE}?{query}")
    assert r.status_code == 422 and r.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize(
    "path", ["/ui/models/nope/monitoring", f"{PAGE}?version=9", f"{PAGE}/skew?version=9"]
)
def test_an_unknown_model_or_version_is_a_404_page(client, path):
    r = client.get(path)
    assert r.status_code == 404 and "unknown" in r.text


def test_a_version_that_served_nothing_gets_a_note_not_an_error(demo_repo):
    store = FeatureStore(demo_repo)
    mv = store.models.register(
        MODEL,
        store.models.load(f"{MODEL}@2"),
        "driver_activity",
        training_set="trip_completion__run1",
        missing_policy="null",
    )
    store.close()
    with ui_client(demo_repo) as client:
        r = client.get(PAGE, params={"version": mv.version})
    assert r.status_code == 200
    body = main_of(r.text)
    assert f"No predictions of trip_completion v{mv.version} are logged in this window" in body
    assert "<dt>Predictions logged</dt><dd>0</dd>" in body
    assert "data-src" not in body, "no skew audit of nothing"
    assert "No predictions logged in the window." in body
    assert 'id="freshness"' in body
