"""Training-set lineage: save a training set's fingerprint, find it again, regenerate and compare.

    job = store.get_historical_features(entity_df, features="driver_activity")
    ts = job.save("eta_train")                      # or store.save_training_set("eta_train", job)
    store.training_sets.get("eta_train").fingerprint
    diff = store.training_sets.compare("eta_train")  # regenerate from the recorded inputs
    diff.same, diff.changes                          # e.g. ["column 'conv_rate' changed: ..."]

A fingerprint is made of three parts, each a sha256:

- *definitions*: per feature view used, its registry version and the hash of its spec and of its
  source's spec;
- *entity rows*: the entity columns of the result (every entity row comes back once, in order);
- *result*: every column of the result, hashed one by one, so a comparison can say which changed.

The entity rows are kept (Parquet, under `<registry folder>/training_sets/<name>/`) so the training
set can be regenerated from exactly the same rows. Hashes are over the values (nulls, and the
column's type), not over file bytes, so chunking and Parquet settings do not change them.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import logging
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import FeatureStoreError, ModelRegistryError, unknown
from ..locations import ObjectStore
from ..registry import current_user, utcnow

if TYPE_CHECKING:
    from ..store import FeatureStore

log = logging.getLogger("featurestore.models")

FINGERPRINT_VERSION = 1


# -- hashing Arrow data by value -------------------------------------------------------------------


def value_parts(arr: pa.Array) -> tuple[bytes, bytes | memoryview] | None:
    """What `hash_column` hashes of a column's values after its null bitmap, in order: the values
    (nulls as 0 or False; for strings and bytes, every length), then, for strings and bytes, all the
    bytes. None for the types hashed as JSON (decimals, lists, structs). `arr` is not dictionary-encoded."""
    t = arr.type
    if pa.types.is_timestamp(t) or pa.types.is_date(t) or pa.types.is_time(t) or pa.types.is_duration(t):
        arr = arr.cast(pa.int64() if t.bit_width == 64 else pa.int32())
        t = arr.type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
        filled = pc.fill_null(arr, pa.scalar(False if pa.types.is_boolean(t) else 0, type=t))
        return np.ascontiguousarray(filled.to_numpy(zero_copy_only=False)).tobytes(), b""
    if (
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
    ):
        is_text = pa.types.is_string(t) or pa.types.is_large_string(t)
        filled = pc.fill_null(
            arr.cast(pa.large_string() if is_text else pa.large_binary()), "" if is_text else b""
        )
        filled = pa.concat_arrays([filled])  # a fresh array: offsets start at its own start
        offsets = np.frombuffer(filled.buffers()[1], dtype=np.int64)[
            filled.offset : filled.offset + len(filled) + 1
        ]
        data = filled.buffers()[2]
        body = memoryview(data)[offsets[0] : offsets[-1]] if len(offsets) and data is not None else b""
        return np.diff(offsets).tobytes(), body
    return None


def hash_column(column: pa.ChunkedArray | pa.Array) -> str:
    """sha256 of a column's type, null positions and values; independent of chunking and offsets."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    h = hashlib.sha256(str(arr.type).encode())
    h.update(len(arr).to_bytes(8, "little"))
    h.update(np.packbits(arr.is_null().to_numpy(zero_copy_only=False)).tobytes())
    parts = value_parts(arr)
    if parts is not None:
        h.update(parts[0])
        h.update(parts[1])
    else:  # decimals, lists, structs: rare in training sets; slower but exact
        h.update(json.dumps(arr.to_pylist(), default=str).encode())
    return h.hexdigest()


def hash_table(table: pa.Table) -> tuple[str, dict[str, str]]:
    """(sha256 of the whole table, {column: sha256}) in column order."""
    columns = {name: hash_column(table.column(name)) for name in table.column_names}
    h = hashlib.sha256(table.num_rows.to_bytes(8, "little"))
    for name, digest in columns.items():
        h.update(f"{name}\0{digest}\0".encode())
    return h.hexdigest(), columns


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


