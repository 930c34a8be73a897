"""The model registry: versioned models tied to the features and training set they were built from.

    mv = store.models.register("eta", model, feature_service="driver_activity", training_set="eta_train",
                               metrics={"mae": 1.9}, missing_policy="fail")
    store.models.set_alias("eta", "production", mv.version)
    model = store.models.load("eta@production")          # or load("eta", version=3)

Records live in the feature registry, through its storage contract (`RegistryStore`: model versions,
aliases and their history); artifacts live under `config.models_path/<name>/<version>/` (on object
storage, `[models] path = "s3://..."`: under `<name>/<uuid>/`, uploaded before the version is). The artifact's
sha256 is recorded at registration and checked on every load: a changed file refuses to load.

A model's *signature* is the ordered list of its inputs: each input is a feature of its feature
service ("view:feature") or a request-time value. It is frozen at registration, so serving keeps
feeding the model what it was trained on even if the service changes later. Registration refuses a
model whose `feature_names_in_` / `n_features_in_` do not match its service.

References: "name@alias", "name@3" (a version), or "name" alone (its `production` alias when set,
else its latest version). Aliases cannot be all digits, nor "latest".

Governance (SPEC §13, featurestore.governance): registering, moving or removing an alias, approving
and rejecting go through `store.governance.check` first, with the `role` a server request passes
(None: the CLI / Python user, $FS_USER). A protected alias (`production` by default) moves only
through a passed promotion policy (the pipeline runner) or by an approver:

    store.models.pending("eta")                     # candidates a pipeline left awaiting approval
    store.models.approve("eta", 7, reason="checked the slices")   # moves the run's alias to 7
    store.models.reject("eta", 7, reason="worse on new drivers")  # the alias stays where it is
"""

from __future__ import annotations

import builtins
import hashlib
import json
import logging
import re
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import FeatureStoreError, ModelRegistryError, did_you_mean, unknown
from ..locations import ObjectStore
from ..registry import current_user, utcnow
from ..registry_store import AliasMove
from .flavors import SavedArtifact, flavor_for, read_model_file

if TYPE_CHECKING:
    from ..store import FeatureStore

log = logging.getLogger("featurestore.models")

# Matched with fullmatch: `match` with `$` would let a trailing newline through (a folder "eta\n").
_MODEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
_ALIAS = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
DEFAULT_ALIAS = "production"
PENDING = "pending_approval"  # the decision of a pipeline run whose candidate awaits an approver


class NoPendingApprovalError(ModelRegistryError):
    """Approve or reject of a version no pipeline run left pending (never, or already decided): HTTP 409."""


class AliasMovedError(NoPendingApprovalError):
    """Approve of a candidate whose alias moved since its run compared it with the champion: HTTP 409.
    The run stays pending; re-run the pipeline to compare the candidate with the alias's version now."""


@dataclass(frozen=True)
class ModelInput:
    """One input column of a model, in the model's order: a feature ("view:feature") or a request value."""

    name: str
    ref: str | None = None  # None: a request-time value the caller passes with each entity row

    @property
    def is_request(self) -> bool:
        return self.ref is None


@dataclass(frozen=True)
class ModelVersion:
    """One registered version of a model (immutable), plus the aliases pointing at it now."""

    name: str
    version: int
    flavor: str
    format: str
    artifact: str  # path relative to config.models_path
    sha256: str
    size: int
    feature_service: str
    inputs: tuple[ModelInput, ...]
    full_feature_names: bool
    training_set: str | None
    training_fingerprint: str | None
    metrics: dict[str, Any]
    params: dict[str, Any]
    tags: dict[str, str]
    description: str
    missing_policy: dict[str, Any]
    registered_by: str
    registered_at: str
    details: dict[str, Any] = field(default_factory=dict, repr=False)
    aliases: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def columns(self) -> list[str]:
        """The model's input columns, in the order it expects them."""
        return [i.name for i in self.inputs]

    @property
    def feature_refs(self) -> list[str]:
        """The features the model looks up online ("view:feature"), in its input order."""
        return [i.ref for i in self.inputs if i.ref is not None]

    @property
    def request_features(self) -> list[str]:
        return [i.name for i in self.inputs if i.ref is None]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["inputs"] = [asdict(i) for i in self.inputs]
        d["aliases"] = list(self.aliases)
        d.pop("details")
        return d


def _plain(value: Any) -> Any:
    """`value` as plain JSON values (numpy scalars and arrays converted; None as {}), as stored."""
    return json.loads(_json(value))


