"""The model registry: versions, artifacts checked by sha256 on every load, signatures checked against
the feature service at registration, aliases with their history and audit trail."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from featurestore import ModelRegistryError, UnknownNameError
from featurestore.models.flavors import read_model_file
from tests.models.conftest import FEATURES, training_frame
from tests.postgres import each_registry  # noqa: F401 (a fixture: every test on both registries)

pytestmark = pytest.mark.usefixtures("each_registry")


class Doubler:
    """A scikit-learn-compatible model that is not from scikit-learn (joblib flavor)."""

    n_features_in_ = 3

    def predict(self, X):
        return np.asarray(X, dtype=float).sum(axis=1) * 2


def test_register_load_round_trip(store, linear_model):
    df, _ = training_frame()
    mv = store.models.register(
        "eta",
        linear_model,
        feature_service="driver_activity",
        metrics={"r2": np.float64(0.9)},
        params={"fit_intercept": True},
        tags={"team": "rides"},
        description="ETA model",
    )
    assert (mv.name, mv.version, mv.flavor, mv.format) == ("eta", 1, "sklearn", "skops")
    assert mv.columns == FEATURES
    assert mv.feature_refs == [f"driver_stats:{f}" for f in FEATURES]
    assert mv.registered_by == "tester" and mv.metrics == {"r2": 0.9} and mv.tags == {"team": "rides"}
    path = store.models.artifact_path(mv)
    assert path.is_relative_to(store.config.models_path / "eta" / "1")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == mv.sha256
    loaded = store.models.load("eta", version=1)
    np.testing.assert_array_equal(loaded.predict(df), linear_model.predict(df))

    second = store.models.register("eta", linear_model, feature_service="driver_activity")
    assert second.version == 2
    assert [v.version for v in store.models.versions("eta")] == [1, 2]
    assert store.models.list()[0]["latest_version"] == 2
    assert store.registry.audit_log("model_register")[0]["detail"]["version"] == 2


def test_all_versions_are_every_model_s_versions_with_their_aliases(store, linear_model):
    assert store.models.all_versions() == []
    for name in ("eta", "arrival", "eta"):
        store.models.register(name, linear_model, feature_service="driver_activity")
    store.models.set_alias("eta", "production", 1)
    every = store.models.all_versions()
    assert [(mv.name, mv.version) for mv in every] == [("arrival", 1), ("eta", 1), ("eta", 2)]
    assert every == [*store.models.versions("arrival"), *store.models.versions("eta")]
    assert every[1].aliases == ("production",)


def test_a_modified_artifact_refuses_to_load(store, linear_model):
    mv = store.models.register("eta", linear_model, feature_service="driver_activity")
    path = store.models.artifact_path(mv)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelRegistryError, match="modified after registration"):
        store.models.load("eta@1")
    with pytest.raises(ModelRegistryError, match="modified after registration"):
        store.models.set_alias("eta", "production", 1)  # an alias never moves to a file that would not load
    path.unlink()
    with pytest.raises(ModelRegistryError, match="missing"):
        store.models.load("eta", version=1)


def test_non_sklearn_models_are_pickled_and_checked_too(store):
    mv = store.models.register("doubler", Doubler(), feature_service="driver_activity")
    assert (mv.flavor, mv.format) == ("sklearn", "joblib")
    model = store.models.load("doubler")
    assert model.predict([[1, 2, 3]]).tolist() == [12.0]
    path = store.models.artifact_path(mv)
    path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(ModelRegistryError, match="modified"):
        store.models.load("doubler")


def test_signature_mismatch_is_refused_at_registration(store):
    from sklearn.linear_model import LinearRegression

    df, y = training_frame(columns=["conv_rate", "acc_rate"])
    two_columns = LinearRegression().fit(df, y)
    with pytest.raises(ModelRegistryError, match=r"fitted on columns \['conv_rate', 'acc_rate'\].*'trips'"):
        store.models.register("eta", two_columns, feature_service="driver_activity")
    numpy_fitted = LinearRegression().fit(df.to_numpy(), y)
    with pytest.raises(ModelRegistryError, match="expects 2 feature"):
        store.models.register("eta", numpy_fitted, feature_service="driver_activity")
    renamed = LinearRegression().fit(df.rename(columns={"acc_rate": "acc_rat"}), y)
    with pytest.raises(ModelRegistryError, match="did you mean 'acc_rate'"):
        store.models.register("eta", renamed, feature_service="rates")
    with pytest.raises(UnknownNameError, match="did you mean 'rates'"):
        store.models.register("eta", two_columns, feature_service="rate")
    assert store.registry.backend.model_versions() == []
    assert not list(store.config.models_path.glob("eta/*"))  # nothing left behind

    # the model's own column order wins; a request-time value may complete the signature
    df3, y3 = training_frame(columns=["trips", "distance", "conv_rate", "acc_rate"])
    mv = store.models.register(
        "eta",
        LinearRegression().fit(df3, y3),
        feature_service="driver_activity",
        request_features=["distance"],
    )
    assert mv.columns == ["trips", "distance", "conv_rate", "acc_rate"]
    assert mv.request_features == ["distance"]
    assert [i.ref for i in mv.inputs] == [
        "driver_stats:trips",
        None,
        "driver_stats:conv_rate",
        "driver_stats:acc_rate",
    ]


def test_aliases_move_with_history_and_audit(store, linear_model):
    for _ in range(3):
        store.models.register("eta", linear_model, feature_service="driver_activity")
    assert store.models.get("eta").version == 3  # no production alias: the latest
    store.models.set_alias("eta", "production", 1)
    store.models.set_alias("eta", "staging", 3, actor="ci")
    assert store.models.get("eta").version == 1  # the production alias
    store.models.set_alias("eta", "production", 2)
    assert store.models.resolve("eta@production") == ("eta", 2)
    assert store.models.get("eta", alias="staging").aliases == ("staging",)
    store.models.delete_alias("eta", "staging")
    assert store.models.aliases("eta") == {"production": 2}

    moves = [
        (e["event"], e["alias"], e["from_version"], e["version"], e["actor"])
        for e in store.models.history("eta")
        if e["event"] != "register"
    ]
    assert moves == [
        ("alias_set", "production", None, 1, "tester"),
        ("alias_set", "staging", None, 3, "ci"),
        ("alias_set", "production", 1, 2, "tester"),
        ("alias_delete", "staging", 3, None, "tester"),
    ]
    audit = [
        (a["action"], a["target"], a["detail"])
        for a in reversed(store.registry.audit_log())
        if a["action"].startswith("model_alias")
    ]
    assert audit == [
        ("model_alias_set", "model:eta@production", {"from": None, "to": 1}),
        ("model_alias_set", "model:eta@staging", {"from": None, "to": 3}),
        ("model_alias_set", "model:eta@production", {"from": 1, "to": 2}),
        ("model_alias_delete", "model:eta@staging", {"from": 3}),
    ]


def test_bad_references_and_names_get_clear_errors(store, linear_model):
    store.models.register("eta", linear_model, feature_service="driver_activity")
    with pytest.raises(UnknownNameError, match="unknown model 'etb' .*did you mean 'eta'"):
        store.models.get("etb")
    with pytest.raises(UnknownNameError, match="alias of model 'eta'"):
        store.models.load("eta@production")
    with pytest.raises(UnknownNameError, match="version of model 'eta'.*known: '1'"):
        store.models.load("eta", version=4)
    for alias in ("3", "latest", "bad alias", "production\n"):
        with pytest.raises(ModelRegistryError, match="alias"):
            store.models.set_alias("eta", alias, 1)
    assert store.models.aliases("eta") == {}
    for name in ("bad/name", "eta\n"):  # a trailing newline too (the name becomes a folder)
        with pytest.raises(ModelRegistryError, match="model name"):
            store.models.register(name, linear_model, feature_service="driver_activity")
    assert store.models.names() == ["eta"]
    with pytest.raises(ModelRegistryError, match="not one of its inputs.*did you mean 'trips'"):
        store.models.register(
            "eta", linear_model, feature_service="driver_activity", missing_policy={"trip": 0}
        )
    with pytest.raises(ModelRegistryError, match="predict"):
        store.models.register("eta", object(), feature_service="driver_activity")


def test_onnx_models_are_served_by_onnxruntime(store):
    pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    weights = np.array([[2.0], [-1.0], [0.01]], dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["XW"]), helper.make_node("Add", ["XW", "B"], ["Y"])],
        "linear",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 1])],
        [numpy_helper.from_array(weights, "W"), numpy_helper.from_array(np.array([0.5], np.float32), "B")],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(proto)
    mv = store.models.register("linear", proto, feature_service="driver_activity")
    assert (mv.flavor, mv.format) == ("onnx", "onnx")
    X = np.array([[0.5, 0.25, 10.0], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(store.models.load("linear").predict(X), X @ weights[:, 0] + 0.5, rtol=1e-6)
    with pytest.raises(ModelRegistryError, match="expects 3 feature"):
        store.models.register("linear", proto, feature_service="rates")


def test_model_files_from_disk(store, tmp_path, linear_model):
    import skops.io as sio
    from sklearn.ensemble import HistGradientBoostingRegressor

    sio.dump(linear_model, tmp_path / "linear.skops")
    mv = store.models.register("eta", tmp_path / "linear.skops", feature_service="driver_activity")
    assert mv.format == "skops"
    df, y = training_frame()
    sio.dump(HistGradientBoostingRegressor(max_iter=3).fit(df, y), tmp_path / "hgb.skops")
    with pytest.raises(ModelRegistryError, match="does not trust by default"):
        read_model_file(tmp_path / "hgb.skops")
    with pytest.raises(ModelRegistryError, match="not found"):
        read_model_file(tmp_path / "nope.skops")
    # registered as an object, its extra trusted types are recorded and trusted again on load
    hgb = HistGradientBoostingRegressor(max_iter=3).fit(df, y)
    mv = store.models.register("hgb", hgb, feature_service="driver_activity")
    assert mv.format == "skops" and mv.details["trusted_types"]
    np.testing.assert_array_equal(store.models.load("hgb").predict(df), hgb.predict(df))
