"""What `fs retrain` and `fs runs` print when something is wrong: the run an error failed (never an
older failed run), the error itself when no run was recorded, and names that do not exist."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from featurestore import PipelineError
from featurestore.cli import cli
from featurestore.errors import FeatureStoreError
from featurestore.pipelines.lock import ModelLock
from featurestore.pipelines.runner import failed_run_id
from tests.pipelines.scenario import MODEL, pipeline_repo


@pytest.fixture
def sc(tmp_path):
    scenario = pipeline_repo(tmp_path / "repo")
    yield scenario
    scenario.store.close()


def fs(sc, *args: str):
    return CliRunner().invoke(cli, ["--repo", str(sc.root), *args], catch_exceptions=False)


def resumed_and_failed(sc) -> int:
    """A run killed after its training set, whose training set is then saved again: its resume fails
    (attempt 2). Returns its id."""

    def interrupt(run, step):
        if step == "training_set":
            raise KeyboardInterrupt

    sc.store.pipelines.add_hook(interrupt)
    with pytest.raises(KeyboardInterrupt):
        sc.store.pipelines.run(MODEL)
    sc.store.pipelines.remove_hook(interrupt)
    run = sc.store.pipelines.runs(MODEL)[0]
    job = sc.store.get_historical_features(spine="labels", features="churn_features", end=sc.old_end)
    sc.store.training_sets.save(run["training_set"], job, overwrite=True)
    with pytest.raises(PipelineError, match="was saved again since") as caught:
        sc.store.pipelines.run(MODEL)
    assert failed_run_id(caught.value) == run.id
    failed = sc.store.pipelines.get_run(run.id)
    assert (failed.status, failed.attempts) == ("failed", 2)
    return run.id


def test_a_refused_retrain_prints_its_error_not_an_older_failed_run(sc):
    stale = resumed_and_failed(sc)
    folder = sc.store.config.registry_path.parent / "pipelines"
    with ModelLock(folder, MODEL, busy=lambda: "held by the test"):
        with pytest.raises(PipelineError) as caught:
            sc.store.pipelines.run(MODEL)
        assert failed_run_id(caught.value) is None
        out = fs(sc, "retrain", MODEL)
    assert out.exit_code == 1
    assert "is already running: another process holds it" in out.output
    assert f"run {stale}" not in out.output
    assert [r.id for r in sc.store.pipelines.runs(MODEL)] == [stale]


def test_a_failed_retrain_prints_the_run_it_failed(sc):
    stale = resumed_and_failed(sc)
    sc.set_pipeline("return None")
    out = fs(sc, "retrain", MODEL)
    assert out.exit_code == 1
    assert f"run {stale + 1} of {MODEL} (manual): failed at step training_set" in out.output
    assert "not a model with a predict() method" in out.output


def test_start_after_end_is_refused_before_a_run_is_recorded(sc):
    with pytest.raises(PipelineError, match=r"start 2026-02-01T00:00:00\+00:00 is after end 2026-01-01"):
        sc.store.pipelines.run(MODEL, start="2026-02-01", end="2026-01-01")
    out = fs(sc, "retrain", MODEL, "--start", "2026-02-01", "--end", "2026-01-01")
    assert out.exit_code == 1 and "is after end" in out.output
    assert sc.store.pipelines.runs(MODEL) == []


def test_fs_runs_of_an_unknown_model_names_it(sc):
    out = fs(sc, "runs", "chrun")
    assert out.exit_code == 1
    assert "model 'chrun' has no training pipeline and no recorded run (did you mean 'churn'?)" in out.output
    with pytest.raises(FeatureStoreError, match="model 'nope' has no training pipeline"):
        sc.store.pipelines.runs("nope")
    assert fs(sc, "runs", MODEL).exit_code == 0  # a pipeline without runs yet: an empty table


def test_the_first_promotion_moves_the_alias_from_nothing(sc):
    out = fs(sc, "retrain", MODEL)
    assert out.exit_code == 0, out.output
    assert f"moved      {MODEL}@production: nothing -> v1" in out.output and "vNone" not in out.output
