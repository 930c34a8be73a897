"""On-demand feature views (SPEC §11): one row function, the same answer offline and online.

The oracle is the definition itself: for random stored rows (nulls included) and random request
values, the training set's on-demand columns equal the online lookup's, row by row, and both equal
the row function applied by hand to the inputs each path read.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurestore import (
    DefinitionError,
    DefinitionsChangedError,
    FeatureStore,
    Field,
    Float64,
    OnDemandFeatureView,
    RepoError,
    RequestSource,
    RetrievalError,
    TransformError,
    on_demand_feature_view,
)
from featurestore.on_demand import cast_column, same_value
from tests.repo_builder import make_repo

NOW = datetime.now(timezone.utc).replace(microsecond=0)

DEFINITIONS = """
from datetime import timedelta
from featurestore import (Bool, Entity, FeatureService, FeatureView, Field, Float64, Int64, PushSource,
                          RequestSource, String, on_demand_feature_view)

driver = Entity(name="driver", join_keys=["driver_id"])
driver_push = PushSource(name="driver_push")
driver_stats = FeatureView(
    name="driver_stats", entities=[driver], source=driver_push,
    schema=[Field("driver_id", Int64), Field("conv_rate", Float64), Field("trips", Int64),
            Field("city", String)],
)
trip_request = RequestSource(name="trip_request", schema=[Field("distance_km", Float64), Field("rush", Bool)])


@on_demand_feature_view(sources=[driver_stats[["conv_rate", "trips", "city"]], trip_request],
                        schema=[Field("expected_minutes", Float64), Field("label", String),
                                Field("trips_plus", Int64)])
def trip_estimates(row: dict) -> dict:
    minutes = None
    if row["distance_km"] is not None:
        minutes = row["distance_km"] / max(row["conv_rate"] or 0.1, 0.1) * (2 if row["rush"] else 1)
    return {
        "expected_minutes": minutes,
        "label": (row["city"] or "nowhere").upper(),
        "trips_plus": None if row["trips"] is None else row["trips"] + 1,
    }


@on_demand_feature_view(sources=[driver_stats[["trips"]], trip_request], schema=[Field("ratio", Float64)])
def fragile(row: dict) -> dict:
    return {"ratio": row["distance_km"] / row["trips"]}


eta_inputs = FeatureService(name="eta_inputs", features=[driver_stats[["trips"]], trip_estimates[["expected_minutes"]]])
"""

VECTORIZED = """
import pyarrow.compute as pc
from featurestore import Field, Float64, on_demand_feature_view
from features import driver_stats, trip_request


@on_demand_feature_view(sources=[driver_stats[["conv_rate"]], trip_request], schema=[Field("scaled", Float64)])
def scaled(row: dict) -> dict:
    if row["distance_km"] is None or row["conv_rate"] is None:
        return {"scaled": None}
    return {"scaled": row["distance_km"] * row["conv_rate"] + 1.0}


@scaled.vectorized(mode="arrow")
def scaled_arrow(table):
    return {"scaled": pc.add(pc.multiply(table["distance_km"], table["conv_rate"]), 1.0)}


@on_demand_feature_view(sources=[driver_stats[["trips"]]], schema=[Field("double_trips", Float64)])
def double_trips(row: dict) -> dict:
    return {"double_trips": None if row["trips"] is None else 2.0 * row["trips"]}


@double_trips.vectorized(mode="pandas")
def double_trips_pandas(df):
    return df.assign(double_trips=df["trips"] * 2.0)
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> FeatureStore:
    root = make_repo(
        tmp_path_factory.mktemp("odfv"),
        {"features.py": DEFINITIONS, "vectorized.py": VECTORIZED},
        config='[online]\ntype = "sqlite"\npath = "data/online.db"\n',
    )
    store = FeatureStore(root)
    store.apply()
    push_rows(store, [(True, 0.5, 1, "first")])  # offline storage holds rows from the start
    yield store
    store.close()


_ids = itertools.count(1000)


