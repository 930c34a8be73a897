"""The `fs` command: argument parsing and printing only; the work is done by FeatureStore.

fs init my_repo
fs --repo my_repo plan | apply | list
fs --repo my_repo materialize 2026-01-01 2026-01-31
fs --repo my_repo materialize-incremental
fs --repo my_repo training-set --entities entities.parquet --features driver_activity --out train.parquet
fs --repo my_repo training-set --spine trip_labels --start 2026-01-01 --end 2026-01-31 -f driver_activity --out t.parquet
fs --repo my_repo online-features --features driver_activity --entity driver_id=1001
fs --repo my_repo push driver_stats_push rows.parquet --to both
fs --repo my_repo serve --port 6566
fs --repo my_repo ui [--port 6566] [--no-open]                      (the web UI, opened in the browser)
fs --repo my_repo training-sets list | show NAME | compare NAME     (and `fs models ...`)
fs --repo my_repo retrain trip_completion [--when drift]; fs runs [MODEL]; fs runs show ID

Tables fit a terminal; written to a pipe or a file they are never cut. `--json` (list, plan,
online-features, models list/show, training-sets) prints JSON for scripts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .console import console as _console
from .console import handle_errors
from .console import open_store as _store
from .console import print_json as _print_json

_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts) instead of a table.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--repo",
    "-r",
    default=None,
    metavar="DIR",
    envvar="FS_REPO",
    help="The feature repo folder (default: the nearest folder with featurestore.toml).",
)
@click.version_option(package_name="featurestore")
@click.pass_context
def cli(ctx: click.Context, repo: str | None) -> None:
    """featurestore: features as code, leak-free training sets, fast online lookups."""
    ctx.ensure_object(dict)
    ctx.obj["repo"] = repo


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--project", default=None, help="Project name (default: the folder's name).")
@handle_errors
def init(directory: str, project: str | None) -> None:
    """Create a working starter feature repo in DIRECTORY."""
    from .starter import create_starter_repo

    path = create_starter_repo(Path(directory), project)
    _console().print(f"Created a feature repo in {path}\nNext: fs --repo {directory} apply")


@cli.command()
@_JSON
@click.pass_context
@handle_errors
def plan(ctx: click.Context, as_json: bool) -> None:
    """Show what `fs apply` would add, change (field by field) and remove."""
    result = _store(ctx).plan()
    if as_json:
        _print_json(
            {
                "changes": [
                    {
                        "action": c.action,
                        "kind": c.kind,
                        "name": c.name,
                        "fields": [{"path": f.path, "old": f.old, "new": f.new} for f in c.fields],
                    }
                    for c in result.pending
                ],
                "stale": list(result.stale),
                "counts": result.counts(),
            }
        )
        return
    _console().print(result.render(), markup=False)


@cli.command()
@click.pass_context
@handle_errors
def apply(ctx: click.Context) -> None:
    """Validate the repo's definitions and record them in the registry (all or nothing)."""
    result = _store(ctx).apply()
    _console().print(
        result.render() if not result.is_empty else "No changes: registry up to date.", markup=False
    )
    if not result.is_empty:
        _console().print("Applied.")


