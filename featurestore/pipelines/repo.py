"""What the repo loader checks of training pipelines: references resolve, the metric is known, the
code is bound to its file and hashes (`featurestore.pipelines.code.bind`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import did_you_mean
from .code import bind


def known_metric(name: str) -> bool:
    """Whether `name` is a scikit-learn scorer name (the table monitoring computes, else sklearn's own)."""
    from ..monitoring.scorers import SCORERS

    if name in SCORERS:
        return True
    try:
        from sklearn.metrics import get_scorer_names
    except ImportError:  # without scikit-learn a run scores with `evaluate` or monitoring's table only
        return False
    return name in get_scorer_names()


def pipeline_problems(
    catalog: Any, origins: dict[tuple[str, str], str], root: Path, schemas: dict[str, Any] | None
) -> list[str]:
    """Bind each pipeline's code and check what it names; returns the problems. `schemas` (source name
    -> Arrow schema, when the sources were read) lets the label be checked against the spine."""
    problems: list[str] = []
    reloaded: dict[str, Any] = {}
    for name, pipeline in list(catalog.pipelines.items()):
        origin = origins.get(("training_pipeline", name), "?")
        where = f"{origin}: training pipeline of model '{name}'"
        if pipeline.features not in catalog.services:
            problems.append(
                f"{where} uses unknown feature service '{pipeline.features}'"
                f"{did_you_mean(pipeline.features, catalog.services)}"
            )
        spine = pipeline.spine
        if spine in catalog.views:
            columns: set[str] | None = {f.name for f in catalog.views[spine].schema} | set(
                catalog.views[spine].join_keys
            )
        elif spine in catalog.sources:
            schema = (schemas or {}).get(spine)
            columns = None if schema is None else set(schema.names)
        else:
            problems.append(
                f"{where} uses unknown spine '{spine}' (a source or feature view with the label)"
                f"{did_you_mean(spine, [*catalog.sources, *catalog.views])}"
            )
            columns = None
        if columns is not None and pipeline.label not in columns:
            problems.append(
                f"{where}: its label '{pipeline.label}' is not a column of spine '{spine}'"
                f"{did_you_mean(pipeline.label, columns)}"
            )
        for metric in [pipeline.metric, *pipeline.guards]:
            if pipeline.evaluate is None and not known_metric(metric):
                from ..monitoring.scorers import SCORERS

                problems.append(
                    f"{where}: metric '{metric}' is not a scikit-learn scorer name{did_you_mean(metric, SCORERS)} "
                    "(or return it from an evaluate function: evaluate=fn)"
                )
        no_evaluate = pipeline.evaluate is None and not pipeline.evaluate_function
        if not pipeline.greater_is_better and no_evaluate and known_metric(pipeline.metric):
            problems.append(
                f"{where}: greater_is_better=False, but metric '{pipeline.metric}' is a scikit-learn scorer, "
                "and scikit-learn scorers are greater-is-better (errors are negated: neg_mean_absolute_error, "
                "neg_log_loss, ...): use the scorer as it is with greater_is_better=True, or return a "
                "lower-is-better metric from an evaluate function"
            )
        bound = bind(pipeline, origin if origin != "?" else "", root, reloaded)
        if isinstance(bound, str):
            problems.append(f"{where}: {bound}")
            continue
        catalog.pipelines[name] = bound
    return problems
