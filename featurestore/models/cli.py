"""`fs models ...`: the model registry from a shell. Parsing and printing only; the work is ModelRegistry's.

    fs models list
    fs models show eta                 # every version;  fs models show eta@production  # one version
    fs models register eta model.skops --feature-service driver_activity --training-set eta_train \\
        --metric mae=1.9 --param alpha=0.5 --tag team=rides --alias staging
    fs models alias eta production 3   # fs models alias eta staging --delete
    fs models history eta
    fs models pending [eta] [--json]   # candidates a pipeline left awaiting approval
    fs models approve eta 7 --reason "checked the slices"     # moves the run's alias to 7
    fs models reject eta 7 --reason "worse on new drivers"    # the alias stays
    fs training-sets list | show eta_train | compare eta_train    # saved training sets (--json too)

`register` takes a model *file*: .skops (only types skops trusts by default), .onnx, or .joblib/.pkl
(pickles run code when read: only register files you produced). Registering, alias moves and
approvals are governed (featurestore.governance): with `[governance] users` configured, $FS_USER's
role must allow them (a protected alias such as `production` needs approver). The main `fs` group
adds this group with `cli.add_command(models)` and `cli.add_command(training_sets)`.
"""

from __future__ import annotations

import json
from typing import Any

import click

from ..console import console as _console
from ..console import handle_errors as _errors
from ..console import open_store as _store
from ..console import print_json as _print_json

_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts) instead of a table.")


def _pairs(values: tuple[str, ...], what: str, numbers: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=what)
        out[key] = _value(value) if numbers else value
    return out


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


@click.group()
def models() -> None:
    """The model registry: register models, move aliases, see versions and history."""


@models.command(name="list")
@_JSON
@click.pass_context
@_errors
def list_models(ctx: click.Context, as_json: bool) -> None:
    """Registered models, their latest version and aliases."""
    from rich.table import Table

    found = _store(ctx).models.list()
    if as_json:
        _print_json(found)
        return
    table = Table(title="Models")
    for col in ("name", "latest", "versions", "aliases", "feature service", "registered by", "description"):
        table.add_column(col)
    for m in found:
        aliases = ", ".join(f"{a}={v}" for a, v in m["aliases"].items())
        table.add_row(
            m["name"],
            str(m["latest_version"]),
            str(m["versions"]),
            aliases,
            m["feature_service"],
            m["registered_by"],
            m["description"],
        )
    _console().print(table)


@models.command()
@click.argument("ref")
@_JSON
@click.pass_context
@_errors
def show(ctx: click.Context, ref: str, as_json: bool) -> None:
    """A model's versions (REF = name), or one version in detail (REF = name@alias or name@3)."""
    from rich.table import Table

    registry = _store(ctx).models
    if "@" not in ref:
        versions = registry.versions(ref)
        if as_json:
            _print_json([v.to_dict() for v in versions])
            return
        table = Table(title=f"Model {ref}")
        for col in (
            "version",
            "aliases",
            "flavor",
            "feature service",
            "training set",
            "metrics",
            "registered",
        ):
            table.add_column(col)
        for v in versions:
            table.add_row(
                str(v.version),
                ", ".join(v.aliases),
                f"{v.flavor}/{v.format}",
                v.feature_service,
                v.training_set or "",
                json.dumps(v.metrics),
                f"{v.registered_at[:19]} by {v.registered_by}",
            )
        _console().print(table)
        return
    mv = registry.get(ref)
    if as_json:
        _print_json(mv.to_dict())
        return
    console = _console()
    console.print(
        f"[bold]{mv.name}[/] version {mv.version}" + (f" ({', '.join(mv.aliases)})" if mv.aliases else "")
    )
    rows = [
        ("flavor", f"{mv.flavor} ({mv.format})"),
        ("artifact", f"{mv.artifact}  sha256 {mv.sha256}"),
        ("feature service", mv.feature_service),
        ("inputs", ", ".join(i.name + (f" <- {i.ref}" if i.ref else " (request)") for i in mv.inputs)),
        ("missing policy", json.dumps(mv.missing_policy)),
        (
            "training set",
            f"{mv.training_set} ({(mv.training_fingerprint or '')[:12]})" if mv.training_set else "-",
        ),
        ("metrics", json.dumps(mv.metrics)),
        ("params", json.dumps(mv.params)),
        ("tags", json.dumps(mv.tags)),
        ("description", mv.description or "-"),
        ("registered", f"{mv.registered_at} by {mv.registered_by}"),
    ]
    for key, value in rows:
        console.print(f"  {key:16} {value}", markup=False)