@cli.command(name="list")
@click.argument(
    "kind",
    required=False,
    default="all",
    type=click.Choice(["all", "entities", "sources", "views", "services", "pipelines"]),
)
@_JSON
@click.pass_context
@handle_errors
def list_(ctx: click.Context, kind: str, as_json: bool) -> None:
    """List the applied entities, sources, feature views (plain, aggregating, on-demand), services and
    training pipelines."""
    from rich.table import Table

    from .plan import format_duration

    store = _store(ctx)
    catalog = store.catalog
    if as_json:
        _print_json(_catalog_json(store, kind))
        return
    console = _console()
    where = store.registry.locations()  # (kind, name) -> "file.py:LINE" where it is defined
    if kind in ("all", "entities"):
        table = Table(title="Entities")
        for col in ("name", "join keys", "description", "defined at"):
            table.add_column(col)
        for e in catalog.entities.values():
            table.add_row(e.name, ", ".join(e.join_keys), e.description, where.get(("entity", e.name), "-"))
        console.print(table)
    if kind in ("all", "sources"):
        table = Table(title="Sources")
        for col in ("name", "type", "timestamp field", "created field", "defined at"):
            table.add_column(col)
        for s in catalog.sources.values():
            table.add_row(
                s.name,
                s.source_type,
                s.timestamp_field,
                s.created_timestamp_field or "",
                where.get(("source", s.name), "-"),
            )
        console.print(table)
    if kind in ("all", "views"):
        table = Table(title="Feature views")
        for col in ("name", "entities", "features", "ttl", "online", "watermark", "defined at"):
            table.add_column(col)
        watermarks = store.registry.watermarks()
        for v in catalog.views.values():
            wm = watermarks.get(v.name)
            table.add_row(
                v.name,
                ", ".join(e.name for e in v.entities),
                ", ".join(v.feature_names),
                format_duration(v.ttl.total_seconds()) if v.ttl else "-",
                "yes" if v.online else "no",
                wm.isoformat() if wm else "-",
                where.get(("feature_view", v.name), "-"),
            )
        console.print(table)
    if kind in ("all", "views") and catalog.on_demand:
        table = Table(title="On-demand feature views")
        for col in ("name", "inputs", "features", "function", "defined at"):
            table.add_column(col)
        for o in catalog.on_demand.values():
            table.add_row(
                o.name,
                ", ".join(_on_demand_inputs(o)),
                ", ".join(o.feature_names),
                f"{o.module}:{o.function}"
                + (f" (+ {o.mode} {o.vectorized_function})" if o.vectorized_function else ""),
                where.get(("on_demand_feature_view", o.name), "-"),
            )
        console.print(table)
    if kind in ("all", "services"):
        table = Table(title="Feature services")
        table.add_column("name")
        table.add_column("features")
        table.add_column("defined at")
        for service in catalog.services.values():
            table.add_row(
                service.name, ", ".join(service.refs), where.get(("feature_service", service.name), "-")
            )
        console.print(table)
    if kind in ("all", "pipelines") and (catalog.pipelines or kind == "pipelines"):
        table = Table(title="Training pipelines")
        columns = ("model", "features", "spine", "label", "metric", "alias", "approval", "function")
        for col in (*columns, "defined at"):
            table.add_column(col)
        for p in catalog.pipelines.values():
            table.add_row(
                p.model,
                p.features,
                p.spine,
                p.label,
                p.metric,
                p.alias,
                p.approval,
                f"{p.function_file}:{p.function}",
                where.get(("training_pipeline", p.model), "-"),
            )
        console.print(table)


def _request_field_types(catalog: Any) -> dict[str, str]:
    """Field name -> value type name of the request sources of the applied on-demand views."""
    return {
        f.name: f.dtype.name for o in catalog.on_demand.values() for r in o.request_sources for f in r.schema
    }


def _request_value(text: str, type_name: str | None) -> Any:
    """A request value given on the command line, as its field's type reads it (else the text, which
    the lookup then refuses with a message naming the field)."""
    try:
        if type_name in ("Float64", "Float32"):
            return float(text)
        if type_name in ("Int64", "Int32"):
            return int(text)
    except ValueError:
        return text
    if type_name == "Bool" and text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def _on_demand_inputs(view: Any) -> list[str]:
    """An on-demand view's inputs as `view:feature` refs and `request:field` names."""
    refs = [r for p in view.projections for r in p.refs]
    return refs + [f"{r.name}:{f.name}" for r in view.request_sources for f in r.schema]


def _catalog_json(store: Any, kind: str) -> dict[str, list[dict[str, Any]]]:
    """`fs list --json`: each object's definition (its spec, as the registry records it); views with
    their watermark and last materialization run."""
    catalog = store.catalog
    where = store.registry.locations()  # (kind, name) -> "file.py:LINE" where it is defined
    out: dict[str, list[dict[str, Any]]] = {}
    if kind in ("all", "entities"):
        out["entities"] = [
            {**e.to_spec(), "defined_at": where.get(("entity", e.name))} for e in catalog.entities.values()
        ]
    if kind in ("all", "sources"):
        out["sources"] = [
            {**s.to_spec(), "defined_at": where.get(("source", s.name))} for s in catalog.sources.values()
        ]
    if kind in ("all", "views"):
        watermarks = store.registry.watermarks()
        out["views"] = [
            {
                **v.to_spec(),
                "defined_at": where.get(("feature_view", v.name)),
                "watermark": watermarks.get(v.name),
                "last_materialization": store.registry.last_materialization(v.name),
            }
            for v in catalog.views.values()
        ]
    if kind in ("all", "views"):
        out["on_demand_views"] = [
            {**o.to_spec(), "defined_at": where.get(("on_demand_feature_view", o.name))}
            for o in catalog.on_demand.values()
        ]
    if kind in ("all", "pipelines"):
        out["pipelines"] = [
            {**p.to_spec(), "defined_at": where.get(("training_pipeline", p.model))}
            for p in catalog.pipelines.values()
        ]
    if kind in ("all", "services"):
        out["services"] = [
            {**s.to_spec(), "refs": list(s.refs), "defined_at": where.get(("feature_service", s.name))}
            for s in catalog.services.values()
        ]
    return out


