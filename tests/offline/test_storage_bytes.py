"""Offline storage writes the same bytes for the same rows: a re-run, a run split differently, a run
over a source in another order, a run killed half-way and re-run."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.parquet as pq

from featurestore import FeatureStore
from tests.repo_builder import make_repo, write_table
from tests.test_materialize import KILLER

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
DEFS = """
from datetime import timedelta
from featurestore import *
driver = Entity(name="driver", join_keys=["driver_id"])
src = ParquetSource(name="stats", path="data/stats.parquet", created_timestamp_field="created")
stats = FeatureView(name="stats", entities=[driver], ttl=None, online={online},
                    schema=[Field("value", Float64), Field("n", Int64), Field("tag", String)], source=src)
"""


def source_rows(hours: int, drivers: int, seed: int | None = None, with_nulls: bool = True) -> pa.Table:
    """One row per driver per hour from T0, plus exact duplicates and ties on (event, key, created) that
    differ only in their features (a sort on event time and key alone leaves their order to chance)."""
    out: dict[str, list] = {
        "driver_id": [],
        "event_timestamp": [],
        "created": [],
        "value": [],
        "n": [],
        "tag": [],
    }

    def add(d: int, ts: datetime, value: float | None, n: int | None, tag: str | None) -> None:
        out["driver_id"].append(d)
        out["event_timestamp"].append(ts)
        out["created"].append(ts + timedelta(minutes=1))
        out["value"].append(value)
        out["n"].append(n)
        out["tag"].append(tag)

    for h in range(hours):
        ts = T0 + timedelta(hours=h)
        for d in range(drivers):
            add(d, ts, d * 1000.0 + h, h, f"d{d}h{h}")
            if d % 7 == 0:  # a tie that differs in its features
                add(d, ts, -1.0, h, None if with_nulls else "x")
            if d % 11 == 0:  # an exact duplicate
                add(d, ts, d * 1000.0 + h, h, f"d{d}h{h}")
    table = pa.table(
        {
            "driver_id": pa.array(out["driver_id"], pa.int64()),
            "event_timestamp": pa.array(out["event_timestamp"], pa.timestamp("us", tz="UTC")),
            "created": pa.array(out["created"], pa.timestamp("us", tz="UTC")),
            "value": pa.array(out["value"], pa.float64()),
            "n": pa.array(out["n"], pa.int64()),
            "tag": pa.array(out["tag"], pa.string()),
        }
    )
    if seed is not None:
        order = list(range(table.num_rows))
        random.Random(seed).shuffle(order)
        table = table.take(order)
    return table


def new_store(tmp_path, name: str, table: pa.Table, online: str = "False") -> FeatureStore:
    path = make_repo(tmp_path / name, {"defs.py": DEFS.format(online=online)}, {"data/stats.parquet": table})
    store = FeatureStore(path)
    store.apply()
    return store


def file_bytes(store: FeatureStore) -> dict[str, str]:
    """sha256 of each stored day file, by its path under the view's folder."""
    root = store.offline_storage.view_dir("stats")
    return {
        str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in store.offline_storage.files("stats")
    }


def test_rerunning_a_range_writes_the_same_bytes(tmp_path):
    # 2.5 days, ~60k rows a day: enough rows for DuckDB to sort and write with several threads.
    store = new_store(tmp_path, "repo", source_rows(60, 2_500))
    end = T0 + timedelta(hours=59)
    store.materialize(T0, end)
    first = file_bytes(store)
    assert len(first) == 3
    for _ in range(2):
        store.materialize(T0, end)
        assert file_bytes(store) == first
    # Re-running part of the range rewrites the days it touches from stored and new rows alike.
    store.materialize(T0 + timedelta(hours=10), T0 + timedelta(hours=30))
    assert file_bytes(store) == first


def test_the_same_rows_give_the_same_bytes_however_they_were_materialized(tmp_path):
    end = T0 + timedelta(hours=59)
    one_run = new_store(tmp_path, "one_run", source_rows(60, 300))
    one_run.materialize(T0, end)
    # The same rows in another order, materialized in pieces that split days.
    pieces = new_store(tmp_path, "pieces", source_rows(60, 300, seed=7))
    for a, b in [(0, 13), (14, 40), (41, 59)]:
        pieces.materialize(T0 + timedelta(hours=a), T0 + timedelta(hours=b))
    assert file_bytes(pieces) == file_bytes(one_run)
    # Every column is written the same way (nullable), whether or not this day holds a null.
    no_nulls = new_store(tmp_path, "no_nulls", source_rows(60, 300, with_nulls=False))
    no_nulls.materialize(T0, end)
    for f in no_nulls.offline_storage.files("stats"):
        schema = pq.ParquetFile(f).schema
        assert all(schema.column(i).max_definition_level == 1 for i in range(len(schema)))


def test_a_run_killed_half_way_and_rerun_writes_the_bytes_of_a_clean_run(tmp_path):
    online_defs = DEFS.format(online="True")
    table = source_rows(120, 3)

    def store_for(name: str, data: pa.Table) -> FeatureStore:
        path = make_repo(tmp_path / name, {"defs.py": online_defs}, {"data/stats.parquet": data})
        store = FeatureStore(path)
        store.apply()
        return store

    clean = store_for("clean", table)
    clean.materialize("2026-01-01", "2026-01-04T23:00:00")
    other = source_rows(120, 3, seed=3)
    victim = store_for("victim", other.set_column(3, "value", pa.array([0.5] * other.num_rows)))
    victim.materialize("2026-01-01", "2026-01-04T23:00:00")  # other contents, to be replaced
    write_table(victim.repo_path / "data/stats.parquet", table)
    script = tmp_path / "killer.py"
    script.write_text(textwrap.dedent(KILLER))
    proc = subprocess.run(
        [sys.executable, str(script), str(victim.repo_path), "2"],  # killed after 2 of 4 days were replaced
        capture_output=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert proc.returncode == -9, proc.stderr.decode()
    assert file_bytes(victim) != file_bytes(clean)
    victim.materialize("2026-01-01", "2026-01-04T23:00:00")
    assert file_bytes(victim) == file_bytes(clean)
