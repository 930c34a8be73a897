"""Model files are untrusted input: an ONNX model that would make onnxruntime read another file
(external data) is refused at registration and at load, wherever in the model that tensor hides;
bytes that are not a model are refused at registration with the problem named."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest

from featurestore import ModelRegistryError
from featurestore.models import ModelServer, ModelUnavailable, flavors
from featurestore.models.flavors import OnnxModel
from featurestore.models.onnx_safety import check_onnx_model
from tests.models import onnx_files

pytest.importorskip("onnxruntime")

CONFIG = "featurestore.toml"  # in the repo folder, the working directory of these tests

HIDING_PLACES = [
    (onnx_files.reads_file, "graph.initializer['F']"),
    (onnx_files.reads_file_in_constant, "graph.node['secret'].attribute['value'].t['F']"),
    (onnx_files.reads_file_in_subgraph, "graph.node['choose'].attribute['then_branch'].g.initializer['F']"),
    (onnx_files.reads_file_in_function, "functions['secret_reader'].node['inner'].attribute['value'].t['F']"),
    (
        onnx_files.reads_file_in_sparse_initializer,
        "graph.node[0].attribute['sparse_value'].sparse_tensor.values['F']",
    ),
]


@pytest.fixture
def in_repo(store, monkeypatch):
    """The repo folder as the working directory (as under `fs serve`); the size of its config file."""
    monkeypatch.chdir(store.config.repo_path)
    return os.path.getsize(CONFIG)


@pytest.mark.parametrize("build, where", HIDING_PLACES, ids=[b.__name__ for b, _ in HIDING_PLACES])
def test_an_onnx_model_reading_a_file_is_refused_at_registration(store, in_repo, build, where):
    with pytest.raises(ModelRegistryError) as refused:
        store.models.register("leak", build(CONFIG, in_repo), feature_service="driver_activity")
    message = str(refused.value)
    assert message.startswith(
        f"model 'leak': tensor {where} keeps its data in '{CONFIG}' (ONNX external data)"
    )
    assert "save_as_external_data=False" in message  # what to do
    assert "leak" not in store.models.names()
    assert not (store.config.models_path / "leak").exists()


def test_absolute_locations_and_files_saved_beside_the_model_are_refused(store, tmp_path):
    with pytest.raises(
        ModelRegistryError, match="tensor graph.initializer\\['F'\\] keeps its data in '/etc/passwd'"
    ):
        store.models.register(
            "leak", onnx_files.reads_file("/etc/passwd", 16), feature_service="driver_activity"
        )
    # a model saved the usual way with its weights in a file beside it (a path to a .onnx file)
    proto = onnx.load_from_string(onnx_files.linear())
    path = tmp_path / "linear.onnx"
    onnx.save_model(proto, path, save_as_external_data=True, location="weights.bin", size_threshold=0)
    assert (tmp_path / "weights.bin").exists()
    with pytest.raises(
        ModelRegistryError, match="tensor graph.initializer\\['W'\\] keeps its data in 'weights.bin'"
    ):
        store.models.register("linear", path, feature_service="driver_activity")
    with pytest.raises(
        ModelRegistryError, match="tensor graph.initializer\\['W'\\] keeps its data in 'weights.bin'"
    ):
        store.models.register(
            "linear", onnx.load(path, load_external_data=False), feature_service="driver_activity"
        )
    # loaded whole and saved in one file, as the message says, it registers and serves
    onnx.save_model(onnx.load(path), tmp_path / "whole.onnx", save_as_external_data=False)
    mv = store.models.register("linear", tmp_path / "whole.onnx", feature_service="driver_activity")
    X = np.array([[0.5, 0.25, 10.0]])
    np.testing.assert_allclose(
        store.models.load_version(mv).predict(X), X @ onnx_files.WEIGHTS[:, 0] + 0.5, rtol=1e-6
    )


def test_an_onnx_model_reading_a_file_already_in_the_registry_is_refused_at_load(store, in_repo):
    store.models.register("planted", onnx_files.linear(), feature_service="driver_activity")
    onnx_files.plant(store, "planted", 1, onnx_files.reads_file_in_subgraph(CONFIG, in_repo))
    expected = (
        "model planted@1: model.onnx: tensor graph.node['choose'].attribute['then_branch'].g.initializer['F'] "
        f"keeps its data in '{CONFIG}'"
    )
    with pytest.raises(ModelRegistryError) as refused:
        store.models.load("planted")
    assert str(refused.value).startswith(expected)
    with ModelServer(store, log_predictions=False, watch=False) as server:
        with pytest.raises(ModelUnavailable) as unavailable:
            server.predict("planted", [{"driver_id": 1}])
    assert str(unavailable.value).startswith(expected)


def test_past_the_check_onnxruntime_finds_no_file_to_read(store, in_repo, monkeypatch):
    """The second defence: onnxruntime resolves external data in an empty folder, not the working dir."""
    monkeypatch.setattr(flavors, "check_onnx_model", lambda data, what="": None)
    for build, _ in HIDING_PLACES:
        with pytest.raises(Exception, match="featurestore-onnx-no-external-data-") as refused:
            OnnxModel(build(CONFIG, in_repo))
        assert "project" not in str(refused.value)
    with pytest.raises(Exception, match="(?i)absolute path not allowed|escapes"):
        OnnxModel(onnx_files.reads_file("/etc/passwd", 16))
    with pytest.raises(Exception, match="escapes"):
        OnnxModel(onnx_files.reads_file(f"../{os.path.basename(os.getcwd())}/{CONFIG}", in_repo))


JUNK = {
    "hello": (b"hello", "not a valid ONNX model \\(protobuf\\): wire type 4"),
    "300 random bytes": (np.random.default_rng(11).bytes(300), "not a valid ONNX model \\(protobuf\\)"),
    "empty": (b"", "not an ONNX model: it has no graph"),
    "protobuf without a graph": (b"\x08\x07", "not an ONNX model: it has no graph"),
    "truncated": (onnx_files.linear()[:-3], "not a valid ONNX model \\(protobuf\\): .*runs past the end"),
    "unknown operator": (
        onnx_files.linear().replace(b"MatMul", b"NoSuch"),
        "onnxruntime cannot load this ONNX model: .*NoSuch",
    ),
}


@pytest.mark.parametrize("data, message", JUNK.values(), ids=JUNK.keys())
def test_bytes_that_are_not_an_onnx_model_are_refused_at_registration(store, data, message):
    with pytest.raises(ModelRegistryError, match=f"^model 'junk': {message}"):
        store.models.register("junk", data, feature_service="driver_activity", flavor="onnx")
    assert "junk" not in store.models.names()


def test_model_files_that_do_not_parse_name_the_file(store, tmp_path):
    for name, problem in (
        ("junk.skops", "is not a readable skops file"),
        ("junk.joblib", "could not be unpickled"),
    ):
        (tmp_path / name).write_bytes(b"hello")
        with pytest.raises(ModelRegistryError, match=f"{tmp_path / name} {problem}"):
            store.models.register("junk", tmp_path / name, feature_service="driver_activity")
    with pytest.raises(ModelRegistryError, match=f"model file {tmp_path / 'nope.onnx'} not found"):
        store.models.register("junk", tmp_path / "nope.onnx", feature_service="driver_activity")


# -- found by a hostile review ---------------------------------------------------------------------


def _varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b, v = v & 0x7F, v >> 7
        out.append(b | 0x80 if v else b)
        if not v:
            return bytes(out)


def _field(number: int, payload: bytes, high_bit: bool = False) -> bytes:
    """A length-delimited field; with `high_bit`, its tag carries bit 32, which protobuf's 32-bit tag
    reader (onnxruntime's) drops: the same field to onnxruntime, a field number past 2^29 to a reader
    that keeps every bit."""
    key = (number << 3) | 2
    return _varint(key | (1 << 32) if high_bit else key) + _varint(len(payload)) + payload


def test_a_field_tag_with_bits_past_32_cannot_hide_external_data():
    from onnx import TensorProto, helper

    tensor = TensorProto(name="F", data_type=TensorProto.UINT8, dims=[27]).SerializeToString()
    entry = _field(1, b"location") + _field(2, b"featurestore.toml")
    tensor += _field(13, entry, high_bit=True)
    graph = helper.make_graph([], "g", [], []).SerializeToString() + _field(5, tensor)
    data = _field(7, graph)
    with pytest.raises(ModelRegistryError, match="not a valid ONNX model .*field number"):
        check_onnx_model(data, "model 'm'")


def test_deep_nesting_is_refused_at_protobufs_limit():
    """2,000 nested If subgraphs: refused at depth 100, reading only that far (a walk to the bottom
    rebuilt each level's path: 40,000 levels took about 15 s)."""
    from onnx import helper

    graph = helper.make_graph([], "g", [], []).SerializeToString()
    for _ in range(2_000):  # graph -> node -> attribute -> g -> ...
        attribute = _field(1, b"then_branch") + _field(6, graph)
        node = _field(5, attribute)
        graph = _field(1, node)
    data = _field(7, graph)
    with pytest.raises(ModelRegistryError, match="nested deeper than 100 levels"):
        check_onnx_model(data, "model 'deep'")


def test_many_tiny_messages_are_read_in_bounded_memory():
    """256K empty nodes: the walk holds one message per level, not every field of the file (a list of
    them took about 80 bytes each)."""
    import tracemalloc

    graph = _field(1, b"") * (256 * 1024)  # 256K empty NodeProto fields
    data = _field(7, graph)
    tracemalloc.start()
    try:
        check_onnx_model(data, "model 'wide'")  # no tensor anywhere: accepted by the walker
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < len(data) + 1024 * 1024  # the copy of the bytes, plus a little
