"""Shadow scoring: a `challenger` alias scored in the background on production's requests. The
client's answer never changes; the challenger's predictions are logged with variant "shadow" and
equal the challenger model run directly on the vectors production was given."""

from __future__ import annotations

import gc
import logging
import threading
import time
import weakref

import numpy as np
import pandas as pd

from featurestore.models.prediction_log import PredictionLog
from featurestore.models.serving import ModelServer
from tests.models.conftest import FEATURES, STALE_DRIVER, training_frame

RATES = ["conv_rate", "acc_rate"]


class Raiser:
    """A challenger that cannot predict."""

    n_features_in_ = 3

    def predict(self, X):
        raise ValueError("this challenger is broken")


HANGING = threading.Event()  # set while a Hanger's predict waits
RELEASE = threading.Event()  # lets it go


class Hanger:
    """A challenger whose predict hangs until the test releases it."""

    n_features_in_ = 3

    def predict(self, X):
        HANGING.set()
        RELEASE.wait(30)
        return np.zeros(len(X))


def register(store, name="eta", service="driver_activity", kind="linear", aliases=(), missing="fail"):
    from sklearn.linear_model import LinearRegression, Ridge
    from sklearn.tree import DecisionTreeRegressor

    columns = FEATURES if service == "driver_activity" else RATES
    df, y = training_frame(columns=columns)
    model = {"linear": LinearRegression, "ridge": lambda: Ridge(alpha=3.0), "tree": DecisionTreeRegressor}[
        kind
    ]().fit(df, y)
    mv = store.models.register(name, model, feature_service=service, missing_policy=missing)
    for alias in aliases:
        store.models.set_alias(name, alias, mv.version)
    return mv, model


def open_server(store, tmp_path):
    log = PredictionLog(tmp_path / "predictions", flush_interval=3600)
    return ModelServer(store, prediction_log=log, watch=False), log


def predict(server, ref, drivers, request_id):
    out = server.predict(ref, [{"driver_id": d} for d in drivers], request_id=request_id)
    assert server.flush_shadow()
    return out


def logged(server, log, model="eta"):
    assert server.flush_shadow()
    log.flush()
    frame = log.read(model).to_pandas()
    return frame[frame.variant == "primary"], frame[frame.variant == "shadow"]


def test_shadow_rows_are_the_challenger_on_productions_vectors(store, tmp_path):
    defaults = {"conv_rate": 0.25, "acc_rate": 0.75, "trips": 10}
    prod, _ = register(store, aliases=["production"], missing=defaults)
    ch, challenger = register(store, service="rates", kind="ridge", aliases=["challenger"])  # a subset
    server, log = open_server(store, tmp_path)
    with server:
        predict(server, "eta@production", [1], "warm-up")  # the worker finds and loads the challenger
        first = predict(server, "eta@production", [3, 1, STALE_DRIVER, 1, 5], "r-1")
        predict(server, "eta", [9, 2, 6], "r-2")  # plain name: resolves to production
        primary, shadow = logged(server, log)
    assert first["version"] == prod.version and server._shadow is not None
    shadow = shadow[shadow.request_id != "warm-up"]
    assert set(shadow.model_version) == {ch.version} and set(primary.model_version) == {prod.version}
    pairs = primary.merge(shadow, on=["request_id", "row"], suffixes=("", "_shadow"))
    assert sorted(zip(shadow.request_id, shadow.row)) == [("r-1", i) for i in range(5)] + [
        ("r-2", i) for i in range(3)
    ]
    assert len(pairs) == 8 and list(pairs.driver_id_shadow) == list(pairs.driver_id)
    vectors = pd.DataFrame([f for f in pairs.features])[RATES]
    # its own inputs only (reading every file with union_by_name adds production's as nulls)
    assert [sorted(k for k, v in f.items() if v is not None) for f in pairs.features_shadow] == [
        sorted(RATES)
    ] * 8
    np.testing.assert_allclose(pairs.prediction_shadow, challenger.predict(vectors), rtol=1e-12)
    assert not np.allclose(pairs.prediction_shadow, pairs.prediction)  # a different model indeed
    # production's missing-value policy applies: the stale driver's defaults, named as missing
    stale = pairs[pairs.driver_id == STALE_DRIVER].iloc[0]
    assert stale.features_shadow["conv_rate"] == 0.25 and list(stale.missing_shadow) == RATES
    assert server._shadow.scored == 8 and server._shadow.dropped == server._shadow.failed == 0


