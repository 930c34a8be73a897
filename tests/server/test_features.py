"""POST /features/online through a real server, over SQLite and Redis: the same answers as in-process."""

from __future__ import annotations

import base64
import math
from datetime import datetime, timezone

import pytest

from featurestore.online.lookup import get_online_features

pytestmark = pytest.mark.redis


def jsonable(value):
    """The documented JSON form of a value (server/encoding.py), written independently as the oracle."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, float) and math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f").removesuffix(".000000") + "Z"
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value


def expected(store, features, entities, full=False, status=False, stamps=False):
    resp = get_online_features(store, features, entities, full_feature_names=full)
    out = {"values": {k: jsonable(v) for k, v in resp.values.items()}}
    if status:
        out["statuses"] = resp.statuses
    if stamps:
        out["event_timestamps"] = {k: jsonable(v) for k, v in resp.event_timestamps.items()}
    return out


ALL = [
    "driver_stats:conv_rate",
    "driver_stats:trips",
    "driver_stats:city",
    "driver_stats:photo",
    "driver_stats:recent",
    "driver_stats:last_trip",
    "driver_stats:active",
]

CASES = [
    pytest.param(
        dict(features=ALL, entities=[{"driver_id": i} for i in (1, 7, 8, 999)]), id="rows-every-type"
    ),
    pytest.param(dict(features=ALL, entities={"driver_id": [7, 2, 2, 999]}), id="columns-duplicates"),
    pytest.param(dict(features="driver_activity", entities={"driver_id": [3, 4]}), id="service"),
    pytest.param(
        dict(
            features=["driver_stats:conv_rate", "driver_fresh:conv_rate"],
            entities={"driver_id": [1, 2, 50]},
            full_feature_names=True,
            include_status=True,
            include_event_timestamps=True,
        ),
        id="ttl-statuses",
    ),
    pytest.param(
        dict(
            features=["route_stats:duration", "driver_stats:trips"],
            entities=[
                {"origin": "a", "destination": "b", "driver_id": 1},
                {"origin": "b", "destination": "a", "driver_id": None},
                {"origin": "a", "destination": None, "driver_id": "2"},
            ],
            include_status=True,
        ),
        id="composite-keys-and-nulls",
    ),
    pytest.param(dict(features=["driver_stats:trips"], entities=[]), id="no-rows"),
]


@pytest.mark.parametrize("body", CASES)
def test_http_answers_equal_in_process_answers(live, body):
    store = live.app.state.fs.store
    with live.client() as client:
        r = client.post("/features/online", json=body)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    want = expected(
        store,
        body["features"],
        body["entities"],
        body.get("full_feature_names", False),
        body.get("include_status", False),
        body.get("include_event_timestamps", False),
    )
    assert r.json() == want


def test_values_statuses_and_encodings(live):
    with live.client() as client:
        r = client.post(
            "/features/online",
            json={
                "features": [
                    "driver_stats:conv_rate",
                    "driver_stats:city",
                    "driver_stats:photo",
                    "driver_fresh:conv_rate",
                    "driver_stats:last_trip",
                ],
                "entities": {"driver_id": [7, 8, 999]},
                "full_feature_names": True,
                "include_status": True,
            },
        )
    body = r.json()
    values, statuses = body["values"], body["statuses"]
    assert values["driver_id"] == [7, 8, 999]
    assert values["driver_stats__conv_rate"] == ["NaN", 0.08, None]  # NaN is not null
    assert values["driver_stats__city"] == [None, "city-8", None]
    assert values["driver_stats__photo"][1] == base64.b64encode(bytes([8, 0, 255])).decode()
    assert values["driver_stats__last_trip"][1].endswith("Z")
    assert statuses["driver_stats__conv_rate"] == ["PRESENT", "PRESENT", "NOT_FOUND"]
    # driver 7's row is 2 h old: outside driver_fresh's 1 h ttl, so its value is withheld
    assert statuses["driver_fresh__conv_rate"] == ["OUTSIDE_MAX_AGE", "PRESENT", "NOT_FOUND"]
    assert values["driver_fresh__conv_rate"] == [None, 0.08, None]
    assert "event_timestamps" not in body


@pytest.mark.parametrize(
    "body, status, words",
    [
        (
            {"features": ["driver_stats:conv_rat"], "entities": [{"driver_id": 1}]},
            404,
            ["conv_rat", "did you mean 'conv_rate'"],
        ),
        (
            {"features": ["driver_stat:conv_rate"], "entities": [{"driver_id": 1}]},
            404,
            ["driver_stat", "driver_stats"],
        ),
        (
            {"features": "driver_activty", "entities": [{"driver_id": 1}]},
            404,
            ["driver_activty", "driver_activity"],
        ),
        (
            {
                "features": ["driver_stats:conv_rate", "driver_fresh:conv_rate"],
                "entities": [{"driver_id": 1}],
            },
            422,
            ["full_feature_names"],
        ),
        ({"features": ["conv_rate"], "entities": [{"driver_id": 1}]}, 422, ["view:feature"]),
        ({"features": [], "entities": [{"driver_id": 1}]}, 422, ["body.features"]),
        ({"entities": [{"driver_id": 1}]}, 422, ["body.features", "required"]),
        ({"features": ["driver_stats:trips"]}, 422, ["body.entities", "required"]),
        ({"features": ["driver_stats:trips"], "entities": 3}, 422, ["body.entities", "rows", "columns"]),
        (
            {"features": ["driver_stats:trips"], "entities": [{"driver_id": {"a": 1}}]},
            422,
            ["body.entities.0.driver_id"],
        ),
        (
            {"features": ["driver_stats:trips"], "entities": {"driver_id": [1, 2], "x": [1]}},
            422,
            ["same length"],
        ),
        ({"features": ["driver_stats:trips"], "entities": [{"driver": 1}]}, 422, ["driver_id"]),
        ({"features": ["driver_stats:trips"], "entities": [1, 2]}, 422, ["body.entities.0"]),
        (
            {"features": ["driver_stats:trips"], "entities": [{"driver_id": 1}], "include_status": "yes"},
            422,
            ["body.include_status"],
        ),
        (
            {"features": ["driver_stats:trips"], "entities": [{"driver_id": 1}], "extra": 1},
            422,
            ["body.extra"],
        ),
        (
            {"features": ["driver_stats:trips"], "entities": {"driver_id": list(range(1001))}},
            413,
            ["1001", "1000"],
        ),
        (
            {"features": ["driver_stats:trips"], "entities": [{"driver_id": 1}] * 1001},
            413,
            ["max_batch_rows"],
        ),
    ],
)
def test_client_mistakes_get_a_4xx_that_says_what_is_wrong(live, body, status, words):
    good = {"features": ["driver_stats:trips"], "entities": {"driver_id": [3, 4]}}
    with live.client() as client:
        r = client.post("/features/online", json=body)
        # the lookup a mistaken body began before it was validated (server/routers/features.py) is
        # dropped: the next lookup on the same connection gets its own answer
        after = client.post("/features/online", json=good)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    for word in words:
        assert word in error
    assert "Traceback" not in r.text
    assert after.status_code == 200 and after.json() == expected(live.app.state.fs.store, **good)


def test_malformed_json_is_a_422_naming_the_body(sqlite_server_live):
    with sqlite_server_live.client() as client:
        for raw in (b"{", b"", b"[1, 2]", b"\xff\xfe", b'{"features": NaN}'):
            r = client.post("/features/online", content=raw, headers={"content-type": "application/json"})
            assert r.status_code == 422, (raw, r.text)
            assert r.json()["error"].startswith("invalid request: body")


def test_concurrent_lookups_all_answer_with_the_right_rows(redis_server_live):
    """16 clients at once over one event loop and one Redis connection pool: every answer is right."""
    from concurrent.futures import ThreadPoolExecutor

    def client_run(seed: int) -> list[bool]:
        ok = []
        with redis_server_live.client() as client:
            for i in range(15):
                ids = [(seed + i + k) % 25 + 1 for k in range(5)]  # 21..25 do not exist
                r = client.post(
                    "/features/online",
                    json={"features": ["driver_stats:trips"], "entities": {"driver_id": ids}},
                )
                ok.append(
                    r.status_code == 200
                    and r.json()["values"]["trips"] == [d * 10 if d <= 20 else None for d in ids]
                )
        return ok

    with ThreadPoolExecutor(16) as pool:
        results = [ok for run in pool.map(client_run, range(16)) for ok in run]
    assert len(results) == 240 and all(results)


def test_an_oversized_batch_reads_nothing_from_the_store(redis_server_live, redis_server):
    import redis

    client = redis.Redis.from_url(redis_server.url)

    def mgets() -> int:
        return int(client.info("commandstats").get("cmdstat_mget", {}).get("calls", 0))

    with redis_server_live.client() as http:
        before = mgets()
        r = http.post(
            "/features/online",
            json={"features": ["driver_stats:trips"], "entities": {"driver_id": list(range(1001))}},
        )
        assert r.status_code == 413 and mgets() == before
        assert (
            http.post(
                "/features/online", json={"features": ["driver_stats:trips"], "entities": {"driver_id": [1]}}
            ).status_code
            == 200
        )
        assert mgets() == before + 1


def test_a_lookup_begun_early_is_used_only_for_the_request_as_validated(sqlite_store, monkeypatch):
    """The early start reads the body with orjson, the answer comes from pydantic's reading: when the
    two ever differ, the early lookup is dropped and the validated request is looked up."""
    import asyncio
    import json

    import orjson

    from featurestore.online.lookup import PendingLookup
    from featurestore.server import create_app
    from featurestore.server.routers import features

    state = create_app(sqlite_store).state.fs
    body = {"features": ["driver_stats:trips"], "entities": {"driver_id": [3, 4]}}
    misread = {"features": ["driver_stats:trips"], "entities": {"driver_id": [5, 6]}}
    monkeypatch.setattr(
        features, "orjson", type("Misreading", (), {"loads": staticmethod(lambda b: misread)})
    )
    discarded = []
    discard = PendingLookup.discard
    monkeypatch.setattr(PendingLookup, "discard", lambda self: discarded.append(self.entity) or discard(self))

    async def answer_and_let_the_dropped_read_end() -> bytes:
        answer = await features.lookup_answer(state, json.dumps(body).encode())
        await asyncio.sleep(0.1)
        return answer

    answer = orjson.loads(asyncio.run(answer_and_let_the_dropped_read_end()))
    assert answer == expected(sqlite_store, **body)
    assert discarded == [{"driver_id": [5, 6]}]
