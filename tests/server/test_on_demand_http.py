"""On-demand feature views over HTTP (Redis online store): request values in the entity rows, the
errors a client gets, a changed function file, and a model whose service holds on-demand features."""

from __future__ import annotations

import os
import time
import uuid
from datetime import timedelta

import pandas as pd
import pyarrow as pa
import pytest

from featurestore import FeatureStore
from tests.repo_builder import make_repo
from tests.server.conftest import NOW, serve

DEFINITIONS = """
from pathlib import Path
from featurestore import (Entity, FeatureService, FeatureView, Field, Float64, Int64, PushSource, RequestSource,
                          on_demand_feature_view)

with Path(__file__).with_name("imports.log").open("a") as log:  # each import of this file, for a test
    log.write("imported\\n")

driver = Entity(name="driver", join_keys=["driver_id"])
driver_push = PushSource(name="driver_push")
driver_stats = FeatureView(name="driver_stats", entities=[driver], source=driver_push,
                           schema=[Field("driver_id", Int64), Field("conv_rate", Float64), Field("trips", Int64)])
trip_request = RequestSource(name="trip_request", schema=[Field("distance_km", Float64)])


@on_demand_feature_view(sources=[driver_stats[["conv_rate"]], trip_request],
                        schema=[Field("expected_minutes", Float64)])
def trip_estimates(row: dict) -> dict:
    return {"expected_minutes": row["distance_km"] / max(row["conv_rate"] or 0.1, 0.1)}


@on_demand_feature_view(sources=[driver_stats[["trips"]], trip_request], schema=[Field("checked", Float64)])
def hostile(row: dict) -> dict:
    if row["distance_km"] == 4:
        raise SystemExit(3)
    if row["distance_km"] == 5:
        raise KeyboardInterrupt
    return {"checked": row["distance_km"]}


eta_service = FeatureService(name="eta_service", features=[driver_stats[["trips"]], trip_estimates])
"""


@pytest.fixture()
def store(tmp_path, redis_server):
    online = (
        f'[online]\ntype = "redis"\nurl = "{redis_server.url}"\nkey_prefix = "odfv-{uuid.uuid4().hex[:8]}"\n'
    )
    make_repo(tmp_path, {"features.py": DEFINITIONS}, config=online)
    store = FeatureStore(tmp_path)
    store.apply()
    when = pa.array([NOW - timedelta(minutes=1)] * 3, pa.timestamp("us", tz="UTC"))
    rows = pa.table(
        {
            "driver_id": [1, 2, 3],
            "conv_rate": [0.5, None, 2.0],
            "trips": [10, 20, 30],
            "event_timestamp": when,
        }
    )
    store.push("driver_push", rows, to="both")
    yield store
    store.close()


def test_lookup_takes_request_values_from_entity_rows_or_columns(store):
    with serve(store) as server, server.client() as client:
        rows = client.post(
            "/features/online",
            json={
                "features": ["trip_estimates:expected_minutes"],
                "include_status": True,
                "entities": [{"driver_id": 1, "distance_km": 10.0}, {"driver_id": 2, "distance_km": 3}],
            },
        )
        assert rows.status_code == 200, rows.text
        assert rows.json() == {
            "values": {"driver_id": [1, 2], "expected_minutes": [20.0, 30.0]},
            "statuses": {"expected_minutes": ["PRESENT", "PRESENT"]},
        }
        columns = client.post(
            "/features/online",
            json={"features": "eta_service", "entities": {"driver_id": [3, 99], "distance_km": [4.0, 1.0]}},
        )
        assert columns.json()["values"] == {
            "driver_id": [3, 99],
            "trips": [30, None],
            "expected_minutes": [2.0, 10.0],
        }
        missing = client.post(
            "/features/online", json={"features": "eta_service", "entities": [{"driver_id": 1}]}
        )
        assert missing.status_code == 422
        assert "'distance_km'" in missing.json()["error"] and "'trip_request'" in missing.json()["error"]


def test_a_function_that_raises_is_a_500_transform_error_without_a_stack(store):
    with serve(store) as server, server.client() as client:
        r = client.post(
            "/features/online",
            json={
                "features": ["trip_estimates:expected_minutes"],
                "entities": [{"driver_id": 1, "distance_km": None}],
            },
        )
    assert r.status_code == 500
    body = r.json()
    assert body["code"] == "transform_error"
    assert "'trip_estimates' failed on entity row 0" in body["error"] and "TypeError" in body["error"]
    assert "Traceback" not in r.text and "line " not in body["error"]


def test_a_changed_function_file_answers_409_until_applied(store):
    path = store.repo_path / "features.py"
    with serve(store) as server, server.client() as client:
        body = {
            "features": ["trip_estimates:expected_minutes"],
            "entities": [{"driver_id": 1, "distance_km": 1.0}],
        }
        assert client.post("/features/online", json=body).status_code == 200
        path.write_text(path.read_text().replace("max(row", "2 * max(row"))
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        time.sleep(1.1)
        r = client.post("/features/online", json=body)
        assert r.status_code == 409, r.text
        assert r.json()["error"].startswith("definitions changed on disk: apply again")
        plain = {"features": ["driver_stats:trips"], "entities": [{"driver_id": 1}]}
        assert client.post("/features/online", json=plain).status_code == 200
        FeatureStore(store.repo_path).apply()  # as `fs apply` from another process
        time.sleep(1.1)
        r = client.post("/features/online", json=body)
        assert r.status_code == 200 and r.json()["values"]["expected_minutes"] == [0.25]  # 1.0 / 2 * 0.5