def expected_row(row: dict) -> dict:
    minutes = None
    if row["distance_km"] is not None:
        minutes = row["distance_km"] / max(row["conv_rate"] or 0.1, 0.1) * (2 if row["rush"] else 1)
    return {
        "expected_minutes": minutes,
        "label": (row["city"] or "nowhere").upper(),
        "trips_plus": None if row["trips"] is None else row["trips"] + 1,
    }


floats = st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False), st.just(0.0))
stored_floats = st.one_of(floats, st.just(math.nan))
stored_rows = st.lists(
    st.tuples(
        st.booleans(),  # whether the driver has a stored row at all
        stored_floats,
        st.one_of(st.none(), st.integers(-1000, 1000)),
        st.one_of(st.none(), st.sampled_from(["paris", "", "oslo"])),
    ),
    min_size=1,
    max_size=8,
)
# a NaN request value is a null on both paths (pandas holds a missing float as NaN)
requests = st.tuples(st.one_of(floats, st.just(math.nan)), st.one_of(st.none(), st.booleans()))


def push_rows(store: FeatureStore, rows) -> list[int]:
    """Push the rows that exist (to both stores) under fresh driver ids; returns every id."""
    ids = [next(_ids) for _ in rows]
    present = [(i, r) for i, r in zip(ids, rows) if r[0]]
    if present:
        store.push(
            "driver_push",
            pa.table(
                {
                    "driver_id": pa.array([i for i, _ in present], pa.int64()),
                    "conv_rate": pa.array([r[1] for _, r in present], pa.float64()),
                    "trips": pa.array([r[2] for _, r in present], pa.int64()),
                    "city": pa.array([r[3] for _, r in present], pa.string()),
                    "event_timestamp": pa.array(
                        [NOW - timedelta(minutes=5)] * len(present), pa.timestamp("us", tz="UTC")
                    ),
                }
            ),
            to="both",
        )
    return ids


def assert_same(a: list, b: list, what: str) -> None:
    assert len(a) == len(b), what
    for i, (x, y) in enumerate(zip(a, b)):
        assert same_value(x, y) and type(x) is type(y), f"{what}, row {i}: {x!r} != {y!r}"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=stored_rows, data=st.data())
def test_offline_equals_online_for_random_inputs_nulls_included(store, rows, data):
    ids = push_rows(store, rows)
    asks = [data.draw(requests) for _ in ids]
    entity_rows = [{"driver_id": i, "distance_km": d, "rush": r} for i, (d, r) in zip(ids, asks)]
    features = [
        "trip_estimates:expected_minutes",
        "trip_estimates:label",
        "trip_estimates:trips_plus",
        "driver_stats:trips",
        "scaled:scaled",
        "double_trips:double_trips",
    ]
    online = store.get_online_features(features, entity_rows)
    entity_df = pd.DataFrame(entity_rows).assign(event_timestamp=NOW)
    entity_df["distance_km"] = entity_df["distance_km"].astype("float64")
    entity_df["rush"] = entity_df["rush"].astype("boolean")
    offline = store.get_historical_features(entity_df, features).to_arrow()
    on = online.to_dict()
    assert list(on) == [
        "driver_id",
        "expected_minutes",
        "label",
        "trips_plus",
        "trips",
        "scaled",
        "double_trips",
    ]
    assert offline.column_names == [
        *entity_df.columns,
        "expected_minutes",
        "label",
        "trips_plus",
        "trips",
        "scaled",
        "double_trips",
    ]
    for col in ("expected_minutes", "label", "trips_plus", "trips", "scaled", "double_trips"):
        assert_same(offline.column(col).to_pylist(), on[col], col)
    # and both are the row function on what was stored (a missing row reads as nulls)
    stored = {i: r for i, r in zip(ids, rows)}
    for k, row in enumerate(entity_rows):
        exists, rate, trips, city = stored[row["driver_id"]]
        inputs = {
            "conv_rate": rate if exists else None,
            "trips": trips if exists else None,
            "city": city if exists else None,
            "distance_km": None if row["distance_km"] != row["distance_km"] else row["distance_km"],
            "rush": row["rush"],
        }
        for name, value in expected_row(inputs).items():
            assert same_value(on[name][k], value), (name, k)
    assert set(online.statuses["expected_minutes"]) == {"PRESENT"}
    assert online.to_arrow().schema.field("trips_plus").type == pa.int64()


