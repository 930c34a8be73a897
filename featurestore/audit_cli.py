"""`fs audit`: the audit trail from a shell (SPEC §13). Parsing and printing only.

    fs audit                              # the newest 100 entries: at, actor, action, target, detail
    fs audit --action model_approve --json
    fs audit --target model:eta --limit 20   # entries whose target starts with model:eta

Reading the trail is an admin action ("audit"): with `[governance] users` configured, $FS_USER must
have the admin role (featurestore.governance). The main `fs` group adds this command with
`cli.add_command(audit)`.
"""

from __future__ import annotations

import json
from typing import Any

import click

from .console import console as _console
from .console import handle_errors
from .console import open_store as _store
from .console import print_json as _print_json

#: with --target, entries are filtered after reading: read this many, at most, to find `limit` of them
_SCAN = 100_000


def entries(store: Any, action: str | None, target: str | None, limit: int) -> list[dict[str, Any]]:
    """The newest `limit` audit entries, of `action`, whose target is `target` or starts with it
    (`model:eta` matches `model:eta@production`), after the governance check "audit"."""
    store.governance.check("audit", "audit")
    found = store.registry.audit_log(action, _SCAN if target else limit)
    if target:
        found = [e for e in found if _matches(str(e.get("target", "")), target)][:limit]
    return list(found)


def _matches(entry_target: str, target: str) -> bool:
    return entry_target == target or entry_target.startswith(f"{target}@")


@click.command()
@click.option("--action", default=None, help="Only entries of this action, e.g. model_approve.")
@click.option(
    "--target",
    default=None,
    help="Only entries on this target (model:eta also matches model:eta@production).",
)
@click.option(
    "--limit", default=100, show_default=True, type=click.IntRange(min=1), help="At most this many."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts) instead of a table.")
@click.pass_context
@handle_errors
def audit(ctx: click.Context, action: str | None, target: str | None, limit: int, as_json: bool) -> None:
    """The audit trail, newest first: who did what to which object, and when."""
    found = entries(_store(ctx), action, target, limit)
    if as_json:
        _print_json(found)
        return
    from rich.table import Table

    table = Table(title="Audit trail")
    for col in ("at", "actor", "action", "target", "detail"):
        table.add_column(col)
    for e in found:
        table.add_row(
            str(e["at"])[:19].replace("T", " "),
            str(e["actor"]),
            str(e["action"]),
            str(e["target"]),
            json.dumps(e.get("detail") or {}, sort_keys=True, default=str),
        )
    _console().print(table)
