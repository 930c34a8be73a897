"""The Models pages (`/ui/models`, `/ui/models/{name}`, `/ui/models/{name}/versions/{v}`, the shadow
part) and the approve / reject forms: who sees them, what a POST needs (the approver role, the page's
CSRF token, our own Origin), and that a decision moves the alias (or not) as the API's does."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from featurestore import FeatureStore
from tests.ui.conftest import KEYS, ui_client

MODEL = "trip_completion"
PAGE = f"/ui/models/{MODEL}"
APPROVE = f"{PAGE}/versions/2/approve"
REJECT = f"{PAGE}/versions/2/reject"
APPROVER_KEY = "key-abe-approver-0000"
READER_KEY = "key-rita-read-000000"
APPROVER = {"X-API-Key": APPROVER_KEY}
READER = {"X-API-Key": READER_KEY}
FORM = re.compile(r'<form method="post" action="([^"]+)"')
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def main_of(html: str) -> str:
    return html.split('<main id="main">', 1)[1].split("</main>", 1)[0]


def production(repo: Path) -> int:
    store = FeatureStore(repo)
    try:
        return store.models.aliases(MODEL)["production"]
    finally:
        store.close()


def csrf_of(html: str) -> str:
    """The one CSRF token of the decision forms of a page (or of its main part)."""
    tokens = set(CSRF.findall(main_of(html) if '<main id="main">' in html else html))
    assert len(tokens) == 1, tokens
    return tokens.pop()


def signed_in(client: Any, key: str) -> None:
    r = client.post("/ui/login", data={"key": key, "next": PAGE}, follow_redirects=False)
    assert r.status_code == 303, r.text[:500]


@pytest.fixture(scope="module")
def shared_repo(demo_built: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One copy of the demo for the tests that only read (pages cache monitoring profiles in it)."""
    repo = tmp_path_factory.mktemp("models-read") / "repo"
    shutil.copytree(demo_built, repo)
    return repo


@pytest.fixture(scope="module")
def keyed(shared_repo: Path) -> Iterator[Any]:
    with ui_client(shared_repo, KEYS) as client:
        yield client


# -- reading ----------------------------------------------------------------------------------------


def test_the_models_page_lists_each_model_with_its_aliases_and_what_waits_for_approval(keyed):
    r = keyed.get("/ui/models", headers=READER)
    assert r.status_code == 200
    body = main_of(r.text)
    assert body.count("<h1>") == 1
    assert f'href="/ui/models/{MODEL}"' in body
    assert "production → v1" in body and "challenger → v2" in body
    assert "1 pending" in body and "sklearn" in body and "Will the trip be completed?" in body
    # the pending-approvals section links the candidate and the run that left it pending
    pending = body.split('id="pending"', 1)[1].split('id="all"', 1)[0]
    assert f'href="/ui/models/{MODEL}/versions/2"' in pending and 'href="/ui/runs/1"' in pending


def test_the_model_page_shows_versions_aliases_history_and_the_pending_candidate(keyed):
    r = keyed.get(PAGE, headers=READER)
    assert r.status_code == 200
    body = main_of(r.text)
    versions = body.split('id="versions"', 1)[1].split('id="history"', 1)[0]
    assert versions.index(">v2</a>") < versions.index(">v1</a>"), "newest version first"
    assert 'href="/ui/training-sets/trip_completion_train"' in versions
    assert 'href="/ui/services/driver_activity"' in versions
    assert "accuracy 0.8112" in versions
    history = body.split('id="history"', 1)[1]
    assert "registered v2" in history and "set alias" in history
    pending = body.split('id="pending"', 1)[1].split('id="versions"', 1)[0]
    assert "v2 to become" in pending and "now v1" in pending
    assert "accuracy" in pending and '<span class="badge">decides</span>' in pending
    assert "improvement" in pending, "the run's reasons are shown"
    assert f'href="/ui/lineage?focus=model:{MODEL}"' in body
    assert f'href="/ui/runs?model={MODEL}"' in body
    assert f'href="/ui/models/{MODEL}/monitoring?version=1"' in body
    assert f'data-src="/ui/models/{MODEL}/shadow"' in body


