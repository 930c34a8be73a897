"""Find and import a feature repo's definition files, then validate them as a whole.

    catalog = load_repo(config)      # raises RepoError listing every problem, each with file and object

Every `.py` file under the repo is imported, except files or folders starting with `_` or `.`,
`test_*.py`, and what `[repo] ignore` lists. Module-level Entity, source, FeatureView,
FeatureService, on-demand view and training pipeline objects are collected; sources and entities a view uses are collected too, even
when they are not module-level names.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import importlib.util
import traceback
from pathlib import Path
from typing import Any

from .catalog import Catalog
from .config import RepoConfig
from .definitions import (
    DataSource,
    Entity,
    EntityRef,
    FeatureService,
    FeatureView,
    FeatureViewProjection,
    Field,
    PushSource,
)
from .errors import DefinitionError, FeatureStoreError, RepoError, did_you_mean
from .offline.sources import SourceReader, duckdb_connection
from .on_demand import OnDemandFeatureView, RequestSource, on_demand_problems
from .on_demand_code import fresh_repo_imports
from .pipelines.definition import TrainingPipeline
from .sites import location as definition_location
from .types import value_type_of

_KIND_NAMES = {
    "entity": "entity",
    "source": "source",
    "feature_view": "feature view",
    "on_demand_feature_view": "on-demand feature view",
    "feature_service": "feature service",
    "training_pipeline": "training pipeline",
}


def definition_files(config: RepoConfig) -> list[Path]:
    root = config.repo_path
    files = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if any(part.startswith((".", "_")) for part in rel.parts) or path.name.startswith("test_"):
            continue
        if any(part in ("data", "venv", "site-packages", "node_modules") for part in rel.parts[:-1]):
            continue
        if any(fnmatch.fnmatch(str(rel), pat) or fnmatch.fnmatch(path.name, pat) for pat in config.ignore):
            continue
        files.append(path)
    return files


def load_repo(config: RepoConfig, validate_sources: bool = True) -> Catalog:
    """Import the repo's definition files and validate them; raise RepoError with every problem."""
    problems: list[str] = []
    found: dict[tuple[str, str], tuple[Any, str]] = {}  # (kind, name) -> (object, file)
    locations: dict[tuple[str, str], str] = {}  # (kind, name) -> "file.py:LINE" where it was made

    def add(kind: str, obj: Any, where: str) -> None:
        key = (kind, obj.name)
        if key in found:
            other, other_where = found[key]
            if other is not obj and other.to_spec() != obj.to_spec():
                problems.append(
                    f"{where}: {_KIND_NAMES[kind]} '{obj.name}' is defined twice, "
                    f"differently (also in {other_where}); rename one"
                )
            return
        found[key] = (obj, where)
        locations[key] = definition_location(obj, config.repo_path) or where

    # Definition files may import each other; each load reads every file of the repo as it is now.
    with fresh_repo_imports(config.repo_path):
        for path in definition_files(config):
            rel = str(path.relative_to(config.repo_path))
            try:
                module = _import(path, config)
            except Exception as e:  # the user's code failed to import: show where, in their file
                problems.append(import_problem(e, path, config.repo_path))
                continue
            for value in vars(module).values():
                if isinstance(value, FeatureView):
                    add("feature_view", value, rel)
                    for entity in value.entities:
                        if not isinstance(entity, EntityRef):
                            add("entity", entity, rel)
                    add("source", value.source, rel)
                    if isinstance(value.source, PushSource) and value.source.batch_source is not None:
                        add("source", value.source.batch_source, rel)
                elif isinstance(value, Entity):
                    add("entity", value, rel)
                elif isinstance(value, DataSource):
                    add("source", value, rel)
                elif isinstance(value, FeatureService):
                    add("feature_service", value, rel)
                elif isinstance(value, OnDemandFeatureView):
                    add("on_demand_feature_view", value, rel)
                    for request in value.request_sources:
                        add("source", request, rel)
                elif isinstance(value, TrainingPipeline):
                    add("training_pipeline", value, rel)

    catalog = Catalog(locations=locations)
    origins: dict[tuple[str, str], str] = {}
    for (kind, name), (obj, where) in found.items():
        catalog.by_kind(kind)[name] = obj
        origins[(kind, name)] = where
    problems += _resolve_entity_refs(catalog, origins)
    schemas, source_problems = source_schemas(catalog, origins, config) if validate_sources else (None, [])
    if schemas is not None:
        problems += _complete_aggregations(catalog, origins, schemas)
    problems += check_catalog(catalog, origins, schemas)
    if schemas is not None:
        problems += source_problems + check_sources(catalog, origins, schemas)
    problems += on_demand_problems(catalog, origins, config.repo_path, validate_sources)
    if catalog.pipelines:
        from .pipelines.repo import pipeline_problems

        problems += pipeline_problems(catalog, origins, config.repo_path, schemas)
    if problems:
        raise RepoError(problems)
    return catalog


