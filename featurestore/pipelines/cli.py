"""`fs retrain` and `fs runs`: training pipelines from a shell. Parsing and printing only; the work is
`featurestore.pipelines`'.

    fs retrain trip_completion [--when always|drift|performance] [--start T] [--end T] [--since 1d] [--json]
    fs runs [MODEL] [--limit 20] [--json]
    fs runs show 12 [--json]

`fs retrain` exits 0 on any decision (promoted, pending approval, rejected, skipped) and 1 when the
run failed or could not start. Names and values from the data are printed as plain text, never
read as rich markup.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ..console import console as _console
from ..console import handle_errors
from ..console import open_store as _store
from ..console import print_json as _print_json
from ..errors import FeatureStoreError

if TYPE_CHECKING:
    from ..monitoring.checks import CheckResult
    from ..store import FeatureStore
    from . import PipelineRun

_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts) instead of text.")


@click.command()
@click.argument("model")
@click.option(
    "--when",
    type=click.Choice(["always", "drift", "performance"]),
    default="always",
    show_default=True,
    help="Run only when the model's monitoring breaches (else a skipped run is recorded).",
)
@click.option("--start", default=None, metavar="TIME", help="Spine rows from this time (inclusive).")
@click.option("--end", default=None, metavar="TIME", help="Spine rows up to this time (inclusive).")
@click.option(
    "--since", default="1d", metavar="DURATION", help="What --when drift|performance reads (default: 1d)."
)
@_JSON
@click.pass_context
@handle_errors
def retrain(
    ctx: click.Context, model: str, when: str, start: str | None, end: str | None, since: str, as_json: bool
) -> None:
    """Run MODEL's training pipeline: build the training set, train, validate against the current
    champion on the same rows, and promote the candidate only if it passes the policy. A killed run
    is resumed. Exits 0 on any decision, 1 when the run failed."""
    from ..monitoring.cli import since_of

    span = since_of(since)
    store = _store(ctx)
    try:
        run = store.pipelines.run(model, when=when, start=start, end=end, since=span)
    except FeatureStoreError as e:
        failed = _failed_run(store, e)
        if failed is None:
            raise  # no run was recorded (refused, the lock held, ...): handle_errors prints the error
        _show(failed, as_json)
        ctx.exit(1)
    _show(run, as_json)


def _failed_run(store: FeatureStore, e: FeatureStoreError) -> PipelineRun | None:
    """The run that error `e` failed, when it names one (never an older failed run of the model)."""
    from .runner import failed_run_id

    run_id = failed_run_id(e)
    if run_id is None:
        return None
    try:
        return store.pipelines.get_run(run_id)
    except FeatureStoreError:
        return None


def _show(run: PipelineRun, as_json: bool) -> None:
    if as_json:
        _print_json(run.to_dict())
    else:
        print_decision(run)


def _metrics_line(metrics: dict[str, Any] | None, order: list[str]) -> str:
    if not metrics:
        return "-"
    names = [*order, *(k for k in sorted(metrics) if k not in order)]
    return "  ".join(f"{n} {_num(metrics.get(n))}" for n in names if n in metrics)


def _version(number: Any, none: str) -> str:
    return none if number is None else f"v{number}"


def _num(value: Any) -> str:
    return "n/a" if not isinstance(value, (int, float)) else f"{value:.4g}"


def print_decision(run: PipelineRun) -> None:
    """The decision in one readable block: candidate vs champion, reasons, what moved."""
    lines = [run.summary()]
    r = run.to_dict()
    policy = r.get("policy") or {}
    order = [policy.get("metric", ""), *(policy.get("guards") or {})]
    cand, champ = r.get("candidate") or {}, r.get("champion") or {}
    if cand:
        lines.append(f"  candidate  v{cand.get('version')}: {_metrics_line(cand.get('metrics'), order)}")
    if r.get("champion") is not None:
        if champ.get("version") is None:
            lines.append(f"  champion   none ({run.model}@{r.get('alias')} was not set)")
        else:
            lines.append(
                f"  champion   v{champ.get('version')}: {_metrics_line(champ.get('metrics'), order)}"
            )
    if run.decision == "promoted":
        lines.append(
            f"  moved      {run.model}@{r.get('alias')}: {_version(champ.get('version'), 'nothing')} -> "
            f"{_version(cand.get('version'), 'nothing')}"
        )
    elif run.decision in ("rejected", "pending_approval"):
        lines.append(
            f"  moved      nothing ({run.model}@{r.get('alias')} stays {_version(champ.get('version'), 'unset')})"
        )
    if run.status not in ("skipped", "abandoned"):  # their summary holds the reasons
        lines += [f"  - {reason}" for reason in run.reasons]
    if r.get("error"):
        lines.append(f"  error: {r['error']}")
    spine = r.get("spine_range") or {}
    if r.get("training_set"):
        lines.append(
            f"  training set {r['training_set']} ({str(r.get('training_fingerprint'))[:12]}): "
            f"{spine.get('train_rows')} training / {spine.get('valid_rows')} validation rows, split at "
            f"{spine.get('split_at')}"
        )
    if run.duration_seconds is not None:
        lines.append(f"  took {run.duration_seconds:.1f}s (attempt {run.attempts}) by {run.actor}")
    out = _console()
    for line in lines:
        out.print(line, markup=False)


@click.command()
@click.argument("model", required=False)
@click.argument("run_id", required=False, type=int)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1), help="How many runs.")
@_JSON
@click.pass_context
@handle_errors
def runs(ctx: click.Context, model: str | None, run_id: int | None, limit: int, as_json: bool) -> None:
    """The recorded pipeline runs, newest first: `fs runs [MODEL]`; one run in full: `fs runs show ID`."""
    store = _store(ctx)
    if model == "show":
        if run_id is None:
            raise click.UsageError("fs runs show needs a run id: fs runs show 12")
        run = store.pipelines.get_run(run_id)
        if as_json:
            _print_json(run.to_dict())
        else:
            _print_record(run)
        return
    if run_id is not None:
        raise click.UsageError(f"unexpected argument {run_id}: fs runs [MODEL] or fs runs show ID")
    found = store.pipelines.runs(model, limit=limit)
    if as_json:
        _print_json([r.to_dict() for r in found])
        return
    _print_runs(found)


def _print_runs(found: list[PipelineRun]) -> None:
    from rich.table import Table

    table = Table(title="Pipeline runs")
    headers = ("id", "model", "trigger", "status", "decision", "candidate", "champion", "metric", "started")
    for header in (*headers, "duration", "by"):
        table.add_column(header, justify="right" if header in ("id", "duration") else "left")
    for run in found:
        cand, champ = run.metric_pair()
        metric = (run.record.get("policy") or {}).get("metric", "")
        table.add_row(
            *(
                _plain(cell)
                for cell in (
                    str(run.id),
                    run.model,
                    run.trigger,
                    run.status,
                    run.decision or "-",
                    f"v{run.candidate_version}" if run.candidate_version is not None else "-",
                    f"v{run.champion_version}" if run.champion_version is not None else "-",
                    f"{metric} {_num(cand)} vs {_num(champ)}" if cand is not None else "-",
                    run.started_at[:19],
                    f"{run.duration_seconds:.1f}s" if run.duration_seconds is not None else "-",
                    run.actor,
                )
            )
        )
    out = _console()
    out.print(table)
    if not found:
        out.print("no pipeline run recorded yet: fs retrain MODEL", markup=False)


def _plain(text: str) -> Any:
    from rich.text import Text

    return Text(text)


def _print_record(run: PipelineRun) -> None:
    """Every key of the record, nested values indented."""
    import json

    out = _console()
    print_decision(run)
    out.print("", markup=False)
    for key, value in run.to_dict().items():
        if isinstance(value, (dict, list)):
            text = json.dumps(value, indent=2, sort_keys=True, default=str).replace("\n", "\n  ")
            out.print(f"{key}: {text}", markup=False)
        else:
            out.print(f"{key}: {value}", markup=False)


# -- fs monitor check --retrain ---------------------------------------------------------------------


def retrain_breached(
    store: FeatureStore, result: CheckResult
) -> tuple[list[dict[str, Any]], list[str], bool]:
    """Run the pipelines of the models whose check breached (`featurestore.pipelines.triggers.breaches`):
    ([{model, trigger, run | error}], notes, whether a retrain failed)."""
    from .triggers import breaches

    todo, notes = breaches(store, result)
    outcomes: list[dict[str, Any]] = []
    failed = False
    for model, trigger in todo:
        try:
            run = store.pipelines.run(model, trigger=trigger)
            outcomes.append(
                {"model": model, "trigger": trigger, "run": run.to_dict(), "summary": run.summary()}
            )
        except FeatureStoreError as e:
            failed = True
            run_failed = _failed_run(store, e)
            outcomes.append(
                {
                    "model": model,
                    "trigger": trigger,
                    "run": run_failed.to_dict() if run_failed else None,
                    "error": str(e),
                    "summary": run_failed.summary() if run_failed else f"{model}: retrain not started: {e}",
                }
            )
    return outcomes, notes, failed


def print_retrains(store: FeatureStore, outcomes: list[dict[str, Any]], notes: list[str]) -> None:
    """What `fs monitor check --retrain` prints after the check: each decision, then the notes."""
    from . import PipelineRun

    out = _console()
    if not outcomes and not notes:
        out.print("retrain: no breach of a model with a training pipeline: nothing to run", markup=False)
    for outcome in outcomes:
        out.print(f"retrain {outcome['model']} ({outcome['trigger']}):", markup=False)
        if outcome.get("run"):
            print_decision(PipelineRun.from_dict(outcome["run"]))
        else:
            out.print(f"  error: {outcome.get('error')}", markup=False)
    for note in notes:
        out.print(f"note: {note}", markup=False)
