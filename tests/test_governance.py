"""Governance (SPEC §13): the matrix of every model / alias / approval action x {read, write, models,
approver, admin}, over HTTP with API keys and through Python / the CLI with `[governance] users` and
$FS_USER; approvals of pending candidates (the alias moves once); protected aliases; the audit trail.

The expected results are written out as a table (not computed from featurestore.governance), so a
wrong permission set fails here.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
import skops.io as sio
from click.testing import CliRunner
from fastapi.testclient import TestClient

from featurestore import FeatureStore
from featurestore.cli import cli
from featurestore.errors import ModelRegistryError, PermissionDeniedError, UnknownNameError
from featurestore.models.registry import AliasMovedError, NoPendingApprovalError
from featurestore.server import create_app
from tests.repo_builder import make_repo
from tests.server.conftest import DEFINITIONS, driver_rows, route_rows

ROLES = ("read", "write", "models", "approver", "admin")
KEY = {role: f"{role}-key-0123456789" for role in ROLES}
USERS = {"rita": "read", "walt": "write", "mona": "models", "abby": "approver", "ada": "admin"}
USER_OF = {role: user for user, role in USERS.items()}
FEATURES = ["conv_rate", "trips"]  # the service driver_activity of the server tests' repo

# action -> the roles allowed to do it, in the order of ROLES (Y: allowed, N: refused)
EXPECTED = {
    "register": "N N Y Y Y",
    "set_alias_staging": "N N Y Y Y",
    "set_alias_production": "N N N Y Y",
    "delete_alias_production": "N N N Y Y",
    "approve": "N N N Y Y",
    "reject": "N N N Y Y",
    "run_pipeline": "N N Y Y Y",
    "read_audit": "N N N N Y",
    "predict": "Y Y Y Y Y",
    "lookup": "Y Y Y Y Y",
    "push": "N Y N N Y",
    "feedback": "N Y N N Y",
    "apply": "N N N N Y",
}


def allowed(action: str, role: str) -> bool:
    return EXPECTED[action].split()[ROLES.index(role)] == "Y"


def config(keys: bool = True) -> str:
    text = '[online]\ntype = "sqlite"\npath = "data/online.db"\n'
    if keys:
        text += "[server]\n" + "".join(
            f'[[server.api_keys]]\nname = "{role}-key"\nrole = "{role}"\nkey = "{KEY[role]}"\n'
            for role in ROLES
        )
    text += "[governance]\nusers = {" + ", ".join(f'{u} = "{r}"' for u, r in USERS.items()) + "}\n"
    return text


def fitted_model(constant: float = 1.0) -> Any:
    import pandas as pd
    from sklearn.linear_model import LinearRegression

    df = pd.DataFrame({"conv_rate": [0.1, 0.5, 0.9, 0.3], "trips": [10, 50, 90, 30]})
    return LinearRegression().fit(df, [constant, 2 * constant, 3 * constant, constant])


def build(root: Any, keys: bool = True) -> FeatureStore:
    make_repo(root, {"features.py": DEFINITIONS}, config=config(keys))
    store = FeatureStore(root)
    store.apply()  # FS_USER unset: no check
    store.push("driver_push", driver_rows(), to="online")
    store.push("route_push", route_rows(), to="online")
    for constant in (1.0, 2.0):
        store.models.register("eta", fitted_model(constant), feature_service="driver_activity")
    store.models.set_alias("eta", "production", 1)
    return store


def add_pending(
    store: FeatureStore, version: int = 2, alias: str = "production", champion: int | None = 1
) -> int:
    """A pipeline run whose candidate `version` awaits approval (compared with `champion`), made with
    the backend contract; left at step "pending" with no finished_at, as a runner killed there."""
    backend = store.registry.backend
    run = backend.add_pipeline_run(
        "eta",
        {
            "actor": "pipeline-bot",
            "trigger": "manual",
            "alias": alias,
            "approval": "required",
            "candidate": {"version": version, "metrics": {"roc_auc": 0.81}},
            "champion": {"version": champion, "metrics": {"roc_auc": 0.78}},
            "reasons": ["roc_auc 0.81 beats 0.78"],
        },
        "pipeline-bot",
    )
    done = backend.commit_run_step(
        run["id"], {"status": "succeeded", "decision": "pending_approval", "step": "pending"}
    )
    assert done.committed
    return int(run["id"])


def production_moves(store: FeatureStore) -> list[int | None]:
    return [
        m["new_version"]
        for m in store.registry.backend.model_alias_history("eta")
        if m["alias"] == "production"
    ]


@pytest.fixture(autouse=True)
def _no_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FS_USER", raising=False)


@pytest.fixture
def store(tmp_path: Any) -> Iterator[FeatureStore]:
    s = build(tmp_path / "repo")
    yield s
    s.close()


@pytest.fixture
def client(store: FeatureStore) -> Iterator[TestClient]:
    with TestClient(create_app(store)) as c:
        yield c


def auth(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY[role]}"}


# -- the matrix over HTTP --------------------------------------------------------------------------


def http_call(client: TestClient, store: FeatureStore, action: str, role: str) -> tuple[int, int]:
    """(status, the status that means success) of `action` by `role`'s key; sets up what it needs."""
    h = auth(role)
    if action == "register":
        r = client.post(
            "/models/eta/versions",
            params={"feature_service": "driver_activity"},
            content=sio.dumps(fitted_model()),
            headers=h,
        )
        return r.status_code, 201
    if action == "set_alias_staging":
        return client.put("/models/eta/aliases/staging", json={"version": 2}, headers=h).status_code, 200
    if action == "set_alias_production":
        store.models.set_alias("eta", "production", 1)
        return client.put("/models/eta/aliases/production", json={"version": 2}, headers=h).status_code, 200
    if action == "delete_alias_production":
        store.models.set_alias("eta", "production", 1)
        return client.delete("/models/eta/aliases/production", headers=h).status_code, 204
    if action in ("approve", "reject"):
        store.models.set_alias("eta", "production", 1)
        add_pending(store)
        r = client.post(f"/models/eta/versions/2/{action}", json={"reason": "matrix"}, headers=h)
        return r.status_code, 200
    if action == "read_audit":
        return client.get("/admin/audit", headers=h).status_code, 200
    if action == "predict":
        store.models.set_alias("eta", "production", 1)
        r = client.post("/models/eta/predict", json={"entities": [{"driver_id": 1}]}, headers=h)
        return r.status_code, 200
    if action == "lookup":
        body = {"features": ["driver_stats:trips"], "entities": [{"driver_id": 1}]}
        return client.post("/features/online", json=body, headers=h).status_code, 200
    if action == "push":
        row = {
            "origin": "q",
            "destination": "r",
            "duration": 1.0,
            "event_timestamp": datetime.now(timezone.utc).isoformat(),
        }
        return client.post("/push/route_push", json={"rows": [row]}, headers=h).status_code, 200
    if action == "feedback":
        body = {"feedback": [{"request_id": "req-1", "row": 0, "label": 1.5}]}
        return client.post("/models/eta/feedback", json=body, headers=h).status_code, 200
    raise AssertionError(action)


