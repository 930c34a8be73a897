"""Find and import a feature repo's definition files, then validate them as a whole.

    catalog = load_repo(config)      # raises RepoError listing every problem, each with file and object

Every `.py` file under the repo is imported, except files or folders starting with `_` or `.`,
`test_*.py`, and what `[repo] ignore` lists. Module-level Entity, source, FeatureView and
FeatureService objects are collected; sources and entities a view uses are collected too, even
when they are not module-level names.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import importlib.util
import sys
import traceback
from pathlib import Path
from typing import Any

from .catalog import Catalog
from .config import RepoConfig
from .definitions import DataSource, Entity, EntityRef, FeatureService, FeatureView, PushSource
from .errors import DefinitionError, FeatureStoreError, RepoError, did_you_mean
from .offline.sources import SourceReader, duckdb_connection

_KIND_NAMES = {
    "entity": "entity",
    "source": "source",
    "feature_view": "feature view",
    "feature_service": "feature service",
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

    root = str(config.repo_path)
    added_path = root not in sys.path
    if added_path:
        sys.path.insert(0, root)  # definition files may import each other
    try:
        for path in definition_files(config):
            rel = str(path.relative_to(config.repo_path))
            try:
                module = _import(path, config)
            except FeatureStoreError as e:
                problems.append(f"{rel}: {e}")
                continue
            except Exception as e:  # the user's code failed to import: show where
                tb = traceback.extract_tb(e.__traceback__)
                frame = next((f for f in reversed(tb) if f.filename == str(path)), tb[-1] if tb else None)
                line = f" (line {frame.lineno})" if frame else ""
                problems.append(f"{rel}{line}: {type(e).__name__}: {e}")
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
    finally:
        if added_path:
            sys.path.remove(root)

    catalog = Catalog()
    origins: dict[tuple[str, str], str] = {}
    for (kind, name), (obj, where) in found.items():
        catalog.by_kind(kind)[name] = obj
        origins[(kind, name)] = where
    problems += _resolve_entity_refs(catalog, origins)
    problems += check_catalog(catalog, origins)
    if validate_sources:
        problems += check_sources(catalog, origins, config)
    if problems:
        raise RepoError(problems)
    return catalog


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
            catalog.views[name] = dataclasses.replace(view, entities=tuple(resolved))
    return problems


def _import(path: Path, config: RepoConfig) -> Any:
    name = f"_fs_repo_{config.project}_" + "_".join(path.relative_to(config.repo_path).with_suffix("").parts)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_catalog(catalog: Catalog, origins: dict[tuple[str, str], str]) -> list[str]:
    """Cross-object checks that need no data: references resolve, names don't clash."""
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
            if served is None:
                problems.append(
                    f"{where}: feature service '{service.name}' uses unknown feature view "
                    f"'{proj.view_name}'{did_you_mean(proj.view_name, catalog.views)}"
                )
                continue
            for f in proj.features:
                if f not in served.feature_names:
                    problems.append(
                        f"{where}: feature service '{service.name}': view '{served.name}' has no feature "
                        f"'{f}'{did_you_mean(f, served.feature_names)}"
                    )
    return problems


def check_sources(catalog: Catalog, origins: dict[tuple[str, str], str], config: RepoConfig) -> list[str]:
    """Check every view against its source's real schema: columns exist, types fit."""
    problems = []
    reader = SourceReader(duckdb_connection(), config.repo_path, catalog.sources)
    schemas: dict[str, Any] = {}
    for source in catalog.sources.values():
        if isinstance(source, PushSource) and source.batch_source is None:
            continue
        where = origins.get(("source", source.name), "?")
        try:
            schemas[source.name] = reader.schema(source)
        except DefinitionError as e:
            problems.append(f"{where}: {e}")
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
    for field in view.features:
        if field.name not in cols:
            problems.append(missing(field.name, "feature"))
        elif not field.dtype.accepts(cols[field.name]):
            problems.append(
                f"feature '{field.name}' is declared {field.dtype!r} but source '{src}' has type "
                f"{cols[field.name]}"
            )
    return problems
