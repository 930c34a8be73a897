"""Flavors: how a kind of model is written to an artifact file and read back.

A flavor has three duties: say whether it handles a model (`handles`), write it to a folder
(`save` -> file name plus the details `load` needs), and read it back (`load`). The registry hashes
the file (sha256) after `save` and checks the hash before every `load`, so a flavor never reads a
file that differs from the one registered.

- `sklearn`: any scikit-learn-compatible estimator (an object with `predict`). scikit-learn
  estimators and pipelines are written with skops (a format that does not execute code on load;
  the types it must trust are recorded at registration and nothing else is trusted at load).
  Other objects with `predict` are written with joblib (pickle): only ever loaded after the sha256
  check, because unpickling runs code.
- `onnx`: an `onnx.ModelProto`, ONNX bytes or a path to a `.onnx` file; served by onnxruntime,
  when it is installed (`pip install featurestore[onnx]`). A model whose tensors keep their data in
  other files (ONNX external data) is refused at registration and at load (see `onnx_safety`).

Heavy libraries (scikit-learn, skops, joblib, onnxruntime) are imported only when used.
"""

from __future__ import annotations

import importlib.util
import io
import os
import pickle
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ModelRegistryError
from .onnx_safety import check_onnx_model, harden


@dataclass
class SavedArtifact:
    """What `Flavor.save` wrote: the file name (inside the version folder) and how to read it back."""

    file: str
    format: str
    details: dict[str, Any] = field(default_factory=dict)


class Flavor:
    """Base class of flavors; see the module docstring."""

    name: str = ""

    def handles(self, model: Any) -> bool:
        raise NotImplementedError

    def save(self, model: Any, folder: Path) -> SavedArtifact:
        raise NotImplementedError

    def load(self, data: bytes, saved: SavedArtifact) -> Any:
        """The model from the artifact's bytes (already checked against the recorded sha256)."""
        raise NotImplementedError


def is_sklearn(model: Any) -> bool:
    """A scikit-learn object, without importing scikit-learn when the model does not come from it."""
    if "sklearn" not in sys.modules:
        return False
    return any(c.__module__.split(".")[0] == "sklearn" for c in type(model).__mro__)


class SklearnFlavor(Flavor):
    """scikit-learn-compatible estimators: skops for scikit-learn objects, else joblib/pickle."""

    name = "sklearn"

    def handles(self, model: Any) -> bool:
        return callable(getattr(model, "predict", None))

    def save(self, model: Any, folder: Path) -> SavedArtifact:
        if is_sklearn(model) and importlib.util.find_spec("skops") is not None:
            import skops.io as sio

            try:
                data = sio.dumps(model)
                untrusted = sio.get_untrusted_types(data=data)
            except Exception:  # skops cannot represent every object: fall back to joblib below
                pass
            else:
                (folder / "model.skops").write_bytes(data)
                return SavedArtifact("model.skops", "skops", {"trusted_types": sorted(untrusted)})
        if importlib.util.find_spec("joblib") is not None:
            import joblib

            joblib.dump(model, folder / "model.joblib")
            return SavedArtifact("model.joblib", "joblib")
        with open(folder / "model.pkl", "wb") as f:
            pickle.dump(model, f, protocol=pickle.HIGHEST_PROTOCOL)
        return SavedArtifact("model.pkl", "pickle")

    def load(self, data: bytes, saved: SavedArtifact) -> Any:
        if saved.format == "skops":
            import skops.io as sio

            trusted = list(saved.details.get("trusted_types", []))
            extra = sorted(set(sio.get_untrusted_types(data=data)) - set(trusted))
            if extra:  # cannot happen after the sha256 check, unless skops itself changed its mind
                raise ModelRegistryError(f"{saved.file}: holds types not trusted at registration: {extra}")
            return sio.loads(data, trusted=trusted)
        if saved.format == "joblib":
            import joblib

            return joblib.load(io.BytesIO(data))
        if saved.format == "pickle":
            return pickle.loads(data)
        raise ModelRegistryError(f"{saved.file}: unknown sklearn artifact format {saved.format!r}")


