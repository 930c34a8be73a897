"""POST /push/{source}: rows land online (visible to the next lookup), bad batches are refused whole,
and every push is in the audit trail with who pushed how many rows."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from featurestore.online.lookup import get_online_features
from tests.server.conftest import KEYS, build_repo, serve, serve_redis_repo
from tests.test_push import undeclared_store

pytestmark = pytest.mark.redis

LATER = (datetime.now(timezone.utc) + timedelta(seconds=30)).isoformat()


def row(driver_id: int, **overrides):
    base = {
        "driver_id": driver_id,
        "conv_rate": 0.5,
        "trips": 3,
        "city": "paris",
        "photo": base64.b64encode(b"\x00\x01").decode(),
        "recent": [1, 2],
        "last_trip": "2026-01-02T03:04:05Z",
        "active": True,
        "event_timestamp": LATER,
    }
    return {**base, **overrides}


@pytest.fixture(scope="module")
def keyed(tmp_path_factory, redis_server):
    with serve_redis_repo(
        tmp_path_factory.mktemp("push-repo"), redis_server, api_keys=True, max_batch_rows=50
    ) as server:
        yield server


def writer(server):
    return server.client(headers={"Authorization": f"Bearer {KEYS['writer'][1]}"})


def test_pushed_rows_are_served_by_the_next_lookup(keyed):
    store = keyed.app.state.fs.store
    with writer(keyed) as client:
        r = client.post("/push/driver_push", json={"rows": [row(101), row(102, conv_rate="NaN", city=None)]})
        assert r.status_code == 200, r.text
        assert r.json() == {"source": "driver_push", "to": "online", "rows": 2}
        columns = {k: [row(103)[k]] for k in row(103)}
        r = client.post("/push/driver_push", json={"rows": columns, "to": "online"})
        assert r.json()["rows"] == 1
        got = client.post(
            "/features/online",
            json={
                "features": [
                    "driver_stats:conv_rate",
                    "driver_stats:city",
                    "driver_stats:photo",
                    "driver_stats:recent",
                    "driver_stats:last_trip",
                ],
                "entities": {"driver_id": [101, 102, 103]},
            },
        ).json()["values"]
    assert got["conv_rate"] == [0.5, "NaN", 0.5]
    assert got["city"] == ["paris", None, "paris"]
    assert got["photo"] == [base64.b64encode(b"\x00\x01").decode()] * 3
    assert got["recent"] == [[1, 2]] * 3
    assert got["last_trip"] == ["2026-01-02T03:04:05Z"] * 3
    direct = get_online_features(store, ["driver_stats:photo"], [{"driver_id": 101}]).to_dict()
    assert direct["photo"] == [b"\x00\x01"]  # base64 was decoded to bytes before storing


def test_every_push_is_audited_with_the_key_name_and_row_count(keyed):
    store = keyed.app.state.fs.store
    with writer(keyed) as client:
        client.post("/push/driver_push", json={"rows": [row(201), row(202), row(203)]})
        client.post("/push/driver_push", json={"rows": [row(204, trips=1.5)]})
    with keyed.client(headers={"X-API-Key": KEYS["boss"][1]}) as client:
        r = client.get("/admin/audit", params={"action": "push", "limit": 2})
    assert r.status_code == 200, r.text
    refused, accepted = r.json()["entries"]
    assert accepted["actor"] == "writer" and accepted["target"] == "driver_push"
    assert accepted["detail"] == {"to": "online", "rows": 3, "result": "ok"}
    assert refused["actor"] == "writer" and refused["detail"]["result"].startswith("refused")
    assert "trips" in refused["detail"]["result"]
    # the audit read is itself recorded
    assert store.registry.audit_log("read_audit", limit=1)[0]["actor"] == "boss"
    assert KEYS["writer"][1] not in str(store.registry.audit_log(limit=100))  # names, never keys


@pytest.mark.parametrize(
    "body, status, words",
    [
        ({"rows": [row(1, trips=2.5)]}, 422, ["trips", "row 0"]),
        ({"rows": [row(1), row(2, photo="%%%")]}, 422, ["photo", "row 1", "base64"]),
        ({"rows": [row(1, event_timestamp="yesterday")]}, 422, ["event_timestamp"]),
        ({"rows": [row(1, event_timestamp=None)]}, 422, ["event_timestamp"]),
        (
            {"rows": [row(1, event_timestamp="2999-01-01T00:00:00Z")]},
            422,
            ["event_timestamp", "row 0", "future"],
        ),
        ({"rows": [{k: v for k, v in row(1).items() if k != "trips"}]}, 422, ["trips", "missing"]),
        ({"rows": [{**row(1), "driver_id": None}]}, 422, ["driver_id", "null"]),
        ({"rows": [row(1, city={"a": 1})]}, 422, ["body.rows.0.city"]),
        ({"rows": [row(1)], "to": "elsewhere"}, 422, ["body.to"]),
        ({"rows": {"driver_id": [1, 2], "trips": [1]}}, 422, ["same length"]),
        ({"rows": [row(i) for i in range(51)]}, 413, ["51", "50"]),
        ({}, 422, ["body.rows"]),
    ],
)
def test_bad_batches_are_refused_whole(keyed, body, status, words):
    store = keyed.app.state.fs.store
    with writer(keyed) as client:
        r = client.post("/push/driver_push", json=body)
    assert r.status_code == status, r.text
    for word in words:
        assert word in r.json()["error"]
    # nothing partial: driver 2 (second row of the base64 case) was not written
    assert get_online_features(store, ["driver_stats:city"], [{"driver_id": 2}]).to_dict()["city"] == [
        "city-2"
    ]


def test_unknown_and_non_push_sources(keyed):
    with writer(keyed) as client:
        r = client.post("/push/driver_pushh", json={"rows": [row(1)]})
        assert r.status_code == 404 and "did you mean 'driver_push'" in r.json()["error"]


def test_push_to_offline_and_both(tmp_path):
    store = build_repo(tmp_path, "sqlite")
    with serve(store) as server, server.client() as client:
        r = client.post(
            "/push/route_push",
            json={
                "to": "both",
                "rows": [{"origin": "x", "destination": "y", "duration": 9.0, "event_timestamp": LATER}],
            },
        )
        assert r.status_code == 200, r.text
        r = client.post(
            "/push/route_push",
            json={
                "to": "offline",
                "rows": [{"origin": "x", "destination": "z", "duration": 1.0, "event_timestamp": LATER}],
            },
        )
        assert r.status_code == 200, r.text
        got = client.post(
            "/features/online",
            json={
                "features": ["route_stats:duration"],
                "include_status": True,
                "entities": {"origin": ["x", "x"], "destination": ["y", "z"]},
            },
        )
    assert got.json()["values"]["duration"] == [9.0, None]  # offline-only rows are not online
    # Both offline pushes are in offline storage, read back as a training set would read them; the
    # rows pushed online only at build time (a -> b) are not.
    later = datetime.fromisoformat(LATER) + timedelta(hours=1)
    entity_df = pd.DataFrame(
        {
            "origin": ["x", "x", "a", "x"],
            "destination": ["y", "z", "b", "w"],
            "event_timestamp": [later] * 4,
        }
    )
    training = store.get_historical_features(entity_df, ["route_stats:duration"]).to_pandas()
    assert training["duration"].tolist()[:2] == [9.0, 1.0]
    assert training["duration"].isna().tolist()[2:] == [True, True]
    before = store.get_historical_features(
        entity_df.assign(event_timestamp=datetime.fromisoformat(LATER) - timedelta(seconds=1)),
        ["route_stats:duration"],
    ).to_pandas()
    assert before["duration"].isna().all()  # point in time: not before their event time
    store.close()


def test_a_wrongly_typed_join_key_is_a_422_and_poisons_nothing(tmp_path):
    """driver_id is declared nowhere (its type comes from the batch source, as in definitions/)."""
    store = undeclared_store(tmp_path)

    def body(driver_id, to="both"):
        return {
            "to": to,
            "rows": [{"driver_id": driver_id, "conv_rate": 0.5, "trips": 3, "event_timestamp": LATER}],
        }

    with serve(store) as server, server.client() as client:
        assert client.post("/push/stats_push", json=body(1)).status_code == 200
        files = {f: f.read_bytes() for f in store.offline_storage.files("driver_stats")}
        for bad, words in [
            ("abc", ["driver_id", "row 0", "'abc'", "Int64"]),
            ("2", ["driver_id", "row 0", "'2'", "Int64"]),
            (99999999999999999999999, ["driver_id", "row 0", "99999999999999999999999"]),
        ]:
            for to in ("both", "offline", "online"):
                r = client.post("/push/stats_push", json=body(bad, to))
                assert r.status_code == 422, r.text
                for word in words:
                    assert word in r.json()["error"], r.text
        assert {f: f.read_bytes() for f in store.offline_storage.files("driver_stats")} == files
        assert client.post("/push/stats_push", json=body(2)).status_code == 200  # integers still go in
    later = datetime.fromisoformat(LATER) + timedelta(hours=1)
    entity_df = pd.DataFrame({"driver_id": [1, 2], "event_timestamp": [later] * 2})
    assert store.get_historical_features(entity_df, ["driver_stats:trips"]).to_pandas()["trips"].tolist() == [
        3,
        3,
    ]
    store.close()
