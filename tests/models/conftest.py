"""Fixtures of the model tests: a small driver repo on disk (Parquet source, materialized online),
and models fitted on its features."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from featurestore import FeatureStore
from tests.repo_builder import make_repo

NOW = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
DRIVERS = list(range(1, 31))
STALE_DRIVER = 30  # its rows are 3 days old: OUTSIDE_MAX_AGE online (ttl is 1 day)
FEATURES = ["conv_rate", "acc_rate", "trips"]

DEFINITIONS = """
from datetime import timedelta
from featurestore import Entity, FeatureService, FeatureView, Field, Float64, Int64, ParquetSource

driver = Entity(name="driver", join_keys=["driver_id"])
stats_source = ParquetSource(name="stats_source", path="data/stats.parquet", timestamp_field="event_timestamp",
                             created_timestamp_field="created")
driver_stats = FeatureView(name="driver_stats", entities=[driver], ttl=timedelta(days=1), source=stats_source,
                           schema=[Field("driver_id", Int64), Field("conv_rate", Float64), Field("acc_rate", Float64),
                                   Field("trips", Int64)])
driver_activity = FeatureService(name="driver_activity", features=[driver_stats[["conv_rate", "acc_rate", "trips"]]])
rates = FeatureService(name="rates", features=[driver_stats[["conv_rate", "acc_rate"]]])
"""


def stats_rows(hours: int = 48, shift: float = 0.0) -> pa.Table:
    """Hourly rows per driver over the last `hours` hours (driver 30: only rows 3+ days old)."""
    rng = np.random.default_rng(7)
    ids, ts, conv, acc, trips = [], [], [], [], []
    for d in DRIVERS:
        start = NOW - timedelta(days=4) if d == STALE_DRIVER else NOW - timedelta(hours=hours)
        for h in range(hours):
            t = start + timedelta(hours=h)
            if d == STALE_DRIVER and t > NOW - timedelta(days=3):
                break
            ids.append(d)
            ts.append(t)
            conv.append(round(float(rng.random()) + shift, 6))
            acc.append(round(float(rng.random()), 6))
            trips.append(int(rng.integers(0, 100)))
    return pa.table(
        {
            "driver_id": pa.array(ids, pa.int64()),
            "event_timestamp": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "created": pa.array([t + timedelta(minutes=5) for t in ts], pa.timestamp("us", tz="UTC")),
            "conv_rate": pa.array(conv, pa.float64()),
            "acc_rate": pa.array(acc, pa.float64()),
            "trips": pa.array(trips, pa.int64()),
        }
    )


def build_store(
    root: Path, online: str = "sqlite", redis_url: str | None = None, config: str = ""
) -> FeatureStore:
    """The driver repo in `root`, applied and materialized up to now."""
    if online == "redis":
        cfg = (
            f'[online]\ntype = "redis"\nurl = "{redis_url}"\nkey_prefix = "fstest-{uuid.uuid4().hex[:10]}"\n'
        )
    else:
        cfg = '[online]\ntype = "sqlite"\npath = "data/online.db"\n'
    make_repo(root, {"features.py": DEFINITIONS}, {"data/stats.parquet": stats_rows()}, config=cfg + config)
    store = FeatureStore(root)
    store.apply()
    store.materialize(NOW - timedelta(days=5), NOW)
    return store


def training_frame(n: int = 200, columns: list[str] | None = None):
    """A random training frame over the feature columns and a label."""
    import pandas as pd

    rng = np.random.default_rng(1)
    cols = columns or FEATURES
    df = pd.DataFrame({c: rng.random(n) * (100 if c == "trips" else 1) for c in cols})
    y = 3 * df[cols[0]] - df[cols[-1]] / 50 + rng.normal(0, 0.01, n)
    return df, y


@pytest.fixture(autouse=True)
def _user(monkeypatch):
    monkeypatch.setenv("FS_USER", "tester")


@pytest.fixture
def store(tmp_path) -> FeatureStore:
    s = build_store(tmp_path / "repo")
    yield s
    s.close()


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory) -> FeatureStore:
    """One applied, materialized SQLite repo for tests that only read it."""
    s = build_store(tmp_path_factory.mktemp("models-repo"))
    yield s
    s.close()


@pytest.fixture
def linear_model():
    from sklearn.linear_model import LinearRegression

    df, y = training_frame()
    return LinearRegression().fit(df, y)
