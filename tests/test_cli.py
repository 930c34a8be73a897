"""The `fs` command, run as a user runs it: a real subprocess on a real repo."""

import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq


def fs(*args, cwd=None, check=True):
    proc = subprocess.run(
        [sys.executable, "-m", "featurestore.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"fs {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_help_is_fast_and_lists_the_commands():
    began = time.perf_counter()
    out = fs("--help").stdout
    assert time.perf_counter() - began < 3  # the interpreter included; import alone is ~0.2 s
    for command in (
        "init",
        "plan",
        "apply",
        "list",
        "materialize",
        "materialize-incremental",
        "training-set",
        "online-features",
        "push",
        "serve",
    ):
        assert command in out


def test_init_plan_apply_materialize_training_set_and_lookup(tmp_path):
    repo = tmp_path / "starter"
    fs("init", str(repo))
    assert "+ feature view driver_stats" in fs("--repo", str(repo), "plan").stdout
    assert "Applied." in fs("--repo", str(repo), "apply").stdout
    assert "No changes" in fs("--repo", str(repo), "plan").stdout
    out = fs("--repo", str(repo), "materialize-incremental").stdout
    assert "driver_stats: 72 rows offline, 3 entity rows online" in out
    assert "driver_stats" in fs("--repo", str(repo), "list").stdout

    now = datetime.now(timezone.utc)
    entities = pa.table(
        {
            "driver_id": [1001, 1002, 4242],
            "event_timestamp": pa.array([now, now - timedelta(hours=3), now], pa.timestamp("us", tz="UTC")),
            "label": [1, 0, 1],
        }
    )
    pacsv.write_csv(entities, tmp_path / "entities.csv")
    out = fs(
        "--repo",
        str(repo),
        "training-set",
        "--entities",
        str(tmp_path / "entities.csv"),
        "--features",
        "driver_service",
        "--out",
        str(tmp_path / "train.parquet"),
    ).stdout
    assert "Wrote 3 rows" in out
    train = pq.read_table(tmp_path / "train.parquet").to_pylist()
    assert [r["label"] for r in train] == [1, 0, 1]
    assert train[0]["conv_rate"] is not None and train[2]["conv_rate"] is None  # unknown driver: null

    out = fs(
        "--repo",
        str(repo),
        "online-features",
        "-f",
        "driver_stats:conv_rate,driver_stats:avg_daily_trips",
        "-e",
        "driver_id=1001",
        "-e",
        "driver_id=4242",
    ).stdout
    assert "1001" in out and "NOT_FOUND" in out


def test_errors_are_one_clear_line_without_a_traceback(tmp_path):
    repo = tmp_path / "starter"
    fs("init", str(repo))
    fs("--repo", str(repo), "apply")
    proc = fs(
        "--repo",
        str(repo),
        "online-features",
        "-f",
        "driver_stats:conv_rat",
        "-e",
        "driver_id=1",
        check=False,
    )
    assert proc.returncode == 1
    assert "did you mean 'conv_rate'" in proc.stderr and "Traceback" not in proc.stderr
    proc = fs("--repo", str(repo), "materialize", "2026-01-01", "2999-01-01", check=False)
    assert proc.returncode == 1 and "in the future" in proc.stderr
    proc = fs("--repo", str(tmp_path / "nowhere"), "plan", check=False)
    assert proc.returncode == 1 and "fs init" in proc.stderr
    proc = fs("init", str(repo), check=False)
    assert proc.returncode == 1 and "not empty" in proc.stderr