@cli.command()
@click.argument("start")
@click.argument("end", required=False)
@click.option("--views", "-v", multiple=True, help="Only these feature views (repeatable).")
@click.pass_context
@handle_errors
def materialize(ctx: click.Context, start: str, end: str | None, views: tuple[str, ...]) -> None:
    """Materialize rows with START <= event time <= END (ISO dates/datetimes, naive = UTC; END
    defaults to now)."""
    from datetime import datetime, timezone

    until = end if end is not None else datetime.now(timezone.utc)
    result = _store(ctx).materialize(start, until, views=list(views) or None, progress=True)
    _console().print(str(result), markup=False)
    _fail_if_unrecorded(result)


@cli.command(name="materialize-incremental")
@click.argument("end", required=False)
@click.option("--views", "-v", multiple=True, help="Only these feature views (repeatable).")
@click.pass_context
@handle_errors
def materialize_incremental(ctx: click.Context, end: str | None, views: tuple[str, ...]) -> None:
    """Materialize each view from its watermark up to END (default: now)."""
    result = _store(ctx).materialize_incremental(end, views=list(views) or None, progress=True)
    _console().print(str(result), markup=False)
    _fail_if_unrecorded(result)


def _fail_if_unrecorded(result: Any) -> None:
    """Exit 1 when a view's run was not recorded, so a scheduler notices and runs it again."""
    if result.unrecorded:
        from .errors import MaterializationError

        raise MaterializationError(
            f"the definitions of {', '.join(result.unrecorded)} changed during the run: "
            "their rows were not recorded; run again"
        )


def _features_arg(values: tuple[str, ...]) -> Any:
    items = [v.strip() for value in values for v in value.split(",") if v.strip()]
    if len(items) == 1 and ":" not in items[0]:
        return items[0]  # a feature service name
    return items


def _read_table(path: str) -> Any:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from .errors import FeatureStoreError as Err

    p = Path(path)
    if not p.exists():
        raise Err(f"file not found: {path}")
    if p.suffix.lower() == ".csv":
        return pacsv.read_csv(p)
    if p.suffix.lower() in (".parquet", ".pq"):
        return pq.read_table(p)
    raise Err(f"{path}: use a .parquet or .csv file")


@cli.command(name="training-set")
@click.option(
    "--entities",
    "entities",
    default=None,
    metavar="FILE",
    help="Entity rows (.parquet or .csv) with join keys and event_timestamp.",
)
@click.option(
    "--spine",
    default=None,
    metavar="NAME",
    help="Take the entity rows from this source or feature view instead of --entities.",
)
@click.option("--start", default=None, metavar="TIME", help="With --spine: rows from this time (inclusive).")
@click.option("--end", default=None, metavar="TIME", help="With --spine: rows up to this time (inclusive).")
@click.option(
    "--features",
    "-f",
    required=True,
    multiple=True,
    help="Feature refs view:feature (repeatable or comma-separated) or one feature service name.",
)
@click.option(
    "--out", "out", required=True, metavar="FILE", help="Where to write the training set (.parquet or .csv)."
)
@click.option("--full-feature-names", is_flag=True, help="Name columns view__feature.")
@click.option("--bitemporal", is_flag=True, help="Also require created timestamp <= the row's timestamp.")
@click.pass_context
@handle_errors
def training_set(
    ctx: click.Context,
    entities: str | None,
    spine: str | None,
    start: str | None,
    end: str | None,
    features: tuple[str, ...],
    out: str,
    full_feature_names: bool,
    bitemporal: bool,
) -> None:
    """Build a point-in-time-correct training set and write it to a file.

    The entity rows come from --entities FILE, or from --spine NAME (a source or feature view, e.g. one
    with labels) between --start and --end."""
    from .errors import FeatureStoreError as Err

    if (entities is None) == (spine is None):
        raise Err("give the entity rows with --entities FILE or --spine NAME (one of them)")
    if entities is not None and (start or end):
        raise Err("--start and --end select the rows of a --spine")
    store = _store(ctx)
    job = store.get_historical_features(
        _read_table(entities) if entities is not None else None,
        _features_arg(features),
        full_feature_names=full_feature_names,
        bitemporal=bitemporal,
        spine=spine,
        start=start,
        end=end,
    )
    table = job.to_arrow()
    if out.lower().endswith(".csv"):
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, out)
    else:
        import pyarrow.parquet as pq

        pq.write_table(table, out)
    _console().print(f"Wrote {table.num_rows:,} rows x {table.num_columns} columns to {out}")
    _console().print(table.slice(0, 5).to_pandas().to_string(), markup=False)


