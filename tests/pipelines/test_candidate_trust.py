"""A run trusts only what it computed: a version someone else tagged with the run is refused, a
tagged version's own metrics are never what the decision reads, and a notification failing after
the promotion committed does not fail the run."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import pytest

from featurestore import PipelineError
from featurestore.pipelines.runner import _not_registered_by
from tests.pipelines.scenario import MODEL, pipeline_repo


@pytest.fixture
def sc(tmp_path):
    scenario = pipeline_repo(tmp_path / "repo")
    yield scenario
    scenario.store.close()


def forge(sc, run, actor: str):
    """A constant model registered as if it were `run`'s candidate, claiming a perfect accuracy."""
    from sklearn.dummy import DummyClassifier

    frame = sc.store.training_sets.result(run["training_set"]).to_pandas()
    model = DummyClassifier(strategy="most_frequent").fit(frame[["x", "z"]], frame["y"])
    return sc.store.models.register(
        MODEL,
        model,
        feature_service="churn_features",
        training_set=run["training_set"],
        metrics={"accuracy": 1.0},
        pipeline_run=run.id,
        actor=actor,
    )


def forge_at_training_set(sc, actor: str | None = None) -> list:
    """A hook that forges the candidate of the next run once its training set is saved."""
    forged: list = []

    def hook(run, step):
        if step == "training_set" and not forged:
            forged.append(forge(sc, run, actor or run.actor))

    sc.store.pipelines.add_hook(hook)
    return forged


def test_a_version_someone_else_tagged_with_the_run_fails_it_and_is_never_promoted(sc):
    sc.shift()
    champion = sc.store.pipelines.run(MODEL)
    forged = forge_at_training_set(sc, actor="mallory")
    with pytest.raises(PipelineError, match=r"v2 was registered by 'mallory', not the run's actor") as caught:
        sc.store.pipelines.run(MODEL)
    assert "someone else registered it" in str(caught.value)
    failed = sc.store.pipelines.runs(MODEL)[0]
    assert failed.id == champion.id + 1 and (failed.status, failed.step) == ("failed", "training_set")
    assert forged[0].version == 2 and sc.store.models.aliases(MODEL) == {
        "production": champion.candidate_version
    }


def test_a_tagged_version_is_scored_again_and_its_own_metrics_are_ignored(sc):
    sc.shift()
    champion = sc.store.pipelines.run(MODEL)  # trained on the new regime: accuracy about 1
    forged = forge_at_training_set(sc)  # the run's own actor, its training set: it passes as the candidate
    run = sc.store.pipelines.run(MODEL)
    assert run.candidate_version == forged[0].version == 2
    cand, champ = run.metric_pair()
    assert cand < 0.8 < 0.95 < champ  # the constant model's real accuracy, not its claimed 1.0
    assert run.decision == "rejected"
    assert sc.store.models.aliases(MODEL) == {"production": champion.candidate_version}


def test_a_tagged_version_registered_before_the_run_started_is_not_its_own(sc):
    forged = forge_at_training_set(sc)
    run = sc.store.pipelines.run(MODEL)
    mv = sc.store.models.get(MODEL, version=forged[0].version)
    record = run.to_dict()
    assert _not_registered_by(record, mv) is None
    earlier = (datetime.fromisoformat(record["started_at"]) - timedelta(seconds=1)).isoformat()
    assert "before the run started" in str(
        _not_registered_by(record, dataclasses.replace(mv, registered_at=earlier))
    )
    other = dataclasses.replace(mv, training_set="by_hand")
    assert "not the run's 'churn__run1'" in str(_not_registered_by(record, other))


def test_a_notification_failing_after_the_promotion_committed_leaves_the_run_promoted(sc, monkeypatch):
    def broken(name: str) -> None:
        raise RuntimeError("the model server is gone")

    monkeypatch.setattr(sc.store.models, "notify_changed", broken)
    with pytest.warns(UserWarning, match="raised after its promotion was committed: RuntimeError: the model"):
        run = sc.store.pipelines.run(MODEL)
    assert (run.status, run.decision) == ("succeeded", "promoted")
    assert sc.store.models.aliases(MODEL) == {"production": run.candidate_version}