def _complete_aggregations(
    catalog: Catalog, origins: dict[tuple[str, str], str], schemas: dict[str, Any]
) -> list[str]:
    """Give aggregating views the types of aggregated columns their schema leaves out, read from the
    source (SPEC §11: the schema may be omitted)."""
    problems = []
    for name, view in list(catalog.views.items()):
        schema = schemas.get(view.source.name)
        if not view.aggregations or schema is None:
            continue
        declared = {f.name for f in view.schema}
        extra = []
        for column in dict.fromkeys(a.column for a in view.aggregations):
            if column in declared or column not in schema.names:
                continue  # a missing column is reported by check_sources
            dtype = value_type_of(schema.field(column).type)
            if dtype is None:
                problems.append(
                    f"{origins[('feature_view', name)]}: feature view '{name}': column '{column}' of source "
                    f"'{view.source.name}' has type {schema.field(column).type}, which cannot be aggregated"
                )
                continue
            extra.append(Field(column, dtype))
        if extra:
            try:
                catalog.views[name] = dataclasses.replace(view, schema=view.schema + tuple(extra))
            except DefinitionError as e:
                problems.append(f"{origins[('feature_view', name)]}: {e}")
    return problems


def _resolve_entity_refs(catalog: Catalog, origins: dict[tuple[str, str], str]) -> list[str]:
    """Replace entities named by string (`entities=["driver"]`) with the repo's Entity of that name."""
    problems = []
    for name, view in list(catalog.views.items()):
        if not any(isinstance(e, EntityRef) for e in view.entities):
            continue
        resolved = []
        for e in view.entities:
            if isinstance(e, EntityRef):
                if e.name not in catalog.entities:
                    problems.append(
                        f"{origins[('feature_view', name)]}: feature view '{name}' uses unknown entity "
                        f"'{e.name}'{did_you_mean(e.name, catalog.entities)}"
                    )
                    break
                e = catalog.entities[e.name]
            resolved.append(e)
        else:
            try:  # rebuilt as if given the Entity objects: their join keys decide which fields are keys
                catalog.views[name] = dataclasses.replace(view, entities=tuple(resolved))
            except DefinitionError as e:
                problems.append(f"{origins[('feature_view', name)]}: {e}")
    # A service of whole views (`features=[view]`) takes each view's features as resolved now.
    for name, service in list(catalog.services.items()):
        if not any(p.whole_view and p.view_name in catalog.views for p in service.features):
            continue
        projections = []
        for p in service.features:
            whole = catalog.views.get(p.view_name) if p.whole_view else None
            if whole is not None:
                p = FeatureViewProjection(whole.name, whole.feature_names, view=whole, whole_view=True)
            projections.append(p)
        catalog.services[name] = dataclasses.replace(service, features=tuple(projections))
    return problems


