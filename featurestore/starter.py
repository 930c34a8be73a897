"""`fs init DIR`: a small, working feature repo to start from (config, definitions, sample data)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import ConfigError

CONFIG = """\
project = "{project}"

[offline]
path = "data/offline"

[online]
type = "sqlite"
path = "data/online.db"
# type = "redis"
# url = "redis://localhost:6379/0"

[registry]
path = "data/registry.db"
"""

DEFINITIONS = '''\
"""Feature definitions of {project}. Edit, then run `fs plan` and `fs apply`."""

from datetime import timedelta

from featurestore import Entity, FeatureService, FeatureView, Field, Float64, Int64, ParquetSource

driver = Entity(name="driver", join_keys=["driver_id"], description="A driver")

driver_stats_source = ParquetSource(
    name="driver_stats",
    path="data/driver_stats.parquet",
    timestamp_field="event_timestamp",
    created_timestamp_field="created",
)

driver_stats = FeatureView(
    name="driver_stats",
    entities=[driver],
    ttl=timedelta(days=1),
    schema=[Field("conv_rate", Float64), Field("avg_daily_trips", Int64)],
    source=driver_stats_source,
)

driver_service = FeatureService(name="driver_service", features=[driver_stats])
'''


def create_starter_repo(path: Path, project: str | None = None) -> Path:
    """Write a starter repo into `path` (which must be missing or empty) and return its absolute path."""
    path = path.resolve()
    if path.exists() and any(path.iterdir()):
        raise ConfigError(f"{path} exists and is not empty: choose a new folder for `fs init`")
    project = project or re.sub(r"[^A-Za-z0-9_\-]", "_", path.name) or "my_project"
    (path / "data").mkdir(parents=True, exist_ok=True)
    (path / "featurestore.toml").write_text(CONFIG.format(project=project))
    (path / "features.py").write_text(DEFINITIONS.format(project=project))
    now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0, tzinfo=None)
    hours = [now - timedelta(hours=h) for h in range(24, 0, -1)]
    ids = [1001, 1002, 1003]
    rows = [(d, t) for t in hours for d in ids]
    pq.write_table(
        pa.table(
            {
                "driver_id": pa.array([d for d, _ in rows], pa.int64()),
                "event_timestamp": pa.array([t for _, t in rows], pa.timestamp("us", tz="UTC")),
                "created": pa.array(
                    [t + timedelta(minutes=1) for _, t in rows], pa.timestamp("us", tz="UTC")
                ),
                "conv_rate": pa.array(
                    [round((d % 7 + i % 5) / 12, 3) for i, (d, _) in enumerate(rows)], pa.float64()
                ),
                "avg_daily_trips": pa.array([(d + i) % 30 for i, (d, _) in enumerate(rows)], pa.int64()),
            }
        ),
        path / "data" / "driver_stats.parquet",
    )
    return path
