"""Training pipelines (SPEC §13): retrain a model from fresh features, validate it against the
version it would replace, and promote it only through the policy; every run recorded.

    run = store.pipelines.run("trip_completion")                 # `fs retrain trip_completion`
    run.decision, run.reasons                                     # "promoted", ["accuracy 0.91 vs ..."]
    store.pipelines.run("trip_completion", when="drift")          # only when monitoring sees drift
    store.pipelines.runs("trip_completion")                       # newest first (`fs runs`)
    store.pipelines.add_hook(lambda run, step: print(run.id, step))

`Pipelines` is the facade; each idea has its module: `definition` (`@training_pipeline`), `code`
(binding and loading its functions), `runner` (the durable steps and resuming), `policy` (the
promotion decision), `scoring` (metrics on validation rows), `triggers` (`--when`, `fs monitor
check --retrain`), `lock` (one run per model), `cli` (`fs retrain`, `fs runs`). Imported with
`featurestore`, so this module imports nothing heavy until a run starts.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..store import FeatureStore
    from .definition import TrainingPipeline

__all__ = ["PipelineRun", "Pipelines", "RunHook"]


@dataclass(frozen=True)
class PipelineRun:
    """One recorded run of a training pipeline (a read-only view of the registry's run record; the
    keys are listed in docs/pipelines.md). `run["key"]` / `run.get("key")` reach every record key."""

    id: int
    model: str
    status: str  # running | succeeded | failed | skipped | abandoned
    decision: str | None  # promoted | pending_approval | approved | rejected | declined | skipped | None
    step: str
    started_at: str
    updated_at: str
    record: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, run: Mapping[str, Any]) -> PipelineRun:
        """A run as the registry returns it (its columns and record keys)."""
        from ..registry_store import RUN_COLUMNS

        return cls(
            id=int(run["id"]),
            model=run["model"],
            status=run["status"],
            decision=run.get("decision"),
            step=run["step"],
            started_at=run["started_at"],
            updated_at=run["updated_at"],
            record={k: v for k, v in run.items() if k not in RUN_COLUMNS},
        )

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def get(self, key: str, default: Any = None) -> Any:
        """One field of the run (a column or a record key), like dict.get."""
        return self.to_dict().get(key, default)

    @property
    def trigger(self) -> str:
        """Why the run ran: "manual", "monitor: drift", "when: performance", ..."""
        return str(self.record.get("trigger") or "")

    @property
    def actor(self) -> str:
        """Who ran it."""
        return str(self.record.get("actor") or "")

    @property
    def reasons(self) -> list[str]:
        """Why the decision was what it was, one sentence per check."""
        return list(self.record.get("reasons") or [])

    @property
    def error(self) -> str | None:
        """What failed the run, or None."""
        return self.record.get("error")

    @property
    def attempts(self) -> int:
        """1, plus one per resume after a kill."""
        return int(self.record.get("attempts") or 1)

    @property
    def candidate_version(self) -> int | None:
        """The version the run registered, or None (not yet, or skipped)."""
        return (self.record.get("candidate") or {}).get("version")

    @property
    def champion_version(self) -> int | None:
        """The version it was compared with (the alias's then), or None."""
        return (self.record.get("champion") or {}).get("version")

    @property
    def duration_seconds(self) -> float | None:
        """From start to finish across attempts, or None while running."""
        return self.record.get("duration_seconds")

    def metric_pair(self) -> tuple[float | None, float | None]:
        """(candidate, champion) values of the policy's metric (None where not computed)."""
        metric = (self.record.get("policy") or {}).get("metric")
        cand = (self.record.get("candidate") or {}).get("metrics") or {}
        champ = (self.record.get("champion") or {}).get("metrics") or {}
        return cand.get(metric), champ.get(metric)

    def to_dict(self) -> dict[str, Any]:
        """The run as the registry records it: the columns, then the record's keys."""
        return {
            "id": self.id,
            "model": self.model,
            "status": self.status,
            "decision": self.decision,
            "step": self.step,
            "started_at": self.started_at,
            "updated_at": self.updated_at,
            **self.record,
        }

    def summary(self) -> str:
        """One sentence: what the run did, e.g. "run 4 of trip_completion (manual): promoted v5 to
        production (accuracy 0.91 vs 0.88 of v4)"."""
        head = f"run {self.id} of {self.model} ({self.trigger or 'manual'})"
        alias = self.record.get("alias") or "production"
        metric = (self.record.get("policy") or {}).get("metric", "metric")
        cand, champ = self.metric_pair()
        cv, hv = self.candidate_version, self.champion_version
        versus = ""
        if cand is not None:
            versus = f" ({metric} {cand:.4g}" + (
                f" vs {champ:.4g} of v{hv})" if champ is not None and hv is not None else ")"
            )
        if self.status == "failed":
            return f"{head}: failed at step {self.step}: {self.error}"
        if self.status == "skipped":
            why = "; ".join(self.reasons) or "no breach"
            return f"{head}: skipped: {why}"
        if self.status == "abandoned":
            return f"{head}: abandoned: {'; '.join(self.reasons)}"
        if self.status == "running":
            return f"{head}: running (at step {self.step}, attempt {self.attempts})"
        if self.decision == "promoted":
            return f"{head}: promoted v{cv} to {alias}{versus}"
        if self.decision == "pending_approval":
            return f"{head}: v{cv} passed and waits for approval to become {alias}{versus}"
        if self.decision == "approved":
            return f"{head}: v{cv} approved as {alias}{versus}"
        if self.decision == "declined":
            return f"{head}: v{cv} declined by an approver{versus}"
        kept = f"; {alias} stays v{hv}" if hv is not None else ""
        failed = [r for r in self.reasons if r.startswith("failed: ")]
        why = f": {failed[0][len('failed: ') :]}" if failed else ""
        return f"{head}: rejected v{cv}{versus}{kept}{why}"


#: `fn(run, step)`, called after every durable step of every run of this store's pipelines
RunHook = Callable[[PipelineRun, str], None]


class Pipelines:
    """The training pipelines of one store and their runs; get it as `store.pipelines`."""

    def __init__(self, store: FeatureStore):
        self.store = store
        self._hooks: list[RunHook] = []
        self._lock = threading.Lock()

    # -- definitions ----------------------------------------------------------------------------------

    def names(self) -> list[str]:
        """The models with an applied training pipeline, sorted."""
        return sorted(self.store.catalog.pipelines)

    def get(self, model: str) -> TrainingPipeline:
        """The applied training pipeline of model `model` (UnknownNameError with a suggestion)."""
        return self.store.catalog.pipeline(model)

    # -- hooks ------------------------------------------------------------------------------------------

    def add_hook(self, fn: RunHook) -> None:
        """Call `fn(run, step)` after every durable step of a run (a notification seam: a hook that
        raises is warned about, and the run goes on)."""
        with self._lock:
            self._hooks.append(fn)

    def remove_hook(self, fn: RunHook) -> None:
        """Stop calling `fn` (added with `add_hook`); unknown hooks are ignored."""
        with self._lock:
            if fn in self._hooks:
                self._hooks.remove(fn)

    def _tell(self, run: dict[str, Any], step: str) -> None:
        with self._lock:
            hooks = list(self._hooks)
        view = PipelineRun.from_dict(run)
        for hook in hooks:
            try:
                hook(view, step)
            except Exception as e:  # noqa: BLE001 - a notification must not break the run it reports
                warnings.warn(f"pipeline run hook {hook!r} raised at step {step!r}: {e}", stacklevel=2)

    # -- running --------------------------------------------------------------------------------------

    def run(
        self,
        model: str,
        when: str = "always",
        start: Any = None,
        end: Any = None,
        since: timedelta = timedelta(days=1),
        trigger: str | None = None,
        actor: str | None = None,
        role: str | None = None,
    ) -> PipelineRun:
        """Run model `model`'s pipeline (or resume its killed run) and return the finished run.

        `when`: "always", or "drift" / "performance": run only when monitoring of `model@alias` over
        the last `since` breaches, else record a skipped run. `start` / `end`: the spine rows' range
        (inclusive; default: all). `trigger`: why, as recorded (default "manual" / "when: drift").
        `actor` / `role`: who (the server's API key); None: the CLI / Python user. A failed run is
        recorded and raises (PipelineError, or the FeatureStoreError that failed it), the error
        carrying the run's id (`featurestore.pipelines.runner.failed_run_id(e)`); an error without
        one came before any run was recorded (a bad range, permission denied, the lock held)."""
        from ..registry import current_user
        from .lock import ModelLock
        from .runner import Runner, check_range
        from .triggers import check_when, evaluate

        check_when(when)
        check_range(start, end)
        self.store.governance.check("run_pipeline", f"model:{model}", role=role, actor=actor)
        pipeline = self.get(model)
        who = actor or current_user()
        why = trigger or ("manual" if when == "always" else f"when: {when}")
        runner = Runner(self.store, pipeline, who, self._tell, role=role)
        folder = self.store.config.registry_path.parent / "pipelines"
        shared = self.store.registry.backend.exclusive_lock
        with ModelLock(folder, pipeline.model, busy=lambda: self._busy(pipeline.model), shared=shared):
            run = runner.interrupted()
            if run is None:
                if when != "always":
                    fired = evaluate(self.store, pipeline, when, since)
                    if not fired.breach:
                        return PipelineRun.from_dict(runner.skipped(why, when, start, end, fired.reasons))
                run = runner.start(why, when, start, end)
            return PipelineRun.from_dict(runner.execute(run))

    def _busy(self, model: str) -> str:
        running = self.store.registry.backend.pipeline_runs(model, status="running", limit=1)
        if not running:
            return "another process holds it (its run is not recorded yet)"
        run = running[0]
        return f"run {run['id']} (started {run['started_at']} by {run.get('actor') or '?'}, at step {run['step']})"

    # -- records --------------------------------------------------------------------------------------

    def runs(self, model: str | None = None, limit: int = 100) -> list[PipelineRun]:
        """The newest `limit` runs (of `model`), newest first. A model with neither a pipeline nor a
        recorded run: UnknownNameError with a suggestion (a typo, not an empty history)."""
        found = self.store.registry.backend.pipeline_runs(model, limit=limit)
        if model is not None and not found and model not in self.store.catalog.pipelines:
            from ..errors import UnknownNameError, did_you_mean

            known = {
                *self.store.catalog.pipelines,
                *(r["model"] for r in self.store.registry.backend.pipeline_runs(limit=1000)),
            }
            raise UnknownNameError(
                f"model '{model}' has no training pipeline and no recorded run{did_you_mean(model, known)}"
            )
        return [PipelineRun.from_dict(r) for r in found]

    def get_run(self, run_id: int) -> PipelineRun:
        """One run by its id (UnknownNameError when there is none)."""
        from ..errors import UnknownNameError

        found = self.store.registry.backend.pipeline_run(int(run_id))
        if found is None:
            newest = self.store.registry.backend.pipeline_runs(limit=1)
            hint = f" (the newest is run {newest[0]['id']})" if newest else " (no run is recorded yet)"
            raise UnknownNameError(f"there is no pipeline run {run_id}{hint}")
        return PipelineRun.from_dict(found)
