"""The loop closed (issue 15's check): the data shifts, the champion degrades and its served features
drift; `fs monitor check --retrain` trains a candidate that beats it and promotes it. Without a
shift nothing runs."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from featurestore.cli import cli
from tests.pipelines.scenario import MODEL, pipeline_repo


@pytest.fixture
def sc(tmp_path):
    scenario = pipeline_repo(tmp_path / "repo")
    champion = scenario.store.pipelines.run(MODEL, end=scenario.old_end)  # trained on the old regime
    assert champion.decision == "promoted"
    yield scenario
    scenario.store.close()


def check(sc, *extra: str):
    return CliRunner().invoke(
        cli, ["--repo", str(sc.root), "monitor", "check", "--retrain", *extra], catch_exceptions=False
    )


@pytest.mark.slow
def test_drift_retrains_and_promotes_a_better_model(sc):
    sc.shift()
    sc.serve(300)
    out = check(sc)
    assert out.exit_code == 1, out.output  # the check's breach stays the exit code
    assert f"BREACH drift {MODEL}@production (v1)" in out.output
    assert f"retrain {MODEL} (monitor: drift):" in out.output
    assert f"run 2 of {MODEL} (monitor: drift): promoted v2 to production" in out.output
    run = sc.store.pipelines.get_run(2)
    assert (run.trigger, run.decision) == ("monitor: drift", "promoted")
    cand, champ = run.metric_pair()
    assert cand > 0.95 > 0.7 > champ
    assert sc.store.models.aliases(MODEL) == {"production": 2}

    # v2 was trained on what is served now: the next check finds nothing to retrain
    sc.serve(300, seed=1)
    again = check(sc, "--json")
    assert again.exit_code == 0, again.output
    body = json.loads(again.output)
    assert body["status"] == "ok" and body["retrain"] == [] and body["retrain_notes"] == []
    assert [r.id for r in sc.store.pipelines.runs(MODEL)] == [2, 1]


@pytest.mark.slow
def test_no_shift_nothing_runs(sc):
    sc.serve(300)
    out = check(sc)
    assert out.exit_code == 0, out.output
    assert "nothing to run" in out.output
    assert [r.id for r in sc.store.pipelines.runs()] == [1]  # no run recorded, not even a skipped one
    assert sc.store.models.aliases(MODEL) == {"production": 1}


@pytest.mark.slow
def test_a_failed_retrain_exits_2_and_a_model_without_pipeline_gets_a_note(sc):
    sc.shift()
    sc.serve(300)
    sc.set_pipeline("raise RuntimeError('the GPU is on fire')")
    out = check(sc)
    assert out.exit_code == 2, out.output
    assert "failed at step training_set: RuntimeError: the GPU is on fire" in out.output

    (sc.root / "pipelines.py").unlink()  # the pipeline is removed: the breach is only noted
    sc.store.apply()
    noted = check(sc)
    assert noted.exit_code == 1
    assert f"note: {MODEL}@production breaches its checks but model '{MODEL}' has no training pipeline" in (
        noted.output
    )