@cli.command(name="online-features")
@click.option(
    "--features",
    "-f",
    required=True,
    multiple=True,
    help="Feature refs view:feature (repeatable or comma-separated) or one feature service name.",
)
@click.option(
    "--entity",
    "-e",
    "entity",
    required=True,
    multiple=True,
    metavar="KEY=VALUE[,KEY=VALUE]",
    help="One entity row per option, e.g. -e driver_id=1001 (values are text, read by each key's type).",
)
@click.option("--full-feature-names", is_flag=True)
@_JSON
@click.pass_context
@handle_errors
def online_features(
    ctx: click.Context,
    features: tuple[str, ...],
    entity: tuple[str, ...],
    full_feature_names: bool,
    as_json: bool,
) -> None:
    """Look features up in the online store and print them with their status.

    --json prints what `POST /features/online` answers with statuses and event timestamps:
    {"values": {column: [...]}, "statuses": {feature: [...]}, "event_timestamps": {...}}.
    """
    from rich.table import Table

    store = _store(ctx)
    request_types = _request_field_types(store.catalog)
    rows = []
    for spec in entity:
        row = {}
        for pair in spec.split(","):
            if "=" not in pair:
                raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--entity")
            k, v = pair.split("=", 1)
            # Text: the key rule reads digit strings for integer keys; request values are read by their type.
            row[k.strip()] = _request_value(v.strip(), request_types.get(k.strip()))
        rows.append(row)
    resp = store.get_online_features(_features_arg(features), rows, full_feature_names=full_feature_names)
    if as_json:
        _print_json(
            {"values": resp.values, "statuses": resp.statuses, "event_timestamps": resp.event_timestamps}
        )
        return
    data = resp.to_dict(include_status=True)
    table = Table()
    columns = [c for c in data if not c.endswith("__status")]
    for c in columns:
        table.add_column(c)
    for i in range(len(rows)):
        cells = []
        for c in columns:
            status = data.get(f"{c}__status")
            value = data[c][i]
            cells.append(f"{value}" if status is None or status[i] == "PRESENT" else f"{value} ({status[i]})")
        table.add_row(*cells)
    _console().print(table)


@cli.command()
@click.argument("source")
@click.argument("file")
@click.option(
    "--to", "to", type=click.Choice(["online", "offline", "both"]), default="online", show_default=True
)
@click.pass_context
@handle_errors
def push(ctx: click.Context, source: str, file: str, to: str) -> None:
    """Push the rows of FILE (.parquet or .csv) to the views of push source SOURCE."""
    n = _store(ctx).push(source, _read_table(file), to=to)
    _console().print(f"Pushed {n:,} rows to {to}.")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=6566, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int)
@click.pass_context
@handle_errors
def serve(ctx: click.Context, host: str, port: int, workers: int) -> None:
    """Serve online features (and models) over HTTP; OpenAPI docs at /docs."""
    from featurestore.server.run import serve as run_server

    run_server(ctx.obj["repo"], host, port, workers)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=6566, show_default=True, type=int)
