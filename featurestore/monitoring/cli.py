"""`fs stats` and `fs monitor ...`: monitoring from a shell. Parsing and printing only; the work is
`featurestore.monitoring`'s.

    fs stats driver_hourly_stats [--json]
    fs monitor drift trip_completion@production [--since 7d | --start T --end T] [--json]
    fs monitor skew trip_completion@production [--since 1d | --start T --end T] [--json]
    fs monitor shadow trip_completion [--since 7d | --start T --end T] [--json]
    fs monitor freshness [--json]                     # exits 1 when a view breaches its freshness
    fs monitor report trip_completion@production --out report.html
    fs monitor check [--since 1d] [--json]            # every check; exits 1 on a breach
    fs monitor check --retrain                        # then retrain the breaching models' pipelines

Exit codes: 0 all well, 1 a breach (freshness, drift, performance), 2 bad input or an error
(`fs stats`, `fs monitor report` and `fs monitor skew` report findings: 0 or 2). Names and values
from the data are printed as plain text, never read as rich markup.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import click

from ..console import console as _console
from ..console import exit_on_errors
from ..console import open_store as _store
from ..console import print_json as _print_json

# An error exits 2: 1 is a breach (freshness, drift, performance), which cron and CI must tell apart.
_errors = exit_on_errors(2)
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts) instead of a table.")


_F = TypeVar("_F", bound=Callable[..., Any])


def _window_options(default_since: str | None) -> Callable[[_F], _F]:
    """--since / --start / --end, as one decorator."""

    def wrap(fn: _F) -> _F:
        fn = click.option(
            "--end", default=None, metavar="TIME", help="Window end (inclusive; default: now)."
        )(fn)
        fn = click.option("--start", default=None, metavar="TIME", help="Window start (inclusive).")(fn)
        return click.option(
            "--since",
            default=default_since,
            metavar="DURATION",
            help="The window ending now: 7d, 12h, 30m"
            + (f" (default: {default_since})." if default_since else " (default: everything logged)."),
        )(fn)

    return wrap


def window_of(since: str | None, start: str | None, end: str | None) -> tuple[Any, Any]:
    """(start, end) from the options: --start/--end win over --since."""

    if start is not None or end is not None:
        return start, end
    if since is None:
        return None, None
    span = since_of(since)
    now = datetime.now(timezone.utc)
    return now - span, now


def since_of(since: str) -> timedelta:
    """--since as a timedelta (parse_since refuses one reaching back before the year 1)."""
    from .log import parse_since

    try:
        return parse_since(since)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--since") from None


@click.command()
@click.argument("view")
@click.option(
    "--training-set",
    "training_set",
    is_flag=True,
    help="VIEW names a saved training set (job.save(NAME)): the statistics of its columns.",
)
@_JSON
@click.pass_context
@_errors
def stats(ctx: click.Context, view: str, training_set: bool, as_json: bool) -> None:
    """Per-feature statistics of VIEW's materialized rows (merged over its runs, and per run), or
    of a saved training set's columns (--training-set)."""
    if training_set:
        summary = _store(ctx).monitor.training_set_stats(view)
        if as_json:
            _print_json({"training_set": view, "stats": summary})
        else:
            _print_table(view, summary)
        return
    result = _store(ctx).monitor.stats(view)
    if as_json:
        _print_json(result.to_dict())
        return
    _print_stats(result.to_dict())


