"""`@training_pipeline`: how a model is retrained, defined as code in the repo (SPEC §13).

    @training_pipeline(model="trip_completion", features="driver_activity", spine="trips",
                       label="trip_completed", metric="accuracy", min_improvement=0.0,
                       guards={"roc_auc": 0.02}, approval="auto")
    def train(train_df, valid_df):
        return HistGradientBoostingClassifier().fit(train_df[FEATURES], train_df["trip_completed"])

A pipeline is a definition like a feature view: apply records it in the registry (kind
`training_pipeline`, named after its model: one pipeline per model). Its functions are never
pickled: apply records where they are (`module`, the definition file; `function_file` /
`function`, and the same for `evaluate`) and the hashes of their code (`sha256`: the functions and
what they reach in the repo, `featurestore.on_demand_code.code_hash`; `source_sha256`: their own
source). A run imports `module` afresh and refuses code that differs from what was applied.

The promotion policy (`featurestore.pipelines.policy`): the candidate's `metric` on the validation
rows against the champion's (the model version `alias` points at), with `greater_is_better`; it
passes when it is at least `min_improvement` better, and better by at least
`min_relative_improvement` of the champion's value, meets `threshold` (when set) and is not worse
than the champion by more than `guards[m]` on each guard metric `m` (guard metrics follow
scikit-learn's convention: greater is better). With no champion, a candidate passes when it meets
`threshold` (always, when there is none). `approval="required"`: a passed candidate waits for an
approver (`fs models approve`) instead of moving the alias.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar

from ..errors import DefinitionError
from ..sites import record_site

APPROVALS = ("auto", "required")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")  # the model registry's names
_ALIAS = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")

TrainFunction = Callable[[Any, Any], Any]
EvaluateFunction = Callable[[Any, Any], Mapping[str, Any]]


def _name_of(value: Any, what: str, where: str) -> str:
    """A definition object or its name -> the name."""
    name = getattr(value, "name", value)
    if not isinstance(name, str) or not name:
        raise DefinitionError(f"{where}: {what} must be a name or a definition object, got {value!r}")
    return name


def _number(value: Any, what: str, where: str, least: float | None = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DefinitionError(f"{where}: {what} must be a finite number, got {value!r}")
    if least is not None and value < least:
        raise DefinitionError(f"{where}: {what} must be at least {least:g}, got {value!r}")
    return float(value)


@dataclass(frozen=True, eq=False)
class TrainingPipeline:
    """How model `model` is retrained and when a new version may replace the current one; made by
    `@training_pipeline(...)` (see the module docstring)."""

    kind: ClassVar[str] = "training_pipeline"
    model: str
    features: Any  # a FeatureService or its name (stored as the name)
    spine: Any  # a source or feature view with the label, or its name (stored as the name)
    label: str
    metric: str
    train: TrainFunction | None = field(default=None, repr=False)
    greater_is_better: bool = True
    split: float = 0.2
    min_improvement: float = 0.0
    min_relative_improvement: float = 0.0
    threshold: float | None = None
    guards: dict[str, float] = field(default_factory=dict, hash=False)
    approval: str = "auto"
    alias: str = "production"
    #: train on the spine rows of the newest `lookback` only (None: every row in the run's range)
    lookback: timedelta | None = None
    params: dict[str, Any] = field(default_factory=dict, hash=False)
    missing_policy: str | dict[str, Any] = "fail"
    request_features: tuple[str, ...] = ()
    evaluate: EvaluateFunction | None = field(default=None, repr=False)
    # set by the repo loader (featurestore.pipelines.code): where the functions live, their hashes
    module: str = ""
    function: str = ""
    function_file: str = ""
    evaluate_function: str = ""
    evaluate_function_file: str = ""
    sha256: str = ""
    source_sha256: str = ""
    description: str = ""
    owner: str = ""
    tags: dict[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        record_site(self)
        where = f"training pipeline of model {self.model!r}"
        if not isinstance(self.model, str) or not _NAME.fullmatch(self.model):
            raise DefinitionError(
                f"{where}: model must be a model name (letters, digits, '_', '-', '.'), got {self.model!r}"
            )
        where = f"training pipeline of model '{self.model}'"
        set_ = object.__setattr__
        set_(self, "features", _name_of(self.features, "features (a feature service)", where))
        set_(self, "spine", _name_of(self.spine, "spine (a source or feature view)", where))
        for attr in ("label", "metric"):
            value = getattr(self, attr)
            if not isinstance(value, str) or not value:
                raise DefinitionError(f"{where}: {attr} must be a column or metric name, got {value!r}")
        if not isinstance(self.greater_is_better, bool):
            raise DefinitionError(f"{where}: greater_is_better must be True or False")
        split = _number(self.split, "split", where)
        if not 0 < split < 1:
            raise DefinitionError(
                f"{where}: split is the share of the newest spine rows that validates, between 0 and 1 "
                f"(exclusive), got {self.split!r}"
            )
        set_(self, "split", split)
        set_(self, "min_improvement", _number(self.min_improvement, "min_improvement", where))
        set_(
            self,
            "min_relative_improvement",
            _number(self.min_relative_improvement, "min_relative_improvement", where),
        )
        if self.threshold is not None:
            set_(self, "threshold", _number(self.threshold, "threshold", where, least=None))
        if not isinstance(self.guards, Mapping):
            raise DefinitionError(f"{where}: guards must be a dict {{metric: largest allowed worsening}}")
        guards = {}
        for metric, allowed in self.guards.items():
            if not isinstance(metric, str) or not metric:
                raise DefinitionError(f"{where}: guards must be keyed by metric names, got {metric!r}")
            guards[metric] = _number(allowed, f"guards['{metric}']", where)
        set_(self, "guards", guards)
        if self.approval not in APPROVALS:
            raise DefinitionError(
                f"{where}: approval must be one of {list(APPROVALS)}, got {self.approval!r}"
            )
        if not isinstance(self.alias, str) or not _ALIAS.fullmatch(self.alias) or self.alias == "latest":
            raise DefinitionError(f"{where}: alias {self.alias!r} is not a valid alias name")
        if self.lookback is not None and (
            not isinstance(self.lookback, timedelta) or self.lookback <= timedelta(0)
        ):
            raise DefinitionError(f"{where}: lookback must be a positive timedelta, got {self.lookback!r}")
        if not isinstance(self.params, Mapping):
            raise DefinitionError(f"{where}: params must be a dict (recorded with each run)")
        set_(self, "params", dict(self.params))
        if not (self.missing_policy in ("fail", "null") or isinstance(self.missing_policy, Mapping)):
            raise DefinitionError(
                f"{where}: missing_policy must be 'fail', 'null' or a dict of defaults, got {self.missing_policy!r}"
            )
        if isinstance(self.request_features, str) or not all(
            isinstance(f, str) and f for f in self.request_features
        ):
            raise DefinitionError(f"{where}: request_features must be a list of names")
        set_(self, "request_features", tuple(self.request_features))
        for attr in ("train", "evaluate"):
            fn = getattr(self, attr)
            if fn is not None and not callable(fn):
                raise DefinitionError(f"{where}: {attr} must be a function, got {fn!r}")
        if not isinstance(self.tags, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.tags.items()
        ):
            raise DefinitionError(f"{where}: tags must be a dict of strings")
        set_(self, "tags", dict(self.tags))
        if self.train is not None and not self.function:
            set_(self, "function", getattr(self.train, "__qualname__", ""))
        if self.evaluate is not None and not self.evaluate_function:
            set_(self, "evaluate_function", getattr(self.evaluate, "__qualname__", ""))

    @property
    def name(self) -> str:
        """A pipeline is named after the model it trains (one pipeline per model)."""
        return self.model

    @property
    def policy(self) -> dict[str, Any]:
        """The promotion policy, as recorded with each run."""
        return {
            "metric": self.metric,
            "greater_is_better": self.greater_is_better,
            "min_improvement": self.min_improvement,
            "min_relative_improvement": self.min_relative_improvement,
            "threshold": self.threshold,
            "guards": dict(self.guards),
            "approval": self.approval,
            "alias": self.alias,
        }

    # -- specs ----------------------------------------------------------------------------------

    def to_spec(self) -> dict[str, Any]:
        """The JSON-able spec apply records (code by location and hash, never the functions)."""
        return {
            "name": self.model,
            "model": self.model,
            "features": self.features,
            "spine": self.spine,
            "label": self.label,
            "metric": self.metric,
            "greater_is_better": self.greater_is_better,
            "split": self.split,
            "min_improvement": self.min_improvement,
            "min_relative_improvement": self.min_relative_improvement,
            "threshold": self.threshold,
            "guards": dict(self.guards),
            "approval": self.approval,
            "alias": self.alias,
            "lookback_seconds": None if self.lookback is None else self.lookback.total_seconds(),
            "params": dict(self.params),
            "missing_policy": self.missing_policy,
            "request_features": list(self.request_features),
            "module": self.module,
            "function": self.function,
            "function_file": self.function_file,
            "evaluate_function": self.evaluate_function or None,
            "evaluate_function_file": self.evaluate_function_file or None,
            "sha256": self.sha256,
            "source_sha256": self.source_sha256,
            "description": self.description,
            "owner": self.owner,
            "tags": dict(self.tags),
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> TrainingPipeline:
        """The applied pipeline from its spec; its functions are loaded by a run (`pipelines.code`)."""
        lookback = spec.get("lookback_seconds")
        return cls(
            model=spec["model"],
            features=spec["features"],
            spine=spec["spine"],
            label=spec["label"],
            metric=spec["metric"],
            greater_is_better=spec["greater_is_better"],
            split=spec["split"],
            min_improvement=spec["min_improvement"],
            min_relative_improvement=spec["min_relative_improvement"],
            threshold=spec.get("threshold"),
            guards=dict(spec.get("guards") or {}),
            approval=spec["approval"],
            alias=spec.get("alias", "production"),
            lookback=None if lookback is None else timedelta(seconds=lookback),
            params=dict(spec.get("params") or {}),
            missing_policy=spec.get("missing_policy", "fail"),
            request_features=tuple(spec.get("request_features") or ()),
            module=spec["module"],
            function=spec["function"],
            function_file=spec["function_file"],
            evaluate_function=spec.get("evaluate_function") or "",
            evaluate_function_file=spec.get("evaluate_function_file") or "",
            sha256=spec["sha256"],
            source_sha256=spec["source_sha256"],
            description=spec.get("description", ""),
            owner=spec.get("owner", ""),
            tags=dict(spec.get("tags") or {}),
        )

    def sites(self) -> list[tuple[str, str]]:
        """(file, qualname) of the pipeline's functions as applied: train, then evaluate."""
        out = [(self.function_file, self.function)]
        if self.evaluate_function:
            out.append((self.evaluate_function_file or self.function_file, self.evaluate_function))
        return out


