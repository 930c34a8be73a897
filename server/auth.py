"""API keys and roles.

Keys come from `config.server.api_keys` (featurestore.toml `[[server.api_keys]]` or `FS_API_KEYS`),
each with a name and a role. A request carries its key as `Authorization: Bearer <key>` or
`X-API-Key: <key>`. Roles are sets of permissions (`featurestore.governance.PERMISSIONS`, SPEC §13):
`read` (lookups, catalog, predictions, metrics); `write` (read + push, labels fed back to models);
`models` (read + register models, move unprotected aliases, run pipelines); `approver` (models +
approve or reject candidates, move protected aliases); `admin` (everything). `require(role)` admits
the roles holding every permission of `role`: `require("write")` admits write and admin, not models
or approver; `require("models")` admits models, approver and admin. Endpoints whose answer depends
on the target (moving a protected alias) also pass the key's role to `store.governance.check`.

- No keys configured: the server is open, every request acts as `anonymous` with the `admin` role
  (a warning is logged at startup). Meant for local use and trusted networks only.
- Keys configured: a missing or unknown key gets 401, a key whose role lacks a permission gets 403.

Keys are compared with `hmac.compare_digest` against every configured key (no early exit), and
never logged: only the key's *name* appears in logs and the audit trail.

A router guards an endpoint with a dependency:

    @router.post("/things", dependencies=[Depends(require("write"))])
    async def make(principal: Principal = Depends(require("write"))): ...
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

from fastapi import HTTPException, Request
from fastapi.security import APIKeyHeader
from starlette.types import Scope

from featurestore.config import ApiKey
from featurestore.governance import PERMISSIONS, allows


@dataclass(frozen=True)
class Principal:
    """Who is calling: the API key's name (never the key) and its role."""

    name: str
    role: str

    def may(self, role: str) -> bool:
        """Whether this caller holds every permission of `role`."""
        return allows(self.role, role)


ANONYMOUS = Principal("anonymous", "admin")


class Authenticator:
    """Maps a presented key to its Principal in constant time over the configured keys."""

    def __init__(self, keys: Iterable[ApiKey]):
        self._keys = [(k.key.encode(), Principal(k.name, k.role)) for k in keys]
        names = [p.name for _, p in self._keys]
        if len(set(names)) != len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"API key names must differ: {', '.join(twice)} used more than once")

    @property
    def open(self) -> bool:
        """True when no keys are configured: every request is `anonymous` with the admin role."""
        return not self._keys

    def key_named(self, name: str) -> tuple[bytes, Principal] | None:
        """The key (bytes) and Principal of the key called `name` (names are unique), else None.
        For signing what a key's holder was given, e.g. the web UI's session cookie."""
        return next(((k, p) for k, p in self._keys if p.name == name), None)

    def identify(self, presented: str | None) -> Principal | None:
        """The Principal of `presented`, None for a missing or unknown key."""
        if self.open:
            return ANONYMOUS
        if not presented:
            return None
        given = presented.encode()
        found = None
        for key, principal in self._keys:  # compare with every key: timing does not tell which matched
            if hmac.compare_digest(key, given):
                found = principal
        return found


def key_in(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The key in an ASGI scope's raw headers: `Authorization: Bearer <key>`, else `X-API-Key`."""
    auth = api_key = None
    for name, value in headers:  # one pass over the raw headers, first of each wins
        if name == b"authorization":
            if auth is None:
                auth = value.decode("latin-1")
        elif name == b"x-api-key" and api_key is None:
            api_key = value.decode("latin-1")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return api_key or None


class RoleCheck(APIKeyHeader):
    """The dependency `require(role)` returns: admits callers whose role holds `role`'s permissions.

    A FastAPI security scheme, so the OpenAPI document shows which operations need a key (the
    "Authorize" button of /docs); the check itself reads `Authorization: Bearer` or `X-API-Key`.
    """

    def __init__(self, role: str):
        super().__init__(
            name="X-API-Key",
            scheme_name="apiKey",
            auto_error=False,
            description="API key, as `X-API-Key: <key>` or `Authorization: Bearer <key>`",
        )
        self.role = role
        self.__name__ = f"require_{role}"

    # FastAPI calls a dependency by its own signature (APIKeyHeader is the base only for the OpenAPI
    # security scheme, so this __call__ differs from its on purpose); async: FastAPI runs a plain def
    # in a thread.
    async def __call__(self, request: Request) -> Principal:  # type: ignore[override]
        return self.admit(request.app.state.fs.auth, request.scope)

    def admit(self, authenticator: Authenticator, scope: Scope) -> Principal:
        """The caller of the request of `scope`, if its role holds this check's; else 401 or 403.
        The Principal is also left in the request's state (`request.state.principal`)."""
        principal = ANONYMOUS if authenticator.open else authenticator.identify(key_in(scope["headers"]))
        if principal is None:
            raise HTTPException(
                401,
                "missing or unknown API key: send 'Authorization: Bearer <key>' or 'X-API-Key'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not principal.may(self.role):
            raise HTTPException(
                403,
                f"API key '{principal.name}' has role '{principal.role}'; this endpoint needs '{self.role}'",
            )
        scope.setdefault("state", {})["principal"] = principal  # what request.state.principal reads
        return principal


@cache
def require(role: str) -> RoleCheck:
    """A FastAPI dependency admitting callers whose role holds `role`'s permissions; returns their Principal.

    The same object per role, so FastAPI runs it once per request even when it is listed twice.
    """
    if role not in PERMISSIONS:
        raise ValueError(f"unknown role {role!r}; roles are {list(PERMISSIONS)}")
    return RoleCheck(role)
