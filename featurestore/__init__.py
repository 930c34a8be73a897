"""featurestore: features as Python code, leak-free training sets, sub-millisecond online lookups.

from featurestore import FeatureStore
store = FeatureStore("definitions")
store.apply()
"""

from .definitions import (
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
    FeatureStoreError,
    MaterializationError,
    ModelRegistryError,
    NotAppliedError,
    OnlineStoreUnavailable,
    PushError,
    RegistryError,
    RepoError,
    RetrievalError,
    UnknownNameError,
)
from .store import FeatureStore
from .types import Array, Bool, Bytes, Float32, Float64, Int32, Int64, String, UnixTimestamp, ValueType

__version__ = "0.1.0"

__all__ = [
    "Array",
    "Bool",
    "Bytes",
    "ConfigError",
    "CorruptOfflineFileError",
    "CsvSource",
    "DataFrameSource",
    "DataSource",
    "DefinitionError",
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
    "NotAppliedError",
    "OnlineStoreUnavailable",
    "ParquetSource",
    "PushError",
    "PushSource",
    "RegistryError",
    "RepoError",
    "RetrievalError",
    "String",
    "UnixTimestamp",
    "UnknownNameError",
    "ValueType",
    "__version__",
]
