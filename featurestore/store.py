"""FeatureStore: the one object users hold. A thin facade over the parts of the package.

store = FeatureStore("definitions")   # or FeatureStore() for the repo in the current folder
store.apply()
store.materialize("2026-01-01", "2026-01-31")
training = store.get_historical_features(entity_df, features="driver_activity").to_pandas()
online = store.get_online_features(["driver_hourly_stats:conv_rate"], [{"driver_id": 1001}]).to_dict()
"""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from .catalog import Catalog
from .config import RepoConfig, find_repo, load_config
from .errors import DefinitionError, FeatureStoreError, NotAppliedError, RegistryError
from .online import lookup as online_lookup  # imported once: the per-request path stays short
from .plan import Plan, diff
from .registry import Registry

if TYPE_CHECKING:
    from .governance import Governance
    from .materialize import MaterializeResult
    from .models.lineage import TrainingSet, TrainingSets
    from .models.registry import ModelRegistry
    from .monitoring import Monitor
    from .offline.retrieval import RetrievalJob
    from .offline.storage import OfflineStorage
    from .online.base import OnlineStore
    from .online.lookup import PendingLookup
    from .online.response import OnlineResponse
    from .pipelines import Pipelines


CATALOG_POLL_SECONDS = 1.0
REGISTRY_WARNING_SECONDS = 60.0  # at most one "registry unreachable" warning a minute
REGISTRY_RETRY_SECONDS = 10.0  # after a failed poll, the cached definitions serve this long
_registry_warned_at = -REGISTRY_WARNING_SECONDS


def _warn_registry_unreachable(error: RegistryError) -> None:
    """Log, at most every REGISTRY_WARNING_SECONDS, that the cached definitions are served because
    the registry cannot be reached."""
    global _registry_warned_at
    now = time.monotonic()
    if now - _registry_warned_at >= REGISTRY_WARNING_SECONDS:
        _registry_warned_at = now
        logging.getLogger(__name__).warning(
            "the registry cannot be reached, serving the definitions read before: %s", error
        )


