"""The registry's storage contract (`RegistryStore`), checked against every backend.

`backend` is parametrized over the backends (BACKENDS: SQLite, and PostgreSQL in a database of its
own on the local server, `tests.postgres`); a new backend adds its name there and a case to
`open_backend`, and runs these same tests. Below them: schema migrations of an existing SQLite
registry, and where each definition is defined, through the public API.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from featurestore import FeatureStore
from featurestore.errors import RegistryError
from featurestore.registry_sqlite import SCHEMA_VERSION, SQLiteRegistryStore
from featurestore.registry_store import AliasMove, MaterializationRun, RegistryStore
from tests.postgres import temporary_database
from tests.repo_builder import make_repo
from tests.test_repo import ENTITY, HEADER, SOURCE, STATS, view

BACKENDS = ["sqlite", "postgresql"]
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


@contextmanager
def open_backend(kind: str, tmp_path: Path) -> Iterator[RegistryStore]:
    """A new, empty store of backend `kind` (PostgreSQL: in a database of its own, dropped after)."""
    if kind == "sqlite":
        store: RegistryStore = SQLiteRegistryStore(tmp_path / "registry.db")
        yield store
        store.close()
    elif kind == "postgresql":
        with temporary_database() as url:
            from featurestore.registry_postgres import PostgresRegistryStore

            store = PostgresRegistryStore(url)
            yield store
            store.close()
    else:
        raise AssertionError(kind)


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path):
    with open_backend(request.param, tmp_path) as store:
        yield store


def spec(n: int) -> dict:
    return {"name": "v", "n": n}


def run(view: str, start_h: int, end_h: int, rows: int = 5) -> MaterializationRun:
    return MaterializationRun(
        view,
        T0 + timedelta(hours=start_h),
        T0 + timedelta(hours=end_h),
        rows,
        rows,
        datetime.now(timezone.utc),
    )


# -- the contract -------------------------------------------------------------------------------------


def test_a_new_store_is_empty_at_the_latest_schema(backend):
    assert backend.schema_version() == SCHEMA_VERSION
    assert backend.specs() == {} and backend.objects() == [] and backend.generation() == 0
    assert backend.watermarks() == {} and backend.audit_log() == []
    assert backend.models_generation() == 0 and backend.model_versions() == []
    assert backend.training_set_names() == []


def test_apply_versions_each_object_and_grows_the_generation_once(backend):
    g1 = backend.apply([("add", "feature_view", "v", spec(1)), ("add", "entity", "e", spec(0))], "alice")
    assert g1 == 1
    g2 = backend.apply([("change", "feature_view", "v", spec(2))], "bob")
    assert g2 == 2 == backend.generation()
    assert backend.versions() == {("feature_view", "v"): 2, ("entity", "e"): 1}
    assert backend.specs()[("feature_view", "v")] == spec(2)
    objects = backend.objects()
    assert [(o["kind"], o["name"]) for o in objects] == [("entity", "e"), ("feature_view", "v")]
    assert objects[1]["applied_by"] == "bob" and objects[1]["location"] is None
    assert backend.apply([("remove", "entity", "e", None)], "bob") == 3
    assert backend.versions() == {("feature_view", "v"): 2}
    assert backend.apply([], "bob") == 3  # nothing to do: nothing changes
    assert [e["action"] for e in backend.audit_log()] == ["apply", "apply", "apply"]


def test_locations_are_stored_beside_specs_and_are_no_change(backend):
    backend.apply(
        [("add", "feature_view", "v", spec(1))], "a", locations={("feature_view", "v"): "defs.py:3"}
    )
    assert backend.objects()[0]["location"] == "defs.py:3"
    generation = backend.generation()
    backend.apply([], "a", locations={("feature_view", "v"): "defs.py:9", ("entity", "gone"): "x.py:1"})
    (obj,) = backend.objects()
    assert obj["location"] == "defs.py:9" and obj["version"] == 1
    assert backend.generation() == generation and len(backend.audit_log()) == 1


def test_watermarks_only_move_forward_and_runs_are_recorded_in_order(backend):
    assert backend.watermark("v") is None
    assert backend.record_materialization(run("v", 0, 10), advance_watermark=True)
    assert backend.record_materialization(run("v", 0, 5), advance_watermark=True)
    assert backend.record_materialization(run("v", 20, 30), advance_watermark=False)
    assert backend.watermark("v") == T0 + timedelta(hours=10)
    assert backend.watermarks() == {"v": T0 + timedelta(hours=10)}
    assert [(r.start, r.end) for r in backend.current_runs("v")] == [
        (T0, T0 + timedelta(hours=10)),
        (T0, T0 + timedelta(hours=5)),
        (T0 + timedelta(hours=20), T0 + timedelta(hours=30)),
    ]
    assert backend.current_runs("other") == [] and len(backend.runs()) == 3


def test_a_run_keeps_its_statistics_and_profiles_are_kept_by_key(backend):
    stats = {"version": 1, "rows": 5, "columns": {"conv_rate": {"nulls": 0, "min": 0.1}}}
    with_stats = MaterializationRun(
        "v", T0, T0 + timedelta(hours=1), 5, 5, datetime.now(timezone.utc), None, stats
    )
    assert backend.record_materialization(with_stats, advance_watermark=True)
    assert backend.record_materialization(run("v", 1, 2), advance_watermark=True)
    assert [r.stats for r in backend.current_runs("v")] == [stats, None]
    assert backend.runs("v")[0].stats == stats
    assert backend.monitor_profile("prediction:eta:1") is None
    backend.save_monitor_profile("prediction:eta:1", {"bins": [1, 2]})
    backend.save_monitor_profile("prediction:eta:1", {"bins": [3]})
    assert backend.monitor_profile("prediction:eta:1") == {"bins": [3]}


def test_a_reset_drops_the_watermark_and_the_runs_so_far_and_refuses_older_runs(backend):
    backend.apply([("add", "feature_view", "v", spec(1))], "a")
    read_at = backend.generation()
    backend.record_materialization(run("v", 0, 10), advance_watermark=True)
    backend.record_materialization(run("w", 0, 10), advance_watermark=True)
    generation = backend.apply([("change", "feature_view", "v", spec(2))], "a", stale_views=["v"])
    assert backend.watermark("v") is None and backend.watermark("w") is not None
    assert backend.current_runs("v") == [] and len(backend.current_runs("w")) == 1
    assert len(backend.runs("v")) == 1  # still on record, no longer counted
    assert not backend.record_materialization(run("v", 0, 10), True, generation=read_at)
    assert backend.watermark("v") is None and len(backend.runs("v")) == 1
    assert backend.record_materialization(run("v", 0, 4), True, generation=generation)
    assert backend.watermark("v") == T0 + timedelta(hours=4)


def test_online_watermarks_are_per_online_store_move_forward_and_go_with_a_reset(backend):
    backend.apply([("add", "feature_view", "v", spec(1))], "a")
    backend.record_materialization(run("v", 0, 10), True, online_store="store-a")
    backend.record_materialization(run("v", 0, 5), True, online_store="store-a")
    backend.record_materialization(run("v", 0, 7), True, online_store="store-b")
    backend.record_materialization(run("v", 0, 12), True)  # wrote no online store
    assert backend.online_watermarks("store-a") == {"v": T0 + timedelta(hours=10)}
    assert backend.online_watermarks("store-b") == {"v": T0 + timedelta(hours=7)}
    assert backend.online_watermarks("store-c") == {}
    assert backend.watermark("v") == T0 + timedelta(hours=12)
    backend.apply([("change", "feature_view", "v", spec(2))], "a", stale_views=["v"])
    assert backend.online_watermarks("store-a") == {} == backend.online_watermarks("store-b")


def test_audit_entries_come_newest_first_filtered_and_limited(backend):
    for i in range(3):
        backend.audit("alice", "push", f"view:{i}", {"rows": i, "when": T0})
    backend.audit("bob", "other", "x", {})
    log = backend.audit_log()
    assert [e["target"] for e in log] == ["x", "view:2", "view:1", "view:0"]
    assert log[1]["detail"] == {"rows": 2, "when": str(T0)} and log[1]["actor"] == "alice"
    assert [e["target"] for e in backend.audit_log("push", limit=2)] == ["view:2", "view:1"]


def model_record(version: int, **extra) -> dict:
    return {
        "flavor": "sklearn",
        "format": "skops",
        "artifact": f"m/{version}/model.skops",
        "sha256": "0" * 64,
        "size": 10,
        "details": {"a": [1, 2]},
        "feature_service": "svc",
        "signature": {"inputs": [], "full_feature_names": False},
        "training_set": None,
        "training_fingerprint": None,
        "metrics": {"mae": 1.5},
        "params": {},
        "tags": {"team": "x"},
        "description": "",
        "missing_policy": "fail",
        "registered_by": "alice",
        "registered_at": T0.isoformat(),
        **extra,
    }


def test_model_versions_are_numbered_in_the_write_and_a_failed_build_records_nothing(backend):
    seen = []

    def build(version):
        seen.append(version)
        return model_record(version)

    assert backend.add_model_version("m", build) == 1
    assert backend.add_model_version("m", build) == 2
    assert backend.add_model_version("n", build) == 1 and seen == [1, 2, 1]

    def broken(version):
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        backend.add_model_version("m", broken)
    assert [r["version"] for r in backend.model_versions("m")] == [1, 2]
    assert [(r["name"], r["version"]) for r in backend.model_versions()] == [("m", 1), ("m", 2), ("n", 1)]
    record = backend.model_version("m", 2)
    assert record is not None and record["details"] == {"a": [1, 2]} and record["metrics"] == {"mae": 1.5}
    assert record["missing_policy"] == "fail" and record["artifact"] == "m/2/model.skops"
    assert backend.model_version("m", 3) is None
    assert backend.models_generation() == 3


def test_aliases_move_with_their_history(backend):
    backend.add_model_version("m", model_record)
    backend.add_model_version("m", model_record)
    generation = backend.models_generation()
    assert backend.set_model_alias("m", "production", 1, "alice") is None
    assert backend.set_model_alias("m", "production", 2, "bob") == 1
    assert backend.model_aliases("m") == {("m", "production"): 2}
    assert backend.delete_model_alias("m", "production", "bob") == 2
    assert backend.delete_model_alias("m", "production", "bob") is None
    assert backend.model_aliases() == {}
    history = backend.model_alias_history("m")
    assert [(h["old_version"], h["new_version"], h["actor"]) for h in history] == [
        (None, 1, "alice"),
        (1, 2, "bob"),
        (2, None, "bob"),
    ]
    assert backend.models_generation() == generation + 3


def test_pipeline_runs_are_numbered_filtered_and_newest_first(backend):
    first = backend.add_pipeline_run("m", {"trigger": "manual", "params": {"a": 1}}, "alice")
    assert (first["model"], first["status"], first["step"], first["decision"]) == (
        "m",
        "running",
        "started",
        None,
    )
    assert first["trigger"] == "manual" and first["params"] == {"a": 1}
    second = backend.add_pipeline_run(
        "m", {"trigger": "monitor", "status": "skipped", "decision": "skipped"}, "bob"
    )
    other = backend.add_pipeline_run("n", {"trigger": "manual"}, "bob")
    assert first["id"] < second["id"] < other["id"]
    assert [r["id"] for r in backend.pipeline_runs()] == [other["id"], second["id"], first["id"]]
    assert [r["id"] for r in backend.pipeline_runs("m")] == [second["id"], first["id"]]
    assert [r["id"] for r in backend.pipeline_runs(status="running")] == [other["id"], first["id"]]
    assert [r["id"] for r in backend.pipeline_runs(decision="skipped")] == [second["id"]]
    assert [r["id"] for r in backend.pipeline_runs(limit=1)] == [other["id"]]
    assert backend.pipeline_run(first["id"]) == first
    assert backend.pipeline_run(10_000) is None
    started = [e for e in backend.audit_log("pipeline_run_start")]
    assert [(e["actor"], e["target"], e["detail"]["run"]) for e in started][-1] == (
        "alice",
        "model:m",
        first["id"],
    )
    skipped = backend.audit_log("pipeline_run_skipped")
    assert [e["detail"] for e in skipped] == [{"run": second["id"], "trigger": "monitor"}]
    with pytest.raises(RegistryError, match="kept by the registry"):
        backend.add_pipeline_run("m", {"id": 3}, "alice")


def test_a_run_step_commits_with_its_alias_move_and_audit_or_not_at_all(backend):
    backend.add_model_version("m", model_record)
    backend.add_model_version("m", model_record)
    backend.set_model_alias("m", "production", 1, "alice")
    run = backend.add_pipeline_run("m", {"trigger": "manual"}, "alice")
    generation = backend.models_generation()
    done = backend.commit_run_step(run["id"], {"step": "decided", "candidate": {"version": 2}})
    assert done.committed and done.run["step"] == "decided" and done.run["candidate"] == {"version": 2}
    assert done.run["trigger"] == "manual"  # merged, not replaced
    # the alias moved elsewhere meanwhile: the step is refused whole
    stale = backend.commit_run_step(
        run["id"],
        {"step": "promoted", "decision": "promoted"},
        expect={"step": "decided"},
        alias_move=AliasMove("m", "production", 2, "pipeline", expected=2),
        audit=("pipeline", "model_promote", "model:m@production", {"run": run["id"]}),
    )
    assert not stale.committed and stale.previous_version == 1 and "points at 1" in (stale.conflict or "")
    assert backend.pipeline_run(run["id"])["step"] == "decided"
    assert backend.model_aliases("m") == {("m", "production"): 1}
    assert backend.audit_log("model_promote") == []
    moved = backend.commit_run_step(
        run["id"],
        {"step": "promoted", "decision": "promoted"},
        expect={"step": "decided"},
        alias_move=AliasMove("m", "production", 2, "pipeline", expected=1),
        audit=("pipeline", "model_promote", "model:m@production", {"run": run["id"]}),
    )
    assert moved.committed and moved.previous_version == 1
    assert (moved.run["step"], moved.run["decision"]) == ("promoted", "promoted")
    assert backend.model_aliases("m") == {("m", "production"): 2}
    assert backend.model_alias_history("m")[-1]["actor"] == "pipeline"
    assert backend.models_generation() == generation + 1
    assert len(backend.audit_log("model_promote")) == 1
    # the same step again: its expectation no longer holds, nothing moves twice
    again = backend.commit_run_step(
        run["id"],
        {"step": "promoted"},
        expect={"step": "decided"},
        alias_move=AliasMove("m", "production", 2, "pipeline", expected=1),
    )
    assert not again.committed and len(backend.model_alias_history("m")) == 2
    # unchecked: moves from wherever it points; unset expected: None means "unset"
    free = backend.commit_run_step(run["id"], {}, alias_move=AliasMove("m", "staging", 1, "x", check=False))
    assert free.committed and free.previous_version is None
    with pytest.raises(RegistryError, match="no pipeline run"):
        backend.commit_run_step(10_000, {"step": "x"})


def test_training_sets_are_saved_replaced_and_a_failed_save_stores_nothing(backend):
    entry = {
        "name": "t",
        "fingerprint": "abc",
        "record": {"feature_refs": ["v:f"], "rows": 3},
        "description": "first",
        "created_by": "alice",
        "created_at": T0.isoformat(),
    }
    calls = []
    backend.save_training_set(entry, lambda: calls.append(1))
    assert backend.training_set("t") == entry and calls == [1]
    backend.save_training_set({**entry, "fingerprint": "def"}, lambda: None)
    assert backend.training_set("t")["fingerprint"] == "def"

    def failing():
        raise OSError("rename failed")

    with pytest.raises(OSError):
        backend.save_training_set({**entry, "name": "u"}, failing)
    assert backend.training_set("u") is None and backend.training_set_names() == ["t"]


def test_backup_is_a_registry_with_the_same_contents(backend, tmp_path):
    backend.apply([("add", "feature_view", "v", spec(1))], "a")
    backend.record_materialization(run("v", 0, 10), advance_watermark=True)
    backend.backup(tmp_path / "copy.db")
    copy = SQLiteRegistryStore(tmp_path / "copy.db")
    assert copy.specs() == backend.specs() and copy.watermarks() == backend.watermarks()
    copy.close()


# -- migrations of an existing SQLite registry --------------------------------------------------------

# The registry's tables before schema versioning (featurestore before issue 12), as that release made them.
OLD_SCHEMA = """
CREATE TABLE objects (
    kind TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL, spec TEXT NOT NULL,
    applied_by TEXT NOT NULL, applied_at TEXT NOT NULL, PRIMARY KEY (kind, name));
