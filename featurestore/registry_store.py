"""The registry's storage contract: every operation the rest of featurestore needs from a registry backend.

`RegistryStore` is the contract, in the style of httpx's `BaseTransport`: a small class whose methods
state what each promises, and raise NotImplementedError here. `featurestore.registry_sqlite` is the
one backend today (one SQLite file); another (PostgreSQL) is one more module implementing these
methods, run through the same contract tests (`tests/test_registry_store.py`, parametrized over
backends). Nothing outside the backends holds a connection or writes SQL.

Promises every backend keeps:

- Each write operation is atomic: it happens whole or not at all, and concurrent writers (threads,
  processes) are serialized, so a read-then-write inside one operation (a next version number, a
  watermark that only moves forward) cannot race.
- Opening a store applies its ordered schema migrations, each in its own transaction, and records
  the schema version; a store written by a newer schema than the code knows is refused.
- An unreadable store (a corrupt file, a value that does not parse) raises `RegistryError` naming
  the store and suggesting a restore from backup, never a driver's exception.
- Times are timezone-aware UTC datetimes going in; rows coming out carry ISO-8601 text where noted.
- Values documented as JSON-able are stored and returned as the same JSON value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .errors import RegistryError


def unreadable_error(location: str, problem: str) -> RegistryError:
    """The one error for a registry that cannot be read as one: names it and says what to do."""
    return RegistryError(
        f"the registry {location} is corrupt or unreadable ({problem}): restore it from a backup "
        "(`fs registry backup PATH` makes one), or move it aside to start an empty registry"
    )


# (action, kind, name, spec): action is "add", "change" or "remove"; spec is None for "remove".
Change = tuple[str, str, str, "dict[str, Any] | None"]

# table -> its rows, as `RegistryStore.export_rows` returns them.
TableRows = dict[str, list[tuple[Any, ...]]]


@dataclass(frozen=True)
class MaterializationRun:
    """One recorded materialization run of a view: its event-time range and what it wrote."""

    view: str
    start: datetime
    end: datetime
    rows: int
    online_rows: int
    finished_at: datetime
    #: What the run read (`featurestore.offline.fingerprint`); None: unknown (an in-memory source,
    #: or a run recorded before fingerprints were): the run's range is never seen as stale.
    source_fingerprint: str | None = None
    #: Feature statistics of the rows the run wrote (`featurestore.monitoring.stats`); None: none
    #: were computed (no rows, or a run recorded before statistics were).
    stats: dict[str, Any] | None = None


#: The columns of a pipeline run kept beside its JSON record (a run dict has them and the record's keys).
RUN_COLUMNS = ("id", "model", "status", "decision", "step", "started_at", "updated_at")


@dataclass(frozen=True)
class AliasMove:
    """An alias move made in the same transaction as a pipeline run's step (`commit_run_step`)."""

    name: str
    alias: str
    version: int
    actor: str
    #: the version the alias must point at when the move is made (None: it must be unset) ...
    expected: int | None = None
    #: ... checked only when True; False moves it from wherever it points
    check: bool = True


@dataclass(frozen=True)
class RunCommit:
    """What `commit_run_step` did: `committed` False means an expectation failed and nothing changed."""

    committed: bool
    run: dict[str, Any]  # the run as it is after the call
    previous_version: int | None = None  # the alias's version before the move (or now, when not committed)
    conflict: str | None = None  # which expectation failed, in words


