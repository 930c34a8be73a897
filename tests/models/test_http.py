"""Predictions over real HTTP (uvicorn on a loopback port) against a real Redis online store: the answer is
exactly `model.predict` of the features an in-process lookup returns; aliases hot-swap under load
without a failed request; roles guard registration, alias moves and predictions."""

from __future__ import annotations

import io
import logging
import os
import threading
import time

import numpy as np
import pandas as pd
import pytest

from featurestore.models.serving import ModelServer
from featurestore.server import app as server_app
from featurestore.server import create_app
from featurestore.server.routers import models as models_router
from tests.models import onnx_files
from tests.models.conftest import FEATURES, build_store, training_frame
from tests.server.conftest import LiveServer

pytestmark = pytest.mark.redis

KEYS = {
    "reader": ("read", "read-key-0123456789"),
    "writer": ("write", "write-key-0123456789"),
    "boss": ("admin", "admin-key-0123456789"),
    "ml": ("models", "models-key-0123456789"),
    "lead": ("approver", "approver-key-0123456789"),
}


def app_for(store, **options):
    extra = () if models_router.router in server_app.ROUTERS else (models_router.router,)
    return create_app(store, routers=extra, **options)


@pytest.fixture(scope="module")
def redis_store(tmp_path_factory, redis_server):
    keys = "".join(
        f'[[server.api_keys]]\nname = "{n}"\nrole = "{r}"\nkey = "{k}"\n' for n, (r, k) in KEYS.items()
    )
    store = build_store(
        tmp_path_factory.mktemp("http-repo"), "redis", redis_url=redis_server.url, config="[server]\n" + keys
    )
    yield store
    store.close()


@pytest.fixture(scope="module")
def live(redis_store):
    server = LiveServer(app_for(redis_store)).start()
    yield server
    server.stop()


def auth(name):
    return {"Authorization": f"Bearer {KEYS[name][1]}"}


def test_predict_over_http_is_the_model_on_the_online_features(redis_store, live):
    from sklearn.linear_model import Ridge

    df, y = training_frame()
    model = Ridge().fit(df, y)
    mv = redis_store.models.register("eta_http", model, feature_service="driver_activity")
    redis_store.models.set_alias("eta_http", "production", mv.version)
    drivers = [5, 2, 17, 5]
    with live.client(headers=auth("reader")) as client:
        r = client.post(
            "/models/eta_http@production/predict",
            json={"entities": [{"driver_id": d} for d in drivers], "return_features": True},
        )
        assert r.status_code == 200, r.text
        body = r.json()
        by_query = client.post(
            "/models/eta_http/predict",
            params={"version": mv.version},
            json={"entities": {"driver_id": drivers}},
        ).json()
    online = redis_store.get_online_features(
        [f"driver_stats:{c}" for c in FEATURES], [{"driver_id": d} for d in drivers]
    ).to_dict()
    expected = model.predict(pd.DataFrame({c: online[c] for c in FEATURES}))
    assert body["predictions"] == expected.tolist()  # exactly: same floats through JSON
    assert by_query["predictions"] == body["predictions"]
    assert (body["model"], body["version"]) == ("eta_http", mv.version)
    assert body["features"] == {c: online[c] for c in FEATURES}


def test_bad_predict_requests_get_4xx_not_500(redis_store, live):
    from sklearn.linear_model import LinearRegression

    df, y = training_frame()
    redis_store.models.register("eta_bad", LinearRegression().fit(df, y), feature_service="driver_activity")
    with live.client(headers=auth("reader")) as client:
        cases = [
            ("/models/nope/predict", {"entities": [{"driver_id": 1}]}, 404, "unknown model 'nope'"),
            (
                "/models/eta_bad@nope/predict",
                {"entities": [{"driver_id": 1}]},
                404,
                "alias of model 'eta_bad'",
            ),
            ("/models/eta_bad/predict", {"entities": [{"driver_id": 999}]}, 422, "NOT_FOUND"),
            ("/models/eta_bad/predict", {"entities": [{"rider": 1}]}, 422, "join key 'driver_id'"),
            ("/models/eta_bad/predict", {"entities": "x"}, 422, "entities"),
            (
                "/models/eta_bad/predict",
                {"entities": [{"driver_id": 1}], "probabilities": True},
                422,
                "predict_proba",
            ),
            # versions past SQLite's integers are a client's mistake, not a 500
            (
                "/models/eta_bad@99999999999999999999999/predict",
                {"entities": [{"driver_id": 1}]},
                422,
                "version",
            ),
            (
                "/models/eta_bad/predict?version=99999999999999999999999",
                {"entities": [{"driver_id": 1}]},
                422,
                "version",
            ),
        ]
        # a version whose artifact was changed on disk cannot be served: the server's trouble, 503
        mv = redis_store.models.register(
            "eta_broken", LinearRegression().fit(df, y), feature_service="driver_activity"
        )
        path = redis_store.models.artifact_path(mv)
        path.write_bytes(path.read_bytes() + b"!")
        cases.append(
            (
                f"/models/eta_broken@{mv.version}/predict",
                {"entities": [{"driver_id": 1}]},
                503,
                "modified after registration",
            )
        )
        for path, body, status, message in cases:
            r = client.post(path, json=body)
            assert r.status_code == status, (path, body, r.text)
            assert message in r.json()["error"], r.text


