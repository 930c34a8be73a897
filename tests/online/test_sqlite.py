"""SQLite-only behaviour: one file shared by processes, newest row kept under concurrent writers."""

from __future__ import annotations

import multiprocessing
import random
from datetime import timedelta

import pytest

from featurestore import FeatureStore, OnlineStoreUnavailable
from tests.online.conftest import NOW, open_store, rows


def _writer(repo: str, stamps: list[int]) -> None:
    store = FeatureStore(repo)
    v = store.catalog.view("driver_stats")
    for ts in stamps:
        store.online_store.write(
            v,
            rows(
                v,
                {"driver_id": [1, 2], "trips": [ts, -ts], "conv_rate": [0.0, 0.0]},
                NOW - timedelta(seconds=1000 - ts),
            ),
        )
    store.close()


def test_processes_writing_one_file_keep_the_newest_row(tmp_path):
    store = open_store(tmp_path, "sqlite")
    store.get_online_features(["driver_stats:trips"], {"driver_id": [1]})  # open the file before forking
    stamps = list(range(300))
    random.Random(3).shuffle(stamps)
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), stamps[i::3])) for i in range(3)]
    for p in procs:
        p.start()
    seen = []
    while any(p.is_alive() for p in procs):  # readers never fail while writers write
        seen.append(store.get_online_features(["driver_stats:trips"], {"driver_id": [1]}).values["trips"][0])
    for p in procs:
        p.join()
        assert p.exitcode == 0
    assert store.get_online_features(["driver_stats:trips"], {"driver_id": [1, 2]}).values["trips"] == [
        299,
        -299,
    ]
    assert all(
        a is None or b >= a for a, b in zip(seen, seen[1:]) if b is not None
    )  # never went back in time
    store.close()


def test_the_file_lives_at_the_configured_path_and_is_in_wal_mode(tmp_path):
    store = open_store(tmp_path, "sqlite")
    assert store.online_store.path == tmp_path / "data" / "online.db"
    mode = store.online_store._con().execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    store.close()


def test_an_unreadable_file_raises_online_store_unavailable(tmp_path):
    store = open_store(tmp_path, "sqlite")
    store.online_store.close()
    store.online_store.path.unlink()
    store.online_store.path.mkdir()  # a folder where the database file should be
    with pytest.raises(OnlineStoreUnavailable, match="SQLite online store"):
        store.get_online_features(["driver_stats:trips"], {"driver_id": [1]})
