"""featurestore: features as Python code, leak-free training sets, sub-millisecond online lookups.

from featurestore import FeatureStore
store = FeatureStore("definitions")
store.apply()
"""

from .definitions import (
    Aggregation,
    CsvSource,
    DataFrameSource,
    DataSource,
    DuckDBSource,
    Entity,
    FeatureService,
    FeatureView,
    Field,
    ParquetSource,
    PushSource,
)
from .errors import (
    ConfigError,
    CorruptOfflineFileError,
    DefinitionError,
    DefinitionsChangedError,
    FeatureStoreError,
    MaterializationError,
    ModelRegistryError,
    MonitoringError,
    NotAppliedError,
    OnlineStoreUnavailable,
    PermissionDeniedError,
    PipelineError,
    PushError,
    RegistryError,
    RepoError,
    RetrievalError,
    TransformError,
    UnknownNameError,
)
from .on_demand import OnDemandFeatureView, RequestSource, on_demand_feature_view
from .pipelines.definition import TrainingPipeline, training_pipeline
from .store import FeatureStore
from .types import Array, Bool, Bytes, Float32, Float64, Int32, Int64, String, UnixTimestamp, ValueType

__version__ = "0.1.0"

__all__ = [
    "Aggregation",
    "Array",
    "Bool",
    "Bytes",
    "ConfigError",
    "CorruptOfflineFileError",
    "CsvSource",
    "DataFrameSource",
    "DataSource",
    "DefinitionError",
    "DefinitionsChangedError",
    "DuckDBSource",
    "Entity",
    "FeatureService",
    "FeatureStore",
    "FeatureStoreError",
    "FeatureView",
    "Field",
    "Float32",
    "Float64",
    "Int32",
    "Int64",
    "MaterializationError",
    "ModelRegistryError",
    "MonitoringError",
    "NotAppliedError",
    "OnDemandFeatureView",
    "OnlineStoreUnavailable",
    "ParquetSource",
    "PermissionDeniedError",
    "PipelineError",
    "PushError",
    "PushSource",
    "RegistryError",
    "RepoError",
    "RequestSource",
    "RetrievalError",
    "String",
    "TrainingPipeline",
    "TransformError",
    "UnixTimestamp",
    "UnknownNameError",
    "ValueType",
    "__version__",
    "on_demand_feature_view",
    "training_pipeline",
]