HTTP_ACTIONS = [a for a in EXPECTED if a not in ("run_pipeline", "apply")]  # no HTTP endpoint for these


@pytest.mark.parametrize("role", ROLES)
def test_the_governance_matrix_over_http(store: FeatureStore, client: TestClient, role: str) -> None:
    for action in HTTP_ACTIONS:
        status, ok = http_call(client, store, action, role)
        want = ok if allowed(action, role) else 403
        assert status == want, (role, action, status)
    # the core check's refusals (the route admitted the key, the protected target did not) are audited
    denied = {
        e["detail"]["action"]
        for e in store.registry.audit_log("permission_denied")
        if e["actor"] == f"{role}-key"
    }
    assert denied == ({"set_alias", "delete_alias"} if role == "models" else set())


def test_a_models_key_moving_production_gets_403_saying_it_is_protected(
    store: FeatureStore, client: TestClient
) -> None:
    before = production_moves(store)
    r = client.put("/models/eta/aliases/production", json={"version": 2}, headers=auth("models"))
    assert r.status_code == 403
    message = r.json()["error"]
    assert "alias 'production' is protected" in message and "models-key" in message and "approver" in message
    assert store.models.aliases("eta")["production"] == 1 and production_moves(store) == before
    entry = store.registry.audit_log("permission_denied", limit=1)[0]
    assert entry["actor"] == "models-key" and entry["target"] == "model:eta@production"
    # an unprotected alias moves for the same key
    assert (
        client.put("/models/eta/aliases/staging", json={"version": 2}, headers=auth("models")).status_code
        == 200
    )


