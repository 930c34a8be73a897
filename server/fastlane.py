"""A short road past FastAPI's routing for the hottest endpoints (the online lookup), same behaviour.

A request to `POST /features/online` crosses about a dozen ASGI layers and FastAPI's dependency
solver before the handler runs: about 100 us of CPU per request, as much as the lookup itself.
The app's one layer (`featurestore.server.middleware.ServerMiddleware`: metrics, error catch-all, body limit)
calls the eligible routes of the routers it was given directly: their `require(...)` checks, then
their endpoint, then the app's exception handlers on failure. It is asked before FastAPI's own
layers, by the app (`featurestore.server.app.FeatureServerApp`) or by `fs serve`'s protocol (`featurestore.server.protocol`).
Nothing else is skipped: the same handler code runs, with the same auth, limits, error bodies and
metrics labels, and the route stays in the OpenAPI document.

A route is eligible when its endpoint takes only the `Request` (it parses its own body with
`featurestore.server.schemas.parse_body`) and its only dependencies are `require(role)` checks. Other routes
take the ordinary road. (FastAPI's `app.dependency_overrides` do not apply on the fast lane.)
A path with parameters (`/models/{ref}/predict`) is eligible too when the endpoint reads them from
`request.path_params`: such routes are matched by their regex after the exact paths, so they must
not overlap another route of the app.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import APIRouter, HTTPException
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope

from .auth import Authenticator, RoleCheck

if TYPE_CHECKING:
    from .state import ServerState

E = TypeVar("E", bound=Callable[..., Any])
JSON_HEADERS = [(b"content-type", b"application/json")]  # of a 200 bytes answer (the writer adds its length)


def eligible(route: APIRoute) -> bool:
    """Whether the route can take the fast lane (see the module docstring)."""
    d = route.dependant
    if d.path_params or d.query_params or d.header_params or d.cookie_params or d.body_params:
        return False
    if d.request_param_name is None or len(route.methods) != 1:
        return False
    return all(isinstance(dep.call, RoleCheck) for dep in d.dependencies)


class FastLane:
    """The eligible routes of `routers`, answered directly; see the module docstring. Not a middleware
    of its own: `match` finds a request's lane, `featurestore.server.middleware.ServerMiddleware` calls its `answer`.

    The routers must be mounted on the app without a prefix or router-level dependencies (their
    routes' own paths and dependencies are what the fast lane reads).
    """

    def __init__(self, routers: Sequence[APIRouter]) -> None:
        self.routes: dict[tuple[str, str], Lane] = {}
        self.param_routes: list[tuple[str, Lane]] = []  # (method, lane) of paths with {parameters}
        for router in routers:
            if router.prefix or router.dependencies:
                raise ValueError("FastLane needs routers without prefix or router-level dependencies")
            for route in router.routes:
                if isinstance(route, APIRoute) and eligible(route):
                    lane = Lane(route)
                    if "{" in route.path:
                        self.param_routes.append((next(iter(route.methods)), lane))
                    else:
                        self.routes[(next(iter(route.methods)), route.path)] = lane

    def match(self, scope: Scope) -> Lane | None:
        """The lane of this HTTP request (setting its `path_params`), or None: the ordinary road."""
        lane = self.routes.get((scope["method"], scope["path"]))
        if lane is None and self.param_routes:
            for method, candidate in self.param_routes:
                if method == scope["method"]:
                    route = candidate.route
                    found = route.path_regex.match(scope["path"])
                    if found is not None:
                        scope["path_params"] = {
                            k: route.param_convertors[k].convert(v) for k, v in found.groupdict().items()
                        }
                        return candidate
        return lane


def answers_bytes(answer: Callable[[ServerState, bytes], Awaitable[bytes]]) -> Callable[[E], E]:
    """Marks a fast-lane endpoint whose 200 answer is `await answer(state, body)`: JSON bytes for the
    request's JSON body bytes (errors raised as for the endpoint). `fs serve`'s protocol then answers the
    route with it directly, without Request and Response objects (`Lane.answer_bytes`); the endpoint
    itself must answer the same, for every other road (its usual form: JSONBytesResponse(await answer(...)))."""

    def mark(endpoint: E) -> E:
        endpoint.answer_bytes = answer  # type: ignore[attr-defined]
        return endpoint

    return mark


class Lane:
    """One eligible route: its `require(...)` checks and endpoint, read once."""

    __slots__ = ("bytes_answer", "checks", "endpoint", "route")

    def __init__(self, route: APIRoute) -> None:
        self.route = route
        self.checks = tuple(dep.call for dep in route.dependant.dependencies)
        self.endpoint = route.endpoint
        self.bytes_answer = getattr(route.endpoint, "answer_bytes", None)  # see answers_bytes

    def admits(self, scope: Scope) -> bool:
        """Whether the caller of `scope` passes the route's `require(...)` checks (from its headers alone)."""
        try:
            self._admit(scope["app"].state.fs.auth, scope)
        except HTTPException:
            return False
        return True

    def _admit(self, auth: Authenticator, scope: Scope) -> None:
        """The route's `require(...)` checks on the caller of `scope`: 401 or 403 raised."""
        for check in self.checks:
            check.admit(auth, scope)

    async def answer_bytes(self, scope: Scope, body: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """For a route marked with `answers_bytes`: (status, headers, body) of the answer to the request
        of `scope` with this `body`, read whole. The same checks, answer and error answers as `answer`;
        a Request is built only for an error's handler."""
        scope["route"] = self.route
        state = scope["app"].state.fs
        try:
            self._admit(state.auth, scope)
            return 200, JSON_HEADERS, await self.bytes_answer(state, body)  # type: ignore[misc]
        except Exception as exc:
            response = await _handle(Request(scope), exc)
            return response.status_code, response.raw_headers, response.body

    async def answer(self, scope: Scope, receive: Receive) -> Response:
        """The response of the route: its checks, then its endpoint, else the app's exception handlers."""
        scope["route"] = self.route  # what the router would set (metrics label requests by route)
        request = Request(scope, receive)
        try:
            self._admit(request.app.state.fs.auth, scope)
            return await self.endpoint(request)
        except Exception as exc:
            return await _handle(request, exc)


async def _handle(request: Request, exc: Exception) -> Any:
    """The app's own exception handler for `exc` (unexpected errors go on to the catch-all)."""
    handlers = request.app.exception_handlers
    for cls in type(exc).__mro__:
        if cls is Exception:
            break
        handler = handlers.get(cls)
        if handler is not None:
            return await handler(request, exc)
    raise exc
