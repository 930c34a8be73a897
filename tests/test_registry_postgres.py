"""The registry on PostgreSQL, beyond the contract suite (`tests/test_registry_store.py` runs that on
both backends): copies between backends row for row, concurrent writers in two processes, advisory
locks across processes (and released by a SIGKILL), errors naming the database, `fs registry
migrate`, and a whole repo living on a PostgreSQL registry.

Each test gets a database of its own on the local server (`tests.postgres`), dropped after.
"""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.synchronize
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from featurestore import FeatureStore
from featurestore.cli import cli
from featurestore.errors import PipelineError, RegistryError
from featurestore.registry_migrate import copy_registry
from featurestore.registry_sqlite import SQLiteRegistryStore
from featurestore.registry_store import AliasMove, MaterializationRun, RegistryStore
from tests.models.conftest import NOW, build_store, training_frame
from tests.postgres import temporary_database

psycopg = pytest.importorskip("psycopg")
from featurestore.registry_postgres import SCHEMA_VERSION, PostgresRegistryStore  # noqa: E402

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def url():
    with temporary_database() as u:
        yield u


@pytest.fixture
def pg(url):
    store = PostgresRegistryStore(url)
    yield store
    store.close()


@pytest.fixture(autouse=True)
def _user(monkeypatch):
    monkeypatch.setenv("FS_USER", "tester")


def run(view: str, start_h: int, end_h: int, **extra) -> MaterializationRun:
    return MaterializationRun(
        view, T0 + timedelta(hours=start_h), T0 + timedelta(hours=end_h), 5, 5, T0, **extra
    )


def model_record(version: int) -> dict:
    return {
        "flavor": "sklearn",
        "format": "skops",
        "artifact": f"m/{version}/model.skops",
        "sha256": "0" * 64,
        "size": 3_000_000_000,  # beyond 32 bits
        "details": {"a": [1, 2]},
        "feature_service": "svc",
        "signature": {"inputs": []},
        "training_set": None,
        "training_fingerprint": None,
        "metrics": {"mae": 1.5},
        "params": {},
        "tags": {"team": "x"},
        "description": "ünïcode",
        "missing_policy": "fail",
        "registered_by": "alice",
        "registered_at": T0.isoformat(),
    }


def fill(store: RegistryStore) -> None:
    """Put rows in every table of the registry through the contract."""
    store.apply(
        [
            ("add", "entity", "e", {"n": 0}),
            ("add", "feature_view", "v", {"n": 1}),
            ("add", "feature_view", "B", {}),
        ],
        "alice",
        locations={("feature_view", "v"): "defs.py:3"},
    )
    store.record_materialization(run("v", 0, 10, stats={"rows": 5}), True, online_store="store-a")
    store.record_materialization(run("w", 0, 4, source_fingerprint="fp"), True)
    store.apply([("change", "feature_view", "v", {"n": 2}), ("remove", "entity", "e", None)], "bob", ["v"])
    store.record_materialization(run("v", 0, 3), True, generation=store.generation(), online_store="store-a")
    store.audit("carol", "push", "view:v", {"rows": 3, "when": T0})
    store.add_model_version("m", model_record)
    store.add_model_version("m", model_record)
    store.add_model_version("a", model_record)
    store.set_model_alias("m", "production", 1, "alice")
    store.set_model_alias("m", "staging", 2, "alice")
    store.delete_model_alias("m", "staging", "bob")
    store.save_training_set(
        {
            "name": "t",
            "fingerprint": "abc",
            "record": {"rows": 3},
            "description": "d",
            "created_by": "alice",
            "created_at": T0.isoformat(),
        },
        lambda: None,
    )
    first = store.add_pipeline_run("m", {"trigger": "manual", "params": {"x": 1}}, "alice")
    store.commit_run_step(
        first["id"],
        {"step": "promoted", "decision": "promoted"},
        alias_move=AliasMove("m", "production", 2, "pipeline", expected=1),
        audit=("pipeline", "model_promote", "model:m@production", {"run": first["id"]}),
    )
    store.add_pipeline_run("a", {"status": "skipped", "decision": "skipped", "trigger": "monitor"}, "bob")
    store.save_monitor_profile("prediction:m:1", {"bins": [1, 2]})