def test_projections_services_and_refs_resolve(store):
    rows = [
        {"driver_id": d, "distance_km": 10.0, "rush": False} for d in push_rows(store, [(True, 0.5, 3, "x")])
    ]
    by_service = store.get_online_features("eta_inputs", rows).to_dict()
    assert by_service == {
        "driver_id": [rows[0]["driver_id"]],
        "trips": [3],
        "expected_minutes": [20.0],
    }
    full = store.get_online_features(["trip_estimates:label"], rows, full_feature_names=True).to_dict()
    assert full["trip_estimates__label"] == ["X"]
    with pytest.raises(Exception, match="did you mean 'label'"):
        store.get_online_features(["trip_estimates:labl"], rows)


def test_a_missing_request_value_is_named(store):
    with pytest.raises(RetrievalError, match="'distance_km'.*'trip_request'.*'trip_estimates'"):
        store.get_online_features(["trip_estimates:label"], [{"driver_id": 1, "rush": True}])
    with pytest.raises(RetrievalError, match="'rush'.*'trip_request'"):
        store.get_online_features(["trip_estimates:label"], {"driver_id": [1], "distance_km": [1.0]})
    entity_df = pd.DataFrame({"driver_id": [1], "distance_km": [1.0], "event_timestamp": [NOW]})
    with pytest.raises(RetrievalError, match="entity_df lacks 'rush'"):
        store.get_historical_features(entity_df, ["trip_estimates:label"])
    # request values are cast by the rule outputs are: an int is a Float64, a string is not
    rows = [{"driver_id": 1, "distance_km": 3, "rush": False}]
    assert store.get_online_features(["trip_estimates:expected_minutes"], rows).to_dict()[
        "expected_minutes"
    ] == [30.0]  # no row: 3.0 / 0.1
    rows = [
        {"driver_id": 1, "distance_km": 3.0, "rush": False},
        {"driver_id": 1, "distance_km": "far", "rush": False},
    ]
    with pytest.raises(RetrievalError, match="entity row 1: 'distance_km' is 'far', not a Float64"):
        store.get_online_features(["trip_estimates:expected_minutes"], rows)
    entity_df = pd.DataFrame(
        {"driver_id": [1], "distance_km": ["far"], "rush": [True], "event_timestamp": [NOW]}
    )
    with pytest.raises(RetrievalError, match="entity_df row 0: 'distance_km' is 'far', not a Float64"):
        store.get_historical_features(entity_df, ["trip_estimates:label"]).to_arrow()


def test_a_function_that_raises_fails_the_lookup_and_the_training_set_naming_the_row(store):
    ids = push_rows(store, [(True, 0.5, 4, "a"), (True, 0.5, 0, "b")])
    rows = [{"driver_id": i, "distance_km": 1.0, "rush": None} for i in ids]
    assert store.get_online_features(["fragile:ratio"], rows[:1]).to_dict()["ratio"] == [0.25]
    with pytest.raises(
        TransformError, match=rf"'fragile' failed on entity row 1 \(driver_id={ids[1]}.*ZeroDivisionError"
    ):
        store.get_online_features(["fragile:ratio"], rows)
    entity_df = pd.DataFrame(rows).assign(event_timestamp=NOW)
    entity_df["rush"] = entity_df["rush"].astype("boolean")
    with pytest.raises(
        TransformError, match=rf"'fragile' failed on entity_df row 1 \(driver_id={ids[1]}.*ZeroDivisionError"
    ):
        store.get_historical_features(entity_df, ["fragile:ratio"]).to_arrow()