def test_an_approver_approves_a_pending_candidate_once(store: FeatureStore, client: TestClient) -> None:
    run_id = add_pending(store)
    pending = client.get("/models/pending", params={"model": "eta"}, headers=auth("read")).json()["pending"]
    assert [(p["run"], p["version"], p["alias"]) for p in pending] == [(run_id, 2, "production")]
    assert pending[0]["champion"] == {"version": 1, "metrics": {"roc_auc": 0.78}}
    assert pending[0]["requested_by"] == "pipeline-bot"
    before = production_moves(store)
    predict = {"entities": [{"driver_id": 1}]}
    assert client.post("/models/eta/predict", json=predict, headers=auth("read")).json()["version"] == 1
    r = client.post("/models/eta/versions/2/approve", json={"reason": "looks good"}, headers=auth("approver"))
    assert r.status_code == 200, r.text
    # the server's model server heard of the move before the approval answered
    assert client.post("/models/eta/predict", json=predict, headers=auth("read")).json()["version"] == 2
    assert r.json()["version"] == 2 and "production" in r.json()["aliases"]
    assert store.models.aliases("eta")["production"] == 2
    assert production_moves(store) == [*before, 2]
    run = store.registry.backend.pipeline_run(run_id)
    assert run["decision"] == "approved" and run["review"]["by"] == "approver-key"
    assert run["review"]["reason"] == "looks good"
    # a second approve (no body this time) is refused, and nothing moves twice
    again = client.post("/models/eta/versions/2/approve", headers=auth("approver"))
    assert again.status_code == 409 and "no pending approval" in again.json()["error"]
    assert production_moves(store) == [*before, 2]
    assert client.get("/models/pending", headers=auth("read")).json() == {"pending": []}
    approvals = [e for e in store.registry.audit_log("model_approve") if e["detail"]["run"] == run_id]
    assert [(e["actor"], e["target"]) for e in approvals] == [("approver-key", "model:eta@production")]


def test_reject_leaves_the_alias_and_records_the_review(store: FeatureStore, client: TestClient) -> None:
    run_id = add_pending(store)
    before = production_moves(store)
    r = client.post(
        "/models/eta/versions/2/reject", json={"reason": "worse on new drivers"}, headers=auth("admin")
    )
    assert r.status_code == 200, r.text
    assert r.json()["id"] == run_id and r.json()["decision"] == "declined"
    assert store.models.aliases("eta")["production"] == 1 and production_moves(store) == before
    run = store.registry.backend.pipeline_run(run_id)
    assert run["review"]["decision"] == "declined" and run["review"]["reason"] == "worse on new drivers"
    assert store.registry.audit_log("model_reject", limit=1)[0]["actor"] == "admin-key"
    assert client.post("/models/eta/versions/2/approve", headers=auth("admin")).status_code == 409