class FeatureStore:
    """A feature repo opened for use: its config, registry, offline storage and online store.

    The definitions it serves are the *applied* ones (the registry); `apply()` records the repo's.
    """

    def __init__(self, repo_path: str | os.PathLike[str] | None = None, config: RepoConfig | None = None):
        self.config = config or load_config(find_repo(repo_path))
        self.repo_path = self.config.repo_path
        self._lock = threading.RLock()
        self._catalog: Catalog | None = None
        self._catalog_generation = -1
        self._live: Catalog | None = None  # what this process applied (keeps in-memory DataFrameSources)
        self._live_generation = -1
        self._checked_at = 0.0

    # -- parts, built on first use -------------------------------------------------------------

    @cached_property
    def registry(self) -> Registry:
        from .registry import open_registry

        return open_registry(self.config)

    @cached_property
    def online_store(self) -> OnlineStore:
        from .online import open_online_store

        return open_online_store(self.config)

    @cached_property
    def offline_storage(self) -> OfflineStorage:
        from .keys import file_key_types
        from .offline.storage import OfflineStorage

        # A stored file whose keys are not of the view's key type is damaged (quarantined or rebuilt).
        # A view's writer lock: the registry's own when it has one (PostgreSQL), so writers on every
        # machine sharing the registry take turns; asked for lazily, when a write needs it.
        key_types = lambda view: file_key_types(self, view)  # noqa: E731
        lock = lambda name: self.registry.backend.exclusive_lock(name)  # noqa: E731
        if self.config.offline_url is not None:  # s3://...: a manifest per view (offline/object_storage.py)
            from .offline.object_storage import ObjectOfflineStorage

            return ObjectOfflineStorage(
                self.config.offline_url,
                self.config.offline.storage_options,
                self.config.offline_path,
                key_types,
                lock=lock,
            )
        return OfflineStorage(self.config.offline_path, key_types, lock=lock)

    @cached_property
    def models(self) -> ModelRegistry:
        """The model registry (SPEC §9): register, alias and load models; see featurestore.models."""
        from .models.registry import ModelRegistry

        return ModelRegistry(self)

    @cached_property
    def training_sets(self) -> TrainingSets:
        """Saved training sets with their fingerprints; see featurestore.models.lineage."""
        from .models.lineage import TrainingSets

        return TrainingSets(self)

    @cached_property
    def monitor(self) -> Monitor:
        """Monitoring (SPEC §12): statistics, drift, skew, freshness, live performance, reports."""
        from .monitoring import Monitor

        return Monitor(self)

    @cached_property
    def governance(self) -> Governance:
        """Who may do what (SPEC §13): roles, protected aliases; see featurestore.governance."""
        from .governance import Governance

        return Governance(self.config.governance, self.registry)

    @cached_property
    def pipelines(self) -> Pipelines:
        """Training pipelines (SPEC §13): run, resume and list runs; see featurestore.pipelines."""
        from .pipelines import Pipelines

        return Pipelines(self)

    def save_training_set(
        self, name: str, job: RetrievalJob, description: str = "", overwrite: bool = False
    ) -> TrainingSet:
        """Save the training set of a RetrievalJob under `name`, with its fingerprint (same as `job.save(name)`)."""
        return self.training_sets.save(name, job, description=description, overwrite=overwrite)

    # -- definitions -----------------------------------------------------------------------------

    def load_repo(self) -> Catalog:
        """Import and validate the repo's definition files (raises RepoError listing every problem)."""
        from .repo import load_repo

        return load_repo(self.config)

    @property
    def catalog(self) -> Catalog:
        """The applied definitions.

        Re-read only when the registry's generation changes, and the generation itself is polled at
        most every CATALOG_POLL_SECONDS, so the online read path costs no registry access: an apply
        in this process shows at once, one from another process within a second."""
        now = time.monotonic()
        with self._lock:
            catalog = self._catalog
            if catalog is None or now - self._checked_at > CATALOG_POLL_SECONDS:
                try:
                    generation = self.registry.generation()
                except RegistryError as e:
                    if catalog is None:
                        raise
                    # A registry out of reach (a restart, a network cut) does not stop serving: the
                    # definitions read last stay in use, and the poll (which may have waited for a
                    # connect timeout) is tried again only REGISTRY_RETRY_SECONDS later.
                    _warn_registry_unreachable(e)
                    generation = self._catalog_generation
                    now = time.monotonic() + REGISTRY_RETRY_SECONDS - CATALOG_POLL_SECONDS
                self._checked_at = now
                if catalog is None or generation != self._catalog_generation:
                    if self._live is not None and self._live_generation == generation:
                        catalog = self._live
                    else:
                        catalog = self._applied_catalog()
                    self._catalog, self._catalog_generation = catalog, generation
        if catalog.is_empty:
            raise NotAppliedError(
                f"nothing has been applied to the registry of '{self.config.project}' ({self.config.registry_location}): "
                "run `fs apply` (or store.apply()) first"
            )
        return catalog

    def _applied_catalog(self) -> Catalog:
        specs = self.registry.specs()
        try:
            return Catalog.from_specs(specs)
        except (KeyError, TypeError, ValueError, AttributeError, DefinitionError) as e:
            # Specs were valid when applied: one that no longer builds is damage (or a foreign release).
            raise self.registry.unreadable(
                f"an applied definition cannot be read: {type(e).__name__}: {e}"
            ) from e

    def refresh(self) -> None:
        """Forget cached definitions; the next use re-reads the registry."""
        with self._lock:
            self._catalog = None

    def plan(self, catalog: Catalog | None = None) -> Plan:
        """What `apply()` would add, change (field by field) and remove, object by object."""
        catalog = catalog if catalog is not None else self.load_repo()
        return diff(self.registry.specs(), catalog.specs())

    def apply(self, catalog: Catalog | None = None) -> Plan:
        """Validate the repo and record its definitions in the registry, all or nothing.
        Governed: the CLI / Python user ($FS_USER) needs the admin role when users are configured."""
        self.governance.check("apply", f"project:{self.config.project}")
        catalog = catalog if catalog is not None else self.load_repo()
        plan = diff(self.registry.specs(), catalog.specs())
        generation = self.registry.apply(
            [(c.action, c.kind, c.name, c.spec) for c in plan.pending],
            stale_views=plan.stale,
            locations=catalog.locations,
        )
        with self._lock:
            self._live = catalog
            self._live_generation = generation
            self._catalog = None
        # A removed view's online rows go with it (its offline Parquet history stays on disk).
        for name in [c.name for c in plan.pending if c.kind == "feature_view" and c.action == "remove"]:
            try:
                self.online_store.delete_view(name)
            except FeatureStoreError as e:
                warnings.warn(
                    f"view '{name}' was removed but its online rows could not be deleted: {e}", stacklevel=2
                )
        return plan

    # -- materialization -------------------------------------------------------------------------

    def materialize(
        self,
        start: datetime | str,
        end: datetime | str,
        views: list[str] | None = None,
        progress: bool = False,
    ) -> MaterializeResult:
        """Write source rows with start <= event time <= end to offline storage, and the latest row per
        entity to the online store; see featurestore.materialize."""
        from .materialize import materialize

        return materialize(self, start, end, views=views, progress=progress)

    def materialize_incremental(
        self, end: datetime | str | None = None, views: list[str] | None = None, progress: bool = False
    ) -> MaterializeResult:
        """Materialize each view from its watermark up to `end` (default: now)."""
        from .materialize import materialize_incremental

        return materialize_incremental(self, end, views=views, progress=progress)

    # -- retrieval -------------------------------------------------------------------------------

    def get_historical_features(
        self,
        entity_df: Any = None,
        features: Any = None,
        full_feature_names: bool = False,
        bitemporal: bool = False,
        spine: str | None = None,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
    ) -> RetrievalJob:
        """A point-in-time-correct training set (SPEC §6) as a RetrievalJob (to_pandas/to_arrow/to_parquet).

        The entity rows are `entity_df`, or the rows of `spine` (a source or feature view name) with
        start <= timestamp <= end (SPEC §11)."""
        from .offline.retrieval import get_historical_features

        return get_historical_features(
            self,
            entity_df,
            features,
            full_feature_names=full_feature_names,
            bitemporal=bitemporal,
            spine=spine,
            start=start,
            end=end,
        )

    def get_online_features(
        self, features: Any, entity_rows: Any, full_feature_names: bool = False
    ) -> OnlineResponse:
        """The latest feature values for entity rows, with a status per value (SPEC §7)."""
        return online_lookup.get_online_features(
            self, features, entity_rows, full_feature_names=full_feature_names
        )

    async def get_online_features_async(
        self, features: Any, entity_rows: Any, full_feature_names: bool = False
    ) -> OnlineResponse:
        """`get_online_features` for asyncio code: the online store round trip does not block the loop."""
        return await online_lookup.get_online_features_async(
            self, features, entity_rows, full_feature_names=full_feature_names
        )

    def start_online_lookup(
        self, features: Any, entity_rows: Any, full_feature_names: bool = False
    ) -> PendingLookup:
        """`get_online_features_async`, begun at once: the online store request is on its way when this
        returns (Redis), so other work overlaps the round trip. From a coroutine: `await` the result for
        the OnlineResponse, or call its `discard()` (featurestore.online.lookup.PendingLookup)."""
        return online_lookup.start_online_lookup(
            self, features, entity_rows, full_feature_names=full_feature_names
        )

    def push(self, source_name: str, df: Any, to: str = "online") -> int:
        """Validate rows against the views of a PushSource and write them to "online", "offline" or "both"."""
        from .push import push

        return push(self, source_name, df, to=to)

    def close(self) -> None:
        if "online_store" in self.__dict__:
            self.online_store.close()
