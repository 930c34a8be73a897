"""Loading a feature repo: definition files are imported and validated as a whole against real data."""

from datetime import datetime, timezone

import pyarrow as pa
import pytest

from featurestore import FeatureStore, RepoError
from tests.repo_builder import make_repo

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
STATS = pa.table(
    {
        "driver_id": pa.array([1, 2], pa.int64()),
        "event_timestamp": pa.array([T0, T0], pa.timestamp("us", tz="UTC")),
        "conv_rate": [0.1, 0.2],
        "trips": pa.array([3, 4], pa.int64()),
        "label": ["a", "b"],
    }
)
HEADER = """
from datetime import timedelta
from featurestore import *
"""
ENTITY = 'driver = Entity(name="driver", join_keys=["driver_id"])\n'
SOURCE = 'src = ParquetSource(name="stats", path="data/stats.parquet")\n'


def view(
    schema='[Field("conv_rate", Float64), Field("trips", Int64)]',
    name="stats_view",
    entities="[driver]",
    source="src",
):
    return f'{name} = FeatureView(name="{name}", entities={entities}, schema={schema}, source={source})\n'


def load(tmp_path, files, data=None):
    repo = make_repo(tmp_path / "repo", files, data if data is not None else {"data/stats.parquet": STATS})
    return FeatureStore(repo).load_repo()


def problems_of(tmp_path, files, data=None):
    with pytest.raises(RepoError) as info:
        load(tmp_path, files, data)
    return info.value.problems


def test_a_valid_repo_loads_across_files_that_import_each_other(tmp_path):
    cat = load(
        tmp_path,
        {
            "entities.py": HEADER + ENTITY,
            "views.py": HEADER
            + "from entities import driver\n"
            + SOURCE
            + view()
            + 'svc = FeatureService(name="svc", features=[stats_view[["trips"]]])\n',
            "_private.py": "raise RuntimeError('not a definitions file')\n",
            "test_something.py": "raise RuntimeError('not a definitions file')\n",
        },
    )
    assert set(cat.views) == {"stats_view"} and set(cat.entities) == {"driver"}
    assert set(cat.sources) == {"stats"} and set(cat.services) == {"svc"}


def test_missing_column_suggests_the_close_name(tmp_path):
    problems = problems_of(
        tmp_path,
        {"defs.py": HEADER + ENTITY + SOURCE + view('[Field("conv_rat", Float64), Field("trips", Int64)]')},
    )
    assert len(problems) == 1
    assert "defs.py" in problems[0] and "stats_view" in problems[0]
    assert (
        "'conv_rat' is not a column of source 'stats'" in problems[0]
        and "did you mean 'conv_rate'" in problems[0]
    )


def test_type_mismatch_is_reported(tmp_path):
    problems = problems_of(tmp_path, {"defs.py": HEADER + ENTITY + SOURCE + view('[Field("label", Int64)]')})
    assert "feature 'label' is declared Int64 but source 'stats' has type string" in problems[0]


def test_missing_join_key_and_timestamp(tmp_path):
    files = {
        "defs.py": HEADER
        + 'driver = Entity(name="driver", join_keys=["drv"])\n'
        + 'src = ParquetSource(name="stats", path="data/stats.parquet", timestamp_field="ts")\n'
        + view()
    }
    problems = problems_of(tmp_path, files)
    text = "\n".join(problems)
    assert "join key 'drv' is not a column" in text and "timestamp_field 'ts' is not a column" in text


def test_unknown_entity_named_by_string(tmp_path):
    problems = problems_of(tmp_path, {"defs.py": HEADER + ENTITY + SOURCE + view(entities='["drivr"]')})
    assert "unknown entity 'drivr' (did you mean 'driver'?)" in problems[0]
    cat = load(tmp_path / "ok", {"defs.py": HEADER + ENTITY + SOURCE + view(entities='["driver"]')})
    assert cat.views["stats_view"].join_keys == ("driver_id",)


def test_duplicate_names_across_files_name_both_files(tmp_path):
    problems = problems_of(
        tmp_path,
        {
            "a.py": HEADER + ENTITY + SOURCE + view(),
            "b.py": HEADER + ENTITY + SOURCE + view('[Field("trips", Int64)]'),
        },
    )
    assert any(
        "feature view 'stats_view' is defined twice" in p and "a.py" in p and "b.py" in p for p in problems
    )


def test_missing_data_file_and_broken_python_are_reported_with_file_and_line(tmp_path):
    problems = problems_of(
        tmp_path,
        {
            "defs.py": HEADER
            + ENTITY
            + 'src = ParquetSource(name="stats", path="data/nope*.parquet")\n'
            + view(),
            "broken.py": "x = 1\ny = undefined_name\n",
        },
        data={},
    )
    text = "\n".join(problems)
    assert "no file matches path 'data/nope*.parquet'" in text
    assert "broken.py (line 2): NameError" in text


def test_service_with_unknown_feature_names_the_file(tmp_path):
    problems = problems_of(
        tmp_path,
        {
            "defs.py": HEADER
            + ENTITY
            + SOURCE
            + view()
            + 'svc = FeatureService(name="svc", features=[stats_view[["nope"]]])\n'
        },
    )
    assert problems == [
        "defs.py: feature view 'stats_view' has no feature 'nope' (known: 'conv_rate', 'trips')"
    ]


def test_csv_and_duckdb_query_sources_are_validated_against_their_real_schema(tmp_path):
    cat = load(
        tmp_path,
        {
            "defs.py": HEADER
            + ENTITY
            + SOURCE
            + """
csv = CsvSource(name="stats_csv", path="data/stats.csv")
q = DuckDBSource(name="recent", query="SELECT * FROM stats WHERE trips > 3")
v1 = FeatureView(name="from_csv", entities=[driver], schema=[Field("trips", Int64)], source=csv)
v2 = FeatureView(name="from_query", entities=[driver], schema=[Field("conv_rate", Float64)], source=q)
"""
        },
        data={"data/stats.parquet": STATS, "data/stats.csv": STATS},
    )
    assert set(cat.views) == {"from_csv", "from_query"}
