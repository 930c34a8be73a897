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
from .types import Float64, Int64, ValueType

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
# Aggregations

FUNCTIONS = ("count", "sum", "mean", "min", "max", "std", "var", "first", "last", "count_distinct")
DEFAULT_HOP = timedelta(minutes=5)
_NUMERIC = ("Int32", "Int64", "Float32", "Float64")
_ORDERED = (*_NUMERIC, "String", "UnixTimestamp", "Bool")


def window_label(window: timedelta) -> str:
    """A window as a feature name writes it: the largest unit dividing it exactly (30s, 5m, 1h, 7d)."""
    micros = window // timedelta(microseconds=1)
    for unit, size in (("d", 86_400_000_000), ("h", 3_600_000_000), ("m", 60_000_000), ("s", 1_000_000)):
        if micros % size == 0:
            return f"{micros // size}{unit}"
    return f"{micros}us"


@dataclass(frozen=True)
class Aggregation:
    """One time-window aggregate of a source column (SPEC §11): `Aggregation("amount", "sum", window=timedelta(hours=1))`.

    `window=None` is a lifetime aggregate. The feature is named `name`, else `{column}_{function}_{window}`
    (`amount_sum_1h`), or `{column}_{function}` for a lifetime aggregate.
    """

    column: str
    function: str
    window: timedelta | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        _check_name("aggregation column", self.column)
        if self.function not in FUNCTIONS:
            raise DefinitionError(
                f"aggregation of '{self.column}': unknown function {self.function!r} (known: {', '.join(FUNCTIONS)})"
            )
        if self.window is not None:
            if not isinstance(self.window, timedelta):
                raise DefinitionError(
                    f"aggregation of '{self.column}': window must be a datetime.timedelta or None, got {self.window!r}"
                )
            if self.window <= timedelta(0):
                raise DefinitionError(
                    f"aggregation of '{self.column}': window must be positive, got {self.window}"
                )
        name = self.name
        if name is None:
            name = f"{self.column}_{self.function}"
            if self.window is not None:
                name += f"_{window_label(self.window)}"
        _check_name(f"aggregation of '{self.column}': feature", name)
        _freeze(self, name=name)

    @property
    def feature_name(self) -> str:
        assert self.name is not None  # set in __post_init__
        return self.name

    @property
    def window_us(self) -> int | None:
        """The window in whole microseconds (None: lifetime)."""
        return None if self.window is None else self.window // timedelta(microseconds=1)

    def output_type(self, input_type: ValueType) -> ValueType:
        """The feature's type for an input column of `input_type` (a DefinitionError if it cannot apply)."""
        fn = self.function
        what = f"aggregation '{self.feature_name}': {fn} of '{self.column}' ({input_type!r})"
        if fn in ("count", "count_distinct"):
            if fn == "count_distinct" and input_type.is_list:
                raise DefinitionError(f"{what}: lists cannot be counted distinct")
            return Int64
        if fn in ("first", "last"):
            return input_type
        if fn in ("min", "max"):
            if input_type.name not in _ORDERED:
                raise DefinitionError(f"{what}: needs numbers, strings, booleans or timestamps")
            return input_type
        if input_type.name not in _NUMERIC:
            raise DefinitionError(f"{what}: needs a numeric column")
        if fn == "sum" and input_type.name in ("Int32", "Int64"):
            return Int64
        return Float64

    def to_spec(self) -> dict[str, Any]:
        return {
            "name": self.feature_name,
            "column": self.column,
            "function": self.function,
            "window_seconds": None if self.window is None else self.window.total_seconds(),
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Aggregation:
        window = spec.get("window_seconds")
        return cls(
            column=spec["column"],
            function=spec["function"],
            window=None if window is None else timedelta(seconds=window),
            name=spec["name"],
        )


# ---------------------------------------------------------------------------------------------
# Feature views and services


@dataclass(frozen=True)
class FeatureView:
    """A group of features of one or more entities, read from one source.

    `ttl` is the lookback window: a feature row older than ttl is not used for a training row, and
    is reported `OUTSIDE_MAX_AGE` online. `None` means unbounded. Fields in `schema` that are named
    like a join key declare the key's type and are not features. `freshness` is how old the newest
    event the view holds online may get before `fs monitor freshness` reports a breach (None: no
    limit); it changes nothing stored.
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
    # Time-window aggregations (SPEC §11): the view's features are then its aggregates, and its schema
    # declares (or, omitted, is read from the source) the types of the aggregated columns.
    aggregations: tuple[Aggregation, ...] = ()
    hop: timedelta | None = None  # tile size of an aggregating view (default DEFAULT_HOP)
    freshness: timedelta | None = None  # the age limit of the newest online event (monitoring)

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
        aggregations = tuple(self.aggregations or ())
        hop = self.hop
        if aggregations:
            schema, hop = self._check_aggregations(where, aggregations, schema, keys)
        elif hop is not None:
            raise DefinitionError(f"{where}: hop= is the tile size of aggregations; this view has none")
        elif not [f for f in schema if f.name not in keys]:
            raise DefinitionError(f"{where}: the schema declares no features")
        ttl = self.ttl
        if ttl is not None:
            if not isinstance(ttl, timedelta):
                raise DefinitionError(f"{where}: ttl must be a datetime.timedelta or None, got {ttl!r}")
            if ttl <= timedelta(0):
                ttl = None  # as in Feast: a zero ttl means no limit
            elif aggregations:
                raise DefinitionError(
                    f"{where}: an aggregating view takes no ttl: each aggregation's window is its lookback"
                )
        freshness = self.freshness
        if freshness is not None and (not isinstance(freshness, timedelta) or freshness <= timedelta(0)):
            raise DefinitionError(
                f"{where}: freshness must be a positive datetime.timedelta or None, got {freshness!r}"
            )
        _freeze(
            self,
            entities=entities,
            schema=schema,
            ttl=ttl,
            tags=_tags("feature view", self.name, self.tags),
            aggregations=aggregations,
            hop=hop,
        )

    def _check_aggregations(
        self, where: str, aggregations: tuple[Aggregation, ...], schema: tuple[Field, ...], keys: list[str]
    ) -> tuple[tuple[Field, ...], timedelta]:
        """The schema completed with inferred input types, and the hop; refuses what cannot work."""
        for a in aggregations:
            if not isinstance(a, Aggregation):
                raise DefinitionError(f"{where}: aggregations must hold Aggregation objects, got {a!r}")
        names = [a.feature_name for a in aggregations]
        for n in names:
            if names.count(n) > 1:
                raise DefinitionError(f"{where}: two aggregations are named '{n}': give one a name=")
            if n in keys or n in RESERVED_COLUMNS:
                raise DefinitionError(f"{where}: aggregation '{n}' has the name of a key or timestamp column")
        inputs = {a.column for a in aggregations}
        for a in aggregations:
            if a.column in keys:
                raise DefinitionError(
                    f"{where}: aggregation '{a.feature_name}' aggregates the join key '{a.column}'"
                )
            if a.column in (self.source.timestamp_field, self.source.created_timestamp_field):
                raise DefinitionError(
                    f"{where}: aggregation '{a.feature_name}' aggregates the timestamp column '{a.column}'"
                )
        for f in schema:
            if f.name not in keys and f.name not in inputs:
                raise DefinitionError(
                    f"{where}: field '{f.name}' is not aggregated: in an aggregating view the schema declares "
                    f"the types of aggregated columns; for its latest value use Aggregation('{f.name}', 'last')"
                )
        declared = {f.name for f in schema}
        table = getattr(self.source, "table", None)
        if isinstance(table, pa.Table):  # a DataFrameSource: infer the missing input types from its data
            from .types import value_type_of

            extra = []
            for column in sorted(inputs - declared):
                if column in table.column_names:
                    dtype = value_type_of(table.schema.field(column).type)
                    if dtype is not None:
                        extra.append(Field(column, dtype))
            schema = schema + tuple(extra)
        typed = {f.name: f.dtype for f in schema}
        for a in aggregations:
            if a.column in typed:
                a.output_type(typed[a.column])  # raises when the function cannot apply to the column
        hop = DEFAULT_HOP if self.hop is None else self.hop
        if not isinstance(hop, timedelta) or hop < timedelta(seconds=1) or hop % timedelta(seconds=1):
            raise DefinitionError(
                f"{where}: hop must be a whole number of seconds, at least 1 s; got {hop!r}"
            )
        return schema, hop

    @property
    def is_aggregating(self) -> bool:
        return bool(self.aggregations)

    @property
    def hop_us(self) -> int:
        """The tile size in microseconds (aggregating views)."""
        return (self.hop or DEFAULT_HOP) // timedelta(microseconds=1)

    @property
    def row_fields(self) -> tuple[Field, ...]:
        """The value columns of the view's rows in offline storage and pushes: its features, or, for an
        aggregating view, the aggregated input columns (its raw events)."""
        if not self.aggregations:
            return self.features
        keys = set(self.join_keys)
        return tuple(f for f in self.schema if f.name not in keys)

    def input_type(self, column: str) -> ValueType:
        """The type of an aggregated column (declared, or read from the source by the repo loader)."""
        for f in self.schema:
            if f.name == column:
                return f.dtype
        raise DefinitionError(
            f"feature view '{self.name}': the type of aggregated column '{column}' is unknown: declare "
            f"Field('{column}', ...) in its schema, or let the repo loader read it from source '{self.source.name}'"
        )

    @property
    def join_keys(self) -> tuple[str, ...]:
        return tuple(k for e in self.entities for k in e.join_keys)

    @property
    def features(self) -> tuple[Field, ...]:
        if self.aggregations:
            return tuple(
                Field(a.feature_name, a.output_type(self.input_type(a.column))) for a in self.aggregations
            )
        keys = set(self.join_keys)
        return tuple(f for f in self.schema if f.name not in keys)

    @property
    def feature_names(self) -> tuple[str, ...]:
        if self.aggregations:  # known before the input types are
            return tuple(a.feature_name for a in self.aggregations)
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
            # Only views with a freshness carry it, so views applied before it existed keep their spec.
            **({"freshness_seconds": self.freshness.total_seconds()} if self.freshness is not None else {}),
            # Only aggregating views carry these, so applied plain views keep the spec they had.
            **(
                {
                    "aggregations": [a.to_spec() for a in self.aggregations],
                    "hop_seconds": self.hop_us / 1_000_000,
                }
                if self.aggregations
                else {}
            ),
        }

    @classmethod
    def from_spec(
        cls, spec: dict[str, Any], entities: dict[str, Entity], sources: dict[str, DataSource]
    ) -> FeatureView:
        ttl = spec.get("ttl_seconds")
        hop = spec.get("hop_seconds")
        freshness = spec.get("freshness_seconds")
        return cls(
            aggregations=tuple(Aggregation.from_spec(a) for a in spec.get("aggregations", ())),
            hop=None if hop is None else timedelta(seconds=hop),
            name=spec["name"],
            entities=tuple(entities[n] for n in spec["entities"]),
            schema=tuple(Field.from_spec(f) for f in spec["schema"]),
            source=sources[spec["source"]],
            ttl=timedelta(seconds=ttl) if ttl is not None else None,
            freshness=None if freshness is None else timedelta(seconds=freshness),
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
            elif getattr(item, "kind", None) == "on_demand_feature_view":  # featurestore.on_demand
                computed: Any = item
                item = FeatureViewProjection(computed.name, computed.feature_names)
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
