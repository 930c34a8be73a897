"""The online watermark belongs to the online store (by the identity marker it holds), not to the repo:
switching to a new store, or one that lost its data, is filled by the next incremental run; `/ready`,
`fs status` and `/metrics` say when the store is new, emptied or behind."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta

import pyarrow as pa
import pytest
import redis
from click.testing import CliRunner
from fastapi.testclient import TestClient

from featurestore import FeatureStore
from featurestore.cli import cli
from featurestore.server import create_app
from tests.repo_builder import make_repo
from tests.test_materialize import DEFS, T0, rows

DRIVERS = [{"driver_id": d} for d in (1, 2, 3)]
END = T0 + timedelta(hours=9)


@pytest.fixture(params=["sqlite", "redis"])
def backend(request):
    return request.param


def online_env(backend, name, request, tmp_path) -> dict[str, str]:
    """Settings of online store `name`: another SQLite file, or another Redis namespace."""
    if backend == "sqlite":
        return {"FS_ONLINE_TYPE": "sqlite", "FS_ONLINE_PATH": str(tmp_path / f"{name}.db")}
    url = request.getfixturevalue("redis_url")
    unique = request.getfixturevalue("key_prefix")  # one per test: its stores are its own
    return {"FS_ONLINE_URL": url, "FS_ONLINE_KEY_PREFIX": f"{unique}-{name}"}


def open_store(path, monkeypatch, env) -> FeatureStore:
    for k in ("FS_ONLINE_TYPE", "FS_ONLINE_PATH", "FS_ONLINE_URL", "FS_ONLINE_KEY_PREFIX"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return FeatureStore(path)


def lookup(store):
    return store.get_online_features(["stats:value", "stats:tag"], DRIVERS).to_dict()


def empty_the_store(store, backend) -> None:
    """The store loses everything (a Redis restart without persistence; a deleted SQLite file)."""
    online = store.online_store
    if backend == "sqlite":
        online.close()
        for f in online.path.parent.glob(online.path.name + "*"):
            f.unlink()
    else:
        client = redis.Redis.from_url(online.url)
        keys = list(client.scan_iter(match=online.key_prefix + b"*"))
        client.delete(*keys)
        client.close()
    del store.__dict__["online_store"]  # reopen


@pytest.fixture
def repo(tmp_path):
    defs = DEFS.format(online="True").replace("ttl=timedelta(days=2)", "ttl=None")
    # Driver 3's last row is hours before the others': a run that only reads from the watermark on
    # misses it, only a fill of the store finds it.
    data = pa.concat_tables([rows(range(10), drivers=(1, 2)), rows(range(6), drivers=(3,))])
    return make_repo(tmp_path / "repo", {"defs.py": defs}, {"data/stats.parquet": data})


def test_an_incremental_run_against_a_new_or_emptied_store_fills_it(
    repo, backend, request, tmp_path, monkeypatch
):
    first = open_store(repo, monkeypatch, online_env(backend, "first", request, tmp_path))
    first.apply()
    assert first.materialize_incremental(END).online_rows == 3
    expected = lookup(first)
    assert expected["value"] == [1009.0, 2009.0, 3005.0]
    assert first.materialize_incremental(END).online_rows == 2  # in step: only the rows at the watermark

    # The README's switch: the same repo, another online store. The offline watermark stays (SPEC §8).
    second = open_store(repo, monkeypatch, online_env(backend, "second", request, tmp_path))
    assert second.registry.watermark("stats") == END
    assert lookup(second)["value"] == [None, None, None]
    result = second.materialize_incremental(END)
    assert result.online_rows == 3 and result.rows == 2, str(result)
    assert lookup(second) == expected
    assert second.registry.watermark("stats") == END
    assert second.materialize_incremental(END).online_rows == 2

    # The second store loses its data: the next run fills it again.
    empty_the_store(second, backend)
    assert lookup(second)["value"] == [None, None, None]
    assert second.materialize_incremental(END).online_rows == 3
    assert lookup(second) == expected

    # The first store was never behind: it stays as it is.
    assert first.materialize_incremental(END).online_rows == 2
    assert lookup(first) == expected


def test_a_range_run_on_a_store_left_behind_leaves_it_behind_until_an_incremental_run(
    repo, request, tmp_path, monkeypatch
):
    first = open_store(repo, monkeypatch, online_env("sqlite", "first", request, tmp_path))
    first.apply()
    first.materialize(T0, END)
    second = open_store(repo, monkeypatch, online_env("sqlite", "second", request, tmp_path))
    second.materialize(END - timedelta(hours=1), END)  # only the last hour reaches the new store
    (view,) = json.loads(CliRunner().invoke(cli, ["--repo", str(repo), "status", "--json"]).output)["views"]
    assert view["online_behind"] is True and view["online_watermark"] is None
    assert second.materialize_incremental(END).online_rows == 3
    assert lookup(second) == lookup(first)


def test_ready_is_503_for_a_new_or_emptied_store_but_not_for_one_merely_behind(
    repo, backend, request, tmp_path, monkeypatch
):
    first = open_store(repo, monkeypatch, online_env(backend, "first", request, tmp_path))
    first.apply()
    with TestClient(create_app(first)) as client:
        assert client.get("/ready").status_code == 200  # nothing materialized yet: nothing is missing
    first.materialize_incremental(END - timedelta(hours=3))

    second = open_store(repo, monkeypatch, online_env(backend, "second", request, tmp_path))
    with TestClient(create_app(second)) as client:
        r = client.get("/ready")
        assert r.status_code == 503, r.text
        assert (
            "holds no featurestore marker" in r.json()["error"]
            and "materialize-incremental" in r.json()["error"]
        )
        metrics = client.get("/metrics").text
        assert 'fs_view_online_behind{view="stats"} 1.0' in metrics
    second.materialize_incremental(END - timedelta(hours=3))
    with TestClient(create_app(second)) as client:
        assert client.get("/ready").status_code == 200
        assert 'fs_view_online_behind{view="stats"} 0.0' in client.get("/metrics").text

    # Behind, not empty: the first store has a marker and older rows; it answers.
    second.materialize_incremental(END)
    with TestClient(create_app(first)) as client:
        assert client.get("/ready").status_code == 200
        metrics = client.get("/metrics").text
        assert 'fs_view_online_behind{view="stats"} 1.0' in metrics
        assert 'fs_view_online_lag_seconds{view="stats"} 10800.0' in metrics

    empty_the_store(second, backend)
    with TestClient(create_app(second)) as client:
        assert client.get("/ready").status_code == 503


def test_fs_status_shows_each_views_watermarks_rows_online_and_when_behind(
    repo, backend, request, tmp_path, monkeypatch
):
    first = open_store(repo, monkeypatch, online_env(backend, "first", request, tmp_path))
    first.apply()

    def status(*extra):
        result = CliRunner().invoke(cli, ["--repo", str(repo), "status", *extra])
        assert result.exit_code == 0, result.output
        return result.output

    (view,) = json.loads(status("--json"))["views"]
    assert view["offline_watermark"] is None and view["online_behind"] is False and view["rows_online"] == 0
    first.materialize_incremental(END)
    (view,) = json.loads(status("--json"))["views"]
    assert view["offline_watermark"] == view["online_watermark"] == END.isoformat()
    assert view["rows_online"] == 3 and view["online_behind"] is False and view["last_run"] is not None
    assert view["staleness_seconds"] > 0
    assert "behind" not in status()

    open_store(repo, monkeypatch, online_env(backend, "second", request, tmp_path))
    (view,) = json.loads(status("--json"))["views"]
    assert view["online_watermark"] is None and view["online_behind"] is True and view["rows_online"] == 0
    text = " ".join(status().split())
    assert "(behind)" in text and "run `fs materialize-incremental` to fill it" in text


def test_an_upgraded_deployment_stays_ready_and_its_first_incremental_run_adopts_the_store(
    repo, request, tmp_path, monkeypatch
):
    """A registry and online store written before online watermarks and markers existed (registry
    schema 2): /ready answers 200 while the store serves; the first incremental run adopts the store
    (marker, online watermark), and from then on a store that loses its data is not ready."""
    env = online_env("sqlite", "main", request, tmp_path)
    old = open_store(repo, monkeypatch, env)
    old.apply()
    old.materialize_incremental(END)
    expected = lookup(old)
    registry_path, online_path = old.config.registry_path, old.online_store.path
    old.registry.close()
    old.online_store.close()
    # As the code before online watermarks left them: no online_watermarks table, no
    # source fingerprints, no statistics, schema version 2; no marker in the online store, its rows there.
    con = sqlite3.connect(registry_path)
    con.executescript(
        "DROP TABLE online_watermarks; ALTER TABLE materializations DROP COLUMN source_fingerprint;"
        "ALTER TABLE materializations DROP COLUMN stats; DROP TABLE monitor_profiles;"
        "DELETE FROM schema_migrations WHERE version >= 3;"
    )
    con.close()
    con = sqlite3.connect(online_path)
    con.executescript("DROP TABLE markers;")
    con.close()

    upgraded = open_store(repo, monkeypatch, env)
    with TestClient(create_app(upgraded)) as client:
        r = client.get("/ready")
        assert r.status_code == 200, r.text
    assert lookup(upgraded) == expected
    assert upgraded.online_store.identity() is None

    # The first incremental run adopts the store: marker written, the store filled and tracked.
    assert upgraded.materialize_incremental(END).online_rows == 3
    assert upgraded.online_store.identity() is not None
    assert upgraded.registry.online_watermarks(upgraded.online_store.identity()) == {"stats": END}
    assert lookup(upgraded) == expected
    with TestClient(create_app(upgraded)) as client:
        assert client.get("/ready").status_code == 200

    # Tracked now: a store that loses its data is not ready until the next run.
    empty_the_store(upgraded, "sqlite")
    with TestClient(create_app(upgraded)) as client:
        r = client.get("/ready")
        assert r.status_code == 503 and "holds no featurestore marker" in r.json()["error"], r.text


def test_a_refilled_store_holds_the_rows_pushed_to_offline_storage(backend, request, tmp_path, monkeypatch):
    # Found walking docs/deploy.md: a store that lost its data was refilled from the source only, so a
    # pushed row newer than the source's read online as the source's older row, unlike offline.
    from tests.test_materialize import PUSH_DEFS

    path = make_repo(tmp_path / "repo", {"defs.py": PUSH_DEFS}, {"data/stats.parquet": rows(range(10))})
    store = open_store(path, monkeypatch, online_env(backend, "only", request, tmp_path))
    store.apply()
    store.materialize_incremental(END)
    late = rows([9], drivers=(2,), created_delay=timedelta(minutes=5), value_offset=0.5).drop_columns(
        ["created"]
    )
    store.push("stats_push", late, to="both")  # newer than the source's hour-9 row of driver 2
    expected = [1009.0, 2009.5, 3009.0]
    assert lookup(store)["value"] == expected

    empty_the_store(store, backend)
    store.materialize_incremental(END)
    assert lookup(store)["value"] == expected
    import pandas as pd

    entity_df = pd.DataFrame({"driver_id": [1, 2, 3], "event_timestamp": [END] * 3})
    offline = store.get_historical_features(entity_df, ["stats:value"]).to_pandas()["value"].tolist()
    assert offline == expected  # online equals offline at the same instant