def reads(store: RegistryStore) -> dict:
    """What every read method of the contract returns."""
    runs = store.pipeline_runs()
    return {
        "schema_version": store.schema_version(),
        "specs": store.specs(),
        "objects": store.objects(),
        "versions": store.versions(),
        "generation": store.generation(),
        "watermark": [store.watermark(v) for v in ("v", "w", "x")],
        "watermarks": store.watermarks(),
        "online_watermarks": store.online_watermarks("store-a"),
        "tracks_online_stores": store.tracks_online_stores(),
        "current_runs": [store.current_runs(v) for v in ("v", "w")],
        "runs": store.runs(),
        "runs_v": store.runs("v"),
        "audit_log": store.audit_log(),
        "audit_push": store.audit_log("push", limit=1),
        "models_generation": store.models_generation(),
        "model_versions": store.model_versions(),
        "model_versions_m": store.model_versions("m"),
        "model_version": store.model_version("m", 2),
        "model_aliases": store.model_aliases(),
        "alias_history": store.model_alias_history("m"),
        "training_set": store.training_set("t"),
        "training_set_names": store.training_set_names(),
        "pipeline_runs": runs,
        "pipeline_run": [store.pipeline_run(r["id"]) for r in runs],
        "monitor_profile": store.monitor_profile("prediction:m:1"),
    }


# -- copies between backends ------------------------------------------------------------------------


def test_a_sqlite_registry_copied_to_postgresql_reads_the_same_and_goes_on_the_same(pg, tmp_path):
    sqlite = SQLiteRegistryStore(tmp_path / "registry.db")
    fill(sqlite)
    copied = copy_registry(sqlite, pg)
    assert copied["objects"] == 2 and copied["materializations"] == 3 and copied["pipeline_runs"] == 2
    assert reads(pg) == reads(sqlite)
    assert reads(pg)["current_runs"][0] == [run("v", 0, 3)]  # the reset's place among the runs was kept
    # the ids and numbers go on where the original's would
    for store in (sqlite, pg):
        store.apply([("add", "feature_view", "z", {})], "dave")
        store.add_model_version("m", model_record)
        store.record_materialization(run("v", 3, 5), True)
    assert pg.generation() == sqlite.generation() == 3
    assert pg.model_versions("m")[-1]["version"] == 3
    assert pg.add_pipeline_run("m", {}, "x")["id"] == sqlite.add_pipeline_run("m", {}, "x")["id"] == 3
    assert [r.end for r in pg.current_runs("v")] == [r.end for r in sqlite.current_runs("v")]
    sqlite.close()


def test_a_copy_into_a_registry_holding_anything_is_refused_and_changes_nothing(pg, tmp_path):
    pg.audit("alice", "push", "view:v", {})
    sqlite = SQLiteRegistryStore(tmp_path / "registry.db")
    fill(sqlite)
    with pytest.raises(RegistryError, match=r"is not empty \(table audit has rows\)"):
        copy_registry(sqlite, pg)
    assert len(pg.audit_log()) == 1 and pg.objects() == []
    with pytest.raises(RegistryError, match="is not empty"):
        copy_registry(pg, sqlite)
    sqlite.close()


def test_a_backup_of_a_postgresql_registry_is_a_sqlite_registry_with_every_row(pg, tmp_path):
    fill(pg)
    pg.backup(tmp_path / "copy.db")
    copy = SQLiteRegistryStore(tmp_path / "copy.db")
    assert reads(copy) == reads(pg)
    copy.close()


# -- schema, errors --------------------------------------------------------------------------------


