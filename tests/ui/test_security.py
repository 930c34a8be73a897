"""Fixes from the security and scale reviews of the web UI: one API key per name, no Redis password
in what readers (or /ready) see, POSTs behind a reverse proxy, an expired session inside a part of a
page, cached log scans, bounded materialization runs and audit pages, the monitoring window's
default, Server-Timing on parts, and a confirmation only the aliases can back."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from featurestore import FeatureStore
from featurestore.config import ApiKey, load_config
from featurestore.errors import ConfigError
from featurestore.registry_store import MaterializationRun
from featurestore.server.auth import Authenticator
from tests.test_registry_store import BACKENDS, open_backend
from tests.ui.conftest import KEYS, ui_client

MODEL = "trip_completion"
PAGE = f"/ui/models/{MODEL}"
APPROVE = f"{PAGE}/versions/2/approve"
APPROVER_KEY = "key-abe-approver-0000"
READER = {"X-API-Key": "key-rita-read-000000"}
ADMIN = {"X-API-Key": "key-ada-admin-000000"}
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
SECRET = "hunter2secret"


def write_config(root: Path, text: str) -> None:
    (root / "featurestore.toml").write_text('project = "p"\n' + text)


def key_toml(name: str, role: str = "read", key: str = "0123456789") -> str:
    return f'[[server.api_keys]]\nname = "{name}"\nrole = "{role}"\nkey = "{key}"\n'


def sign_in(client: Any, key: str, **headers: str) -> Any:
    return client.post("/ui/login", data={"key": key, "next": PAGE}, headers=headers, follow_redirects=False)


def token_of(client: Any, **headers: str) -> str:
    found = set(CSRF.findall(client.get(PAGE, headers=headers).text))
    assert len(found) == 1, found
    return found.pop()


@pytest.fixture(scope="module")
def shared(demo_built: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    import shutil

    repo = tmp_path_factory.mktemp("security-read") / "repo"
    shutil.copytree(demo_built, repo)
    with ui_client(repo, KEYS) as client:
        yield client


# -- 1. one key per name -----------------------------------------------------------------------------


def test_two_keys_of_one_name_are_refused_naming_both_places(tmp_path):
    write_config(tmp_path, key_toml("boss", "admin") + key_toml("boss", "read", "abcdefghij"))
    with pytest.raises(
        ConfigError, match=r"'boss' is used twice \(.*featurestore.toml and .*featurestore.toml\)"
    ):
        load_config(tmp_path, env={})
    write_config(tmp_path, key_toml("boss", "admin"))
    with pytest.raises(ConfigError, match=r"'boss' is used twice \(.*featurestore.toml and FS_API_KEYS\)"):
        load_config(tmp_path, env={"FS_API_KEYS": "boss:read:abcdefghij"})
    with pytest.raises(ConfigError, match=r"\(FS_API_KEYS and FS_API_KEYS\)"):
        load_config(tmp_path, env={"FS_API_KEYS": "a:read:abcdefghij,a:admin:0123456789x"})


@pytest.mark.parametrize("name", ["x" * 101, "has space", "semi;colon", "é", "new\nline", ""])
def test_a_key_name_is_at_most_100_plain_characters(tmp_path, name):
    write_config(tmp_path, "")
    with pytest.raises(ConfigError, match="1 to 100 characters"):
        load_config(tmp_path, env={"FS_API_KEYS": f"{name}:read:0123456789"})


def test_names_the_tests_and_docs_use_are_still_fine(tmp_path):
    names = ["svc", "read-key", "ranker", "dot.ted", "ci@example.org", "key_0", "x" * 100]
    write_config(tmp_path, "".join(key_toml(n, key=f"key-{i:08d}") for i, n in enumerate(names)))
    assert [k.name for k in load_config(tmp_path, env={}).server.api_keys] == names


def test_the_authenticator_refuses_two_keys_of_one_name(demo_repo):
    keys = [ApiKey("boss", "admin", "key-boss-admin-00000"), ApiKey("boss", "read", "key-boss-read-000000")]
    with pytest.raises(ValueError, match="boss"):
        Authenticator(keys)
    with pytest.raises(ValueError, match="boss"):
        ui_client(demo_repo, keys)


# -- 2. no Redis password in messages -----------------------------------------------------------------


def test_the_redis_password_is_in_no_page_and_not_in_ready(demo_repo, monkeypatch):
    config = demo_repo / "featurestore.toml"
    text = config.read_text()
    assert 'type = "sqlite"\npath = "data/online.db"' in text
    config.write_text(text.replace('type = "sqlite"\npath = "data/online.db"', 'type = "redis"'))
    monkeypatch.setenv("FS_ONLINE_URL", f"redis://:{SECRET}@127.0.0.1:1/0")  # a closed port
    with ui_client(demo_repo, KEYS) as client:
        ready = client.get("/ready")
        assert ready.status_code == 503 and "redis://:***@127.0.0.1:1/0" in ready.text
        for path in ("/ready", "/ui/", "/ui/partials/checks", "/ui/views/driver_hourly_stats", "/ui/catalog"):
            r = client.get(path, headers=READER)
            assert SECRET not in r.text, path


def test_cluster_messages_mask_the_password_too():
    from featurestore.online.cluster_client import ClusterClient

    url = f"redis://:{SECRET}@127.0.0.1:1/0"
    message = str(ClusterClient(url, 0.1).unavailable(OSError(f"refused by {url}"), ("127.0.0.1", 1)))
    assert SECRET not in message and "redis://:***@127.0.0.1:1/0" in message
    with pytest.raises(ConfigError) as bad:
        ClusterClient(f"redis://:{SECRET}@127.0.0.1:1/3", 0.1)
    assert SECRET not in str(bad.value) and "only database 0" in str(bad.value)


# -- 3. behind a reverse proxy ------------------------------------------------------------------------

PROXIED = {
    "Host": "127.0.0.1:6566",
    "Origin": "https://features.example.org",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "features.example.org",
}


def test_behind_a_proxy_login_and_approve_pass_the_origin_check(demo_repo):
    with ui_client(demo_repo, KEYS) as client:
        r = sign_in(client, APPROVER_KEY, **PROXIED)
        assert r.status_code == 303, r.text[:300]
        cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("fs_ui="))
        assert "Secure" in cookie  # TLS ends at the proxy: X-Forwarded-Proto says https
        # (the test client speaks http, so it keeps that cookie to itself: the key header from here)
        token = token_of(client, **{"X-API-Key": APPROVER_KEY})
        headers = {**PROXIED, "X-API-Key": APPROVER_KEY}
        r = client.post(APPROVE, data={"csrf": token}, headers=headers, follow_redirects=False)
        assert r.status_code == 303, r.text[:300]
        assert client.app.state.fs.store.models.aliases(MODEL)["production"] == 2


@pytest.mark.parametrize(
    "headers",
    [
        {**PROXIED, "X-Forwarded-Host": "other.example.org"},  # the Origin is neither
        {**PROXIED, "X-Forwarded-Proto": "http"},
        {k: v for k, v in PROXIED.items() if k != "X-Forwarded-Host"},
        {**PROXIED, "Origin": "null"},
    ],
)
def test_behind_a_proxy_another_origin_is_still_refused(demo_repo, headers):
    with ui_client(demo_repo, KEYS) as client:
        assert sign_in(client, APPROVER_KEY, **headers).status_code == 403
        assert sign_in(client, APPROVER_KEY).status_code == 303
        token = token_of(client)
        assert client.post(APPROVE, data={"csrf": token}, headers=headers).status_code == 403
        assert client.app.state.fs.store.models.aliases(MODEL)["production"] == 1


def test_a_plain_http_session_cookie_is_not_secure(shared):
    r = sign_in(shared, APPROVER_KEY)
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("fs_ui="))
    assert "Secure" not in cookie
    shared.cookies.clear()


# -- 4. an expired session inside a part of a page -----------------------------------------------------


def test_a_part_without_a_session_is_a_short_401_not_a_login_page(shared):
    shared.cookies.clear()
    r = shared.get("/ui/partials/checks", headers={"X-FS-Fragment": "1"}, follow_redirects=False)
    assert r.status_code == 401 and "<html" not in r.text
    assert r.text == "Your session ended: reload the page to sign in again."
    page = shared.get("/ui/partials/checks", follow_redirects=False)  # a browser going there: login
    assert page.status_code == 303 and page.headers["location"].startswith("/ui/login")


def test_ui_js_asks_for_parts_as_fragments_and_says_a_401_ended_the_session():
    script = (Path(__file__).parents[2] / "server" / "ui" / "static" / "ui.js").read_text()
    assert '"X-FS-Fragment": "1"' in script
    assert "Your session ended: reload the page to sign in again." in script


@pytest.mark.parametrize(
    "referer, next_path",
    [
        (f"http://testserver{PAGE}?tab=x", f"{PAGE}?tab=x"),
        ("https://evil.example/ui/audit", "/ui/"),
        ("http://testserver/docs", "/ui/"),
        (None, "/ui/"),
    ],
)
def test_a_post_with_an_expired_session_logs_in_back_to_the_form_page(shared, referer, next_path):
    shared.cookies.clear()
    headers = {"Referer": referer} if referer else {}
    r = shared.post(APPROVE, data={"csrf": "x"}, headers=headers, follow_redirects=False)
    assert r.status_code == 303
    assert unquote(r.headers["location"].split("next=", 1)[1]) == next_path


# -- 5. the log scans of parts are kept a minute -----------------------------------------------------


def test_shadow_and_skew_parts_scan_the_log_once_a_minute_per_window(shared, monkeypatch):
    monitor = shared.app.state.fs.store.monitor
    calls: list[str] = []
    for name in ("shadow", "skew"):
        real = getattr(monitor, name)

        def counted(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            calls.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(monitor, name, counted)
    shared.app.state.ui_caches = {}
    for _ in range(2):
        assert shared.get(f"{PAGE}/shadow", headers=READER).status_code == 200
        assert shared.get(f"{PAGE}/monitoring/skew?version=1", headers=READER).status_code == 200
    assert calls == ["shadow", "skew"]
    shared.get(f"{PAGE}/shadow?days=all", headers=READER)
    shared.get(f"{PAGE}/monitoring/skew?version=1&days=30", headers=READER)
    assert calls == ["shadow", "skew", "shadow", "skew"], "another window is another key"
    for cache in shared.app.state.ui_caches.values():
        cache.ttl = 0
    shared.get(f"{PAGE}/shadow", headers=READER)
    assert calls[-1] == "shadow" and len(calls) == 5


def test_the_home_checks_share_the_cache_class():
    from featurestore.server.ui.cache import TTLCache
    from featurestore.server.ui.home import ChecksCache

    cache = ChecksCache(ttl=5)
    assert isinstance(cache._cache, TTLCache) and cache.ttl == 5


def test_a_ttl_cache_holds_a_value_for_its_ttl_and_drops_the_oldest_keys():
    from featurestore.server.ui import cache as module

    made: list[int] = []
    cache: module.TTLCache[int] = module.TTLCache(ttl=60)
    assert cache.get("a", lambda: made.append(1) or 1) == 1
    assert cache.get("a", lambda: made.append(2) or 2) == 1 and made == [1]
    cache.ttl = -1
    assert cache.get("a", lambda: made.append(3) or 3) == 3
    for i in range(module.MAX_KEYS + 5):
        cache.get(i, lambda: 0)
    assert len(cache._values) == module.MAX_KEYS


# -- 6. materialization runs: the newest only -----------------------------------------------------------

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize("kind", BACKENDS)
def test_runs_with_a_limit_are_the_newest_oldest_first_on_every_backend(kind, tmp_path):
    with open_backend(kind, tmp_path) as backend:
        for i in range(6):
            view = "v" if i % 2 == 0 else "w"
            start = T0 + timedelta(hours=i)
            run = MaterializationRun(view, start, start + timedelta(hours=1), i, i, T0, None, None)
            backend.record_materialization(run, advance_watermark=True)
        assert [r.rows for r in backend.runs()] == [0, 1, 2, 3, 4, 5]
        assert [r.rows for r in backend.runs(limit=3)] == [3, 4, 5]
        assert [r.rows for r in backend.runs("v", limit=2)] == [2, 4]
        assert [r.rows for r in backend.runs("w", limit=10)] == [1, 3, 5]
        assert backend.runs(limit=0) == [] and backend.runs("nope", limit=1) == []


def test_the_runs_page_and_a_view_page_read_only_the_newest_runs(shared, monkeypatch):
    registry = shared.app.state.fs.store.registry
    asked: list[tuple[Any, Any]] = []
    real = registry.runs

    def spy(view: Any = None, limit: Any = None) -> Any:
        asked.append((view, limit))
        return real(view, limit)

    monkeypatch.setattr(registry, "runs", spy)
    assert shared.get("/ui/runs", headers=READER).status_code == 200
    assert shared.get("/ui/views/driver_hourly_stats", headers=READER).status_code == 200
    assert (None, 50) in asked and ("driver_hourly_stats", 10) in asked
    assert all(limit is not None for _, limit in asked), asked


# -- 7. the audit page's limit --------------------------------------------------------------------------


def test_the_audit_page_shows_100_by_default_and_at_most_1000(shared):
    r = shared.get("/ui/audit", headers=ADMIN)
    assert r.status_code == 200 and 'max="1000" value="100"' in r.text
    assert shared.get("/ui/audit?limit=1000", headers=ADMIN).status_code == 200
    too_many = shared.get("/ui/audit?limit=1001", headers=ADMIN)
    assert too_many.status_code == 422 and too_many.headers["content-type"].startswith("text/html")


# -- 8. the monitoring window ---------------------------------------------------------------------------


def test_parts_and_the_page_default_to_the_last_7_days(shared):
    shadow = shared.get(f"{PAGE}/shadow", headers=READER).text
    assert re.search(r"Window: \d{4}-\d\d-\d\d \d\d:\d\d UTC to now\.", shadow)
    everything = shared.get(f"{PAGE}/shadow?days=all", headers=READER).text
    assert "Window: everything logged." in everything
    assert shared.get(f"{PAGE}/shadow?days=0", headers=READER).status_code == 422
    assert shared.get(f"{PAGE}/monitoring/skew?days=everything", headers=READER).status_code == 422


def test_the_window_reaches_the_shadow_scan(shared, monkeypatch):
    monitor = shared.app.state.fs.store.monitor
    seen: list[tuple[Any, Any]] = []
    monkeypatch.setattr(
        monitor, "shadow", lambda name, start=None, end=None: seen.append((start, end)) or None
    )
    shared.app.state.ui_caches = {}
    shared.get(f"{PAGE}/shadow?days=7", headers=READER)
    shared.get(f"{PAGE}/shadow?days=all", headers=READER)
    (start, end), everything = seen
    assert end is None and abs(datetime.now(timezone.utc) - timedelta(days=7) - start) < timedelta(minutes=1)
    assert everything == (None, None)
    shared.app.state.ui_caches = {}


# -- 9 and 10 ----------------------------------------------------------------------------------------


def test_a_part_carries_server_timing(shared):
    r = shared.get("/ui/partials/checks", headers=READER)
    assert r.status_code == 200 and re.fullmatch(r"app;dur=\d+\.\d\d", r.headers["server-timing"])


@pytest.mark.parametrize(
    "query",
    [
        "done=approved&version=2&alias=production",
        "done=approved&version=99",
        "done=approved&version=2",  # v2 is the challenger: approving is about production
    ],
)
def test_an_approval_is_confirmed_only_when_the_aliases_say_so(shared, query):
    body = shared.get(f"{PAGE}?{query}", headers=READER).text
    assert "notice-ok" not in body and "was approved" not in body  # production is still v1
    confirmed = shared.get(f"{PAGE}?done=approved&version=1&alias=production", headers=READER).text
    assert '<p class="notice-ok" role="status">v1 is now production.</p>' in confirmed


def test_an_approval_through_the_form_is_still_confirmed(demo_repo):
    with ui_client(demo_repo, KEYS) as client:
        assert sign_in(client, APPROVER_KEY).status_code == 303
        r = client.post(APPROVE, data={"csrf": token_of(client)})
        assert r.status_code == 200 and "v2 is now production." in r.text
    store = FeatureStore(demo_repo)
    try:
        assert store.models.aliases(MODEL)["production"] == 2
    finally:
        store.close()
