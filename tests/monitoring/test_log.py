"""Reading the prediction log for monitoring: days and versions pruned by path, windows, durations."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import duckdb
import pytest

from featurestore import MonitoringError
from featurestore.models.prediction_log import PredictionLog
from featurestore.monitoring import window
from featurestore.monitoring.log import parse_since, prediction_files, prediction_relation

DAY1 = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)


def rows(version: int, when: datetime, n: int = 3) -> list[dict]:
    return [
        {
            "request_id": f"r{version}-{when:%d}",
            "ts": when,
            "model": "eta",
            "model_version": version,
            "row": i,
            "driver_id": i,
            "features": {"conv_rate": 0.1 * i},
            "missing": [],
            "prediction": float(i),
        }
        for i in range(n)
    ]


@pytest.fixture
def log_root(tmp_path):
    log = PredictionLog(tmp_path / "log")
    for version, when in [(1, DAY1), (2, DAY1), (2, DAY1 + timedelta(days=1)), (2, DAY1 + timedelta(days=2))]:
        log.append(rows(version, when))
        log.flush()
    return tmp_path / "log"


def test_files_are_pruned_by_day_and_version_from_their_paths(log_root):
    assert len(prediction_files(log_root, "eta")) == 4
    assert len(prediction_files(log_root, "eta", version=2)) == 3
    day2 = DAY1 + timedelta(days=1)
    only_day2 = prediction_files(log_root, "eta", version=2, start=day2, end=day2 + timedelta(hours=1))
    assert len(only_day2) == 1 and "date=2026-03-02" in only_day2[0]
    assert prediction_files(log_root, "other") == []


def test_the_relation_holds_the_version_and_window_only(log_root):
    con = duckdb.connect()
    assert prediction_relation(con, log_root, "eta", 2, start=DAY1, end=DAY1 + timedelta(days=1)) == 2
    assert con.execute(
        "SELECT count(*), min(model_version), max(model_version) FROM __fs_log"
    ).fetchone() == (6, 2, 2)
    assert con.execute("SELECT sum(features.conv_rate) FROM __fs_log").fetchone()[0] == pytest.approx(0.6)
    assert prediction_relation(con, log_root, "eta", 9, start=DAY1) == 0  # no file of version 9


def test_windows_and_durations_are_checked():
    w = window("2026-03-01", "2026-03-02T00:00:00Z")
    assert w.start == datetime(2026, 3, 1, tzinfo=timezone.utc) and w.end == datetime(
        2026, 3, 2, tzinfo=timezone.utc
    )
    assert window(None, None).start is None
    with pytest.raises(MonitoringError, match="is after end"):
        window("2026-03-02", "2026-03-01")
    with pytest.raises(MonitoringError, match="not an ISO date"):
        window("yesterday", None)
    assert parse_since("7d") == timedelta(days=7) and parse_since("12h") == timedelta(hours=12)
    assert parse_since("30m") == timedelta(minutes=30) and parse_since("2") == timedelta(days=2)
    with pytest.raises(ValueError, match="not a duration"):
        parse_since("a week")
