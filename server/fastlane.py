"""A short road past FastAPI's routing for the hottest endpoints (the online lookup), same behaviour.

A request to `POST /features/online` crosses about a dozen ASGI layers and FastAPI's dependency
solver before the handler runs: about 100 us of CPU per request, as much as the lookup itself.
`FastLane` sits just inside the app's own middleware (metrics, error catch-all, body limit) and
calls the eligible routes of the routers it is given directly: their `require(...)` checks, then
their endpoint, then the app's exception handlers on failure. Nothing else is skipped: the same handler code runs, with the same
auth, limits, error bodies and metrics labels, and the route stays in the OpenAPI document.

A route is eligible when its endpoint takes only the `Request` (it parses its own body with
`server.schemas.parse_body`) and its only dependencies are `require(role)` checks. Other routes
take the ordinary road. (FastAPI's `app.dependency_overrides` do not apply on the fast lane.)
A path with parameters (`/models/{ref}/predict`) is eligible too when the endpoint reads them from
`request.path_params`: such routes are matched by their regex after the exact paths, so they must
not overlap another route of the app.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from .auth import RoleCheck


def eligible(route: APIRoute) -> bool:
    """Whether the route can take the fast lane (see the module docstring)."""
    d = route.dependant
    if d.path_params or d.query_params or d.header_params or d.cookie_params or d.body_params:
        return False
    if d.request_param_name is None or len(route.methods) != 1:
        return False
    return all(isinstance(dep.call, RoleCheck) for dep in d.dependencies)


class FastLane:
    """ASGI middleware answering the eligible routes of `routers` directly; see the module docstring.

    The routers must be mounted on the app without a prefix or router-level dependencies (their
    routes' own paths and dependencies are what the fast lane reads).
    """

    def __init__(self, app: ASGIApp, routers: Sequence[APIRouter]) -> None:
        self.app = app
        self.routes: dict[tuple[str, str], APIRoute] = {}
        self.param_routes: list[tuple[str, APIRoute]] = []  # (method, route) of paths with {parameters}
        for router in routers:
            if router.prefix or router.dependencies:
                raise ValueError("FastLane needs routers without prefix or router-level dependencies")
            for route in router.routes:
                if isinstance(route, APIRoute) and eligible(route):
                    if "{" in route.path:
                        self.param_routes.append((next(iter(route.methods)), route))
                    else:
                        self.routes[(next(iter(route.methods)), route.path)] = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            route = self.routes.get((scope["method"], scope["path"]))
            if route is None and self.param_routes:
                route = self._match_params(scope)
            if route is not None:
                scope["route"] = route  # what the router would set (metrics label requests by route)
                request = Request(scope, receive)
                try:
                    for dep in route.dependant.dependencies:
                        await dep.call(request)
                    response = await route.endpoint(request)
                except Exception as exc:
                    response = await self._handle(request, exc)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _match_params(self, scope: Scope) -> APIRoute | None:
        for method, route in self.param_routes:
            if method == scope["method"]:
                match = route.path_regex.match(scope["path"])
                if match is not None:
                    scope["path_params"] = {k: route.param_convertors[k].convert(v) for k, v in match.groupdict().items()}
                    return route
        return None

    @staticmethod
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
