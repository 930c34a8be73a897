"""Direct routes: the hottest endpoints answered as plain Starlette routes, inside the app as usual.

FastAPI's per-request machinery (its route wrapper, the dependency solver, its included-router
matching) costs about 60 us of CPU per request here, as much as a whole small lookup. The lookup and
predict endpoints take only the `Request` (they parse their own body), and their only dependencies
are `require(role)` checks, so they need none of it: `DirectRoute` answers such an `APIRoute` as a
Starlette `Route` put ahead of it in the app's router. It is still one request path: uvicorn, the
app, every middleware (a user's too), the exception handlers, then this route. The `APIRoute` stays
where it is, for the OpenAPI document (and for the case below).

    app.router.routes.insert(0, DirectRoute(api_route))   # what create_app does for DIRECT_ENDPOINTS

While an app has `dependency_overrides` (tests, a company's own auth in place of `require`), its
direct routes match nothing, so FastAPI's routes answer and the overrides apply as everywhere else.
"""

from __future__ import annotations

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Scope

from .auth import RoleCheck


class DirectRoute(Route):
    """`api_route` answered as a plain Starlette route: its `require(...)` checks, then its endpoint."""

    def __init__(self, api_route: APIRoute) -> None:
        checks = [d.dependency for d in api_route.dependencies if isinstance(d.dependency, RoleCheck)]
        if len(checks) != len(api_route.dependencies):
            raise ValueError(f"{api_route.path}: a direct route's only dependencies are require(role) checks")
        d = api_route.dependant  # what FastAPI read of the endpoint's signature
        if (
            d.request_param_name is None
            or d.path_params
            or d.query_params
            or d.header_params
            or d.body_params
        ):
            raise ValueError(f"{api_route.path}: a direct route's endpoint takes only the Request")
        self.api_route = api_route
        self.checks = checks
        self.answer = api_route.endpoint
        super().__init__(
            api_route.path,
            self._respond,
            methods=sorted(api_route.methods or ()),
            name=api_route.name,
            include_in_schema=False,
        )

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        app = scope.get("app")
        if app is not None and getattr(app, "dependency_overrides", None):
            return Match.NONE, {}  # FastAPI's own route answers, where the overrides apply
        match, child_scope = super().matches(scope)
        if match is not Match.NONE:  # as FastAPI: metrics label requests (a 405 too) by the path template
            child_scope["route"] = self.api_route
        return match, child_scope

    async def _respond(self, request: Request) -> Response:
        auth = request.app.state.fs.auth
        scope = request.scope
        for check in self.checks:
            check.admit(auth, scope)
        response: Response = await self.answer(request)
        return response