# -- records -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingSet:
    """A saved training set: how it was made and the fingerprint of what it held."""

    name: str
    fingerprint: str
    feature_refs: tuple[str, ...]
    full_feature_names: bool
    bitemporal: bool
    definitions: dict[str, dict[str, Any]]
    entity_rows: dict[str, Any]
    result: dict[str, Any]
    entity_path: str  # relative to the training-set root
    description: str = ""
    created_by: str = ""
    created_at: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return int(self.result["rows"])

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class TrainingSetComparison:
    """A saved training set against its regeneration: `same`, and `changes` in words."""

    name: str
    same: bool
    recorded: str
    regenerated: str
    changes: tuple[str, ...]

    def __str__(self) -> str:
        if self.same:
            return f"training set '{self.name}' regenerates identically (fingerprint {self.recorded[:12]})"
        lines = "\n".join(f"  - {c}" for c in self.changes)
        return (
            f"training set '{self.name}' differs from its regeneration "
            f"({self.recorded[:12]} -> {self.regenerated[:12]}):\n{lines}"
        )


class TrainingSets:
    """Saved training sets; get it as `store.training_sets`."""

    def __init__(self, store: FeatureStore):
        self.store = store
        self.registry = store.registry
        self.backend = store.registry.backend
        self.root = Path(store.config.training_sets_path)
        #: `[models] path = "s3://..."`: saved training sets are objects under it (self.root unused)
        url = store.config.training_sets_url
        self.objects = (
            ObjectStore(url, store.config.offline.storage_options, "[models] path")
            if url is not None
            else None
        )

    # -- saving ------------------------------------------------------------------------------------

    def save(
        self, name: str, job: Any, description: str = "", overwrite: bool = False, actor: str | None = None
    ) -> TrainingSet:
        """Record the training set `job` (a RetrievalJob) under `name`; returns the record.

        Saving the same name again is a no-op when the fingerprint is the same, and an error when it
        differs (pass overwrite=True to replace it).
        """
        # a folder name: no path separators, no hidden names, no control characters ("eta\n")
        if (
            not isinstance(name, str)
            or not name
            or "/" in name
            or "\\" in name
            or name.startswith(".")
            or not name.isprintable()
        ):
            raise ModelRegistryError(
                f"training set name {name!r} is invalid: use a plain name such as 'eta_train'"
            )
        inputs = _job_inputs(job)
        staged = None
        if getattr(job, "streams_batches", False):  # the Spark engine: never the whole result here
            staged = Path(tempfile.mkdtemp(prefix="featurestore-training-set-"))
            table, parts = None, self._fingerprint_streamed(inputs, job, staged)
        else:
            table = job.to_arrow()
            parts = self._fingerprint(inputs, table)
        try:
            return self._save(name, table, parts, staged, description, overwrite, actor)
        finally:
            if staged is not None:
                shutil.rmtree(staged, ignore_errors=True)

    def _save(
        self,
        name: str,
        table: pa.Table | None,
        parts: dict[str, Any],
        staged: Path | None,
        description: str,
        overwrite: bool,
        actor: str | None,
    ) -> TrainingSet:
        """save()'s recording: `table` the result in memory, or None with `staged` the folder holding
        it as `result.parquet` and `entity_rows.parquet` (written as it streamed)."""
        existing = self._get(name)
        if existing is not None and not overwrite:
            if existing.fingerprint == parts["fingerprint"]:
                return existing
            raise ModelRegistryError(
                f"training set '{name}' already exists with another fingerprint ({existing.fingerprint[:12]}): "
                "save it under a new name, or pass overwrite=True"
            )
        from ..monitoring.profiles import training_set_profiles

        folder = self.root / name
        if self.objects is None:
            tmp = self.root / f".tmp-{uuid.uuid4().hex}"
            tmp.mkdir(parents=True)
        else:  # written locally, uploaded to a new prefix before the registry's transaction
            tmp = Path(tempfile.mkdtemp(prefix="featurestore-training-set-"))
        # on object storage each save has a prefix of its own (`<name>/<uuid>/`): the upload runs
        # outside the transaction and an overwrite replaces the old files only once it is recorded
        prefix = name if self.objects is None else f"{name}/{uuid.uuid4().hex}"
        entity_columns = parts.pop("entity_columns")
        outputs = [c for c in parts.pop("columns") if c not in set(entity_columns)]
        if table is not None:
            pq.write_table(table.select(entity_columns), tmp / "entity_rows.parquet")
            # The whole result too: monitoring compares what a model serves with it, and scores the
            # model on it for the reference of its predictions.
            pq.write_table(table, tmp / "result.parquet", compression="zstd")
            profiles = training_set_profiles(table, outputs)
        else:
            assert staged is not None
            for part in ("entity_rows.parquet", "result.parquet"):
                shutil.move(str(staged / part), str(tmp / part))
            profiles = _streamed_profiles(tmp / "result.parquet", outputs)
        record = TrainingSet(
            name=name,
            entity_path=f"{prefix}/entity_rows.parquet",
            description=description,
            created_by=actor or current_user(),
            created_at=utcnow().isoformat(),
            extra={"result_path": f"{prefix}/result.parquet", **profiles},
            **parts,
        )
        body = {
            k: v
            for k, v in record.to_dict().items()
            if k not in ("name", "fingerprint", "description", "created_by", "created_at")
        }

        def move_into_place() -> None:  # inside the registry's transaction
            if self.objects is not None:
                return  # uploaded already
            if folder.exists():
                shutil.rmtree(folder)
            tmp.rename(folder)

        try:
            if self.objects is not None:
                for file in sorted(tmp.iterdir()):
                    self.objects.upload(file, self.objects.url(prefix, file.name))
            entry = {
                "name": name,
                "fingerprint": record.fingerprint,
                "record": json.loads(json.dumps(body, sort_keys=True)),
                "description": description,
                "created_by": record.created_by,
                "created_at": record.created_at,
            }
            self.backend.save_training_set(entry, move_into_place)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            if self.objects is not None:  # named by no record
                self._delete_objects([f"{prefix}/entity_rows.parquet", f"{prefix}/result.parquet"])
            raise
        if self.objects is not None:
            shutil.rmtree(tmp, ignore_errors=True)
            if existing is not None:  # the files of the record this one replaced
                old = [existing.entity_path, str(existing.extra.get("result_path") or "")]
                self._delete_objects([p for p in old if p and not p.startswith(f"{prefix}/")])
        self.registry.audit(
            "training_set_save",
            f"training_set:{name}",
            {"fingerprint": record.fingerprint, "rows": record.rows},
            actor=record.created_by,
        )
        return record

    def _fingerprint(self, inputs: dict[str, Any], table: pa.Table) -> dict[str, Any]:
        """The fingerprint's parts of the result `table` (see the module docstring)."""
        _, column_shas = hash_table(table)
        return self._fingerprint_of(inputs, table.num_rows, column_shas)

    def _fingerprint_streamed(self, inputs: dict[str, Any], job: Any, folder: Path) -> dict[str, Any]:
        """`_fingerprint` of `job`'s result read a batch at a time (`job.to_batches()`), which is
        written to `folder` as it goes by (`result.parquet`, `entity_rows.parquet`)."""
        from ..catalog import output_names
        from .batch_hash import TableHasher

        requests = self.store.catalog.resolve(inputs["features"])
        outputs = {c for cols in output_names(requests, inputs["full_feature_names"]) for c in cols}
        batches = job.to_batches()
        first = next(batches, None)
        if first is None:  # no rows: the empty result's schema
            empty = job.to_arrow()
            pq.write_table(
                empty.select([c for c in empty.column_names if c not in outputs]),
                folder / "entity_rows.parquet",
            )
            pq.write_table(empty, folder / "result.parquet", compression="zstd")
            return self._fingerprint(inputs, empty)
        schema = first.schema
        entity_columns = [c for c in schema.names if c not in outputs]
        hasher = TableHasher(schema)
        with (
            pq.ParquetWriter(folder / "result.parquet", schema, compression="zstd") as result,
            pq.ParquetWriter(
                folder / "entity_rows.parquet", pa.schema([schema.field(c) for c in entity_columns])
            ) as entity,
        ):
            for batch in _chain(first, batches):
                hasher.update(batch)
                result.write_batch(batch)
                entity.write_batch(batch.select(entity_columns))
        _, column_shas = hasher.digest()
        return self._fingerprint_of(inputs, hasher.rows, column_shas)

    def _fingerprint_of(
        self, inputs: dict[str, Any], rows: int, column_shas: dict[str, str]
    ) -> dict[str, Any]:
        from ..catalog import OnDemandRequest, output_names
        from .batch_hash import combine

        catalog = self.store.catalog
        requests = catalog.resolve(inputs["features"])
        outputs = [c for cols in output_names(requests, inputs["full_feature_names"]) for c in cols]
        refs = tuple(f"{r.view.name}:{f}" for r in requests for f in r.features)
        versions = self.registry.versions()
        definitions: dict[str, dict[str, Any]] = {}
        views = []  # the views read: those asked for, and the inputs of on-demand views
        for r in requests:
            if isinstance(r, OnDemandRequest):  # its spec holds its function's source hash; no source
                definitions[r.view.name] = {
                    "version": versions.get((r.view.kind, r.view.name)),
                    "spec_sha256": _sha(r.view.to_spec()),
                    "source": None,
                    "source_version": None,
                    "source_spec_sha256": "",
                }
                views += [catalog.view(p.view_name) for p in r.view.projections]
            else:
                views.append(r.view)
        for view in views:
            source = view.source
            definitions[view.name] = {
                "version": versions.get(("feature_view", view.name)),
                "spec_sha256": _sha(view.to_spec()),
                "source": source.name,
                "source_version": versions.get(("source", source.name)),
                "source_spec_sha256": _sha(source.to_spec()),
            }
        entity_columns = [c for c in column_shas if c not in set(outputs)]
        entity_sha = combine(rows, {c: column_shas[c] for c in entity_columns})
        result_sha = combine(rows, column_shas)
        fingerprint = _sha(
            {
                "v": FINGERPRINT_VERSION,
                "refs": refs,
                "full": inputs["full_feature_names"],
                "bitemporal": inputs["bitemporal"],
                "definitions": {
                    v: d["spec_sha256"] + d["source_spec_sha256"] for v, d in definitions.items()
                },
                "entity": entity_sha,
                "result": result_sha,
            }
        )
        return {
            "fingerprint": fingerprint,
            "feature_refs": refs,
            "full_feature_names": inputs["full_feature_names"],
            "bitemporal": inputs["bitemporal"],
            "definitions": definitions,
            "entity_rows": {"sha256": entity_sha, "rows": rows, "columns": entity_columns},
            "result": {"sha256": result_sha, "rows": rows, "columns": column_shas},
            "entity_columns": entity_columns,
            "columns": list(column_shas),
        }

    # -- reading -----------------------------------------------------------------------------------

    def _get(self, name: str) -> TrainingSet | None:
        entry = self.backend.training_set(name)
        if entry is None:
            return None
        body = dict(entry["record"])
        body["feature_refs"] = tuple(body["feature_refs"])
        return TrainingSet(
            name=entry["name"],
            fingerprint=entry["fingerprint"],
            description=entry["description"],
            created_by=entry["created_by"],
            created_at=entry["created_at"],
            **body,
        )

    def get(self, name: str) -> TrainingSet:
        """The saved training set `name` (UnknownNameError with a suggestion when there is none)."""
        found = self._get(name)
        if found is None:
            raise unknown("training set", name, self.names())
        return found

    def names(self) -> list[str]:
        return self.backend.training_set_names()

    def list(self) -> list[TrainingSet]:
        return [self.get(n) for n in self.names()]

    def entity_rows(self, name: str) -> pa.Table:
        """The entity rows the training set was made from (entity columns of its result)."""
        return self._read(self.get(name).entity_path)

    def result(self, name: str) -> pa.Table | None:
        """The whole saved result of `name` (entity columns and features), or None for a training
        set saved before results were kept (regenerate it: `regenerate(name)`)."""
        path = self.get(name).extra.get("result_path")
        if not path:
            return None
        if self.objects is not None:
            return self._read(path) if self.objects.exists(self.objects.url(path)) else None
        if not (self.root / path).is_file():
            return None
        return pq.read_table(self.root / path)

    def _delete_objects(self, paths: builtins.list[str]) -> None:
        """Delete saved files from object storage, best effort: one left over is named by no record."""
        assert self.objects is not None
        for path in paths:
            try:
                self.objects.delete(self.objects.url(path))
            except FeatureStoreError as e:
                log.warning("training sets: could not delete %s: %s", self.objects.url(path), e)

    def _read(self, path: str) -> pa.Table:
        """A saved file (`<name>/<file>.parquet`), from the local folder or object storage."""
        if self.objects is not None:
            return pq.read_table(self.objects.url(path), filesystem=self.objects.fs)
        return pq.read_table(self.root / path)

    # -- regenerating --------------------------------------------------------------------------------

    def regenerate(self, name: str) -> Any:
        """Run the retrieval again from the recorded inputs; returns a RetrievalJob."""
        ts = self.get(name)
        return self.store.get_historical_features(
            self.entity_rows(name),
            features=list(ts.feature_refs),
            full_feature_names=ts.full_feature_names,
            bitemporal=ts.bitemporal,
        )

    def compare(self, name: str) -> TrainingSetComparison:
        """Regenerate `name` and say whether it is the same, and if not what changed."""
        ts = self.get(name)
        job = self.regenerate(name)
        inputs = {
            "features": list(ts.feature_refs),
            "full_feature_names": ts.full_feature_names,
            "bitemporal": ts.bitemporal,
        }
        if getattr(job, "streams_batches", False):  # the Spark engine: never the whole result here
            staged = Path(tempfile.mkdtemp(prefix="featurestore-training-set-"))
            try:
                now = self._fingerprint_streamed(inputs, job, staged)
            finally:
                shutil.rmtree(staged, ignore_errors=True)
        else:
            now = self._fingerprint(inputs, job.to_arrow())
        return TrainingSetComparison(
            name,
            now["fingerprint"] == ts.fingerprint,
            ts.fingerprint,
            now["fingerprint"],
            tuple(_changes(ts, now)),
        )


