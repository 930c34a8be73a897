"""The difference between a repo's definitions and what the registry holds: what `apply` would do.

    plan = diff(registry.specs(), catalog.specs())
    print(plan.render())

**Stale views.** A feature view's materialized rows (offline storage, its watermark) were built
from its definition at the time. When its stored rows lack what the new definition reads (a feature
added or retyped, other entities or source, serving online newly), or its source reads elsewhere
(a path, a query, a source its DuckDB query names, transitively), or its entities' join keys
change, they no longer match the view: a feature added would read as NULL over all the
materialized history, though the source has it. `Plan.stale` names those views, and apply resets
them (`Registry.apply`): the watermark is dropped and the runs so far no longer count, so training
sets read the source until the next `materialize-incremental` rebuilds the view from the start.
Description, owner, tags, ttl, freshness, feature order, a feature removed, serving online no more, and the
contents of a DataFrame source (data, as a Parquet file's are) reset nothing. Views added or
removed are reset too (a view removed, then added again, starts clean). Online rows stay (lookups
keep answering) and are overwritten by the rebuild.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .catalog import KINDS
from .definitions import names_source

_METADATA = ("description", "owner", "tags")  # fields that change no stored row (views: ttl, freshness too)

_LABEL = {
    "entity": "entity",
    "source": "source",
    "feature_view": "feature view",
    "on_demand_feature_view": "on-demand feature view",
    "feature_service": "feature service",
    "training_pipeline": "training pipeline",
}


@dataclass(frozen=True)
class FieldChange:
    path: str
    old: Any
    new: Any


@dataclass(frozen=True)
class Change:
    """One object's change: action is 'add', 'change', 'remove' or 'unchanged'."""

    action: str
    kind: str
    name: str
    spec: dict[str, Any] | None
    fields: tuple[FieldChange, ...] = ()


@dataclass
class Plan:
    changes: list[Change] = field(default_factory=list)
    stale: tuple[str, ...] = ()  # feature views whose materialized rows apply resets (module docstring)

    @property
    def pending(self) -> list[Change]:
        return [c for c in self.changes if c.action != "unchanged"]

    @property
    def is_empty(self) -> bool:
        return not self.pending

    def counts(self) -> dict[str, int]:
        out = {"add": 0, "change": 0, "remove": 0, "unchanged": 0}
        for c in self.changes:
            out[c.action] += 1
        return out

    def render(self) -> str:
        """Human-readable plan, one line per object and one per changed field."""
        if self.is_empty:
            return f"No changes: {len(self.changes)} object(s) up to date."
        sign = {"add": "+", "change": "~", "remove": "-"}
        lines = []
        for c in self.pending:
            lines.append(f"{sign[c.action]} {_LABEL[c.kind]} {c.name}")
            for f in c.fields:
                show = _duration if f.path.endswith("_seconds") else _short
                lines.append(f"    {f.path}: {show(f.old)} -> {show(f.new)}")
        kept = {
            c.name for c in self.changes if c.kind == "feature_view" and c.action in ("change", "unchanged")
        }
        rebuilt = [v for v in self.stale if v in kept]  # added and removed views are reset without a word
        if rebuilt:
            lines.append(
                f"Materialized rows of feature view(s) {', '.join(rebuilt)} no longer match the definition: "
                "apply resets them (training sets read the source until the next "
                "materialize-incremental rebuilds them from the start)."
            )
        n = self.counts()
        lines.append(
            f"Plan: {n['add']} to add, {n['change']} to change, {n['remove']} to remove, "
            f"{n['unchanged']} unchanged."
        )
        return "\n".join(lines)


def diff(
    current: dict[tuple[str, str], dict[str, Any]], desired: dict[tuple[str, str], dict[str, Any]]
) -> Plan:
    """Compare registry specs (current) with repo specs (desired)."""
    order = {k: i for i, k in enumerate(KINDS)}
    changes = []
    for key in sorted(set(current) | set(desired), key=lambda k: (order[k[0]], k[1])):
        kind, name = key
        old, new = current.get(key), desired.get(key)
        if old is None:
            changes.append(Change("add", kind, name, new))
        elif new is None:
            changes.append(Change("remove", kind, name, None))
        elif old == new:
            changes.append(Change("unchanged", kind, name, new))
        else:
            changes.append(Change("change", kind, name, new, tuple(_field_changes(old, new))))
    # Removals last and in reverse order, so services go before the views they use.
    adds = [c for c in changes if c.action != "remove"]
    removes = [c for c in changes if c.action == "remove"]
    return Plan(adds + sorted(removes, key=lambda c: -order[c.kind]), stale_views(current, desired))