def test_http_answers_are_byte_identical_with_and_without_a_challenger(store):
    from fastapi.testclient import TestClient

    from featurestore.server import app as server_app
    from featurestore.server import create_app
    from featurestore.server.routers import models as models_router

    register(store, aliases=["production"])
    extra = () if models_router.router in server_app.ROUTERS else (models_router.router,)
    body = {"entities": [{"driver_id": d} for d in (4, 8, 15, 16, 23, 29)], "request_id": "same-id"}
    with TestClient(create_app(store, routers=extra)) as client:
        before = client.post("/models/eta@production/predict", json=body)
        assert before.status_code == 200, before.text
        ch, _ = register(store, kind="tree", aliases=["challenger"])
        answers = [client.post("/models/eta@production/predict", json=body) for _ in range(3)]
        server = client.app.state.model_server
        assert server.flush_shadow()
        answers.append(client.post("/models/eta@production/predict", json=body))
        assert server.flush_shadow()
        assert server._targets[("eta", "challenger")] == ch.version
        assert server._shadow.scored >= 6  # the challenger was scoring while these were answered
    assert all(a.status_code == 200 and a.content == before.content for a in answers)


def test_not_shadowed_by_version_other_alias_or_same_version(store, tmp_path):
    prod, _ = register(store, aliases=["production", "staging"])
    ch, _ = register(store, kind="ridge", aliases=["challenger"])
    server, log = open_server(store, tmp_path)
    with server:
        predict(server, "eta@production", [1], "warm-up")
        predict(server, "eta@production", [1], "shadowed")
        predict(server, f"eta@{prod.version}", [1, 2], "by-number")
        predict(server, "eta@staging", [1, 2], "other-alias")
        server.predict("eta", [{"driver_id": 1}], version=prod.version, request_id="version-kw")
        server.predict("eta@challenger", [{"driver_id": 1}], request_id="the-challenger-itself")
        store.models.set_alias("eta", "challenger", prod.version)  # challenger == production
        predict(server, "eta@production", [1, 2], "same-version")
        _, shadow = logged(server, log)
    assert set(shadow.request_id) == {"shadowed"}


def test_a_challenger_lacking_an_input_is_not_shadowed_and_warned_once(store, tmp_path, caplog):
    register(store, service="rates", aliases=["production"])
    ch, _ = register(store, kind="ridge", aliases=["challenger"])  # needs trips too
    server, log = open_server(store, tmp_path)
    with server, caplog.at_level(logging.WARNING, logger="featurestore.models"):
        for i in range(3):
            out = predict(server, "eta@production", [1, 2], f"r-{i}")
            assert len(out["predictions"]) == 2
        primary, shadow = logged(server, log)
    assert len(primary) == 6 and shadow.empty
    warnings = [r.getMessage() for r in caplog.records if "not shadowed" in r.getMessage()]
    assert warnings == [
        f"shadow scoring: challenger eta@{ch.version} needs feature driver_stats:trips, which production "
        "eta@1 does not assemble: its requests are not shadowed"
    ]
    assert server._shadow.incompatible == 2  # the requests after the challenger was loaded


def test_a_challenger_that_raises_is_counted_and_the_request_answered(store, tmp_path, caplog):
    prod, _ = register(store, aliases=["production"])
    store.models.register("eta", Raiser(), feature_service="driver_activity")
    store.models.set_alias("eta", "challenger", prod.version + 1)
    server, log = open_server(store, tmp_path)
    with server, caplog.at_level(logging.WARNING, logger="featurestore.models"):
        for i in range(3):
            out = predict(server, "eta@production", [1, 2, 3], f"r-{i}")
            assert out["version"] == prod.version and len(out["predictions"]) == 3
        primary, shadow = logged(server, log)
    assert len(primary) == 9 and shadow.empty
    assert server._shadow.failed == 6 and server._shadow.scored == 0  # the first request found it
    failures = [r.getMessage() for r in caplog.records if "failed on" in r.getMessage()]
    assert len(failures) == 1 and "this challenger is broken" in failures[0]  # rate-limited