def test_approvals_of_what_is_not_pending(store: FeatureStore, client: TestClient) -> None:
    add_pending(store, version=2)
    r = client.post("/models/eta/versions/1/approve", headers=auth("approver"))
    assert r.status_code == 409 and "version 1 has no pending approval" in r.json()["error"]
    assert "pending: versions [2]" in r.json()["error"]
    assert client.post("/models/eta/versions/9/approve", headers=auth("approver")).status_code == 404
    assert client.post("/models/nope/versions/1/reject", headers=auth("approver")).status_code == 404
    r = client.post("/models/eta/versions/2/approve", json={"reason": 3}, headers=auth("approver"))
    assert r.status_code == 422 and "body.reason" in r.json()["error"]
    assert store.models.aliases("eta")["production"] == 1


def test_no_keys_configured_the_server_stays_open(tmp_path: Any) -> None:
    store = build(tmp_path / "open", keys=False)
    try:
        with TestClient(create_app(store)) as client:
            assert client.put("/models/eta/aliases/production", json={"version": 2}).status_code == 200
            add_pending(store, version=1, champion=2)
            assert client.post("/models/eta/versions/1/approve").status_code == 200
        assert store.models.aliases("eta")["production"] == 1
        assert store.registry.audit_log("model_approve", limit=1)[0]["actor"] == "anonymous"
    finally:
        store.close()


# -- the matrix through Python and the CLI ($FS_USER + [governance] users) -------------------------


