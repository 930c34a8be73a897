"""Runs of a training pipeline through `store.pipelines` and `fs retrain` / `fs runs`: the record,
the decisions, triggers, failures, the lock, and code that changed after apply."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from click.testing import CliRunner

from featurestore import PipelineError
from featurestore.cli import cli
from featurestore.errors import DefinitionsChangedError, UnknownNameError
from featurestore.pipelines.lock import ModelLock
from tests.pipelines.scenario import CONSTANT, MODEL, pipeline_repo


@pytest.fixture
def sc(tmp_path):
    scenario = pipeline_repo(tmp_path / "repo")
    yield scenario
    scenario.store.close()


def fs(sc, *args: str):
    return CliRunner().invoke(cli, ["--repo", str(sc.root), *args], catch_exceptions=False)


def test_the_first_run_promotes_its_candidate_and_records_everything(sc):
    run = sc.store.pipelines.run(MODEL, end=sc.old_end)
    assert (run.status, run.decision, run.step, run.attempts) == ("succeeded", "promoted", "finished", 1)
    mv = sc.store.models.get(f"{MODEL}@production")
    assert mv.version == run.candidate_version == 1
    assert mv.tags == {"pipeline_run": str(run.id)}
    assert mv.training_set == f"{MODEL}__run{run.id}" == run["training_set"]
    assert mv.training_fingerprint == run["training_fingerprint"]
    assert run.champion_version is None and run.reasons == [
        "no champion to compare with and no threshold: the candidate passes"
    ]
    # the lookback keeps the newest two days of the range; the newest 20% (one time) validates
    spine = run["spine_range"]
    assert (spine["rows"], spine["train_rows"], spine["valid_rows"]) == (750, 600, 150)
    assert spine["split_at"] == spine["end"] == sc.old_end.isoformat()
    assert run["inputs"]["end"] == sc.old_end.isoformat() and run["trigger"] == "manual"
    assert run["pipeline"]["module"] == "pipelines.py" and run["pipeline"]["function"] == "train"
    assert run["candidate"]["metrics"]["accuracy"] > 0.95
    assert run["duration_seconds"] > 0 and run["finished_at"]
    history = sc.store.registry.backend.model_alias_history(MODEL)
    assert [(h["old_version"], h["new_version"]) for h in history] == [(None, 1)]
    promote = sc.store.registry.audit_log("model_promote")
    assert promote[0]["target"] == f"model:{MODEL}@production" and promote[0]["detail"]["run"] == run.id


def test_a_better_candidate_replaces_the_champion_scored_on_the_same_rows(sc):
    sc.store.pipelines.run(MODEL, end=sc.old_end)
    sc.shift()
    run = sc.store.pipelines.run(MODEL)
    assert run.decision == "promoted" and (run.champion_version, run.candidate_version) == (1, 2)
    cand, champ = run.metric_pair()
    assert cand > 0.95 and 0.3 < champ < 0.7  # the old model says 1 for every new row
    assert sc.store.models.aliases(MODEL) == {"production": 2}
    assert run.summary().startswith(f"run {run.id} of {MODEL} (manual): promoted v2 to production (accuracy")


def test_a_constant_model_is_rejected_and_the_champion_stays(sc):
    sc.shift()
    first = sc.store.pipelines.run(MODEL)
    sc.set_pipeline(CONSTANT)
    run = sc.store.pipelines.run(MODEL)
    assert (run.status, run.decision, run.step) == ("succeeded", "rejected", "finished")
    assert sc.store.models.aliases(MODEL) == {"production": first.candidate_version}
    assert run.reasons[0].startswith("failed: accuracy ")
    assert "production stays v1" in run.summary()
    assert len(sc.store.models.versions(MODEL)) == 2  # the candidate is kept, for the record


def test_approval_required_leaves_the_candidate_pending_and_the_alias_in_place(sc):
    sc.store.pipelines.run(MODEL, end=sc.old_end)
    sc.shift()
    sc.set_pipeline(options=', approval="required"')
    run = sc.store.pipelines.run(MODEL)
    assert (run.status, run.decision, run.step) == ("succeeded", "pending_approval", "finished")
    assert sc.store.models.aliases(MODEL) == {"production": 1}
    requested = sc.store.registry.audit_log("approval_requested")
    assert requested[0]["detail"] == {"run": run.id, "version": 2, "champion": 1}


def test_when_drift_without_drift_records_a_skipped_run(sc):
    sc.store.pipelines.run(MODEL, end=sc.old_end)
    sc.serve(200)  # the old regime served: no drift
    run = sc.store.pipelines.run(MODEL, when="drift")
    assert (run.status, run.decision, run.trigger) == ("skipped", "skipped", "when: drift")
    assert "drift ok" in run.reasons[0] or "drift warn" in run.reasons[0]
    assert len(sc.store.models.versions(MODEL)) == 1


def test_when_drift_without_a_version_to_monitor_is_skipped(sc):
    run = sc.store.pipelines.run(MODEL, when="performance")
    assert run.status == "skipped" and run.reasons == [
        f"no version of model '{MODEL}' at alias 'production' to monitor"
    ]


def test_a_train_function_that_raises_fails_the_run_and_the_next_starts_fresh(sc):
    sc.set_pipeline("raise ValueError('no data for you')")
    with pytest.raises(PipelineError, match="no data for you"):
        sc.store.pipelines.run(MODEL)
    failed = sc.store.pipelines.runs(MODEL)[0]
    assert (failed.status, failed.step, failed.error) == (
        "failed",
        "training_set",
        "ValueError: no data for you",
    )
    sc.set_pipeline()
    run = sc.store.pipelines.run(MODEL)
    assert run.id == failed.id + 1 and run.status == "succeeded" and run.attempts == 1


def test_a_train_function_returning_no_model_fails_clearly(sc):
    sc.set_pipeline("return 42")
    with pytest.raises(PipelineError, match="returned int, not a model with a predict"):
        sc.store.pipelines.run(MODEL)
    assert sc.store.pipelines.runs(MODEL)[0].status == "failed"


def test_too_few_rows_name_the_counts(sc):
    with pytest.raises(PipelineError, match=r"0 training and 150 validation rows"):
        sc.store.pipelines.run(MODEL, start=sc.old_end, end=sc.old_end)


def test_code_changed_after_apply_is_refused(sc):
    (sc.root / "pipelines.py").write_text(
        (sc.root / "pipelines.py").read_text().replace("max_depth=2", "max_depth=3")
    )
    with pytest.raises(DefinitionsChangedError, match="apply again"):
        sc.store.pipelines.run(MODEL)
    assert sc.store.pipelines.runs(MODEL)[0].status == "failed"
    assert not sc.store.registry.backend.model_versions(MODEL)


def test_a_run_while_another_holds_the_lock_is_refused(sc):
    folder = sc.store.config.registry_path.parent / "pipelines"
    with ModelLock(folder, MODEL, busy=lambda: "held by the test"):
        with pytest.raises(PipelineError, match="already running: another process holds it"):
            sc.store.pipelines.run(MODEL)
    assert sc.store.pipelines.runs(MODEL) == []
    assert sc.store.pipelines.run(MODEL).status == "succeeded"  # released: runs again


def test_unknown_model_and_run(sc):
    with pytest.raises(UnknownNameError, match="training pipeline of model"):
        sc.store.pipelines.run("nope")
    with pytest.raises(UnknownNameError, match="no pipeline run 99"):
        sc.store.pipelines.get_run(99)
    with pytest.raises(PipelineError, match="when must be one of"):
        sc.store.pipelines.run(MODEL, when="sometimes")


def test_hooks_hear_every_durable_step(sc):
    steps: list[tuple[int, str]] = []
    sc.store.pipelines.add_hook(lambda run, step: steps.append((run.id, step)))
    run = sc.store.pipelines.run(MODEL)
    assert steps == [
        (run.id, s) for s in ("started", "training_set", "registered", "decided", "promoted", "finished")
    ]


def test_fs_retrain_prints_the_decision_and_fs_runs_lists_and_shows(sc):
    sc.store.pipelines.run(MODEL, end=sc.old_end)
    sc.shift()
    out = fs(sc, "retrain", MODEL)
    assert out.exit_code == 0, out.output
    assert "promoted v2 to production" in out.output
    assert "candidate  v2: accuracy 1" in out.output and "champion   v1: accuracy 0." in out.output
    assert f"moved      {MODEL}@production: v1 -> v2" in out.output

    listed = fs(sc, "runs")
    assert listed.exit_code == 0
    lines = [line for line in listed.output.splitlines() if f" {MODEL} " in line]
    assert len(lines) == 2 and "promoted" in lines[0] and "v2" in lines[0] and "accuracy" in lines[0]

    as_json = json.loads(fs(sc, "runs", MODEL, "--json").output)
    assert [r["id"] for r in as_json] == [2, 1] and as_json[0]["candidate"]["version"] == 2

    shown = fs(sc, "runs", "show", "2")
    assert (
        shown.exit_code == 0 and "training_fingerprint: " in shown.output and "spine_range: {" in shown.output
    )
    assert json.loads(fs(sc, "runs", "show", "2", "--json").output)["decision"] == "promoted"
    missing = fs(sc, "runs", "show", "7")
    assert missing.exit_code == 1 and "no pipeline run 7" in missing.output

    listed = fs(sc, "list", "pipelines")
    assert (
        listed.exit_code == 0 and "churn_features" in listed.output and "pipelines.py:train" in listed.output
    )
    spec = json.loads(fs(sc, "list", "pipelines", "--json").output)["pipelines"][0]
    assert spec["model"] == MODEL and spec["defined_at"].startswith("pipelines.py:")


def test_fs_retrain_exits_1_on_a_failed_run_with_the_error(sc):
    sc.set_pipeline("return None")
    out = fs(sc, "retrain", MODEL)
    assert out.exit_code == 1
    assert "failed at step training_set" in out.output and "not a model with a predict() method" in out.output
    as_json = fs(sc, "retrain", MODEL, "--json")
    assert as_json.exit_code == 1 and json.loads(as_json.output)["status"] == "failed"
    skipped = fs(sc, "retrain", MODEL, "--when", "drift")
    assert skipped.exit_code == 0 and "skipped: no version" in skipped.output


def test_running_a_pipeline_needs_the_models_role(sc, monkeypatch):
    from featurestore import FeatureStore, PermissionDeniedError

    with open(sc.root / "featurestore.toml", "a") as f:
        f.write('\n[governance]\nusers = {reader = "read", trainer = "models"}\n')
    store = FeatureStore(sc.root)
    monkeypatch.setenv("FS_USER", "reader")
    with pytest.raises(PermissionDeniedError, match="needs 'models'"):
        store.pipelines.run(MODEL)
    assert store.pipelines.runs(MODEL) == []
    monkeypatch.setenv("FS_USER", "trainer")
    run = store.pipelines.run(MODEL)
    assert run.decision == "promoted" and run.actor == "trainer"  # a passed policy moves production
    store.close()


def test_a_champion_on_other_features_is_scored_on_the_same_rows_with_its_own_features(sc):
    from sklearn.tree import DecisionTreeClassifier

    sc.shift()
    job = sc.store.get_historical_features(
        spine="labels", features="x_and_w", start=sc.now - timedelta(days=2)
    )
    frame = job.to_pandas()
    job.save("by_hand")
    model = DecisionTreeClassifier(max_depth=2, random_state=0).fit(frame[["w", "x"]], frame["y"])
    mv = sc.store.models.register(MODEL, model, feature_service="x_and_w", training_set="by_hand")
    sc.store.models.set_alias(MODEL, "production", mv.version)
    run = sc.store.pipelines.run(MODEL)
    assert run.champion_version == mv.version and run["champion"]["errors"] == {}
    assert run["champion"]["metrics"]["accuracy"] > 0.95  # w is looked up for the validation rows


def test_a_champion_that_cannot_be_loaded_blocks_the_promotion(sc):
    sc.store.pipelines.run(MODEL, end=sc.old_end)
    champion = sc.store.models.get(f"{MODEL}@production")
    sc.store.models.artifact_path(champion).write_bytes(b"not the registered model")
    sc.shift()
    run = sc.store.pipelines.run(MODEL)
    assert run.decision == "rejected" and sc.store.models.aliases(MODEL) == {"production": 1}
    assert run.reasons[0].startswith("failed: the champion v1 (churn@production) could not be scored")
    assert "modified after registration" in run.reasons[0]


def test_an_alias_moved_by_someone_else_after_the_decision_is_not_overwritten(sc):
    sc.store.pipelines.run(MODEL, end=sc.old_end)
    sc.store.pipelines.run(MODEL, end=sc.old_end)  # v2: same data, passes (not worse): production -> 2
    sc.shift()

    def meddle(run, step):
        if step == "decided":  # between the decision and the move, a person moves production back
            sc.store.models.set_alias(MODEL, "production", 1)

    sc.store.pipelines.add_hook(meddle)
    run = sc.store.pipelines.run(MODEL)
    assert (run.champion_version, run["intended"], run.decision) == (2, "promoted", "rejected")
    assert "was moved by someone else since the decision" in run.reasons[-1]
    assert sc.store.models.aliases(MODEL) == {"production": 1}


def test_ctrl_c_leaves_the_run_resumable(sc):
    def interrupt(run, step):
        if step == "registered":
            raise KeyboardInterrupt

    sc.store.pipelines.add_hook(interrupt)
    with pytest.raises(KeyboardInterrupt):
        sc.store.pipelines.run(MODEL)
    assert sc.store.pipelines.runs(MODEL)[0].status == "running"
    sc.store.pipelines.remove_hook(interrupt)
    run = sc.store.pipelines.run(MODEL)
    assert (run.id, run.attempts, run.decision) == (1, 2, "promoted")
    assert len(sc.store.models.versions(MODEL)) == 1
