"""One SparkSession (`local[2]`) for every Spark test, and stores that run on the Spark engine.

Spark needs a Java runtime: without one these tests are skipped, and fail under CI=true
(`.ci/run` installs openjdk-17-jre-headless when `java` is missing)."""

from __future__ import annotations

import dataclasses
import os
import shutil

import pytest

from featurestore import FeatureStore
from featurestore.config import OfflineConfig
from tests.redis_server import missing


@pytest.fixture(scope="session")
def spark():
    """The session's SparkSession; the Spark engine finds it as the active session."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        missing("no pyspark: pip install 'featurestore[spark]'")
    from pyspark.sql import SparkSession

    from featurestore.offline.spark_session import DEFAULT_JAVA_HOME, prepare_environment, spark_session

    if "JAVA_HOME" not in os.environ and not DEFAULT_JAVA_HOME.is_dir() and shutil.which("java") is None:
        missing("no Java runtime for Spark: apt-get install openjdk-17-jre-headless")
    prepare_environment()
    session = (
        SparkSession.builder.master("local[2]")
        .appName("featurestore-tests")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.default.parallelism", "3")  # three buckets: keys spread over several
        .config("spark.sql.shuffle.partitions", "3")
        .config("spark.driver.memory", "1g")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    assert spark_session("local[*]") is session  # the engine uses the active session
    yield session
    session.stop()


def on_spark(store: FeatureStore) -> FeatureStore:
    """A second FeatureStore over the same repo, registry and storage, with `[offline] engine = "spark"`."""
    return FeatureStore(config=dataclasses.replace(store.config, offline=OfflineConfig(engine="spark")))
