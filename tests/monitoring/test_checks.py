"""`fs monitor check`: freshness, drift and performance of every aliased model at once (exit 0 / 1 /
2 and the JSON of every breach), and the retention of the prediction and feedback logs."""

from __future__ import annotations

import json
import shutil
import time
import zlib
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest
from click.testing import CliRunner

from featurestore import FeatureStore
from featurestore.cli import cli
from featurestore.errors import MonitoringError
from featurestore.models.prediction_log import PredictionLog
from featurestore.monitoring.checks import enforce_retention
from featurestore.monitoring.log import FEEDBACK_FOLDER
from tests.monitoring.scenario import served_scenario
from tests.monitoring.test_performance import true_labels
from tests.repo_builder import make_repo


def fs_check(root, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--repo", str(root), "monitor", "check", *args], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture
def sc(tmp_path):
    scenario = served_scenario(tmp_path)
    yield scenario
    scenario.close()


def test_a_healthy_model_passes(sc):
    sc.serve(1000)
    sc.store.monitor.log_feedback(true_labels(sc.log()))
    code, out = fs_check(sc.root, "--json")
    assert code == 0, out
    result = json.loads(out)
    assert result["ok"] is True and result["status"] == "ok" and result["breaches"] == []
    assert result["drift"]["trip_eta@production"]["status"] == "ok"
    assert set(result["drift"]["trip_eta@production"]["features"]) == {"conv_rate", "acc_rate", "trips"}
    assert result["performance"]["trip_eta@production"]["status"] == "ok"
    assert result["performance"]["trip_eta@production"]["n"] == 1000
    assert [v["status"] for v in result["freshness"]["views"]] == ["ok"]
    code, text = fs_check(sc.root)
    assert code == 0
    assert "drift: trip_eta@production (v1): ok" in text and "ok: no breach" in text


def test_a_shifted_feature_is_a_drift_breach(sc):
    sc.serve(500)
    sc.shift("conv_rate", 0.3)  # three standard deviations
    sc.serve(1500, seed=1)
    code, out = fs_check(sc.root, "--json", "--since", "1h")
    assert code == 1, out
    result = json.loads(out)
    assert result["ok"] is False and result["status"] == "breach"
    [breach] = result["breaches"]
    assert breach["check"] == "drift" and breach["target"] == "trip_eta@production (v1)"
    assert "conv_rate" in breach["detail"] and "acc_rate" not in breach["detail"]
    drift = result["drift"]["trip_eta@production"]
    drifted = [c for c in (*drift["features"].values(), drift["prediction"]) if c["status"] == "drift"]
    assert breach["value"] == max(c["psi"] for c in drifted)  # conv_rate's, or the prediction's
    assert result["drift"]["trip_eta@production"]["features"]["acc_rate"]["status"] == "ok"
    # no labels fed back: performance is insufficient, not a breach
    assert result["performance"]["trip_eta@production"]["status"] == "insufficient"
    code, text = fs_check(sc.root)
    assert code == 1 and "BREACH drift trip_eta@production (v1): drifted from the training set: " in text
    assert "conv_rate (psi " in text


def test_wrong_labels_are_a_performance_breach_and_aliases_of_one_version_are_checked_once(sc):
    sc.serve(300)
    sc.store.monitor.log_feedback(true_labels(sc.log(), offset=1.0))
    sc.store.models.set_alias("trip_eta", "staging", sc.version)
    result = sc.store.monitor.check(since=timedelta(hours=1))
    assert not result.ok
    assert [(b.check, b.target) for b in result.breaches] == [
        ("performance", "trip_eta@production, staging (v1)")
    ]
    assert result.breaches[0].value == pytest.approx(result.performance["trip_eta@staging"].live)
    assert result.performance["trip_eta@production"] is result.performance["trip_eta@staging"]
    assert result.drift["trip_eta@production"] is result.drift["trip_eta@staging"]


def test_a_version_without_training_set_is_noted_not_a_breach(sc):
    model = sc.store.models.load(sc.ref)
    mv = sc.store.models.register("bare", model, feature_service="eta_features")  # no training set, no metric
    sc.store.models.set_alias("bare", "production", mv.version)
    sc.serve(200)
    result = sc.store.monitor.check()
    assert result.ok, result.breaches
    assert "bare@production" not in result.drift and "trip_eta@production" in result.drift
    assert any(
        n.startswith("bare@production (v1): drift not checked: the version has no training set")
        for n in result.notes
    )
    assert result.performance["bare@production"].status == "not_configured"
    code, text = fs_check(sc.root)
    assert code == 0 and "note: bare@production (v1): drift not checked" in text


FRESH_DEFINITIONS = """
from datetime import timedelta
from featurestore import Entity, FeatureView, Field, Float64, Int64, ParquetSource

driver = Entity(name="driver", join_keys=["driver_id"])
source = ParquetSource(name="src", path="data/src.parquet", timestamp_field="event_timestamp")
hourly = FeatureView(name="hourly", entities=[driver], ttl=timedelta(days=1), source=source,
                     freshness=timedelta(hours=1), schema=[Field("driver_id", Int64), Field("rate", Float64)])
daily = FeatureView(name="daily", entities=[driver], ttl=timedelta(days=1), source=source,
                    freshness=timedelta(days=1), schema=[Field("driver_id", Int64), Field("rate", Float64)])
"""


@pytest.fixture
def stale_store(tmp_path):
    """A repo without models whose views' newest event is 3 hours old: `hourly` breaches, `daily` not."""
    now = datetime.now(timezone.utc)
    rows = pa.table(
        {
            "driver_id": pa.array([1, 2], pa.int64()),
            "rate": [0.5, 0.6],
            "event_timestamp": pa.array([now - timedelta(hours=3)] * 2, pa.timestamp("us", tz="UTC")),
        }
    )
    make_repo(
        tmp_path,
        {"features.py": FRESH_DEFINITIONS},
        {"data/src.parquet": rows},
        config='[online]\ntype = "sqlite"\npath = "data/online.db"\n[monitoring]\nretention_days = 30\n',
    )
    store = FeatureStore(tmp_path)
    store.apply()
    store.materialize(now - timedelta(days=1), now)
    yield store
    store.close()


def test_a_stale_view_is_a_freshness_breach(stale_store):
    code, out = fs_check(stale_store.repo_path, "--json")
    assert code == 1, out
    result = json.loads(out)
    [breach] = result["breaches"]
    assert (breach["check"], breach["target"]) == ("freshness", "hourly")
    assert breach["value"] == pytest.approx(3 * 3600, abs=120)
    assert "over its freshness of 1h" in breach["detail"]
    assert result["drift"] == {} and result["performance"] == {}
    code, text = fs_check(stale_store.repo_path)
    assert code == 1 and "BREACH freshness hourly: newest online event" in text
    assert stale_store.monitor.check(now=datetime.now(timezone.utc) - timedelta(hours=2, minutes=30)).ok


def log_day(monitor, day: datetime) -> None:
    """One real prediction-log file and one feedback file in the day folders of `day`."""
    log = PredictionLog(monitor.log_path)
    row = {
        "request_id": f"r-{day.date()}",
        "ts": day,
        "model": "m",
        "model_version": 1,
        "row": 0,
        "prediction": 1.0,
    }
    log.append([row])
    log.flush()
    monitor.log_feedback([{"request_id": row["request_id"], "row": 0, "label": 1.0}])
    today = monitor.log_path / FEEDBACK_FOLDER / f"date={datetime.now(timezone.utc).date()}"
    folder = monitor.log_path / FEEDBACK_FOLDER / f"date={day.date()}"
    if folder != today:  # the writer files labels by the day they arrive: move them to `day`
        folder.mkdir(parents=True, exist_ok=True)
        for f in today.glob("*.parquet"):
            shutil.move(f, folder / f.name)
        today.rmdir()


def test_retention_deletes_old_log_days_and_keeps_recent_ones(stale_store):
    monitor = stale_store.monitor
    now = datetime.now(timezone.utc).replace(hour=12)
    days = {n: now - timedelta(days=n) for n in (45, 31, 30, 0)}  # retention_days = 30
    for day in days.values():
        log_day(monitor, day)
    folders = lambda: sorted(  # noqa: E731
        str(p.relative_to(monitor.log_path)) for p in monitor.log_path.glob("*/date=*")
    )
    before = folders()
    assert len(before) == 8
    result = monitor.check(now=now)
    deleted = {f"{top}/date={days[n].date()}" for n in (45, 31) for top in ("m", FEEDBACK_FOLDER)}
    assert result.deleted_log_days == 4
    assert folders() == sorted(set(before) - deleted)
    assert enforce_retention(monitor.log_path, 30, now) == 0  # nothing more to delete
    code, text = fs_check(stale_store.repo_path)
    assert "retention: deleted 0 log day folder(s)" in text


def test_bad_input_and_errors_exit_2(stale_store, tmp_path):
    code, out = fs_check(stale_store.repo_path, "--since", "soon")
    assert code == 2 and "--since" in out
    make_repo(tmp_path / "bad", {"features.py": FRESH_DEFINITIONS}, config='[monitoring]\nmetric = "auc"\n')
    code, out = fs_check(tmp_path / "bad")
    assert code == 2 and "featurestore.toml [monitoring]: metric 'auc' is not a scorer name" in out


# -- retention touches only the log's own files --------------------------------------------------------

OLD = "date=2020-01-01"  # far older than any retention


def old_day(folder, *names: str):
    """`folder/date=2020-01-01/` holding files `names` (written, not real Parquet: retention never reads)."""
    day = folder / OLD
    day.mkdir(parents=True, exist_ok=True)
    for name in names:
        (day / name).write_bytes(b"x")
    return day


def part(tag: str, version: int | None = 1) -> str:
    """A file name as the log writers give it (version None: the feedback log's, or an older log's)."""
    h = zlib.crc32(tag.encode())
    stamp = f"20200101T000000{h % 10**6:06d}-{h:08x}"
    return f"part-v{version}-{stamp}.parquet" if version is not None else f"part-{stamp}.parquet"


def test_retention_deletes_only_the_logs_files_and_never_follows_links(tmp_path):
    root = tmp_path / "data"  # log_path pointed at a folder holding other data too
    model_day = old_day(root / "trip_eta", part("a"), f".{part('b')}.tmp", part("old", None))
    feedback_day = old_day(root / FEEDBACK_FOLDER, part("c", None))
    spark = "part-00000-8f1c2a4e-4f0e-4c5e-9d1f-0123456789ab.c000.snappy.parquet"
    shared_day = old_day(root / "events", "important.parquet", spark, part("d"))
    foreign = old_day(root / "not a model", part("e"))  # not a model name: not the log's
    hidden = old_day(root / ".cache", part("f"))
    outside = old_day(tmp_path / "elsewhere", part("g"))
    (root / "linked_model").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (root / "trip_eta" / "date=2020-01-02").symlink_to(outside, target_is_directory=True)
    link_file = old_day(root / "other_model", part("h"))
    (link_file / part("i")).symlink_to(outside / part("g"))

    deleted = enforce_retention(root, 30, datetime.now(timezone.utc))

    assert not model_day.exists() and not feedback_day.exists()  # emptied and removed
    # a data set's own part files (Spark, Hive) are not the log's: only the log's part went
    assert sorted(p.name for p in shared_day.iterdir()) == sorted(["important.parquet", spark])
    assert sorted(p.name for p in foreign.iterdir()) == [part("e")]
    assert sorted(p.name for p in hidden.iterdir()) == [part("f")]
    assert sorted(p.name for p in outside.iterdir()) == [part("g")]  # through neither link
    assert (root / "trip_eta" / "date=2020-01-02").is_symlink()
    assert sorted(p.name for p in link_file.iterdir()) == [part("i")]  # the link kept, its part gone
    assert deleted == 4  # trip_eta, .feedback, events, other_model
    assert enforce_retention(root, 30, datetime.now(timezone.utc)) == 0


def test_a_file_retention_cannot_delete_is_an_error_naming_it(stale_store, monkeypatch):
    monitor = stale_store.monitor
    day = old_day(monitor.log_path / "m", part("a"))
    real_unlink = type(day).unlink

    def refuse(self, missing_ok=False):  # root deletes anything: refuse as a read-only disk would
        if self.name == part("a"):
            raise PermissionError(13, "Permission denied", str(self))
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(type(day), "unlink", refuse)
    with pytest.raises(
        MonitoringError, match=r"log retention: cannot delete .*m/date=2020-01-01/part-v1-2020"
    ):
        enforce_retention(monitor.log_path, 30, datetime.now(timezone.utc))
    result = monitor.check()  # the other checks ran; retention's failure is an error of the result
    assert [e.target for e in result.errors] == ["log retention"]
    assert result.breaches and result.freshness.views  # `hourly` is stale in this store
    code, out = fs_check(stale_store.repo_path, "--json")
    assert code == 1  # a breach wins over an error
    assert json.loads(out)["errors"][0]["message"].startswith("log retention: cannot delete ")


# -- a check that fails is an error of the result, and the other checks still run ---------------------


def garbage(folder, name: str = ""):
    """A damaged file under a log writer's name (the feedback log's by default)."""
    name = name or part("zzz", None)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(b"garbage")
    return folder / name


def test_an_unreadable_feedback_file_is_an_error_and_ages_out(sc):
    sc.serve(300)
    sc.store.monitor.log_feedback(true_labels(sc.log()))
    today = datetime.now(timezone.utc).date()
    bad = garbage(sc.store.monitor.log_path / FEEDBACK_FOLDER / f"date={today}")
    result = sc.store.monitor.check()
    assert result.ok and [e.target for e in result.errors] == ["trip_eta@production (v1)"]
    message = result.errors[0].message
    assert message.startswith("performance: cannot read the prediction or feedback log of model trip_eta")
    assert str(bad) in message and "move the damaged file out of the log folder" in message
    assert result.drift["trip_eta@production"].status == "ok"  # drift still checked
    assert "trip_eta@production" not in result.performance
    code, out = fs_check(sc.root, "--json")
    assert code == 2, out
    assert json.loads(out)["errors"] == [e.to_dict() for e in result.errors]
    assert json.loads(out)["status"] == "error"  # what exit code 2 says, for a script reading the JSON
    code, text = fs_check(sc.root)
    assert code == 2 and "ERROR trip_eta@production (v1): performance: cannot read" in text
    assert "1 error(s)" in text

    # an old damaged day: read by a long window, then deleted by retention like any expired day
    bad.unlink()
    retention = sc.store.config.monitor.retention_days
    old = datetime.now(timezone.utc) - timedelta(days=retention + 10)
    old_bad = garbage(sc.store.monitor.log_path / FEEDBACK_FOLDER / f"date={old.date()}")
    result = sc.store.monitor.check(since=timedelta(days=retention + 20))
    assert [e.target for e in result.errors] == ["trip_eta@production (v1)"]
    assert str(old_bad) in result.errors[0].message
    assert result.deleted_log_days == 1 and not old_bad.exists()
    result = sc.store.monitor.check(since=timedelta(days=retention + 20))
    assert result.errors == [] and result.performance["trip_eta@production"].status == "ok"


# -- arguments ---------------------------------------------------------------------------------------


def test_a_naive_now_is_utc_whatever_the_local_time_zone(stale_store, monkeypatch):
    aware = datetime.now(timezone.utc) - timedelta(hours=2, minutes=30)  # `hourly` not yet stale then
    naive = aware.replace(tzinfo=None)
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        result = stale_store.monitor.check(now=naive)
        assert result.now == aware
        assert result.ok, result.breaches
        assert stale_store.monitor.check(now=naive + timedelta(hours=2)).breaches  # 4.5 h old: stale
        assert stale_store.monitor.check(now=aware.isoformat()).now == aware  # an ISO string too
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"since": 5}, r"since must be a timedelta \(e\.g\. timedelta\(days=1\)\), got 5"),
        ({"since": "1d"}, r"since must be a timedelta .*got '1d'"),
        ({"since": timedelta(days=10**6)}, r"since 1000000 days, 0:00:00 reaches back before the year 1"),
        ({"now": 5}, r"now must be a datetime or an ISO string, got 5"),
        ({"now": "soon"}, r"now 'soon' is not an ISO date or datetime"),
    ],
)
def test_bad_arguments_are_monitoring_errors(stale_store, kwargs, match):
    with pytest.raises(MonitoringError, match=match):
        stale_store.monitor.check(**kwargs)


