"""Object storage (s3:// through s3fs, against moto's S3 server over HTTP): offline storage with a
manifest swap per write, model artifacts, the prediction log; each compared with the same repo on
local disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest

from featurestore import CorruptOfflineFileError, FeatureStore
from featurestore.errors import FeatureStoreError
from featurestore.offline import object_storage
from featurestore.offline.object_storage import ManifestConflictError
from featurestore.offline.sources import arrow_table, duckdb_connection
from featurestore.offline.storage import day_of
from tests.repo_builder import make_repo, write_table
from tests.s3_server import Bucket, S3Server, new_bucket, running_s3_server

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def s3_server():
    with running_s3_server() as server:
        yield server


@pytest.fixture
def s3_bucket(s3_server: S3Server, monkeypatch) -> Bucket:
    return new_bucket(s3_server, monkeypatch)


DEFS = """
from datetime import timedelta
from featurestore import *
driver = Entity(name="driver", join_keys=["driver_id"])
src = ParquetSource(name="stats", path="data/stats.parquet", created_timestamp_field="created")
stats = FeatureView(name="stats", entities=[driver], ttl=timedelta(days=2), online=True,
                    schema=[Field("value", Float64), Field("n", Int64), Field("tag", String)], source=src)
"""


def rows(hours, drivers=(1, 2, 3), value_offset=0.0) -> pa.Table:
    """One row per driver per hour offset from T0."""
    ts = [T0 + timedelta(hours=h) for h in hours for _ in drivers]
    return pa.table(
        {
            "driver_id": pa.array([d for _ in hours for d in drivers], pa.int64()),
            "event_timestamp": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "created": pa.array([t + timedelta(minutes=1) for t in ts], pa.timestamp("us", tz="UTC")),
            "value": pa.array([d * 1000 + h + value_offset for h in hours for d in drivers], pa.float64()),
            "n": pa.array([h for h in hours for _ in drivers], pa.int64()),
            "tag": [f"d{d}h{h}" for h in hours for d in drivers],
        }
    )


def s3_repo(tmp_path, bucket: Bucket, table: pa.Table, name: str = "s3repo") -> FeatureStore:
    config = f"""
    [offline]
    path = "{bucket.url("offline")}"
    {bucket.options_toml}
    """
    path = make_repo(
        tmp_path / name, {"defs.py": DEFS}, {"data/stats.parquet": table}, config=textwrap.dedent(config)
    )
    store = FeatureStore(path)
    store.apply()
    return store


def local_repo(tmp_path, table: pa.Table) -> FeatureStore:
    path = make_repo(tmp_path / "local", {"defs.py": DEFS}, {"data/stats.parquet": table})
    store = FeatureStore(path)
    store.apply()
    return store


def entity_df() -> pa.Table:
    times = [T0 + timedelta(hours=h, minutes=30) for h in range(-2, 60, 5)]
    return pa.table(
        {
            "driver_id": pa.array([1 + i % 4 for i in range(len(times))], pa.int64()),
            "event_timestamp": pa.array(times, pa.timestamp("us", tz="UTC")),
        }
    )


def test_materialize_and_training_set_on_s3_equal_local_disk(tmp_path, s3_bucket):
    table = rows(range(48))
    s3, local = s3_repo(tmp_path, s3_bucket, table), local_repo(tmp_path, table)
    for store in (s3, local):
        store.materialize(T0, T0 + timedelta(hours=47))
    assert s3_bucket.listed("offline/stats/_manifest.json")  # on the server, over HTTP
    days = s3_bucket.listed("offline/stats/date=*/*")
    assert len(days) == 2 and all("/data-" in d for d in days)
    features = ["stats:value", "stats:n", "stats:tag"]
    got = s3.get_historical_features(entity_df(), features).to_arrow()
    want = local.get_historical_features(entity_df(), features).to_arrow()
    assert got.to_pylist() == want.to_pylist()
    keys = [{"driver_id": d} for d in (1, 2, 3, 4)]
    assert (
        s3.get_online_features(features, keys).to_dict()
        == local.get_online_features(features, keys).to_dict()
    )


FEATURES = ["stats:value", "stats:n", "stats:tag"]


def training(store: FeatureStore) -> list[dict]:
    return store.get_historical_features(entity_df(), FEATURES).to_arrow().to_pylist()


def test_each_day_object_holds_the_same_bytes_as_the_local_day_file(tmp_path, s3_bucket):
    table = rows(range(0, 72, 3))
    s3, local = s3_repo(tmp_path, s3_bucket, table), local_repo(tmp_path, table)
    for store in (s3, local):
        store.materialize(T0, T0 + timedelta(hours=71))
    fs = s3_bucket.server.filesystem()  # a client of its own: the objects are on the server
    remote = {day_of(u): fs.cat_file(u) for u in s3.offline_storage.files("stats")}
    on_disk = {day_of(p): p.read_bytes() for p in local.offline_storage.files("stats")}
    assert len(remote) == 3 and remote == on_disk


def test_a_corrupt_object_is_named_by_its_url_and_materializing_its_day_rebuilds_it(tmp_path, s3_bucket):
    table = rows(range(48))
    s3, local = s3_repo(tmp_path, s3_bucket, table), local_repo(tmp_path, table)
    for store in (s3, local):
        store.materialize(T0, T0 + timedelta(hours=47))
    day2 = [u for u in s3.offline_storage.files("stats") if "date=2026-01-02" in str(u)][0]
    s3_bucket.server.filesystem().pipe_file(day2, b"PAR1 not parquet at all")
    with pytest.raises(CorruptOfflineFileError) as caught:
        training(s3)
    assert caught.value.path == day2 and str(day2).startswith("s3://")
    assert str(day2) in str(caught.value) and "fs materialize 2026-01-02 2026-01-02" in str(caught.value)
    s3.materialize(T0 + timedelta(hours=30), T0 + timedelta(hours=31))  # rebuilds all of day 2
    assert training(s3) == training(local)


def test_pushed_rows_on_s3_are_kept_beside_materialized_ones(tmp_path, s3_bucket):
    pushed = rows([50, 51], drivers=(1, 4), value_offset=0.5).drop_columns(["created"])
    results = []
    for store in (s3_repo(tmp_path, s3_bucket, rows(range(24))), local_repo(tmp_path, rows(range(24)))):
        store.materialize(T0, T0 + timedelta(hours=23))
        store.offline_storage.append(store.catalog.view("stats"), _feature_rows(pushed))
        store.materialize(T0, T0 + timedelta(hours=23))  # re-materializing never drops pushed rows
        results.append(training(store))
    assert results[0] == results[1]
    assert 4051.5 in [r["value"] for r in results[0]]  # driver 4's pushed row, read back from S3
    assert s3_bucket.server.filesystem().exists(s3_bucket.url("offline/stats/pushed/_manifest.json"))


def _feature_rows(table: pa.Table) -> pa.Table:
    """Rows in the feature-row shape of offline storage (featurestore.offline.features)."""
    ts = table.column("event_timestamp")
    return pa.table(
        {
            "driver_id": table.column("driver_id"),
            "value": table.column("value"),
            "n": table.column("n"),
            "tag": table.column("tag"),
            "__event_ts": ts,
            "__created_ts": ts,
        }
    )


def _rewrite(store: FeatureStore, hours, offset: float) -> None:
    """Replace every stored row of the days `hours` fall in with rows of values + `offset`."""
    storage, view = store.offline_storage, store.catalog.view("stats")
    con = duckdb_connection()
    con.register("__rows", _feature_rows(rows(hours, value_offset=offset)))
    with storage.locked("stats"):
        staging = storage.stage(con, view, "SELECT * FROM __rows")
        storage.commit(con, view, staging, predicate="TRUE")


def _stored(store: FeatureStore) -> pa.Table:
    storage = store.offline_storage
    con = duckdb_connection()
    storage.attach(con)
    sql = storage.rows_sql(store.catalog.view("stats"))
    return arrow_table(con, sql) if sql else pa.table({})


def test_a_reader_during_rewrites_sees_the_old_days_or_the_new_never_a_mix(tmp_path, s3_bucket):
    store = s3_repo(tmp_path, s3_bucket, rows(range(48)))
    _rewrite(store, range(48), 0)
    seen, errors, done = set(), [], threading.Event()

    def read() -> None:
        reader = FeatureStore(store.repo_path)  # its own storage object and S3 client, as another process
        while not done.is_set():
            try:
                values = _stored(reader).column("value").to_pylist()
                offsets = {v // 100_000 for v in values}
                if len(values) != 144 or len(offsets) != 1:
                    errors.append(f"{len(values)} rows, offsets {sorted(offsets)}")
                seen.update(offsets)
            except Exception as e:  # noqa: BLE001 (any error is a failure of the guarantee)
                errors.append(repr(e))

    thread = threading.Thread(target=read)
    thread.start()
    try:
        for k in range(1, 7):
            _rewrite(store, range(48), k * 100_000)
    finally:
        done.set()
        thread.join()
    assert errors == []
    assert len(seen) >= 2  # the reader did overlap the writes
    assert set(_stored(store).column("value").to_pylist()) == {
        v + 600_000 for v in rows(range(48))["value"].to_pylist()
    }


CRASH = """
import os, sys
from datetime import datetime, timezone
from featurestore import FeatureStore
from featurestore.offline.object_storage import ObjectOfflineStorage
ObjectOfflineStorage._put_manifest = lambda *args: os._exit(3)  # killed after the upload, before the swap
FeatureStore(sys.argv[1]).materialize(datetime(2026, 1, 1, tzinfo=timezone.utc), datetime(2026, 1, 2, 23, tzinfo=timezone.utc))
"""


def test_a_crash_between_upload_and_swap_leaves_the_old_days_and_only_orphans(
    tmp_path, s3_bucket, monkeypatch
):
    table = rows(range(48))
    store = s3_repo(tmp_path, s3_bucket, table)
    store.materialize(T0, T0 + timedelta(hours=47))
    before = training(store)
    old_files = list(store.offline_storage.files("stats"))
    write_table(store.repo_path / "data/stats.parquet", rows(range(48), value_offset=0.5))
    killed = subprocess.run(
        [sys.executable, "-c", CRASH, str(store.repo_path)], capture_output=True, text=True
    )
    assert killed.returncode == 3, killed.stderr

    on_server = s3_bucket.listed("offline/stats/date=*/*.parquet")
    orphans = [f for f in on_server if f not in old_files]
    assert len(orphans) == 2  # uploaded, never named
    assert list(store.offline_storage.files("stats")) == old_files
    write_table(store.repo_path / "data/stats.parquet", table)
    assert training(store) == before  # the old days, whole

    monkeypatch.setattr(object_storage, "GRACE_SECONDS", 0)  # the next write deletes what is past it
    store.materialize(T0, T0 + timedelta(hours=47))
    left = s3_bucket.listed("offline/stats/date=*/*.parquet")
    # the orphans are gone; the files just replaced stay until a later write (a reader may hold them)
    assert set(left) == set(store.offline_storage.files("stats")) | set(old_files)
    assert not set(left) & set(orphans)
    assert training(store) == before


def test_a_second_writer_without_the_lock_is_refused_not_lost(tmp_path, s3_bucket):
    store = s3_repo(tmp_path, s3_bucket, rows(range(24)))
    store.materialize(T0, T0 + timedelta(hours=23))
    storage = store.offline_storage
    stale = storage.manifest("stats", for_write=True)  # a writer read it ...
    _rewrite(store, range(24), 100_000)  # ... another replaced it meanwhile
    with pytest.raises(ManifestConflictError, match="another writer"):
        storage._swap("stats", "", stale, {"2026-01-01": None})
    assert len(_stored(store)) == 72  # the second writer's days stand


def test_model_artifacts_and_training_sets_on_s3_are_saved_loaded_and_checked(
    tmp_path, s3_bucket, monkeypatch
):
    from sklearn.linear_model import LinearRegression

    from featurestore.errors import ModelRegistryError
    from tests.models.conftest import FEATURES as MODEL_FEATURES
    from tests.models.conftest import build_store, training_frame

    monkeypatch.setenv("FS_USER", "tester")
    store = build_store(
        tmp_path / "models",
        config=f'[models]\npath = "{s3_bucket.url("models")}"\n[offline]\n{s3_bucket.options_toml}\n',
    )
    import pandas as pd

    from tests.models.conftest import NOW

    spine = pd.DataFrame(
        {"driver_id": [1, 2, 3], "event_timestamp": [NOW - timedelta(hours=h) for h in (1, 2, 3)]}
    )
    saved = store.get_historical_features(spine, features="driver_activity").save("eta_train")
    record = store.training_sets.get("eta_train")
    assert s3_bucket.listed("models/__training_sets/eta_train/*/*") == [
        s3_bucket.url(f"models/__training_sets/{record.entity_path}"),
        s3_bucket.url(f"models/__training_sets/{record.extra['result_path']}"),
    ]
    other = FeatureStore(store.repo_path).training_sets
    assert other.entity_rows("eta_train").num_rows == 3
    assert other.result("eta_train").to_pylist() == store.training_sets.result("eta_train").to_pylist()
    df, y = training_frame()
    model = LinearRegression().fit(df, y)
    mv = store.models.register("eta", model, feature_service="driver_activity", training_set=saved)
    url = store.models.artifact_path(mv)
    assert isinstance(url, str) and url.startswith(s3_bucket.url("models/eta/"))  # eta/<uuid>/<file>
    assert s3_bucket.listed("models/eta/*/*") == [url]
    assert not (store.config.models_path).exists()  # nothing written locally
    loaded = FeatureStore(store.repo_path).models.load("eta@1")  # another process's view
    assert loaded.predict(df[MODEL_FEATURES]).tolist() == model.predict(df[MODEL_FEATURES]).tolist()

    s3_bucket.server.filesystem().pipe_file(url, b"tampered")
    with pytest.raises(ModelRegistryError, match="modified after registration"):
        FeatureStore(store.repo_path).models.load("eta@1")


def test_prediction_log_feedback_drift_and_performance_on_s3_equal_local_disk(tmp_path, s3_bucket):
    from tests.monitoring.scenario import label_of, served_scenario

    s3_config = f'[monitoring]\nlog_path = "{s3_bucket.url("log")}"\n[offline]\n{s3_bucket.options_toml}\n'
    reports = []
    for name, config in (("s3", s3_config), ("local", "")):
        sc = served_scenario(tmp_path / name, drivers=100, train_rows=600, config=config)
        try:
            sc.serve(300)
            log = sc.log()
            assert log.num_rows == 300
            f = log.column("features").to_pylist()
            y = label_of([x["conv_rate"] for x in f], [x["acc_rate"] for x in f], [x["trips"] for x in f])
            labels = [
                {"request_id": r, "row": i, "label": float(v)}
                for r, i, v in zip(log.column("request_id").to_pylist(), log.column("row").to_pylist(), y)
            ]
            assert sc.store.monitor.log_feedback(labels) == 300
            drift = sc.store.monitor.drift(sc.ref).to_dict()
            perf = sc.store.monitor.performance(sc.ref)
            reports.append((drift["features"], drift["prediction"], perf.n, perf.live))
            if name == "s3":
                assert s3_bucket.listed(f"log/{sc.model}/date=*/part-v1-*.parquet")
                assert s3_bucket.listed("log/.feedback/date=*/part-*.parquet")
                assert not (sc.store.config.monitor.log_path).exists()  # nothing logged locally
                expired = sc.store.monitor.log_path
                from featurestore.monitoring.checks import enforce_retention

                later = datetime.now(timezone.utc) + timedelta(days=400)
                assert enforce_retention(expired, 90, later) == 2  # the model's day and the feedback's
                assert s3_bucket.listed("log/*/date=*/*") == []
        finally:
            sc.close()
    assert reports[0] == reports[1]


def test_locations_on_object_storage_are_read_from_the_config_and_the_environment(tmp_path):
    from featurestore.config import parse_config
    from featurestore.errors import ConfigError

    raw = {
        "project": "p",
        "offline": {
            "path": "s3://bucket/offline",
            "storage_options": {"endpoint_url": "http://a:1", "key": "k"},
        },
        "models": {"path": "s3://bucket/models/"},
        "monitoring": {"log_path": "s3://bucket/log"},
    }
    config = parse_config(raw, tmp_path, {}, "featurestore.toml")
    assert (
        config.offline_url == "s3://bucket/offline" and config.offline_path == tmp_path / "data/offline-work"
    )
    assert config.offline.storage_options == {"endpoint_url": "http://a:1", "key": "k"}
    assert config.models_url == "s3://bucket/models/" and config.models_dir is None
    assert config.training_sets_url == "s3://bucket/models/__training_sets"
    assert config.monitor.log_url == "s3://bucket/log"

    env = {"FS_S3_ENDPOINT_URL": "http://b:2", "FS_OFFLINE_PATH": "s3://other/x"}
    config = parse_config(raw, tmp_path, env, "featurestore.toml")
    assert (
        config.offline_url == "s3://other/x"
        and config.offline.storage_options["endpoint_url"] == "http://b:2"
    )

    local = parse_config({"project": "p"}, tmp_path, {}, "featurestore.toml")
    assert local.offline_url is None and local.offline_path == tmp_path / "data/offline"
    assert local.models_url is None and local.monitor.log_url is None and local.offline.storage_options == {}

    with pytest.raises(ConfigError, match=r"\[offline\] storage_options must be a table"):
        parse_config({"project": "p", "offline": {"storage_options": "http://a"}}, tmp_path, {}, "f.toml")


def test_a_corrupt_object_of_pushed_rows_is_quarantined_on_s3_and_kept(tmp_path, s3_bucket):
    store = s3_repo(tmp_path, s3_bucket, rows(range(24)))
    store.materialize(T0, T0 + timedelta(hours=23))
    view = store.catalog.view("stats")
    store.offline_storage.append(view, _feature_rows(rows([30], drivers=(1, 4), value_offset=0.5)))
    (pushed,) = store.offline_storage.files("stats", "pushed")
    fs = s3_bucket.server.filesystem()
    fs.pipe_file(pushed, b"garbage, not parquet")
    with pytest.raises(CorruptOfflineFileError) as caught:
        training(store)
    error = caught.value
    assert error.path == pushed and "no source can rebuild" in str(error)
    assert error.quarantined_to.startswith(
        s3_bucket.url("offline/__quarantine/stats/pushed/date=2026-01-02/")
    )
    assert fs.cat_file(error.quarantined_to) == b"garbage, not parquet"  # kept whole
    (listed,) = store.offline_storage.quarantined()
    assert (listed.view, listed.area, listed.path, listed.day.isoformat()) == (
        "stats",
        "pushed",
        error.quarantined_to,
        "2026-01-02",
    )
    assert list(store.offline_storage.files("stats", "pushed")) == []
    local = local_repo(tmp_path, rows(range(24)))  # what is left: the materialized rows only
    local.materialize(T0, T0 + timedelta(hours=23))
    assert training(store) == training(local)


def test_pushing_into_a_corrupt_pushed_day_on_s3_quarantines_it_and_keeps_the_new_rows(tmp_path, s3_bucket):
    store = s3_repo(tmp_path, s3_bucket, rows(range(24)))
    view = store.catalog.view("stats")
    store.offline_storage.append(view, _feature_rows(rows([30], drivers=(1,), value_offset=0.5)))
    (damaged,) = store.offline_storage.files("stats", "pushed")
    s3_bucket.server.filesystem().pipe_file(damaged, b"not parquet")
    store.offline_storage.append(view, _feature_rows(rows([31], drivers=(2,), value_offset=0.25)))
    (now,) = store.offline_storage.files("stats", "pushed")
    assert now != damaged
    assert [q.reason != "" for q in store.offline_storage.quarantined()] == [True]
    con = duckdb_connection()
    store.offline_storage.attach(con)
    kept = arrow_table(con, store.offline_storage.rows_sql(view, "pushed")).column("value").to_pylist()
    assert kept == [2031.25]  # the new row; the damaged day's rows are in the quarantine


def test_a_team_setup_two_machines_share_a_postgresql_registry_and_s3(tmp_path, s3_bucket):
    """Two repo checkouts (two machines) with one PostgreSQL registry and everything else on S3:
    concurrent materializations of one view take turns on the registry's advisory lock (no
    manifest conflict), and what one machine writes the other reads."""
    from tests.postgres import temporary_database

    with temporary_database("fs_s3") as url:
        config = f"""
        [registry]
        url = "{url}"
        [offline]
        path = "{s3_bucket.url("offline")}"
        {s3_bucket.options_toml}
        [models]
        path = "{s3_bucket.url("models")}"
        [monitoring]
        log_path = "{s3_bucket.url("log")}"
        """
        table = rows(range(72))
        machines = []
        for name in ("a", "b"):
            path = make_repo(
                tmp_path / name,
                {"defs.py": DEFS},
                {"data/stats.parquet": table},
                config=textwrap.dedent(config),
            )
            machines.append(FeatureStore(path))
        a, b = machines
        a.apply()
        errors: list[BaseException] = []

        def run(store: FeatureStore, hours: int) -> None:
            try:
                store.materialize(T0, T0 + timedelta(hours=hours))
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=run, args=(m, h)) for m, h in ((a, 71), (b, 47), (a, 23), (b, 71))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        local = local_repo(tmp_path, table)
        local.materialize(T0, T0 + timedelta(hours=71))
        assert training(a) == training(b) == training(local)
        try:
            keys = [{"driver_id": d} for d in (1, 2, 3)]
            assert (
                a.get_online_features(FEATURES, keys).to_dict()
                == local.get_online_features(FEATURES, keys).to_dict()
            )
        finally:
            for store in (a, b, local):
                store.close()


def test_the_cli_materializes_to_s3_set_by_the_environment(tmp_path, s3_bucket):
    path = make_repo(tmp_path / "cli", {"defs.py": DEFS}, {"data/stats.parquet": rows(range(24))})
    env = {
        **os.environ,
        "FS_OFFLINE_PATH": s3_bucket.url("from-env"),
        "FS_S3_ENDPOINT_URL": s3_bucket.server.endpoint_url,
    }

    def fs(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "featurestore.cli", "--repo", str(path), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)

    for args in (
        ("apply",),
        ("materialize", "2026-01-01T00:00:00", "2026-01-01T23:00:00"),
        ("status", "--json"),
    ):
        done = fs(*args)
        assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["quarantined"] == []
    assert len(s3_bucket.listed("from-env/stats/date=*/*.parquet")) == 1
    assert not (path / "data" / "offline").exists()  # nothing on local disk


def test_a_day_object_deleted_behind_the_stores_back_is_named_and_rebuilt(tmp_path, s3_bucket):
    table = rows(range(48))
    s3, local = s3_repo(tmp_path, s3_bucket, table), local_repo(tmp_path, table)
    for store in (s3, local):
        store.materialize(T0, T0 + timedelta(hours=47))
    day1 = [u for u in s3.offline_storage.files("stats") if "date=2026-01-01" in str(u)][0]
    s3_bucket.server.filesystem().rm_file(day1)  # a lifecycle rule, say
    with pytest.raises(CorruptOfflineFileError, match="the object is missing") as caught:
        training(s3)
    assert caught.value.path == day1
    s3.materialize(T0 + timedelta(hours=5), T0 + timedelta(hours=5))  # rebuilds all of day 1
    assert training(s3) == training(local)

    view = s3.catalog.view("stats")
    s3.offline_storage.append(view, _feature_rows(rows([30], drivers=(1,), value_offset=0.5)))
    (pushed,) = s3.offline_storage.files("stats", "pushed")
    s3_bucket.server.filesystem().rm_file(pushed)
    with pytest.raises(CorruptOfflineFileError, match="no source can rebuild"):
        training(s3)
    assert list(s3.offline_storage.files("stats", "pushed")) == []  # dropped from the manifest
    assert training(s3) == training(local)


def _pushed_values(store: FeatureStore) -> list[float]:
    con = duckdb_connection()
    store.offline_storage.attach(con)
    sql = store.offline_storage.rows_sql(store.catalog.view("stats"), "pushed")
    return sorted(arrow_table(con, sql).column("value").to_pylist())


def test_a_failed_cleanup_after_the_swap_keeps_the_files_the_new_manifest_names(
    tmp_path, s3_bucket, monkeypatch
):
    from featurestore.locations import ObjectStore

    store = s3_repo(tmp_path, s3_bucket, rows(range(24)))
    view, storage = store.catalog.view("stats"), store.offline_storage
    storage.append(view, _feature_rows(rows([25, 26])))
    real = ObjectStore.glob

    def slow_down(self: ObjectStore, pattern: str) -> list[str]:
        if "data-*.parquet" in pattern:  # the orphan listing, after the manifest PUT
            raise OSError("SlowDown (503) listing the view")
        return real(self, pattern)

    monkeypatch.setattr(ObjectStore, "glob", slow_down)
    storage.append(view, _feature_rows(rows([30], drivers=(1, 4), value_offset=0.5)))  # recorded
    monkeypatch.setattr(ObjectStore, "glob", real)
    assert set(storage.files("stats", "pushed")) <= set(s3_bucket.listed("offline/stats/pushed/date=*/*"))
    assert len(_pushed_values(store)) == 8 and 4030.5 in _pushed_values(store)


def test_a_manifest_put_that_landed_but_answered_an_error_keeps_the_write(tmp_path, s3_bucket, monkeypatch):
    """A PUT whose response is lost is retried by botocore; the retry then fails its own If-Match
    (412): the write did land, so its files must stay (and the write is not a conflict)."""
    import errno

    store = s3_repo(tmp_path, s3_bucket, rows(range(24)))
    view, storage = store.catalog.view("stats"), store.offline_storage
    storage.append(view, _feature_rows(rows([25, 26])))
    fs = storage.objects.fs
    real = fs.pipe_file

    def landed_then_412(path: str, data: bytes, **kwargs: object) -> object:
        real(path, data, **kwargs)
        if "IfMatch" in kwargs or "IfNoneMatch" in kwargs:
            raise OSError(errno.EINVAL, "At least one of the pre-conditions you specified did not hold")
        return None

    monkeypatch.setattr(fs, "pipe_file", landed_then_412)
    storage.append(view, _feature_rows(rows([30], drivers=(1, 4), value_offset=0.5)))
    monkeypatch.setattr(fs, "pipe_file", real)
    assert set(storage.files("stats", "pushed")) <= set(s3_bucket.listed("offline/stats/pushed/date=*/*"))
    assert len(_pushed_values(store)) == 8 and 4030.5 in _pushed_values(store)


def _models_store(tmp_path, bucket: Bucket, monkeypatch):
    from tests.models.conftest import build_store

    monkeypatch.setenv("FS_USER", "tester")
    return build_store(
        tmp_path / "models",
        config=f'[models]\npath = "{bucket.url("models")}"\n[offline]\n{bucket.options_toml}\n',
    )


def _spine(n: int):
    import pandas as pd

    from tests.models.conftest import NOW

    hours = range(1, n + 1)
    return pd.DataFrame(
        {"driver_id": list(hours), "event_timestamp": [NOW - timedelta(hours=h) for h in hours]}
    )


def test_a_failed_training_set_overwrite_on_s3_keeps_the_old_one_whole(tmp_path, s3_bucket, monkeypatch):
    from featurestore.locations import ObjectStore

    store = _models_store(tmp_path, s3_bucket, monkeypatch)
    store.get_historical_features(_spine(3), features="driver_activity").save("eta_train")
    real, calls = ObjectStore.upload, []

    def fails_second(self: ObjectStore, local, url: str) -> None:
        calls.append(url)
        if len(calls) == 2:
            raise OSError("network failure during upload")
        real(self, local, url)

    monkeypatch.setattr(ObjectStore, "upload", fails_second)
    with pytest.raises(Exception, match="network failure|cannot upload"):
        store.get_historical_features(_spine(4), features="driver_activity").save("eta_train", overwrite=True)
    monkeypatch.setattr(ObjectStore, "upload", real)
    other = FeatureStore(store.repo_path).training_sets
    assert other.get("eta_train").rows == 3
    assert other.entity_rows("eta_train").num_rows == 3 and other.result("eta_train").num_rows == 3
    assert len(s3_bucket.listed("models/__training_sets/eta_train/**/*.parquet")) == 2  # no leftovers

    store.get_historical_features(_spine(4), features="driver_activity").save("eta_train", overwrite=True)
    assert other.entity_rows("eta_train").num_rows == 4 and other.result("eta_train").num_rows == 4
    assert len(s3_bucket.listed("models/__training_sets/eta_train/**/*.parquet")) == 2  # the old deleted


def test_uploads_to_s3_run_outside_the_registry_transaction(tmp_path, s3_bucket, monkeypatch):
    """A long upload (a big model) must not hold the SQLite registry's write lock: every other
    writer (a materialization, an alias move) would wait on it and time out."""
    import sqlite3

    from sklearn.linear_model import LinearRegression

    from featurestore.locations import ObjectStore
    from tests.models.conftest import training_frame

    store = _models_store(tmp_path, s3_bucket, monkeypatch)
    real, locked = ObjectStore.upload, []

    def checking(self: ObjectStore, local, url: str) -> None:
        con = sqlite3.connect(store.config.registry_path, timeout=0)
        try:
            con.execute("BEGIN IMMEDIATE")  # another writer, now
            con.rollback()
        except sqlite3.OperationalError as e:
            locked.append(f"{url}: {e}")
        finally:
            con.close()
        real(self, local, url)

    monkeypatch.setattr(ObjectStore, "upload", checking)
    df, y = training_frame()
    saved = store.get_historical_features(_spine(3), features="driver_activity").save("eta_train")
    mv = store.models.register(
        "eta", LinearRegression().fit(df, y), feature_service="driver_activity", training_set=saved
    )
    assert locked == []
    assert mv.version == 1 and FeatureStore(store.repo_path).models.load("eta@1") is not None


SECRET = "SECRETVALUE-must-not-show"


def test_storage_failures_are_clear_errors_naming_the_url_and_settings(tmp_path, s3_bucket, monkeypatch):
    """A bucket that does not exist, an endpoint that does not answer: one clear error (the CLI
    prints it without a traceback) naming the URL and what to check, never a secret."""
    from sklearn.linear_model import LinearRegression

    from featurestore.errors import ObjectStorageError
    from tests.models.conftest import build_store, training_frame

    gone = f"s3://no-such-bucket-{os.urandom(4).hex()}"
    options = f'storage_options = {{endpoint_url = "{s3_bucket.server.endpoint_url}", key = "testing", secret = "{SECRET}"}}'
    path = make_repo(
        tmp_path / "nobucket",
        {"defs.py": DEFS},
        {"data/stats.parquet": rows(range(24))},
        config=f'[offline]\npath = "{gone}/offline"\n{options}\n',
    )
    FeatureStore(path).apply()
    done = subprocess.run(
        [sys.executable, "-m", "featurestore.cli", "--repo", str(path), "materialize", "2026-01-01T00:00:00",
         "2026-01-01T23:00:00"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "FS_USER": "tester"},
    )  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"{gone}/offline/stats/_manifest.json" in done.stderr and "[offline] path" in done.stderr
    assert "bucket does not exist" in done.stderr and SECRET not in done.stderr + done.stdout

    monkeypatch.setenv("FS_USER", "tester")
    models = build_store(
        tmp_path / "models", config=f'[models]\npath = "{gone}/models"\n[offline]\n{s3_bucket.options_toml}\n'
    )
    df, y = training_frame()
    with pytest.raises(ObjectStorageError, match=r"\[models\] path") as caught:
        models.models.register("eta", LinearRegression().fit(df, y), feature_service="driver_activity")
    assert f"{gone}/models/eta/" in str(caught.value)

    from featurestore.locations import ObjectStore

    unreachable = ObjectStore(  # nothing listens on port 9; botocore tries once
        s3_bucket.url("log"),
        {"endpoint_url": "http://127.0.0.1:9", "config_kwargs": {"retries": {"max_attempts": 1}}},
        "[monitoring] log_path",
    )
    with pytest.raises(ObjectStorageError, match=r"\[monitoring\] log_path.*FS_S3_ENDPOINT_URL") as caught:
        unreachable.read_bytes(s3_bucket.url("log/x"))
    assert "Could not connect" in str(caught.value) and SECRET not in str(caught.value)


def _count_requests(fs) -> dict[str, int]:
    """Count the S3 requests an s3fs file system sends from now on (botocore's public event hooks)."""
    counts: dict[str, int] = {}

    def count(event_name: str, **kwargs: object) -> None:
        op = event_name.rsplit(".", 1)[-1]
        counts[op] = counts.get(op, 0) + 1

    fs.s3.meta.events.register("before-call.s3", count)
    return counts


def test_a_training_set_read_on_s3_fetches_each_footer_once_and_heads_no_day_object(tmp_path, s3_bucket):
    store = s3_repo(tmp_path, s3_bucket, rows(range(0, 24 * 10, 6)))
    store.materialize(T0, T0 + timedelta(days=10))
    reader = FeatureStore(store.repo_path)
    fs = reader.offline_storage.objects.fs
    want = training(store)
    files = len(reader.offline_storage.files("stats"))
    assert files == 10
    fs.invalidate_cache()  # a process that never listed the bucket
    counts = _count_requests(fs)
    assert training(reader) == want
    assert counts.get("HeadObject", 0) <= 3, counts  # the days' sizes come from one listing
    assert counts.get("ListObjectsV2", 0) <= 3, counts
    # two manifests, each footer once (a second read of each would add `files`), DuckDB's reads
    assert counts.get("GetObject", 0) < 2 + 5 * files, counts
    again = _count_requests(fs)
    assert training(reader) == want
    assert again.get("HeadObject", 0) + again.get("ListObjectsV2", 0) <= 2, again


def test_monitoring_lists_only_the_windows_days_of_an_s3_log(s3_bucket):
    from featurestore.locations import ObjectStore
    from featurestore.monitoring.log import feedback_files, prediction_files

    fs = s3_bucket.server.filesystem()
    for d in range(30):
        day = (T0 + timedelta(days=d)).date().isoformat()
        for i in range(3):
            fs.pipe_file(s3_bucket.url(f"log/eta/date={day}/part-v1-{d:02d}{i}.parquet"), b"x")
        fs.pipe_file(s3_bucket.url(f"log/.feedback/date={day}/part-{d:02d}.parquet"), b"x")
    fs.pipe_file(s3_bucket.url("log/eta/date=2026-13-45/part-v1-x.parquet"), b"x")  # not a day
    root = ObjectStore(s3_bucket.url("log"), {"endpoint_url": s3_bucket.server.endpoint_url})
    counts = _count_requests(root.fs)
    start = T0 + timedelta(days=29)
    files = prediction_files(root, "eta", 1, start, start + timedelta(hours=23))
    assert files == [s3_bucket.url(f"log/eta/date=2026-01-30/part-v1-29{i}.parquet") for i in range(3)]
    assert counts == {"ListObjectsV2": 2}  # the folder names, then the one day's
    assert len(feedback_files(root, T0 + timedelta(days=27))) == 3  # from its start on
    assert len(prediction_files(root, "eta")) == 90 and prediction_files(root, "nobody") == []


@pytest.mark.parametrize(
    "days",
    [
        {"yesterday": "date=2026-01-01/data-1.parquet"},  # not a day
        {"2026-01-01": "date=2026-01-02/data-1.parquet"},  # another day's file
        {"2026-01-01": "../other/date=2026-01-01/data-1.parquet"},  # another view's file
        {"2026-01-01": 5},
    ],
)
def test_a_manifest_of_another_shape_is_refused_as_unreadable(tmp_path, s3_bucket, days):
    store = s3_repo(tmp_path, s3_bucket, rows(range(24)))
    body = json.dumps({"format": 1, "days": days, "retired": []}).encode()
    s3_bucket.server.filesystem().pipe_file(s3_bucket.url("offline/stats/_manifest.json"), body)
    for call in (lambda: store.materialize(T0, T0 + timedelta(hours=23)), lambda: training(store)):
        with pytest.raises(
            FeatureStoreError, match=r"the manifest s3://.*/stats/_manifest.json cannot be read"
        ):
            call()


def test_a_409_conditional_request_conflict_on_the_manifest_is_a_conflict(tmp_path, s3_bucket, monkeypatch):
    """S3 answers 409 ConditionalRequestConflict to a conditional PUT racing another on the same key
    (s3fs: an OSError whose cause is botocore's ClientError): the same refusal as a 412."""
    import errno

    from botocore.exceptions import ClientError

    store = s3_repo(tmp_path, s3_bucket, rows(range(24)))
    store.materialize(T0, T0 + timedelta(hours=23))
    fs = store.offline_storage.objects.fs
    real = fs.pipe_file

    def racing(path: str, data: bytes, **kwargs: object) -> object:
        if "IfMatch" not in kwargs:
            return real(path, data, **kwargs)
        response = {
            "Error": {
                "Code": "ConditionalRequestConflict",
                "Message": "A conflicting operation is in progress",
            },
            "ResponseMetadata": {"HTTPStatusCode": 409},
        }
        error = OSError(errno.EIO, "A conflicting operation is in progress")
        error.__cause__ = ClientError(response, "PutObject")
        raise error

    monkeypatch.setattr(fs, "pipe_file", racing)
    with pytest.raises(ManifestConflictError, match="another writer"):
        _rewrite(store, range(24), 100_000)
    monkeypatch.setattr(fs, "pipe_file", real)
    assert len(_stored(store)) == 72 and s3_bucket.listed("offline/stats/date=*/*") == [
        str(f) for f in store.offline_storage.files("stats")
    ]  # the refused write's new file deleted


def test_a_prediction_log_given_an_s3_url_writes_there_and_bad_options_show_no_secret(
    tmp_path, s3_bucket, monkeypatch
):
    from featurestore.config import parse_config
    from featurestore.errors import ConfigError
    from featurestore.locations import ObjectStore
    from featurestore.models import PredictionLog

    monkeypatch.setenv("FS_S3_ENDPOINT_URL", s3_bucket.server.endpoint_url)
    log = PredictionLog(s3_bucket.url("log"))
    assert isinstance(log.root, ObjectStore) and log.root.root == s3_bucket.url("log")
    assert PredictionLog(str(tmp_path / "log")).root == tmp_path / "log"  # a local folder stays one

    for raw in ("key=AKIAEXAMPLE secret=wJalrXUtnFEMI", [{"secret": "wJalrXUtnFEMI"}]):
        with pytest.raises(ConfigError, match="storage_options must be a table") as caught:
            parse_config({"project": "p", "offline": {"storage_options": raw}}, tmp_path, {}, "f.toml")
        assert "wJalrXUtnFEMI" not in str(caught.value) and type(raw).__name__ in str(caught.value)


@pytest.mark.parametrize(
    "raw",
    [
        {"offline": {"path": "s3://"}},
        {"models": {"path": "s3:///models"}},
        {"monitoring": {"log_path": "s3://"}},
    ],
)
def test_an_s3_url_without_a_bucket_is_a_config_error(tmp_path, raw):
    from featurestore.config import parse_config
    from featurestore.errors import ConfigError

    with pytest.raises(ConfigError, match="names no bucket"):
        parse_config({"project": "p", **raw}, tmp_path, {}, "featurestore.toml")
