"""Models beside the features: a registry of versioned models, training-set lineage, and serving.

    mv = store.models.register("eta", model, feature_service="driver_activity", training_set="eta_train")
    store.models.set_alias("eta", "production", mv.version)
    ModelServer(store).predict("eta@production", [{"driver_id": 1001}])

scikit-learn, skops and onnxruntime are imported only when a model needs them
(`pip install featurestore[models]`, `featurestore[onnx]`).
"""

from .lineage import TrainingSet, TrainingSetComparison, TrainingSets
from .prediction_log import PredictionLog
from .registry import ModelInput, ModelRegistry, ModelVersion, parse_model_ref
from .serving import (
    LoadedModel,
    MissingFeatureError,
    ModelOutputError,
    ModelServer,
    ModelUnavailable,
    PredictionFailed,
)

__all__ = [
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