def import_problem(error: BaseException, path: Path, root: Path) -> str:
    """An import failure as `file (line N): error`, located in the user's code, not the loader's.

    The line is the innermost one of the user's code that failed: a SyntaxError's own file, line and
    column (the compiler raised it, so no frame of that file is on the stack), else the innermost
    traceback frame in a file of the repo. When that is another file than the one being imported
    (a helper it imports or calls), both are named. The offending line is shown beneath, with carets
    under a syntax error's columns.
    """
    rel = _relative(path, root)
    frames = traceback.extract_tb(error.__traceback__)
    outer = next((f for f in reversed(frames) if _same_file(f.filename, path)), None)
    caret: int | None = None
    width = 1
    if isinstance(error, SyntaxError) and error.filename and _in_repo(error.filename, root):
        where, lineno, code = error.filename, error.lineno, error.text
        caret = error.offset
        if caret and error.end_offset and error.end_lineno in (None, lineno):
            width = max(1, error.end_offset - caret)
        message = f"{type(error).__name__}: {error.msg}"
    else:
        inner = next((f for f in reversed(frames) if _in_repo(f.filename, root)), None)
        where, lineno, code = (inner.filename, inner.lineno, inner.line) if inner else (str(path), None, None)
        ours = isinstance(error, FeatureStoreError)  # our messages already say what is wrong
        message = str(error) if ours else f"{type(error).__name__}: {error}"
    if _same_file(where, path):
        location = f"{rel} (line {lineno})" if lineno else rel
    else:
        at = f"{_relative(Path(where), root)} line {lineno}" if lineno else _relative(Path(where), root)
        location = f"{rel} (line {outer.lineno}, in {at})" if outer else f"{rel} (in {at})"
    text = f"{location}: {message}"
    if code and code.strip():
        line = code.rstrip("\n").expandtabs()
        indent = len(line) - len(line.lstrip())
        text += f"\n      {line.strip()}"
        if caret is not None and caret > indent:
            text += "\n      " + " " * (caret - 1 - indent) + "^" * width
    return text


def _same_file(filename: str, path: Path) -> bool:
    return filename == str(path) or Path(filename) == path


def _in_repo(filename: str, root: Path) -> bool:
    """Whether a traceback frame's file is the user's code in the repo (not an installed package)."""
    try:
        parts = Path(filename).relative_to(root).parts
    except ValueError:
        return False
    return not any(part.startswith(".") or part in ("venv", "site-packages") for part in parts)


def _relative(path: Path, root: Path) -> str:
    """`path` relative to the repo root when inside it, else as given."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _import(path: Path, config: RepoConfig) -> Any:
    name = f"_fs_repo_{config.project}_" + "_".join(path.relative_to(config.repo_path).with_suffix("").parts)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_catalog(
    catalog: Catalog, origins: dict[tuple[str, str], str], schemas: dict[str, Any] | None = None
) -> list[str]:
    """Cross-object checks: references resolve, names don't clash. `schemas` (source name -> Arrow
    schema, when read) tells which side of a misspelled feature name is the typo."""
    problems = []
    for view in catalog.views.values():
        where = origins.get(("feature_view", view.name), "?")
        for entity in view.entities:
            known = catalog.entities.get(entity.name)
            if known is not None and known.to_spec() != entity.to_spec():
                problems.append(
                    f"{where}: feature view '{view.name}' uses an entity '{entity.name}' that differs "
                    f"from the one in {origins.get(('entity', entity.name))}"
                )
        if view.name in catalog.services:
            pass  # different namespaces; allowed
    for service in catalog.services.values():
        where = origins.get(("feature_service", service.name), "?")
        for proj in service.features:
            served = catalog.views.get(proj.view_name)
            computed = catalog.on_demand.get(proj.view_name)
            if computed is not None:
                problems += [
                    f"{where}: feature service '{service.name}' asks for '{proj.view_name}:{f}', which on-demand "
                    f"view '{proj.view_name}' does not define{did_you_mean(f, computed.feature_names)}"
                    for f in proj.features
                    if f not in computed.feature_names
                ]
                continue
            if served is None:
                problems.append(
                    f"{where}: feature service '{service.name}' uses unknown feature view "
                    f"'{proj.view_name}'{did_you_mean(proj.view_name, catalog.views)}"
                )
                continue
            schema = schemas.get(served.source.name) if schemas is not None else None
            columns = {c.name for c in schema} if schema is not None else None
            for f in proj.features:
                if f not in served.feature_names:
                    problems.append(f"{where}: {_missing_feature(service.name, served, f, columns)}")
    return problems


def _missing_feature(service: str, view: FeatureView, name: str, columns: set[str] | None) -> str:
    """Why a service's feature is not in its view, and which name to fix.

    A suggestion is only as good as its reference: when the view's close field is not a column of the
    source either, the view's field is the likely typo, and suggesting it would spread the typo.
    """
    asks = f"feature service '{service}' asks for '{view.name}:{name}'"
    if name in view.join_keys:
        return f"{asks}, a join key of view '{view.name}', not a feature: entity rows carry it; drop it"
    lacks = f"{asks}, which view '{view.name}' does not define"
    src = view.source.name
    close = difflib.get_close_matches(name, view.feature_names, n=1, cutoff=0.6)
    if close and columns is not None and close[0] not in columns:
        return (
            f"{lacks}; its field '{close[0]}' is not a column of source '{src}' either"
            f"{did_you_mean(close[0], columns)}: the view's field is likely the typo"
        )
    if not close and columns is not None and name in columns:
        return (
            f"{lacks}; source '{src}' has a column '{name}': add Field(\"{name}\", ...) to the view's "
            "schema, or drop it from the service"
        )
    return f"{lacks}{did_you_mean(name, view.feature_names)}"


def source_schemas(
    catalog: Catalog, origins: dict[tuple[str, str], str], config: RepoConfig
) -> tuple[dict[str, Any], list[str]]:
    """Each readable source's real Arrow schema by name, and a problem per unreadable source."""
    problems = []
    reader = SourceReader(duckdb_connection(), config.repo_path, catalog.sources)
    schemas: dict[str, Any] = {}
    for source in catalog.sources.values():
        if isinstance(source, RequestSource) or (
            isinstance(source, PushSource) and source.batch_source is None
        ):
            continue
        where = origins.get(("source", source.name), "?")
        try:
            schemas[source.name] = reader.schema(source)
        except DefinitionError as e:
            problems.append(f"{where}: {e}")
    return schemas, problems