def _json(value: Any) -> str:
    def default(o: Any) -> Any:
        if hasattr(o, "item"):  # numpy scalars
            return o.item()
        if hasattr(o, "tolist"):
            return o.tolist()
        return str(o)

    return json.dumps(value if value is not None else {}, sort_keys=True, default=default)


MAX_VERSION = 2**63 - 1  # versions are SQLite integers


def parse_model_ref(
    ref: str, version: int | str | None = None, alias: str | None = None
) -> tuple[str, int | None, str | None]:
    """ "name@alias" / "name@3" / "name" (+ explicit version= or alias=) -> (name, version, alias)."""
    if not isinstance(ref, str) or not ref:
        raise ModelRegistryError(
            f"model reference {ref!r} must be a string: 'name', 'name@alias' or 'name@3'"
        )
    name, _, tail = ref.partition("@")
    if tail and (version is not None or alias is not None):
        raise ModelRegistryError(f"model reference '{ref}' already names a version or alias; pass only one")
    if version is not None and alias is not None:
        raise ModelRegistryError("pass either a version or an alias, not both")
    if tail:
        if tail.isdigit():
            version = int(tail)
        else:
            alias = tail
    if version is not None:
        try:
            version = int(version)
        except (TypeError, ValueError):
            raise ModelRegistryError(f"model version must be a whole number, got {version!r}") from None
        if not 1 <= version <= MAX_VERSION:
            raise ModelRegistryError(f"model version must be between 1 and {MAX_VERSION}, got {version}")
    return name, version, alias


