"""Predictions in process: the model gets exactly the features an online lookup returns, in its own
column order; missing or stale features follow the model's policy; aliases hot-swap; every
prediction is logged."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from featurestore import ModelRegistryError, RetrievalError, UnknownNameError
from featurestore.models import (
    MissingFeatureError,
    ModelOutputError,
    ModelServer,
    PredictionFailed,
    PredictionLog,
)
from tests.models.conftest import FEATURES, STALE_DRIVER, training_frame


def online_frame(store, drivers, columns):
    values = store.get_online_features(
        [f"driver_stats:{c}" for c in columns], [{"driver_id": d} for d in drivers]
    ).to_dict()
    return pd.DataFrame({c: values[c] for c in columns})


@pytest.fixture
def server(store):
    with ModelServer(store, refresh_interval=0.2) as s:
        yield s


def test_predictions_are_the_model_on_the_online_features(store, server):
    from sklearn.linear_model import LinearRegression

    order = ["trips", "conv_rate", "acc_rate"]  # not the service's order
    df, y = training_frame(columns=order)
    model = LinearRegression().fit(df, y)
    store.models.register("eta", model, feature_service="driver_activity")
    drivers = [3, 1, 2, 3]
    out = server.predict("eta", [{"driver_id": d} for d in drivers], return_features=True)
    expected = model.predict(online_frame(store, drivers, order))
    assert out["predictions"] == expected.tolist()
    assert (out["model"], out["version"]) == ("eta", 1)
    assert list(out["features"]) == order
    assert out["missing"] == [[], [], [], []]
    # columns of entity values work the same
    again = server.predict("eta@1", {"driver_id": drivers})
    assert again["predictions"] == out["predictions"]


def test_missing_and_stale_features_follow_the_policy(store, server):
    from sklearn.linear_model import LinearRegression

    df, y = training_frame()
    model = LinearRegression().fit(df, y)
    store.models.register("strict", model, feature_service="driver_activity")
    store.models.register(
        "lenient",
        model,
        feature_service="driver_activity",
        missing_policy={"conv_rate": 0.5, "driver_stats:acc_rate": 0.25, "trips": 10},
    )
    store.models.register("partial", model, feature_service="driver_activity", missing_policy={"trips": 10})
    with pytest.raises(
        MissingFeatureError, match=r"'conv_rate'.*entity row 1 \{'driver_id': 999\}.*NOT_FOUND"
    ):
        server.predict("strict", [{"driver_id": 1}, {"driver_id": 999}])
    with pytest.raises(MissingFeatureError, match="OUTSIDE_MAX_AGE"):
        server.predict("strict", [{"driver_id": STALE_DRIVER}])
    with pytest.raises(MissingFeatureError, match="conv_rate"):
        server.predict("partial", [{"driver_id": 999}])

    out = server.predict(
        "lenient", [{"driver_id": 1}, {"driver_id": 999}, {"driver_id": STALE_DRIVER}], return_features=True
    )
    known = online_frame(store, [1], FEATURES)
    filled = pd.DataFrame({"conv_rate": [0.5, 0.5], "acc_rate": [0.25, 0.25], "trips": [10, 10]})
    expected = model.predict(pd.concat([known, filled], ignore_index=True))
    np.testing.assert_allclose(out["predictions"], expected)
    assert out["missing"] == [[], FEATURES, FEATURES]


def test_null_policy_passes_missing_values_to_the_model(store, server):
    from sklearn.ensemble import HistGradientBoostingRegressor

    df, y = training_frame()
    df.loc[::7, "conv_rate"] = np.nan
    model = HistGradientBoostingRegressor(max_iter=5).fit(df, y)
    store.models.register("hgb", model, feature_service="driver_activity", missing_policy="null")
    out = server.predict("hgb", [{"driver_id": 999}, {"driver_id": 2}])
    frame = pd.concat(
        [pd.DataFrame({c: [np.nan] for c in FEATURES}), online_frame(store, [2], FEATURES)], ignore_index=True
    )
    assert out["predictions"] == model.predict(frame).tolist()


def test_request_time_values_come_with_the_entity_rows(store, server):
    from sklearn.linear_model import LinearRegression

    cols = ["conv_rate", "distance", "acc_rate"]
    df, y = training_frame(columns=cols)
    model = LinearRegression().fit(df, y)
    store.models.register("eta", model, feature_service="rates", request_features=["distance"])
    out = server.predict("eta", [{"driver_id": 4, "distance": 12.5}])
    frame = online_frame(store, [4], ["conv_rate", "acc_rate"])
    frame.insert(1, "distance", [12.5])
    assert out["predictions"] == model.predict(frame).tolist()
    with pytest.raises(RetrievalError, match="entity row 0 lacks 'distance'"):
        server.predict("eta", [{"driver_id": 4}])
    with pytest.raises(RetrievalError, match="join key 'driver_id'"):
        server.predict("eta", [{"driver": 4, "distance": 1.0}])
    with pytest.raises(UnknownNameError):
        server.predict("eta@production", [{"driver_id": 4, "distance": 1.0}])


def test_alias_moves_swap_the_served_version(store, server):
    from sklearn.dummy import DummyRegressor

    df, _ = training_frame()
    for value in (1.0, 2.0):
        store.models.register(
            "const",
            DummyRegressor(strategy="constant", constant=value).fit(df, [0] * len(df)),
            feature_service="driver_activity",
        )
    store.models.set_alias("const", "production", 1)
    assert server.predict("const@production", [{"driver_id": 1}])["predictions"] == [1.0]
    assert server.predict("const", [{"driver_id": 1}])["version"] == 1
    store.models.set_alias("const", "production", 2)  # in process: swapped before set_alias returns
    assert server.predict("const@production", [{"driver_id": 1}])["predictions"] == [2.0]
    assert server.predict("const", [{"driver_id": 1}])["version"] == 2
    assert set(server._loaded) == {("const", 2)}  # version 1 is no longer served: unloaded

    # a move made by another process (another FeatureStore on the same repo) is seen by the watcher
    from featurestore import FeatureStore

    other = FeatureStore(store.repo_path)
    other.models.set_alias("const", "production", 1)
    import time

    deadline = time.monotonic() + 5
    while server.predict("const@production", [{"driver_id": 1}])["version"] != 1:
        assert time.monotonic() < deadline, "the alias move of another process was not picked up"
        time.sleep(0.05)

    store.models.delete_alias("const", "production")  # a deleted alias is not served any more
    with pytest.raises(UnknownNameError, match="alias of model 'const'"):
        server.predict("const@production", [{"driver_id": 1}])
    assert server.predict("const", [{"driver_id": 1}])["version"] == 2  # the default is now the latest


def test_an_alias_moved_while_it_is_first_resolved_is_followed(store, monkeypatch):
    """A refresh that runs between the first resolution of an alias and its filing (here: the move
    itself, in process) cannot see it; the served version must still be the new one."""
    from sklearn.dummy import DummyRegressor

    df, _ = training_frame()
    for value in (1.0, 2.0):
        store.models.register(
            "const",
            DummyRegressor(strategy="constant", constant=value).fit(df, [0] * len(df)),
            feature_service="driver_activity",
        )
    store.models.set_alias("const", "production", 1)
    store.models.set_alias("const", "staging", 1)
    with ModelServer(store, log_predictions=False, watch=False) as server:
        assert server.get("const@staging").version.version == 1  # "const" in use: moves refresh at once
        resolve = store.models.resolve
        moved = []

        def resolve_then_move(name, alias=None, **kw):
            found = resolve(name, alias=alias, **kw)
            if alias == "production" and not moved:
                moved.append(True)
                store.models.set_alias("const", "production", 2)  # the refresh runs here, in set_alias
            return found

        monkeypatch.setattr(store.models, "resolve", resolve_then_move)
        assert server.get("const@production").version.version == 2
        assert moved and server.predict("const@production", [{"driver_id": 1}])["predictions"] == [2.0]

    # The same for a model nothing has used yet (no refresh at all follows the move): seen too.
    store.models.set_alias("const", "production", 1)
    moved.clear()
    with ModelServer(store, log_predictions=False, watch=False) as server:
        assert server.get("const@production").version.version == 2
        assert moved


def test_a_model_that_fails_on_its_input_is_a_clear_error(store, server):
    from sklearn.linear_model import LinearRegression

    df, y = training_frame()
    store.models.register(
        "eta", LinearRegression().fit(df, y), feature_service="driver_activity", missing_policy="null"
    )  # LinearRegression cannot take the NaN this lets through
    assert len(server.predict("eta", [{"driver_id": 1}])["predictions"]) == 1
    with pytest.raises(PredictionFailed, match="model eta@1 failed on this input: ValueError.*NaN"):
        server.predict("eta", [{"driver_id": 999}])
    with pytest.raises(ModelRegistryError, match="not fitted"):
        store.models.register("eta", LinearRegression(), feature_service="driver_activity")


class EveryOtherRow:
    """A broken model: it answers for every other row only (or, with `scalar`, one number in all),
    and one probability row too many."""

    n_features_in_ = 3

    def __init__(self, scalar: bool = False):
        self.scalar = scalar

    def predict(self, X):
        X = np.asarray(X, dtype=float)
        return X.sum() if self.scalar else X[::2, 0]

    def predict_proba(self, X):
        return np.full((len(X) + 1, 2), 0.5)


def test_a_model_that_does_not_answer_one_prediction_per_row_is_an_error(store, tmp_path):
    store.models.register("halves", EveryOtherRow(), feature_service="driver_activity")
    store.models.register("scalar", EveryOtherRow(scalar=True), feature_service="driver_activity")
    log = PredictionLog(tmp_path / "predictions", flush_interval=60)
    with ModelServer(store, prediction_log=log) as server:
        assert len(server.predict("halves", [{"driver_id": 1}])["predictions"]) == 1
        assert log.pending == 1
        with pytest.raises(ModelOutputError, match=r"^model halves@1 returned 2 predictions for 3 rows$"):
            server.predict("halves", [{"driver_id": d} for d in (1, 2, 3)])
        with pytest.raises(ModelOutputError, match=r"^model halves@1 returned 2 probabilities for 1 rows$"):
            server.predict("halves", [{"driver_id": 1}], probabilities=True)
        with pytest.raises(
            ModelOutputError,
            match=r"^model scalar@1 returned float \S+ as its predictions, not one per row \(2 rows\)$",
        ):
            server.predict("scalar", [{"driver_id": 1}, {"driver_id": 2}])
        assert log.pending == 1  # nothing logged for the refused answers
    assert issubclass(ModelOutputError, ModelRegistryError)


def test_every_prediction_is_logged(store, tmp_path):
    from sklearn.linear_model import LinearRegression

    df, y = training_frame()
    model = LinearRegression().fit(df, y)
    store.models.register(
        "eta",
        model,
        feature_service="driver_activity",
        missing_policy={"conv_rate": 0.0, "acc_rate": 0.0, "trips": 0},
    )
    log = PredictionLog(tmp_path / "predictions", flush_interval=60)
    with ModelServer(store, prediction_log=log) as server:
        first = server.predict("eta", [{"driver_id": 1}, {"driver_id": 999}], request_id="req-1")
        second = server.predict("eta", {"driver_id": [2]})
        assert log.pending == 3
        assert log.flush() == 3 and log.pending == 0
        files = list((tmp_path / "predictions" / "eta").glob("date=*/part-*.parquet"))
        assert len(files) == 1
    rows = log.read("eta").to_pylist()
    assert [(r["request_id"], r["row"], r["driver_id"], r["model_version"]) for r in rows] == [
        ("req-1", 0, 1, 1),
        ("req-1", 1, 999, 1),
        (second["request_id"], 0, 2, 1),
    ]
    assert [r["prediction"] for r in rows] == first["predictions"] + second["predictions"]
    online = online_frame(store, [1], FEATURES).iloc[0].to_dict()
    assert rows[0]["features"] == pytest.approx(online)
    assert rows[1]["features"] == {"conv_rate": 0.0, "acc_rate": 0.0, "trips": 0}
    assert rows[1]["missing"] == FEATURES and rows[0]["missing"] == []
    assert rows[0]["ts"].tzinfo is not None
