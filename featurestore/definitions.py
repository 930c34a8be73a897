"""What users write in their feature repo: entities, fields, sources, feature views, services.

Plain, frozen, validated data; no I/O. Each object has a `to_spec()` dict (what the registry stores
and `fs plan` diffs) and a `from_spec()` to rebuild it.

    driver = Entity(name="driver", join_keys=["driver_id"])
    stats = ParquetSource(name="driver_stats", path="data/driver_stats.parquet",
                          timestamp_field="event_timestamp", created_timestamp_field="created")
    hourly = FeatureView(name="driver_hourly_stats", entities=[driver], ttl=timedelta(days=1),
                         schema=[Field("conv_rate", Float64)], source=stats)
    service = FeatureService(name="driver_activity", features=[hourly[["conv_rate"]]])
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar

import pyarrow as pa

from .errors import DefinitionError
from .sites import record_site
from .types import ValueType

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # fullmatch: `match` with `$` lets "name\n" through
RESERVED_COLUMNS = ("event_timestamp",)  # the entity_df's timestamp column; not usable as a feature name


def _check_name(kind: str, name: Any) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name.startswith("__"):
        raise DefinitionError(
            f"{kind} name {name!r} is invalid: use letters, digits and underscores, not starting with a digit "
            "(names starting with '__' are reserved)"
        )


def _tags(kind: str, name: str, tags: Any) -> dict[str, str]:
    checked: dict[str, str] = dict(tags or {})
    for k, v in checked.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise DefinitionError(f"{kind} '{name}': tags must map strings to strings, got {k!r}: {v!r}")
    return checked


def _freeze(obj: Any, **values: Any) -> None:
    for k, v in values.items():
        object.__setattr__(obj, k, v)


# ---------------------------------------------------------------------------------------------
# Entities and fields


@dataclass(frozen=True)
class Entity:
    """Something features describe, identified by one or more join keys (a composite key).

    driver = Entity(name="driver", join_keys=["driver_id"])
    trip = Entity(name="route", join_keys=["origin_id", "destination_id"])
    """

    kind: ClassVar[str] = "entity"
    name: str
    join_keys: tuple[str, ...] = ()
    description: str = ""
    owner: str = ""
    tags: dict[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        _check_name("entity", self.name)
        record_site(self)  # where it is defined, for the registry (not part of the spec)
        keys = tuple(self.join_keys) if self.join_keys else (self.name,)
        if isinstance(self.join_keys, str):
            keys = (self.join_keys,)
        for k in keys:
            _check_name(f"entity '{self.name}': join key", k)
        if len(set(keys)) != len(keys):
            raise DefinitionError(f"entity '{self.name}': join keys {list(keys)} repeat a name")
        _freeze(self, join_keys=keys, tags=_tags("entity", self.name, self.tags))

    def to_spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "join_keys": list(self.join_keys),
            "description": self.description,
            "owner": self.owner,
            "tags": dict(self.tags),
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Entity:
        return cls(**spec)


class EntityRef(Entity):
    """An entity named by a string in `FeatureView(entities=["driver"])`; the repo loader resolves it.

    Its join keys are unknown until then (empty), so no schema field is taken for a key by guess: the
    loader rebuilds the view with the named Entity, which decides keys and features as an Entity
    object given directly would.
    """

    def __init__(self, name: str):
        super().__init__(name=name)
        _freeze(self, join_keys=())


@dataclass(frozen=True)
class Field:
    """A named, typed column of a feature view: `Field("conv_rate", Float64)`."""

    name: str
    dtype: ValueType
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        _check_name("field", self.name)
        if not isinstance(self.dtype, ValueType):
            raise DefinitionError(
                f"field '{self.name}': dtype must be a featurestore value type such as Float64, got {self.dtype!r}"
            )
        _freeze(self, tags=_tags("field", self.name, self.tags))

    def to_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"name": self.name, "dtype": self.dtype.to_spec()}
        if self.description:
            spec["description"] = self.description
        if self.tags:
            spec["tags"] = dict(self.tags)
        return spec

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Field:
        return cls(
            name=spec["name"],
            dtype=ValueType.from_spec(spec["dtype"]),
            description=spec.get("description", ""),
            tags=spec.get("tags", {}),
        )


# ---------------------------------------------------------------------------------------------
# Sources


@dataclass(frozen=True)
class DataSource:
    """Base of every source: where a feature view's rows come from and which column holds their time."""

    kind: ClassVar[str] = "source"
    source_type: ClassVar[str] = ""
    name: str
    timestamp_field: str = "event_timestamp"
    created_timestamp_field: str | None = None
    description: str = ""
    owner: str = ""
    tags: dict[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        _check_name("source", self.name)
        record_site(self)  # where it is defined, for the registry (not part of the spec)
        _check_name(f"source '{self.name}': timestamp_field", self.timestamp_field)
        if self.created_timestamp_field is not None:
            _check_name(f"source '{self.name}': created_timestamp_field", self.created_timestamp_field)
        _freeze(self, tags=_tags("source", self.name, self.tags))

    def to_spec(self) -> dict[str, Any]:
        spec = {
            "type": self.source_type,
            "name": self.name,
            "timestamp_field": self.timestamp_field,
            "created_timestamp_field": self.created_timestamp_field,
            "description": self.description,
            "owner": self.owner,
            "tags": dict(self.tags),
        }
        spec.update(self._location_spec())
        return spec

    def _location_spec(self) -> dict[str, Any]:
        return {}

    @staticmethod
    def from_spec(spec: dict[str, Any]) -> DataSource:
        spec = dict(spec)
        cls = _SOURCE_TYPES.get(spec.pop("type", None))
        if cls is None:
            raise DefinitionError(f"source '{spec.get('name')}': unknown source type in registry")
        return cls._from_spec(spec)

    @classmethod
    def _from_spec(cls, spec: dict[str, Any]) -> DataSource:
        return cls(**spec)


@dataclass(frozen=True)
class ParquetSource(DataSource):
    """Parquet file(s); `path` is relative to the feature repo and may be a glob (`data/*.parquet`)."""

    source_type: ClassVar[str] = "parquet"
    path: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.path:
            raise DefinitionError(f"source '{self.name}': ParquetSource needs a path")

    def _location_spec(self) -> dict[str, Any]:
        return {"path": self.path}


@dataclass(frozen=True)
class CsvSource(DataSource):
    """CSV file(s) with a header row; `path` is relative to the feature repo and may be a glob."""

    source_type: ClassVar[str] = "csv"
    path: str = ""
    delimiter: str = ","

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.path:
            raise DefinitionError(f"source '{self.name}': CsvSource needs a path")

    def _location_spec(self) -> dict[str, Any]:
        return {"path": self.path, "delimiter": self.delimiter}


@dataclass(frozen=True)
class DuckDBSource(DataSource):
    """A table of a DuckDB database file, or a SQL query.

    A query may name other sources of the repo as tables: `SELECT * FROM driver_stats WHERE ...`.
    `database` is a DuckDB file relative to the repo; without it the query runs over the repo's sources.
    """

    source_type: ClassVar[str] = "duckdb"
    table: str | None = None
    query: str | None = None
    database: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.table is None) == (self.query is None):
            raise DefinitionError(f"source '{self.name}': DuckDBSource needs exactly one of table= or query=")

    def _location_spec(self) -> dict[str, Any]:
        return {"table": self.table, "query": self.query, "database": self.database}


