"""The `fs` command, run as a user runs it: a real subprocess on a real repo."""

import json
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


def test_output_to_a_pipe_is_never_cut_and_plan_shows_durations(tmp_path):
    repo = tmp_path / "starter"
    fs("init", str(repo))
    features = repo / "features.py"
    # a long name: at rich's default 80 columns of a pipe it came out as 'driver_statistics_of_th…'
    long_name = "driver_statistics_of_the_whole_fleet_hourly"
    features.write_text(
        features.read_text().replace(
            'name="driver_stats",\n    entities', f'name="{long_name}",\n    entities'
        )
    )
    fs("--repo", str(repo), "apply")
    fs("--repo", str(repo), "materialize-incremental")
    out = fs("--repo", str(repo), "list", "views").stdout  # stdout is a pipe here
    assert long_name in out and "conv_rate, avg_daily_trips" in out and "…" not in out
    assert "│ 1d " in out  # the ttl as a duration, not "1 day, 0:00:00"
    watermark = json.loads(fs("--repo", str(repo), "list", "views", "--json").stdout)["views"][0]["watermark"]
    assert watermark in out  # the whole ISO timestamp

    features.write_text(
        features.read_text().replace("ttl=timedelta(days=1)", "ttl=timedelta(days=45, minutes=90)")
    )
    out = fs("--repo", str(repo), "plan").stdout
    assert "ttl_seconds: 1d -> 45d1h30m" in out
    plan = json.loads(fs("--repo", str(repo), "plan", "--json").stdout)
    assert plan["counts"] == {"add": 0, "change": 1, "remove": 0, "unchanged": 3}
    assert plan["changes"] == [
        {
            "action": "change",
            "kind": "feature_view",
            "name": long_name,
            "fields": [{"path": "ttl_seconds", "old": 86400.0, "new": 45 * 86400.0 + 5400}],
        }
    ]


def test_list_and_online_features_answer_json(tmp_path):
    repo = tmp_path / "starter"
    fs("init", str(repo))
    fs("--repo", str(repo), "apply")
    fs("--repo", str(repo), "materialize-incremental")
    listed = json.loads(fs("--repo", str(repo), "list", "--json").stdout)
    assert [e["name"] for e in listed["entities"]] == ["driver"]
    assert listed["entities"][0]["join_keys"] == ["driver_id"]
    (view,) = listed["views"]
    assert (view["name"], view["ttl_seconds"]) == ("driver_stats", 86400.0)
    assert view["watermark"] and view["last_materialization"]["online_rows"] == 3
    assert listed["services"][0]["refs"] == ["driver_stats:conv_rate", "driver_stats:avg_daily_trips"]
    assert set(json.loads(fs("--repo", str(repo), "list", "services", "--json").stdout)) == {"services"}

    out = fs(
        "--repo",
        str(repo),
        "online-features",
        "-f",
        "driver_service",
        "-e",
        "driver_id=1001",
        "-e",
        "driver_id=4242",
        "--json",
    ).stdout
    answer = json.loads(out)
    assert [int(k) for k in answer["values"]["driver_id"]] == [1001, 4242]  # keys as given
    assert answer["values"]["conv_rate"][0] is not None and answer["values"]["conv_rate"][1] is None
    assert answer["statuses"]["conv_rate"] == ["PRESENT", "NOT_FOUND"]
    datetime.fromisoformat(answer["event_timestamps"]["conv_rate"][0])


def test_materialize_without_end_runs_up_to_now(tmp_path):
    repo = tmp_path / "starter"
    fs("init", str(repo))
    fs("--repo", str(repo), "apply")
    start = (datetime.now(timezone.utc) - timedelta(days=2)).date().isoformat()
    out = fs("--repo", str(repo), "materialize", start).stdout
    assert "driver_stats: 72 rows offline, 3 entity rows online" in out
    # END is still accepted; a future one is refused with advice that works as written.
    proc = fs("--repo", str(repo), "materialize", start, "2999-01-01", check=False)
    assert proc.returncode == 1 and "in the future" in proc.stderr
    assert "leave END out: `fs materialize START`" in " ".join(proc.stderr.split())  # however wrapped