def training_pipeline(
    model: str,
    features: Any,
    spine: Any,
    label: str,
    metric: str,
    greater_is_better: bool = True,
    split: float = 0.2,
    min_improvement: float = 0.0,
    min_relative_improvement: float = 0.0,
    threshold: float | None = None,
    guards: Mapping[str, float] | None = None,
    approval: str = "auto",
    alias: str = "production",
    lookback: timedelta | None = None,
    params: Mapping[str, Any] | None = None,
    missing_policy: str | dict[str, Any] = "fail",
    request_features: Sequence[str] = (),
    evaluate: EvaluateFunction | None = None,
    description: str = "",
    owner: str = "",
    tags: Mapping[str, str] | None = None,
) -> Callable[[TrainFunction], TrainingPipeline]:
    """Decorate `train(train_df, valid_df) -> model` as the TrainingPipeline of model `model`.

    `train_df` / `valid_df` are pandas DataFrames of the training set built from `spine` with the
    features of `features`: the oldest rows train, the newest `split` validate. `evaluate(model, df)
    -> {name: value}` adds custom metrics (computed on the validation rows). See the module docstring
    for the promotion policy."""

    def wrap(fn: TrainFunction) -> TrainingPipeline:
        if not callable(fn):
            raise DefinitionError(f"training_pipeline decorates a function, got {fn!r}")
        return TrainingPipeline(
            model=model,
            features=features,
            spine=spine,
            label=label,
            metric=metric,
            train=fn,
            greater_is_better=greater_is_better,
            split=split,
            min_improvement=min_improvement,
            min_relative_improvement=min_relative_improvement,
            threshold=threshold,
            guards=dict(guards or {}),
            approval=approval,
            alias=alias,
            lookback=lookback,
            params=dict(params or {}),
            missing_policy=missing_policy,
            request_features=tuple(request_features),
            evaluate=evaluate,
            description=description,
            owner=owner,
            tags=dict(tags or {}),
        )

    return wrap
