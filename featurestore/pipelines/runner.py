"""One run of a training pipeline, in durable steps that a killed run resumes from.

    started -> training_set -> registered -> decided -> promoted | pending | rejected -> finished

Each step is one `commit_run_step` of the registry that expects the step before it, so a step is
recorded once or not at all. A run killed anywhere is left "running"; the next run of the model
(holding the model's lock, so the killed process is gone) resumes it from its last step:

- `training_set`: the saved training set is read back, never rebuilt (the same rows, the same split);
- `registered`: a model version tagged `pipeline_run=<id>` is the candidate: it is never registered twice
  (a run killed between `register` and recording the step finds its version by that tag);
- `decided`: the champion's metrics and the decision are recorded before the alias is touched; the
  move is one transaction with the step "promoted", guarded by the champion version the decision saw,
  so the alias moves once, and not at all when someone moved it meanwhile.

What each step computes lives elsewhere: the decision in `policy`, the metrics in `scoring`; this
module orders the steps and keeps their records.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..errors import FeatureStoreError, PipelineError
from ..registry import utcnow

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from ..models.registry import ModelVersion
    from ..store import FeatureStore
    from .definition import EvaluateFunction, TrainFunction, TrainingPipeline

#: called after every durable step with the run (a dict) and the step's name
StepListener = Callable[[dict[str, Any], str], None]

#: scorers that need both classes among the validation labels
_TWO_CLASSES = ("roc_auc", "average_precision", "neg_log_loss")
TIMESTAMP = "event_timestamp"


@dataclass
class RunData:
    """The training set of a run, ordered by time and split into training and validation rows."""

    table: pa.Table
    entity_columns: list[str]
    feature_columns: list[str]
    train: pa.Table
    valid: pa.Table
    split_at: datetime
    label: str
    _frames: dict[str, pd.DataFrame] | None = None

    def frame(self, which: str) -> pd.DataFrame:
        """ "train" or "valid" as a pandas DataFrame, `attrs` naming the features and the label."""
        if self._frames is None:
            self._frames = {}
        if which not in self._frames:
            self._frames[which] = to_frame(getattr(self, which), self.entity_columns, self.label)
        return self._frames[which]

    def labels(self, table: pa.Table) -> Any:
        """The label column of `table` as numpy."""
        return table.column(self.label).to_numpy(zero_copy_only=False)


def to_frame(table: pa.Table, entity_columns: list[str], label: str) -> pd.DataFrame:
    """A training set table as pandas, as `RetrievalJob.to_pandas` gives it (nullable integer and
    boolean features), with `attrs["features"]` (the feature columns) and `attrs["label"]`."""
    import pandas as pd

    from ..offline.retrieval import nullable_pandas_dtype

    entity_set = set(entity_columns)
    features = [c for c in table.column_names if c not in entity_set]
    entity = table.select([c for c in table.column_names if c in entity_set]).to_pandas()
    feats = table.select(features).replace_schema_metadata(None).to_pandas(types_mapper=nullable_pandas_dtype)
    feats.index = entity.index
    frame: pd.DataFrame = pd.concat([entity, feats], axis=1)[table.column_names]
    frame.attrs["features"] = features
    frame.attrs["label"] = label
    return frame


def split(
    table: pa.Table, entity_columns: list[str], label: str, share: float, metrics: list[str]
) -> RunData:
    """Order the rows by time and validate on about the newest `share`; rows with one timestamp stay
    on one side (the boundary is a time: validation is every row at or after `split_at`, the group
    edge nearest `share`: `cut_index`). Rows without a label are left out. Too few rows on a side:
    PipelineError naming the counts."""
    import pyarrow.compute as pc

    from ..offline.retrieval import event_times

    if label not in table.column_names:
        raise PipelineError(f"the training set has no label column '{label}' (columns: {table.column_names})")
    table = table.filter(pc.is_valid(table.column(label)))
    if table.num_rows == 0:
        raise PipelineError(f"the spine gave no rows with a label '{label}' in the run's range")
    times = event_times(table.column(TIMESTAMP))
    order = pc.sort_indices(times)  # stable: rows at one time keep the spine's order
    table, times = table.take(order), times.take(order)
    split_at = times[cut_index(times, share)].as_py()
    is_valid = pc.greater_equal(times, pa_scalar(split_at, times.type))
    train, valid = table.filter(pc.invert(is_valid)), table.filter(is_valid)
    where = f"split at {split_at.isoformat()}: {train.num_rows} training and {valid.num_rows} validation rows"
    if train.num_rows < 2 or valid.num_rows < 2:
        raise PipelineError(
            f"too few spine rows to train and validate ({where}; at least 2 each are needed): widen the "
            "run's --start/--end or the pipeline's lookback, or the spine has too few distinct times"
        )
    train_classes = pc.count_distinct(train.column(label)).as_py()
    if train_classes < 2:
        raise PipelineError(f"every training row has the same label '{label}' ({where}): nothing to learn")
    two = [m for m in metrics if m.startswith(_TWO_CLASSES)]
    if two and pc.count_distinct(valid.column(label)).as_py() < 2:
        raise PipelineError(
            f"every validation row has the same label '{label}' ({where}), and {two} need two classes"
        )
    features = [c for c in table.column_names if c not in set(entity_columns)]
    return RunData(table, list(entity_columns), features, train, valid, split_at, label)


def cut_index(times: Any, share: float) -> int:
    """The first validation row of `times` (sorted, an Arrow array): the edge of the group of rows at
    the timestamp where the newest `share` begins that leaves a validation share nearest `share`. An
    edge that would leave a side empty gives way to the other one; with one timestamp only, 0 (every
    row validates, and `split` refuses it)."""
    import pyarrow.compute as pc

    n = len(times)
    target = n * (1 - share)  # the ideal first validation row, between two rows or on one
    at = times[min(n - 1, max(0, math.floor(target)))]
    lower = pc.sum(pc.less(times, at)).as_py() or 0  # the group's first row
    upper = pc.sum(pc.less_equal(times, at)).as_py() or 0  # the row after its last
    edges = [edge for edge in (lower, upper) if 0 < edge < n]  # both sides non-empty
    if not edges:
        return 0
    return min(edges, key=lambda edge: (abs((n - edge) / n - share), edge))


def pa_scalar(value: Any, type_: Any) -> Any:
    """`value` as an Arrow scalar of `type_` (pyarrow imported lazily)."""
    import pyarrow as pa

    return pa.scalar(value, type=type_)


def _iso(value: Any, what: str) -> str | None:
    from ..offline.spine import spine_time

    parsed = spine_time(value, what)
    return None if parsed is None else parsed.isoformat()


def check_range(start: Any, end: Any) -> None:
    """Refuse a spine range whose `start` is after its `end` (PipelineError naming both), before
    any run is recorded."""
    from ..offline.spine import spine_time

    begin, until = spine_time(start, "start"), spine_time(end, "end")
    if begin is not None and until is not None and begin > until:
        raise PipelineError(
            f"start {begin.isoformat()} is after end {until.isoformat()}: the spine range would be empty; "
            "swap --start and --end"
        )


def error_text(e: BaseException) -> str:
    """The error as a run records it: our messages as they are, others with their class name."""
    return str(e) if isinstance(e, FeatureStoreError) else f"{type(e).__name__}: {e}"


_RUN_ID = "run_id"


def _with_run_id(e: FeatureStoreError, run_id: int) -> FeatureStoreError:
    setattr(e, _RUN_ID, int(run_id))
    return e


def failed_run_id(e: BaseException) -> int | None:
    """The id of the run that error `e` failed (a run's error keeps its type and carries `run_id`),
    or None: `e` came before a run was recorded (permission denied, the model's lock held, a bad
    range), or from elsewhere."""
    run_id = getattr(e, _RUN_ID, None)
    return run_id if isinstance(run_id, int) and not isinstance(run_id, bool) else None


class Runner:
    """Runs (or resumes) runs of one model's applied pipeline; `on_step` hears every durable step."""

    def __init__(
        self,
        store: FeatureStore,
        pipeline: TrainingPipeline,
        actor: str,
        on_step: StepListener,
        role: str | None = None,
    ):
        self.store = store
        self.pipeline = pipeline
        self.actor = actor
        self.role = role  # a server request's role, for the registration's governance check
        self.on_step = on_step
        self.backend = store.registry.backend
        self._data: RunData | None = None
        self._functions: tuple[TrainFunction, EvaluateFunction | None] | None = None

    # -- starting, resuming, skipping ---------------------------------------------------------------

    def record(self, trigger: str, when: str, start: Any, end: Any) -> dict[str, Any]:
        """What a new run records before its first step: who, why, the inputs, the code, the policy."""
        p = self.pipeline
        return {
            "actor": self.actor,
            "trigger": trigger,
            "when": when,
            "alias": p.alias,
            "approval": p.approval,
            "pipeline": {
                "module": p.module,
                "function": p.function,
                "sha256": p.sha256,
                "version": self.store.registry.versions().get(("training_pipeline", p.model)),
            },
            "inputs": {
                "features": p.features,
                "spine": p.spine,
                "label": p.label,
                "start": _iso(start, "start"),
                "end": _iso(end, "end"),
                "lookback_seconds": None if p.lookback is None else p.lookback.total_seconds(),
                "split": p.split,
            },
            "params": dict(p.params),
            "policy": p.policy,
            "spine_range": None,
            "training_set": None,
            "training_fingerprint": None,
            "candidate": None,
            "champion": None,
            "reasons": [],
            "error": None,
            "finished_at": None,
            "duration_seconds": None,
            "attempts": 1,
        }

    def start(self, trigger: str, when: str, start: Any, end: Any) -> dict[str, Any]:
        """Record a new run (step "started") and tell the hooks."""
        run = self.backend.add_pipeline_run(
            self.pipeline.model, self.record(trigger, when, start, end), self.actor
        )
        self._tell(run, run["step"])
        return run

    def skipped(self, trigger: str, when: str, start: Any, end: Any, reasons: list[str]) -> dict[str, Any]:
        """Record a run that did not run: `when` found no breach."""
        record = self.record(trigger, when, start, end)
        record.update(
            status="skipped",
            decision="skipped",
            step="finished",
            reasons=list(reasons),
            finished_at=utcnow().isoformat(),
            duration_seconds=0.0,
        )
        run = self.backend.add_pipeline_run(self.pipeline.model, record, self.actor)
        self._tell(run, run["step"])
        return run

    def interrupted(self) -> dict[str, Any] | None:
        """The model's killed run to resume, or None. Called holding the model's lock: a "running" run
        belongs to a process that is gone. One whose pipeline code changed since, and that registered
        nothing yet, is marked "abandoned" (a new run starts instead); older extra ones too."""
        running = self.backend.pipeline_runs(self.pipeline.model, status="running", limit=1000)
        resume = None
        for run in running:  # newest first
            changed = (run.get("pipeline") or {}).get("sha256") != self.pipeline.sha256
            if resume is not None:
                self._abandon(run, f"run {resume['id']} of the same model was resumed instead")
            elif changed and not self._registered_anything(run):
                self._abandon(
                    run,
                    "killed before it registered a candidate, and the pipeline's code has changed since: "
                    "a new run starts with the applied code",
                )
            else:
                resume = run
        if resume is None:
            return None
        attempts = int(resume.get("attempts") or 1) + 1
        return self._commit(
            resume, {"attempts": attempts, "resumed_at": utcnow().isoformat()}, event="resumed"
        )

    def _registered_anything(self, run: dict[str, Any]) -> bool:
        try:
            return self._own_version(run) is not None
        except PipelineError:  # only versions someone else tagged with it: the run registered nothing
            return False

    def _abandon(self, run: dict[str, Any], why: str) -> None:
        done = self.backend.commit_run_step(
            run["id"],
            {
                "status": "abandoned",
                "finished_at": utcnow().isoformat(),
                "reasons": [*run.get("reasons", []), why],
            },
            expect={"status": "running"},
        )
        if done.committed:
            self._tell(done.run, "abandoned")

    # -- the steps ------------------------------------------------------------------------------------

    def execute(self, run: dict[str, Any]) -> dict[str, Any]:
        """Run the steps from `run`'s current one to "finished"; an exception marks the run failed
        (and propagates), KeyboardInterrupt / SystemExit leave it running, to be resumed."""
        steps: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "started": self._build_training_set,
            "training_set": self._register,
            "registered": self._decide,
            "decided": self._act,
            "promoted": self._finish,
            "pending": self._finish,
            "rejected": self._finish,
        }
        try:
            while run["step"] != "finished":
                if run["step"] not in steps:
                    raise PipelineError(f"run {run['id']} is at an unknown step {run['step']!r}")
                run = steps[run["step"]](run)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as e:
            failed = self._fail(run, e)
            if isinstance(e, FeatureStoreError):
                _with_run_id(e, failed["id"])
                raise
            wrapped = PipelineError(
                f"run {failed['id']} of model '{failed['model']}' failed: {failed['error']}"
            )
            raise _with_run_id(wrapped, failed["id"]) from e
        return run

    def _build_training_set(self, run: dict[str, Any]) -> dict[str, Any]:
        """started -> training_set: the spine's rows in range (the newest `lookback`), with the
        features of the service, split by time and saved with their fingerprint."""
        self._load()  # code that differs from the applied one fails the run before any work
        inputs = run["inputs"]
        start = inputs["start"]
        if inputs.get("lookback_seconds"):
            start = self._lookback_start(inputs)
        job = self.store.get_historical_features(
            spine=inputs["spine"], features=inputs["features"], start=start, end=inputs["end"]
        )
        table = job.to_arrow()
        if table.num_rows == 0:
            raise PipelineError(
                f"spine '{inputs['spine']}' has no rows between {start or 'the beginning'} and "
                f"{inputs['end'] or 'now'}"
            )
        data = split(
            table, list(job.entity_df.column_names), inputs["label"], inputs["split"], self._metric_names(run)
        )
        name = f"{run['model']}__run{run['id']}"
        ts = self.store.training_sets.save(
            name,
            job,
            description=f"training set of pipeline run {run['id']} of model '{run['model']}'",
            overwrite=True,
            actor=self.actor,
        )
        self._data = data
        return self._commit(
            run,
            {
                "step": "training_set",
                "training_set": name,
                "training_fingerprint": ts.fingerprint,
                "inputs": {**inputs, "effective_start": start},
                "spine_range": self._spine_range(data),
            },
        )

    def _lookback_start(self, inputs: Mapping[str, Any]) -> str | None:
        import pyarrow.compute as pc

        from ..offline.retrieval import event_times
        from ..offline.spine import spine_rows, spine_time

        rows = spine_rows(self.store, self.store.catalog, inputs["spine"], inputs["start"], inputs["end"])
        start: str | None = inputs["start"]
        if rows.num_rows == 0:
            return start  # nothing in range: the build says so
        newest: datetime = pc.max(event_times(rows.column(TIMESTAMP))).as_py()
        begin = newest - _seconds(inputs["lookback_seconds"])
        given = spine_time(start, "start")
        return (max(begin, given) if given is not None else begin).isoformat()

    @staticmethod
    def _spine_range(data: RunData) -> dict[str, Any]:
        import pyarrow.compute as pc

        from ..offline.retrieval import event_times

        times = event_times(data.table.column(TIMESTAMP))
        return {
            "start": pc.min(times).as_py().isoformat(),
            "end": pc.max(times).as_py().isoformat(),
            "rows": data.table.num_rows,
            "train_rows": data.train.num_rows,
            "valid_rows": data.valid.num_rows,
            "split_at": data.split_at.isoformat(),
        }

    def _register(self, run: dict[str, Any]) -> dict[str, Any]:
        """training_set -> registered: train, score on the validation rows, register the candidate
        (or find the one this run registered before it was killed, and score it again: the metrics a
        version reports are never what the decision reads)."""
        from ..models.registry import normalize_missing_policy, signature

        found = self._own_version(run)
        if found is not None:
            version = found.version
            metrics, errors = self._score_version(run, version)
        else:
            train, evaluate = self._load()
            data = self._data_of(run)
            p = self.pipeline
            model = train(data.frame("train"), data.frame("valid"))
            if model is None or not callable(getattr(model, "predict", None)):
                raise PipelineError(
                    f"the train function {p.function_file}:{p.function} of model '{p.model}' returned "
                    f"{type(model).__name__}, not a model with a predict() method"
                )
            inputs, _ = signature(
                model, self.store.catalog, run["inputs"]["features"], list(p.request_features), p.model
            )
            defaults = normalize_missing_policy(p.missing_policy, inputs, p.model)["defaults"]
            metrics, errors = self._metrics(
                run, model, data, data.valid, [i.name for i in inputs], defaults, evaluate
            )
            mv = self.store.models.register(
                p.model,
                model,
                feature_service=run["inputs"]["features"],
                training_set=run["training_set"],
                metrics={k: v for k, v in metrics.items() if v is not None},
                params=dict(p.params),
                pipeline_run=int(run["id"]),
                description=p.description,
                missing_policy=p.missing_policy,
                request_features=list(p.request_features),
                actor=self.actor,
                role=self.role,
            )
            version = mv.version
        candidate = {"version": version, "metrics": metrics, "errors": errors}
        return self._commit(run, {"step": "registered", "candidate": candidate})

    def _decide(self, run: dict[str, Any]) -> dict[str, Any]:
        """registered -> decided: score the champion on the same validation rows and apply the policy;
        recorded before the alias is touched."""
        from .policy import Verdict, decide

        policy = run["policy"]
        alias = run["alias"]
        candidate = run["candidate"]
        current = self.backend.model_aliases(run["model"]).get((run["model"], alias))
        champion: dict[str, Any] = {"version": current, "metrics": None, "errors": {}}
        verdict = None
        if current == candidate["version"]:
            champion["metrics"] = candidate["metrics"]
        elif current is not None:
            try:
                champion["metrics"], champion["errors"] = self._score_version(run, current)
            except Exception as e:  # noqa: BLE001 - a champion that cannot be scored blocks the promotion
                why = (
                    f"the champion v{current} ({run['model']}@{alias}) could not be scored on the validation "
                    f"rows: {error_text(e)}; a candidate is never promoted without that comparison"
                )
                champion["errors"] = {"champion": error_text(e)}
                verdict = Verdict(False, [why], [why])
        if verdict is None:
            verdict = decide(
                policy, candidate["metrics"], champion["metrics"] if current is not None else None
            )
        if not verdict.passed:
            intended = "rejected"
        elif run["approval"] == "required":
            intended = "pending_approval"
        else:
            intended = "promoted"
        reasons = [
            *(f"failed: {r}" for r in verdict.failed),
            *(r for r in verdict.reasons if r not in verdict.failed),
        ]
        return self._commit(
            run, {"step": "decided", "champion": champion, "reasons": reasons, "intended": intended}
        )

    def _act(self, run: dict[str, Any]) -> dict[str, Any]:
        """decided -> promoted | pending | rejected, as decided; the alias move is one transaction with
        the step, and only from the champion the decision compared with."""
        from ..registry_store import AliasMove

        model, alias = run["model"], run["alias"]
        target = f"model:{model}@{alias}"
        candidate, champion = run["candidate"]["version"], run["champion"]["version"]
        detail = {"run": run["id"], "version": candidate, "champion": champion}
        if run["intended"] == "promoted":
            done = self.backend.commit_run_step(
                run["id"],
                {"step": "promoted", "decision": "promoted"},
                expect={"step": "decided"},
                alias_move=AliasMove(model, alias, candidate, self.actor, expected=champion),
                audit=(self.actor, "model_promote", target, {**detail, "from": champion, "to": candidate}),
            )
            if done.committed:
                self._tell(done.run, "promoted")
                self._models_changed(model)
                return done.run
            if done.run["step"] != "decided":
                raise PipelineError(f"run {run['id']} changed under it: {done.conflict}")
            moved = (
                f"failed: {model}@{alias} was moved by someone else since the decision ({done.conflict}): the "
                "candidate was compared with another champion, so it is not promoted; run again"
            )
            return self._commit(
                run, {"step": "rejected", "decision": "rejected", "reasons": [*run["reasons"], moved]}
            )
        if run["intended"] == "pending_approval":
            return self._commit(
                run,
                {"step": "pending", "decision": "pending_approval"},
                audit=(self.actor, "approval_requested", target, detail),
            )
        return self._commit(run, {"step": "rejected", "decision": "rejected"})

    def _finish(self, run: dict[str, Any]) -> dict[str, Any]:
        now = utcnow()
        changes = {
            "status": "succeeded",
            "step": "finished",
            "finished_at": now.isoformat(),
            "duration_seconds": _since(run["started_at"], now),
        }
        done = self.backend.commit_run_step(run["id"], changes, expect={"step": run["step"]})
        if not done.committed:
            if done.run["step"] == "finished":  # an approver decided a pending run first: it is done
                return done.run
            raise PipelineError(f"run {run['id']} changed under it: {done.conflict}")
        self._tell(done.run, "finished")
        return done.run

    def _fail(self, run: dict[str, Any], e: BaseException) -> dict[str, Any]:
        now = utcnow()
        done = self.backend.commit_run_step(
            run["id"],
            {
                "status": "failed",
                "error": error_text(e),
                "finished_at": now.isoformat(),
                "duration_seconds": _since(run["started_at"], now),
            },
        )
        self._tell(done.run, "failed")
        return done.run

    # -- what the steps share -------------------------------------------------------------------------

    def _commit(
        self,
        run: dict[str, Any],
        changes: Mapping[str, Any],
        audit: tuple[str, str, str, Mapping[str, Any]] | None = None,
        event: str | None = None,
    ) -> dict[str, Any]:
        """Record `changes` if the run is still at the step it was read at; tell the listeners."""
        done = self.backend.commit_run_step(
            run["id"], changes, expect={"step": run["step"], "status": "running"}, audit=audit
        )
        if not done.committed:
            raise PipelineError(f"run {run['id']} changed under it: {done.conflict}")
        self._tell(done.run, event or done.run["step"])
        return done.run

    def _tell(self, run: dict[str, Any], step: str) -> None:
        self.on_step(run, step)

    def _models_changed(self, model: str) -> None:
        """Tell the model registry's listeners that an alias moved. The move is committed: a listener
        that raises is warned about, and the run goes on to record its promotion."""
        notify = getattr(self.store.models, "notify_changed", None)
        if not callable(notify):
            return
        try:
            notify(model)
        except Exception as e:  # noqa: BLE001 - a notification must not undo a committed promotion
            warnings.warn(
                f"a listener of model '{model}' raised after its promotion was committed: {error_text(e)}",
                stacklevel=2,
            )

    def _load(self) -> tuple[TrainFunction, EvaluateFunction | None]:
        if self._functions is None:
            from .code import load_functions

            self._functions = load_functions(self.pipeline, self.store.config)
        return self._functions

    def _tagged_versions(self, run_id: int) -> list[int]:
        """The versions of the model tagged `pipeline_run=<run_id>`, oldest first (by anyone)."""
        return [
            int(record["version"])
            for record in self.backend.model_versions(self.pipeline.model)
            if (record.get("tags") or {}).get("pipeline_run") == str(run_id)
        ]

    def _own_version(self, run: Mapping[str, Any]) -> ModelVersion | None:
        """The version `run` registered before it was killed, or None. A tag is only a hint, which
        anyone who may register can write: a tagged version is the run's own only when it was trained
        on the run's training set, registered by the run's actor, after the run started. Tagged
        versions that are none of the run's own: PipelineError naming them."""
        tagged = self._tagged_versions(int(run["id"]))
        problems = []
        for number in tagged:
            mv = self.store.models.get(self.pipeline.model, version=number)
            why = _not_registered_by(run, mv)
            if why is None:
                return mv
            problems.append(f"v{number} {why}")
        if not problems:
            return None
        raise PipelineError(
            f"model '{self.pipeline.model}' has a version tagged pipeline_run={run['id']} that run "
            f"{run['id']} did not register ({'; '.join(problems)}): someone else registered it; the run "
            "does not use it as its candidate. Look at who registered it (fs audit), then run again"
        )

    def _data_of(self, run: dict[str, Any]) -> RunData:
        """The run's training set, split: built by this process, or read back from the saved one."""
        if self._data is None:
            name = run["training_set"]
            saved = self.store.training_sets.get(name)
            if saved.fingerprint != run["training_fingerprint"]:
                raise PipelineError(
                    f"training set '{name}' of run {run['id']} was saved again since (fingerprint "
                    f"{saved.fingerprint[:12]}, the run recorded {str(run['training_fingerprint'])[:12]})"
                )
            table = self.store.training_sets.result(name)
            if table is None:
                raise PipelineError(f"the rows of training set '{name}' of run {run['id']} are gone")
            inputs = run["inputs"]
            self._data = split(
                table,
                list(saved.entity_rows["columns"]),
                inputs["label"],
                inputs["split"],
                self._metric_names(run),
            )
        return self._data

    @staticmethod
    def _metric_names(run: Mapping[str, Any]) -> list[str]:
        policy = run["policy"]
        return [policy["metric"], *policy.get("guards", {})]

    def _metrics(
        self,
        run: Mapping[str, Any],
        model: Any,
        data: RunData,
        rows: pa.Table,
        columns: list[str],
        defaults: Mapping[str, Any],
        evaluate: EvaluateFunction | None,
    ) -> tuple[dict[str, float | None], dict[str, str]]:
        """The policy's metrics of `model` on `rows` (and `evaluate`'s, which win on a shared name)."""
        from .scoring import custom_metrics, model_input, score

        X = model_input(model, rows, columns, defaults)
        names = self._metric_names(run)
        if evaluate is not None:
            custom, custom_errors = custom_metrics(
                evaluate, model, to_frame(rows, data.entity_columns, data.label)
            )
        else:
            custom, custom_errors = {}, {}
        from ..monitoring.scorers import SCORERS
        from .repo import known_metric

        computed = [n for n in names if n not in custom and (n in SCORERS or known_metric(n))]
        values, errors = score(model, X, data.labels(rows), computed)
        for name in names:
            if name not in values and name not in custom:
                values[name] = None
                errors[name] = f"'{name}' is not a scikit-learn scorer and evaluate did not return it"
        values.update(custom)
        errors.update(custom_errors)
        return values, {k: v for k, v in errors.items() if values.get(k) is None}

    def _score_version(
        self, run: dict[str, Any], version: int
    ) -> tuple[dict[str, float | None], dict[str, str]]:
        """A version's metrics on the run's validation rows (the champion's, or a resumed run's
        candidate's): its columns taken from the training set when it holds them (and its features
        are the pipeline's), else looked up for those rows with its own features."""
        data = self._data_of(run)
        mv = self.store.models.get(run["model"], version=version)
        model = self.store.models.load_version(mv)
        service = {
            f"{r.view.name}:{f}"
            for r in self.store.catalog.resolve(run["inputs"]["features"])
            for f in r.features
        }
        rows = data.valid
        if not (set(mv.columns) <= set(rows.column_names) and set(mv.feature_refs) <= service):
            missing = [c for c in mv.request_features if c not in data.entity_columns]
            if missing:
                raise PipelineError(f"its request features {missing} are not columns of the spine")
            job = self.store.get_historical_features(
                entity_df=rows.select(data.entity_columns),
                features=mv.feature_refs,
                full_feature_names=mv.full_feature_names,
            )
            rows = job.to_arrow()
        evaluate = self._load()[1] if self.pipeline.evaluate_function else None
        return self._metrics(
            run, model, data, rows, mv.columns, mv.missing_policy.get("defaults") or {}, evaluate
        )


def _not_registered_by(run: Mapping[str, Any], mv: ModelVersion) -> str | None:
    """Why `mv` is not a version that `run` registered (None: it may be)."""
    if mv.training_set != run.get("training_set"):
        return f"was trained on training set {mv.training_set!r}, not the run's {run.get('training_set')!r}"
    if mv.registered_by != run.get("actor"):
        return f"was registered by {mv.registered_by!r}, not the run's actor {run.get('actor')!r}"
    try:
        before = datetime.fromisoformat(mv.registered_at) < datetime.fromisoformat(run["started_at"])
    except (KeyError, TypeError, ValueError):
        before = True
    if before:
        return f"was registered at {mv.registered_at}, before the run started ({run.get('started_at')})"
    return None


def _seconds(value: Any) -> timedelta:
    return timedelta(seconds=float(value))


def _since(started_at: str, now: datetime) -> float:
    try:
        return round((now - datetime.fromisoformat(started_at)).total_seconds(), 3)
    except (TypeError, ValueError):
        return 0.0