class ModelRegistry:
    """Register, find, alias and load models. Get it as `store.models`."""

    def __init__(self, store: FeatureStore):
        self.store = store
        self.registry = store.registry
        self.backend = store.registry.backend
        self.root = Path(store.config.models_path)
        #: `[models] path = "s3://..."`: artifacts are objects there (self.root is then unused)
        self.objects = (
            ObjectStore(store.config.models_url, store.config.offline.storage_options, "[models] path")
            if store.config.models_url is not None
            else None
        )
        self._listeners: list[Callable[[str], None]] = []
        self._lock = threading.Lock()

    # -- change notification (serving hot-swaps on it) -------------------------------------------

    def subscribe(self, callback: Callable[[str], None]) -> None:
        """Call `callback(model_name)` after every registration or alias move made through this object.
        An exception from `callback` is logged (warning) and does not fail the change."""
        with self._lock:
            self._listeners.append(callback)

    def unsubscribe(self, callback: Callable[[str], None]) -> None:
        with self._lock:
            if callback in self._listeners:
                self._listeners.remove(callback)

    def _notify(self, name: str) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for callback in listeners:
            # The change is committed: a listener that fails (a model server that cannot load the new
            # version) must not turn the registration, alias move or approval into an error, nor
            # keep the listeners after it from hearing of the change.
            try:
                callback(name)
            except Exception as e:
                log.warning(
                    "model '%s' changed; its listener %r failed: %s", name, callback, e, exc_info=True
                )

    def notify_changed(self, name: str) -> None:
        """Tell the subscribers that model `name` changed by another road than this object's methods
        (a pipeline run moving an alias in the same transaction as its step)."""
        self._notify(name)

    def generation(self) -> int:
        """A number that grows with every registration and alias move, in any process."""
        return self.backend.models_generation()

    # -- registering -------------------------------------------------------------------------------

    def register(
        self,
        name: str,
        model: Any,
        feature_service: Any,
        training_set: Any = None,
        metrics: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None,
        description: str = "",
        missing_policy: str | dict[str, Any] = "fail",
        request_features: list[str] | tuple[str, ...] = (),
        flavor: str | None = None,
        actor: str | None = None,
        role: str | None = None,
        pipeline_run: int | None = None,
    ) -> ModelVersion:
        """Record `model` as the next version of `name`; returns the new ModelVersion.

        `model`: an estimator with `predict` (scikit-learn-compatible), an ONNX model, or a path to a
        .skops/.joblib/.pkl/.onnx file. `feature_service`: a FeatureService or its name; its features
        become the model's signature, checked against the model's `feature_names_in_` or
        `n_features_in_`. `request_features`: inputs the caller passes with each entity row instead of
        looked up. `training_set`: a saved training set's name (or TrainingSet); its fingerprint is
        recorded. `missing_policy`: what serving does with a NOT_FOUND / OUTSIDE_MAX_AGE feature:
        "fail" (422), "null" (predict with a missing value), or {"feature": default, ...} (listed
        features get a default, the others fail). `role` / `actor`: a server request's API key (None:
        the CLI / Python user); the role must allow "register" (PermissionDeniedError).
        `pipeline_run`: set by the pipeline runner only: the id of the run registering this candidate,
        stored as tags["pipeline_run"] = str(id). The tag is reserved (a run finds its candidate by
        it), so `tags` naming "pipeline_run" are refused.
        """
        if not isinstance(name, str) or not _MODEL_NAME.fullmatch(name):
            raise ModelRegistryError(
                f"model name {name!r} is invalid: use letters, digits, '_', '-' or '.', not starting with '-' or '.'"
            )
        tags = _tags(tags, pipeline_run, name)
        self.store.governance.check("register", f"model:{name}", role=role, actor=actor)
        if isinstance(model, (str, Path)):  # .onnx files too: a missing file is a clear error
            model = read_model_file(model)
        chosen = flavor_for(model, flavor)
        _check_fitted(model, name)
        service_name = getattr(feature_service, "name", feature_service)
        if not isinstance(service_name, str):
            raise ModelRegistryError(
                f"feature_service must be a FeatureService or its name, got {feature_service!r}"
            )
        catalog = self.store.catalog
        catalog.service(service_name)  # unknown name -> UnknownNameError with a suggestion
        probe = model
        if chosen.name == "onnx":  # its input width is known only from the graph
            probe = _onnx_probe(model, name)
        inputs, full_names = signature(probe, catalog, service_name, list(request_features), name)
        policy = normalize_missing_policy(missing_policy, inputs, name)
        ts_name, ts_fingerprint = self._training_set(training_set, inputs, name)
        who = actor or current_user()
        when = utcnow().isoformat()

        folder = self.root / name
        if self.objects is None:
            tmp = folder / f".tmp-{uuid.uuid4().hex}"
            tmp.mkdir(parents=True)
        else:  # saved locally, uploaded before the registry's transaction (see _upload)
            tmp = Path(tempfile.mkdtemp(prefix="featurestore-model-"))
        uploaded: str | None = None  # the object-storage prefix of this registration's files
        try:
            saved = chosen.save(model, tmp)
            data = (tmp / saved.file).read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            if self.objects is not None:
                uploaded = self._upload(tmp, name)

            def build(version: int) -> dict[str, Any]:  # inside the registry's transaction
                if uploaded is not None:
                    artifact = f"{uploaded}/{saved.file}"
                else:
                    final = folder / str(version)
                    if final.exists():  # left by a registration that died before its commit
                        shutil.rmtree(final)
                    tmp.rename(final)
                    artifact = f"{name}/{version}/{saved.file}"
                return {
                    "flavor": chosen.name,
                    "format": saved.format,
                    "artifact": artifact,
                    "sha256": digest,
                    "size": len(data),
                    "details": _plain(saved.details),
                    "feature_service": service_name,
                    "signature": _plain(
                        {"inputs": [asdict(i) for i in inputs], "full_feature_names": full_names}
                    ),
                    "training_set": ts_name,
                    "training_fingerprint": ts_fingerprint,
                    "metrics": _plain(metrics),
                    "params": _plain(params),
                    "tags": _plain(tags),
                    "description": description or "",
                    "missing_policy": _plain(policy),
                    "registered_by": who,
                    "registered_at": when,
                }

            version = self.backend.add_model_version(name, build)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            if uploaded is not None and self.objects is not None:  # no version names these files
                try:
                    self.objects.delete_tree(self.objects.url(uploaded))
                except FeatureStoreError as e:
                    log.warning(
                        "model '%s': could not delete the files of a failed registration: %s", name, e
                    )
            raise
        if self.objects is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        self.registry.audit(
            "model_register",
            f"model:{name}",
            _with_role(
                {
                    "version": version,
                    "sha256": digest,
                    "flavor": chosen.name,
                    "feature_service": service_name,
                    "training_set": ts_name,
                },
                role,
            ),
            actor=who,
        )
        self._notify(name)
        return self.get(name, version)

    def _training_set(
        self, training_set: Any, inputs: tuple[ModelInput, ...], model: str
    ) -> tuple[str | None, str | None]:
        if training_set is None:
            return None, None
        ts_name = getattr(training_set, "name", training_set)
        ts = self.store.training_sets.get(ts_name)
        missing = [i.ref for i in inputs if i.ref is not None and i.ref not in ts.feature_refs]
        if missing and ts.feature_refs:
            raise ModelRegistryError(
                f"model '{model}': training set '{ts.name}' does not hold the features {missing} of its feature "
                "service: register the model with the training set it was trained on"
            )
        return ts.name, ts.fingerprint

    # -- reading -----------------------------------------------------------------------------------

    def names(self) -> list[str]:
        return sorted({r["name"] for r in self.backend.model_versions()})

    def list(self) -> list[dict[str, Any]]:
        """One summary per model: latest version, aliases, description, who registered the latest."""
        aliases = self._aliases()
        latest: dict[str, dict[str, Any]] = {}
        counts: dict[str, int] = {}
        for r in self.backend.model_versions():  # ordered by name, then version
            latest[r["name"]] = r
            counts[r["name"]] = counts.get(r["name"], 0) + 1
        return [
            {
                "name": n,
                "latest_version": r["version"],
                "versions": counts[n],
                "feature_service": r["feature_service"],
                "description": r["description"],
                "aliases": {a: ver for (mn, a), ver in sorted(aliases.items()) if mn == n},
                "registered_by": r["registered_by"],
                "registered_at": r["registered_at"],
            }
            for n, r in sorted(latest.items())
        ]

    def all_versions(self) -> builtins.list[ModelVersion]:
        """Every version of every model, by name then version: one read of the versions and one of
        the aliases (for a listing of everything, e.g. the web UI's index; `versions(name)` for one model)."""
        aliases = self._aliases()
        return [self._version(r, aliases) for r in self.backend.model_versions()]

    def versions(self, name: str) -> builtins.list[ModelVersion]:  # (`list` is a method here)
        """Every version of `name`, oldest first."""
        self._check_exists(name)
        aliases = self._aliases(name)
        return [self._version(r, aliases) for r in self.backend.model_versions(name)]

    def get(self, name: str, version: int | None = None, alias: str | None = None) -> ModelVersion:
        """The record of one version: `get("eta", 3)`, `get("eta@production")`, `get("eta")` (default)."""
        name, version = self.resolve(name, version=version, alias=alias)
        record = self.backend.model_version(name, version)
        if record is None:  # deleted between resolving and reading: as if it never existed
            raise unknown(f"version of model '{name}':", str(version), [])
        return self._version(record, self._aliases(name))

    def resolve(self, ref: str, version: int | None = None, alias: str | None = None) -> tuple[str, int]:
        """A reference ("name@alias", "name@3", "name") -> (name, version), with helpful errors."""
        name, version, alias = parse_model_ref(ref, version, alias)
        self._check_exists(name)
        if version is not None:
            if self.backend.model_version(name, version) is None:
                known = [str(r["version"]) for r in self.backend.model_versions(name)]
                raise unknown(f"version of model '{name}':", str(version), known)
            return name, version
        aliases = {a: v for (_, a), v in self._aliases(name).items()}
        if alias is not None:
            if alias not in aliases:
                raise unknown(f"alias of model '{name}':", alias, aliases)
            return name, aliases[alias]
        if DEFAULT_ALIAS in aliases:
            return name, aliases[DEFAULT_ALIAS]
        return name, max(r["version"] for r in self.backend.model_versions(name))

    def aliases(self, name: str) -> dict[str, int]:
        """alias -> version for one model."""
        self._check_exists(name)
        return {a: v for (_, a), v in sorted(self._aliases(name).items())}

    def _aliases(self, name: str | None = None) -> dict[tuple[str, str], int]:
        return self.backend.model_aliases(name)

    def _check_exists(self, name: str) -> None:
        if not self.backend.model_versions(name):
            raise unknown("model", name, self.names())

    @staticmethod
    def _version(r: dict[str, Any], aliases: dict[tuple[str, str], int]) -> ModelVersion:
        name, version, sig = r["name"], r["version"], r["signature"]
        return ModelVersion(
            name=name,
            version=version,
            flavor=r["flavor"],
            format=r["format"],
            artifact=r["artifact"],
            sha256=r["sha256"],
            size=r["size"],
            feature_service=r["feature_service"],
            inputs=tuple(ModelInput(**i) for i in sig["inputs"]),
            full_feature_names=sig["full_feature_names"],
            training_set=r["training_set"],
            training_fingerprint=r["training_fingerprint"],
            metrics=r["metrics"],
            params=r["params"],
            tags=r["tags"],
            description=r["description"],
            missing_policy=r["missing_policy"],
            registered_by=r["registered_by"],
            registered_at=r["registered_at"],
            details=r["details"],
            aliases=tuple(sorted(a for (n, a), v in aliases.items() if n == name and v == version)),
        )

    # -- aliases -----------------------------------------------------------------------------------

    def set_alias(
        self, name: str, alias: str, version: int, actor: str | None = None, role: str | None = None
    ) -> ModelVersion:
        """Point `alias` of `name` at `version` (moving it if set); recorded in the alias history and audit.

        The role must allow "set_alias" of `alias` (a protected alias needs approver; `role` None: the
        CLI / Python user), checked before anything changes. The target's artifact is checked (sha256)
        first: an alias never moves to a file that would not load.
        """
        if not isinstance(alias, str) or not _ALIAS.fullmatch(alias) or alias == "latest":
            raise ModelRegistryError(
                f"alias {alias!r} is invalid: use letters, digits, '_' or '-', starting with a letter "
                "('latest' and numbers are reserved)"
            )
        self.store.governance.check("set_alias", f"model:{name}@{alias}", role=role, actor=actor, alias=alias)
        name, version = self.resolve(name, version=version)
        self.read_artifact(self.get(name, version))
        who = actor or current_user()
        old = self.backend.set_model_alias(name, alias, version, who)
        self.registry.audit(
            "model_alias_set",
            f"model:{name}@{alias}",
            _with_role({"from": old, "to": version}, role),
            actor=who,
        )
        self._notify(name)
        return self.get(name, version)

    def delete_alias(self, name: str, alias: str, actor: str | None = None, role: str | None = None) -> None:
        """Remove an alias (recorded in the alias history and audit); governed as `set_alias`."""
        self.store.governance.check(
            "delete_alias", f"model:{name}@{alias}", role=role, actor=actor, alias=alias
        )
        aliases = self.aliases(name)
        if alias not in aliases:
            raise unknown(f"alias of model '{name}':", alias, aliases)
        who = actor or current_user()
        self.backend.delete_model_alias(name, alias, who)
        self.registry.audit(
            "model_alias_delete",
            f"model:{name}@{alias}",
            _with_role({"from": aliases[alias]}, role),
            actor=who,
        )
        self._notify(name)

    def history(self, name: str) -> builtins.list[dict[str, Any]]:
        """What happened to a model, oldest first: registrations and alias moves, with who and when."""
        self._check_exists(name)
        events = [
            {"at": at, "actor": by, "event": "register", "version": v, "alias": None, "from_version": None}
            for v, by, at in (
                (r["version"], r["registered_by"], r["registered_at"])
                for r in self.backend.model_versions(name)
            )
        ]
        for move in self.backend.model_alias_history(name):
            events.append(
                {
                    "at": move["at"],
                    "actor": move["actor"],
                    "event": "alias_set" if move["new_version"] is not None else "alias_delete",
                    "version": move["new_version"],
                    "alias": move["alias"],
                    "from_version": move["old_version"],
                }
            )
        return sorted(events, key=lambda e: e["at"])

    # -- approvals (SPEC §13) ----------------------------------------------------------------------

    def pending(self, name: str | None = None) -> builtins.list[dict[str, Any]]:
        """The candidates awaiting approval (of model `name`), newest first: one dict per pipeline run
        with run, model, version, alias, candidate and champion ({version, metrics}), reasons,
        requested_at and requested_by."""
        if name is not None:
            self._check_exists(name)
        return [_pending_entry(run) for run in self._pending_runs(name)]

    def approve(
        self,
        name: str,
        version: int,
        reason: str = "",
        actor: str | None = None,
        role: str | None = None,
    ) -> ModelVersion:
        """Approve the candidate `version` a pipeline run of `name` left pending: its alias moves to it.

        The run's decision becomes "approved" and the alias move, the review and the audit entry
        ("model_approve") are one registry transaction guarded by the run still being pending, so two
        approvals of one candidate move the alias once (the second raises NoPendingApprovalError),
        and by the alias still pointing at the champion the run compared the candidate with: an alias
        moved since (by another run or an approver) raises AliasMovedError and nothing changes.
        Needs the approver role ("approve"); `role` None: the CLI / Python user.
        """
        run, who = self._pending_for("approve", name, version, actor, role)
        name, version = run["model"], int(version)
        self.read_artifact(self.get(name, version))  # an alias never moves to a file that would not load
        alias = run["alias"]
        champion = (run.get("champion") or {}).get("version")
        review = self._review("approved", who, reason)
        commit = self.backend.commit_run_step(
            run["id"],
            {"decision": "approved", "status": "succeeded", "step": "finished", "review": review}
            | _finished(run),
            expect={"decision": PENDING},
            alias_move=AliasMove(name, alias, version, who, expected=champion, check=True),
            audit=(
                who,
                "model_approve",
                f"model:{name}@{alias}",
                _with_role({"version": version, "run": run["id"], "reason": reason}, role),
            ),
        )
        if not commit.committed:
            if commit.run.get("decision") != PENDING:
                raise self._decided_meanwhile(name, version, commit.run)
            now = commit.previous_version
            raise AliasMovedError(
                f"model '{name}' version {version}: {name}@{alias} moved since pipeline run {run['id']} "
                f"decided (now {_version_text(now)}, the candidate was compared with "
                f"{_version_text(champion)}): nothing changed; re-run the pipeline "
                f"(`fs retrain {name}`) to compare it with the current {alias}"
            )
        self._notify(name)
        return self.get(name, version)

    def reject(
        self,
        name: str,
        version: int,
        reason: str = "",
        actor: str | None = None,
        role: str | None = None,
    ) -> dict[str, Any]:
        """Decline the candidate `version` a pipeline run of `name` left pending; its alias stays where
        it is. The run's decision becomes "declined" (with the review) and "model_reject" is audited,
        in one transaction. Needs the approver role ("reject"). Returns the run."""
        run, who = self._pending_for("reject", name, version, actor, role)
        name, version = run["model"], int(version)
        review = self._review("declined", who, reason)
        commit = self.backend.commit_run_step(
            run["id"],
            {"decision": "declined", "status": "succeeded", "step": "finished", "review": review}
            | _finished(run),
            expect={"decision": PENDING},
            audit=(
                who,
                "model_reject",
                f"model:{name}@{run['alias']}",
                _with_role({"version": version, "run": run["id"], "reason": reason}, role),
            ),
        )
        if not commit.committed:
            raise self._decided_meanwhile(name, version, commit.run)
        return commit.run

    def _pending_runs(self, name: str | None) -> builtins.list[dict[str, Any]]:
        return self.backend.pipeline_runs(model=name, decision=PENDING, limit=10_000)

    def _pending_for(
        self, action: str, name: str, version: int, actor: str | None, role: str | None
    ) -> tuple[dict[str, Any], str]:
        """(the pending run of `name`'s candidate `version`, who acts), after the governance check."""
        self.store.governance.check(action, f"model:{name}@{version}", role=role, actor=actor)
        name, version = self.resolve(name, version=version)  # unknown model or version: UnknownNameError
        runs = self._pending_runs(name)
        for run in runs:
            if (run.get("candidate") or {}).get("version") == version:
                return run, actor or current_user()
        waiting = sorted({v for r in runs if isinstance(v := (r.get("candidate") or {}).get("version"), int)})
        listed = f"pending: versions {waiting}" if waiting else "no version of it is pending"
        raise NoPendingApprovalError(
            f"model '{name}' version {version} has no pending approval to {action} ({listed}); "
            "see `fs models pending`"
        )

    @staticmethod
    def _review(decision: str, who: str, reason: str) -> dict[str, Any]:
        return {"decision": decision, "by": who, "at": utcnow().isoformat(), "reason": reason}

    @staticmethod
    def _decided_meanwhile(name: str, version: int, run: dict[str, Any]) -> NoPendingApprovalError:
        review = run.get("review") or {}
        by = f" by {review['by']}" if review.get("by") else ""
        return NoPendingApprovalError(
            f"model '{name}' version {version}: pipeline run {run['id']} was decided meanwhile "
            f"({run.get('decision')}{by}); nothing changed"
        )

    # -- loading -----------------------------------------------------------------------------------

    def _upload(self, folder: Path, name: str) -> str:
        """Put a saved model's files under a new prefix `<name>/<uuid>/` of the models URL; returns
        the prefix. The upload runs before the registry's transaction (the version number is known
        only inside it), so a long upload never holds the registry's write lock; a registration that
        fails after it deletes the prefix, and one killed meanwhile leaves a prefix no version names.
        On a failed upload, what was uploaded is deleted and the error raised."""
        assert self.objects is not None
        prefix = f"{name}/{uuid.uuid4().hex}"
        try:
            for file in sorted(f for f in folder.rglob("*") if f.is_file()):
                self.objects.upload(file, self.objects.url(prefix, file.relative_to(folder).as_posix()))
        except BaseException:
            try:
                self.objects.delete_tree(self.objects.url(prefix))
            except FeatureStoreError:
                pass  # an orphan prefix, named by no version
            raise
        return prefix

    def artifact_path(self, mv: ModelVersion) -> Path | str:
        """Where a version's artifact is: a local file, or the URL of an object (`[models] path = "s3://..."`)."""
        if self.objects is not None:
            return self.objects.url(mv.artifact)
        return self.root / mv.artifact

    def read_artifact(self, mv: ModelVersion) -> bytes:
        """The artifact's bytes, after checking them against the recorded sha256."""
        path = self.artifact_path(mv)
        try:
            data = self.objects.read_bytes(str(path)) if self.objects is not None else Path(path).read_bytes()
        except FileNotFoundError:
            raise ModelRegistryError(f"model {mv.ref}: artifact {path} is missing") from None
        digest = hashlib.sha256(data).hexdigest()
        if digest != mv.sha256:
            raise ModelRegistryError(
                f"model {mv.ref}: artifact {path} was modified after registration (sha256 {digest[:12]}..., "
                f"registered {mv.sha256[:12]}...): refusing to load it; register the model again"
            )
        return data

    def load_version(self, mv: ModelVersion) -> Any:
        """The model object of one version (sha256 checked on the exact bytes that are deserialized)."""
        from .flavors import FLAVORS

        data = self.read_artifact(mv)
        try:
            return FLAVORS[mv.flavor].load(data, SavedArtifact(Path(mv.artifact).name, mv.format, mv.details))
        except ModelRegistryError as e:
            raise ModelRegistryError(f"model {mv.ref}: {e}") from e
        except Exception as e:
            raise ModelRegistryError(f"model {mv.ref}: could not load its {mv.format} artifact: {e}") from e

    def load(self, ref: str, version: int | None = None, alias: str | None = None) -> Any:
        """The model object: `load("eta@production")`, `load("eta", version=3)`, `load("eta")` (default)."""
        return self.load_version(self.get(ref, version=version, alias=alias))


