"""Who may do what (SPEC §13): roles as sets of permissions, protected aliases, one check for every path.

    store.governance.check("run_pipeline", "model:eta")                  # the CLI / Python user
    store.governance.check("set_alias", "model:eta@production", role="models", actor="ranker",
                           alias="production")                            # a server request's key

Roles (`PERMISSIONS`): `read` (lookups, catalog, predict); `write` (read + push, feedback);
`models` (read + register models, move unprotected aliases, run pipelines); `approver` (models +
approve or reject candidates, move protected aliases); `admin` (everything). An action needs the
permissions of one role (`ACTIONS`); a role is allowed when it holds them all.

Protected aliases (`[models] protected_aliases`, default `["production"]`) move only through a
passed promotion policy (the pipeline runner, which needs `models` to run) or by an approver or
admin: `set_alias` / `delete_alias` of a protected alias need `approver`.

Who is acting:
- the server passes the API key's role (`role=`); with no keys configured the server is open and
  every request acts as `anonymous` with the admin role, as before;
- the CLI and Python pass nothing: `$FS_USER` is looked up in `[governance] users`. Unset, or no
  users configured: no check (the embedded default). Set but not listed: refused. This is advisory:
  anyone who can write the registry file can bypass it (or set FS_USER); on a shared filesystem it
  guards against mistakes, not against an attacker. The server's API keys are the real boundary.

A refused action raises PermissionDeniedError (HTTP 403) and is recorded in the audit trail
(`permission_denied`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from .errors import PermissionDeniedError

if TYPE_CHECKING:
    from .config import GovernanceConfig
    from .registry import Registry

PERMISSIONS: Mapping[str, frozenset[str]] = {
    "read": frozenset({"read"}),
    "write": frozenset({"read", "write"}),
    "models": frozenset({"read", "models"}),
    "approver": frozenset({"read", "models", "approve"}),
    "admin": frozenset({"read", "write", "models", "approve", "admin"}),
}

#: action -> the role whose permissions it needs (a protected alias's moves need "approver")
ACTIONS: Mapping[str, str] = {
    "read": "read",
    "push": "write",
    "feedback": "write",
    "register": "models",
    "set_alias": "models",
    "delete_alias": "models",
    "run_pipeline": "models",
    "approve": "approver",
    "reject": "approver",
    "apply": "admin",
    "audit": "admin",
}


def allows(role: str, needed: str) -> bool:
    """Whether `role` holds every permission of role `needed`."""
    have, want = PERMISSIONS.get(role), PERMISSIONS.get(needed)
    if have is None or want is None:
        return False
    return want <= have


class Governance:
    """The checks of one store; get it as `store.governance`."""

    def __init__(self, config: GovernanceConfig, registry: Registry):
        self.config = config
        self.registry = registry

    def is_protected(self, alias: str) -> bool:
        """Whether `alias` is in `[models] protected_aliases`."""
        return alias in self.config.protected_aliases

    def needed(self, action: str, alias: str | None = None) -> str:
        """The role whose permissions `action` needs (on `alias`, for alias moves)."""
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}; actions are {sorted(ACTIONS)}")
        if action in ("set_alias", "delete_alias") and alias is not None and self.is_protected(alias):
            return "approver"
        return ACTIONS[action]

    def user_role(self) -> tuple[str, str] | None:
        """(user, role) of the CLI / Python user: $FS_USER in `[governance] users`; None: no check.
        A user who is not listed gets the role "" (no permission)."""
        user = os.environ.get("FS_USER")
        if not user or not self.config.users:
            return None
        return user, self.config.users.get(user, "")

    def check(
        self,
        action: str,
        target: str,
        role: str | None = None,
        actor: str | None = None,
        alias: str | None = None,
    ) -> None:
        """Raise PermissionDeniedError unless the actor may do `action` on `target` (e.g.
        "model:eta@production"). `role`/`actor`: a server request's key; None: the CLI / Python user."""
        needed = self.needed(action, alias)
        if role is None:
            found = self.user_role()
            if found is None:
                return
            actor, role = found
            who = f"user '{actor}' (FS_USER)"
            if not role:
                self._deny(actor, action, target, needed, f"{who} has no role in [governance] users")
        else:
            who = f"API key '{actor}'" if actor else "the caller"
        if allows(role, needed):
            return
        why = f"{who} has role '{role}'; {action.replace('_', ' ')} of {target} needs '{needed}'"
        if needed == "approver" and alias is not None and action in ("set_alias", "delete_alias"):
            why += (
                f" (alias '{alias}' is protected: it moves through a passed promotion policy or an approver)"
            )
        self._deny(actor or "unknown", action, target, needed, why)

    def _deny(self, actor: str, action: str, target: str, needed: str, why: str) -> None:
        try:
            self.registry.audit("permission_denied", target, {"action": action, "needs": needed}, actor=actor)
        except Exception:  # noqa: BLE001 - the refusal stands even when the trail cannot be written
            pass
        raise PermissionDeniedError(why)