def test_shadowing_follows_the_challenger_alias(store, tmp_path):
    register(store, aliases=["production"])
    server, log = open_server(store, tmp_path)
    with server:
        predict(server, "eta@production", [1], "no-challenger-yet")
        predict(server, "eta@production", [1], "still-none")
        first, _ = register(store, kind="ridge", aliases=["challenger"])  # created: refresh finds it
        predict(server, "eta@production", [1], "to-first")
        second, _ = register(store, kind="tree", aliases=["challenger"])  # moved
        predict(server, "eta@production", [1], "to-second")
        store.models.delete_alias("eta", "challenger")
        predict(server, "eta@production", [1], "deleted")
        _, shadow = logged(server, log)
    assert list(zip(shadow.request_id, shadow.model_version)) == [
        ("to-first", first.version),
        ("to-second", second.version),
    ]
    assert ("eta", "challenger") not in server._targets and ("eta", first.version) not in server._loaded


def test_a_full_queue_drops_and_counts_and_close_drains(store, tmp_path):
    register(store, aliases=["production"])
    register(store, kind="ridge", aliases=["challenger"])
    server, log = open_server(store, tmp_path)
    predict(server, "eta@production", [1], "warm-up")
    shadow = server._shadow
    assert shadow is not None
    shadow.max_queued = 5
    with shadow._cond:  # hold the worker off while the queue fills
        for i in range(3):
            server.predict("eta@production", [{"driver_id": 1}, {"driver_id": 2}], request_id=f"r-{i}")
    server.close()  # scores what was queued before the log's last flush
    frame = log.read("eta").to_pandas()
    assert shadow.dropped == 2
    assert sorted(frame[frame.variant == "shadow"].request_id) == [
        "r-0",
        "r-0",
        "r-1",
        "r-1",
    ]  # warm-up found it


def test_an_unclosed_server_is_collected_and_its_shadow_thread_exits(store, tmp_path):
    """The worker holds the server weakly: dropping an unclosed server frees it (and its caches),
    and the shadow thread (and the watcher) exit instead of keeping it alive for ever."""
    register(store, aliases=["production"])
    register(store, kind="ridge", aliases=["challenger"])
    log = PredictionLog(tmp_path / "predictions", flush_interval=3600)
    server = ModelServer(store, prediction_log=log, refresh_interval=0.05)
    predict(server, "eta@production", [1], "warm-up")
    predict(server, "eta@production", [1, 2], "shadowed")
    scorer = server._shadow
    assert scorer is not None and scorer.scored == 2
    threads = [scorer._thread, server._watcher]
    ref = weakref.ref(server)
    del server
    gc.collect()
    assert ref() is None
    for thread in threads:
        thread.join(5)
        assert not thread.is_alive(), thread.name
    log.close()


def test_close_with_a_hung_challenger_drops_the_rest_and_never_logs_after(store, tmp_path, caplog):
    prod, _ = register(store, aliases=["production"])
    store.models.register("eta", Hanger(), feature_service="driver_activity")
    store.models.set_alias("eta", "challenger", prod.version + 1)
    HANGING.clear()
    RELEASE.clear()
    server, log = open_server(store, tmp_path)
    predict(server, "eta@production", [1], "warm-up")  # finds and loads the challenger
    shadow = server._shadow
    try:
        server.predict("eta@production", [{"driver_id": 1}, {"driver_id": 2}], request_id="hangs")
        assert HANGING.wait(5)
        for i in range(3):
            server.predict("eta@production", [{"driver_id": 3}], request_id=f"queued-{i}")
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="featurestore.models"):
            server.close()
        assert time.monotonic() - started < 5  # a short drain, not the challenger's whole hang
        assert shadow.dropped == 5 and shadow.scored == 0  # the hung batch and the queued rows
        assert any("5 rows not scored" in r.getMessage() for r in caplog.records)
    finally:
        RELEASE.set()
    shadow._thread.join(5)
    assert not shadow._thread.is_alive()
    assert log.pending == 0 and shadow.scored == 0 and shadow.dropped == 5  # nothing after close
    frame = log.read("eta").to_pandas()
    assert set(frame.variant) == {"primary"} and len(frame) == 6
