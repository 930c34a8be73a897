"""A late row appended to a source inside a materialized range (no created timestamp, so no
incremental run can see it) is in the next training set at once, `fs status` names the stale range
and the command that repairs it, and `fs materialize` of that range clears it."""

import json
from datetime import datetime, timedelta, timezone

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from featurestore import FeatureStore
from featurestore.cli import cli
from tests.repo_builder import make_repo

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
END = T0 + timedelta(hours=47)
HEAD = """
from datetime import timedelta
from featurestore import *
driver = Entity(name="driver", join_keys=["driver_id"])
"""
VIEW = """
stats = FeatureView(name="stats", entities=[driver], ttl=timedelta(days=2), online=False,
                    schema=[Field("value", Float64)], source={source})
"""
SOURCES = {  # how the view reads data/stats.parquet: directly, through a DuckDB query, as a push batch source
    "parquet": ('raw = ParquetSource(name="raw", path="data/*.parquet")', "raw"),
    "duckdb-query": (
        'raw = ParquetSource(name="raw", path="data/*.parquet")\n'
        'q = DuckDBSource(name="q", query="SELECT * FROM raw WHERE value >= 0")',
        "q",
    ),
    "push-batch": (
        'push = PushSource(name="push", batch_source=ParquetSource(name="raw", path="data/stats.parquet"))',
        "push",
    ),
}


def stats(hours, late=()):
    """One row per driver (1, 2) per hour; `late`: extra (driver, time, value) rows."""
    rows = [(d, T0 + timedelta(hours=h), float(d * 1000 + h)) for h in hours for d in (1, 2)] + list(late)
    return pa.table(
        {
            "driver_id": pa.array([r[0] for r in rows], pa.int64()),
            "event_timestamp": pa.array([r[1] for r in rows], pa.timestamp("us", tz="UTC")),
            "value": pa.array([r[2] for r in rows], pa.float64()),
        }
    )


def training_values(store):
    entities = pd.DataFrame(
        {"driver_id": [1, 2], "event_timestamp": [T0 + timedelta(hours=10, minutes=30)] * 2}
    )
    return store.get_historical_features(entities, ["stats:value"]).to_pandas()["value"].tolist()


def status(repo):
    result = CliRunner().invoke(cli, ["--repo", str(repo), "status", "--json"])
    assert result.exit_code == 0, result.output
    (view,) = json.loads(result.output)["views"]
    return view


@pytest.mark.parametrize("kind", sorted(SOURCES))
def test_a_late_row_in_a_materialized_range_is_read_from_the_source_until_materialized_again(tmp_path, kind):
    source_defs, source = SOURCES[kind]
    repo = make_repo(
        tmp_path / "repo",
        {"defs.py": HEAD + source_defs + VIEW.format(source=source)},
        {"data/stats.parquet": stats(range(48))},
    )
    runner = CliRunner()
    assert runner.invoke(cli, ["--repo", str(repo), "apply"]).exit_code == 0
    done = runner.invoke(cli, ["--repo", str(repo), "materialize", T0.isoformat(), END.isoformat()])
    assert done.exit_code == 0, done.output
    store = FeatureStore(repo)
    assert training_values(store) == [1010.0, 2010.0]
    assert status(repo)["stale_ranges"] == []

    # A late row for driver 1 at 10:15, inside the stored range, with no created timestamp.
    late = 7.0
    pq.write_table(
        stats(range(48), late=[(1, T0 + timedelta(hours=10, minutes=15), late)]), repo / "data/stats.parquet"
    )
    assert training_values(store) == [late, 2010.0]
    view = status(repo)
    assert [(r["start"], r["end"]) for r in view["stale_ranges"]] == [(T0.isoformat(), END.isoformat())]
    repair = view["stale_ranges"][0]["repair"]
    assert repair == f"fs materialize {T0.isoformat()} {END.isoformat()} --views stats"
    text = runner.invoke(cli, ["--repo", str(repo), "status"]).output
    assert "Stale: view 'stats'" in text and repair in " ".join(text.split())

    again = runner.invoke(cli, ["--repo", str(repo), *repair.split()[1:]])
    assert again.exit_code == 0, again.output
    assert status(repo)["stale_ranges"] == []
    assert training_values(FeatureStore(repo)) == [late, 2010.0]
    # ...now from offline storage: the stored rows hold the late row.
    stored = pa.concat_tables(pq.read_table(f) for f in store.offline_storage.files("stats"))
    assert late in stored.column("value").to_pylist()


def test_rows_appended_after_a_partly_repaired_range_leave_only_the_rest_stale(tmp_path):
    repo = make_repo(
        tmp_path / "repo",
        {"defs.py": HEAD + SOURCES["parquet"][0] + VIEW.format(source="raw")},
        {"data/stats.parquet": stats(range(48))},
    )
    store = FeatureStore(repo)
    store.apply()
    store.materialize(T0, END)
    # A new file of the glob, with a row at 10:15: the stored range is stale, then half of it repaired.
    pq.write_table(
        stats([], late=[(1, T0 + timedelta(hours=10, minutes=15), -1.0)]), repo / "data/late.parquet"
    )
    store.materialize(T0, T0 + timedelta(hours=12))
    assert training_values(store) == [-1.0, 2010.0]
    assert [(r["start"], r["end"]) for r in status(repo)["stale_ranges"]] == [
        ((T0 + timedelta(hours=12)).isoformat(), END.isoformat())
    ]


def test_a_source_with_a_created_timestamp_keeps_its_ranges_and_incremental_runs_pick_late_rows_up(tmp_path):
    def created(table):
        return table.append_column("created", table.column("event_timestamp"))

    defs = (
        HEAD + 'raw = ParquetSource(name="raw", path="data/stats.parquet", created_timestamp_field="created")'
    )
    repo = make_repo(
        tmp_path / "repo",
        {"defs.py": defs + VIEW.format(source="raw")},
        {"data/stats.parquet": created(stats(range(48)))},
    )
    store = FeatureStore(repo)
    store.apply()
    store.materialize_incremental(END)
    late = created(stats([], late=[(1, T0 + timedelta(hours=10, minutes=15), 7.0)]))
    late = late.set_column(3, "created", pa.array([END + timedelta(minutes=5)], pa.timestamp("us", tz="UTC")))
    pq.write_table(pa.concat_tables([created(stats(range(48))), late]), repo / "data/stats.parquet")
    assert status(repo)["stale_ranges"] == []  # not stale: the late row is on its way
    store.materialize_incremental(END + timedelta(minutes=10))
    assert training_values(store) == [7.0, 2010.0]


def test_runs_recorded_without_a_fingerprint_count_as_current(tmp_path):
    """Runs from before migration 4 (or of an in-memory source) carry no fingerprint: never stale."""
    from featurestore.registry import Registry

    registry = Registry(tmp_path / "registry.db")
    registry.record_materialization("v", T0, END, 1, 0, advance_watermark=True)
    registry.record_materialization("v", END, END + timedelta(hours=5), 1, 0, True, source_fingerprint="a")
    assert registry.materialized_coverage("v", "b") == ([(T0, END)], [(END, END + timedelta(hours=5))])
    assert registry.materialized_coverage("v", "a") == ([(T0, END + timedelta(hours=5))], [])
