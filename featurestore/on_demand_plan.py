"""The on-demand step of a retrieval and of a lookup: one plan, shared by both paths.

`expand(catalog, requests, names)` turns a resolved feature list that names on-demand views into the
plain views to read (each on-demand view's inputs added as hidden columns, read by the same
point-in-time join offline and in the same single store read online) and an `OnDemandPlan`, which
then computes the on-demand features from those columns and the request values
(`apply_offline` on an Arrow table, `apply_online` on a lookup's columns) and drops the hidden ones.
Both run the view's row form through `featurestore.on_demand.run_rows` (offline, the vectorized
form when there is one), so the two paths agree by construction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from .catalog import Catalog, OnDemandRequest, Requested, ViewRequest, output_names
from .definitions import FeatureView
from .errors import RetrievalError
from .on_demand import (
    ONLINE_PASS,
    OnDemandFeatureView,
    RequestSource,
    cast_values,
    failed,
    input_types,
    request_caster,
    run_rows,
    run_vectorized,
    value_caster,
)
from .online.response import PRESENT, Block, OnlineResponse
from .types import ValueType

_HIDDEN = "__odfv__"  # prefix of input columns nobody asked for ('__' names are reserved)


@dataclass(frozen=True)
class OnDemandStep:
    """One on-demand view of a request: where its inputs are, which outputs are asked for."""

    view: OnDemandFeatureView
    inputs: tuple[tuple[str, str], ...]  # (name in the row dict, column of the joined features)
    request_fields: tuple[str, ...]
    outputs: tuple[tuple[str, str, ValueType], ...]  # (feature, output column, type)
    row_names: tuple[str, ...] = ()  # the keys of the row dict: inputs, then request fields
    typed_outputs: tuple[tuple[str, ValueType], ...] = ()  # (feature, type)
    casters: tuple[Callable[[Any], Any], ...] = ()  # of the outputs (featurestore.on_demand.value_caster)
    output_columns: tuple[str, ...] = ()

    def __post_init__(self) -> None:  # precomputed: the online path uses them per request
        object.__setattr__(self, "row_names", tuple(k for k, _ in self.inputs) + self.request_fields)
        object.__setattr__(self, "typed_outputs", tuple((f, t) for f, _, t in self.outputs))
        object.__setattr__(self, "casters", tuple(value_caster(t) for _, _, t in self.outputs))
        object.__setattr__(self, "output_columns", tuple(c for _, c, _ in self.outputs))


@dataclass(frozen=True)
class OnDemandPlan:
    """The on-demand views of one request and how to compute them (see the module docstring)."""

    steps: tuple[OnDemandStep, ...]
    hidden: frozenset[str]  # input columns read only for the steps
    order: tuple[str, ...]  # every output feature column, in request order
    refs: tuple[str, ...]  # "view:feature" of every requested feature, in request order
    request_fields: dict[str, tuple[str, str, ValueType]]  # field -> (request source, on-demand view, type)
    dtypes: dict[str, ValueType]  # on-demand output column -> type
    repo_path: Path
    _casters: dict[str, Callable[[Any], Any]] = field(default_factory=dict, repr=False)
    _types: tuple[dict[str, ValueType], dict[str, ValueType]] | None = field(default=None, repr=False)
    _shown: dict[tuple[str, ...], tuple[str, ...]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._casters.update((f, request_caster(t)) for f, (_, _, t) in self.request_fields.items())

    # -- request values ------------------------------------------------------------------------

    def check_entity_df(self, columns: Sequence[str]) -> None:
        """A training set's entity_df has every request field, and no column named like an output."""
        for field_name, (source, view, _) in self.request_fields.items():
            if field_name not in columns:
                raise RetrievalError(
                    f"entity_df lacks '{field_name}', a field of request source '{source}' that on-demand "
                    f"feature view '{view}' needs (its columns: {', '.join(columns) or 'none'})"
                )
        for step in self.steps:
            for feature, out, _ in step.outputs:
                if out in columns:
                    raise RetrievalError(
                        f"feature '{step.view.name}:{feature}' would be returned as '{out}', which is already "
                        "a column of entity_df: rename that column, or pass full_feature_names=True"
                    )

    def request_values(self, entity_rows: Any, out: dict[str, list[Any]]) -> dict[str, list[Any]]:
        """`out` (join-key columns of a lookup) plus each request field, from the same entity rows."""
        fields = [f for f in self.request_fields if f not in out]
        if not fields:
            return out
        if type(entity_rows) is list:  # the usual case, first
            try:
                for f in fields:
                    out[f] = self.request_column(f, [row[f] for row in entity_rows], "entity row")
                return out
            except (KeyError, TypeError):
                pass  # the loop below names the row
        elif hasattr(entity_rows, "iloc"):  # a pandas DataFrame
            entity_rows = {c: entity_rows[c] for c in entity_rows.columns}
        elif isinstance(entity_rows, pa.Table):
            entity_rows = {c: entity_rows.column(c) for c in entity_rows.column_names}
        n = len(next(iter(out.values()))) if out else None
        for f in fields:
            if isinstance(entity_rows, Mapping):
                if f not in entity_rows:
                    raise self._missing(f, f"entity_rows has columns {sorted(entity_rows)}")
                values = entity_rows[f]
                if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
                    values = [values]
                elif not isinstance(values, list):
                    values = (
                        values.tolist()
                        if hasattr(values, "tolist")
                        else (values.to_pylist() if hasattr(values, "to_pylist") else list(values))
                    )
            else:
                values = []
                for i, row in enumerate(entity_rows):
                    if not isinstance(row, Mapping) or f not in row:
                        shown = sorted(row) if isinstance(row, Mapping) else type(row).__name__
                        raise self._missing(f, f"entity row {i} has {shown}")
                    values.append(row[f])
            if n is not None and len(values) != n:
                raise RetrievalError(f"entity_rows['{f}'] has {len(values)} values for {n} rows")
            n = len(values)
            out[f] = self.request_column(f, values, "entity row")
        return out

    def request_column(self, field_name: str, values: list[Any], what: str, first: int = 0) -> list[Any]:
        """A request field's values as its declared type, by the rule both paths use
        (`featurestore.on_demand.request_caster`), or a RetrievalError naming the row (`values[0]`
        is row `first`)."""
        source, view, dtype = self.request_fields[field_name]
        out, bad = cast_values(values, self._casters.get(field_name) or request_caster(dtype))
        if out is None:
            raise RetrievalError(
                f"{what} {first + bad}: '{field_name}' is {values[bad]!r}, not a {dtype!r} (a field of request source "
                f"'{source}' that on-demand feature view '{view}' needs)"
            )
        return out

    def _missing(self, field_name: str, detail: str) -> RetrievalError:
        source, view, _ = self.request_fields[field_name]
        return RetrievalError(
            f"entity rows lack '{field_name}', a field of request source '{source}' that on-demand feature "
            f"view '{view}' needs ({detail}): send it with each entity row"
        )

    # -- computing -----------------------------------------------------------------------------

    def respond(
        self,
        entity: dict[str, list[Any]],
        columns: dict[str, list[Any]],
        blocks: list[Block],
        dtypes: dict[str, ValueType],
        join_keys: Sequence[str],
    ) -> OnlineResponse:
        """A lookup's OnlineResponse once its rows are decoded: the on-demand features computed by
        the row form, row by row, and PRESENT (a computed value is a value, null or not); hidden
        inputs and request values left out."""
        n = len(next(iter(entity.values()))) if entity else 0
        kept: list[Block] = []
        shown = self._shown
        for block in blocks:  # each view's block, without the hidden columns
            names = shown.get(block[0])
            if names is None:
                names = shown[block[0]] = tuple(c for c in block[0] if c not in self.hidden)
            kept.append(block if names == block[0] else (names, block[1], block[2], block[3]))
        repo_path = self.repo_path
        for step in self.steps:
            row_fn = step.view.loader(repo_path).functions()[0]
            values = [columns[c] for _, c in step.inputs] + [entity[f] for f in step.request_fields]
            names = step.row_names
            if n == 1:  # one entity row, the most common lookup: the same steps as run_rows, inline
                row = dict(zip(names, [v[0] for v in values]))
                try:
                    result = row_fn(row)
                except BaseException as e:
                    if isinstance(e, ONLINE_PASS):
                        raise
                    raise failed(step.view, e, _entity_row(entity)(0)) from None
                try:
                    outs = [[cast(result[f])] for (f, _), cast in zip(step.typed_outputs, step.casters)]
                except Exception:  # run_rows raises the error that names what is wrong with the result
                    outs = run_rows(
                        step.view, _returns(result), [row], step.typed_outputs, _entity_row(entity)
                    )
            else:
                rows = [dict(zip(names, vals)) for vals in zip(*values)] if values else [{} for _ in range(n)]
                outs = run_rows(
                    step.view,
                    row_fn,
                    rows,
                    step.typed_outputs,
                    _entity_row(entity),
                    step.casters,
                    ONLINE_PASS,
                )
            columns.update(zip(step.output_columns, outs))
            kept.append((step.output_columns, [PRESENT] * n, [None] * n, None))
        if self._types is None or self._types[0] is not dtypes:
            types = {c: dtypes[c] if c in dtypes else self.dtypes[c] for c in self.order}
            object.__setattr__(self, "_types", (dtypes, types))
        assert self._types is not None
        features = {c: columns[c] for c in self.order}
        return OnlineResponse({k: entity[k] for k in join_keys}, features, kept, self._types[1])

    def apply_offline(self, result: pa.Table, n_entity: int, first_row: int = 0) -> pa.Table:
        """The training set `result` (entity_df columns, then joined features) with the on-demand
        features computed (the vectorized form when there is one) and the hidden columns dropped.

        `result` may be a slice of the training set starting at entity_df row `first_row` (a
        streamed batch): errors name rows by their number in entity_df. A vectorized form then sees
        one batch at a time, so on streamed output it must compute each row from that row alone."""
        computed: dict[str, pa.ChunkedArray] = {}
        requests = {
            f: self.request_column(f, result.column(f).to_pylist(), "entity_df row", first_row)
            for f in self.request_fields
        }
        for step in self.steps:
            row_fn, vec_fn = step.view.loader(self.repo_path).functions()
            outputs = [(f, t) for f, _, t in step.outputs]
            if vec_fn is not None:
                types = input_types(step.view)
                table = pa.table(
                    {k: result.column(c).cast(types[k].to_arrow()) for k, c in step.inputs}
                    | {f: pa.array(requests[f], type=types[f].to_arrow()) for f in step.request_fields}
                )
                arrays = run_vectorized(step.view, vec_fn, table, outputs)
            else:
                arrays = self._rows_offline(step, row_fn, result, outputs, requests, first_row)
            computed.update(zip((o for _, o, _ in step.outputs), arrays))
        entity = result.select(range(n_entity))
        for c in self.order:
            column = computed[c] if c in computed else result.column(c)
            dtype = self.dtypes[c].to_arrow() if c in self.dtypes else result.schema.field(c).type
            entity = entity.append_column(pa.field(c, dtype), column)
        return entity

    def _rows_offline(
        self,
        step: OnDemandStep,
        row_fn: Any,
        result: pa.Table,
        outputs: list[tuple[str, ValueType]],
        requests: dict[str, list[Any]],
        first_row: int = 0,
    ) -> list[pa.ChunkedArray]:
        types = input_types(step.view)
        names = [k for k, _ in step.inputs] + list(step.request_fields)
        lists = [result.column(c).cast(types[k].to_arrow()).to_pylist() for k, c in step.inputs]
        lists += [requests[f] for f in step.request_fields]
        rows = (
            [dict(zip(names, vals)) for vals in zip(*lists)]
            if lists
            else [{} for _ in range(result.num_rows)]
        )
        keys = [c for c in result.column_names if c in ("event_timestamp",) or c in step.view.join_keys]

        def row_name(i: int) -> str:
            shown = ", ".join(f"{k}={result.column(k)[i].as_py()!r}" for k in keys)
            return f"entity_df row {first_row + i} ({shown})" if shown else f"entity_df row {first_row + i}"

        columns = run_rows(step.view, row_fn, rows, outputs, row_name)
        return [pa.chunked_array([pa.array(v, type=t.to_arrow())]) for v, (_, t) in zip(columns, outputs)]