def check_sources(
    catalog: Catalog, origins: dict[tuple[str, str], str], schemas: dict[str, Any]
) -> list[str]:
    """Check every view against its source's real schema (`source_schemas`): columns exist, types fit."""
    problems = []
    for view in catalog.views.values():
        schema = schemas.get(view.source.name)
        if schema is None:
            continue
        where = origins.get(("feature_view", view.name), "?")
        problems += [f"{where}: feature view '{view.name}': {p}" for p in view_schema_problems(view, schema)]
    return problems


def view_schema_problems(view: FeatureView, schema: Any) -> list[str]:
    """What is wrong between a view's declared columns and a source's Arrow schema."""
    import pyarrow as pa

    problems = []
    cols = {f.name: f.type for f in schema}
    src = view.source.name

    def missing(column: str, role: str) -> str:
        return f"{role} '{column}' is not a column of source '{src}'{did_you_mean(column, cols)}"

    for role, col in (
        ("timestamp_field", view.source.timestamp_field),
        ("created_timestamp_field", view.source.created_timestamp_field),
    ):
        if col is None:
            continue
        if col not in cols:
            problems.append(missing(col, role))
        elif not (pa.types.is_timestamp(cols[col]) or pa.types.is_date(cols[col])):
            problems.append(f"{role} '{col}' of source '{src}' has type {cols[col]}, not a timestamp")
    declared_keys = view.key_fields
    for key in view.join_keys:
        if key not in cols:
            problems.append(missing(key, "join key"))
        elif key in declared_keys and not declared_keys[key].accepts(cols[key]):
            problems.append(
                f"join key '{key}' is declared {declared_keys[key]!r} but source '{src}' has {cols[key]}"
            )
    role = "aggregated column" if view.aggregations else "feature"
    declared = {f.name for f in view.row_fields}
    for column in dict.fromkeys(a.column for a in view.aggregations):
        if column not in cols and column not in declared:
            problems.append(missing(column, role))
    for field in view.row_fields:
        if field.name not in cols:
            problems.append(missing(field.name, role))
        elif not field.dtype.accepts(cols[field.name]):
            problems.append(
                f"{role} '{field.name}' is declared {field.dtype!r} but source '{src}' has type "
                f"{cols[field.name]}"
            )
    return problems