@dataclass(frozen=True, eq=False)
class DataFrameSource(DataSource):
    """An in-memory pandas DataFrame or Arrow table, for notebooks and tests.

    Its rows live in the Python process that defined it; the registry records only its schema and a
    fingerprint of its contents.
    """

    source_type: ClassVar[str] = "dataframe"
    df: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.df is None:
            raise DefinitionError(
                f"source '{self.name}': DataFrameSource needs df= (a pandas DataFrame or Arrow table)"
            )
        _freeze(self, df=to_arrow_table(self.df, f"source '{self.name}'"))

    @property
    def table(self) -> pa.Table:
        return self.df

    def _location_spec(self) -> dict[str, Any]:
        # The data itself is not stored: a fingerprint shows when it changed.
        digest = hashlib.sha256()
        digest.update(self.df.schema.to_string().encode())
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, self.df.schema) as writer:
            writer.write_table(self.df)
        digest.update(sink.getvalue().to_pybytes())
        return {
            "schema": [f"{f.name}: {f.type}" for f in self.df.schema],
            "fingerprint": digest.hexdigest()[:16],
        }

    @classmethod
    def _from_spec(cls, spec: dict[str, Any]) -> DataSource:
        spec.pop("schema", None)
        spec.pop("fingerprint", None)
        return DetachedDataFrameSource(**spec)


@dataclass(frozen=True)
class DetachedDataFrameSource(DataSource):
    """A DataFrameSource read back from the registry in another process: its rows are not available."""

    source_type: ClassVar[str] = "dataframe"