def _with_role(detail: dict[str, Any], role: str | None) -> dict[str, Any]:
    """An audit detail plus the role a caller passed (a server request's key role): `role=` is taken
    on trust from Python, so the audit trail shows who claimed which role."""
    return detail if role is None else {**detail, "role": role}


def _version_text(version: int | None) -> str:
    return f"v{version}" if version is not None else "no version"


def _finished(run: dict[str, Any]) -> dict[str, Any]:
    """finished_at and duration_seconds for a run an approver closes that has none (its runner was
    killed at step "pending"); {} when the runner finished it."""
    if run.get("finished_at"):
        return {}
    now = utcnow()
    try:
        took = round((now - datetime.fromisoformat(run["started_at"])).total_seconds(), 3)
    except (KeyError, TypeError, ValueError):
        took = 0.0
    return {"finished_at": now.isoformat(), "duration_seconds": took}


def _pending_entry(run: dict[str, Any]) -> dict[str, Any]:
    """What `pending()` shows of one pipeline run awaiting approval."""
    candidate = run.get("candidate") or {}
    champion = run.get("champion") or {}
    return {
        "run": run["id"],
        "model": run["model"],
        "version": candidate.get("version"),
        "alias": run.get("alias"),
        "candidate": {"version": candidate.get("version"), "metrics": candidate.get("metrics") or {}},
        "champion": {"version": champion.get("version"), "metrics": champion.get("metrics") or {}},
        "reasons": list(run.get("reasons") or []),
        "requested_at": run.get("finished_at") or run["updated_at"],
        "requested_by": run.get("actor"),
    }