def test_opening_applies_the_migrations_once_even_when_many_open_it_at_once(url):
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            PostgresRegistryStore(url).close()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=open_it) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with psycopg.connect(url) as con:
        versions = [r[0] for r in con.execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == list(range(1, SCHEMA_VERSION + 1))


def test_a_registry_from_a_newer_schema_is_refused_naming_the_database(pg, url):
    with psycopg.connect(url) as con:
        con.execute("INSERT INTO schema_migrations VALUES (%s, 'from the future', '')", (SCHEMA_VERSION + 1,))
    with pytest.raises(RegistryError, match=rf"{pg.location}.*schema version {SCHEMA_VERSION + 1}.*upgrade"):
        PostgresRegistryStore(url)


def test_a_corrupt_value_is_a_registry_error_suggesting_a_restore(pg, url):
    pg.apply([("add", "feature_view", "v", {"n": 1})], "a")
    pg.record_materialization(run("v", 0, 1), True)
    with psycopg.connect(url) as con:
        con.execute("UPDATE objects SET spec = '{not json'")
        con.execute("UPDATE watermarks SET watermark = 'yesterday'")
        con.execute("UPDATE meta SET value = 'x' WHERE key = 'generation'")
    for read in (pg.specs, pg.watermarks, pg.generation):
        with pytest.raises(RegistryError, match="corrupt or unreadable.*restore it from a backup"):
            read()
    with pytest.raises(RegistryError, match="corrupt or unreadable"):  # the bump casts it in SQL
        pg.apply([("change", "feature_view", "v", {"n": 2})], "a")


def test_a_nul_in_a_written_value_is_refused_naming_it_not_called_corruption(pg):
    with pytest.raises(RegistryError, match=r"refused the value 'prod\\x00uction'.*NUL") as caught:
        pg.set_model_alias("m", "prod\x00uction", 1, "bob")
    assert "corrupt" not in str(caught.value)
    with pytest.raises(RegistryError, match=r"refused the value 'm\\x00'"):
        pg.model_version("m\x00", 1)
    assert pg.model_aliases() == {}  # nothing written, and the connection still works


def test_an_unreachable_database_is_a_registry_error_without_the_password():
    with pytest.raises(RegistryError) as caught:
        PostgresRegistryStore("postgresql://alice:s3cret@127.0.0.1:1/features", connect_timeout=2)
    message = str(caught.value)
    assert "cannot connect to the registry postgresql://alice:***@127.0.0.1:1/features" in message
    assert "s3cret" not in message and "check that PostgreSQL runs" in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://alice@127.0.0.1:1/features?password=s3cret",
        "postgresql:///features?host=127.0.0.1&port=1&user=alice&password=s3cret",
        "postgresql://alice:s3@cret@127.0.0.1:1/features",  # libpq quotes host 'cret@127.0.0.1'
        "postgresql://alice:s3/cret@127.0.0.1:1/features",
    ],
)
def test_no_registry_error_shows_a_password_however_the_url_holds_it(url):
    with pytest.raises(RegistryError, match="cannot connect to the registry") as caught:
        PostgresRegistryStore(url, connect_timeout=2)
    assert "cret" not in str(caught.value)


