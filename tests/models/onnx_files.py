"""ONNX models for the tests, built with the `onnx` package (dev extra): a plain linear model on the
three features of `driver_activity`, and hostile ones that make onnxruntime read another file
(external data), hide that tensor deep in the model, or answer the wrong number of predictions."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

WEIGHTS = np.array([[2.0], [-1.0], [0.01]], dtype=np.float32)


def _model(nodes, output, initializers=(), sparse=(), functions=()) -> bytes:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 3])],
        [output],
        list(initializers),
        sparse_initializer=list(sparse),
    )
    opsets = [helper.make_opsetid("", 13)] + ([helper.make_opsetid("custom", 1)] if functions else [])
    return helper.make_model(graph, opset_imports=opsets, functions=list(functions)).SerializeToString()


def linear() -> bytes:
    """Y = X @ WEIGHTS + 0.5: one prediction per row."""
    return _model(
        [helper.make_node("MatMul", ["X", "W"], ["XW"]), helper.make_node("Add", ["XW", "B"], ["Y"])],
        helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 1]),
        [numpy_helper.from_array(WEIGHTS, "W"), numpy_helper.from_array(np.array([0.5], np.float32), "B")],
    )


def fixed_length(n: int) -> bytes:
    """A model that answers n values whatever the number of rows (a constant output)."""
    values = numpy_helper.from_array(np.arange(n, dtype=np.float32), "V")
    return _model(
        [helper.make_node("Identity", ["V"], ["Y"])],
        helper.make_tensor_value_info("Y", TensorProto.FLOAT, [n]),
        [values],
    )


def external(name: str, location: str, size: int) -> TensorProto:
    """A uint8 tensor of `size` bytes whose data onnxruntime reads from the file `location`."""
    tensor = TensorProto(name=name, data_type=TensorProto.UINT8, dims=[size])
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(size))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def _bytes_out(size: int):
    return helper.make_tensor_value_info("Y", TensorProto.FLOAT, [size])


def reads_file(location: str, size: int) -> bytes:
    """The exploit: an initializer kept in `location`; the model answers its bytes as predictions."""
    return _model(
        [helper.make_node("Cast", ["F"], ["Y"], to=TensorProto.FLOAT)],
        _bytes_out(size),
        [external("F", location, size)],
    )


def reads_file_in_constant(location: str, size: int) -> bytes:
    """The same, hidden in a Constant node's `value` attribute tensor."""
    constant = helper.make_node("Constant", [], ["F"], name="secret", value=external("F", location, size))
    return _model([constant, helper.make_node("Cast", ["F"], ["Y"], to=TensorProto.FLOAT)], _bytes_out(size))


def reads_file_in_subgraph(location: str, size: int) -> bytes:
    """The same, hidden in an initializer of an If node's then-branch (a subgraph in an attribute)."""

    def branch(tensor: TensorProto) -> onnx.GraphProto:
        cast = helper.make_node("Cast", [tensor.name], ["Z"], to=TensorProto.FLOAT)
        out = helper.make_tensor_value_info("Z", TensorProto.FLOAT, [size])
        return helper.make_graph([cast], "branch", [], [out], [tensor])

    plain = numpy_helper.from_array(np.zeros(size, np.uint8), "Zero")
    node = helper.make_node(
        "If",
        ["Cond"],
        ["Y"],
        name="choose",
        then_branch=branch(external("F", location, size)),
        else_branch=branch(plain),
    )
    cond = numpy_helper.from_array(np.array(True), "Cond")
    return _model([node], _bytes_out(size), [cond])


def reads_file_in_function(location: str, size: int) -> bytes:
    """The same, hidden in a model-local function's Constant node."""
    constant = helper.make_node("Constant", [], ["F"], name="inner", value=external("F", location, size))
    cast = helper.make_node("Cast", ["F"], ["out"], to=TensorProto.FLOAT)
    function = helper.make_function(
        "custom", "secret_reader", [], ["out"], [constant, cast], [helper.make_opsetid("", 13)]
    )
    return _model(
        [helper.make_node("secret_reader", [], ["Y"], domain="custom")],
        _bytes_out(size),
        functions=[function],
    )


def reads_file_in_sparse_initializer(location: str, size: int) -> bytes:
    """The same, in the values of a sparse initializer."""
    values = external("F", location, size)
    indices = numpy_helper.from_array(np.arange(size, dtype=np.int64), "F_indices")
    sparse = helper.make_sparse_tensor(values, indices, [size])
    dense = helper.make_node("Constant", [], ["D"], sparse_value=sparse)
    return _model([dense, helper.make_node("Cast", ["D"], ["Y"], to=TensorProto.FLOAT)], _bytes_out(size))


def plant(store, name: str, version: int, data: bytes) -> None:
    """Put `data` in place of a registered version's artifact, with a matching sha256 in the registry:
    a hostile file already in a registry (planted, or registered by an older release)."""
    mv = store.models.get(name, version)
    Path(store.models.artifact_path(mv)).write_bytes(data)
    with sqlite3.connect(store.config.registry_path) as con:  # tampering, so behind the registry's back
        con.execute(
            "UPDATE model_versions SET sha256 = ?, size = ? WHERE name = ? AND version = ?",
            (hashlib.sha256(data).hexdigest(), len(data), name, version),
        )