class RegistryStore:
    """The operations of a registry backend. Subclass it and implement every method."""

    #: Where the store lives, for messages ("data/registry.db", a database URL without secrets).
    location: str = ""

    # -- lifecycle ---------------------------------------------------------------------------------

    def schema_version(self) -> int:
        """The schema version the store is at (after the migrations applied on open)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release this process's connections; the store may be opened again later."""
        raise NotImplementedError

    def exclusive_lock(self, name: str, wait: bool = True) -> AbstractContextManager[bool] | None:
        """A lock named `name` held across processes AND machines sharing this store, for the one
        writer of a view (`view:<name>`) or the one runner of a model's pipeline (`pipeline:<name>`).
        Entering it yields True once held; with `wait=False` it yields False at once when another
        holder has it. It is released on exit, and when the holding process dies however it dies.
        None: this backend has no such lock (a file on one machine), and the caller's local file
        lock (`fcntl.flock`) serves."""
        return None

    def backup(self, destination: Path) -> None:
        """Write a consistent copy of the whole store to `destination` (a new file), while other
        processes keep reading and writing. The copy opens as a registry. The caller ensures that
        `destination` does not exist."""
        raise NotImplementedError

    # -- copying between backends ------------------------------------------------------------------

    def export_rows(self) -> TableRows:
        """Every row of every table in `REGISTRY_TABLES`, as stored (JSON and times as their text),
        from one consistent snapshot taken while others keep writing: table -> rows, each a tuple in
        the table's column order; tables with an id in id order. For `import_rows` into another
        backend (`fs registry migrate`)."""
        raise NotImplementedError

    def import_rows(self, rows: TableRows) -> None:
        """Write `rows` (as `export_rows` returns them) into this store in one transaction, keeping
        every id, so the copy reads exactly as the original. A store holding any row is refused
        (RegistryError) and left as it was: copies go into a new, empty registry."""
        raise NotImplementedError

    # -- applied definitions -----------------------------------------------------------------------

    def specs(self) -> dict[tuple[str, str], dict[str, Any]]:
        """(kind, name) -> spec of every applied object."""
        raise NotImplementedError

    def objects(self) -> list[dict[str, Any]]:
        """Every applied object, ordered by kind then name: dicts with kind, name, version, spec,
        applied_by, applied_at (ISO text) and location ("file.py:12" where it was defined, or None)."""
        raise NotImplementedError

    def versions(self) -> dict[tuple[str, str], int]:
        """(kind, name) -> version of every applied object."""
        raise NotImplementedError

    def generation(self) -> int:
        """A number that grows with every apply that changed something (0 before the first); cheap."""
        raise NotImplementedError

    def apply(
        self,
        changes: Sequence[Change],
        actor: str,
        stale_views: Sequence[str] = (),
        locations: Mapping[tuple[str, str], str] | None = None,
    ) -> int:
        """Apply `changes` in one transaction and return the generation after it.

        Per change: "add"/"change" store the spec with version + 1 (1 for a new object), "remove"
        deletes the object; each is appended to the object history with `actor` and the time. When
        there are changes: the generation grows by one, an "apply" audit entry is written, and every
        view in `stale_views` is reset (its watermark and online watermarks removed; every run recorded so far stops
        counting for `current_runs`; the reset remembers the new generation, see
        `record_materialization`). Without changes nothing of that happens.

        `locations`: (kind, name) -> where the object is defined. It is stored for every listed
        object that exists after the changes, changed or not, and is no change itself (no version,
        history or generation)."""
        raise NotImplementedError

    # -- watermarks and materialization runs -------------------------------------------------------

    def watermark(self, view: str) -> datetime | None:
        """The view's watermark, or None when it has none (never materialized, or reset)."""
        raise NotImplementedError

    def watermarks(self) -> dict[str, datetime]:
        """view -> watermark, for every view that has one."""
        raise NotImplementedError

    def record_materialization(
        self,
        run: MaterializationRun,
        advance_watermark: bool,
        generation: int | None = None,
        online_store: str | None = None,
    ) -> bool:
        """Record a finished run, atomically with its watermark moves; return whether it was recorded.

        With `advance_watermark`, the view's watermark becomes `run.end` unless it is already later
        (it never moves back). With `online_store` (an online store's identity), the view's online
        watermark for that store moves the same way. `generation`: the generation at which the run
        read the definitions; when the view was reset by a later apply, nothing is recorded and
        False is returned."""
        raise NotImplementedError

    def online_watermarks(self, online_store: str) -> dict[str, datetime]:
        """view -> how far the online store with identity `online_store` holds each view's rows."""
        raise NotImplementedError

    def tracks_online_stores(self) -> bool:
        """Whether an online watermark is recorded for any view and online store."""
        raise NotImplementedError

    def current_runs(self, view: str) -> list[MaterializationRun]:
        """The runs recorded for `view` since its last reset, in the order they were recorded."""
        raise NotImplementedError

    def runs(self, view: str | None = None, limit: int | None = None) -> list[MaterializationRun]:
        """Every run ever recorded (for `view`, or all views), reset or not, in the order recorded;
        with `limit`, the newest `limit` runs only (read as such: not every run, then a slice)."""
        raise NotImplementedError

    # -- audit trail -------------------------------------------------------------------------------

    def audit(self, actor: str, action: str, target: str, detail: Mapping[str, Any]) -> None:
        """Append one entry (stamped with the current time) to the audit trail; `detail` is JSON-able
        (values that are not are stored as their str())."""
        raise NotImplementedError

    def audit_log(self, action: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """The newest `limit` audit entries (only `action`'s when given), newest first: dicts with
        at (ISO text), actor, action, target and detail."""
        raise NotImplementedError

    # -- models ------------------------------------------------------------------------------------

    def models_generation(self) -> int:
        """A number that grows with every model registration and alias change (0 before the first)."""
        raise NotImplementedError

    def add_model_version(self, name: str, build: Callable[[int], dict[str, Any]]) -> int:
        """Record the next version of model `name` and return its number (1 for a new model).

        In one transaction: the next version number is chosen, `build(version)` is called (it may
        move files into place) and returns the version's record (the keys of `MODEL_VERSION_FIELDS`
        but name and version), which is stored; the models generation grows. When `build` raises,
        nothing is recorded and the exception propagates."""
        raise NotImplementedError

    def model_versions(self, name: str | None = None) -> list[dict[str, Any]]:
        """Every version of model `name` (or of all models), ordered by name then version: dicts with
        the keys of `MODEL_VERSION_FIELDS`."""
        raise NotImplementedError

    def model_version(self, name: str, version: int) -> dict[str, Any] | None:
        """One version's record (as in `model_versions`), or None when it does not exist."""
        raise NotImplementedError

    def model_aliases(self, name: str | None = None) -> dict[tuple[str, str], int]:
        """(model, alias) -> version, for model `name` or every model."""
        raise NotImplementedError

    def set_model_alias(self, name: str, alias: str, version: int, actor: str) -> int | None:
        """Point `alias` of `name` at `version`, append the move to the alias history and grow the
        models generation, in one transaction; return the version it pointed at before (or None)."""
        raise NotImplementedError

    def delete_model_alias(self, name: str, alias: str, actor: str) -> int | None:
        """Remove `alias` of `name` (history and generation as in `set_model_alias`); return the
        version it pointed at, or None (and change nothing) when it was not set."""
        raise NotImplementedError

    def model_alias_history(self, name: str) -> list[dict[str, Any]]:
        """The alias moves of model `name`, oldest first: dicts with alias, old_version, new_version
        (None for a deletion), actor and at (ISO text)."""
        raise NotImplementedError

    # -- saved training sets -----------------------------------------------------------------------

    def training_set(self, name: str) -> dict[str, Any] | None:
        """A saved training set: a dict with name, fingerprint, record (JSON-able), description,
        created_by, created_at (ISO text); None when there is none."""
        raise NotImplementedError

    def training_set_names(self) -> list[str]:
        """The names of every saved training set, sorted."""
        raise NotImplementedError

    def save_training_set(self, entry: Mapping[str, Any], before_commit: Callable[[], None]) -> None:
        """Insert or replace the training set `entry` (keys as returned by `training_set`).

        `before_commit()` runs inside the transaction (it moves the entity rows into place); when it
        raises, nothing is stored and the exception propagates."""
        raise NotImplementedError

    # -- pipeline runs -----------------------------------------------------------------------------

    def add_pipeline_run(self, model: str, record: Mapping[str, Any], actor: str) -> dict[str, Any]:
        """Record a new run of model `model`'s training pipeline, with status "running" and step
        "started" (unless `record` sets them), and an audit entry by `actor` ("pipeline_run_start", or
        "pipeline_run_<status>" for a run recorded finished, e.g. skipped), in one transaction; return
        the run.

        A run is a dict with the keys of `RUN_COLUMNS` (id: a number that grows; times as ISO text)
        and of `record` (JSON-able; its keys must not be those of `RUN_COLUMNS` but status, decision
        and step, which set those columns)."""
        raise NotImplementedError

    def pipeline_run(self, run_id: int) -> dict[str, Any] | None:
        """One run (as `add_pipeline_run` returns it), or None."""
        raise NotImplementedError

    def pipeline_runs(
        self,
        model: str | None = None,
        status: str | None = None,
        decision: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """The newest `limit` runs (of `model`, with `status`, with `decision`), newest first."""
        raise NotImplementedError

    def commit_run_step(
        self,
        run_id: int,
        changes: Mapping[str, Any],
        expect: Mapping[str, Any] | None = None,
        alias_move: AliasMove | None = None,
        audit: tuple[str, str, str, Mapping[str, Any]] | None = None,
    ) -> RunCommit:
        """In one transaction: check that the run's fields equal `expect` (e.g. {"step": "decided"})
        and, with `alias_move.check`, that the alias points at `alias_move.expected`; when both hold,
        merge `changes` into the run (status, decision and step set their columns; updated_at is
        stamped), make the alias move (history and models generation as `set_model_alias`) and append
        the `audit` entry (actor, action, target, detail). When one fails, nothing changes and the
        result says which. An unknown run is a RegistryError."""
        raise NotImplementedError

    # -- monitoring profiles -----------------------------------------------------------------------

    def monitor_profile(self, key: str) -> dict[str, Any] | None:
        """A profile monitoring computed once and keeps (e.g. the reference of a model version's
        predictions), or None."""
        raise NotImplementedError

    def save_monitor_profile(self, key: str, body: Mapping[str, Any]) -> None:
        """Insert or replace the profile `key` (`body` is JSON-able)."""
        raise NotImplementedError


#: The fields of a model version record, in order. JSON-able ones: details, signature, metrics,
#: params, tags, missing_policy.
MODEL_VERSION_FIELDS = (
    "name",
    "version",
    "flavor",
    "format",
    "artifact",
    "sha256",
    "size",
    "details",
    "feature_service",
    "signature",
    "training_set",
    "training_fingerprint",
    "metrics",
    "params",
    "tags",
    "description",
    "missing_policy",
    "registered_by",
    "registered_at",
)
MODEL_JSON_FIELDS = frozenset({"details", "signature", "metrics", "params", "tags", "missing_policy"})

#: Every table a registry keeps, with its columns in the order `export_rows` gives them: what a copy
#: between backends carries (`schema_migrations` is each store's own). "id" first: the rows' order
#: (SQLite's rowid where its table has no id column of its own); view_resets.last_run is such an id.
REGISTRY_TABLES: dict[str, tuple[str, ...]] = {
    "objects": ("kind", "name", "version", "spec", "applied_by", "applied_at", "location"),
    "object_history": ("id", "kind", "name", "version", "action", "spec", "applied_by", "applied_at"),
    "watermarks": ("view", "watermark", "updated_at"),
    "materializations": (
        "id",
        "view",
        "start",
        "end",
        "rows",
        "online_rows",
        "finished_at",
        "source_fingerprint",
        "stats",
    ),
    "view_resets": ("view", "at", "generation", "last_run"),
    "audit": ("id", "at", "actor", "action", "target", "detail"),
    "meta": ("key", "value"),
    "model_versions": MODEL_VERSION_FIELDS,
    "model_aliases": ("name", "alias", "version", "set_by", "set_at"),
    "model_alias_history": ("id", "name", "alias", "old_version", "new_version", "actor", "at"),
    "training_sets": ("name", "fingerprint", "record", "description", "created_by", "created_at"),
    "online_watermarks": ("view", "store", "watermark", "updated_at"),
    "monitor_profiles": ("key", "body", "updated_at"),
    "pipeline_runs": ("id", "model", "status", "decision", "step", "started_at", "updated_at", "record"),
}