@models.command()
@click.argument("name")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--feature-service", "-s", required=True, help="The feature service the model reads.")
@click.option("--training-set", "-t", default=None, help="The saved training set it was trained on.")
@click.option("--metric", "metrics", multiple=True, metavar="KEY=VALUE", help="A metric (repeatable).")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="A parameter (repeatable).")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="A tag (repeatable).")
@click.option("--description", "-d", default="")
@click.option(
    "--missing-policy",
    type=click.Choice(["fail", "null"]),
    default=None,
    help="Missing or stale features: fail the request (default) or predict with nulls.",
)
@click.option(
    "--default",
    "defaults",
    multiple=True,
    metavar="FEATURE=VALUE",
    help="A default for a missing feature (repeatable; the others fail).",
)
@click.option(
    "--request-feature",
    "request_features",
    multiple=True,
    metavar="NAME",
    help="An input sent with each entity row instead of looked up (repeatable).",
)
@click.option("--alias", "alias", default=None, help="Also point this alias at the new version.")
@click.pass_context
@_errors
def register(
    ctx: click.Context,
    name: str,
    path: str,
    feature_service: str,
    training_set: str | None,
    metrics: tuple[str, ...],
    params: tuple[str, ...],
    tags: tuple[str, ...],
    description: str,
    missing_policy: str | None,
    defaults: tuple[str, ...],
    request_features: tuple[str, ...],
    alias: str | None,
) -> None:
    """Register the model file PATH (.skops, .onnx, .joblib/.pkl) as the next version of NAME."""
    if missing_policy and defaults:
        raise click.UsageError("pass --missing-policy or --default, not both")
    policy: Any = _pairs(defaults, "--default", numbers=True) if defaults else (missing_policy or "fail")
    store = _store(ctx)
    registry = store.models
    if alias:  # refused before registering, not after: no version is left behind by a refused --alias
        store.governance.check("set_alias", f"model:{name}@{alias}", alias=alias)
    mv = registry.register(
        name,
        path,
        feature_service=feature_service,
        training_set=training_set,
        metrics=_pairs(metrics, "--metric", numbers=True),
        params=_pairs(params, "--param", numbers=True),
        tags=_pairs(tags, "--tag"),
        description=description,
        missing_policy=policy,
        request_features=list(request_features),
    )
    _console().print(
        f"Registered {mv.name} version {mv.version} ({mv.flavor}/{mv.format}, sha256 {mv.sha256[:12]}); "
        f"inputs: {', '.join(mv.columns)}",
        markup=False,
    )
    if alias:
        registry.set_alias(name, alias, mv.version)
        _console().print(f"{name}@{alias} -> version {mv.version}", markup=False)


@models.command()
@click.argument("name")
@click.argument("alias")
@click.argument("version", type=int, required=False)
@click.option("--delete", is_flag=True, help="Remove the alias instead.")
@click.pass_context
@_errors
def alias(ctx: click.Context, name: str, alias: str, version: int | None, delete: bool) -> None:
    """Point ALIAS of model NAME at VERSION (or remove it with --delete). Recorded in the audit trail."""
    registry = _store(ctx).models
    if delete:
        if version is not None:
            raise click.UsageError("--delete takes no VERSION")
        registry.delete_alias(name, alias)
        _console().print(f"Removed {name}@{alias}", markup=False)
        return
    if version is None:
        raise click.UsageError("give the VERSION the alias should point at (or --delete)")
    before = registry.aliases(name).get(alias)
    registry.set_alias(name, alias, version)
    moved = f" (was {before})" if before is not None else ""
    _console().print(f"{name}@{alias} -> version {version}{moved}", markup=False)


@models.command()
@click.argument("name")
@click.pass_context
@_errors
def history(ctx: click.Context, name: str) -> None:
    """Registrations and alias moves of model NAME, oldest first, with who and when."""
    from rich.table import Table

    table = Table(title=f"History of {name}")
    for col in ("when", "who", "what"):
        table.add_column(col)
    for e in _store(ctx).models.history(name):
        if e["event"] == "register":
            what = f"registered version {e['version']}"
        elif e["event"] == "alias_set":
            what = f"{e['alias']} -> {e['version']}" + (
                f" (was {e['from_version']})" if e["from_version"] else ""
            )
        else:
            what = f"removed {e['alias']} (was {e['from_version']})"
        table.add_row(e["at"][:19].replace("T", " "), e["actor"], what)
    _console().print(table)


@models.command()
@click.argument("name", required=False)
@_JSON
@click.pass_context
@_errors
def pending(ctx: click.Context, name: str | None, as_json: bool) -> None:
    """Candidates awaiting approval (of model NAME), newest first, with their metrics and the champion's."""
    from rich.table import Table

    found = _store(ctx).models.pending(name)
    if as_json:
        _print_json(found)
        return
    if not found:
        _console().print(f"No candidate{' of ' + name if name else ''} awaits approval.", markup=False)
        return
    table = Table(title="Pending approvals")
    for col in ("run", "model", "version", "alias", "candidate", "champion", "requested"):
        table.add_column(col)
    for p in found:
        champion = p["champion"]
        table.add_row(
            str(p["run"]),
            p["model"],
            str(p["version"]),
            str(p["alias"]),
            json.dumps(p["candidate"]["metrics"]),
            f"v{champion['version']} {json.dumps(champion['metrics'])}" if champion["version"] else "-",
            f"{str(p['requested_at'])[:19].replace('T', ' ')} by {p['requested_by']}",
        )
    _console().print(table)


