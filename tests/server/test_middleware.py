"""Middleware a user adds to the app applies to every route, the lookup and predictions included
(there is one request path: every request goes through the ASGI app and its middleware stack)."""

from __future__ import annotations

import pytest
from fastapi import Depends, Request
from fastapi.routing import APIRoute
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware

from featurestore.server import create_app
from featurestore.server.auth import require
from tests.server.conftest import LiveServer

# A value for each path parameter of the app's routes; a new parameter fails the test until it has one.
PARAMETERS = {
    "name": "driver_stats",
    "source": "driver_push",
    "ref": "nomodel@production",
    "alias": "production",
    "version": "1",
}
BODIES = {
    "/features/online": {"features": ["driver_stats:trips"], "entities": [{"driver_id": 1}]},
    "/push/{source}": {"rows": []},
    "/models/{ref}/predict": {"entities": [{"driver_id": 1}]},
    "/models/{name}/aliases/{alias}": {"version": 1},
}


class Stamp:
    """A user's pure-ASGI middleware: notes every HTTP request's path and stamps its answer."""

    def __init__(self, app, seen: list[str]):
        self.app, self.seen = app, seen

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        self.seen.append(scope["path"])

        async def stamped(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-stamped", b"yes")]
            await send(message)

        await self.app(scope, receive, stamped)


def every_route(app) -> list[tuple[str, str, str]]:
    """(method, path template, concrete path) of every route the app serves: the operations of its
    OpenAPI document, and the document and its pages themselves."""
    out = [("GET", p, p) for p in ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc")]
    for template, operations in app.openapi()["paths"].items():
        path = template
        for name in PARAMETERS:
            path = path.replace("{" + name + "}", PARAMETERS[name])
        assert "{" not in path, f"no sample value for a parameter of {template}"
        out += [(method.upper(), template, path) for method in operations]
    return out


@pytest.fixture(scope="module")
def guarded(sqlite_store):
    seen: list[str] = []
    app = create_app(sqlite_store)
    app.add_middleware(Stamp, seen=seen)
    app.add_middleware(CORSMiddleware, allow_origins=["https://ui.example"])
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=["good.example"])
    server = LiveServer(app).start()  # fs serve's own settings
    yield server, app, seen
    server.stop()


def test_the_route_list_covers_lookups_and_predictions(guarded):
    _, app, _ = guarded
    templates = {(m, t) for m, t, _ in every_route(app)}
    assert ("POST", "/features/online") in templates and ("POST", "/models/{ref}/predict") in templates
    assert len(templates) >= 20


def test_a_trusted_host_check_refuses_a_wrong_host_on_every_route(guarded):
    server, app, _ = guarded
    with server.client(headers={"Host": "evil.example"}) as client:
        for method, template, path in every_route(app):
            r = client.request(method, path, json=BODIES.get(template))
            assert r.status_code == 400 and r.text == "Invalid host header", (method, path, r.status_code)


def test_a_users_middleware_and_cors_see_every_route(guarded):
    server, app, seen = guarded
    seen.clear()
    headers = {"Host": "good.example", "Origin": "https://ui.example"}
    with server.client(headers=headers) as client:
        routes = every_route(app)
        for method, template, path in routes:
            r = client.request(method, path, json=BODIES.get(template))
            assert r.status_code < 500, (method, path, r.status_code, r.text)
            assert r.headers.get("x-stamped") == "yes", (method, path)
            assert r.headers.get("access-control-allow-origin") == "https://ui.example", (method, path)
        lookup = client.post("/features/online", json=BODIES["/features/online"])
        assert lookup.status_code == 200 and lookup.json()["values"]["trips"] == [10]
    assert seen == [path for _, _, path in routes] + ["/features/online"]


def test_lookups_and_predictions_take_the_direct_routes_inside_the_stack(guarded, monkeypatch):
    """The per-request endpoints are answered by plain Starlette routes (server/routing.py) ahead of
    FastAPI's, after the middleware above: a user's middleware saw them (the tests above), and so do
    the app's metrics, labelled by the route's template."""
    from featurestore.server.routing import DirectRoute

    server, app, _ = guarded
    direct = [r for r in app.router.routes if isinstance(r, DirectRoute)]
    assert sorted(r.path for r in direct) == ["/features/online", "/models/{ref}/predict"]
    answered = []
    for route in direct:

        async def spy(request, answer=route.answer):
            answered.append(request.url.path)
            return await answer(request)

        monkeypatch.setattr(route, "answer", spy)
    with server.client(headers={"Host": "good.example"}) as client:
        assert client.post("/features/online", json=BODIES["/features/online"]).status_code == 200
        assert client.post("/models/nomodel/predict", json=BODIES["/models/{ref}/predict"]).status_code == 404
        metrics = client.get("/metrics").text
    assert answered == ["/features/online", "/models/nomodel/predict"]
    assert 'endpoint="/models/{ref}/predict",method="POST",status="404"' in metrics
    assert 'endpoint="/features/online",method="POST",status="200"' in metrics


def test_a_direct_route_takes_only_a_request_and_role_checks():
    from featurestore.server.routing import DirectRoute

    async def takes_a_name(name: str): ...

    async def takes_the_request(request: Request): ...

    with pytest.raises(ValueError, match="takes only the Request"):
        DirectRoute(APIRoute("/x/{name}", takes_a_name, methods=["POST"]))
    with pytest.raises(ValueError, match="only dependencies are require"):
        DirectRoute(APIRoute("/x", takes_the_request, methods=["POST"], dependencies=[Depends(lambda: 1)]))
    route = DirectRoute(
        APIRoute("/x", takes_the_request, methods=["POST"], dependencies=[Depends(require("write"))])
    )
    assert [c.role for c in route.checks] == ["write"] and route.methods == {"POST"}


def test_dependency_overrides_apply_to_the_direct_routes_too(sqlite_store):
    """A company's own check in place of require(...) (app.dependency_overrides) guards every route."""
    from fastapi import HTTPException
    from fastapi.testclient import TestClient

    def company_sso():
        raise HTTPException(401, "company SSO says no")

    app = create_app(sqlite_store)
    app.dependency_overrides[require("read")] = company_sso
    with TestClient(app) as client:
        for method, path, body in [
            ("GET", "/catalog/views", None),
            ("POST", "/features/online", BODIES["/features/online"]),
            ("POST", "/models/nomodel/predict", BODIES["/models/{ref}/predict"]),
        ]:
            r = client.request(method, path, json=body)
            assert r.status_code == 401 and r.json()["error"] == "company SSO says no", (path, r.text)
    app.dependency_overrides.clear()
    with TestClient(app) as client:
        assert client.post("/features/online", json=BODIES["/features/online"]).status_code == 200


def test_a_wrong_method_on_a_direct_route_is_a_405_labelled_by_its_route(sqlite_store):
    from fastapi.testclient import TestClient

    with TestClient(create_app(sqlite_store)) as client:
        r = client.get("/features/online")
        assert r.status_code == 405 and r.headers["allow"] == "POST"
        metrics = client.get("/metrics").text
    assert 'endpoint="/features/online",method="GET",status="405"' in metrics