def test_hot_swap_under_concurrent_requests(redis_store, live):
    from sklearn.dummy import DummyRegressor

    df, _ = training_frame()
    versions = []
    for value in (1.0, 2.0, 3.0):
        model = DummyRegressor(strategy="constant", constant=value).fit(df, [0] * len(df))
        versions.append(redis_store.models.register("swap", model, feature_service="driver_activity").version)
    redis_store.models.set_alias("swap", "production", versions[0])
    seen: list[tuple[int, float]] = []
    errors: list[str] = []
    stop = threading.Event()

    def hammer():
        with live.client(headers=auth("reader")) as client:
            while not stop.is_set():
                r = client.post("/models/swap@production/predict", json={"entities": [{"driver_id": 3}]})
                if r.status_code != 200:
                    errors.append(r.text)
                    continue
                body = r.json()
                seen.append((body["version"], body["predictions"][0]))

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        with live.client(headers=auth("lead")) as admin:  # production is protected: an approver moves it
            for v in (versions[1], versions[2], versions[0], versions[2]):
                time.sleep(0.15)
                r = admin.put("/models/swap/aliases/production", json={"version": v})
                assert r.status_code == 200, r.text
                # the server loaded the new version before answering: the next request gets it
                with live.client(headers=auth("reader")) as client:
                    body = client.post(
                        "/models/swap@production/predict", json={"entities": [{"driver_id": 3}]}
                    ).json()
                assert body["version"] == v
        time.sleep(0.15)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors
    assert len(seen) > 20
    value_of = dict(zip(versions, (1.0, 2.0, 3.0)))
    assert all(value_of[v] == p for v, p in seen)  # a version never answers with another's model
    assert {v for v, _ in seen} == set(versions)
    history = [e for e in redis_store.models.history("swap") if e["event"] == "alias_set"]
    assert [e["version"] for e in history] == [
        versions[0],
        versions[1],
        versions[2],
        versions[0],
        versions[2],
    ]
    assert {e["actor"] for e in history[1:]} == {"lead"}


def test_roles_guard_model_endpoints(redis_store, live, tmp_path):
    import skops.io as sio
    from sklearn.linear_model import LinearRegression

    df, y = training_frame()
    model = LinearRegression().fit(df, y)
    redis_store.models.register("eta_roles", model, feature_service="driver_activity")
    data = sio.dumps(model)
    calls = {
        "register": (
            "POST",
            "/models/eta_roles/versions",
            {"params": {"feature_service": "driver_activity"}, "content": data},
        ),
        "alias": ("PUT", "/models/eta_roles/aliases/staging", {"json": {"version": 1}}),
        "protected": ("PUT", "/models/eta_roles/aliases/production", {"json": {"version": 1}}),
        "predict": ("POST", "/models/eta_roles/predict", {"json": {"entities": [{"driver_id": 1}]}}),
        "list": ("GET", "/catalog/models", {}),
    }
    expected = {
        None: {"register": 401, "alias": 401, "protected": 401, "predict": 401, "list": 401},
        "reader": {"register": 403, "alias": 403, "protected": 403, "predict": 200, "list": 200},
        "writer": {"register": 403, "alias": 403, "protected": 403, "predict": 200, "list": 200},
        "ml": {"register": 201, "alias": 200, "protected": 403, "predict": 200, "list": 200},
        "lead": {"register": 201, "alias": 200, "protected": 200, "predict": 200, "list": 200},
        "boss": {"register": 201, "alias": 200, "protected": 200, "predict": 200, "list": 200},
    }
    with live.client() as client:
        for who, statuses in expected.items():
            for call, status in statuses.items():
                method, path, kwargs = calls[call]
                r = client.request(method, path, headers=auth(who) if who else {}, **kwargs)
                assert r.status_code == status, (who, call, r.text)
        detail = client.get("/catalog/models/eta_roles", headers=auth("reader")).json()
        assert [v["version"] for v in detail["versions"]] == [1, 2, 3, 4]
        assert detail["versions"][1]["registered_by"] == "ml"
        assert detail["aliases"] == {"production": 1, "staging": 1}
        r = client.delete("/models/eta_roles/aliases/production", headers=auth("ml"))
        assert r.status_code == 403 and "protected" in r.json()["error"]
        assert (
            client.delete("/models/eta_roles/aliases/production", headers=auth("reader")).status_code == 403
        )
        assert client.delete("/models/eta_roles/aliases/production", headers=auth("boss")).status_code == 204
        # registration over HTTP reads no pickles and refuses a signature that does not match the service
        r = client.post(
            "/models/eta_roles/versions",
            params={"feature_service": "rates"},
            content=data,
            headers=auth("boss"),
        )
        assert r.status_code == 422 and "do not match" in r.json()["error"]
        buf = io.BytesIO()
        import joblib

        joblib.dump(model, buf)
        r = client.post(
            "/models/eta_roles/versions",
            params={"feature_service": "driver_activity"},
            content=buf.getvalue(),
            headers=auth("boss"),
        )
        assert r.status_code == 422 and "skops" in r.json()["error"]
    audit = {(a["action"], a["actor"]) for a in redis_store.registry.audit_log()}
    assert ("model_alias_set", "ml") in audit and ("model_alias_delete", "boss") in audit
    assert ("model_register", "ml") in audit