def test_predict_with_on_demand_features_in_the_service(store):
    from sklearn.linear_model import LinearRegression

    X = pd.DataFrame({"trips": [10, 20, 30, 40], "expected_minutes": [1.0, 5.0, 2.0, 8.0]})
    model = LinearRegression().fit(X, [1.0, 2.0, 3.0, 4.0])
    store.models.register("eta_odfv", model, feature_service="eta_service")
    with serve(store) as server, server.client() as client:
        r = client.post(
            "/models/eta_odfv/predict",
            json={
                "entities": [{"driver_id": 1, "distance_km": 10.0}, {"driver_id": 3, "distance_km": 4.0}],
                "return_features": True,
            },
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["features"] == {"trips": [10, 30], "expected_minutes": [20.0, 2.0]}
        assert body["predictions"] == pytest.approx(model.predict(pd.DataFrame(body["features"])).tolist())
        missing = client.post("/models/eta_odfv/predict", json={"entities": [{"driver_id": 1}]})
        assert missing.status_code == 422 and "'distance_km'" in missing.json()["error"]
    # the same features in a training set
    entity_df = pd.DataFrame({"driver_id": [1, 3], "distance_km": [10.0, 4.0], "event_timestamp": [NOW, NOW]})
    job = store.get_historical_features(entity_df, "eta_service")
    assert job.to_pandas()["expected_minutes"].tolist() == [20.0, 2.0]
    assert job.feature_refs == ["driver_stats:trips", "trip_estimates:expected_minutes"]
    saved = job.save("eta_odfv_set")
    assert saved.rows == 2


def test_system_exit_and_keyboard_interrupt_are_transform_errors_and_the_server_survives(store):
    with serve(store) as server, server.client() as client:
        for x, name in ((4, "SystemExit: 3"), (5, "KeyboardInterrupt")):
            body = {"features": ["hostile:checked"], "entities": [{"driver_id": 1, "distance_km": x}]}
            r = client.post("/features/online", json=body)
            assert r.status_code == 500 and r.json()["code"] == "transform_error", r.text
            assert name in r.json()["error"]
            ok = client.post(
                "/features/online",
                json={"features": ["hostile:checked"], "entities": [{"driver_id": 1, "distance_km": 1}]},
            )
            assert ok.status_code == 200 and ok.json()["values"]["checked"] == [1.0]


def test_a_nan_request_value_in_json_is_a_null(store):
    with serve(store) as server, server.client() as client:
        r = client.post(
            "/features/online",
            json={
                "features": ["hostile:checked"],
                "entities": {"driver_id": [1, 1], "distance_km": ["NaN", "Infinity"]},
            },
        )
    assert r.status_code == 200, r.text
    assert r.json()["values"]["checked"] == [None, "Infinity"]


def test_the_catalog_lists_on_demand_views(store):
    with serve(store) as server, server.client() as client:
        listed = client.get("/catalog/on-demand-views").json()["on_demand_views"]
        assert [v["name"] for v in listed] == ["hostile", "trip_estimates"]
        one = client.get("/catalog/on-demand-views/trip_estimates").json()
        assert one["inputs"] == ["driver_stats:conv_rate"]
        assert one["request_fields"] == [
            {"name": "distance_km", "dtype": "Float64", "source": "trip_request"}
        ]
        assert one["features"] == [{"name": "expected_minutes", "dtype": "Float64"}]
        assert (one["mode"], one["module"], one["function"]) == ("python", "features.py", "trip_estimates")
        typo = client.get("/catalog/on-demand-views/trip_estimate")
        assert typo.status_code == 404 and "did you mean 'trip_estimates'" in typo.json()["error"]
        plain = client.get("/catalog/on-demand-views/driver_stats")
        assert plain.status_code == 404 and "is a feature view, not an on-demand one" in plain.json()["error"]
        as_view = client.get("/catalog/views/trip_estimates")
        assert as_view.status_code == 404
        assert "'trip_estimates' is an on-demand feature view" in as_view.json()["error"]
        assert "did you mean" not in as_view.json()["error"]


def test_functions_are_imported_when_the_app_starts(store):
    fresh = FeatureStore(store.repo_path)  # as `fs serve` in another process: no function in memory
    log = store.repo_path / "imports.log"
    log.unlink()
    with serve(fresh) as server, server.client() as client:
        assert log.read_text().count("imported") == 1  # before any request
        body = {
            "features": ["trip_estimates:expected_minutes"],
            "entities": [{"driver_id": 1, "distance_km": 1}],
        }
        assert client.post("/features/online", json=body).status_code == 200
        assert log.read_text().count("imported") == 1
    fresh.close()