CREATE TABLE object_history (
    kind TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL, action TEXT NOT NULL, spec TEXT,
    applied_by TEXT NOT NULL, applied_at TEXT NOT NULL);
CREATE TABLE watermarks (view TEXT PRIMARY KEY, watermark TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE materializations (
    view TEXT NOT NULL, start TEXT NOT NULL, "end" TEXT NOT NULL, rows INTEGER NOT NULL,
    online_rows INTEGER NOT NULL, finished_at TEXT NOT NULL);
CREATE TABLE view_resets (
    view TEXT PRIMARY KEY, at TEXT NOT NULL, generation INTEGER NOT NULL, last_run INTEGER NOT NULL);
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    target TEXT NOT NULL, detail TEXT NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def old_registry(store: FeatureStore) -> None:
    """Rewrite `store`'s applied registry as the previous release would have left it: its tables and
    rows, without `schema_migrations` or the location column."""
    new = SQLiteRegistryStore(store.config.registry_path)
    specs, versions, watermarks = new.specs(), new.versions(), new.watermarks()
    new.close()
    store.registry.close()
    path = Path(store.config.registry_path)
    for leftover in path.parent.glob(path.name + "*"):
        leftover.unlink()
    con = sqlite3.connect(path)
    con.executescript(OLD_SCHEMA)
    at = T0.isoformat()
    for (kind, name), body in specs.items():
        con.execute(
            "INSERT INTO objects VALUES (?, ?, ?, ?, ?, ?)",
            (kind, name, versions[(kind, name)], json.dumps(body, sort_keys=True), "old", at),
        )
    for view_name, mark in watermarks.items():
        con.execute("INSERT INTO watermarks VALUES (?, ?, ?)", (view_name, mark.isoformat(), at))
        con.execute(
            "INSERT INTO materializations VALUES (?, ?, ?, 4, 4, ?)",
            (view_name, T0.isoformat(), mark.isoformat(), at),
        )
    con.execute("INSERT INTO meta VALUES ('generation', '7')")
    con.execute(
        "INSERT INTO audit (at, actor, action, target, detail) VALUES (?, 'old', 'apply', 'definitions', '{}')",
        (at,),
    )
    con.commit()
    con.close()


def repo(tmp_path, body=None):
    return make_repo(
        tmp_path / "repo",
        {"defs.py": HEADER + ENTITY + SOURCE + (body or view())},
        {"data/stats.parquet": STATS},
    )


def test_a_registry_from_before_schema_versions_opens_migrated_with_its_contents(tmp_path):
    path = repo(tmp_path)
    first = FeatureStore(path)
    first.apply()
    first.materialize("2026-01-01", "2026-01-02")
    old_registry(first)
    assert "schema_migrations" not in {
        r[0] for r in sqlite3.connect(first.config.registry_path).execute("SELECT name FROM sqlite_master")
    }

    store = FeatureStore(path)
    assert store.registry.backend.schema_version() == SCHEMA_VERSION
    assert store.catalog.view("stats_view").feature_names == ("conv_rate", "trips")
    assert store.registry.generation() == 7
    assert store.registry.watermark("stats_view") == datetime(2026, 1, 2, tzinfo=timezone.utc)
    assert store.registry.materialized_intervals("stats_view")[0][0] == T0
    assert [o["location"] for o in store.registry.objects()] == [None, None, None]
    assert store.plan().is_empty
    assert store.models.list() == [] and store.training_sets.names() == []  # their tables were added
    store.apply()  # records where each definition is, and changes nothing else
    assert store.registry.generation() == 7
    assert store.registry.locations()[("feature_view", "stats_view")] == "defs.py:6"
    assert store.registry.audit_log()[-1]["actor"] == "old"
    # Opening again applies nothing twice.
    assert FeatureStore(path).registry.backend.schema_version() == SCHEMA_VERSION


def test_a_registry_from_a_newer_schema_is_refused_naming_the_file(tmp_path):
    path = repo(tmp_path)
    store = FeatureStore(path)
    store.apply()
    con = sqlite3.connect(store.config.registry_path)
    con.execute("INSERT INTO schema_migrations VALUES (?, 'from the future', '')", (SCHEMA_VERSION + 1,))
    con.commit()
    con.close()
    with pytest.raises(
        RegistryError, match=rf"{store.config.registry_path}.*schema version {SCHEMA_VERSION + 1}"
    ):
        _ = FeatureStore(path).registry


# -- where each definition is defined ----------------------------------------------------------------


def test_apply_records_each_definitions_file_and_line_and_moving_one_is_no_change(tmp_path):
    files = {
        "entities.py": HEADER + ENTITY,
        "views.py": HEADER + "from entities import driver\n\n" + SOURCE + view(),
    }
    path = make_repo(tmp_path / "repo", files, {"data/stats.parquet": STATS})
    store = FeatureStore(path)
    store.apply()
    assert store.registry.locations() == {
        ("entity", "driver"): "entities.py:4",
        ("source", "stats"): "views.py:6",
        ("feature_view", "stats_view"): "views.py:7",
    }
    generation, versions = store.registry.generation(), store.registry.versions()
    (path / "views.py").write_text(HEADER + "from entities import driver\n\n\n\n" + SOURCE + view())
    assert store.plan().is_empty  # moving a definition is not a change
    store.apply()
    assert store.registry.locations()[("feature_view", "stats_view")] == "views.py:9"
    assert store.registry.generation() == generation and store.registry.versions() == versions


def test_fs_list_shows_where_each_definition_is_defined(tmp_path):
    from click.testing import CliRunner

    from featurestore.cli import cli

    path = repo(tmp_path)
    runner = CliRunner()
    assert runner.invoke(cli, ["--repo", str(path), "apply"]).exit_code == 0
    listed = runner.invoke(cli, ["--repo", str(path), "list", "--json"])
    assert listed.exit_code == 0, listed.output
    body = json.loads(listed.output)
    assert body["views"][0]["defined_at"] == "defs.py:6" and body["entities"][0]["defined_at"] == "defs.py:4"
    shown = runner.invoke(cli, ["--repo", str(path), "list", "sources"])
    assert "defs.py:5" in shown.output


def test_nothing_outside_the_backends_reaches_the_registry_database():
    root = Path(__file__).resolve().parent.parent
    allowed = {  # the backends, and the online SQLite store's rows
        "featurestore/registry_sqlite.py",
        "featurestore/registry_postgres.py",
        "featurestore/online/sqlite.py",
    }
    offenders = [
        rel
        for folder in ("featurestore", "server")
        for file in sorted((root / folder).rglob("*.py"))
        if (rel := file.relative_to(root).as_posix()) not in allowed
        and any(s in file.read_text() for s in ("sqlite3", ".transaction(", "registry.read(", "backend._"))
    ]
    assert offenders == []