_REASON = click.option("--reason", default="", help="Why (recorded in the run and the audit trail).")


@models.command()
@click.argument("name")
@click.argument("version", type=click.IntRange(min=1))
@_REASON
@click.pass_context
@_errors
def approve(ctx: click.Context, name: str, version: int, reason: str) -> None:
    """Approve candidate VERSION of model NAME that a pipeline left pending: its alias moves to it."""
    registry = _store(ctx).models
    mv = registry.approve(name, version, reason=reason)
    aliases = ", ".join(f"{name}@{a}" for a in mv.aliases) or "no alias"
    _console().print(f"Approved {name} version {version}: {aliases} -> version {version}", markup=False)


@models.command()
@click.argument("name")
@click.argument("version", type=click.IntRange(min=1))
@_REASON
@click.pass_context
@_errors
def reject(ctx: click.Context, name: str, version: int, reason: str) -> None:
    """Reject candidate VERSION of model NAME that a pipeline left pending; the alias stays where it is."""
    run = _store(ctx).models.reject(name, version, reason=reason)
    _console().print(
        f"Rejected {name} version {version} (pipeline run {run['id']}); {name}@{run.get('alias')} unchanged",
        markup=False,
    )


@click.group(name="training-sets")
def training_sets() -> None:
    """Saved training sets (`job.save(name)`): list them, show one, compare one with its regeneration."""


@training_sets.command(name="list")
@_JSON
@click.pass_context
@_errors
def list_training_sets(ctx: click.Context, as_json: bool) -> None:
    """Saved training sets: rows, features, fingerprint, who saved them and when."""
    from rich.table import Table

    found = _store(ctx).training_sets.list()
    if as_json:
        _print_json([_summary(ts) for ts in found])
        return
    table = Table(title="Training sets")
    for col in ("name", "rows", "features", "fingerprint", "saved", "description"):
        table.add_column(col)
    for ts in found:
        table.add_row(
            ts.name,
            f"{ts.rows:,}",
            ", ".join(ts.feature_refs),
            ts.fingerprint[:12],
            f"{ts.created_at[:19].replace('T', ' ')} by {ts.created_by}",
            ts.description,
        )
    _console().print(table)


def _summary(ts: Any) -> dict[str, Any]:
    return {
        "name": ts.name,
        "rows": ts.rows,
        "feature_refs": list(ts.feature_refs),
        "fingerprint": ts.fingerprint,
        "created_by": ts.created_by,
        "created_at": ts.created_at,
        "description": ts.description,
    }


@training_sets.command(name="show")
@click.argument("name")
@_JSON
@click.pass_context
@_errors
def show_training_set(ctx: click.Context, name: str, as_json: bool) -> None:
    """How the saved training set NAME was made: features, definitions' versions, entity rows, result."""
    ts = _store(ctx).training_sets.get(name)
    if as_json:
        _print_json(ts.to_dict())
        return
    console = _console()
    console.print(f"[bold]{ts.name}[/] fingerprint {ts.fingerprint}")
    views = ", ".join(
        f"{view} (version {d['version']}, source {d['source']} version {d['source_version']})"
        for view, d in ts.definitions.items()
    )
    rows = [
        ("rows", f"{ts.rows:,}"),
        ("features", ", ".join(ts.feature_refs)),
        ("options", f"full_feature_names={ts.full_feature_names}, bitemporal={ts.bitemporal}"),
        ("definitions", views or "-"),
        ("entity columns", ", ".join(ts.entity_rows["columns"])),
        ("entity rows", f"{ts.entity_rows['rows']:,} (sha256 {ts.entity_rows['sha256'][:12]})"),
        ("result columns", ", ".join(ts.result["columns"])),
        ("description", ts.description or "-"),
        ("saved", f"{ts.created_at} by {ts.created_by}"),
    ]
    for key, value in rows:
        console.print(f"  {key:16} {value}", markup=False)


@training_sets.command(name="compare")
@click.argument("name")
@_JSON
@click.pass_context
@_errors
def compare_training_set(ctx: click.Context, name: str, as_json: bool) -> None:
    """Regenerate the saved training set NAME and say what changed since it was saved.

    Exits 0 when it regenerates identically and 1 when it differs (like `diff`), so CI can gate on it.
    """
    comparison = _store(ctx).training_sets.compare(name)
    if as_json:
        _print_json(
            {
                "name": comparison.name,
                "same": comparison.same,
                "recorded": comparison.recorded,
                "regenerated": comparison.regenerated,
                "changes": list(comparison.changes),
            }
        )
    else:
        _console().print(str(comparison), markup=False)
    if not comparison.same:
        raise SystemExit(1)
