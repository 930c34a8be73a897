"""The public API is what `featurestore.__all__` says; this pins it so changes are deliberate."""

import subprocess
import sys

import featurestore

EXPECTED = {
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
}


def test_all_is_pinned():
    assert set(featurestore.__all__) == EXPECTED


def test_every_public_name_exists_and_is_documented():
    for name in featurestore.__all__:
        obj = getattr(featurestore, name)
        if isinstance(obj, type):
            assert obj.__doc__, f"{name} has no docstring"


def test_errors_share_one_base():
    for name in featurestore.__all__:
        obj = getattr(featurestore, name)
        if isinstance(obj, type) and name.endswith("Error"):
            assert issubclass(obj, featurestore.FeatureStoreError)


def test_core_import_stays_light():
    """Importing featurestore must not pull in the server, scikit-learn or the online backends."""
    code = (
        "import sys, featurestore; heavy = [m for m in ('fastapi', 'sklearn', 'redis', 'uvicorn', 'skops') "
        "if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == ""