def _returns(result: Any) -> Callable[[dict[str, Any]], Any]:
    """A row function that gives `result` (the one a real function returned, to check it again)."""
    return lambda _: result


def _entity_row(entity: dict[str, list[Any]]) -> Any:
    def name(i: int) -> str:
        shown = ", ".join(f"{k}={v[i]!r}" for k, v in entity.items() if i < len(v))
        return f"entity row {i} ({shown})"

    return name


def expand(
    catalog: Catalog, requests: Sequence[Requested], full_feature_names: bool, repo_path: Path
) -> tuple[list[ViewRequest], list[list[str]], OnDemandPlan | None]:
    """The plain views to read (with each on-demand view's inputs), their output names
    (`catalog.output_names`), and the plan computing the on-demand features (None when none is asked)."""
    names = output_names(requests, full_feature_names)
    if not any(isinstance(r, OnDemandRequest) for r in requests):
        return [r for r in requests if isinstance(r, ViewRequest)], names, None
    reads: dict[str, tuple[FeatureView, list[str], list[str]]] = {}  # view -> (view, features, columns)
    for r, cols in zip(requests, names):
        if isinstance(r, ViewRequest):
            _, feats, outs = reads.setdefault(r.view.name, (r.view, [], []))
            for f, c in zip(r.features, cols):
                if f not in feats:
                    feats.append(f)
                    outs.append(c)
    steps = []
    hidden: set[str] = set()
    request_fields: dict[str, tuple[str, str, ValueType]] = {}
    dtypes: dict[str, ValueType] = {}
    for r, cols in zip(requests, names):
        if not isinstance(r, OnDemandRequest):
            continue
        view = r.view
        inputs = []
        for p in view.projections:
            source = catalog.view(p.view_name)
            _, feats, outs = reads.setdefault(source.name, (source, [], []))
            for f in p.features:
                if f not in feats:
                    feats.append(f)
                    outs.append(f"{_HIDDEN}{source.name}__{f}")
                    hidden.add(outs[-1])
                inputs.append((f, outs[feats.index(f)]))
        fields = []
        for s in view.request_sources:
            src = catalog.sources.get(s.name, s)
            assert isinstance(src, RequestSource)
            for fld in src.schema:
                fields.append(fld.name)
                request_fields.setdefault(fld.name, (src.name, view.name, fld.dtype))
        types = {f.name: f.dtype for f in view.schema}
        outputs = tuple((f, c, types[f]) for f, c in zip(r.features, cols))
        dtypes.update((c, t) for _, c, t in outputs)
        steps.append(OnDemandStep(view, tuple(inputs), tuple(fields), outputs))
    plan = OnDemandPlan(
        steps=tuple(steps),
        hidden=frozenset(hidden),
        order=tuple(c for cols in names for c in cols),
        refs=tuple(f"{r.view.name}:{f}" for r in requests for f in r.features),
        request_fields=request_fields,
        dtypes=dtypes,
        repo_path=Path(repo_path),
    )
    plain = [ViewRequest(v, tuple(feats)) for v, feats, _ in reads.values()]
    return plain, [outs for _, _, outs in reads.values()], plan
