"""Starting Spark fails with one clear error naming what to fix, never a Java stack trace."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

START = """
from featurestore.offline.spark_session import spark_session
try:
    spark_session({master!r})
except Exception as e:
    print(type(e).__name__ + ": " + str(e))
else:
    print("started")
"""


def start(master: str, **env: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", START.format(master=master)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.stdout.strip()


def test_no_java_runtime_names_java_home_and_the_package():
    out = start("local[1]", JAVA_HOME="/nonexistent")
    assert out.startswith("ConfigError: ") and "JAVA_HOME=/nonexistent has no bin/java" in out, out
    assert "openjdk-17-jre-headless" in out


@pytest.mark.slow
def test_a_master_spark_refuses_names_the_setting_in_one_line():
    out = start("local[not-a-number]")
    assert out.startswith("ConfigError: cannot start a Spark session for [offline] spark_master"), out
    assert "\n" not in out and "at org.apache" not in out