def test_the_shadow_part_compares_production_with_its_challenger(keyed):
    r = keyed.get(f"{PAGE}/shadow", headers=READER)
    assert r.status_code == 200
    assert "<html" not in r.text, "a fragment, not a page"
    assert "200 shadow rows logged" in r.text
    assert "Agreement (equal predictions)" in r.text and "<svg" in r.text
    assert "accuracy production" in r.text


def test_a_model_without_a_challenger_shows_no_shadow_section(demo_repo):
    store = FeatureStore(demo_repo)
    store.models.delete_alias(MODEL, "challenger")
    store.close()
    with ui_client(demo_repo) as client:
        body = main_of(client.get(PAGE).text)
        part = client.get(f"{PAGE}/shadow")
    assert 'id="shadow"' not in body and "/shadow" not in body
    assert part.status_code == 200 and "no challenger alias" in part.text


def test_the_version_page_shows_everything_of_the_version(keyed):
    r = keyed.get(f"{PAGE}/versions/1", headers=READER)
    assert r.status_code == 200
    body = main_of(r.text)
    mv = keyed.app.state.fs.store.models.get(MODEL, version=1)
    assert mv.sha256 in body and mv.training_fingerprint in body
    assert '<span class="badge">production</span>' in body
    assert 'href="/ui/views/driver_hourly_stats">driver_hourly_stats</a>:<code>conv_rate</code>' in body
    assert 'href="/ui/views/trip_shape"' in body, "an on-demand view's input links to its page"
    assert "max_depth" in body and "predict with a missing value" in body
    assert f'href="/ui/models/{MODEL}/monitoring?version=1"' in body
    assert f'href="/ui/lineage?focus=version:{MODEL}@1"' in body
    assert '<form method="post"' not in body, "v1 waits for nothing"
    v2 = main_of(keyed.get(f"{PAGE}/versions/2", headers=APPROVER).text)
    assert 'href="/ui/runs/1">Run 1</a>' in v2
    assert FORM.findall(v2) == [APPROVE, REJECT]


@pytest.mark.parametrize(
    "path",
    ["/ui/models/nope", "/ui/models/nope/versions/1", f"{PAGE}/versions/9", "/ui/models/nope/shadow"],
)
def test_an_unknown_model_or_version_is_a_404_page(keyed, path):
    r = keyed.get(path, headers=READER)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")
    assert "unknown" in r.text


def test_names_are_escaped_and_quoted(keyed):
    r = keyed.get("/ui/models/<b>x", headers=READER)
    assert r.status_code == 404 and "<b>x" not in r.text


# -- who may decide ------------------------------------------------------------------------------------


def test_an_approver_sees_the_forms_with_a_csrf_token_and_a_labelled_reason(keyed):
    body = main_of(keyed.get(PAGE, headers=APPROVER).text)
    assert FORM.findall(body) == [APPROVE, REJECT]
    assert csrf_of(body)
    for form in ("approve", "reject"):
        assert f'<label for="{form}-reason-1">' in body and f'id="{form}-reason-1" name="reason"' in body
    assert ">Approve v2 as production</button>" in body and ">Reject v2</button>" in body
    assert "an approver can approve" not in body


def test_a_reader_gets_no_forms_and_a_crafted_post_is_refused(demo_repo):
    with ui_client(demo_repo, KEYS) as client:
        body = main_of(client.get(PAGE, headers=READER).text)
        assert "<form" not in body and "Approve" not in body and "csrf" not in body
        assert "an approver can approve" in body
        assert "<form" not in main_of(client.get(f"{PAGE}/versions/2", headers=READER).text)
        token = csrf_of(client.get(PAGE, headers=APPROVER).text)  # even a valid-looking form
        r = client.post(APPROVE, data={"csrf": token}, headers=READER)
        assert r.status_code == 403 and "approver" in r.text
    assert production(demo_repo) == 1


