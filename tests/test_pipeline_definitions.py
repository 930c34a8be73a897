"""Training pipelines as definitions: validated when made, recorded on apply (code by location and
hash, never pickled), checked against the repo when a run loads them."""

from __future__ import annotations

from datetime import timedelta

import pytest

from featurestore import DefinitionError, FeatureStore, RepoError, TrainingPipeline, training_pipeline
from featurestore.errors import DefinitionsChangedError
from featurestore.pipelines.code import load_functions
from tests.repo_builder import make_repo
from tests.test_repo import ENTITY, HEADER, SOURCE, STATS, view

SERVICE = 'svc = FeatureService(name="svc", features=[stats_view])\n'
SPINE = 'labels = ParquetSource(name="labels", path="data/stats.parquet")\n'


def pipeline(**overrides: str) -> str:
    args = {
        "model": '"m"',
        "features": '"svc"',
        "spine": '"labels"',
        "label": '"label"',
        "metric": '"accuracy"',
        **overrides,
    }
    inner = ", ".join(f"{k}={v}" for k, v in args.items())
    return f"""
@training_pipeline({inner})
def train(train_df, valid_df):
    return helper(train_df)

def helper(df):
    return len(df)
"""


def repo(tmp_path, pipeline_text: str | None = None):
    files = {"defs.py": HEADER + ENTITY + SOURCE + view() + SERVICE + SPINE + (pipeline_text or pipeline())}
    return make_repo(tmp_path / "repo", files, {"data/stats.parquet": STATS})


def kwargs(**overrides):
    return {
        "model": "m",
        "features": "svc",
        "spine": "labels",
        "label": "y",
        "metric": "accuracy",
        **overrides,
    }


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"model": "bad name"}, "model must be a model name"),
        ({"split": 0}, "split is the share"),
        ({"split": 1.5}, "split is the share"),
        ({"split": float("nan")}, "finite number"),
        ({"approval": "maybe"}, "approval must be one of"),
        ({"min_improvement": -0.1}, "at least 0"),
        ({"guards": {"roc_auc": -1}}, "guards\\['roc_auc'\\]"),
        ({"guards": ["roc_auc"]}, "guards must be a dict"),
        ({"alias": "latest"}, "not a valid alias"),
        ({"lookback": timedelta(0)}, "lookback must be a positive"),
        ({"label": ""}, "label must be"),
        ({"threshold": "high"}, "threshold must be a finite number"),
        ({"missing_policy": "zero"}, "missing_policy must be"),
    ],
)
def test_a_pipeline_with_a_bad_setting_is_refused_naming_it(overrides, message):
    with pytest.raises(DefinitionError, match=message):
        TrainingPipeline(**kwargs(**overrides))


def test_the_decorator_makes_a_pipeline_named_after_its_model():
    def train(train_df, valid_df):
        return None

    made = training_pipeline(**kwargs(guards={"roc_auc": 0.02}, approval="required"))(train)
    assert isinstance(made, TrainingPipeline)
    assert (made.name, made.function, made.train) == ("m", train.__qualname__, train)
    assert made.policy["guards"] == {"roc_auc": 0.02} and made.policy["approval"] == "required"
    spec = made.to_spec()
    again = TrainingPipeline.from_spec(spec)
    assert again.to_spec() == spec and again.train is None  # a spec holds no function


def test_apply_records_where_the_code_is_and_its_hash_never_the_function(tmp_path):
    store = FeatureStore(repo(tmp_path))
    plan = store.apply()
    assert [(c.kind, c.name) for c in plan.pending if c.kind == "training_pipeline"] == [
        ("training_pipeline", "m")
    ]
    spec = store.registry.specs()[("training_pipeline", "m")]
    assert (spec["module"], spec["function"], spec["function_file"]) == ("defs.py", "train", "defs.py")
    assert len(spec["sha256"]) == 64 and len(spec["source_sha256"]) == 64
    applied = FeatureStore(store.repo_path).catalog.pipeline("m")  # as another process reads it
    assert applied.train is None  # loaded from the file when a run needs it
    train, evaluate = load_functions(applied, store.config)
    assert train.__name__ == "train" and evaluate is None
    assert not store.plan().pending  # hashing is stable: applying again changes nothing


def test_a_changed_helper_is_a_change_and_a_run_refuses_it_until_applied(tmp_path):
    root = repo(tmp_path)
    store = FeatureStore(root)
    store.apply()
    path = root / "defs.py"
    path.write_text(path.read_text().replace("return len(df)", "return len(df) + 1"))
    with pytest.raises(DefinitionsChangedError, match="training pipeline of model 'm'.*differs"):
        load_functions(store.catalog.pipeline("m"), store.config)
    assert [c.kind for c in store.plan().pending] == ["training_pipeline"]
    store.apply()
    assert load_functions(store.catalog.pipeline("m"), store.config)[0].__name__ == "train"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"features": '"svcc"'}, "unknown feature service 'svcc'.*did you mean 'svc'"),
        ({"spine": '"lables"'}, "unknown spine 'lables'.*did you mean 'labels'"),
        ({"label": '"lable"'}, "label 'lable' is not a column of spine 'labels'.*did you mean 'label'"),
        (
            {"metric": '"acuracy"'},
            "metric 'acuracy' is not a scikit-learn scorer name.*did you mean 'accuracy'",
        ),
        ({"guards": '{"roc_aucc": 0.1}'}, "metric 'roc_aucc'"),
    ],
)
def test_apply_refuses_a_pipeline_naming_what_does_not_exist(tmp_path, overrides, message):
    store = FeatureStore(repo(tmp_path, pipeline(**overrides)))
    with pytest.raises(RepoError, match=message):
        store.apply()
    assert store.registry.specs() == {}  # all or nothing


def test_a_custom_metric_needs_an_evaluate_function(tmp_path):
    text = pipeline(metric='"lift"', evaluate="lift") + "\ndef lift(model, df):\n    return {'lift': 1.0}\n"
    text = text.replace(
        "@training_pipeline", "def lift(model, df):\n    return {'lift': 1.0}\n\n@training_pipeline", 1
    )
    store = FeatureStore(repo(tmp_path, text))
    store.apply()
    applied = store.catalog.pipeline("m")
    assert applied.evaluate_function == "lift"
    assert load_functions(applied, store.config)[1] is not None


def test_a_lambda_cannot_be_a_pipeline_function(tmp_path):
    text = 'train = training_pipeline(model="m", features="svc", spine="labels", label="label", metric="accuracy")(lambda a, b: None)\n'
    with pytest.raises(RepoError, match="lambda"):
        FeatureStore(repo(tmp_path, text)).apply()


def test_two_pipelines_of_one_model_are_refused(tmp_path):
    text = pipeline() + pipeline().replace("def train(", "def train_again(").replace(
        "def helper(", "def helper_again("
    )
    with pytest.raises(RepoError, match="training pipeline 'm' is defined twice"):
        FeatureStore(repo(tmp_path, text)).apply()