def _end_sessions(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as con:
        con.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


def test_a_connection_dropped_while_idle_is_reopened_without_failing_a_call(pg, url, caplog):
    pg.apply([("add", "feature_view", "v", {})], "a")
    _end_sessions(url)  # a restart, an idle timeout, a proxy's
    assert pg.generation() == 1  # a read: asked again on a new connection
    _end_sessions(url)
    pg.apply([("change", "feature_view", "v", {"n": 2})], "a")  # a write: nothing was sent yet
    assert pg.versions() == {("feature_view", "v"): 2}
    _end_sessions(url)
    assert pg.export_rows()["objects"]
    inside = threading.Event()

    def build(version: int) -> dict:
        _end_sessions(url)  # dropped in the middle of a write: that one fails, and says so
        inside.set()
        return model_record(version)

    with pytest.raises(RegistryError, match="lost the connection to the registry"):
        pg.add_model_version("m", build)
    assert inside.is_set() and pg.model_versions() == []

    def fail(version: int) -> dict:
        _end_sessions(url)
        raise ValueError("the caller's own error")  # its rollback then fails on a dead connection

    with pytest.raises(ValueError, match="the caller's own error"):
        pg.add_model_version("m", fail)
    assert pg.model_versions() == []
    assert not [r for r in caplog.records if "error ignored in rollback" in r.getMessage()]


def test_a_stuck_writer_makes_other_writers_fail_busy_instead_of_waiting_forever(pg, url):
    inside, release = threading.Event(), threading.Event()

    def build(version: int) -> dict:
        inside.set()  # in the write transaction, holding the registry's write lock
        release.wait(30)
        return model_record(version)

    holder = threading.Thread(target=pg.add_model_version, args=("m", build))
    holder.start()
    other = PostgresRegistryStore(url, busy_timeout=0.5)
    try:
        assert inside.wait(10)
        with pytest.raises(RegistryError, match=r"registry postgresql://postgres@.* is busy"):
            other.apply([("add", "entity", "e", {})], "b")
        assert other.versions() == {}  # reads do not wait
    finally:
        release.set()
        holder.join(30)
    other.apply([("add", "entity", "e", {})], "b")  # the lock is free again
    assert other.versions() == {("entity", "e"): 1}
    other.close()


# -- concurrent writers in two processes ----------------------------------------------------------

WRITES = 40


def _writer(url: str, who: str, start: multiprocessing.synchronize.Barrier) -> None:
    store = PostgresRegistryStore(url)
    store.generation()  # connected: both start writing at the same moment
    start.wait(60)
    for i in range(WRITES):
        store.apply([("add" if i == 0 else "change", "feature_view", who, {"i": i})], who)
        store.add_model_version("shared", model_record)
        store.record_materialization(run("shared", 0, i + 1), True)
    store.close()


def test_concurrent_writers_in_two_processes_serialize_and_lose_nothing(pg, url):
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(2)
    procs = [ctx.Process(target=_writer, args=(url, who, start)) for who in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    assert pg.generation() == 2 * WRITES
    assert pg.versions() == {("feature_view", "a"): WRITES, ("feature_view", "b"): WRITES}
    history = pg.export_rows()["object_history"]
    for who in ("a", "b"):  # every version once, in order
        assert [r[3] for r in history if r[2] == who] == list(range(1, WRITES + 1))
    assert [r["version"] for r in pg.model_versions("shared")] == list(range(1, 2 * WRITES + 1))
    assert pg.models_generation() == 2 * WRITES
    assert len(pg.runs("shared")) == 2 * WRITES and pg.watermark("shared") == T0 + timedelta(hours=WRITES)
    assert [e["action"] for e in pg.audit_log()].count("apply") == 2 * WRITES


APPLY_AT_SIGNAL = """
import sys, time
from pathlib import Path
from featurestore import FeatureStore
store = FeatureStore(sys.argv[1])
store.plan()  # imported, connected and planned: only the apply is left
print("ready", flush=True)
while not Path(sys.argv[2]).exists():
    time.sleep(0.005)
print(store.apply().render(), flush=True)
"""


def test_two_processes_applying_one_repo_at_once_both_land(tmp_path, url):
    """Two processes apply one repo, each changed its own way, at the same moment: each apply is
    whole, both are recorded, and the history numbers every version of the view once."""
    config = pg_config(url)
    first = tmp_path / "first"
    make_driver_repo(first, config)
    FeatureStore(first).apply()
    go = tmp_path / "go"
    procs = []
    for description in ("a", "b"):
        root = tmp_path / description
        make_driver_repo(root, config, description)
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", APPLY_AT_SIGNAL, str(root), str(go)],
                env={**os.environ, "FS_USER": description},
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    go.touch()
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    store = PostgresRegistryStore(url)
    assert store.generation() == len(store.audit_log("apply")) == 3  # the first apply, then both
    history = store.export_rows()["object_history"]
    rows = [
        (version, action, who) for _, kind, _, version, action, _, who, _ in history if kind == "feature_view"
    ]
    assert [version for version, _, _ in rows] == [1, 2, 3] and rows[0] == (1, "add", "tester")
    assert [action for _, action, _ in rows[1:]] == ["change", "change"]
    assert sorted(who for _, _, who in rows[1:]) == ["a", "b"]  # both landed, one after the other
    assert store.specs()[("feature_view", "driver_stats")]["description"] == rows[-1][2]
    store.close()


# -- advisory locks across processes ---------------------------------------------------------------

HOLD_VIEW_LOCK = """
import sys, time
from featurestore import FeatureStore
store = FeatureStore(sys.argv[1])
with store.offline_storage.locked("driver_stats"):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_view_lock_is_held_across_processes_and_a_sigkill_releases_it(tmp_path, url, pg):
    root = tmp_path / "repo"
    make_driver_repo(root, pg_config(url))
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_VIEW_LOCK, str(root)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pg.exclusive_lock("view:driver_stats", wait=False) as held:
            assert held is False
        with pg.exclusive_lock("view:other", wait=False) as held:
            assert held is True  # one lock per view
        got = threading.Event()

        def waiter() -> None:
            with pg.exclusive_lock("view:driver_stats") as held:
                assert held is True
                got.set()

        thread = threading.Thread(target=waiter)
        thread.start()
        assert not got.wait(1.0)  # waits for the holder
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        assert got.wait(15)  # the dead holder's session is gone, and its lock with it
        thread.join(5)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    # no lock file was used for it: the writer lock is the registry's
    assert not list((root / "data").rglob(".lock"))


def test_a_held_lock_outlives_the_servers_idle_session_timeout(url):
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT current_database()")
        name = admin.info.dbname
        admin.execute(f"ALTER DATABASE \"{name}\" SET idle_session_timeout = '1s'")
    store, other = PostgresRegistryStore(url), PostgresRegistryStore(url)
    with store.exclusive_lock("view:trips") as held:
        assert held
        time.sleep(2.5)  # the holder works; its lock's session sits idle
        store.exclusive_lock("view:trips").check()  # a lock not entered: nothing to check
        with other.exclusive_lock("view:trips", wait=False) as also:
            assert not also  # still held
    with other.exclusive_lock("view:trips", wait=False) as also:
        assert also  # released on exit
    store.close(), other.close()


def _end_lock_sessions(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )


def test_a_lost_view_lock_stops_the_commit_and_is_never_left_in_silence(pg, url, tmp_path):
    from featurestore.offline.storage import OfflineStorage

    storage = OfflineStorage(tmp_path, lock=pg.exclusive_lock)
    with pytest.raises(
        RegistryError, match=r"lost the lock 'view:v' in the registry .*nothing more was committed"
    ):
        with storage.locked("v"):
            storage.check_lock("v")  # held: passes
            _end_lock_sessions(url)  # a server restart, an admin, a vanished network
            storage.check_lock("v")  # OfflineStorage.commit asks before each day's swap
    with pytest.raises(RegistryError, match=r"lost the lock 'view:v'.*check what it wrote"):
        with storage.locked("v"):
            _end_lock_sessions(url)
    with storage.locked("v"):  # a lock is taken anew after
        storage.check_lock("v")


def test_a_pipeline_lock_held_elsewhere_refuses_a_second_runner(pg, tmp_path):
    from featurestore.pipelines.lock import ModelLock

    with pg.exclusive_lock("pipeline:eta", wait=False) as held:
        assert held
        lock = ModelLock(tmp_path, "eta", busy=lambda: "run 7 is running", shared=pg.exclusive_lock)
        with pytest.raises(PipelineError, match=r"already running: run 7 is running \(lock pipeline:eta"):
            lock.acquire()
    with ModelLock(tmp_path, "eta", busy=lambda: "?", shared=pg.exclusive_lock):
        with pg.exclusive_lock("pipeline:eta", wait=False) as held:
            assert held is False  # ours now
    assert not (tmp_path / "eta.lock").exists()


# -- a repo on a PostgreSQL registry ---------------------------------------------------------------


def pg_config(url: str, path: bool = False) -> str:
    return (
        f'[registry]\nurl = "{url}"\n'
        + ('path = "data/registry.db"\n' if path else "")
        + '[models]\npath = "shared/models"\n[monitoring]\nlog_path = "shared/predictions"\n'
    )


def make_driver_repo(root: Path, config: str, description: str = "") -> None:
    from tests.models.conftest import DEFINITIONS, stats_rows
    from tests.repo_builder import make_repo

    definitions = DEFINITIONS
    if description:
        definitions = definitions.replace(
            'driver_stats = FeatureView(name="driver_stats",',
            f'driver_stats = FeatureView(name="driver_stats", description="{description}",',
        )
    cfg = '[online]\ntype = "sqlite"\npath = "data/online.db"\n' + config
    make_repo(root, {"features.py": definitions}, {"data/stats.parquet": stats_rows()}, config=cfg)


def online(store: FeatureStore) -> dict:
    rows = [{"driver_id": d} for d in (1, 2, 30, 999)]
    return store.get_online_features("driver_activity", rows).to_dict()


def test_a_repo_on_a_postgresql_registry_applies_materializes_registers_and_serves(tmp_path, url):
    from sklearn.linear_model import LinearRegression

    store = build_store(tmp_path / "repo", config=pg_config(url))
    df, y = training_frame()
    mv = store.models.register("eta", LinearRegression().fit(df, y), feature_service="driver_activity")
    store.models.set_alias("eta", "production", mv.version)
    served = online(store)
    assert served["conv_rate"][0] is not None and served["conv_rate"][3] is None
    assert not (tmp_path / "repo" / "data" / "registry.db").exists()  # nothing in a SQLite file
    assert (tmp_path / "repo" / "shared" / "models").is_dir()
    store.close()

    again = FeatureStore(tmp_path / "repo")  # another process would see the same
    assert again.registry.backend.location == PostgresRegistryStore(url).location
    assert again.registry.watermark("driver_stats") is not None
    assert again.models.aliases("eta") == {"production": 1}
    assert again.models.load("eta@production").predict(df[:3]).shape == (3,)
    assert online(again) == served
    status = CliRunner().invoke(cli, ["--repo", str(tmp_path / "repo"), "status", "--json"])
    assert status.exit_code == 0, status.output
    assert json.loads(status.output)["registry"]["backend"] == "postgresql"
    backup = CliRunner().invoke(
        cli, ["--repo", str(tmp_path / "repo"), "registry", "backup", str(tmp_path / "b.db")]
    )
    assert backup.exit_code == 0 and "Backed up the registry postgresql://" in backup.output
    forced = CliRunner().invoke(  # over the old backup; the unused SQLite path does not exist
        cli, ["--repo", str(tmp_path / "repo"), "registry", "backup", str(tmp_path / "b.db"), "--force"]
    )
    assert forced.exit_code == 0 and "Backed up the registry" in forced.output, forced.output
    copy = SQLiteRegistryStore(tmp_path / "b.db")
    assert reads(copy) == reads(again.registry.backend)
    copy.close()
    again.close()


def test_online_serving_goes_on_with_the_cached_definitions_while_the_registry_is_down(
    tmp_path, url, monkeypatch, caplog
):
    import featurestore.store

    store = build_store(tmp_path / "repo", config=pg_config(url))
    served = online(store)
    name = store.registry.backend.url.rsplit("/", 1)[1]
    monkeypatch.setattr(featurestore.store, "CATALOG_POLL_SECONDS", 0.0)  # poll on every lookup
    monkeypatch.setattr(featurestore.store, "REGISTRY_RETRY_SECONDS", 0.0)  # even after a failed one
    monkeypatch.setattr(featurestore.store, "_registry_warned_at", -1e9)
    maintenance = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(maintenance, autocommit=True) as admin:  # the registry refuses everyone
        admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
    try:
        with caplog.at_level("WARNING", logger="featurestore.store"):
            assert online(store) == served and online(store) == served
        warned = [r for r in caplog.records if "registry cannot be reached" in r.getMessage()]
        assert len(warned) == 1  # rate-limited
        monkeypatch.setattr(featurestore.store, "REGISTRY_RETRY_SECONDS", 60.0)
        assert online(store) == served  # a failed poll: the next one waits a minute
        polls: list[int] = []
        with monkeypatch.context() as patch:
            patch.setattr(store.registry, "generation", lambda: polls.append(1))
            assert online(store) == served and polls == []
        with pytest.raises(RegistryError, match="cannot connect to the registry"):
            store.apply()  # writes still say so
    finally:
        with psycopg.connect(maintenance, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
    assert online(store) == served
    store.close()


def test_fs_status_says_the_url_wins_over_the_path(tmp_path, url):
    root = tmp_path / "repo"
    make_driver_repo(root, pg_config(url, path=True))
    FeatureStore(root).apply()
    shown = CliRunner().invoke(cli, ["--repo", str(root), "status"])
    assert shown.exit_code == 0, shown.output
    assert "Registry: PostgreSQL postgresql://postgres@127.0.0.1" in shown.output
    assert "url wins over path" in shown.output and "registry.db is not used" in shown.output


def test_fs_registry_migrate_copies_a_sqlite_repo_that_then_runs_on_postgresql(tmp_path, url, monkeypatch):
    from sklearn.linear_model import LinearRegression

    root = tmp_path / "repo"
    store = build_store(root)  # on SQLite
    df, y = training_frame()
    store.models.register("eta", LinearRegression().fit(df, y), feature_service="driver_activity")
    store.models.set_alias("eta", "production", 1)
    store.materialize(NOW - timedelta(hours=2), NOW)
    entities = pd.DataFrame({"driver_id": [1, 2], "event_timestamp": [NOW - timedelta(hours=1)] * 2})
    store.get_historical_features(entities, features="driver_activity").save("train")
    before = reads(store.registry.backend)
    served = online(store)
    log_path = store.config.monitor.log_path
    old_sets = store.config.training_sets_path
    store.close()

    runner = CliRunner()
    shared = tmp_path / "shared" / "models"
    secret = url + "?password=s3cret"  # the local server trusts: any password does
    command = ["--repo", str(root), "registry", "migrate", "--to", secret, "--models-path", str(shared)]
    done = runner.invoke(cli, command)
    assert done.exit_code == 0, done.output
    assert "Copied the registry" in done.output and "model_versions 1" in done.output
    assert f'Next: set [registry] url = "{url}"' in done.output  # a URL that works as it is
    assert "~/.pgpass" in done.output and "s3cret" not in done.output
    assert f"Copied {old_sets} to {shared / '__training_sets'}" in done.output
    assert f'Set [models] path = "{shared}"' in done.output
    again = runner.invoke(cli, ["--repo", str(root), "registry", "migrate", "--to", url])
    assert again.exit_code != 0 and "is not empty" in again.output

    monkeypatch.setenv("FS_REGISTRY_URL", url)
    monkeypatch.setenv("FS_MODELS_PATH", str(shared))
    monkeypatch.setenv("FS_MONITORING_LOG_PATH", str(log_path))
    moved = FeatureStore(root)
    assert isinstance(moved.registry.backend, PostgresRegistryStore)
    assert reads(moved.registry.backend) == before
    assert moved.training_sets.entity_rows("train").num_rows == 2  # its files came along
    assert online(moved) == served
    assert moved.plan().is_empty
    assert moved.models.load("eta@production").predict(df[:2]).shape == (2,)
    status = runner.invoke(cli, ["--repo", str(root), "status"])
    assert status.exit_code == 0 and "Registry: PostgreSQL" in status.output
    moved.close()