@dataclass(frozen=True)
class PushSource(DataSource):
    """Rows pushed by applications (`store.push(name, df)`), for fresh data.

    `batch_source` (optional) holds the historical rows of the same shape; materialization reads it.
    """

    source_type: ClassVar[str] = "push"
    batch_source: DataSource | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.batch_source is not None:
            if not isinstance(self.batch_source, DataSource) or isinstance(self.batch_source, PushSource):
                raise DefinitionError(
                    f"source '{self.name}': batch_source must be a batch source (Parquet, CSV, ...)"
                )
            _freeze(
                self,
                timestamp_field=self.batch_source.timestamp_field,
                created_timestamp_field=self.batch_source.created_timestamp_field,
            )

    def _location_spec(self) -> dict[str, Any]:
        return {"batch_source": self.batch_source.to_spec() if self.batch_source else None}

    @classmethod
    def _from_spec(cls, spec: dict[str, Any]) -> DataSource:
        batch = spec.pop("batch_source", None)
        return cls(**spec, batch_source=DataSource.from_spec(batch) if batch else None)


_SOURCE_TYPES: dict[str | None, type[DataSource]] = {
    c.source_type: c for c in (ParquetSource, CsvSource, DuckDBSource, DataFrameSource, PushSource)
}


def to_arrow_table(data: Any, what: str) -> pa.Table:
    """A pandas DataFrame, Arrow table or record batch as an Arrow table (pandas index dropped)."""
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency
        pass
    else:
        if isinstance(data, pd.DataFrame):
            return pa.Table.from_pandas(data, preserve_index=False)
    raise DefinitionError(f"{what}: expected a pandas DataFrame or an Arrow table, got {type(data).__name__}")


# ---------------------------------------------------------------------------------------------
# Feature views and services


@dataclass(frozen=True)
class FeatureView:
    """A group of features of one or more entities, read from one source.

    `ttl` is the lookback window: a feature row older than ttl is not used for a training row, and
    is reported `OUTSIDE_MAX_AGE` online. `None` means unbounded. Fields in `schema` that are named
    like a join key declare the key's type and are not features.
    """

    kind: ClassVar[str] = "feature_view"
    name: str
    entities: tuple[Entity, ...] = ()
    schema: tuple[Field, ...] = ()
    # Every FeatureView has a source (__post_init__ refuses one without). The None default only keeps
    # the field order and turns a missing source into a DefinitionError; dataclasses cannot say
    # "required, validated later" for a field after defaulted ones.
    source: DataSource = None  # type: ignore[assignment]
    ttl: timedelta | None = None
    online: bool = True
    description: str = ""
    owner: str = ""
    tags: dict[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        _check_name("feature view", self.name)
        record_site(self)  # where it is defined, for the registry (not part of the spec)
        where = f"feature view '{self.name}'"
        entities = tuple(EntityRef(e) if isinstance(e, str) else e for e in (self.entities or ()))
        if not entities:
            raise DefinitionError(f"{where}: needs at least one entity (entities=[...])")
        for e in entities:
            if not isinstance(e, Entity):
                raise DefinitionError(f"{where}: entities must be Entity objects, got {e!r}")
        keys = [k for e in entities for k in e.join_keys]
        if len(set(keys)) != len(keys):
            raise DefinitionError(f"{where}: its entities share a join key ({keys}); a key may appear once")
        if not isinstance(self.source, DataSource):
            raise DefinitionError(
                f"{where}: source must be a source (ParquetSource, ...), got {self.source!r}"
            )
        schema = tuple(self.schema or ())
        seen: set[str] = set()
        for f in schema:
            if not isinstance(f, Field):
                raise DefinitionError(f"{where}: schema must hold Field objects, got {f!r}")
            if f.name in seen:
                raise DefinitionError(f"{where}: field '{f.name}' appears twice in the schema")
            if f.name in RESERVED_COLUMNS or f.name in (
                self.source.timestamp_field,
                self.source.created_timestamp_field,
            ):
                raise DefinitionError(f"{where}: '{f.name}' is a timestamp column and cannot be a feature")
            seen.add(f.name)
        if not [f for f in schema if f.name not in keys]:
            raise DefinitionError(f"{where}: the schema declares no features")
        ttl = self.ttl
        if ttl is not None:
            if not isinstance(ttl, timedelta):
                raise DefinitionError(f"{where}: ttl must be a datetime.timedelta or None, got {ttl!r}")
            if ttl <= timedelta(0):
                ttl = None  # as in Feast: a zero ttl means no limit
        _freeze(
            self, entities=entities, schema=schema, ttl=ttl, tags=_tags("feature view", self.name, self.tags)
        )

    @property
    def join_keys(self) -> tuple[str, ...]:
        return tuple(k for e in self.entities for k in e.join_keys)

    @property
    def features(self) -> tuple[Field, ...]:
        keys = set(self.join_keys)
        return tuple(f for f in self.schema if f.name not in keys)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def key_fields(self) -> dict[str, ValueType]:
        """Declared join-key types (fields of the schema named like a key)."""
        keys = set(self.join_keys)
        return {f.name: f.dtype for f in self.schema if f.name in keys}

    def __getitem__(self, names: str | list[str]) -> FeatureViewProjection:
        """`view[["a", "b"]]`: a projection on some features, for FeatureService and retrieval."""
        if isinstance(names, str):
            names = [names]
        return FeatureViewProjection(self.name, tuple(names), view=self)

    def to_spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "entities": [e.name for e in self.entities],
            "schema": [f.to_spec() for f in self.schema],
            "source": self.source.name,
            "ttl_seconds": self.ttl.total_seconds() if self.ttl is not None else None,
            "online": self.online,
            "description": self.description,
            "owner": self.owner,
            "tags": dict(self.tags),
        }

    @classmethod
    def from_spec(
        cls, spec: dict[str, Any], entities: dict[str, Entity], sources: dict[str, DataSource]
    ) -> FeatureView:
        ttl = spec.get("ttl_seconds")
        return cls(
            name=spec["name"],
            entities=tuple(entities[n] for n in spec["entities"]),
            schema=tuple(Field.from_spec(f) for f in spec["schema"]),
            source=sources[spec["source"]],
            ttl=timedelta(seconds=ttl) if ttl is not None else None,
            online=spec.get("online", True),
            description=spec.get("description", ""),
            owner=spec.get("owner", ""),
            tags=spec.get("tags", {}),
        )