def _changes(ts: TrainingSet, now: dict[str, Any]) -> list[str]:
    changes: list[str] = []
    for view, old in ts.definitions.items():
        new = now["definitions"].get(view)
        if new is None:
            changes.append(f"feature view '{view}' is no longer applied")
            continue
        if old["spec_sha256"] != new["spec_sha256"]:
            changes.append(
                f"feature view '{view}' definition changed (version {old['version']} -> {new['version']})"
            )
        if old["source_spec_sha256"] != new["source_spec_sha256"]:
            changes.append(
                f"source '{new['source']}' of view '{view}' changed "
                f"(version {old['source_version']} -> {new['source_version']})"
            )
    old_e, new_e = ts.entity_rows, now["entity_rows"]
    if old_e["sha256"] != new_e["sha256"]:
        changes.append(f"entity rows changed ({old_e['rows']} -> {new_e['rows']} rows)")
    old_r, new_r = ts.result, now["result"]
    if old_r["rows"] != new_r["rows"]:
        changes.append(f"row count changed: {old_r['rows']} -> {new_r['rows']}")
    for col in old_r["columns"]:
        if col not in new_r["columns"]:
            changes.append(f"column '{col}' is gone")
        elif old_r["columns"][col] != new_r["columns"][col] and col not in old_e["columns"]:
            changes.append(f"column '{col}' changed")
    changes += [f"column '{c}' is new" for c in new_r["columns"] if c not in old_r["columns"]]
    only_values = changes and all(c.startswith("column '") and c.endswith("changed") for c in changes)
    if only_values:
        changes.append(
            "definitions and entity rows are the same: the source data (or offline storage) changed"
        )
    return changes


