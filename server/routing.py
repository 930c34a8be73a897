"""Direct routes: the hottest endpoints answered as plain Starlette routes, inside the app as usual.

FastAPI's per-request machinery (its route wrapper, the dependency solver, its included-router
matching) costs about 60 us of CPU per request here, as much as a whole small lookup. The lookup and
predict endpoints take only the `Request` (they parse their own body), and their only dependencies
are `require(role)` checks, so they need none of it: `DirectRoute` answers such an `APIRoute` as a
Starlette `Route` put ahead of it in the app's router. It is still one request path: uvicorn, the
app, every middleware (a user's too), the exception handlers, then this route. The `APIRoute` stays
where it is, for the OpenAPI document; it receives no requests.

    app.router.routes.insert(0, DirectRoute(api_route))   # what create_app does for DIRECT_ENDPOINTS

What a direct route does not get: FastAPI's `app.dependency_overrides` (its checks are called as
they are).
"""

from __future__ import annotations

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

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

    async def _respond(self, request: Request) -> Response:
        scope = request.scope
        scope["route"] = self.api_route  # what FastAPI sets: metrics label requests by its path template
        auth = request.app.state.fs.auth
        for check in self.checks:
            check.admit(auth, scope)
        response: Response = await self.answer(request)
        return response
