"""The SparkSession the Spark engine runs on (`[offline] engine = "spark"`, SPEC §14).

    spark = spark_session("local[*]")     # the active session if there is one, else a new one

An application that already has a SparkSession (a notebook, `spark-submit`, a test fixture) keeps
it: the engine uses the active session whatever its master. Otherwise one is built for
`[offline] spark_master` (`FS_SPARK_MASTER`). pyspark is imported here, not by `import featurestore`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

#: where Debian and Ubuntu put OpenJDK 17, used when JAVA_HOME is not set
DEFAULT_JAVA_HOME = Path("/usr/lib/jvm/java-17-openjdk-amd64")


def spark_session(master: str) -> SparkSession:
    """The active SparkSession, or a new one for `master` (UTC session time zone, no progress bars)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise ConfigError(
            '[offline] engine = "spark" needs pyspark: pip install "featurestore[spark]" '
            "(and a Java 17 runtime)"
        ) from None
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    prepare_environment()
    return (
        SparkSession.builder.master(master)
        .appName("featurestore")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )


def prepare_environment() -> None:
    """Point Spark at a Java runtime and at this interpreter for its Python workers, unless set.

    Without PYSPARK_PYTHON the workers run the first `python3` on PATH, which need not have pyarrow,
    duckdb or featurestore installed (a virtualenv)."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if "JAVA_HOME" not in os.environ and DEFAULT_JAVA_HOME.is_dir():
        os.environ["JAVA_HOME"] = str(DEFAULT_JAVA_HOME)