@click.option(
    "--open/--no-open",
    "open_browser",
    default=True,
    show_default=True,
    help="Open the UI in the browser once the server listens (where a graphical browser can open).",
)
@click.pass_context
@handle_errors
def ui(ctx: click.Context, host: str, port: int, open_browser: bool) -> None:
    """Serve the web UI (the same server as `fs serve`) and print its address; sign in with an API key
    when the repo has keys."""
    from featurestore.server import run

    click.echo(f"featurestore web UI: {run.ui_url(host, port)}  (Ctrl+C stops the server)")
    run.serve(ctx.obj["repo"], host, port, open_browser=open_browser)


@cli.command()
@_JSON
@click.pass_context
@handle_errors
def status(ctx: click.Context, as_json: bool) -> None:
    """Per view: offline and online watermark, rows online, last run, staleness; says when the online
    store in use is behind offline storage (new or emptied: run `fs materialize-incremental`), and
    which materialized ranges are stale (their source changed since: run `fs materialize START END`)."""
    from rich.table import Table

    from .plan import format_duration
    from .status import registry_line, registry_summary, repair_command, view_statuses

    store = _store(ctx)
    statuses = view_statuses(store)
    quarantined = store.offline_storage.quarantined()
    if as_json:
        _print_json(
            {
                "registry": registry_summary(store.config),
                "views": [s.to_dict() for s in statuses],
                "quarantined": [
                    {
                        "view": q.view,
                        "area": q.area or "materialized",
                        "day": q.day.isoformat(),
                        "path": str(q.path),
                        "reason": q.reason,
                    }
                    for q in quarantined
                ],
            }
        )
        return
    table = Table(title="Feature views")
    for col in ("view", "offline watermark", "online watermark", "rows online", "last run", "staleness"):
        table.add_column(col)
    for s in statuses:
        online = "-" if not s.online else (s.online_watermark.isoformat() if s.online_watermark else "none")
        table.add_row(
            s.view,
            s.offline_watermark.isoformat() if s.offline_watermark else "-",
            online + (" (behind)" if s.online_behind else ""),
            f"{s.rows_online:,}" if s.rows_online is not None else "-",
            s.last_run or "-",
            format_duration(round(s.staleness_seconds)) if s.staleness_seconds is not None else "-",
        )
    console = _console()
    console.print(registry_line(store.config), markup=False)
    console.print(table)
    behind = [s.view for s in statuses if s.online_behind]
    if behind:
        console.print(
            f"The online store is behind offline storage for {', '.join(behind)}: run "
            "`fs materialize-incremental` to fill it.",
            markup=False,
        )
    for s in statuses:  # materialized ranges whose source files changed since (late rows)
        for a, b in s.stale_ranges:
            console.print(
                f"Stale: view '{s.view}' from {a.isoformat()} to {b.isoformat()}: its source changed since "
                f"that range was materialized; training sets read the source for it. Run `{repair_command(s.view, a, b)}` "
                "to store it again.",
                markup=False,
            )
    for q in quarantined:  # unreadable day files moved aside (featurestore.offline.storage)
        console.print(
            f"Quarantined: {q.path} ({q.area or 'materialized'} rows of view '{q.view}' for {q.day}, "
            f"unreadable: {q.reason}); training sets leave them out: repair the file and move it back, "
            "or push those rows again.",
            markup=False,
        )


@cli.group()
def registry() -> None:
    """Look after the registry (applied definitions, watermarks, models, audit trail): back it up, migrate it."""


@registry.command(name="backup")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Overwrite PATH if it exists.")
@click.pass_context
@handle_errors
def registry_backup(ctx: click.Context, path: str, force: bool) -> None:
    """Copy the registry to PATH (safe while other processes use it); restore by putting it in place."""
    store = _store(ctx)
    written = store.registry.backup(path, force=force)
    _console().print(f"Backed up the registry {store.config.registry_location} to {written}.", markup=False)


