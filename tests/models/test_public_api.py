"""The public names of featurestore.models, and heavy libraries kept out of an import."""

from __future__ import annotations

import subprocess
import sys

import featurestore.models


def test_models_all_is_pinned():
    assert featurestore.models.__all__ == [
        "LoadedModel",
        "MissingFeatureError",
        "ModelInput",
        "ModelOutputError",
        "ModelRegistry",
        "ModelServer",
        "ModelUnavailable",
        "ModelVersion",
        "PredictionFailed",
        "PredictionLog",
        "TrainingSet",
        "TrainingSetComparison",
        "TrainingSets",
        "parse_model_ref",
    ]
    for name in featurestore.models.__all__:
        assert getattr(featurestore.models, name).__doc__


def test_importing_the_registry_and_router_loads_no_model_library():
    code = (
        "import sys, featurestore.models, server.routers.models; "
        "print(sorted(m for m in ('sklearn', 'skops', 'onnxruntime', 'joblib', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
