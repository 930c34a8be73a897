"""When a pipeline runs: `--when drift|performance` asks the model's monitoring first, and
`fs monitor check --retrain` runs the pipelines of the models whose checks failed.

    fired = evaluate(store, pipeline, "drift", since=timedelta(days=1))
    fired.breach, fired.reasons        # False, ["trip_completion@production (v3): drift ok over ..."]

A trigger looks at the version the pipeline's alias points at now, over [now - since, now], with
the same reports `fs monitor check` uses (drift status "drift", a live metric worse than
validation beyond its tolerance). No breach, no version at the alias, or a check that cannot run:
the run is recorded as skipped, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from ..errors import FeatureStoreError, PipelineError

if TYPE_CHECKING:
    from ..monitoring.checks import CheckResult
    from ..store import FeatureStore
    from .definition import TrainingPipeline

WHEN = ("always", "drift", "performance")


@dataclass(frozen=True)
class Trigger:
    """Whether the pipeline should run, and why (one sentence each)."""

    breach: bool
    reasons: list[str] = field(default_factory=list)


def check_when(when: str) -> str:
    """`when` if it is one of WHEN, else PipelineError naming the choices."""
    if when not in WHEN:
        raise PipelineError(f"when must be one of {list(WHEN)}, got {when!r}")
    return when


def evaluate(
    store: FeatureStore, pipeline: TrainingPipeline, when: str, since: timedelta, now: datetime | None = None
) -> Trigger:
    """Ask monitoring whether `pipeline`'s model breaches `when` ("drift" or "performance")."""
    check_when(when)
    if when == "always":
        return Trigger(True, ["--when always"])
    if isinstance(since, bool) or not isinstance(since, timedelta) or since <= timedelta(0):
        raise PipelineError(f"since must be a positive timedelta, got {since!r}")
    ref = f"{pipeline.model}@{pipeline.alias}"
    aliases = store.registry.backend.model_aliases(pipeline.model)
    version = aliases.get((pipeline.model, pipeline.alias))
    if version is None:
        return Trigger(
            False, [f"no version of model '{pipeline.model}' at alias '{pipeline.alias}' to monitor"]
        )
    now = now or datetime.now(timezone.utc)
    start = now - since
    where = f"{ref} (v{version})"
    try:
        if when == "drift":
            drift = store.monitor.drift(ref, start=start, end=now)
            found = drift.status == "drift"
            return Trigger(found, [f"{where}: drift {drift.status} since {start.isoformat()}"])
        live = store.monitor.performance(ref, start=start, end=now)
        detail = f": {live.detail}" if live.detail else ""
        return Trigger(live.breach, [f"{where}: performance {live.status} since {start.isoformat()}{detail}"])
    except FeatureStoreError as e:
        return Trigger(False, [f"{where}: {when} not checked: {e}"])


def breaches(store: FeatureStore, result: CheckResult) -> tuple[list[tuple[str, str]], list[str]]:
    """What `fs monitor check --retrain` runs: ([(model, trigger)] of the applied pipelines whose
    `model@alias` breaches drift or performance in `result`, notes on breaching models without one)."""
    pipelines = store.catalog.pipelines
    runs: list[tuple[str, str]] = []
    for model, pipeline in sorted(pipelines.items()):
        key = f"{model}@{pipeline.alias}"
        drift: Any = result.drift.get(key)
        perf: Any = result.performance.get(key)
        if drift is not None and drift.breach:
            runs.append((model, "monitor: drift"))
        elif perf is not None and perf.breach:
            runs.append((model, "monitor: performance"))
    notes = []
    for key in sorted({*result.drift, *result.performance}):
        model = key.partition("@")[0]
        reports: list[Any] = [result.drift.get(key), result.performance.get(key)]
        breached = any(report is not None and report.breach for report in reports)
        if breached and model not in pipelines:
            notes.append(
                f"{key} breaches its checks but model '{model}' has no training pipeline to retrain it"
            )
    return runs, notes