@dataclass(frozen=True)
class FeatureViewProjection:
    """Some features of a view: what `view[["a", "b"]]` returns.

    Names are checked where the whole repo is known (the repo loader, against the view and its
    source's columns, so a misspelled view field is told apart from a misspelled request) and when a
    lookup resolves them, not here. `whole_view` marks a service's `features=[view]`: all the view's
    features, re-read once the view's entities are resolved (an entity named by string decides only
    then which schema fields are keys).
    """

    view_name: str
    features: tuple[str, ...]
    view: FeatureView | None = field(default=None, compare=False, repr=False)
    whole_view: bool = field(default=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.features:
            raise DefinitionError(f"projection of '{self.view_name}' selects no features")

    @property
    def refs(self) -> list[str]:
        return [f"{self.view_name}:{n}" for n in self.features]


@dataclass(frozen=True)
class FeatureService:
    """A named list of features, e.g. what one model uses.

    FeatureService(name="driver_activity", features=[driver_hourly_stats[["conv_rate"]], other_view])
    """

    kind: ClassVar[str] = "feature_service"
    name: str
    features: tuple[FeatureViewProjection, ...] = ()
    description: str = ""
    owner: str = ""
    tags: dict[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        _check_name("feature service", self.name)
        record_site(self)  # where it is defined, for the registry (not part of the spec)
        projections = []
        for item in self.features or ():
            if isinstance(item, FeatureView):
                item = FeatureViewProjection(item.name, item.feature_names, view=item, whole_view=True)
            if not isinstance(item, FeatureViewProjection):
                raise DefinitionError(
                    f"feature service '{self.name}': features must be feature views or view[[...]] projections, got {item!r}"
                )
            projections.append(item)
        if not projections:
            raise DefinitionError(f"feature service '{self.name}' lists no features")
        _freeze(self, features=tuple(projections), tags=_tags("feature service", self.name, self.tags))

    @property
    def refs(self) -> list[str]:
        return [r for p in self.features for r in p.refs]

    def to_spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "features": [{"view": p.view_name, "features": list(p.features)} for p in self.features],
            "description": self.description,
            "owner": self.owner,
            "tags": dict(self.tags),
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any], views: dict[str, FeatureView]) -> FeatureService:
        return cls(
            name=spec["name"],
            features=tuple(
                FeatureViewProjection(p["view"], tuple(p["features"]), view=views.get(p["view"]))
                for p in spec["features"]
            ),
            description=spec.get("description", ""),
            owner=spec.get("owner", ""),
            tags=spec.get("tags", {}),
        )


def names_source(sql: str, name: str) -> bool:
    """Whether the SQL text `sql` (a DuckDBSource query, a SQL entity_df) names the source `name`
    as a word: the one rule by which a query is taken to read another source of the repo."""
    return re.search(rf"\b{re.escape(name)}\b", sql) is not None


def parse_ref(ref: str) -> tuple[str, str]:
    """'view:feature' -> ('view', 'feature'), with a clear error for anything else."""
    if not isinstance(ref, str) or ref.count(":") != 1 or ref.startswith(":") or ref.endswith(":"):
        raise DefinitionError(f"feature reference {ref!r} is not of the form 'view:feature'")
    view, feature = ref.split(":")
    return view, feature