RESERVED_TAG = "pipeline_run"  # the run that registered a candidate version; only the runner sets it


def _tags(tags: dict[str, str] | None, pipeline_run: int | None, name: str) -> dict[str, str]:
    """The tags to store: the user's (refusing the reserved "pipeline_run"), plus the runner's run id."""
    given = dict(tags or {})
    if RESERVED_TAG in given:
        raise ModelRegistryError(
            f"model '{name}': the tag '{RESERVED_TAG}' is reserved: the pipeline runner sets it to the run "
            "that registered the version; choose another tag name"
        )
    if pipeline_run is not None:
        if isinstance(pipeline_run, bool) or not isinstance(pipeline_run, int):
            raise ModelRegistryError(
                f"model '{name}': pipeline_run must be a run id (an int), got {pipeline_run!r}"
            )
        given[RESERVED_TAG] = str(pipeline_run)
    return given


def _check_fitted(model: Any, name: str) -> None:
    """Refuse an unfitted scikit-learn estimator now, rather than failing every prediction later."""
    from .flavors import is_sklearn

    if not is_sklearn(model):
        return
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(model)
    except NotFittedError:
        raise ModelRegistryError(
            f"model '{name}': {type(model).__name__} is not fitted: call fit() first"
        ) from None
    except TypeError:  # not an estimator after all (a helper object from sklearn): let it through
        pass


