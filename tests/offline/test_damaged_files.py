"""A damaged day file of offline storage (truncated, garbage bytes, a foreign schema) is named by a clear
error; materializing that day rebuilds it from the source without reading it; a damaged day of pushed
rows, which no source can rebuild, is moved to the quarantine, reported, and never deleted."""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore import CorruptOfflineFileError, FeatureStore
from featurestore.offline.storage import PUSHED
from tests.repo_builder import make_repo

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
DRIVERS = range(1, 41)
DEFS = """
from featurestore import *
driver = Entity(name="driver", join_keys=["driver_id"])
batch = ParquetSource(name="stats", path="data/stats.parquet", created_timestamp_field="created")
pushed = PushSource(name="stats_push", batch_source=batch)
stats = FeatureView(name="stats", entities=[driver], ttl=None, online=False,
                    schema=[Field("driver_id", Int64), Field("value", Float64), Field("tag", String)], source=batch)
fresh = FeatureView(name="fresh", entities=[driver], ttl=None, online=False,
                    schema=[Field("driver_id", Int64), Field("value", Float64), Field("tag", String)], source=pushed)
"""


def rows(hours, drivers=DRIVERS, offset: float = 0.0) -> pa.Table:
    data: dict[str, list] = {"driver_id": [], "event_timestamp": [], "created": [], "value": [], "tag": []}
    for h in hours:
        for d in drivers:
            ts = T0 + timedelta(hours=h)
            data["driver_id"].append(d)
            data["event_timestamp"].append(ts)
            data["created"].append(ts + timedelta(minutes=1))
            data["value"].append(d * 1000 + h + offset + random.Random(d * h).random())
            data["tag"].append(f"driver {d} at hour {h}")
    return pa.table(
        {
            "driver_id": pa.array(data["driver_id"], pa.int64()),
            "event_timestamp": pa.array(data["event_timestamp"], pa.timestamp("us", tz="UTC")),
            "created": pa.array(data["created"], pa.timestamp("us", tz="UTC")),
            "value": pa.array(data["value"], pa.float64()),
            "tag": data["tag"],
        }
    )


def new_store(tmp_path: Path, name: str = "repo") -> FeatureStore:
    path = make_repo(tmp_path / name, {"defs.py": DEFS}, {"data/stats.parquet": rows(range(72))})
    store = FeatureStore(path)
    store.apply()
    return store


def entity_df(hours) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "driver_id": [d for _ in hours for d in DRIVERS],
            "event_timestamp": [T0 + timedelta(hours=h, minutes=30) for h in hours for _ in DRIVERS],
        }
    )


def training(store: FeatureStore, view: str = "stats", hours=range(72)) -> list:
    return (
        store.get_historical_features(entity_df(hours), [f"{view}:value", f"{view}:tag"])
        .to_pandas()
        .values.tolist()
    )


def digests(store: FeatureStore) -> dict[str, str]:
    root = store.offline_storage.view_dir("stats")
    return {
        str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in store.offline_storage.files("stats")
    }


def damage(path: Path, how: str) -> None:
    """Damage a stored day file as a full disk, a bad copy or a stray file would."""
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "garbage":  # the data pages, behind a footer that still reads fine
        pages_end = len(data) - 8 - int.from_bytes(data[-8:-4], "little")  # where the footer starts
        noise = random.Random(1).randbytes(pages_end - 4)
        path.write_bytes(data[:4] + noise + data[pages_end:])
        pq.read_schema(path)  # the footer is sound ...
        with pytest.raises((OSError, pa.ArrowException)):
            pq.read_table(path)  # ... the pages are not
    elif how == "foreign schema":  # a valid Parquet file, of something else
        pq.write_table(pa.table({"user": [1, 2], "score": [0.5, 0.7]}), path)
    elif how == "wrong key type":  # the view's columns, but its integer key written as strings
        table = pq.read_table(path)
        pq.write_table(table.set_column(0, "driver_id", table.column("driver_id").cast(pa.string())), path)
    else:
        raise AssertionError(how)


DAMAGES = ["truncated", "empty", "garbage", "foreign schema", "wrong key type"]


@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_materialized_day_is_named_and_materializing_any_part_of_it_rebuilds_it(tmp_path, how):
    clean = new_store(tmp_path, "clean")
    clean.materialize(T0, T0 + timedelta(hours=71))
    store = new_store(tmp_path)
    store.materialize(T0, T0 + timedelta(hours=71))
    day2 = store.offline_storage.view_dir("stats") / "date=2026-01-02" / "data.parquet"
    damage(day2, how)

    with pytest.raises(CorruptOfflineFileError) as caught:
        training(store)
    message = str(caught.value)
    assert str(day2) in message and "feature view 'stats'" in message
    assert "fs materialize 2026-01-02 2026-01-02" in message
    assert caught.value.path == str(day2) and caught.value.day == "2026-01-02"
    assert caught.value.quarantined_to is None and day2.exists()  # left for the rebuild

    # Two hours of that day: the whole day is rebuilt from the source, without reading the damaged file.
    store.materialize(T0 + timedelta(hours=30), T0 + timedelta(hours=31))
    assert training(store) == training(clean)
    assert digests(store) == digests(clean)
    assert store.offline_storage.quarantined() == []