def test_prediction_log_of_the_server(redis_store, live):
    from sklearn.linear_model import LinearRegression

    df, y = training_frame()
    redis_store.models.register("eta_log", LinearRegression().fit(df, y), feature_service="driver_activity")
    with live.client(headers=auth("reader")) as client:
        body = client.post(
            "/models/eta_log/predict",
            json={"entities": [{"driver_id": 8}, {"driver_id": 9}], "request_id": "abc"},
        ).json()
    server: ModelServer = live.app.state.model_server
    server.log.flush()
    rows = server.log.read("eta_log").to_pylist()
    assert [(r["request_id"], r["driver_id"], r["prediction"]) for r in rows] == [
        ("abc", 8, body["predictions"][0]),
        ("abc", 9, body["predictions"][1]),
    ]


# -- model files are untrusted input ----------------------------------------------------------------

CONFIG = "featurestore.toml"  # the server's config, in its working directory: it holds the API keys


def register_onnx(client, name, data):
    return client.post(
        f"/models/{name}/versions",
        params={"feature_service": "driver_activity", "format": "onnx"},
        content=data,
    )


def test_onnx_uploads_that_read_a_server_file_are_refused(redis_store, live, monkeypatch):
    monkeypatch.chdir(redis_store.config.repo_path)  # as under `fs serve` in the repo
    size = os.path.getsize(CONFIG)
    uploads = {
        "relative": (
            onnx_files.reads_file(CONFIG, size),
            f"graph.initializer['F'] keeps its data in '{CONFIG}'",
        ),
        "absolute": (
            onnx_files.reads_file("/etc/passwd", 16),
            "graph.initializer['F'] keeps its data in '/etc/passwd'",
        ),
        "in a subgraph": (
            onnx_files.reads_file_in_subgraph(CONFIG, size),
            f"graph.node['choose'].attribute['then_branch'].g.initializer['F'] keeps its data in '{CONFIG}'",
        ),
    }
    with live.client(headers=auth("ml")) as client:
        for case, (data, message) in uploads.items():
            r = register_onnx(client, "leak", data)
            assert r.status_code == 422, (case, r.text)
            assert r.json()["error"].startswith(f"model 'leak': tensor {message} (ONNX external data)"), case
        assert client.get("/catalog/models/leak").status_code == 404
        r = client.post("/models/leak/predict", json={"entities": [{"driver_id": 1}]})
        assert r.status_code == 404 and KEYS["boss"][1] not in r.text


def test_a_planted_onnx_model_that_reads_a_server_file_is_not_served(redis_store, live, monkeypatch):
    monkeypatch.chdir(redis_store.config.repo_path)
    redis_store.models.register("planted", onnx_files.linear(), feature_service="driver_activity")
    onnx_files.plant(redis_store, "planted", 1, onnx_files.reads_file(CONFIG, os.path.getsize(CONFIG)))
    with live.client(headers=auth("reader")) as client:
        r = client.post("/models/planted/predict", json={"entities": [{"driver_id": 1}]})
    assert r.status_code == 503, r.text
    assert r.json()["error"].startswith(
        f"model planted@1: model.onnx: tensor graph.initializer['F'] keeps its data in '{CONFIG}'"
    )
    assert KEYS["boss"][1] not in r.text


