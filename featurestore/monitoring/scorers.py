"""The live-performance metrics by scikit-learn scorer name: an explicit table from each name to its
`sklearn.metrics` function and sign, so a live metric is computed as scikit-learn's scorer of that name
would compute it on the same labels and predictions (tests/monitoring/test_performance.py checks each).

    metric_value("neg_mean_absolute_error", y_true, y_pred)     # -mean_absolute_error(y_true, y_pred)

Every name is greater-is-better: losses are negated, as scikit-learn's scorers negate them. The
scores (`roc_auc`, `average_precision`, `neg_brier_score`) take the prediction as the score.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

from ..errors import MonitoringError


class Scorer(NamedTuple):
    """How to compute one scikit-learn scorer name from labels and logged predictions."""

    function: str  # in sklearn.metrics, or one of _LOCAL
    sign: int  # -1: a loss, negated so that greater is better (as scikit-learn's scorers)
    kwargs: dict[str, Any]
    numeric: bool  # needs numbers (regression metrics and scores), not class labels


def _classification(function: str, **kwargs: Any) -> Scorer:
    return Scorer(function, 1, kwargs, numeric=False)


def _numeric(function: str, sign: int = 1) -> Scorer:
    return Scorer(function, sign, {}, numeric=True)


SCORERS: dict[str, Scorer] = {
    "accuracy": _classification("accuracy_score"),
    "balanced_accuracy": _classification("balanced_accuracy_score"),
    "matthews_corrcoef": _classification("matthews_corrcoef"),
    **{
        f"{name}{suffix}": _classification(f"{name}_score", **({"average": suffix[1:]} if suffix else {}))
        for name in ("f1", "precision", "recall", "jaccard")
        for suffix in ("", "_macro", "_micro", "_weighted")
    },
    "roc_auc": _numeric("roc_auc_score"),
    "average_precision": _numeric("average_precision_score"),
    "neg_brier_score": _numeric("brier_score_loss", -1),
    "r2": _numeric("r2_score"),
    "explained_variance": _numeric("explained_variance_score"),
    "neg_max_error": _numeric("max_error", -1),
    "neg_mean_absolute_error": _numeric("mean_absolute_error", -1),
    "neg_mean_squared_error": _numeric("mean_squared_error", -1),
    "neg_root_mean_squared_error": _numeric("root_mean_squared_error", -1),
    "neg_mean_squared_log_error": _numeric("mean_squared_log_error", -1),
    "neg_root_mean_squared_log_error": _numeric("root_mean_squared_log_error", -1),
    "neg_median_absolute_error": _numeric("median_absolute_error", -1),
    "neg_mean_absolute_percentage_error": _numeric("mean_absolute_percentage_error", -1),
    "neg_mean_poisson_deviance": _numeric("mean_poisson_deviance", -1),
    "neg_mean_gamma_deviance": _numeric("mean_gamma_deviance", -1),
}


def _root(function: str) -> Callable[..., float]:
    def root(y_true: Any, y_pred: Any) -> float:
        import sklearn.metrics

        return math.sqrt(getattr(sklearn.metrics, function)(y_true, y_pred))

    return root


# defined here: scikit-learn < 1.4 has no root_* functions
_LOCAL: dict[str, Callable[..., float]] = {
    "root_mean_squared_error": _root("mean_squared_error"),
    "root_mean_squared_log_error": _root("mean_squared_log_error"),
}


def scorer(name: str) -> Scorer:
    """The Scorer of a scikit-learn scorer name; MonitoringError listing the supported ones."""
    found = SCORERS.get(name)
    if found is None:
        raise MonitoringError(
            f"metric {name!r} is not a scorer name live performance supports; supported: {', '.join(SCORERS)}"
        )
    return found


def metric_value(name: str, y_true: Any, y_pred: Any) -> float:
    """Scorer `name` on labels and predictions (greater is better). Raises ValueError where the
    metric is undefined on these rows (one class only for roc_auc, ...); NaN results too."""
    spec = scorer(name)
    fn = _LOCAL.get(spec.function)
    if fn is None:
        import sklearn.metrics

        fn = getattr(sklearn.metrics, spec.function)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # UndefinedMetricWarning and the like: a NaN or 0 says it
        value = spec.sign * float(fn(y_true, y_pred, **spec.kwargs))
    if not math.isfinite(value):
        raise ValueError(f"{name} is not defined on these {len(y_true)} rows")
    return value