@registry.command(name="migrate")
@click.option("--to", "url", required=True, help="postgresql://user@host/database of an empty database.")
@click.option(
    "--models-path",
    type=click.Path(file_okay=False),
    help="Also copy model artifacts and saved training sets to this folder, the [models] path to set.",
)
@click.pass_context
@handle_errors
def registry_migrate(ctx: click.Context, url: str, models_path: str | None) -> None:
    """Copy this repo's registry, every row, into an empty PostgreSQL registry (featurestore.registry_migrate)."""
    from .config import url_without_password
    from .registry_migrate import (
        check_model_file_moves,
        copy_model_files,
        migrate_to_postgres,
        model_file_moves,
    )

    store = _store(ctx)
    config = store.config
    target_models = Path(models_path).resolve() if models_path else config.models_dir
    moves = model_file_moves(config, target_models) if target_models is not None else []
    if models_path:
        check_model_file_moves(moves)
    result = migrate_to_postgres(store.registry.backend, url)
    console = _console()
    copied = ", ".join(f"{table} {n}" for table, n in result.rows.items() if n)
    console.print(
        f"Copied the registry {store.config.registry_location} to {result.target}: "
        f"{result.total} rows ({copied or 'it was empty'}).",
        markup=False,
    )
    console.print(
        f'Next: set [registry] url = "{url_without_password(url)}" in featurestore.toml (or FS_REGISTRY_URL), '
        "with [models] path and [monitoring] log_path on storage every machine reaches.",
        markup=False,
    )
    if url_without_password(url) != url:
        console.print(
            "Keep the password out of the URL: put it in ~/.pgpass (host:port:database:user:password) or "
            "in PGPASSWORD on each machine.",
            markup=False,
        )
    if models_path:
        copy_model_files(moves)
        for src, dst in moves:
            console.print(f"Copied {src} to {dst}.", markup=False)
        console.print(f'Set [models] path = "{target_models}".', markup=False)
    elif config.models_dir is None:
        for src, dst in model_file_moves(config, Path("<models path>")):  # what is there to copy
            console.print(
                f"Copy {src} to {dst} (cp -a {src}/. {dst}/) once you choose [models] path: a PostgreSQL "
                "registry looks there (or migrate into a new database with --models-path).",
                markup=False,
            )


@cli.group()
def online() -> None:
    """Look after the online store."""


@online.command(name="migrate")
@click.option("--from", "source", required=True, help="redis://host:port/db of the standalone Redis to copy.")
@click.pass_context
@handle_errors
def online_migrate(ctx: click.Context, source: str) -> None:
    """Copy a standalone Redis online store (this project's rows) into the configured Redis Cluster."""
    from .config import redacted_url
    from .errors import ConfigError
    from .online.migrate import migrate_to_cluster
    from .online.redis_cluster import RedisClusterOnlineStore

    store = _store(ctx)
    target = store.online_store
    if not isinstance(target, RedisClusterOnlineStore):
        raise ConfigError(
            "fs online migrate copies into a Redis Cluster: set [online] cluster = true (or FS_ONLINE_CLUSTER=1) "
            "and url to one of its nodes"
        )
    aggregating = {v.name for v in store.catalog.views.values() if v.aggregations}
    result = migrate_to_cluster(source, target, aggregating)
    views = ", ".join(f"{v} {n:,}" for v, n in sorted(result.views.items()))
    _console().print(
        f"Copied {result.rows:,} rows ({views or 'none'}) from {redacted_url(source)} to the cluster at "
        f"{redacted_url(target.url)}; "
        f"the cluster kept its newer row for {result.rows - result.written:,}; {result.skipped:,} other keys skipped.",
        markup=False,
    )
    if result.tiles_held:
        names = ", ".join(f"{v} ({n:,} keys)" for v, n in sorted(result.tiles_held.items()))
        _console().print(
            f"The cluster already held tiles of aggregating views, kept as they were, not merged: {names}. "
            "Re-materialize these views (fs materialize) to rebuild them from their events.",
            markup=False,
        )
    if result.identity is not None:
        _console().print(f"The cluster's online store identity: {result.identity}.", markup=False)


def _add_optional_groups() -> None:
    try:
        from .models.cli import models, training_sets
    except ImportError:  # the model registry's CLI is optional
        return
    cli.add_command(models)
    cli.add_command(training_sets)


_add_optional_groups()


def _add_monitoring() -> None:
    from .monitoring.cli import monitor, stats

    cli.add_command(monitor)
    cli.add_command(stats)


_add_monitoring()


def _add_pipelines() -> None:
    from .pipelines.cli import retrain, runs

    cli.add_command(retrain)
    cli.add_command(runs)


_add_pipelines()


def _add_audit() -> None:
    from .audit_cli import audit

    cli.add_command(audit)


_add_audit()


def main() -> None:
    """Entry point of the `fs` console script."""
    cli(obj={})


if __name__ == "__main__":
    main()