class OnnxModel:
    """An ONNX graph served by onnxruntime, with the estimator methods serving calls.

    `predict(X)` feeds X (rows x features, cast to float32) to the graph's first input and returns
    its first output; `predict_proba` returns the second output when the graph has one
    (the skl2onnx convention for classifiers). The bytes are checked first: a model that would read
    other files (ONNX external data) is refused (`featurestore.models.onnx_safety`); `what` starts
    that error's message.
    """

    def __init__(self, data: bytes, what: str = "the ONNX model"):
        import onnxruntime as ort

        check_onnx_model(data, what)
        options = harden(ort.SessionOptions())
        options.intra_op_num_threads = 1  # one request is small; threads cost more than they give
        self.session = ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
        first = self.session.get_inputs()[0]
        self.input_name = first.name
        width = first.shape[1] if len(first.shape) == 2 else None
        self.n_features_in_: int | None = width if isinstance(width, int) else None
        self.outputs = [o.name for o in self.session.get_outputs()]

    def _run(self, X: Any) -> list[Any]:
        import numpy as np

        outputs: list[Any] = self.session.run(None, {self.input_name: np.asarray(X, dtype=np.float32)})
        return outputs

    def predict(self, X: Any) -> Any:
        out = self._run(X)[0]
        return out.reshape(-1) if out.ndim == 2 and out.shape[1] == 1 else out

    def predict_proba(self, X: Any) -> Any:
        out = self._run(X)
        if len(out) < 2:
            raise ModelRegistryError("this ONNX model has a single output: it gives no probabilities")
        return out[1]


def _onnx_bytes(model: Any) -> bytes | None:
    if isinstance(model, OnnxModel):
        return None
    if isinstance(model, (bytes, bytearray)):
        return bytes(model)
    if isinstance(model, (str, os.PathLike)) and str(model).endswith(".onnx"):
        return Path(model).read_bytes()
    if type(model).__name__ == "ModelProto" and hasattr(model, "SerializeToString"):
        data: bytes = model.SerializeToString()
        return data
    return None


class OnnxFlavor(Flavor):
    """ONNX graphs; loading needs onnxruntime."""

    name = "onnx"

    def handles(self, model: Any) -> bool:
        return _onnx_bytes(model) is not None

    def save(self, model: Any, folder: Path) -> SavedArtifact:
        data = _onnx_bytes(model)
        assert data is not None
        (folder / "model.onnx").write_bytes(data)
        return SavedArtifact("model.onnx", "onnx")

    def load(self, data: bytes, saved: SavedArtifact) -> Any:
        if importlib.util.find_spec("onnxruntime") is None:
            raise ModelRegistryError(
                f"{saved.file} is an ONNX model and onnxruntime is not installed: pip install 'featurestore[onnx]'"
            )
        return OnnxModel(data, saved.file)


FLAVORS: dict[str, Flavor] = {f.name: f for f in (OnnxFlavor(), SklearnFlavor())}


def flavor_for(model: Any, name: str | None = None) -> Flavor:
    """The flavor named `name`, or the first one that handles `model`."""
    if name is not None:
        try:
            return FLAVORS[name]
        except KeyError:
            raise ModelRegistryError(
                f"unknown flavor {name!r}: known flavors are {sorted(FLAVORS)}"
            ) from None
    for flavor in FLAVORS.values():
        if flavor.handles(model):
            return flavor
    raise ModelRegistryError(
        f"cannot register {type(model).__name__!r}: a model needs a predict() method (scikit-learn-compatible) "
        "or must be an ONNX model (onnx.ModelProto, bytes, or a path to a .onnx file)"
    )


def read_model_file(path: str | os.PathLike[str]) -> Any:
    """A model from a file the user points at (`fs models register PATH`): .onnx, .skops, .joblib/.pkl.

    `.skops` files load only when every type they hold is trusted by skops by default; pickle and
    joblib files run code when read, so only point at files you produced.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelRegistryError(f"model file {p} not found")
    suffix = p.suffix.lower()
    if suffix == ".onnx":
        return p.read_bytes()
    if suffix == ".skops":
        import skops.io as sio

        try:
            untrusted = sio.get_untrusted_types(file=p)
        except Exception as e:
            raise ModelRegistryError(f"{p} is not a readable skops file: {type(e).__name__}: {e}") from None
        if untrusted:
            raise ModelRegistryError(
                f"{p} holds types skops does not trust by default: {untrusted}; "
                "load it yourself with skops.io.load(..., trusted=[...]) and register the object"
            )
        try:
            return sio.load(p, trusted=[])
        except Exception as e:
            raise ModelRegistryError(f"{p} is not a readable skops file: {type(e).__name__}: {e}") from None
    if suffix in (".joblib", ".pkl", ".pickle"):
        import joblib

        try:
            return joblib.load(p)
        except Exception as e:
            raise ModelRegistryError(f"{p} could not be unpickled: {type(e).__name__}: {e}") from None
    raise ModelRegistryError(f"{p}: unknown model file type {suffix!r} (use .skops, .onnx, .joblib or .pkl)")
