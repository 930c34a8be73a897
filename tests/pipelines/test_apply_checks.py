"""What `fs apply` refuses of a pipeline's policy: a lower-is-better scikit-learn scorer, which
does not exist (scorers are greater-is-better), would promote the worse model."""

from __future__ import annotations

import pytest

from featurestore import FeatureStore, RepoError
from tests.test_pipeline_definitions import pipeline, repo


@pytest.mark.parametrize("metric", ['"neg_mean_absolute_error"', '"accuracy"'])
def test_greater_is_better_false_with_a_scorer_name_is_refused(tmp_path, metric):
    store = FeatureStore(repo(tmp_path, pipeline(metric=metric, greater_is_better="False")))
    with pytest.raises(RepoError, match=r"scikit-learn scorers are greater-is-better \(errors are negated"):
        store.apply()
    assert store.registry.specs() == {}


@pytest.mark.parametrize("metric", ["mae", "neg_max_error"])
def test_greater_is_better_false_is_kept_when_evaluate_computes_the_metric(tmp_path, metric):
    # an evaluate function's value wins over the scorer of that name: its direction is the user's
    evaluate = f"def mae(model, df):\n    return {{'{metric}': 0.5}}\n\n"
    text = pipeline(metric=f'"{metric}"', greater_is_better="False", evaluate="mae")
    store = FeatureStore(
        repo(tmp_path, text.replace("@training_pipeline", evaluate + "@training_pipeline", 1))
    )
    store.apply()
    assert store.catalog.pipeline("m").greater_is_better is False
