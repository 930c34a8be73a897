"""`fs monitor check`: freshness, drift and performance of every aliased model at once (exit 0 / 1 /
2 and the JSON of every breach), and the retention of the prediction and feedback logs."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest
from click.testing import CliRunner

from featurestore import FeatureStore
from featurestore.cli import cli
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
    assert result["ok"] is True and result["breaches"] == []
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
    assert result["ok"] is False
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
