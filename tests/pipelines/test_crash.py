"""A run killed at any point and run again completes exactly once: one new version, one alias move,
one complete run record (SIGKILL from a hook, in a real subprocess)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from featurestore.cli import cli
from tests.pipelines.scenario import MODEL, TREE, pipeline_repo
from tests.postgres import each_registry  # noqa: F401 (a fixture: every test on both registries)

pytestmark = pytest.mark.usefixtures("each_registry")

ROOT = Path(__file__).resolve().parents[2]

KILLER = """
import os, signal
from featurestore import FeatureStore

store = FeatureStore({root!r})
where = {where!r}

def die(*args):
    os.kill(os.getpid(), signal.SIGKILL)

if where == "inside register":  # after the version is committed, before the run records it
    store.models.subscribe(lambda name: die())
else:
    store.pipelines.add_hook(lambda run, step: die() if step == where else None)
store.pipelines.run({model!r})
"""


def run_and_kill(root: Path, where: str) -> subprocess.CompletedProcess[str]:
    script = textwrap.dedent(KILLER).format(root=str(root), where=where, model=MODEL)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True, timeout=240
    )


@pytest.mark.slow
@pytest.mark.parametrize("where", ["inside register", "registered", "decided", "promoted"])
def test_a_killed_run_resumes_and_completes_once(tmp_path, where):
    sc = pipeline_repo(tmp_path / "repo")
    champion = sc.store.pipelines.run(MODEL, end=sc.old_end)
    sc.shift()

    killed = run_and_kill(sc.root, where)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    left = sc.store.pipelines.runs(MODEL)[0]
    assert left.id == champion.id + 1 and left.status == "running"
    assert len(sc.store.models.versions(MODEL)) == 2  # the candidate was registered before the kill

    out = CliRunner().invoke(cli, ["--repo", str(sc.root), "retrain", MODEL], catch_exceptions=False)
    assert out.exit_code == 0, out.output

    runs = sc.store.pipelines.runs(MODEL)
    assert [r.id for r in runs] == [left.id, champion.id]  # resumed, not a second run
    run = runs[0]
    assert (run.status, run.decision, run.step, run.attempts) == ("succeeded", "promoted", "finished", 2)
    assert [v.version for v in sc.store.models.versions(MODEL)] == [1, 2]
    assert run.candidate_version == 2 and run.champion_version == 1
    assert run["candidate"]["metrics"]["accuracy"] > 0.95 and run["champion"]["metrics"]["accuracy"] < 0.7
    moves = [
        (h["old_version"], h["new_version"]) for h in sc.store.registry.backend.model_alias_history(MODEL)
    ]
    assert moves == [(None, 1), (1, 2)]
    assert len(sc.store.registry.audit_log("model_promote")) == 2
    assert run["finished_at"] and run["duration_seconds"] > 0
    sc.store.close()


@pytest.mark.slow
def test_a_killed_run_whose_code_changed_before_registering_is_abandoned(tmp_path):
    sc = pipeline_repo(tmp_path / "repo")
    killed = run_and_kill(sc.root, "training_set")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    sc.set_pipeline(TREE.replace("max_depth=2", "max_depth=3"))  # new code, applied
    run = sc.store.pipelines.run(MODEL)
    first = sc.store.pipelines.get_run(run.id - 1)
    assert first.status == "abandoned" and "code has changed" in first.reasons[-1]
    assert run.status == "succeeded" and run.attempts == 1
    sc.store.close()