def fs(store: FeatureStore, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--repo", str(store.repo_path), *args], env={"COLUMNS": "200"})
    return result.exit_code, result.output


def python_call(store: FeatureStore, action: str) -> None:
    """Do `action` as the current $FS_USER; raises PermissionDeniedError when refused."""
    models, governance = store.models, store.governance
    if action == "register":
        models.register("eta", fitted_model(), feature_service="driver_activity")
    elif action == "set_alias_staging":
        models.set_alias("eta", "staging", 2)
    elif action == "set_alias_production":
        models.set_alias("eta", "production", 2)
    elif action == "delete_alias_production":
        models.delete_alias("eta", "production")
    elif action == "approve":
        models.approve("eta", 2, reason="matrix")
    elif action == "reject":
        models.reject("eta", 2)
    elif action == "apply":
        store.apply()
    elif action == "run_pipeline":  # the runner checks first; past the check, this repo has no pipeline
        with pytest.raises(UnknownNameError, match="pipeline"):
            store.pipelines.run("eta")
    else:  # no Python entry point that checks these: the one rule they share, asked directly
        needed = {"read_audit": "audit", "predict": "read", "lookup": "read"}
        governance.check(needed.get(action, action), "model:eta")


def setup(store: FeatureStore, monkeypatch: pytest.MonkeyPatch, action: str) -> None:
    monkeypatch.delenv("FS_USER", raising=False)
    store.models.set_alias("eta", "production", 1)
    if action in ("approve", "reject"):
        add_pending(store)


@pytest.mark.parametrize("role", ROLES)
def test_the_governance_matrix_through_python(
    store: FeatureStore, monkeypatch: pytest.MonkeyPatch, role: str
) -> None:
    user = USER_OF[role]
    for action in EXPECTED:
        setup(store, monkeypatch, action)
        monkeypatch.setenv("FS_USER", user)
        if allowed(action, role):
            python_call(store, action)
        else:
            with pytest.raises(PermissionDeniedError, match=f"user '{user}'.*role '{role}'"):
                python_call(store, action)
    monkeypatch.delenv("FS_USER")
    denied = {
        e["detail"]["action"] for e in store.registry.audit_log("permission_denied") if e["actor"] == user
    }
    expected = {
        "read": {
            "register",
            "set_alias",
            "delete_alias",
            "approve",
            "reject",
            "run_pipeline",
            "audit",
            "push",
            "feedback",
            "apply",
        },
        "write": {
            "register",
            "set_alias",
            "delete_alias",
            "approve",
            "reject",
            "run_pipeline",
            "audit",
            "apply",
        },
        "models": {"set_alias", "delete_alias", "approve", "reject", "audit", "push", "feedback", "apply"},
        "approver": {"audit", "push", "feedback", "apply"},
        "admin": set(),
    }
    assert denied == expected[role]  # every refusal is in the audit trail, by the user who tried


@pytest.mark.parametrize("role", ROLES)
def test_the_governance_matrix_through_the_cli(
    store: FeatureStore, monkeypatch: pytest.MonkeyPatch, role: str, tmp_path: Any
) -> None:
    sio.dump(fitted_model(), tmp_path / "eta.skops")
    commands = {
        "register": ["models", "register", "eta", str(tmp_path / "eta.skops"), "-s", "driver_activity"],
        "set_alias_staging": ["models", "alias", "eta", "staging", "2"],
        "set_alias_production": ["models", "alias", "eta", "production", "2"],
        "delete_alias_production": ["models", "alias", "eta", "production", "--delete"],
        "approve": ["models", "approve", "eta", "2", "--reason", "cli"],
        "reject": ["models", "reject", "eta", "2"],
        "read_audit": ["audit", "--limit", "5"],
        "apply": ["apply"],
    }
    for action, args in commands.items():
        setup(store, monkeypatch, action)
        monkeypatch.setenv("FS_USER", USER_OF[role])
        code, out = fs(store, *args)
        if allowed(action, role):
            assert code == 0, (action, out)
        else:
            assert code == 1 and f"user '{USER_OF[role]}'" in out, (action, out)


def test_fs_user_unset_means_no_check_and_unlisted_is_refused(
    store: FeatureStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.models.set_alias("eta", "production", 2)  # FS_USER unset: no check
    monkeypatch.setenv("FS_USER", "mallory")
    with pytest.raises(
        PermissionDeniedError, match=r"user 'mallory' \(FS_USER\) has no role in \[governance\] users"
    ):
        store.models.set_alias("eta", "staging", 1)
    with pytest.raises(PermissionDeniedError, match="mallory"):
        store.models.register("eta", fitted_model(), feature_service="driver_activity")
    entries = [e for e in store.registry.audit_log("permission_denied") if e["actor"] == "mallory"]
    assert [e["target"] for e in entries] == ["model:eta", "model:eta@staging"]
    assert "staging" not in store.models.aliases("eta") and len(store.models.versions("eta")) == 2


def test_cli_approvals_pending_and_audit(store: FeatureStore, monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = add_pending(store)
    code, out = fs(store, "models", "pending", "--json")
    assert code == 0 and [p["run"] for p in json.loads(out)] == [run_id]
    code, out = fs(store, "models", "pending", "eta")
    assert code == 0 and "Pending approvals" in out and "pipeline-bot" in out
    monkeypatch.setenv("FS_USER", "abby")
    code, out = fs(store, "models", "approve", "eta", "2", "--reason", "ok")
    assert code == 0 and "eta@production -> version 2" in out, out
    code, out = fs(store, "models", "approve", "eta", "2")
    assert code == 1 and "no pending approval" in out
    assert store.models.aliases("eta")["production"] == 2
    code, out = fs(store, "audit")  # abby is an approver, not admin
    assert code == 1 and "needs 'admin'" in out
    monkeypatch.setenv("FS_USER", "ada")
    code, out = fs(store, "audit", "--action", "model_approve", "--json")
    assert code == 0
    entries = json.loads(out)
    assert [(e["actor"], e["target"], e["detail"]["reason"]) for e in entries] == [
        ("abby", "model:eta@production", "ok")
    ]
    code, out = fs(store, "audit", "--target", "model:eta", "--limit", "50")
    assert code == 0 and "model_approve" in out and "model_alias_set" in out and "model_register" in out
    code, out = fs(store, "audit", "--target", "model:eta@staging", "--json")
    assert code == 0 and json.loads(out) == []


def test_concurrent_approvals_move_the_alias_once(store: FeatureStore) -> None:
    """Six approvers of one candidate, each with its own store, all find it pending while a writer
    holds the registry; when it lets go, their commits run one after another: one moves the alias."""
    add_pending(store)
    before = production_moves(store)
    stores = [FeatureStore(store.repo_path) for _ in range(6)]
    for s in stores:
        assert len(s.models.pending("eta")) == 1  # connections open before the registry is held
    outcomes: list[str] = []

    def approve(i: int) -> None:
        try:
            stores[i].models.approve("eta", 2, actor=f"approver-{i}", role="approver")
            outcomes.append("approved")
        except NoPendingApprovalError:
            outcomes.append("refused")

    holder = sqlite3.connect(store.config.registry_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # every approval's commit now waits
    threads = [threading.Thread(target=approve, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    time.sleep(1.5)  # each has read the pending run and is waiting to commit
    holder.execute("ROLLBACK")
    holder.close()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    assert sorted(outcomes) == ["approved"] + ["refused"] * 5
    assert production_moves(store) == [*before, 2]
    assert len(store.registry.audit_log("model_approve")) == 1


def test_register_with_a_protected_alias_is_refused_before_registering(
    store: FeatureStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    sio.dump(fitted_model(), tmp_path / "eta.skops")
    monkeypatch.setenv("FS_USER", "mona")  # models: may register, not move production
    args = ["models", "register", "eta", str(tmp_path / "eta.skops"), "-s", "driver_activity"]
    code, out = fs(store, *args, "--alias", "production")
    assert code == 1 and "alias 'production' is protected" in out, out
    assert len(store.models.versions("eta")) == 2
    code, out = fs(store, *args, "--alias", "staging")
    assert code == 0 and store.models.aliases("eta")["staging"] == 3, out


def test_a_pipeline_run_left_pending_is_approved_end_to_end(tmp_path: Any) -> None:
    """With the pipeline runner: approval="required" leaves the candidate pending; an approver's
    approve moves production to it, and the run records the review."""
    from tests.pipelines.scenario import MODEL, pipeline_repo

    sc = pipeline_repo(tmp_path / "pipes")
    try:
        sc.store.pipelines.run(MODEL, end=sc.old_end)
        sc.shift()
        sc.set_pipeline(options=', approval="required"')
        run = sc.store.pipelines.run(MODEL)
        assert run.decision == "pending_approval" and sc.store.models.aliases(MODEL) == {"production": 1}
        [pending] = sc.store.models.pending(MODEL)
        assert (pending["run"], pending["version"], pending["champion"]["version"]) == (run.id, 2, 1)
        assert pending["candidate"]["metrics"]["accuracy"] > pending["champion"]["metrics"]["accuracy"]
        mv = sc.store.models.approve(MODEL, 2, reason="new regime", actor="alice", role="approver")
        assert mv.aliases == ("production",) and sc.store.models.aliases(MODEL) == {"production": 2}
        after = sc.store.registry.backend.pipeline_run(run.id)
        assert after["decision"] == "approved" and after["review"]["by"] == "alice"
        assert sc.store.models.pending() == []
    finally:
        sc.store.close()


# -- the reserved tag "pipeline_run" ------------------------------------------------------------------


def test_the_pipeline_run_tag_is_reserved_for_the_runner(store: FeatureStore, tmp_path: Any) -> None:
    """A run finds its candidate by tags["pipeline_run"]: a user tag of that name could make a run
    adopt a version it never trained, so Python and the CLI refuse it (HTTP takes no tags); `pipeline_run=` sets it."""
    with pytest.raises(ModelRegistryError, match="tag 'pipeline_run' is reserved"):
        store.models.register(
            "eta", fitted_model(), feature_service="driver_activity", tags={"pipeline_run": "7"}
        )
    sio.dump(fitted_model(), tmp_path / "eta.skops")
    args = ["models", "register", "eta", str(tmp_path / "eta.skops"), "-s", "driver_activity"]
    code, out = fs(store, *args, "--tag", "pipeline_run=7")
    assert code == 1 and "'pipeline_run' is reserved" in out, out
    assert len(store.models.versions("eta")) == 2  # nothing registered by the refusals
    mv = store.models.register(
        "eta", fitted_model(), feature_service="driver_activity", tags={"team": "rides"}, pipeline_run=7
    )
    assert mv.tags == {"team": "rides", "pipeline_run": "7"}
    with pytest.raises(ModelRegistryError, match="pipeline_run must be a run id"):
        store.models.register(
            "eta",
            fitted_model(),
            feature_service="driver_activity",
            pipeline_run="7",  # type: ignore[arg-type]
        )


# -- approving an old candidate; runs closed by an approver; listeners that fail ---------------------


def test_approving_a_candidate_after_its_alias_moved_is_refused(
    store: FeatureStore, client: TestClient
) -> None:
    """Run A compared candidate 2 with production 1 and waits; production moved to 3 since (another
    run, an approver): approving 2 would replace 3, which it was never compared with: 409, no change."""
    run_id = add_pending(store, version=2, champion=1)
    store.models.register("eta", fitted_model(3.0), feature_service="driver_activity")
    store.models.set_alias("eta", "production", 3)
    before = production_moves(store)
    with pytest.raises(AliasMovedError, match=r"eta@production moved .*now v3.*compared with v1.*re-run"):
        store.models.approve("eta", 2, actor="abby", role="approver")
    r = client.post("/models/eta/versions/2/approve", headers=auth("approver"))
    assert r.status_code == 409 and "now v3" in r.json()["error"], r.text
    assert store.models.aliases("eta")["production"] == 3 and production_moves(store) == before
    run = store.registry.backend.pipeline_run(run_id)
    assert run["decision"] == "pending_approval" and run.get("review") is None
    assert store.registry.audit_log("model_approve") == []
    # a candidate compared with no champion approves only while the alias is still unset
    add_pending(store, version=1, alias="canary", champion=None)
    store.models.set_alias("eta", "canary", 3)
    with pytest.raises(AliasMovedError, match=r"now v3, the candidate was compared with no version"):
        store.models.approve("eta", 1)
    store.models.delete_alias("eta", "canary")
    assert store.models.approve("eta", 1).aliases == ("canary",)


def test_approve_and_reject_close_a_run_killed_at_pending(store: FeatureStore) -> None:
    """The runner died at step "pending" (no finished_at): the approver's decision finishes the run."""
    approved, declined = add_pending(store, version=2), add_pending(store, version=1)
    backend = store.registry.backend
    assert backend.pipeline_run(approved).get("finished_at") is None
    store.models.approve("eta", 2, role="approver")
    store.models.reject("eta", 1, role="approver")
    for run_id in (approved, declined):
        run = backend.pipeline_run(run_id)
        assert run["step"] == "finished" and run["status"] == "succeeded"
        assert run["finished_at"] >= run["started_at"] and run["duration_seconds"] >= 0
    # the role a caller passed is in the audit trail next to the actor
    [entry] = store.registry.audit_log("model_approve")
    assert entry["detail"]["role"] == "approver"
    assert store.registry.audit_log("model_reject")[0]["detail"]["role"] == "approver"
    store.models.set_alias("eta", "staging", 1, actor="bot", role="models")
    assert store.registry.audit_log("model_alias_set", limit=1)[0]["detail"]["role"] == "models"


def test_a_failing_listener_does_not_fail_the_change(
    store: FeatureStore, caplog: pytest.LogCaptureFixture
) -> None:
    heard: list[str] = []

    def broken(name: str) -> None:
        raise RuntimeError("cannot load the new version")

    store.models.subscribe(broken)
    store.models.subscribe(heard.append)
    mv = store.models.register("eta", fitted_model(), feature_service="driver_activity")
    store.models.set_alias("eta", "staging", mv.version)
    store.models.delete_alias("eta", "staging")
    add_pending(store, version=mv.version)
    assert store.models.approve("eta", mv.version).version == mv.version
    assert store.models.aliases("eta")["production"] == mv.version
    assert heard == ["eta"] * 4  # the listener after the broken one heard of every change
    warnings = [r for r in caplog.records if "listener" in r.getMessage() and r.levelname == "WARNING"]
    assert len(warnings) == 4 and "cannot load the new version" in warnings[0].getMessage()