def test_outputs_are_cast_by_one_rule():
    assert cast_column([1, 2.5, None], Float64, "v", "f") == [1.0, 2.5, None]
    with pytest.raises(
        TransformError, match="'v' returned 'x' \\(str\\) for 'f' on row 1, which is not of type Float64"
    ):
        cast_column([1.0, "x"], Float64, "v", "f")
    with pytest.raises(TransformError, match="True \\(bool\\)"):
        cast_column([True], Float64, "v", "f")


def test_a_missing_output_key_is_named(tmp_path):
    store = _repo(tmp_path, "return {'nope': 1.0}")
    with pytest.raises(
        TransformError, match="'calc' returned no 'out' \\(its keys: \\['nope'\\]\\) on entity row 0"
    ):
        store.get_online_features(["calc:out"], [{"driver_id": 1, "x": 1.0}])


SMALL = """
from featurestore import Entity, FeatureView, Field, Float64, Int64, PushSource, RequestSource, on_demand_feature_view
driver = Entity(name="driver", join_keys=["driver_id"])
push = PushSource(name="push")
stats = FeatureView(name="stats", entities=[driver], source=push, schema=[Field("driver_id", Int64), Field("y", Float64)])
req = RequestSource(name="req", schema=[Field("x", Float64)])
{extra}

@on_demand_feature_view(sources=[{sources}], schema=[Field("out", Float64)])
def calc(row: dict) -> dict:
    {body}
{after}
"""


def _files(body: str, sources: str = "stats, req", extra: str = "", after: str = "") -> dict[str, str]:
    return {"features.py": SMALL.format(body=body, sources=sources, extra=extra, after=after)}


def _repo(tmp_path: Path, body: str, **kw) -> FeatureStore:
    make_repo(tmp_path, _files(body, **kw), config='[online]\ntype = "sqlite"\npath = "data/online.db"\n')
    store = FeatureStore(tmp_path)
    store.apply()
    when = pa.array([NOW - timedelta(minutes=1)], pa.timestamp("us", tz="UTC"))
    store.push("push", pa.table({"driver_id": [1], "y": [0.5], "event_timestamp": when}), to="both")
    return store


def test_a_vectorized_form_that_disagrees_is_refused_at_apply(tmp_path):
    after = """
@calc.vectorized(mode="arrow")
def calc_arrow(table):
    import pyarrow.compute as pc
    return {"out": pc.fill_null(pc.multiply(table["x"], 2.0), 0.0)}
"""
    make_repo(tmp_path, _files("return {'out': None if row['x'] is None else row['x'] * 2}", after=after))
    with pytest.raises(RepoError) as err:
        FeatureStore(tmp_path).apply()
    text = str(err.value)
    assert "on-demand feature view 'calc'" in text and "disagrees with the row form on 'out'" in text
    assert "0.0 instead of None" in text and "'x': None" in text


def test_a_vectorized_form_that_agrees_is_used_offline(tmp_path):
    after = """
@calc.vectorized(mode="pandas")
def calc_pandas(df):
    return df.assign(out=df["x"] * 2)
"""
    store = _repo(tmp_path, "return {'out': None if row['x'] is None else row['x'] * 2}", after=after)
    assert store.catalog.on_demand["calc"].mode == "pandas"
    entity_df = pd.DataFrame({"driver_id": [1, 2], "x": [1.5, None], "event_timestamp": [NOW, NOW]})
    assert store.get_historical_features(entity_df, ["calc:out"]).to_arrow().column("out").to_pylist() == [
        3.0,
        None,
    ]


def test_input_names_must_be_unique(tmp_path):
    extra = 'other = FeatureView(name="other", entities=[driver], source=push, schema=[Field("driver_id", Int64), Field("y", Float64)])'
    make_repo(tmp_path, _files("return {'out': 1.0}", sources="stats, other, req", extra=extra))
    with pytest.raises(
        RepoError, match=r"inputs 'stats:y' and 'other:y' share the name 'y'.*view\[\[\.\.\.\]\]"
    ):
        FeatureStore(tmp_path).apply()
    make_repo(tmp_path, _files("return {'out': 1.0}", sources="stats, req", extra=extra))
    FeatureStore(tmp_path).apply()  # one of them suffices


