"""ONNX model files are untrusted input: refuse a model that would make onnxruntime read other files.

An ONNX tensor may keep its data outside the model ("external data": `data_location = EXTERNAL`
and a `location`, resolved by onnxruntime against the model's folder or, for a model given as bytes,
the working directory). onnxruntime then reads that file and feeds its bytes to the graph, so an
uploaded model could answer the server's featurestore.toml (where API keys may live) as its
"predictions". A registered model must be one self-contained file: `check_onnx_model` refuses any
tensor with external data, at registration and again before every load.

    check_onnx_model(data, "model 'eta'")    # ModelRegistryError naming the tensor and where it is

It reads the protobuf wire format of the `ModelProto` itself (the `onnx` package is not a runtime
dependency; field numbers from onnx/onnx.proto, ONNX 1.23) and visits every message that can hold
a `TensorProto`: the graph's initializers and sparse initializers (values and indices), node
attributes (`t`, `tensors`, `sparse_tensor`, `sparse_tensors`) and the subgraphs in attributes (`g`,
`graphs`, at any depth), model-local functions (their nodes and attribute defaults), and training
graphs. A tensor is refused when its `data_location` is not DEFAULT or its `external_data` list is
not empty. Bytes that are not a well-formed ModelProto with a graph are refused too.

`harden(options)` is the second defence, on the onnxruntime side: see its docstring.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

from ..errors import ModelRegistryError

# Per message: field number -> (field name, message type, repeated) for the fields that lead to a
# TensorProto. Other fields are skipped. From onnx/onnx.proto:
_CHILDREN: dict[str, dict[int, tuple[str, str, bool]]] = {
    "ModelProto": {
        7: ("graph", "GraphProto", False),
        20: ("training_info", "TrainingInfoProto", True),
        25: ("functions", "FunctionProto", True),
    },
    "TrainingInfoProto": {
        1: ("initialization", "GraphProto", False),
        2: ("algorithm", "GraphProto", False),
    },
    "GraphProto": {
        1: ("node", "NodeProto", True),
        5: ("initializer", "TensorProto", True),
        15: ("sparse_initializer", "SparseTensorProto", True),
    },
    "NodeProto": {5: ("attribute", "AttributeProto", True)},
    "AttributeProto": {
        5: ("t", "TensorProto", False),
        6: ("g", "GraphProto", False),
        10: ("tensors", "TensorProto", True),
        11: ("graphs", "GraphProto", True),
        22: ("sparse_tensor", "SparseTensorProto", False),
        23: ("sparse_tensors", "SparseTensorProto", True),
    },
    "FunctionProto": {
        7: ("node", "NodeProto", True),
        11: ("attribute_proto", "AttributeProto", True),
    },
    "SparseTensorProto": {
        1: ("values", "TensorProto", False),
        2: ("indices", "TensorProto", False),
    },
    "TensorProto": {},
}
# The `name` field (a string) of the messages whose name says where a tensor is (a graph is named by
# the field or attribute that holds it).
_NAME_FIELD = {"NodeProto": 3, "AttributeProto": 1, "FunctionProto": 1, "TensorProto": 8}
_MODEL_GRAPH = 7
_TENSOR_EXTERNAL_DATA = 13  # repeated StringStringEntryProto {key = 1, value = 2}
_TENSOR_DATA_LOCATION = 14  # enum DataLocation {DEFAULT = 0, EXTERNAL = 1}

_VARINT, _FIXED64, _LENGTH, _START_GROUP, _END_GROUP, _FIXED32 = range(6)
_MAX_TAG = 0xFFFFFFFF  # protobuf reads a tag as 32 bits (and drops higher bits, which would hide a field)
_MAX_FIELD = (1 << 29) - 1
_MAX_DEPTH = 100  # protobuf's own default nesting limit; onnxruntime refuses deeper models anyway


class _Malformed(Exception):
    pass


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while pos < end and shift < 70:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise _Malformed(f"a truncated or over-long varint at byte {pos}")


def _fields(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, Any]]:
    """The fields of the message in data[start:end], one at a time: (number, wire type, int value or
    (start, end) span)."""
    pos = start
    while pos < end:
        at = pos
        value: Any = None
        key, pos = _varint(data, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0 or key > _MAX_TAG or number > _MAX_FIELD:
            raise _Malformed(f"field number {number} at byte {at}")
        if wire == _VARINT:
            value, pos = _varint(data, pos, end)
        elif wire == _LENGTH:
            length, pos = _varint(data, pos, end)
            if length > end - pos:
                raise _Malformed(f"field {number} at byte {at} runs past the end of its message")
            value, pos = (pos, pos + length), pos + length
        elif wire in (_FIXED64, _FIXED32):
            pos += 8 if wire == _FIXED64 else 4
            if pos > end:
                raise _Malformed(f"field {number} at byte {at} runs past the end of its message")
        else:  # groups (3, 4) never appear in ONNX; 6 and 7 do not exist
            raise _Malformed(f"wire type {wire} (field {number}) at byte {at}")
        yield number, wire, value


def _text(data: bytes, span: tuple[int, int], limit: int = 200) -> str:
    text = data[span[0] : min(span[1], span[0] + limit)].decode("utf-8", "replace")
    return text + ("..." if span[1] - span[0] > limit else "")


def _external_location(data: bytes, span: tuple[int, int]) -> str | None:
    """The `location` value of one external_data entry, if it is the location."""
    key = value = None
    for number, wire, v in _fields(data, *span):
        if wire == _LENGTH and number == 1:
            key = _text(data, v)
        elif wire == _LENGTH and number == 2:
            value = _text(data, v)
    return value if key == "location" else None


class _Message:
    """One message being read: its type, its fields still to come, and its place in the model (the
    path is built only for an error message, from the parents' names seen so far)."""

    __slots__ = ("counts", "field", "fields", "graph", "index", "kind", "name", "parent")

    def __init__(
        self,
        kind: str,
        fields: Iterator[tuple[int, int, Any]],
        parent: _Message | None,
        field: str,
        index: int | None = None,
    ):
        self.kind, self.fields, self.parent, self.field, self.index = kind, fields, parent, field, index
        self.name: str | None = None
        self.counts: dict[int, int] = {}
        self.graph = False  # (a ModelProto) it has a graph

    def path(self) -> str:
        parts = []
        message: _Message | None = self
        while message is not None:
            if message.field:  # named by its name, else by its index in a repeated field
                if message.name:
                    parts.append(f"{message.field}['{message.name}']")
                else:
                    parts.append(message.field + (f"[{message.index}]" if message.index is not None else ""))
            message = message.parent
        return ".".join(reversed(parts))


def _refuse_external(what: str, where: str, location: str | None) -> ModelRegistryError:
    kept = f" in {location!r}" if location else " in another file"
    return ModelRegistryError(
        f"{what}: tensor {where} keeps its data{kept} (ONNX external data): refused, because a registered "
        "model must be one self-contained file and the server must not read files a model names. Save the "
        "model with its tensors inside: onnx.save_model(onnx.load(path), new_path, save_as_external_data=False)"
    )


def check_onnx_model(data: bytes, what: str = "the ONNX model") -> None:
    """Raise ModelRegistryError unless `data` is a well-formed ONNX ModelProto with a graph and no
    tensor anywhere in it keeps its data outside the model (external data). `what` starts the message
    (e.g. "model 'eta'"). It does not check that onnxruntime can run the graph.

    One pass over the bytes, depth first, with an explicit stack of messages being read (at most
    `_MAX_DEPTH` deep), so its time and memory grow with the file, not faster."""
    data = bytes(data)
    stack = [_Message("ModelProto", _fields(data, 0, len(data)), None, "")]
    try:
        while stack:
            message = stack[-1]
            field = next(message.fields, None)
            if field is None:
                stack.pop()
                if message.kind == "ModelProto" and not message.graph:
                    raise ModelRegistryError(f"{what}: not an ONNX model: it has no graph")
                continue
            number, wire, value = field
            kind = message.kind
            if wire == _LENGTH and number == _NAME_FIELD.get(kind):
                message.name = _text(data, value) or None  # the last one wins, as in protobuf
            if kind == "TensorProto":
                if number == _TENSOR_EXTERNAL_DATA and wire == _LENGTH:
                    raise _refuse_external(what, message.path(), _external_location(data, value))
                if number == _TENSOR_DATA_LOCATION and wire == _VARINT and value:
                    raise _refuse_external(what, message.path(), None)
                continue
            if kind == "ModelProto" and number == _MODEL_GRAPH and wire == _LENGTH:
                message.graph = True
            child = _CHILDREN[kind].get(number)
            if child is None or wire != _LENGTH:  # a wire type protobuf would not read as this field
                continue
            if len(stack) >= _MAX_DEPTH:
                raise ModelRegistryError(
                    f"{what}: not a usable ONNX model: nested deeper than {_MAX_DEPTH} levels"
                )
            child_field, child_kind, repeated = child
            index = message.counts[number] = message.counts.get(number, -1) + 1
            stack.append(
                _Message(child_kind, _fields(data, *value), message, child_field, index if repeated else None)
            )
    except _Malformed as e:
        raise ModelRegistryError(f"{what}: not a valid ONNX model (protobuf): {e}") from None


_empty: str | None = None
_empty_lock = threading.Lock()


def _empty_folder() -> str:
    """A private empty folder of this process (removed at exit)."""
    global _empty
    with _empty_lock:
        if _empty is None:
            _empty = tempfile.mkdtemp(prefix="featurestore-onnx-no-external-data-")
            atexit.register(shutil.rmtree, _empty, True)
        return _empty


def harden(options: Any) -> Any:
    """Set the onnxruntime session options that keep a model from reading files, and return them.

    onnxruntime has no config entry that turns external data off. Two public entries narrow it:
    `session.model_external_initializers_file_folder_path` (the folder external data of a model
    loaded from bytes is resolved in, instead of the working directory) is pointed at an empty private
    folder, so a relative location finds nothing (onnxruntime refuses absolute ones and ones that
    escape the folder); and `session.load_model_format = ONNX`, so the bytes are parsed as the
    ModelProto `check_onnx_model` read, never as an ORT-format model.
    """
    options.add_session_config_entry("session.model_external_initializers_file_folder_path", _empty_folder())
    options.add_session_config_entry("session.load_model_format", "ONNX")
    return options