def test_a_range_that_does_not_touch_the_damaged_day_leaves_it_and_the_error_stays(tmp_path):
    store = new_store(tmp_path)
    store.materialize(T0, T0 + timedelta(hours=71))
    day2 = store.offline_storage.view_dir("stats") / "date=2026-01-02" / "data.parquet"
    damage(day2, "truncated")
    store.materialize(T0 + timedelta(hours=50), T0 + timedelta(hours=60))  # day 3 only: fine
    with pytest.raises(CorruptOfflineFileError, match="date=2026-01-02"):
        training(store)


@pytest.mark.parametrize("how", ["truncated", "garbage", "wrong key type"])
def test_a_damaged_day_of_pushed_rows_is_quarantined_reported_and_kept(tmp_path, how):
    store = new_store(tmp_path)
    early = rows([5, 6], drivers=(1, 2), offset=0.25).drop_columns(["created"])
    later = rows([30], drivers=(1, 2), offset=0.25).drop_columns(["created"])
    store.push("stats_push", early, to="offline")
    store.push("stats_push", later, to="offline")
    with_pushed = training(store, "fresh")
    pushed_day = store.offline_storage.view_dir("fresh", PUSHED) / "date=2026-01-01" / "data.parquet"
    original = pushed_day.read_bytes()
    damage(pushed_day, how)
    damaged_bytes = pushed_day.read_bytes()

    with pytest.raises(CorruptOfflineFileError) as caught:
        training(store, "fresh")
    error = caught.value
    assert str(pushed_day) in str(error) and "no source can rebuild" in str(error)
    assert error.quarantined_to is not None and error.quarantined_to in str(error)
    assert not pushed_day.exists()
    moved = Path(error.quarantined_to)
    assert moved.read_bytes() == damaged_bytes  # moved whole, never deleted or rewritten
    assert moved.is_relative_to(store.offline_storage.root / "__quarantine" / "fresh")
    (listed,) = store.offline_storage.quarantined()
    assert (listed.view, listed.area, listed.path) == ("fresh", PUSHED, moved)
    assert listed.day.isoformat() == "2026-01-01" and listed.reason
    assert store.offline_storage.quarantined("stats") == []
    # `fs status` shows it, in text and JSON.
    shown = fs("--repo", str(store.repo_path), "status")
    assert shown.returncode == 0, shown.stderr
    assert f"Quarantined: {moved}" in shown.stdout and "view 'fresh' for 2026-01-01" in shown.stdout
    as_json = json.loads(fs("--repo", str(store.repo_path), "status", "--json").stdout)
    assert as_json["quarantined"] == [
        {"view": "fresh", "area": "pushed", "day": "2026-01-01", "path": str(moved), "reason": listed.reason}
    ]

    # The next training set builds, without the quarantined rows only (the other day's pushes stay).
    without = training(store, "fresh")
    assert without != with_pushed
    assert without[len(DRIVERS) * 30 :] == with_pushed[len(DRIVERS) * 30 :]
    # Repairing the file and moving it back restores them.
    moved.write_bytes(original)
    moved.rename(pushed_day)
    assert training(store, "fresh") == with_pushed


def test_a_push_into_a_damaged_pushed_day_quarantines_it_and_keeps_the_new_rows(tmp_path):
    store = new_store(tmp_path)
    store.push("stats_push", rows([5], drivers=(1,)).drop_columns(["created"]), to="offline")
    pushed_day = store.offline_storage.view_dir("fresh", PUSHED) / "date=2026-01-01" / "data.parquet"
    damage(pushed_day, "truncated")
    store.push("stats_push", rows([7], drivers=(2,), offset=0.5).drop_columns(["created"]), to="offline")
    (listed,) = store.offline_storage.quarantined("fresh")
    assert listed.path.stat().st_size > 0 and "magic bytes" in listed.reason.lower()
    stored = pq.read_table(pushed_day).to_pylist()
    assert [(r["driver_id"], r["__event_ts"]) for r in stored] == [(2, T0 + timedelta(hours=7))]