def test_definitions_validate_and_round_trip_through_the_registry(store):
    with pytest.raises(DefinitionError, match="pass its fields by name"):
        RequestSource("r", [Field("x", Float64)])
    with pytest.raises(DefinitionError, match="needs at least one source"):
        on_demand_feature_view(sources=[], schema=[Field("x", Float64)], name="v")(lambda row: row)
    with pytest.raises(DefinitionError, match="a vectorized form needs both"):
        on_demand_feature_view(
            sources=[RequestSource(name="r", schema=[Field("x", Float64)])],
            schema=[Field("x", Float64)],
            mode="arrow",
            name="v",
        )(lambda row: row)
    applied = store.registry.specs()[("on_demand_feature_view", "trip_estimates")]
    assert applied["module"] == "features.py" and applied["function"] == "trip_estimates"
    assert len(applied["sha256"]) == 64 and applied["mode"] == "python"
    assert (
        store.registry.specs()[("on_demand_feature_view", "scaled")]["vectorized_function"] == "scaled_arrow"
    )
    fresh = FeatureStore(store.repo_path)  # another process: the function is imported from the file
    view = fresh.catalog.on_demand["trip_estimates"]
    assert isinstance(view, OnDemandFeatureView) and view.udf is None
    assert view.join_keys == ("driver_id",)
    ids = push_rows(store, [(True, 0.5, 1, "q")])
    out = fresh.get_online_features(
        ["trip_estimates:label"], [{"driver_id": ids[0], "distance_km": 1.0, "rush": True}]
    )
    assert out.to_dict()["label"] == ["Q"]
    assert fresh.plan().is_empty


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def test_a_changed_function_is_refused_until_applied(tmp_path):
    store = _repo(tmp_path, "return {'out': row['x']}")
    row = [{"driver_id": 1, "x": 2.0}]
    assert store.get_online_features(["calc:out"], row).to_dict()["out"] == [2.0]
    _edit(tmp_path / "features.py", "return {'out': row['x']}", "return {'out': row['x'] * 10}")
    time.sleep(1.1)  # the file is re-checked at most once a second
    with pytest.raises(DefinitionsChangedError, match="definitions changed on disk: apply again.*'calc'"):
        store.get_online_features(["calc:out"], row)
    assert store.get_online_features(["stats:y"], row).to_dict()["y"] == [0.5]  # other lookups still answer
    other = FeatureStore(tmp_path)
    with pytest.raises(DefinitionsChangedError):
        other.get_historical_features(
            pd.DataFrame({"driver_id": [1], "x": [1.0], "event_timestamp": [NOW]}), ["calc:out"]
        ).to_arrow()
    from featurestore.server.run import check_on_demand_files

    with pytest.raises(DefinitionsChangedError):
        check_on_demand_files(other)
    plan = other.plan()
    assert [c.name for c in plan.pending] == ["calc"] and "sha256" in plan.render()
    other.apply()
    check_on_demand_files(FeatureStore(tmp_path))
    time.sleep(1.1)
    assert store.get_online_features(["calc:out"], row).to_dict()["out"] == [20.0]
    # a change elsewhere in the file (not the function's source) changes nothing
    _edit(tmp_path / "features.py", "driver = Entity", "# a comment\ndriver = Entity")
    time.sleep(1.1)
    assert store.get_online_features(["calc:out"], row).to_dict()["out"] == [20.0]


def test_fs_serve_refuses_to_start_on_a_changed_function(tmp_path, monkeypatch):
    import uvicorn
    from click.testing import CliRunner

    from featurestore.cli import cli

    def started(*args, **kwargs):  # were the check missing, the test would fail here, not serve forever
        raise AssertionError("fs serve started")

    monkeypatch.setattr(uvicorn, "run", started)

    _repo(tmp_path, "return {'out': row['x']}")
    _edit(tmp_path / "features.py", "return {'out': row['x']}", "return {'out': -row['x']}")
    result = CliRunner().invoke(cli, ["--repo", str(tmp_path), "serve", "--port", "1"])
    assert result.exit_code != 0
    assert "definitions changed on disk: apply again" in result.output


