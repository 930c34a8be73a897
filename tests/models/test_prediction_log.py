"""The prediction log buffers rows, writes them in the background, keeps them when a write fails."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pyarrow.parquet as pq

from featurestore.models import PredictionLog


def row(i, model="eta", version=1, ts=None, **extra):
    return {
        "request_id": f"r{i}",
        "ts": ts or datetime.now(timezone.utc),
        "model": model,
        "model_version": version,
        "row": 0,
        "driver_id": i,
        "features": {"x": float(i)},
        "missing": [],
        "prediction": i * 2.0,
        **extra,
    }


def test_the_background_thread_writes_the_buffer(tmp_path):
    log = PredictionLog(tmp_path, flush_interval=0.05).start()
    log.append([row(1), row(2)])
    deadline = time.monotonic() + 5
    while log.written < 2:
        assert time.monotonic() < deadline, "the background thread did not write"
        time.sleep(0.02)
    log.append([row(3)])
    log.close()  # writes what is left
    assert [r["driver_id"] for r in log.read("eta").to_pylist()] == [1, 2, 3]
    assert not list(tmp_path.rglob(".*.tmp"))


def test_files_split_by_model_version_and_day(tmp_path):
    log = PredictionLog(tmp_path)
    yesterday = datetime.now(timezone.utc) - timedelta(days=1)
    log.append([row(1), row(2, version=2, extra_input=1.5), row(3, ts=yesterday), row(4, model="other")])
    assert log.flush() == 4
    files = sorted(p.relative_to(tmp_path).parts[:2] for p in tmp_path.rglob("part-*.parquet"))
    today = datetime.now(timezone.utc).date().isoformat()
    assert files == sorted(
        [
            ("eta", f"date={today}"),
            ("eta", f"date={today}"),
            ("eta", f"date={yesterday.date().isoformat()}"),
            ("other", f"date={today}"),
        ]
    )
    table = log.read("eta")
    assert table.num_rows == 3 and "extra_input" in table.column_names  # versions' columns are unioned
    one = pq.read_table(next((tmp_path / "other").rglob("*.parquet")))
    assert str(one.schema.field("ts").type) == "timestamp[us, tz=UTC]"


def test_a_failed_write_keeps_the_rows(tmp_path):
    blocker = tmp_path / "log"
    blocker.write_text("a file where the log folder should be")
    log = PredictionLog(blocker, max_buffered=3)
    log.append([row(1), row(2)])
    try:
        log.flush()
        raise AssertionError("the write should fail")
    except OSError:
        pass
    assert log.pending == 2
    log.append([row(3), row(4)])  # over max_buffered: the oldest row is dropped and counted
    assert (log.pending, log.dropped) == (3, 1)
    blocker.unlink()
    assert log.flush() == 3
    assert [r["driver_id"] for r in log.read().to_pylist()] == [2, 3, 4]