def _onnx_probe(model: Any, name: str) -> Any:
    """An OnnxModel to read the graph's input width from, when onnxruntime is installed. Bytes that are
    not a self-contained ONNX model (`onnx_safety`), or that onnxruntime cannot load, are refused
    here (ModelRegistryError, HTTP 422), so a version that could never serve is not registered."""
    import importlib.util

    from .flavors import OnnxModel, _onnx_bytes
    from .onnx_safety import check_onnx_model

    what = f"model '{name}'"
    data = _onnx_bytes(model) or b""
    check_onnx_model(data, what)  # also without onnxruntime: the file is kept, and served elsewhere
    if importlib.util.find_spec("onnxruntime") is None:
        return object()
    try:
        return OnnxModel(data, what)
    except ModelRegistryError:
        raise
    except Exception as e:
        raise ModelRegistryError(f"{what}: onnxruntime cannot load this ONNX model: {e}") from None


def signature(
    model: Any, catalog: Any, service_name: str, request_features: list[str], model_name: str
) -> tuple[tuple[ModelInput, ...], bool]:
    """The model's inputs in its order, checked against the feature service; and whether names are full."""
    from ..catalog import output_names

    requests = catalog.resolve(service_name)
    refs = [f"{r.view.name}:{f}" for r in requests for f in r.features]
    short = [f for r in requests for f in r.features]
    full = [f"{r.view.name}__{f}" for r in requests for f in r.features]
    short_ok = len(set(short)) == len(short)
    if short_ok:
        output_names(requests, False)
    for rf in request_features:
        if not isinstance(rf, str) or not rf:
            raise ModelRegistryError(f"model '{model_name}': request_features must be names, got {rf!r}")
    names_in = getattr(model, "feature_names_in_", None)
    n_in = getattr(model, "n_features_in_", None)
    expected = len(refs) + len(request_features)
    where = f"model '{model_name}' and feature service '{service_name}'"
    if names_in is not None:
        names_in = [str(n) for n in names_in]
        candidates = ([(short, False)] if short_ok else []) + [(full, True)]
        for names, is_full in candidates:
            given = set(names) | set(request_features)
            if set(names_in) == given and len(names_in) == len(given) == expected:
                by_name = dict(zip(names, refs))
                return tuple(ModelInput(n, by_name.get(n)) for n in names_in), is_full
        names = short if short_ok else full
        missing = [n for n in names_in if n not in names and n not in request_features]
        unused = [n for n in names if n not in names_in]
        hint = ""
        if missing:
            hint += f" the model needs {missing}, which the service does not give (pass request_features= for values sent with each request)"
            if len(missing) == 1:
                hint += did_you_mean(missing[0], names)
            hint += ";"
        if unused:
            hint += f" the service gives {unused}, which the model was not fitted on;"
        raise ModelRegistryError(
            f"{where} do not match: the model was fitted on columns {names_in}, the service gives {names}"
            f"{' plus request features ' + str(request_features) if request_features else ''}:{hint.rstrip(';')}. "
            "Register it with the feature service it was trained with."
        )
    names = (short if short_ok else full) + list(request_features)
    if isinstance(n_in, int) and n_in != expected:
        raise ModelRegistryError(
            f"{where} do not match: the model expects {n_in} feature(s), the service gives {len(refs)} {refs}"
            f"{' plus request features ' + str(request_features) if request_features else ''}. "
            "Register it with the feature service it was trained with."
        )
    by_name = dict(zip(short if short_ok else full, refs))
    return tuple(ModelInput(n, by_name.get(n)) for n in names), not short_ok


