"""Join keys over HTTP follow the one key rule (featurestore.keys), as the Python roads do
(tests/test_keys.py): lookups and predictions accept the same values and refuse the same values with a
422 naming the key and the row. JSON integers beyond 64 bits are never read as floats: a 422, in
lookup, predict and push bodies alike."""

from __future__ import annotations

import pytest

from tests.server.conftest import serve
from tests.test_keys import ACCEPTED, REFUSED, build

BIG = "99999999999999999999999"  # above int64; as a float it would be 1e+23


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    from sklearn.linear_model import LinearRegression

    store = build(tmp_path_factory.mktemp("keys-http-repo"))
    store.models.register(
        "trips_model", LinearRegression().fit([[10], [20]], [1, 2]), feature_service="driver_trips"
    )
    with serve(store) as server:
        yield server
    store.close()


def lookup(client, feature, key, value):
    return client.post("/features/online", json={"features": [feature], "entities": [{key: value}]})


@pytest.mark.parametrize("feature, key, value, expected", ACCEPTED)
def test_accepted_keys_are_found_over_http(live, feature, key, value, expected):
    with live.client() as client:
        r = lookup(client, feature, key, value)
    assert r.status_code == 200, r.text
    assert r.json()["values"][feature.split(":")[1]] == [expected]


@pytest.mark.parametrize("feature, key, value, words", REFUSED)
def test_refused_keys_are_a_422_naming_key_and_row(live, feature, key, value, words):
    with live.client() as client:
        r = lookup(client, feature, key, value)
        columns = client.post(
            "/features/online", json={"features": [feature], "entities": {key: [value, value]}}
        )
    assert r.status_code == 422, r.text
    for word in ["entity row 0", f"join key '{key}'", *words]:
        assert word in r.json()["error"], r.text
    assert columns.status_code == 422 and "entity row 0" in columns.json()["error"], columns.text


def test_predict_follows_the_key_rule(live):
    with live.client() as client:
        ok = client.post(
            "/models/trips_model/predict", json={"entities": [{"driver_id": "2"}, {"driver_id": 1.0}]}
        )
        bad = client.post(
            "/models/trips_model/predict", json={"entities": [{"driver_id": 1}, {"driver_id": "x"}]}
        )
    assert ok.status_code == 200, ok.text
    assert ok.json()["predictions"] == pytest.approx([2.0, 1.0])
    assert bad.status_code == 422 and "entity row 1: join key 'driver_id'" in bad.json()["error"], bad.text


@pytest.mark.parametrize(
    "path, body",
    [
        ("/features/online", '{"features": ["driver_stats:trips"], "entities": [{"driver_id": BIG}]}'),
        ("/features/online", '{"features": ["driver_stats:trips"], "entities": {"driver_id": [1, -BIG]}}'),
        ("/models/trips_model/predict", '{"entities": [{"driver_id": BIG}]}'),
    ],
)
def test_integers_beyond_64_bits_are_a_422_not_a_float(live, path, body):
    with live.client() as client:
        r = client.post(path, content=body.replace("BIG", BIG), headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert "join key 'driver_id'" in error and "outside the Int64 range" in error, error
    assert BIG in error  # the number as sent, not 1e+23
