"""Loading a feature repo: definition files are imported and validated as a whole against real data."""

import importlib.util
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest

from featurestore import FeatureStore, Int64, RepoError
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
        "defs.py: feature service 'svc' asks for 'stats_view:nope', which view 'stats_view' does not define "
        "(known: 'conv_rate', 'trips')"
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


def test_a_misspelled_view_field_is_named_as_the_typo_not_suggested_to_the_service(tmp_path):
    # The view says conv_rat, the service and the source say conv_rate: fix the view, not the service.
    problems = problems_of(
        tmp_path,
        {
            "defs.py": HEADER
            + ENTITY
            + SOURCE
            + view('[Field("conv_rat", Float64), Field("trips", Int64)]')
            + 'svc = FeatureService(name="svc", features=[stats_view[["conv_rate"]]])\n'
        },
    )
    service = [p for p in problems if "feature service 'svc'" in p]
    assert service == [
        "defs.py: feature service 'svc' asks for 'stats_view:conv_rate', which view 'stats_view' does not "
        "define; its field 'conv_rat' is not a column of source 'stats' either (did you mean "
        "'conv_rate'?): the view's field is likely the typo"
    ]
    assert not any("did you mean 'conv_rat'" in p for p in problems)
    # The view's own problem still points at the source's spelling.
    assert any(
        "feature 'conv_rat' is not a column of source 'stats' (did you mean 'conv_rate'?)" in p
        for p in problems
    )


def test_a_misspelled_service_feature_gets_the_views_spelling(tmp_path):
    files = {
        "defs.py": HEADER
        + ENTITY
        + SOURCE
        + view()
        + 'svc = FeatureService(name="svc", features=[stats_view[["conv_rat"]]])\n'
        + 'svc2 = FeatureService(name="svc2", features=[stats_view[["label"]]])\n'
    }
    assert problems_of(tmp_path, files) == [
        "defs.py: feature service 'svc' asks for 'stats_view:conv_rat', which view 'stats_view' does not "
        "define (did you mean 'conv_rate'?)",
        "defs.py: feature service 'svc2' asks for 'stats_view:label', which view 'stats_view' does not "
        "define; source 'stats' has a column 'label': add Field(\"label\", ...) to the view's schema, or "
        "drop it from the service",
    ]


def _user_module(path):
    """The definitions file as a notebook user imports it: their own objects, unresolved."""
    spec = importlib.util.spec_from_file_location(f"user_{path.parent.name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_entities_named_by_string_make_their_join_keys_keys_everywhere(tmp_path):
    """`entities=["driver"]` behaves as `entities=[driver]`: `driver_id` in the schema declares the key's
    type and is no feature of the view, nor of a service of the whole view, in every path."""
    import pandas as pd

    results = {}
    for name, entities in (("by_name", '["driver"]'), ("by_object", "[driver]")):
        defs = (
            HEADER
            + ENTITY
            + SOURCE
            + view(
                '[Field("driver_id", Int64), Field("conv_rate", Float64), Field("trips", Int64)]',
                entities=entities,
            )
            + 'svc = FeatureService(name="svc", features=[stats_view])\n'
        )
        repo = make_repo(tmp_path / name, {"defs.py": defs}, {"data/stats.parquet": STATS})
        store = FeatureStore(repo)
        catalog = store.load_repo()
        applied = catalog.views["stats_view"]
        assert applied.join_keys == ("driver_id",) and applied.feature_names == ("conv_rate", "trips")
        assert applied.key_fields == {"driver_id": Int64}
        assert catalog.services["svc"].refs == ["stats_view:conv_rate", "stats_view:trips"]
        store.apply()
        run = store.materialize(T0 - timedelta(days=1), T0 + timedelta(hours=1))
        assert [(r.rows, r.online_rows) for r in run.runs] == [(2, 2)]
        user = _user_module(repo / "defs.py")  # the objects as written, entities still named by string
        rows = [{"driver_id": 1}, {"driver_id": 2}]
        entity_df = pd.DataFrame({"driver_id": [2, 1], "event_timestamp": [T0, T0]})
        results[name] = [
            store.get_online_features("svc", rows).to_dict(),
            store.get_online_features(user.svc, rows).to_dict(),
            store.get_online_features(user.stats_view, rows).to_dict(),
            store.get_online_features(["stats_view:conv_rate"], rows).to_dict(),
            store.get_historical_features(entity_df, "svc").to_pandas().to_dict("list"),
            store.get_historical_features(entity_df, user.svc).to_pandas().to_dict("list"),
            store.get_historical_features(entity_df, [user.stats_view]).to_pandas().to_dict("list"),
        ]
        store.close()
    assert results["by_name"] == results["by_object"]
    online, *_, training = results["by_name"]
    assert online["driver_id"] == [1, 2] and online["conv_rate"] == [0.1, 0.2] and online["trips"] == [3, 4]
    assert training["driver_id"] == [2, 1] and training["trips"] == [4, 3]


def test_a_join_key_asked_for_as_a_feature_is_named_a_key(tmp_path):
    files = {
        "defs.py": HEADER
        + ENTITY
        + SOURCE
        + view('[Field("driver_id", Int64), Field("conv_rate", Float64)]', entities='["driver"]')
        + 'svc = FeatureService(name="svc", features=[stats_view[["driver_id"]]])\n'
    }
    assert problems_of(tmp_path, files) == [
        "defs.py: feature service 'svc' asks for 'stats_view:driver_id', a join key of view 'stats_view', "
        "not a feature: entity rows carry it; drop it"
    ]


def test_python_errors_are_reported_at_the_users_file_and_line(tmp_path):
    problems = problems_of(
        tmp_path,
        {
            "features.py": 'from featurestore import *\nx = 1\nsrc = ParquetSource(name="s" path="a.parquet")\n',
            "helpers.py": "def rate():\n    return 1 / 0\n",
            "uses_helpers.py": "import helpers\n\nRATE = helpers.rate()\n",
            "bad_view.py": HEADER + ENTITY + SOURCE + "\n" + view(schema="[]"),
        },
    )
    by_file = {p.split(" ")[0].rstrip(":"): p for p in problems}
    assert by_file["features.py"] == (
        "features.py (line 3): SyntaxError: invalid syntax. Perhaps you forgot a comma?\n"
        '      src = ParquetSource(name="s" path="a.parquet")\n'
        "                               ^^^^^^^^"
    )
    # A runtime error is placed in the user's code: the innermost line of theirs that failed.
    assert by_file["uses_helpers.py"] == (
        "uses_helpers.py (line 3, in helpers.py line 2): ZeroDivisionError: division by zero\n"
        "      return 1 / 0"
    )
    assert by_file["bad_view.py"] == (
        "bad_view.py (line 7): feature view 'stats_view': the schema declares no features\n"
        '      stats_view = FeatureView(name="stats_view", entities=[driver], schema=[], source=src)'
    )