def _print_stats(stats: dict[str, Any]) -> None:
    """The merged profile as a table (one row per feature), then a line on the runs."""
    out = _console()
    runs = stats["runs"]
    merged = stats["merged"]
    if merged is not None:
        _print_table(stats["view"], merged)
    with_stats = stats["runs_with_stats"]
    if not runs:
        out.print(_plain(f"{stats['view']}: no materialization runs since its last apply reset it"))
        return
    first, last = min(r["start"] for r in runs), max(r["end"] for r in runs)
    if first.startswith("1970-01-01T00:00:00"):  # an incremental run's first start: the epoch
        first = "the beginning"
    out.print(
        _plain(
            f"{len(runs)} run{'s' * (len(runs) != 1)} ({with_stats} with statistics), "
            f"event times from {first} to {last}"
            + (
                ""
                if with_stats
                else ": no statistics (runs without rows, or recorded before statistics were)"
            )
        )
    )
    replaced, overlapping = stats.get("replaced_runs", 0), stats.get("overlapping_runs", 0)
    if replaced or overlapping:
        out.print(
            _plain(
                f"left out: {replaced} run(s) whose range a later run materialized again; "
                f"{overlapping} run(s) overlap others in part (the shared time is counted twice)"
            )
        )


def _print_table(name: str, merged: dict[str, Any]) -> None:
    """One row per feature of a summarized profile (`stats.summarize`)."""
    from rich.table import Table

    of = {"events": "raw events (the aggregated input columns)", "training_set": "its feature columns"}.get(
        merged["of"], merged["of"]
    )
    table = Table(title=_plain(f"{name}: {merged['rows']:,} rows, {of}"))
    table.add_column("feature")
    for col in ("rows", "nulls %", "min", "max", "mean", "std", "distinct", "p50"):
        table.add_column(col, justify="right")
    table.add_column("top values")
    for feature, c in merged["columns"].items():
        _add_row(
            table,
            feature,
            f"{c['rows']:,}",
            "-" if c["null_rate"] is None else f"{100 * c['null_rate']:.1f}",
            _cell(c.get("min")),
            _cell(c.get("max")),
            _cell(c.get("mean")),
            _cell(c.get("std")),
            _distinct_cell(c.get("distinct")),
            _cell(c.get("quantiles", {}).get("p50")),
            _top_cell(c),
        )
    _console().print(table)


def _add_row(table: Any, *cells: str) -> None:
    """A table row of plain text: a value such as "[/]" or "[bold]x" is shown, not read as markup."""
    table.add_row(*(_plain(c) for c in cells))


def _plain(text: str) -> Any:
    """`text` as a rich Text: printed as it is, never read as markup (names and values from data)."""
    from rich.text import Text

    return Text(text)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (bool, str)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4g}"


def _distinct_cell(distinct: dict[str, Any] | None) -> str:
    if distinct is None:
        return "-"
    if distinct.get("estimate") is not None:
        return f"{round(distinct['estimate']):,}"
    return f"{distinct['lower']:,}..{distinct['upper']:,}"  # runs whose counts do not merge: bounds


def _top_cell(column: dict[str, Any]) -> str:
    if column["kind"] == "bool":
        return f"true {column['true']:,}, false {column['false']:,}"
    top = column.get("top") or []
    return ", ".join(f"{t['value']} ({t['count']:,})" for t in top[:3]) + (" ..." if len(top) > 3 else "")


@click.group()
def monitor() -> None:
    """Monitoring: drift, skew, freshness, live performance, reports and checks."""


@monitor.command("drift")
@click.argument("model")
@_window_options(None)
@_JSON
@click.pass_context
@_errors
def drift_command(
    ctx: click.Context, model: str, since: str | None, start: str | None, end: str | None, as_json: bool
) -> None:
    """What MODEL (name@alias) served in the window against its training set: PSI, Jensen-Shannon
    and Wasserstein per feature and for the prediction, worst first. Exits 1 on drift (warn is
    shown, not a breach), 2 on an error, else 0."""
    lo, hi = window_of(since, start, end)
    report = _store(ctx).monitor.drift(model, start=lo, end=hi)
    if as_json:
        _print_json(report.to_dict())
    else:
        _console().print(report.table())
    if report.breach:
        ctx.exit(1)