def _job_inputs(job: Any) -> dict[str, Any]:
    """The inputs a RetrievalJob was made from (features, full_feature_names, bitemporal)."""
    features = getattr(job, "features", None)
    if features is None or not hasattr(job, "to_arrow"):
        raise ModelRegistryError(
            f"cannot save {type(job).__name__!r} as a training set: pass the job that "
            "store.get_historical_features(...) returned"
        )
    if hasattr(features, "name") and hasattr(features, "features"):  # a FeatureService object
        features = features.name
    return {
        "features": features,
        "full_feature_names": bool(getattr(job, "full_feature_names", False)),
        "bitemporal": bool(getattr(job, "bitemporal", False)),
    }


def _chain(first: pa.RecordBatch, rest: Any) -> Any:
    yield first
    yield from rest


def _streamed_profiles(path: Path, outputs: list[str]) -> dict[str, Any]:
    """training_set_profiles of the result saved at `path`: the statistics by DuckDB over the file,
    the drift reference one column at a time (it bins the whole column)."""
    from ..monitoring.bins import column_profile
    from ..monitoring.stats import profile_relation
    from ..offline.sources import duckdb_connection, quote_literal

    con = duckdb_connection()
    try:
        profile = profile_relation(
            con, f"read_parquet({quote_literal(str(path))})", outputs, of="training_set"
        )
    finally:
        con.close()
    reference = {c: column_profile(pq.read_table(path, columns=[c]).column(0)) for c in outputs}
    return {"profile": profile, "reference": reference}