def test_uploads_that_are_not_a_model_answer_422_naming_the_problem(redis_store, live):
    uploads = [
        (
            "onnx",
            b"hello",
            "model 'junk': not a valid ONNX model (protobuf): wire type 4 (field 13) at byte 2",
        ),
        ("onnx", np.random.default_rng(11).bytes(300), "model 'junk': not a valid ONNX model (protobuf): "),
        ("onnx", b"\x08\x07", "model 'junk': not an ONNX model: it has no graph"),
        (
            "onnx",
            onnx_files.linear().replace(b"MatMul", b"NoSuch"),
            "model 'junk': onnxruntime cannot load this ONNX model: ",
        ),
        ("skops", b"hello", "the request body is not a readable skops file (a zip archive): "),
    ]
    with live.client(headers=auth("ml")) as client:
        for fmt, data, message in uploads:
            r = client.post(
                "/models/junk/versions",
                params={"feature_service": "driver_activity", "format": fmt},
                content=data,
            )
            assert r.status_code == 422, (data[:20], r.text)
            assert r.json()["error"].startswith(message), r.text
        assert client.get("/catalog/models/junk").status_code == 404


def test_a_skops_upload_that_unpacks_past_the_limit_is_refused_unread(redis_store, live, monkeypatch):
    """A zip bomb: 2 MiB of zeros deflate to about 2 KB; with the limit at 1 MiB it is refused before
    skops reads it."""
    import zipfile

    from featurestore.server.routers import models as models_router

    monkeypatch.setattr(models_router, "MAX_UNPACKED_BYTES", 1 << 20)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("schema.json", b"0" * (2 << 20))
    read = []
    monkeypatch.setattr("skops.io.get_untrusted_types", lambda **kw: read.append(kw) or [])
    with live.client(headers=auth("ml")) as client:
        r = client.post(
            "/models/bomb/versions",
            params={"feature_service": "driver_activity", "format": "skops"},
            content=buffer.getvalue(),
        )
    assert r.status_code == 422 and "unpacks to 2097152 bytes, over the 1048576" in r.json()["error"]
    assert read == []


def test_a_model_answering_the_wrong_number_of_predictions_is_a_model_error(redis_store, live, caplog):
    redis_store.models.register("five", onnx_files.fixed_length(5), feature_service="driver_activity")
    with live.client(headers=auth("reader")) as client, caplog.at_level(logging.ERROR, "featurestore.server"):
        rows = [{"driver_id": 1}, {"driver_id": 2}]
        r = client.post("/models/five/predict", json={"entities": rows, "request_id": "wrong-count"})
        assert r.status_code == 500
        assert r.json() == {"error": "model five@1 returned 5 predictions for 2 rows", "code": "model_error"}
        # as many rows as it answers: served (the count is checked, not the model)
        rows = [{"driver_id": d} for d in range(1, 6)]
        r = client.post("/models/five/predict", json={"entities": rows, "request_id": "right-count"})
        assert r.status_code == 200 and r.json()["predictions"] == [0, 1, 2, 3, 4]
        # other errors keep their bodies, without a code
        r = client.post("/models/five/predict", json={"entities": [{"driver_id": 1}], "bogus": 1})
        assert r.status_code == 422 and "code" not in r.json()
    assert "model five@1 returned 5 predictions for 2 rows" in caplog.text  # the operator learns of it
    server: ModelServer = live.app.state.model_server
    server.log.flush()
    assert {r["request_id"] for r in server.log.read("five").to_pylist()} == {"right-count"}


def test_names_with_a_trailing_newline_are_refused(redis_store, live):
    import skops.io as sio
    from sklearn.linear_model import LinearRegression

    df, y = training_frame()
    model = LinearRegression().fit(df, y)
    redis_store.models.register("eta_nl", model, feature_service="driver_activity")
    with live.client(headers=auth("boss")) as client:
        r = client.post(
            "/models/nl%0A/versions", params={"feature_service": "driver_activity"}, content=sio.dumps(model)
        )
        assert r.status_code == 422 and r.json()["error"].startswith("model name 'nl\\n' is invalid"), r.text
        r = client.put("/models/eta_nl/aliases/production%0A", json={"version": 1})
        assert r.status_code == 422 and r.json()["error"].startswith("alias 'production\\n' is invalid"), (
            r.text
        )
    assert not (redis_store.config.models_path / "nl\n").exists()
    assert "nl\n" not in redis_store.models.names() and redis_store.models.aliases("eta_nl") == {}