@monitor.command("report")
@click.argument("model")
@click.option("--out", "out", required=True, metavar="FILE", help="Where to write the HTML file.")
@_window_options(None)
@click.pass_context
@_errors
def report_command(
    ctx: click.Context, model: str, out: str, since: str | None, start: str | None, end: str | None
) -> None:
    """Write the self-contained HTML monitoring report of MODEL (name@alias) to FILE: drift per
    feature with histograms, drift and live metric per day, freshness. No network needed to view it.
    Exits 0 whatever the report shows (a drift is a finding of the report, not a failure), 2 on an error."""
    lo, hi = window_of(since, start, end)
    path = _store(ctx).monitor.report(model, out, start=lo, end=hi)
    _console().print(_plain(f"wrote {path} ({path.stat().st_size:,} bytes)"))


@monitor.command("freshness")
@_JSON
@click.pass_context
@_errors
def freshness_command(ctx: click.Context, as_json: bool) -> None:
    """Each feature view's newest online event time, its age and its freshness limit. Exits 1 when a
    view is older than its `freshness`, 2 on an error (e.g. the online store is unreachable)."""
    from rich.table import Table

    from ..plan import format_duration

    report = _store(ctx).monitor.freshness()
    if as_json:
        _print_json(report.to_dict())
    else:
        table = Table(title="Freshness")
        for col in ("view", "newest online event", "age", "limit", "status"):
            table.add_column(col)
        for v in report.views:
            _add_row(
                table,
                v.view,
                v.newest_event.isoformat(timespec="seconds") if v.newest_event is not None else "-",
                format_duration(round(v.age_seconds)) if v.age_seconds is not None else "-",
                format_duration(v.freshness_seconds) if v.freshness_seconds is not None else "-",
                v.status,
            )
        _console().print(table)
    if report.breach:
        ctx.exit(1)


@monitor.command("check")
@click.option(
    "--since", default="1d", metavar="DURATION", help="What drift and performance read (default: 1d)."
)
@click.option(
    "--retrain",
    is_flag=True,
    help="Then run the training pipeline of each model whose drift or performance breaches.",
)
@_JSON
@click.pass_context
@_errors
def check_command(ctx: click.Context, since: str, retrain: bool, as_json: bool) -> None:
    """Every check at once, for cron and CI: freshness of every view, drift and live performance of
    every aliased model version over the last --since; then deletes log days older than
    `retention_days`. Exits 1 on a breach, else 2 when a check failed (e.g. an unreadable log
    file; the other checks still run) or on bad input, else 0. --retrain: then runs the pipelines
    of the breaching models (docs/pipelines.md); exits 2 when one of those runs failed."""
    span = since_of(since)
    store = _store(ctx)
    result = store.monitor.check(since=span)
    retrain_failed = False
    if retrain:
        from ..pipelines.cli import print_retrains, retrain_breached

        outcomes, notes, retrain_failed = retrain_breached(store, result)
    if as_json:
        _print_json(
            {**result.to_dict(), "retrain": outcomes, "retrain_notes": notes} if retrain else result.to_dict()
        )
    else:
        _print_check(result)
        if retrain:
            print_retrains(store, outcomes, notes)
    if retrain_failed:
        ctx.exit(2)
    if not result.ok:
        ctx.exit(1)
    if result.errors:
        ctx.exit(2)


