"""The SparkSession the Spark engine runs on (`[offline] engine = "spark"`, SPEC §14).

    spark = spark_session("local[*]")     # the active session if there is one, else a new one

An application that already has a SparkSession (a notebook, `spark-submit`, a test fixture) keeps
it: the engine uses the active (or default) session whatever its master, and leaves its
configuration alone. Otherwise one is built for
`[offline] spark_master` (`FS_SPARK_MASTER`). pyspark is imported here, not by `import featurestore`.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

#: where Debian and Ubuntu put OpenJDK 17, used when JAVA_HOME is not set
DEFAULT_JAVA_HOME = Path("/usr/lib/jvm/java-17-openjdk-amd64")


def spark_session(master: str) -> SparkSession:
    """The active or default SparkSession, used as it is; else a new one for `master` (no progress bars).

    The engine never changes the configuration of a session it did not create: it does not depend
    on the session time zone (times travel as instants through Parquet and Arrow)."""
    try:
        from pyspark.errors import PySparkRuntimeError
        from pyspark.sql import SparkSession
    except ImportError:
        raise ConfigError(
            '[offline] engine = "spark" needs pyspark: pip install "featurestore[spark]" '
            "(and a Java 17 runtime)"
        ) from None
    try:
        return SparkSession.active()  # this thread's session, else the application's default one
    except PySparkRuntimeError:
        pass  # none yet
    prepare_environment(master)
    java = Path(os.environ["JAVA_HOME"]) / "bin" / "java" if "JAVA_HOME" in os.environ else None
    if (java is not None and not java.is_file()) or (java is None and shutil.which("java") is None):
        where = f"JAVA_HOME={os.environ['JAVA_HOME']} has no bin/java" if java else "no java on PATH"
        raise ConfigError(
            f'[offline] engine = "spark" needs a Java 17 or 21 runtime ({where}): install one '
            "(apt-get install openjdk-17-jre-headless) or point JAVA_HOME at it"
        )
    try:
        return (
            SparkSession.builder.master(master)
            .appName("featurestore")
            .config("spark.ui.showConsoleProgress", "false")
            .getOrCreate()
        )
    except (
        Exception
    ) as e:  # the JVM's errors arrive as Py4JJavaError, a gateway failure as PySparkRuntimeError
        first = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise ConfigError(
            f"cannot start a Spark session for [offline] spark_master = {master!r} (FS_SPARK_MASTER): "
            f"{first[:300]}"
        ) from None


def prepare_environment(master: str = "local[*]") -> None:
    """Point Spark at a Java runtime (Debian's OpenJDK 17 when JAVA_HOME is unset and it exists)
    and, for a local master, its Python workers at this interpreter, unless set.

    Without PYSPARK_PYTHON local workers run the first `python3` on PATH, which need not have
    pyarrow, duckdb or featurestore installed (a virtualenv). A cluster's executors have their own
    interpreter: this one's path means nothing there."""
    if master.startswith("local"):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if "JAVA_HOME" not in os.environ and DEFAULT_JAVA_HOME.is_dir():
        os.environ["JAVA_HOME"] = str(DEFAULT_JAVA_HOME)