def stale_views(
    current: dict[tuple[str, str], dict[str, Any]], desired: dict[tuple[str, str], dict[str, Any]]
) -> tuple[str, ...]:
    """The feature views whose materialized rows the change from `current` to `desired` makes stale."""
    sources = {
        n
        for k, n in (*current, *desired)
        if k == "source" and _source_rows(current.get((k, n))) != _source_rows(desired.get((k, n)))
    }
    entities = {
        n
        for k, n in (*current, *desired)
        if k == "entity" and _without_metadata(current.get((k, n))) != _without_metadata(desired.get((k, n)))
    }
    # ...and, transitively, the sources whose DuckDB query names a changed source
    queries = {n: _query_of(spec) for (k, n), spec in desired.items() if k == "source"}
    grown = True
    while grown:
        grown = False
        for name, query in queries.items():
            if name not in sources and query and any(names_source(query, s) for s in sources):
                sources.add(name)
                grown = True
    stale = set()
    for kind, name in {*current, *desired}:
        if kind == "feature_view":
            old, new = current.get((kind, name)), desired.get((kind, name))
            if (
                old is None
                or new is None
                or _view_rows_differ(old, new)
                or new["source"] in sources
                or set(new["entities"]) & entities
            ):
                stale.add(name)
    return tuple(sorted(stale))


def _without_metadata(spec: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if spec is None else {k: v for k, v in spec.items() if k not in _METADATA}


def _source_rows(spec: dict[str, Any] | None) -> dict[str, Any] | None:
    """What decides the rows a source gives: its location and fields. A DataFrame source's contents
    (its fingerprint) are data, not definition, as a Parquet file's are."""
    out = _without_metadata(spec)
    if out is not None:
        out.pop("fingerprint", None)
        if isinstance(out.get("batch_source"), dict):
            out["batch_source"] = _source_rows(out["batch_source"])
    return out


def _query_of(spec: dict[str, Any]) -> str:
    """The DuckDB query a source runs (its own, or its batch source's), which may name other sources."""
    batch = spec.get("batch_source")
    return (spec.get("query") or "") + " " + (_query_of(batch) if isinstance(batch, dict) else "")


def _view_rows_differ(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether a view's stored rows lack what its new definition reads: a feature added or retyped, other
    entities or source, or serving online that was not. Removing a feature, ttl, order, serving no
    longer online and metadata leave the stored rows as good as they were."""
    rest = ("schema", "online", "ttl_seconds", "freshness_seconds", *_METADATA)
    if {k: v for k, v in old.items() if k not in rest} != {k: v for k, v in new.items() if k not in rest}:
        return True
    had = {(f["name"], f["dtype"]) for f in old["schema"]}
    if any((f["name"], f["dtype"]) not in had for f in new["schema"]):
        return True
    return bool(new.get("online")) and not old.get("online")


def _field_changes(old: Any, new: Any, path: str = "") -> list[FieldChange]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new)):
            out += _field_changes(old.get(k), new.get(k), f"{path}.{k}" if path else k)
        return out
    if _is_named_list(old) and _is_named_list(new):
        olds = {i["name"]: i for i in old}
        news = {i["name"]: i for i in new}
        out = []
        for n in list(olds) + [n for n in news if n not in olds]:
            out += _field_changes(olds.get(n), news.get(n), f"{path}[{n}]")
        if not out and [i["name"] for i in old] != [i["name"] for i in new]:
            out.append(FieldChange(f"{path} order", [i["name"] for i in old], [i["name"] for i in new]))
        return out
    return [] if old == new else [FieldChange(path, old, new)]


def _is_named_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(i, dict) and "name" in i for i in value) and bool(value)


def format_duration(seconds: float) -> str:
    """A duration as a person writes it: 45d, 1h30m, 90 seconds as 1m30s, 0.5 as 0.5s."""
    if seconds < 0:
        return "-" + format_duration(-seconds)
    whole = int(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
    rest = whole + (seconds - int(seconds))
    if rest or not parts:
        parts.append(f"{rest:g}s")
    return "".join(parts)


def _duration(value: Any) -> str:
    """A `*_seconds` field of a plan (a view's ttl) as a duration; `(none)` when unset."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format_duration(value)
    return _short(value)


def _short(value: Any) -> str:
    if value is None:
        return "(none)"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