def _print_check(result: Any) -> None:
    """The summary of a CheckResult: one line per check, then every note and breach."""
    from rich.markup import escape

    lines = [f"freshness: {sum(v.online for v in result.freshness.views)} online views, "]
    lines[0] += f"{len(result.freshness.breaches)} past their freshness"
    for check, reports in (("drift", result.drift), ("performance", result.performance)):
        keys: dict[int, list[str]] = {}  # aliases of one version share its report
        for key, report in reports.items():
            keys.setdefault(id(report), []).append(key)
        for names in keys.values():
            report = reports[names[0]]
            detail = getattr(report, "detail", None) if check == "performance" else _worst_psi(report)
            line = f"{check}: {', '.join(names)} (v{report.version}): {report.status}"
            lines.append(line + (f": {detail}" if detail else ""))
    lines.append(f"retention: deleted {result.deleted_log_days} log day folder(s)")
    lines += [f"note: {note}" for note in result.notes]
    out = _console()
    for line in lines:
        out.print(escape(line))
    for e in result.errors:
        out.print(f"[bold red]ERROR[/] {escape(f'{e.target}: {e.message}')}")
    for b in result.breaches:
        out.print(f"[bold red]BREACH[/] {escape(f'{b.check} {b.target}: {b.detail}')}")
    summary = "ok: no breach" if result.ok else f"{len(result.breaches)} breach(es)"
    out.print(summary + (f", {len(result.errors)} error(s)" if result.errors else ""))


@monitor.command("skew")
@click.argument("model")
@_window_options("1d")
@click.option("--examples", default=5, show_default=True, help="Example mismatches per feature (--json).")
@_JSON
@click.pass_context
@_errors
def skew_command(
    ctx: click.Context,
    model: str,
    since: str | None,
    start: str | None,
    end: str | None,
    examples: int,
    as_json: bool,
) -> None:
    """Replay what MODEL (name@alias) served against a point-in-time recomputation of each served
    vector: per feature, the share that matched, differed or was missing, and the likely cause.
    An audit: it exits 0 whatever it finds (mismatches are findings, not failures)."""
    from rich.table import Table

    lo, hi = window_of(since, start, end)
    report = _store(ctx).monitor.skew(model, start=lo, end=hi, examples=examples)
    if as_json:
        _print_json(report.to_dict())
        return
    table = Table(title=_plain(f"Skew of {report.model} v{report.version}: {report.rows:,} logged rows"))
    columns = ("feature", "match rate", "differed", "missing online", "missing offline", "max |diff|")
    for col in (*columns, "not recomputable", "top cause"):
        table.add_column(col)
    for f in report.features.values():
        _add_row(
            table,
            f.name,
            f"{f.match_rate:.2%}" if f.match_rate is not None else "-",
            f"{f.differed:,}",
            f"{f.missing_online:,}",
            f"{f.missing_offline:,}",
            f"{f.max_abs_diff:.6g}" if f.max_abs_diff is not None else "-",
            f"{f.not_recomputable:,}",
            f.top_cause or "-",
        )
    out = _console()
    out.print(table)
    for f in report.features.values():
        if f.note:
            out.print(_plain(f"{f.name}: {f.note}"))


@monitor.command("shadow")
@click.argument("model")
@_window_options(None)
@click.option(
    "--challenger", type=int, default=None, metavar="VERSION", help="Default: the challenger alias."
)
@_JSON
@click.pass_context
@_errors
def shadow_command(
    ctx: click.Context,
    model: str,
    since: str | None,
    start: str | None,
    end: str | None,
    challenger: int | None,
    as_json: bool,
) -> None:
    """Compare what MODEL's production version answered with its challenger's shadow predictions on
    the same requests and rows: agreement, and the live metric of both where labels were fed back.
    A comparison: it exits 0 whatever it finds, 2 on an error (e.g. no challenger alias)."""
    lo, hi = window_of(since, start, end)
    report = _store(ctx).monitor.shadow(model, start=lo, end=hi, challenger=challenger)
    if as_json:
        _print_json(report.to_dict())
    else:
        _console().print(report.table())


def _worst_psi(report: Any) -> str:
    """ "worst: conv_rate psi 0.31" of a DriftReport ("" when nothing was compared)."""
    columns = {**report.features, **({"prediction": report.prediction} if report.prediction else {})}
    scored = [(f.psi, name) for name, f in columns.items() if f.psi is not None]
    return f"worst: {max(scored)[1]} psi {max(scored)[0]:.3g}" if scored else ""