def test_freshness_takes_an_iso_string_and_refuses_other_types(stale_store):
    now = datetime.now(timezone.utc).replace(microsecond=0)
    assert stale_store.monitor.freshness(now.isoformat()).now == now
    with pytest.raises(MonitoringError, match=r"now 'tomorrow' is not an ISO date or datetime"):
        stale_store.monitor.freshness("tomorrow")
    with pytest.raises(MonitoringError, match=r"now must be a datetime or an ISO string, got \[1\]"):
        stale_store.monitor.freshness([1])


def test_an_unreadable_prediction_log_file_is_an_error_of_drift_and_performance(sc):
    sc.serve(300)
    today = datetime.now(timezone.utc).date()
    bad = garbage(sc.store.monitor.log_path / sc.model / f"date={today}", part("zzz"))
    result = sc.store.monitor.check()
    assert result.ok and result.drift == {} and result.performance == {}
    assert [(e.target, e.message.split(":")[0]) for e in result.errors] == [
        ("trip_eta@production (v1)", "drift"),
        ("trip_eta@production (v1)", "performance"),
    ]
    assert all(str(bad) in e.message for e in result.errors)
    assert [v.status for v in result.freshness.views] == ["ok"]  # freshness still checked
    code, out = fs_check(sc.root, "--json")
    assert code == 2 and len(json.loads(out)["errors"]) == 2
