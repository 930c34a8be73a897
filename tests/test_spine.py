"""Spines (SPEC §11): entity rows taken from a source or a feature view, exactly as an entity_df of them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest
from click.testing import CliRunner

from featurestore import FeatureStore, RetrievalError
from featurestore.cli import cli
from tests.repo_builder import make_repo

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
DEFS = """
from datetime import timedelta
from featurestore import Entity, FeatureView, Field, Float64, Int64, ParquetSource
driver = Entity(name="driver", join_keys=["driver_id"])
stats = ParquetSource(name="stats", path="data/stats.parquet", created_timestamp_field="created")
labels = ParquetSource(name="trip_labels", path="data/labels.parquet", timestamp_field="ts")
hourly = FeatureView(name="hourly", entities=[driver], source=stats, ttl=timedelta(days=2),
                     schema=[Field("conv_rate", Float64)])
"""


def _ts(hours):
    return pa.array([T0 + timedelta(hours=h) for h in hours], pa.timestamp("us", "UTC"))


@pytest.fixture
def store(tmp_path):
    stats = pa.table(
        {
            "driver_id": pa.array([1, 1, 2, 2], pa.int64()),
            "conv_rate": [0.1, 0.2, 0.3, 0.4],
            "event_timestamp": _ts([0, 5, 1, 30]),
            "created": _ts([0, 5, 1, 30]),
        }
    )
    labels = pa.table(
        {
            "driver_id": pa.array([2, 1, 1, 2, 3], pa.int64()),
            "ts": _ts([6, 6, 2, 40, 3]),
            "label": [1, 0, 1, 1, 0],
        }
    )
    repo = make_repo(
        tmp_path / "repo", {"features.py": DEFS}, {"data/stats.parquet": stats, "data/labels.parquet": labels}
    )
    s = FeatureStore(repo)
    s.apply()
    return s


def test_a_source_spine_is_the_entity_df_of_its_rows_in_range(store):
    got = store.get_historical_features(
        spine="trip_labels",
        features=["hourly:conv_rate"],
        start=T0 + timedelta(hours=2),
        end="2026-01-01T06:00:00",
    )
    rows = got.to_arrow()
    assert rows.column_names == ["driver_id", "event_timestamp", "label", "conv_rate"]
    # [start, end] inclusive, ordered by time then columns; the 40h row is out of range
    assert rows.column("driver_id").to_pylist() == [1, 3, 1, 2]
    entity_df = rows.select(["driver_id", "event_timestamp", "label"])
    same = store.get_historical_features(entity_df, features=["hourly:conv_rate"]).to_arrow()
    assert same.equals(rows)
    assert rows.column("conv_rate").to_pylist() == [0.1, None, 0.2, 0.3]
    assert got.spine == {
        "name": "trip_labels",
        "start": "2026-01-01T02:00:00+00:00",
        "end": "2026-01-01T06:00:00+00:00",
    }


def test_a_view_spine_and_open_ranges(store):
    rows = store.get_historical_features(
        spine="hourly", features=["hourly:conv_rate"], full_feature_names=True
    )
    table = rows.to_arrow()
    assert table.column_names == ["driver_id", "conv_rate", "event_timestamp", "hourly__conv_rate"]
    assert table.column("hourly__conv_rate").to_pylist() == table.column("conv_rate").to_pylist()
    assert (
        store.get_historical_features(spine="trip_labels", features=["hourly:conv_rate"]).to_arrow().num_rows
        == 5
    )


def test_spine_errors_name_what_is_wrong(store):
    with pytest.raises(RetrievalError, match="spine 'trip_label' is neither.*trip_labels"):
        store.get_historical_features(spine="trip_label", features=["hourly:conv_rate"])
    with pytest.raises(RetrievalError, match="not both"):
        store.get_historical_features("SELECT 1", features=["hourly:conv_rate"], spine="trip_labels")
    with pytest.raises(RetrievalError, match="needs entity_df"):
        store.get_historical_features(features=["hourly:conv_rate"])
    with pytest.raises(RetrievalError, match="spine start 'yesterday' is not an ISO date"):
        store.get_historical_features(spine="trip_labels", features=["hourly:conv_rate"], start="yesterday")
    with pytest.raises(RetrievalError, match="start .* is after end"):
        store.get_historical_features(
            spine="trip_labels", features=["hourly:conv_rate"], start="2026-02-01", end="2026-01-01"
        )


def test_cli_training_set_from_a_spine(store, tmp_path):
    out = tmp_path / "t.parquet"
    args = [
        "--repo",
        str(store.repo_path),
        "training-set",
        "--spine",
        "trip_labels",
        "--start",
        "2026-01-01T02:00:00",
    ]
    result = CliRunner().invoke(
        cli, [*args, "--end", "2026-01-01T06:00", "-f", "hourly:conv_rate", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "Wrote 4 rows" in result.output
    result = CliRunner().invoke(
        cli, ["--repo", str(store.repo_path), "training-set", "-f", "hourly:conv_rate", "--out", str(out)]
    )
    assert result.exit_code != 0 and "--entities FILE or --spine NAME" in result.output
