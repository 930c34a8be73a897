"""The code of training pipelines: bound to its file and hashes at apply, loaded and checked by a run.

The same rules as on-demand views' functions (`featurestore.on_demand_code`): a pipeline's `train`
and `evaluate` are plain functions at the top of a file of the repo, found again by name; apply
records their hashes; a run imports the definition file afresh and refuses code that differs from
what was applied (`DefinitionsChangedError`: apply again), so a run always trains with the code
its record names.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DefinitionsChangedError
from .definition import EvaluateFunction, TrainFunction, TrainingPipeline

if TYPE_CHECKING:
    from ..config import RepoConfig

MODE = "training_pipeline"  # what the code hash mixes in beside the functions


def _functions(pipeline: TrainingPipeline) -> list[Any]:
    return [pipeline.train, pipeline.evaluate]


def bind(
    pipeline: TrainingPipeline, module: str, root: Path, reloaded: dict[str, Any]
) -> TrainingPipeline | str:
    """The pipeline with where its functions are and their hashes, or why a run could not load it
    (`featurestore.on_demand_code.bind_code`). `module`: the repo-relative definition file it was
    found in; `reloaded` caches the import of each file once more."""
    from .. import on_demand_code as code

    bound = code.bind_code(
        pipeline,
        _functions,
        lambda p: code.code_hash(_functions(p), MODE, root),
        module,
        root,
        reloaded,
        loader="a run",
        function_noun="its train function",
        defines=f"pipeline of model '{pipeline.name}'",
    )
    if isinstance(bound, str):
        return bound
    sites = bound.sites
    evaluate_file, evaluate_name = sites[1] if len(sites) > 1 else ("", "")
    return replace(
        pipeline,
        module=module,
        function=sites[0][1],
        function_file=sites[0][0],
        evaluate_function=evaluate_name,
        evaluate_function_file=evaluate_file,
        sha256=bound.sha256,
        source_sha256=bound.source_sha256,
    )


def load_functions(
    pipeline: TrainingPipeline, config: RepoConfig
) -> tuple[TrainFunction, EvaluateFunction | None]:
    """Import the applied pipeline's functions from the repo, checked against the applied hashes:
    (train, evaluate or None); DefinitionsChangedError naming what differs."""
    from .. import on_demand_code as code
    from ..repo import definition_files

    root = config.repo_path
    what = f"definitions changed on disk: apply again (training pipeline of model '{pipeline.name}'"
    path = code.checked_path(
        root, pipeline.module, f"training pipeline of model '{pipeline.name}'", definition_files(config)
    )
    sites = pipeline.sites()
    for file, _ in sites:
        code.checked_path(root, file, f"training pipeline of model '{pipeline.name}'")
    source = code.own_source_hash(root, sites)
    if isinstance(source, tuple):
        raise DefinitionsChangedError(f"{what}: {source[0]} no longer defines '{source[1]}')")
    if source != pipeline.source_sha256:
        raise DefinitionsChangedError(
            f"{what}: the source of its function '{pipeline.function}' in {pipeline.function_file} differs "
            "from the applied one)"
        )
    try:
        found = code.import_definitions(path, root, TrainingPipeline).get(pipeline.name)
    except Exception as e:  # the user's file fails to import now
        raise DefinitionsChangedError(
            f"{what}: {pipeline.module} no longer imports: {type(e).__name__}: {e})"
        ) from None
    if found is None or found.train is None:
        raise DefinitionsChangedError(f"{what}: {pipeline.module} no longer defines it)")
    if code.code_hash(_functions(found), MODE, root)[0] != pipeline.sha256:
        raise DefinitionsChangedError(
            f"{what}: code its function uses (a helper, a constant, a module of the repo) differs from the "
            "applied one)"
        )
    return found.train, found.evaluate
