"""The metrics of a model on validation rows: what the promotion policy compares.

    X = model_input(model, rows, ["conv_rate", "acc_rate"], defaults={})
    values, errors = score(model, X, y, ["accuracy", "roc_auc"])

The model gets its inputs as serving gives them (`featurestore.models.serving.model_input`: numeric
columns as float64 with NaN for nulls, a DataFrame with the same column names for models fitted
on one), so candidate and champion are judged on what they would see in production. A metric is
scikit-learn's scorer of that name (`sklearn.metrics.get_scorer(name)(model, X, y)`: `roc_auc`
uses `predict_proba` / `decision_function`, as in a grid search); models that are not
scikit-learn estimators are scored from `predict` with monitoring's table of the same names.
A metric that cannot be computed is None, and its error is kept: the policy refuses on it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa


def model_input(model: Any, rows: pa.Table, columns: list[str], defaults: Mapping[str, Any]) -> Any:
    """The input matrix of `model` for `rows`: `columns` in the model's order, a missing value filled
    from `defaults` (the model's missing policy) as serving fills it."""
    import pyarrow.compute as pc

    from ..models.serving import model_input

    values = {}
    for name in columns:
        column = rows.column(name)
        if name in defaults and defaults[name] is not None:
            column = pc.fill_null(column, pa.scalar(defaults[name]).cast(column.type))
        values[name] = column.to_numpy(zero_copy_only=False)
    frame = None
    if getattr(model, "feature_names_in_", None) is not None:
        import pandas as pd

        frame = pd.Index(columns)
    return model_input(values, columns, rows.num_rows, frame)


def score(
    model: Any, X: Any, y: Any, metrics: Iterable[str]
) -> tuple[dict[str, float | None], dict[str, str]]:
    """(metric -> value or None, metric -> why it is None) of `model` on `X`, `y`."""
    from ..models.flavors import is_sklearn
    from ..monitoring.scorers import SCORERS, metric_value

    values: dict[str, float | None] = {}
    errors: dict[str, str] = {}
    sklearn_model = is_sklearn(model)
    predicted: Any = None
    for name in dict.fromkeys(metrics):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if sklearn_model:
                    from sklearn.metrics import get_scorer

                    value = float(get_scorer(name)(model, X, y))
                elif name in SCORERS:
                    if predicted is None:
                        predicted = model.predict(X)
                    value = metric_value(name, y, predicted)
                else:
                    raise ValueError(
                        f"'{name}' is not a metric monitoring's table knows for a non-scikit-learn model"
                    )
        except Exception as e:  # noqa: BLE001 - a metric that cannot be computed is a reason, not a crash
            values[name] = None
            errors[name] = f"{type(e).__name__}: {e}"
            continue
        if math.isfinite(value):
            values[name] = value
        else:
            values[name] = None
            errors[name] = f"{name} is not defined on these {len(y)} rows (NaN)"
    return values, errors


def custom_metrics(evaluate: Any, model: Any, frame: Any) -> tuple[dict[str, float | None], dict[str, str]]:
    """`evaluate(model, frame) -> {name: value}`, values as floats (None and an error when not finite
    numbers); an exception in `evaluate` propagates (the run fails with it)."""
    out = evaluate(model, frame)
    if not isinstance(out, Mapping):
        from ..errors import PipelineError

        raise PipelineError(f"evaluate returned {type(out).__name__}, not a dict {{metric: value}}")
    values: dict[str, float | None] = {}
    errors: dict[str, str] = {}
    for name, value in out.items():
        number = value.item() if hasattr(value, "item") else value
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
            values[str(name)] = None
            errors[str(name)] = f"evaluate gave {value!r}, not a finite number"
        else:
            values[str(name)] = float(number)
    return values, errors