def test_nan_and_null_stay_apart():
    assert same_value(math.nan, math.nan) and not same_value(None, math.nan) and same_value(None, None)


def test_a_nan_request_value_is_a_null_on_both_paths(tmp_path):
    store = _repo(tmp_path, "return {'out': 1.0 if row['x'] is None else 0.0}")
    frame = pd.DataFrame({"driver_id": [1, 1, 1], "x": [1.0, None, math.nan], "event_timestamp": [NOW] * 3})
    online = store.get_online_features(["calc:out"], frame.drop(columns="event_timestamp")).to_dict()
    offline = store.get_historical_features(frame, ["calc:out"]).to_arrow().column("out").to_pylist()
    assert online["out"] == offline == [0.0, 1.0, 1.0]
    rows = [{"driver_id": 1, "x": v} for v in (math.nan, "NaN", float("inf"))]  # "NaN": how JSON writes it
    assert store.get_online_features(["calc:out"], rows).to_dict()["out"] == [1.0, 1.0, 0.0]


INT_REQUEST = """
int_req = RequestSource(name="int_req", schema=[Field("n", Int64)])


@on_demand_feature_view(sources=[stats, int_req], schema=[Field("n_out", Int64)])
def count(row: dict) -> dict:
    return {"n_out": None if row["n"] is None else row["n"] + 1}
"""


def test_an_integer_request_column_from_pandas_may_hold_missing_values(tmp_path):
    store = _repo(tmp_path, "return {'out': 1.0}", extra=INT_REQUEST)
    frame = pd.DataFrame({"driver_id": [1, 1], "n": [5, None], "event_timestamp": [NOW, NOW]})
    assert frame["n"].dtype == "float64"  # pandas' way to hold the missing value
    offline = store.get_historical_features(frame, ["count:n_out"]).to_arrow().column("n_out").to_pylist()
    online = store.get_online_features(["count:n_out"], frame.drop(columns="event_timestamp")).to_dict()
    assert offline == online["n_out"] == [6, None]
    with pytest.raises(RetrievalError, match="entity row 1: 'n' is 2.5, not a Int64"):
        store.get_online_features(["count:n_out"], [{"driver_id": 1, "n": 1}, {"driver_id": 1, "n": 2.5}])


def test_float32_outputs_are_rounded_alike_offline_and_online(tmp_path):
    store = _repo(
        tmp_path,
        "return {'out': 1.0}",
        extra="""
from featurestore import Float32


@on_demand_feature_view(sources=[stats, req], schema=[Field("tenth", Float32)])
def narrow(row: dict) -> dict:
    return {"tenth": row["x"] / 10}
""",
    )
    frame = pd.DataFrame({"driver_id": [1, 1], "x": [1.0, 3.0], "event_timestamp": [NOW, NOW]})
    offline = store.get_historical_features(frame, ["narrow:tenth"]).to_arrow().column("tenth").to_pylist()
    online = store.get_online_features(["narrow:tenth"], frame.drop(columns="event_timestamp")).to_dict()
    assert (
        offline
        == online["tenth"]
        == [pa.scalar(0.1, pa.float32()).as_py(), pa.scalar(0.3, pa.float32()).as_py()]
    )
    assert online["tenth"][0] != 0.1