def fs(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "featurestore.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_the_cli_names_the_file_and_fs_materialize_of_that_day_repairs_it(tmp_path):
    store = new_store(tmp_path)
    repo = str(store.repo_path)
    assert fs("--repo", repo, "materialize", "2026-01-01", "2026-01-03T23:00:00").returncode == 0
    day2 = store.offline_storage.view_dir("stats") / "date=2026-01-02" / "data.parquet"
    damage(day2, "truncated")
    entities = tmp_path / "entities.parquet"
    entity_df(range(72)).to_parquet(entities)
    args = ["--repo", repo, "training-set", "--entities", str(entities), "--features", "stats:value"]
    failed = fs(*args, "--out", str(tmp_path / "train.parquet"))
    assert failed.returncode == 1
    assert "Traceback" not in failed.stderr and "ArrowInvalid" not in failed.stderr
    assert str(day2) in failed.stderr and "fs materialize 2026-01-02 2026-01-02" in failed.stderr

    repaired = fs("--repo", repo, "materialize", "2026-01-02", "2026-01-02")
    assert repaired.returncode == 0, repaired.stderr
    ok = fs(*args, "--out", str(tmp_path / "train.parquet"))
    assert ok.returncode == 0, ok.stderr
    values = pq.read_table(tmp_path / "train.parquet").column("value").to_pylist()
    assert values == [r[2] for r in training(new_store(tmp_path, "fresh_clone"))]


# A view whose key type is not declared: the source's type (Int64) is the one its stored files must hold.
LOOSE_DEFS = """
from featurestore import *
driver = Entity(name="driver", join_keys=["driver_id"])
batch = ParquetSource(name="stats", path="data/stats.parquet", created_timestamp_field="created")
pushed = PushSource(name="stats_push", batch_source=batch)
stats = FeatureView(name="stats", entities=[driver], ttl=None, online=False,
                    schema=[Field("value", Float64), Field("tag", String)], source=batch)
fresh = FeatureView(name="fresh", entities=[driver], ttl=None, online=False,
                    schema=[Field("value", Float64), Field("tag", String)], source=pushed)
"""


def loose_store(tmp_path: Path, name: str = "loose") -> FeatureStore:
    path = make_repo(tmp_path / name, {"defs.py": LOOSE_DEFS}, {"data/stats.parquet": rows(range(72))})
    store = FeatureStore(path)
    store.apply()
    return store


def string_keys(path: Path) -> None:
    """What the old push bug left behind: the whole day file rewritten with its integer keys as strings."""
    table = pq.read_table(path)
    index = table.schema.get_field_index("driver_id")
    pq.write_table(table.set_column(index, "driver_id", table.column("driver_id").cast(pa.string())), path)


def test_a_pushed_day_with_keys_of_another_type_than_the_sources_is_quarantined_and_pushes_work(tmp_path):
    store = loose_store(tmp_path)
    store.push(
        "stats_push", rows([5, 6], drivers=(1, 2), offset=0.25).drop_columns(["created"]), to="offline"
    )
    store.push("stats_push", rows([30], drivers=(1, 2), offset=0.25).drop_columns(["created"]), to="offline")
    with_pushed = training(store, "fresh")
    pushed_day = store.offline_storage.view_dir("fresh", PUSHED) / "date=2026-01-01" / "data.parquet"
    string_keys(pushed_day)

    with pytest.raises(CorruptOfflineFileError) as caught:
        training(store, "fresh")
    assert str(pushed_day) in str(caught.value) and "'driver_id' is string" in str(caught.value)
    (listed,) = store.offline_storage.quarantined("fresh")
    assert listed.path == Path(caught.value.quarantined_to or "") and "Int64" in listed.reason
    shown = fs("--repo", str(store.repo_path), "status")
    assert f"Quarantined: {listed.path}" in shown.stdout, shown.stdout + shown.stderr
    # Training sets build without the quarantined rows (entity_df's integer keys are fine) ...
    without = training(store, "fresh")
    assert without != with_pushed and without[len(DRIVERS) * 30 :] == with_pushed[len(DRIVERS) * 30 :]
    # ... and integer keys can be pushed again, into that day too: the rows come back.
    store.push(
        "stats_push", rows([5, 6], drivers=(1, 2), offset=0.25).drop_columns(["created"]), to="offline"
    )
    assert training(store, "fresh") == with_pushed
    assert pa.types.is_integer(pq.read_schema(pushed_day).field("driver_id").type)


def test_a_push_next_to_a_pushed_day_with_keys_of_another_type_is_not_refused(tmp_path):
    store = loose_store(tmp_path)
    store.push("stats_push", rows([5], drivers=(1,)).drop_columns(["created"]), to="offline")
    string_keys(store.offline_storage.view_dir("fresh", PUSHED) / "date=2026-01-01" / "data.parquet")
    store.push("stats_push", rows([30], drivers=(2,)).drop_columns(["created"]), to="offline")  # another day
    store.push("stats_push", rows([7], drivers=(3,)).drop_columns(["created"]), to="offline")  # that day
    (listed,) = store.offline_storage.quarantined("fresh")
    assert listed.day.isoformat() == "2026-01-01"
    assert len(store.offline_storage.files("fresh", PUSHED)) == 2


def test_a_materialized_day_with_keys_of_another_type_than_the_sources_is_rebuilt(tmp_path):
    clean = loose_store(tmp_path, "clean")
    clean.materialize(T0, T0 + timedelta(hours=71))
    store = loose_store(tmp_path)
    store.materialize(T0, T0 + timedelta(hours=71))
    day2 = store.offline_storage.view_dir("stats") / "date=2026-01-02" / "data.parquet"
    string_keys(day2)
    with pytest.raises(CorruptOfflineFileError) as caught:
        training(store)
    assert str(day2) in str(caught.value) and "fs materialize 2026-01-02 2026-01-02" in str(caught.value)
    store.materialize(T0 + timedelta(hours=30), T0 + timedelta(hours=30))
    assert training(store) == training(clean)
    assert store.offline_storage.quarantined() == []
