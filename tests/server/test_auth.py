"""The auth matrix: every endpoint x {no key, wrong key, read, write, admin}, over a real server.

Open: /health, /ready, /docs, /openapi.json. read: lookups, catalog, metrics. write: push.
admin: the audit trail. A missing or unknown key is 401, a role too low 403.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import pytest

from tests.server.conftest import KEYS, build_repo, serve

pytestmark = pytest.mark.redis

LATER = (datetime.now(timezone.utc) + timedelta(seconds=30)).isoformat()
LOOKUP = {"features": ["driver_stats:trips"], "entities": [{"driver_id": 1}]}
PUSH = {"rows": [{"origin": "q", "destination": "r", "duration": 1.0, "event_timestamp": LATER}]}

# (method, path, body, role needed or None for open)
ENDPOINTS = [
    ("GET", "/health", None, None),
    ("GET", "/ready", None, None),
    ("GET", "/docs", None, None),
    ("GET", "/openapi.json", None, None),
    ("GET", "/metrics", None, "read"),
    ("POST", "/features/online", LOOKUP, "read"),
    ("GET", "/catalog/entities", None, "read"),
    ("GET", "/catalog/entities/driver", None, "read"),
    ("GET", "/catalog/views", None, "read"),
    ("GET", "/catalog/views/driver_stats", None, "read"),
    ("GET", "/catalog/services", None, "read"),
    ("GET", "/catalog/services/driver_activity", None, "read"),
    ("GET", "/catalog/on-demand-views", None, "read"),
    ("GET", "/catalog/on-demand-views/no_such_view", None, "read"),  # allowed: 404, the repo has none
    ("POST", "/push/route_push", PUSH, "write"),
    ("GET", "/admin/audit", None, "admin"),
]
RANK = {None: 0, "read": 1, "write": 2, "admin": 3}
CALLERS = {
    "no key": None,
    "wrong key": "not-a-key-0123456789",
    "read": KEYS["reader"][1],
    "write": KEYS["writer"][1],
    "admin": KEYS["boss"][1],
}


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    store = build_repo(tmp_path_factory.mktemp("auth-repo"), "sqlite", api_keys=True)
    with serve(store) as server:
        yield server
    store.close()


def expected_status(caller: str, role: str | None) -> int:
    if role is None:
        return 200
    if caller in ("no key", "wrong key"):
        return 401
    return 200 if RANK[caller] >= RANK[role] else 403


@pytest.mark.parametrize("caller", list(CALLERS))
@pytest.mark.parametrize("header", ["bearer", "x-api-key"])
def test_auth_matrix(keyed, caller, header, caplog):
    key = CALLERS[caller]
    headers = (
        {}
        if key is None
        else ({"Authorization": f"Bearer {key}"} if header == "bearer" else {"X-API-Key": key})
    )
    caplog.set_level(logging.DEBUG)
    with keyed.client(headers=headers) as client:
        for method, path, body, role in ENDPOINTS:
            r = client.request(method, path, json=body)
            want = expected_status(caller, role)
            want = 404 if want == 200 and path.endswith("no_such_view") else want
            assert r.status_code == want, (caller, method, path, r.text)
            if r.status_code == 401:
                assert r.headers["www-authenticate"] == "Bearer"
                assert "API key" in r.json()["error"]
            if r.status_code == 403:
                assert f"needs '{role}'" in r.json()["error"]
    for secret in (v for v in CALLERS.values() if v):
        assert secret not in caplog.text  # keys are never logged


def test_the_matrix_covers_every_endpoint_and_the_document_shows_the_roles(keyed):
    with keyed.client(headers={"X-API-Key": KEYS["boss"][1]}) as client:
        doc = client.get("/openapi.json").json()
    # The model endpoints (server/routers/models.py) have their own auth tests in tests/models/.
    paths = {p: ops for p, ops in doc["paths"].items() if "/models" not in p}
    documented = {(m.upper(), p) for p, ops in paths.items() for m in ops}
    table = {
        (
            m,
            p.replace("driver_stats", "{name}")
            .replace("driver_activity", "{name}")
            .replace("no_such_view", "{name}")
            .replace("entities/driver", "entities/{name}")
            .replace("route_push", "{source}"),
        )
        for m, p, _, _ in ENDPOINTS
        if p not in ("/docs", "/openapi.json")
    }
    assert documented == table
    roles = {(m, p): r for m, p, _, r in ENDPOINTS}
    for path, ops in paths.items():
        for method, op in ops.items():
            guarded = bool(op.get("security"))
            concrete = [
                k
                for k in roles
                if k[0] == method.upper()
                and (k[1] == path or path.endswith("}") and k[1].startswith(path.rsplit("/", 1)[0] + "/"))
            ]
            assert concrete, path
            assert guarded == (roles[concrete[0]] is not None), path


def test_no_keys_means_open_with_a_warning(tmp_path, caplog):
    store = build_repo(tmp_path, "sqlite")
    caplog.set_level(logging.WARNING, logger="featurestore.server")
    with serve(store) as server, server.client() as client:
        assert client.get("/admin/audit").status_code == 200
        assert client.post("/push/route_push", json=PUSH).status_code == 200
    assert "no API keys configured" in caplog.text
    assert store.registry.audit_log("push", limit=1)[0]["actor"] == "anonymous"
    store.close()


def test_keys_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("FS_API_KEYS", "ci:read:env-key-0123456789")
    store = build_repo(tmp_path, "sqlite")
    with serve(store) as server, server.client() as client:
        assert client.get("/catalog/views").status_code == 401
        ok = client.get("/catalog/views", headers={"Authorization": "bearer env-key-0123456789"})
        assert ok.status_code == 200
        assert (
            client.post(
                "/push/route_push", json=PUSH, headers={"X-API-Key": "env-key-0123456789"}
            ).status_code
            == 403
        )
    store.close()