def normalize_missing_policy(policy: Any, inputs: tuple[ModelInput, ...], model_name: str) -> dict[str, Any]:
    """ "fail" | "null" | {"feature": default} -> {"mode": ..., "defaults": {...}} checked against the inputs."""
    if policy in ("fail", "null"):
        return {"mode": policy, "defaults": {}}
    if isinstance(policy, dict):
        columns = {i.name: i for i in inputs}
        by_ref = {i.ref: i.name for i in inputs if i.ref}
        defaults: dict[str, Any] = {}
        for key, value in policy.items():
            column = by_ref.get(key, key)
            if column not in columns:
                raise ModelRegistryError(
                    f"model '{model_name}': missing_policy names '{key}', which is not one of its inputs"
                    f"{did_you_mean(str(key), columns)}"
                )
            if hasattr(value, "item"):
                value = value.item()
            if value is not None and not isinstance(value, (int, float, str, bool)):
                raise ModelRegistryError(
                    f"model '{model_name}': default for '{key}' must be a number, string or bool"
                )
            defaults[column] = value
        return {"mode": "defaults", "defaults": defaults}
    raise ModelRegistryError(
        f"model '{model_name}': missing_policy must be 'fail', 'null' or a dict of defaults "
        f"{{'feature': value}}, got {policy!r}"
    )