def test_without_a_session_a_post_goes_to_the_login_page(demo_repo):
    with ui_client(demo_repo, KEYS) as client:
        r = client.post(APPROVE, data={"csrf": "x"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/login")
    assert production(demo_repo) == 1


# -- deciding ----------------------------------------------------------------------------------------


def test_approving_moves_production_to_the_candidate_and_the_page_says_so(demo_repo):
    with ui_client(demo_repo, KEYS) as client:
        signed_in(client, APPROVER_KEY)
        token = csrf_of(client.get(PAGE).text)
        r = client.post(APPROVE, data={"csrf": token, "reason": "better accuracy"}, follow_redirects=False)
        assert r.status_code == 303
        assert r.headers["location"] == f"{PAGE}?done=approved&version=2&alias=production"
        page = client.get(r.headers["location"])
        body = main_of(page.text)
        assert '<p class="notice-ok" role="status">v2 is now production.</p>' in body
        assert "<form" not in body, "nothing is pending any more"
        assert client.app.state.fs.store.models.aliases(MODEL)["production"] == 2
        audit = client.app.state.fs.store.registry.audit_log("model_approve", 5)
        assert audit[0]["actor"] == "abe" and audit[0]["detail"]["reason"] == "better accuracy"
        again = client.post(APPROVE, data={"csrf": token}, follow_redirects=False)
        assert again.status_code == 409
        assert again.headers["content-type"].startswith("text/html")
        assert "no pending approval" in again.text or "decided meanwhile" in again.text
    assert production(demo_repo) == 2


def test_the_app_model_server_hears_of_an_approval(demo_repo):
    trips = pq.read_table(demo_repo / "data" / "trips.parquet").slice(0, 2).to_pylist()
    rows = [{k: t[k] for k in ("driver_id", "customer_id", "distance_km")} for t in trips]
    with ui_client(demo_repo) as client:  # open UI: anonymous is admin
        before = client.post(f"/models/{MODEL}@production/predict", json={"entities": rows})
        assert before.status_code == 200 and before.json()["version"] == 1
        token = csrf_of(client.get(PAGE).text)
        assert client.post(APPROVE, data={"csrf": token}, follow_redirects=False).status_code == 303
        after = client.post(f"/models/{MODEL}@production/predict", json={"entities": rows})
        assert after.status_code == 200 and after.json()["version"] == 2


def test_rejecting_leaves_production_where_it_is(demo_repo):
    with ui_client(demo_repo, KEYS) as client:
        token = csrf_of(client.get(PAGE, headers=APPROVER).text)
        r = client.post(REJECT, data={"csrf": token, "reason": "not enough"}, headers=APPROVER)
        assert r.status_code == 200  # followed the redirect
        body = main_of(r.text)
        assert "v2 was rejected: production stays at v1." in body
        assert "<form" not in body
        assert client.app.state.fs.store.models.pending(MODEL) == []
        run = client.app.state.fs.store.pipelines.get_run(1)
        assert run.decision == "declined" and run.record["review"]["by"] == "abe"
    assert production(demo_repo) == 1


@pytest.mark.parametrize("token", [None, "", "0" * 64, "wrong"])
def test_a_post_without_the_pages_csrf_token_is_refused(demo_repo, token):
    with ui_client(demo_repo, KEYS) as client:
        signed_in(client, APPROVER_KEY)
        data = {"reason": "no token"} if token is None else {"csrf": token}
        r = client.post(APPROVE, data=data, follow_redirects=False)
        assert r.status_code == 403 and "CSRF" in r.text
    assert production(demo_repo) == 1


def test_a_post_from_another_origin_is_refused(demo_repo):
    with ui_client(demo_repo, KEYS) as client:
        signed_in(client, APPROVER_KEY)
        token = csrf_of(client.get(PAGE).text)
        r = client.post(
            APPROVE, data={"csrf": token}, headers={"Origin": "https://evil.example"}, follow_redirects=False
        )
        assert r.status_code == 403 and "another origin" in r.text
        assert client.post(REJECT, data={"csrf": token}, headers={"Origin": "null"}).status_code == 403
    assert production(demo_repo) == 1


def test_a_version_nothing_waits_for_is_a_409_page(demo_repo):
    with ui_client(demo_repo, KEYS) as client:
        token = csrf_of(client.get(PAGE, headers=APPROVER).text)
        r = client.post(f"{PAGE}/versions/1/approve", data={"csrf": token}, headers=APPROVER)
        assert r.status_code == 409 and "no pending approval" in r.text
        assert (
            client.post(f"{PAGE}/versions/0/approve", data={"csrf": token}, headers=APPROVER).status_code
            == 422
        )
        long = client.post(APPROVE, data={"csrf": token, "reason": "x" * 2001}, headers=APPROVER)
        assert long.status_code == 422
    assert production(demo_repo) == 1
