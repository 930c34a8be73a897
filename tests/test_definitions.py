"""Definitions are plain validated data: bad ones fail at construction with a message naming the problem."""

from datetime import timedelta

import pyarrow as pa
import pytest

from featurestore import (
    Array,
    CsvSource,
    DataFrameSource,
    DefinitionError,
    DuckDBSource,
    Entity,
    FeatureService,
    FeatureView,
    Field,
    Float64,
    Int64,
    ParquetSource,
    PushSource,
    String,
    UnknownNameError,
    ValueType,
)
from featurestore.catalog import Catalog
from featurestore.definitions import DataSource, parse_ref

driver = Entity(name="driver", join_keys=["driver_id"])
src = ParquetSource(name="stats", path="data/stats.parquet", created_timestamp_field="created")


def view(**kw):
    args = dict(
        name="stats_view",
        entities=[driver],
        schema=[Field("conv_rate", Float64), Field("trips", Int64)],
        source=src,
        ttl=timedelta(days=1),
    )
    args.update(kw)
    return FeatureView(**args)


def test_entity_defaults_join_key_to_its_name_and_allows_composite_keys():
    assert Entity(name="driver").join_keys == ("driver",)
    assert Entity(name="route", join_keys=["origin", "dest"]).join_keys == ("origin", "dest")


@pytest.mark.parametrize("name", ["", "1abc", "has space", "dash-name", "__reserved", "driver\n", None])
def test_invalid_names_are_refused(name):
    with pytest.raises(DefinitionError, match="invalid"):
        Entity(name=name)


def test_repeated_join_key_is_refused():
    with pytest.raises(DefinitionError, match="repeat"):
        Entity(name="route", join_keys=["a", "a"])


def test_view_needs_entities_source_and_features():
    with pytest.raises(DefinitionError, match="at least one entity"):
        view(entities=[])
    with pytest.raises(DefinitionError, match="source must be"):
        view(source="data.parquet")
    with pytest.raises(DefinitionError, match="declares no features"):
        view(schema=[Field("driver_id", Int64)])


def test_view_refuses_duplicate_fields_and_timestamp_features():
    with pytest.raises(DefinitionError, match="appears twice"):
        view(schema=[Field("a", Int64), Field("a", Float64)])
    with pytest.raises(DefinitionError, match="timestamp column"):
        view(schema=[Field("created", Int64)])
    with pytest.raises(DefinitionError, match="timestamp column"):
        view(schema=[Field("event_timestamp", Int64)])


def test_two_entities_sharing_a_key_are_refused():
    with pytest.raises(DefinitionError, match="share a join key"):
        view(entities=[driver, Entity(name="other", join_keys=["driver_id"])])


def test_key_fields_in_schema_declare_key_types_not_features():
    v = view(schema=[Field("driver_id", Int64), Field("conv_rate", Float64)])
    assert v.feature_names == ("conv_rate",)
    assert v.key_fields == {"driver_id": Int64}
    assert v.join_keys == ("driver_id",)


def test_an_entity_named_by_string_decides_no_keys_until_resolved():
    # Its join keys are the named Entity's, known only when the repo is loaded: no field is a key by guess.
    v = view(entities=["driver"], schema=[Field("driver", Int64), Field("conv_rate", Float64)])
    assert v.join_keys == () and v.feature_names == ("driver", "conv_rate")


def test_zero_ttl_means_unbounded_and_bad_ttl_is_refused():
    assert view(ttl=timedelta(0)).ttl is None
    with pytest.raises(DefinitionError, match="ttl"):
        view(ttl=3600)


def test_projection_and_service():
    v = view()
    proj = v[["conv_rate"]]
    assert proj.refs == ["stats_view:conv_rate"]
    # A name is checked where the view's source is known too (repo load), or when a lookup resolves it.
    typo = v[["conv_rat"]]
    with pytest.raises(UnknownNameError, match="did you mean 'conv_rate'"):
        Catalog(entities={"driver": driver}, sources={"stats": src}, views={"stats_view": v}).resolve(typo)
    svc = FeatureService(name="svc", features=[proj, v])
    assert svc.refs == ["stats_view:conv_rate", "stats_view:conv_rate", "stats_view:trips"]
    with pytest.raises(DefinitionError, match="lists no features"):
        FeatureService(name="empty", features=[])
    with pytest.raises(DefinitionError, match="must be feature views"):
        FeatureService(name="bad", features=["stats_view:conv_rate"])


def test_sources_validate_their_location():
    with pytest.raises(DefinitionError, match="needs a path"):
        ParquetSource(name="p", path="")
    with pytest.raises(DefinitionError, match="needs a path"):
        CsvSource(name="c", path="")
    with pytest.raises(DefinitionError, match="exactly one of"):
        DuckDBSource(name="d")
    with pytest.raises(DefinitionError, match="exactly one of"):
        DuckDBSource(name="d", table="t", query="select 1")
    with pytest.raises(DefinitionError, match="needs df"):
        DataFrameSource(name="df")
    with pytest.raises(DefinitionError, match="pandas DataFrame or an Arrow table"):
        DataFrameSource(name="df", df=[1, 2, 3])


def test_push_source_takes_timestamps_from_its_batch_source():
    push = PushSource(name="push", batch_source=src)
    assert push.created_timestamp_field == "created"
    with pytest.raises(DefinitionError, match="batch source"):
        PushSource(name="p2", batch_source=push)


def test_value_types_map_to_arrow_and_round_trip_as_text():
    assert Array(Int64).to_arrow() == pa.list_(pa.int64())
    assert ValueType.from_spec("Array(String)") == Array(String)
    assert Float64.accepts(pa.int32()) and not Int64.accepts(pa.float64())
    with pytest.raises(DefinitionError, match="unknown value type"):
        ValueType.from_spec("Decimal")
    with pytest.raises(DefinitionError, match="scalar value type"):
        Array(Array(Int64))
    with pytest.raises(DefinitionError, match="dtype must be"):
        Field("x", int)


def test_specs_round_trip_through_the_registry_form():
    df = pa.table(
        {"driver_id": [1], "event_timestamp": pa.array([0], pa.timestamp("us")), "conv_rate": [0.5]}
    )
    sources = [
        src,
        CsvSource(name="c", path="x.csv", delimiter=";"),
        DuckDBSource(name="d", query="select 1"),
        PushSource(name="push", batch_source=src),
    ]
    for s in sources:
        assert DataSource.from_spec(s.to_spec()).to_spec() == s.to_spec()
    cat = Catalog(
        entities={"driver": driver},
        sources={s.name: s for s in sources},
        views={"stats_view": view(tags={"team": "a"})},
    )
    cat.services["svc"] = FeatureService(name="svc", features=[cat.views["stats_view"][["trips"]]])
    assert Catalog.from_specs(cat.specs()).specs() == cat.specs()
    # A DataFrameSource records a fingerprint of its rows, not the rows.
    spec = DataFrameSource(name="mem", df=df).to_spec()
    assert "fingerprint" in spec and "df" not in spec


def test_feature_refs_are_parsed_strictly():
    assert parse_ref("v:f") == ("v", "f")
    for bad in ["v", "v:f:g", ":f", "v:", 3]:
        with pytest.raises(DefinitionError, match="view:feature"):
            parse_ref(bad)