@pytest.mark.parametrize(
    ("extra", "sources", "problem"),
    [
        (
            'other = RequestSource(name="other", schema=[Field("x", Float64)])',
            "stats, req, other",
            "inputs request source 'req' and request source 'other' share the name 'x'",
        ),
        (
            'other = RequestSource(name="other", schema=[Field("x", String)])\n'
            '@on_demand_feature_view(sources=[other], schema=[Field("b", String)])\n'
            'def uses_other(row):\n    return {"b": row["x"]}',
            "stats, req",
            "request source 'other' declares 'x' as String, request source 'req' as Float64",
        ),
        (
            'keyed = RequestSource(name="keyed", schema=[Field("driver_id", Int64)])',
            "stats, keyed",
            "field 'driver_id' of request source 'keyed' is named like a join key of its input views",
        ),
        ("", "req", "its output 'out' has the name of its input request source 'req'"),
        ("", "stats", "its output 'out' has the name of its input 'stats:y'"),
    ],
)
def test_names_that_would_clash_in_a_row_are_refused_at_apply(tmp_path, extra, sources, problem):
    body = "return {'out': 1.0}"
    files = _files(body, sources=sources, extra=extra)
    if sources in ("req", "stats"):  # make the output's name one of its inputs'
        name = "x" if sources == "req" else "y"
        files["features.py"] = files["features.py"].replace(
            'Field("out", Float64)', f'Field("{name}", Float64)'
        )
        files["features.py"] = files["features.py"].replace("{'out': 1.0}", f"{{'{name}': 1.0}}")
        problem = problem.replace("'out'", f"'{name}'")
    files["features.py"] = files["features.py"].replace(
        "from featurestore import", "from featurestore import String,"
    )
    make_repo(tmp_path, files)
    with pytest.raises(RepoError, match=re.escape(problem)):
        FeatureStore(tmp_path).apply()


def test_a_vectorized_form_must_fail_where_the_row_form_fails(tmp_path):
    after = """
@calc.vectorized(mode="arrow")
def calc_arrow(table):
    import pyarrow.compute as pc
    return {"out": pc.multiply(table["x"], 2.0)}
"""
    make_repo(tmp_path, _files("return {'out': row['x'] * 2}", after=after))
    with pytest.raises(RepoError) as err:
        FeatureStore(tmp_path).apply()
    text = str(err.value)
    assert "its row form fails on the row" in text and "'x': None" in text and "TypeError" in text
    assert "its vectorized form (mode=arrow) returns {'out': None}" in text
    # and the other way round: a vectorized form that fails on a row the row form takes
    after = after.replace(
        'return {"out"',
        'if pc.any(pc.is_null(table["x"])).as_py():\n        raise ValueError("null")\n    return {"out"',
    )
    make_repo(tmp_path, _files("return {'out': None if row['x'] is None else row['x'] * 2}", after=after))
    with pytest.raises(
        RepoError,
        match=r"its vectorized form fails on the row \{[^}]*'x': None[^}]*\}, which its row form takes",
    ):
        FeatureStore(tmp_path).apply()


HOSTILE = "if row['x'] == 4:\n        raise SystemExit(3)\n    if row['x'] == 5:\n        raise KeyboardInterrupt\n    return {'out': 1.0}"


def test_system_exit_and_keyboard_interrupt_in_a_function(tmp_path):
    store = _repo(tmp_path, HOSTILE)
    for x, name in ((4, "SystemExit: 3"), (5, "KeyboardInterrupt")):
        with pytest.raises(TransformError, match=f"'calc' failed on entity row 0 .*{name}"):
            store.get_online_features(["calc:out"], [{"driver_id": 1, "x": float(x)}])
        with pytest.raises(TransformError, match=f"'calc' failed on entity row 1 .*{name}"):
            store.get_online_features(
                ["calc:out"], [{"driver_id": 1, "x": 0.0}, {"driver_id": 1, "x": float(x)}]
            )
    frame = pd.DataFrame({"driver_id": [1, 1], "x": [0.0, 4.0], "event_timestamp": [NOW, NOW]})
    with pytest.raises(TransformError, match="'calc' failed on entity_df row 1 .*SystemExit: 3"):
        store.get_historical_features(frame, ["calc:out"]).to_arrow()
    # offline, a KeyboardInterrupt is the user's Ctrl-C stopping a training set: it goes through
    with pytest.raises(KeyboardInterrupt):
        store.get_historical_features(frame.assign(x=[0.0, 5.0]), ["calc:out"]).to_arrow()
