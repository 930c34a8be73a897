"""On-demand feature views: features computed by a Python function at request time (SPEC §11).

    trip_request = RequestSource(name="trip_request", schema=[Field("distance_km", Float64)])

    @on_demand_feature_view(sources=[driver_hourly_stats[["conv_rate"]], trip_request],
                            schema=[Field("expected_minutes", Float64)])
    def trip_estimates(row: dict) -> dict:
        return {"expected_minutes": row["distance_km"] / max(row["conv_rate"] or 0.1, 0.1)}

    @trip_estimates.vectorized(mode="arrow")          # optional: a whole-column form, used offline
    def trip_estimates_arrow(table: pa.Table) -> dict:
        ...

The decorated function is the *row form*: one dict in (each input feature under its feature name,
each request value under its field name), one dict out. It runs per row online and, without a
vectorized form, per row offline; both paths cast its outputs with `cast_column`, so a training set
and a served vector agree for the same inputs. A vectorized form (`mode="arrow"`: a pa.Table in, a
table or dict of columns out; `mode="pandas"`: a DataFrame in and out) serves training sets only,
and apply checks it gives the row form's values on sample rows.

The function is never pickled: the registry keeps the definition file where the view was found, where
each function is defined, and hashes of their code (what they cover: `featurestore.on_demand_code`).
A store imports the file when it loads the view and re-checks the files at most once a second
(`FunctionLoader`); code that no longer hashes as applied raises DefinitionsChangedError (HTTP 409).
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa

from .definitions import (
    _SOURCE_TYPES,
    DataSource,
    FeatureView,
    FeatureViewProjection,
    Field,
    _check_name,
    _freeze,
    _tags,
)
from .errors import DefinitionError, TransformError
from .sites import record_site
from .types import ValueType

if TYPE_CHECKING:
    from .on_demand_code import FunctionLoader

MODES = ("python", "arrow", "pandas")


@dataclass(frozen=True)
class RequestSource(DataSource):
    """Values sent with each request, not stored anywhere: fields of the entity rows online, columns
    of the entity_df offline. Only on-demand feature views read it.

    trip_request = RequestSource(name="trip_request", schema=[Field("distance_km", Float64)])
    """

    source_type: ClassVar[str] = "request"
    schema: tuple[Field, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.timestamp_field, str):
            raise DefinitionError(
                f"request source '{self.name}': pass its fields by name: schema=[Field(...)]"
            )
        super().__post_init__()
        schema = tuple(self.schema or ())
        if not schema:
            raise DefinitionError(f"request source '{self.name}' declares no fields (schema=[Field(...)])")
        names = [f.name for f in schema if isinstance(f, Field)]
        if len(names) != len(schema):
            raise DefinitionError(f"request source '{self.name}': schema must hold Field objects")
        if len(set(names)) != len(names):
            raise DefinitionError(f"request source '{self.name}': a field name appears twice in {names}")
        _freeze(self, schema=schema)

    def _location_spec(self) -> dict[str, Any]:
        return {"schema": [f.to_spec() for f in self.schema]}

    @classmethod
    def _from_spec(cls, spec: dict[str, Any]) -> DataSource:
        schema = tuple(Field.from_spec(f) for f in spec.pop("schema", []))
        return cls(**spec, schema=schema)


_SOURCE_TYPES[RequestSource.source_type] = RequestSource

Input = FeatureViewProjection | RequestSource


@dataclass(frozen=True, eq=False)
class OnDemandFeatureView:
    """Features computed from other views' features and request values by a row function; made by
    `@on_demand_feature_view(...)` (see the module docstring). `view[["a"]]` projects as for views."""

    kind: ClassVar[str] = "on_demand_feature_view"
    name: str
    sources: tuple[Input, ...]
    schema: tuple[Field, ...]
    udf: Callable[[dict[str, Any]], Any] | None = field(default=None, repr=False)
    mode: str = "python"
    vectorized_udf: Callable[[Any], Any] | None = field(default=None, repr=False)
    module: str = ""  # the repo-relative definition file the view was found in (set by the repo loader)
    function: str = ""  # the row form's qualname, defined in `function_file`
    function_file: str = ""
    vectorized_function: str = ""
    vectorized_function_file: str = ""
    sha256: str = ""  # featurestore.on_demand_code.code_hash, set by the repo loader
    source_sha256: str = ""  # featurestore.on_demand_code.own_source_hash
    description: str = ""
    owner: str = ""
    tags: dict[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        _check_name("on-demand feature view", self.name)
        record_site(self)
        where = f"on-demand feature view '{self.name}'"
        inputs: list[Input] = []
        for s in self.sources or ():
            if isinstance(s, FeatureView):
                s = FeatureViewProjection(s.name, s.feature_names, view=s, whole_view=True)
            if isinstance(s, OnDemandFeatureView) or (
                isinstance(s, FeatureViewProjection) and isinstance(s.view, OnDemandFeatureView)
            ):
                raise DefinitionError(f"{where}: another on-demand view ('{s.name}') cannot be a source")
            if not isinstance(s, (FeatureViewProjection, RequestSource)):
                raise DefinitionError(
                    f"{where}: sources must be feature views, view[[...]] projections or RequestSources, "
                    f"got {s!r}"
                )
            inputs.append(s)
        if not inputs:
            raise DefinitionError(f"{where}: needs at least one source (sources=[...])")
        schema = tuple(self.schema or ())
        if not schema or not all(isinstance(f, Field) for f in schema):
            raise DefinitionError(f"{where}: schema must declare its outputs as Field objects")
        names = [f.name for f in schema]
        if len(set(names)) != len(names):
            raise DefinitionError(f"{where}: an output name appears twice in {names}")
        if self.mode not in MODES:
            raise DefinitionError(f"{where}: mode must be one of {list(MODES)}, got {self.mode!r}")
        if (self.mode == "python") != (self.vectorized_udf is None):
            raise DefinitionError(
                f"{where}: the decorated function is the row form; a vectorized form needs both "
                "mode='arrow' or 'pandas' and vectorized=fn (or @view.vectorized(mode=...))"
            )
        for fn in (self.udf, self.vectorized_udf):
            if fn is not None and not callable(fn):
                raise DefinitionError(f"{where}: {fn!r} is not a function")
        udf, vec = self.udf, self.vectorized_udf
        _freeze(
            self,
            sources=tuple(inputs),
            schema=schema,
            tags=_tags("on-demand feature view", self.name, self.tags),
            function=self.function or (getattr(udf, "__qualname__", "") if udf else ""),
            vectorized_function=self.vectorized_function or (getattr(vec, "__qualname__", "") if vec else ""),
        )

    # -- what it reads and gives ----------------------------------------------------------------

    @property
    def features(self) -> tuple[Field, ...]:
        return self.schema

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.schema)

    @property
    def projections(self) -> tuple[FeatureViewProjection, ...]:
        return tuple(s for s in self.sources if isinstance(s, FeatureViewProjection))

    @property
    def request_sources(self) -> tuple[RequestSource, ...]:
        return tuple(s for s in self.sources if isinstance(s, RequestSource))

    @property
    def join_keys(self) -> tuple[str, ...]:
        """The join keys of the views it reads (known once the repo or registry resolved them)."""
        keys = (k for p in self.projections if p.view is not None for k in p.view.join_keys)
        return tuple(dict.fromkeys(keys))

    def __getitem__(self, names: str | list[str]) -> FeatureViewProjection:
        if isinstance(names, str):
            names = [names]
        return FeatureViewProjection(self.name, tuple(names))

    def vectorized(self, mode: str = "arrow") -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
        """Add a whole-column form, used for training sets: `@view.vectorized(mode="arrow")`.

        It must give the row form's values; apply checks that on sample rows."""

        def add(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
            if mode not in ("arrow", "pandas"):
                raise DefinitionError(
                    f"on-demand feature view '{self.name}': a vectorized form's mode is 'arrow' or 'pandas', "
                    f"got {mode!r}"
                )
            if self.udf is None:
                raise DefinitionError(f"on-demand feature view '{self.name}' has no row form to add to")
            _freeze(
                self,
                mode=mode,
                vectorized_udf=fn,
                vectorized_function=getattr(fn, "__qualname__", ""),
            )
            return fn

        return add

    # -- specs ----------------------------------------------------------------------------------

    def to_spec(self) -> dict[str, Any]:
        sources: list[dict[str, Any]] = [
            {"view": s.view_name, "features": list(s.features)}
            if isinstance(s, FeatureViewProjection)
            else {"request": s.name}
            for s in self.sources
        ]
        return {
            "name": self.name,
            "sources": sources,
            "schema": [f.to_spec() for f in self.schema],
            "mode": self.mode,
            "module": self.module,
            "function": self.function,
            "function_file": self.function_file,
            "vectorized_function": self.vectorized_function or None,
            "vectorized_function_file": self.vectorized_function_file or None,
            "sha256": self.sha256,
            "source_sha256": self.source_sha256,
            "description": self.description,
            "owner": self.owner,
            "tags": dict(self.tags),
        }

    @classmethod
    def from_spec(
        cls, spec: dict[str, Any], views: dict[str, FeatureView], sources: dict[str, DataSource]
    ) -> OnDemandFeatureView:
        inputs: list[Input] = []
        for s in spec["sources"]:
            if "request" in s:
                src = sources[s["request"]]
                if not isinstance(src, RequestSource):
                    raise DefinitionError(f"source '{src.name}' is not a RequestSource")
                inputs.append(src)
            else:
                inputs.append(FeatureViewProjection(s["view"], tuple(s["features"]), view=views[s["view"]]))
        mode = spec.get("mode", "python")
        view = cls(
            name=spec["name"],
            sources=tuple(inputs),
            schema=tuple(Field.from_spec(f) for f in spec["schema"]),
            mode="python",
            module=spec["module"],
            function=spec["function"],
            function_file=spec.get("function_file") or "",
            vectorized_function=spec.get("vectorized_function") or "",
            vectorized_function_file=spec.get("vectorized_function_file") or "",
            sha256=spec["sha256"],
            source_sha256=spec.get("source_sha256") or "",
            description=spec.get("description", ""),
            owner=spec.get("owner", ""),
            tags=spec.get("tags", {}),
        )
        _freeze(view, mode=mode)  # its functions are imported from `module` when first needed
        return view

    def loader(self, repo_path: Path) -> FunctionLoader:
        """The function loader of this view in the repo at `repo_path` (one per view object)."""
        loader: FunctionLoader | None = getattr(self, "_fs_loader", None)
        if loader is not None and loader.repo_path is repo_path:  # every lookup: keep it short
            return loader
        if loader is None or loader.repo_path != repo_path:
            from .on_demand_code import FunctionLoader

            loader = FunctionLoader(self, repo_path)
            object.__setattr__(self, "_fs_loader", loader)
        return loader


def on_demand_feature_view(
    sources: Sequence[Any],
    schema: Sequence[Field],
    mode: str = "python",
    name: str | None = None,
    description: str = "",
    owner: str = "",
    tags: dict[str, str] | None = None,
    vectorized: Callable[[Any], Any] | None = None,
) -> Callable[[Callable[[dict[str, Any]], Any]], OnDemandFeatureView]:
    """Decorate a row function `fn(row: dict) -> dict` as an OnDemandFeatureView named after it.

    `mode="arrow"` or `"pandas"` with `vectorized=fn` adds a whole-column form (see the module doc)."""

    def wrap(fn: Callable[[dict[str, Any]], Any]) -> OnDemandFeatureView:
        if not callable(fn):
            raise DefinitionError(f"on_demand_feature_view decorates a function, got {fn!r}")
        return OnDemandFeatureView(
            name=name or str(getattr(fn, "__name__", "")),
            sources=tuple(sources),
            schema=tuple(schema),
            udf=fn,
            mode=mode,
            vectorized_udf=vectorized,
            description=description,
            owner=owner,
            tags=dict(tags or {}),
        )

    return wrap


# -- casting outputs: the one code both paths use ----------------------------------------------------


def _float(v: Any) -> Any:
    if type(v) is float or v is None:
        return v
    if isinstance(v, bool) or not isinstance(v, (int, float)) and not _is_numpy(v, "if"):
        raise TypeError
    return float(v)


_F32 = struct.Struct("f")


def _float32(v: Any) -> Any:
    """A float rounded to float32, as an Arrow float32 column holds it (OverflowError past its range)."""
    v = _float(v)
    return v if v is None else _F32.unpack(_F32.pack(v))[0]


def _integer(bits: int) -> Callable[[Any], Any]:
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1

    def cast(v: Any) -> Any:
        if v is None:
            return None
        if type(v) is not int:
            if isinstance(v, bool) or not (isinstance(v, int) or _is_numpy(v, "iu")):
                raise TypeError
            v = int(v)
        if not lo <= v <= hi:
            raise TypeError
        return v

    return cast


def _exact(*types: type) -> Callable[[Any], Any]:
    def cast(v: Any) -> Any:
        if v is None or type(v) in types:
            return v
        if bool in types and _is_numpy(v, "b"):
            return bool(v)
        raise TypeError

    return cast


def _timestamp(v: Any) -> Any:
    if v is None:
        return None
    if not isinstance(v, datetime):
        raise TypeError
    return v.replace(tzinfo=timezone.utc) if v.tzinfo is None else v.astimezone(timezone.utc)


def _is_numpy(v: Any, kinds: str) -> bool:
    dtype = getattr(v, "dtype", None)
    return dtype is not None and getattr(v, "ndim", 1) == 0 and dtype.kind in kinds


@functools.cache
def value_caster(dtype: ValueType) -> Callable[[Any], Any]:
    """What turns a function's output value into a value of `dtype` (TypeError when it cannot)."""
    if dtype.element is not None:
        element = value_caster(dtype.element)

        def cast_list(v: Any) -> Any:
            if v is None:
                return None
            if not isinstance(v, (list, tuple)):
                raise TypeError
            return [element(x) for x in v]

        return cast_list
    casters: dict[str, Callable[[Any], Any]] = {
        "Float64": _float,
        "Float32": _float32,
        "Int64": _integer(64),
        "Int32": _integer(32),
        "String": _exact(str),
        "Bool": _exact(bool),
        "Bytes": _exact(bytes),
        "UnixTimestamp": _timestamp,
    }
    return casters[dtype.name]


# How JSON (which has no NaN or infinities) writes them; the server answers floats the same way.
_FLOAT_WORDS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


@functools.cache
def request_caster(dtype: ValueType) -> Callable[[Any], Any]:
    """What turns a request value (an entity row's field, an entity_df cell) into a value of `dtype`:
    as outputs are cast, except that a NaN in a float or integer field is a null (pandas holds a
    missing value as NaN; Arrow reads it as null), an integer field takes whole-number floats (a
    pandas integer column with a missing value is float64), a float may come as JSON writes the
    non-finite ones ("NaN": a null, "Infinity", "-Infinity"), and a timestamp as an ISO 8601 string
    (JSON has no times). Online and offline request values go through it alike."""
    cast = value_caster(dtype)
    if dtype.name in ("Float64", "Float32"):

        def cast_float(v: Any) -> Any:
            if type(v) is float and dtype.name == "Float64":  # the usual case, first
                return v if v == v else None
            v = cast(_FLOAT_WORDS.get(v, v) if type(v) is str else v)
            return None if v is not None and math.isnan(v) else v

        return cast_float
    if dtype.name in ("Int64", "Int32"):

        def cast_int(v: Any) -> Any:
            if type(v) is float or _is_numpy(v, "f"):
                v = float(v)
                if math.isnan(v):
                    return None
                if not v.is_integer():
                    raise TypeError
                v = int(v)
            return cast(v)

        return cast_int
    if dtype.name != "UnixTimestamp":
        return cast

    def cast_time(v: Any) -> Any:
        if isinstance(v, str):
            v = datetime.fromisoformat(v.replace("Z", "+00:00"))
        return cast(v)

    return cast_time


def cast_column(
    values: list[Any], dtype: ValueType, view: str, feature: str, rows: Any = None, cast: Any = None
) -> list[Any]:
    """`values` as `dtype`, or a TransformError naming the view, feature and row (via `rows(i)`);
    `cast` is `value_caster(dtype)` when the caller has it at hand."""
    out, bad = cast_values(values, cast or value_caster(dtype))
    if out is None:
        v = values[bad]
        raise TransformError(
            f"on-demand feature view '{view}' returned {v!r} ({type(v).__name__}) for '{feature}' on "
            f"{_row_name(rows, bad)}, which is not of type {dtype!r}"
        )
    return out


def cast_values(values: list[Any], cast: Callable[[Any], Any]) -> tuple[list[Any] | None, int]:
    """(`cast` of every value, -1), or (None, the index of the first value it refuses): one fast pass,
    and the search for the culprit only when it fails, so the caller can name the row."""
    try:
        return [cast(v) for v in values], -1
    except (TypeError, ValueError, OverflowError):
        pass
    for i, v in enumerate(values):
        try:
            cast(v)
        except (TypeError, ValueError, OverflowError):
            return None, i
    raise AssertionError("a cast that failed on the whole list accepted each of its values")


def _row_name(rows: Any, i: int) -> str:
    return rows(i) if callable(rows) else f"row {i}"


# What a function may raise that is not its failure. Anything else, SystemExit included, is a
# TransformError (HTTP 500 transform_error). Offline, a KeyboardInterrupt is the user's Ctrl-C
# stopping a training set and goes through; online it can only be the function's own (a lookup
# takes microseconds, and the server handles signals itself), so it fails the lookup instead of the server.
ONLINE_PASS: tuple[type[BaseException], ...] = (GeneratorExit,)
OFFLINE_PASS: tuple[type[BaseException], ...] = (GeneratorExit, KeyboardInterrupt)


def run_rows(
    view: OnDemandFeatureView,
    fn: Callable[[dict[str, Any]], Any],
    rows: list[dict[str, Any]],
    outputs: Sequence[tuple[str, ValueType]],
    row_name: Any = None,
    casters: Sequence[Callable[[Any], Any]] = (),
    passes: tuple[type[BaseException], ...] = OFFLINE_PASS,
) -> list[list[Any]]:
    """The row form over `rows`: one cast column per (feature, dtype) of `outputs`.

    A function that raises (anything but `passes`), returns no dict, or lacks an output raises
    TransformError naming the row."""
    results: list[Any] = []
    add = results.append
    try:
        for row in rows:
            add(fn(row))
    except BaseException as e:
        if isinstance(e, passes):
            raise
        raise failed(view, e, _row_name(row_name, len(results))) from None
    columns = []
    for k, (feature, dtype) in enumerate(outputs):
        try:
            values = [r[feature] for r in results]
        except (KeyError, TypeError, IndexError):
            i, bad = next(
                (i, r) for i, r in enumerate(results) if not isinstance(r, dict) or feature not in r
            )
            got = (
                f"returned {type(bad).__name__}, not a dict"
                if not isinstance(bad, dict)
                else (f"returned no '{feature}' (its keys: {sorted(map(str, bad))})")
            )
            raise TransformError(
                f"on-demand feature view '{view.name}' {got} on {_row_name(row_name, i)}"
            ) from None
        columns.append(
            cast_column(values, dtype, view.name, feature, row_name, casters[k] if casters else None)
        )
    return columns


def failed(view: OnDemandFeatureView, error: BaseException, where: str) -> TransformError:
    """The error of a row function that raised `error` on the row `where` names (no stack)."""
    return TransformError(
        f"on-demand feature view '{view.name}' failed on {where}: {type(error).__name__}: {error}"
    )


def run_vectorized(
    view: OnDemandFeatureView,
    fn: Callable[[Any], Any],
    table: pa.Table,
    outputs: Sequence[tuple[str, ValueType]],
) -> list[pa.ChunkedArray]:
    """The vectorized form over `table` (inputs as columns): one column per output, cast to its type."""
    where = f"on-demand feature view '{view.name}' (vectorized, mode={view.mode})"
    try:
        if view.mode == "pandas":
            result: Any = fn(table.to_pandas())
        else:
            result = fn(table)
    except BaseException as e:
        if isinstance(e, OFFLINE_PASS):
            raise
        raise TransformError(f"{where} failed: {type(e).__name__}: {e}") from None
    if hasattr(result, "iloc"):  # a pandas DataFrame
        result = {c: result[c] for c in result.columns}
    if isinstance(result, (pa.Table, pa.RecordBatch)):
        result = {c: result.column(c) for c in result.column_names}
    if not isinstance(result, dict):
        raise TransformError(f"{where} returned {type(result).__name__}, not a table or dict of columns")
    out = []
    for feature, dtype in outputs:
        if feature not in result:
            raise TransformError(
                f"{where} returned no column '{feature}' (it has {sorted(map(str, result))})"
            )
        values = result[feature]
        try:
            if hasattr(values, "to_numpy") and not isinstance(values, (pa.Array, pa.ChunkedArray)):
                array: Any = pa.Array.from_pandas(values)
            elif isinstance(values, (pa.Array, pa.ChunkedArray)):
                array = values
            else:
                array = pa.array(values)
            array = array.cast(dtype.to_arrow())
        except (pa.ArrowException, TypeError, ValueError) as e:
            raise TransformError(f"{where}: column '{feature}' is not a {dtype!r}: {e}") from None
        if len(array) != table.num_rows:
            raise TransformError(
                f"{where}: column '{feature}' has {len(array)} values for {table.num_rows} rows"
            )
        out.append(array if isinstance(array, pa.ChunkedArray) else pa.chunked_array([array]))
    return out


# -- checks at apply -----------------------------------------------------------------------------------

SAMPLE_SOURCE_ROWS = 200  # real rows per input view the vectorized check reads from its source


def on_demand_problems(
    catalog: Any, origins: dict[tuple[str, str], str], root: Path, read_sources: bool = True
) -> list[str]:
    """What the repo loader checks of on-demand views: inputs bound and unique, the function in a
    file of the repo, and each vectorized form equal to its row form on sample rows (with up to
    SAMPLE_SOURCE_ROWS real rows of each input's source when `read_sources`)."""
    if not catalog.on_demand:
        return []
    problems = resolve_views(catalog, origins, root)
    if problems:
        return problems
    if not read_sources or not any(v.vectorized_udf for v in catalog.on_demand.values()):
        return check_vectorized(catalog, origins)
    from .offline.sources import SourceReader, arrow_table, duckdb_connection, quote_ident

    con = duckdb_connection()
    try:
        reader = SourceReader(con, root, catalog.sources)

        def real_rows(view_name: str, features: Sequence[str]) -> dict[str, list[Any]]:
            view = catalog.views[view_name]
            cols = ", ".join(quote_ident(f) for f in features)
            sql = f"SELECT {cols} FROM {reader.relation(view.source)} LIMIT {SAMPLE_SOURCE_ROWS}"
            table = arrow_table(con, sql)
            types = {f.name: f.dtype for f in view.features}
            return {f: table.column(f).cast(types[f].to_arrow()).to_pylist() for f in features}

        return check_vectorized(catalog, origins, real_rows)
    finally:
        con.close()


def resolve_views(catalog: Any, origins: dict[tuple[str, str], str], root: Path) -> list[str]:
    """Bind each on-demand view of a repo's catalog to the catalog's views (whole views take their
    resolved features), set where its code is and its hashes, and check its inputs and names;
    returns the problems."""
    problems = []
    reloaded: dict[str, Any] = {}  # definition file -> its views imported once more, or the error
    for name, view in list(catalog.on_demand.items()):
        where = f"{origins.get(('on_demand_feature_view', name), '?')}: on-demand feature view '{name}'"
        if name in catalog.views:
            problems.append(f"{where} has the name of a feature view: rename one")
            continue
        inputs: list[Input] = []
        seen: dict[str, str] = {}  # input name -> where it comes from
        bad = False
        for s in view.sources:
            if isinstance(s, RequestSource):
                inputs.append(s)
                pairs = [(f.name, f"request source '{s.name}'") for f in s.schema]
            else:
                served = catalog.views.get(s.view_name)
                if served is None:
                    problems.append(f"{where} reads unknown feature view '{s.view_name}'")
                    bad = True
                    continue
                names = served.feature_names if s.whole_view else s.features
                missing = [f for f in names if f not in served.feature_names]
                if missing:
                    problems.append(
                        f"{where} reads '{s.view_name}:{missing[0]}', which that view does not define"
                    )
                    bad = True
                inputs.append(
                    FeatureViewProjection(served.name, tuple(names), view=served, whole_view=s.whole_view)
                )
                pairs = [(f, f"'{served.name}:{f}'") for f in names]
            for input_name, origin in pairs:
                if input_name in seen:
                    problems.append(
                        f"{where}: its inputs {seen[input_name]} and {origin} share the name '{input_name}' "
                        "in the row dict; select fewer features with view[[...]] so each name comes once"
                    )
                    bad = True
                seen.setdefault(input_name, origin)
        keys = {
            k for p in inputs if isinstance(p, FeatureViewProjection) and p.view for k in p.view.join_keys
        }
        for request in (s for s in inputs if isinstance(s, RequestSource)):
            for f in request.schema:
                if f.name in keys:
                    problems.append(
                        f"{where}: field '{f.name}' of request source '{request.name}' is named like a join key of "
                        "its input views: an entity row holds one value per name; rename the field"
                    )
                    bad = True
        for f in view.schema:
            if f.name in seen:
                problems.append(
                    f"{where}: its output '{f.name}' has the name of its input {seen[f.name]}: rename the output"
                )
                bad = True
        if bad:
            continue
        code = _bind_code(view, origins.get(("on_demand_feature_view", name), ""), root, reloaded)
        if isinstance(code, str):
            problems.append(f"{where}: {code}")
            continue
        bound, sigs = code
        bound = replace(bound, sources=tuple(inputs))
        object.__setattr__(bound, "_fs_file_sigs", sigs)
        catalog.on_demand[name] = bound
    problems += _request_field_types(catalog, origins)
    return problems


def _bind_code(
    view: OnDemandFeatureView, module: str, root: Path, reloaded: dict[str, Any]
) -> tuple[OnDemandFeatureView, dict[Path, tuple[int, int]]] | str:
    """The view with where its code is and its hashes (`featurestore.on_demand_code.bind_code`), and
    the signatures of the files they read; or why a store could not load it as applied."""
    from . import on_demand_code as code

    bound = code.bind_code(
        view,
        lambda v: [v.udf, v.vectorized_udf],
        lambda v: code.view_code_hash(v, root),
        module,
        root,
        reloaded,
        loader="a store",
        function_noun="its function",
        defines=f"view '{view.name}'",
    )
    if isinstance(bound, str):
        return bound
    sites = bound.sites
    vec_file, vec_name = sites[1] if len(sites) > 1 else ("", "")
    view = replace(
        view,
        module=module,
        function=sites[0][1],
        function_file=sites[0][0],
        vectorized_function=vec_name,
        vectorized_function_file=vec_file,
        sha256=bound.sha256,
        source_sha256=bound.source_sha256,
    )
    try:
        sigs = code.signatures(bound.files)
    except OSError:
        sigs = {}
    return view, sigs


def _request_field_types(catalog: Any, origins: dict[tuple[str, str], str]) -> list[str]:
    """A request field name has one type across the repo's request sources: an entity row holds one
    value per name, and one lookup may need both views."""
    problems = []
    first: dict[str, tuple[str, ValueType]] = {}
    for source in catalog.sources.values():
        if not isinstance(source, RequestSource):
            continue
        for f in source.schema:
            other = first.setdefault(f.name, (source.name, f.dtype))
            if other[1] != f.dtype:
                problems.append(
                    f"{origins.get(('source', source.name), '?')}: request source '{source.name}' declares "
                    f"'{f.name}' as {f.dtype!r}, request source '{other[0]}' as {other[1]!r}: an entity row holds "
                    "one value per name; rename one"
                )
    return problems


def check_vectorized(catalog: Any, origins: dict[tuple[str, str], str], real_rows: Any = None) -> list[str]:
    """Every vectorized form gives its row form's values on sample rows (edge values, nulls, and the
    sources' real rows from `real_rows(view_name, features)` when given); returns the problems."""
    problems = []
    for name, view in catalog.on_demand.items():
        if view.vectorized_udf is None or view.udf is None:
            continue
        where = f"{origins.get(('on_demand_feature_view', name), '?')}: on-demand feature view '{name}'"
        problem = _disagreement(view, sample_rows(view, real_rows))
        if problem:
            problems.append(f"{where}: {problem}")
    return problems


def input_types(view: OnDemandFeatureView) -> dict[str, ValueType]:
    """Each name of the row dict -> its value type."""
    out: dict[str, ValueType] = {}
    for s in view.sources:
        if isinstance(s, RequestSource):
            out.update((f.name, f.dtype) for f in s.schema)
        elif s.view is not None:
            types = {f.name: f.dtype for f in s.view.features}
            out.update((f, types[f]) for f in s.features)
    return out


_EDGE: dict[str, list[Any]] = {
    "Int64": [0, 1, -1, 7, 1000, -(2**40)],
    "Int32": [0, 1, -1, 7, 1000, -(2**20)],
    "Float64": [0.0, 1.0, -1.5, 0.1, 1e9, -0.0],
    "Float32": [0.0, 1.0, -1.5, 0.5, 1024.0, -0.0],
    "String": ["", "a", "xyz", "0", " A b "],
    "Bool": [False, True],
    "Bytes": [b"", b"a", b"\x00\xff"],
    "UnixTimestamp": [
        datetime(1970, 1, 1, tzinfo=timezone.utc),
        datetime(2026, 1, 1, 12, tzinfo=timezone.utc),
        datetime(2000, 2, 29, tzinfo=timezone.utc),
    ],
}


def _edge_values(dtype: ValueType) -> list[Any]:
    if dtype.element is not None:
        inner = _edge_values(dtype.element)
        return [[], inner[:2], [inner[-1], None]]
    return _EDGE[dtype.name]


def sample_rows(view: OnDemandFeatureView, real_rows: Any = None) -> list[dict[str, Any]]:
    """Rows to compare the two forms on: all nulls, each input's edge values in turn, and real rows."""
    types = input_types(view)
    edges = {n: _edge_values(t) for n, t in types.items()}
    rows: list[dict[str, Any]] = [dict.fromkeys(types)]
    for i in range(48):
        rows.append(
            {
                n: (None if (i + k) % 7 == 6 else vs[(i + k) % len(vs)])
                for k, (n, vs) in enumerate(edges.items())
            }
        )
    if real_rows is not None:
        real: dict[str, list[Any]] = {}
        for p in view.projections:
            try:
                real.update(real_rows(p.view_name, p.features))
            except Exception:  # an unreadable source: the edge rows still run
                continue
        n = max((len(v) for v in real.values()), default=0)
        for i in range(n):
            row = dict(rows[1 + i % 48])
            row.update((k, v[i]) for k, v in real.items() if i < len(v))
            rows.append(row)
    return rows


def _disagreement(view: OnDemandFeatureView, rows: list[dict[str, Any]]) -> str | None:
    """Where the vectorized form differs from the row form on `rows`, or None."""
    assert view.udf is not None and view.vectorized_udf is not None
    outputs = [(f.name, f.dtype) for f in view.schema]
    types = input_types(view)

    def table_of(rows: list[dict[str, Any]]) -> pa.Table:
        return pa.table({n: pa.array([r[n] for r in rows], type=t.to_arrow()) for n, t in types.items()})

    kept = []
    for row in rows:  # both forms must refuse the same rows (e.g. nulls), or both take them
        try:
            run_rows(view, view.udf, [row], outputs)
        except TransformError as refused:
            try:
                values = run_vectorized(view, view.vectorized_udf, table_of([row]), outputs)
            except TransformError:
                continue
            shown = {f: c.to_pylist()[0] for (f, _), c in zip(outputs, values)}
            return (
                f"its row form fails on the row {row!r} ({refused}) but its vectorized form (mode={view.mode}) "
                f"returns {shown!r}: a training set would hold values a lookup refuses; make both fail "
                "or both give a value"
            )
        kept.append(row)
    if not kept:
        return None
    expected = run_rows(view, view.udf, kept, outputs)
    try:
        got = run_vectorized(view, view.vectorized_udf, table_of(kept), outputs)
    except TransformError:
        for row in kept:  # name the row
            try:
                run_vectorized(view, view.vectorized_udf, table_of([row]), outputs)
            except TransformError as e:
                return f"its vectorized form fails on the row {row!r}, which its row form takes: {e}"
        return "its vectorized form fails on the sample rows together, though on none of them alone"
    for (feature, _), want, column in zip(outputs, expected, got):
        have = column.to_pylist()
        for i, (a, b) in enumerate(zip(want, have)):
            if not same_value(a, b):
                return (
                    f"its vectorized form (mode={view.mode}) disagrees with the row form on '{feature}': "
                    f"{b!r} instead of {a!r} for the row {kept[i]!r}"
                )
    return None


def same_value(a: Any, b: Any) -> bool:
    """Equal, NaN equal to NaN, floats to rounding; None only equals None."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    return bool(a == b)
