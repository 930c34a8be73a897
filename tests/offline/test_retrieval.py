"""Training sets through the public API: inputs in every accepted form, types kept, storage and source
agree, and every malformed request fails with a message that names what is wrong."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore import (
    Array,
    Bytes,
    DataFrameSource,
    Entity,
    FeatureStore,
    FeatureStoreError,
    FeatureView,
    Field,
    Int64,
    RetrievalError,
    UnknownNameError,
)
from featurestore.catalog import Catalog
from tests.offline.pit_repo import build_store, write_rows
from tests.repo_builder import make_repo

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def minutes(m: float) -> datetime:
    return T0 + timedelta(minutes=m)


def user_row(user_id, m, u_int=None, u_float=None, u_str=None, u_bool=None, created=None):
    return {
        "user_id": user_id,
        "ts": minutes(m),
        "created": None if created is None else minutes(created),
        "u_int": u_int,
        "u_float": u_float,
        "u_str": u_str,
        "u_bool": u_bool,
    }


def route_row(origin, dest, m, r_int=None, r_str=None):
    return {"origin": origin, "dest": dest, "ts": minutes(m), "created": None, "r_int": r_int, "r_str": r_str}


USER_ROWS = [
    user_row(1, 0, u_int=10, u_float=1.0, u_str="a", u_bool=True),
    user_row(1, 5, u_int=None, u_float=2.5, u_str="b", u_bool=None),
    user_row(2, 1, u_int=20, u_float=None, u_str=None, u_bool=False),
]
ROUTE_ROWS = [route_row("a", 1, 0, r_int=7, r_str="x"), route_row("a", 2, 0, r_int=8, r_str="y")]


@pytest.fixture
def store(tmp_path):
    store = build_store(tmp_path / "repo")
    write_rows(store.repo_path, {"user": USER_ROWS, "route": ROUTE_ROWS})
    return store


def entities(*rows) -> pd.DataFrame:
    """(user_id, minutes, label) rows as a pandas entity_df with naive (UTC) times."""
    return pd.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "event_timestamp": [minutes(r[1]).replace(tzinfo=None) for r in rows],
            "label": [r[2] for r in rows],
        }
    )


# -- results -------------------------------------------------------------------------------------------


def test_every_entity_row_comes_back_once_in_order_with_its_columns(store):
    df = entities((1, 6, "late"), (2, 0, "before any row"), (1, 6, "late"), (1, 2, "mid"), (3, 9, "unknown"))
    out = store.get_historical_features(df, ["user_none:u_float", "user_none:u_str"]).to_pandas()
    assert list(out.columns) == ["user_id", "event_timestamp", "label", "u_float", "u_str"]
    assert out["label"].tolist() == ["late", "before any row", "late", "mid", "unknown"]
    assert out["event_timestamp"].tolist() == df["event_timestamp"].tolist()
    assert out["u_float"].tolist()[:4] == [2.5, pytest.approx(float("nan"), nan_ok=True), 2.5, 1.0]
    assert out["u_str"].isna().tolist() == [False, True, False, False, True]


def test_to_pandas_keeps_the_index_an_arrow_entity_df_carries(store):
    sliced = entities((1, 6, 0), (2, 2, 1), (1, 1, 0)).iloc[1:]  # index 1, 2
    out = store.get_historical_features(pa.Table.from_pandas(sliced), ["user_none:u_int"]).to_pandas()
    assert out.index.tolist() == [1, 2] and out["u_int"].tolist() == [20, 10]


def test_ttl_bounds_are_inclusive_and_older_rows_are_ignored(store):
    # user_2m: ttl 2 minutes. User 1 has rows at minutes 0 and 5.
    df = entities((1, 7, "edge"), (1, 7.01, "just past"), (1, 5, "same time"), (1, 4.9, "before"))
    out = store.get_historical_features(df, ["user_2m:u_str"]).to_arrow()
    assert out.column("u_str").to_pylist() == ["b", None, "b", None]


def test_integer_and_boolean_features_keep_their_types_with_nulls(store):
    job = store.get_historical_features(
        entities((1, 6, 0), (2, 2, 1), (9, 2, 0)),
        ["user_none:u_int", "user_none:u_bool", "user_none:u_float"],
    )
    table = job.to_arrow()
    assert table.schema.field("u_int").type == pa.int64()
    assert table.schema.field("u_bool").type == pa.bool_()
    assert table.column("u_int").to_pylist() == [None, 20, None]
    df = job.to_pandas()
    assert str(df["u_int"].dtype) == "Int64" and str(df["u_bool"].dtype) == "boolean"
    assert df["u_int"].tolist()[1] == 20 and df["u_int"].isna().tolist() == [True, False, True]
    assert df["user_id"].dtype == "int64" and df["label"].dtype == "int64"  # entity columns as given


def test_composite_keys_and_a_feature_service(store):
    df = pd.DataFrame(
        {"user_id": [1, 2], "origin": ["a", "a"], "dest": [2, 3], "event_timestamp": [minutes(2), minutes(2)]}
    )
    by_name = store.get_historical_features(df, "trip_features").to_arrow()
    by_object = store.get_historical_features(df, store.catalog.services["trip_features"]).to_arrow()
    assert by_name.equals(by_object)
    assert by_name.column_names == [
        "user_id",
        "origin",
        "dest",
        "event_timestamp",
        "u_int",
        "u_str",
        "r_int",
        "r_str",
    ]
    assert by_name.select(["u_int", "r_int", "r_str"]).to_pylist() == [
        {"u_int": 10, "r_int": 8, "r_str": "y"},
        {"u_int": 20, "r_int": None, "r_str": None},
    ]


def test_full_feature_names_prefix_the_view(store):
    df = entities((1, 6, 0))
    with pytest.raises(RetrievalError, match="'u_int' is requested from both 'user_none' and 'user_2m'"):
        store.get_historical_features(df, ["user_none:u_int", "user_2m:u_int"])
    out = store.get_historical_features(
        df, ["user_none:u_int", "user_2m:u_str"], full_feature_names=True
    ).to_arrow()
    assert out.column_names[-2:] == ["user_none__u_int", "user_2m__u_str"]


def test_bitemporal_ignores_rows_created_after_the_entity_row(store):
    rows = [
        user_row(1, 0, u_str="on time", created=0),
        user_row(1, 1, u_str="backfilled", created=30),
        user_row(2, 1, u_str="no created time"),
    ]
    write_rows(store.repo_path, {"user": rows})
    df = entities((1, 10, 0), (1, 40, 0), (2, 10, 0))
    plain = store.get_historical_features(df, ["user_none:u_str"]).to_arrow().column("u_str").to_pylist()
    assert plain == ["backfilled", "backfilled", "no created time"]
    bitemporal = store.get_historical_features(df, ["user_none:u_str"], bitemporal=True).to_arrow()
    # A row without a created time counts as created at its event time.
    assert bitemporal.column("u_str").to_pylist() == ["on time", "backfilled", "no created time"]


def test_materialized_storage_is_read_instead_of_the_source(store):
    refs = ["user_none:u_int", "user_none:u_str", "user_2m:u_float"]
    df = entities((1, 6, 0), (1, 3, 1), (2, 2, 0))
    from_source = store.get_historical_features(df, refs, full_feature_names=True).to_arrow()
    store.materialize(minutes(0), minutes(10))
    assert store.offline_storage.has_data("user_none")
    from_storage = store.get_historical_features(df, refs, full_feature_names=True).to_arrow()
    assert from_storage.equals(from_source)
    # Once materialized, storage is what counts: a row added to the source later is not seen ...
    write_rows(store.repo_path, {"user": [*USER_ROWS, user_row(2, 1.5, u_int=99)]})
    again = store.get_historical_features(df, refs, full_feature_names=True).to_arrow()
    assert again.equals(from_source)
    # ... until it is materialized.
    store.materialize(minutes(0), minutes(10))
    assert (
        store.get_historical_features(df, ["user_none:u_int"]).to_arrow().column("u_int").to_pylist()[2] == 99
    )


def test_entity_df_as_sql_reads_sources_by_name_and_files_from_the_repo(store, tmp_path, monkeypatch):
    sql = (
        "SELECT user_id, event_timestamp + INTERVAL 1 MINUTE AS event_timestamp, 'x' AS tag "
        "FROM user_src WHERE user_id = 1 ORDER BY event_timestamp"
    )
    out = store.get_historical_features(sql, ["user_none:u_float"]).to_arrow()
    assert out.column_names == ["user_id", "event_timestamp", "tag", "u_float"]
    assert out.column("u_float").to_pylist() == [1.0, 2.5]
    pq.write_table(
        pa.table({"user_id": [2], "event_timestamp": [minutes(3)]}), store.repo_path / "data" / "ents.parquet"
    )
    monkeypatch.chdir(tmp_path)  # not the repo: relative paths are read from the repo
    out = store.get_historical_features("SELECT * FROM 'data/ents.parquet'", ["user_none:u_int"]).to_arrow()
    assert out.column("u_int").to_pylist() == [20]
    with pytest.raises(RetrievalError, match="entity_df SQL failed.*user_srcc"):
        store.get_historical_features("SELECT * FROM user_srcc", ["user_none:u_int"])


def test_event_times_may_be_aware_naive_dates_or_iso_strings(store):
    naive = entities((1, 6, 0), (2, 2, 0))
    expected = store.get_historical_features(naive, ["user_none:u_float"]).to_arrow().column("u_float")
    variants = {
        "aware": naive.assign(
            event_timestamp=naive["event_timestamp"].dt.tz_localize("UTC").dt.tz_convert("Asia/Tokyo")
        ),
        "strings": naive.assign(event_timestamp=["2026-03-01T21:06:00+09:00", "2026-03-01 12:02:00"]),
        "nanoseconds": naive.assign(
            event_timestamp=naive["event_timestamp"].astype("datetime64[ns]") + pd.Timedelta(nanoseconds=500)
        ),
    }
    for name, df in variants.items():
        got = store.get_historical_features(df, ["user_none:u_float"]).to_arrow()
        assert got.column("u_float").equals(expected), name
        assert got.column("event_timestamp").equals(pa.Table.from_pandas(df).column("event_timestamp")), name
    dates = pa.table(
        {"user_id": [1], "event_timestamp": pa.array([T0.date() + timedelta(days=1)], pa.date32())}
    )
    assert store.get_historical_features(dates, ["user_none:u_float"]).to_arrow().column(
        "u_float"
    ).to_pylist() == [2.5]


def test_list_and_bytes_features_keep_their_types_and_ties_are_broken_by_value(tmp_path):
    rows = pa.table(
        {
            "id": [1, 1, 1],
            "event_timestamp": pa.array([T0, T0, T0], pa.timestamp("us", "UTC")),
            "ids": pa.array([[1], [1, 2], None], pa.list_(pa.int64())),
            "blob": pa.array([b"a", b"b", b"c"], pa.binary()),
        }
    )
    source = DataFrameSource(name="rows", df=rows)
    thing = Entity(name="thing", join_keys=["id"])
    view = FeatureView(
        name="things",
        entities=[thing],
        source=source,
        online=False,
        schema=[Field("ids", Array(Int64)), Field("blob", Bytes)],
    )
    store = FeatureStore(make_repo(tmp_path / "repo", {}))
    store.apply(Catalog(entities={"thing": thing}, sources={"rows": source}, views={"things": view}))
    df = pa.table({"id": [1, 2], "event_timestamp": pa.array([T0, T0], pa.timestamp("us", "UTC"))})
    for refs in (["things:ids", "things:blob"], ["things:blob"]):  # the same row, whatever is requested
        out = store.get_historical_features(df, refs).to_arrow()
        assert out.schema.field("blob").type == pa.binary()
        assert out.column("blob").to_pylist() == [b"b", None]  # the greatest list, [1, 2], wins the tie
    assert out.column_names == ["id", "event_timestamp", "blob"]
    ids = store.get_historical_features(df, ["things:ids"]).to_arrow().column("ids")
    assert ids.type == pa.list_(pa.int64()) and ids.to_pylist() == [[1, 2], None]


def test_an_empty_entity_df_gives_an_empty_training_set(store):
    df = pa.table({"user_id": pa.array([], pa.int64()), "event_timestamp": pa.array([], pa.timestamp("us"))})
    out = store.get_historical_features(df, ["user_none:u_int", "user_none:u_str"]).to_arrow()
    assert out.num_rows == 0 and out.schema.field("u_int").type == pa.int64()


def test_the_job_records_its_inputs_and_writes_parquet(store, tmp_path):
    df = entities((1, 6, 0))
    job = store.get_historical_features(df, ["user_2m:u_int", "user_none:u_str"])
    assert job.features == ["user_2m:u_int", "user_none:u_str"]
    assert job.feature_refs == ["user_2m:u_int", "user_none:u_str"]
    assert job.columns == ["user_id", "event_timestamp", "label", "u_int", "u_str"]
    assert job.entity_df.num_rows == 1 and not job.bitemporal and not job.full_feature_names
    path = job.to_parquet(tmp_path / "out" / "train.parquet")
    assert pq.read_table(path).equals(job.to_arrow())
    service = store.get_historical_features(df.assign(origin="a", dest=1), "trip_features")
    assert service.features == "trip_features" and service.feature_refs[0] == "user_2m:u_int"


# -- errors --------------------------------------------------------------------------------------------


def test_a_missing_event_timestamp_column_is_named_with_the_columns_there(store):
    df = entities((1, 6, 0)).rename(columns={"event_timestamp": "ts"})
    with pytest.raises(
        RetrievalError,
        match=r"no 'event_timestamp' column \(its columns: 'user_id', 'ts', 'label'\); "
        r"rename 'ts' to 'event_timestamp'",
    ):
        store.get_historical_features(df, ["user_none:u_int"])


@pytest.mark.parametrize(
    "values, message",
    [
        ([1, 2], "has type int64; it must hold timestamps"),
        (["2026-03-01", "yesterday"], "'yesterday' \\(row 1\\) is not a timestamp"),
        ([minutes(1), None], "1 null value\\(s\\) \\(the first in row 1\\)"),
    ],
)
def test_event_timestamps_that_are_not_times_are_refused(store, values, message):
    df = pa.table({"user_id": [1, 2], "event_timestamp": values})
    with pytest.raises(RetrievalError, match=message):
        store.get_historical_features(df, ["user_none:u_int"])


def test_unknown_features_and_views_suggest_the_right_name(store):
    df = entities((1, 6, 0))
    with pytest.raises(UnknownNameError, match="'u_flaot' \\(did you mean 'u_float'\\?\\)"):
        store.get_historical_features(df, ["user_none:u_flaot"])
    with pytest.raises(
        UnknownNameError, match="unknown feature view 'user_nome' \\(did you mean 'user_none'\\?\\)"
    ):
        store.get_historical_features(df, ["user_nome:u_int"])
    with pytest.raises(UnknownNameError, match="unknown feature service 'trip_feature'"):
        store.get_historical_features(df, "trip_feature")


def test_a_missing_join_key_names_the_view_and_the_key(store):
    df = entities((1, 6, 0)).rename(columns={"user_id": "userid"})
    with pytest.raises(
        RetrievalError,
        match="feature view 'user_none' joins on 'user_id', which entity_df lacks "
        "\\(its columns: 'userid', 'event_timestamp', 'label'\\) "
        "\\(did you mean 'userid'\\?\\)",
    ):
        store.get_historical_features(df, ["user_none:u_int"])
    with pytest.raises(RetrievalError, match="feature view 'route_3m' joins on 'origin'"):
        store.get_historical_features(entities((1, 6, 0)), ["route_3m:r_int"])


def test_a_feature_named_like_an_entity_df_column_is_refused(store):
    df = entities((1, 6, 0)).assign(u_int=5)
    with pytest.raises(
        RetrievalError, match="'user_none:u_int' would be returned as 'u_int', which is already a column"
    ):
        store.get_historical_features(df, ["user_none:u_int"])
    out = store.get_historical_features(df, ["user_none:u_int"], full_feature_names=True).to_arrow()
    assert out.column_names[-2:] == ["u_int", "user_none__u_int"]


def test_join_keys_of_another_type_are_refused_when_the_join_runs(store):
    # The key rule (featurestore.keys): digit strings are integer keys, other text is refused.
    as_int = store.get_historical_features(entities((1, 6, 0)), ["user_none:u_int"]).to_arrow()
    df = entities((1, 6, 0)).astype({"user_id": str})
    as_text = store.get_historical_features(df, ["user_none:u_int"]).to_arrow()
    assert as_text.column("u_int") == as_int.column("u_int")
    job = store.get_historical_features(df.assign(user_id="u1"), ["user_none:u_int"])
    with pytest.raises(
        RetrievalError,
        match=r"entity_df row 0: join key 'user_id' of feature view 'user_none': 'u1' is not an integer",
    ):
        job.to_arrow()
    # A key column without any value (pandas makes it float or object) simply matches nothing.
    empty = entities((1, 6, 0)).assign(user_id=[None])
    assert store.get_historical_features(empty, ["user_none:u_int"]).to_arrow().column(
        "u_int"
    ).to_pylist() == [None]


@pytest.mark.parametrize("entity_df", [[{"user_id": 1}], {"user_id": [1]}, 42])
def test_an_entity_df_of_another_kind_is_refused(store, entity_df):
    with pytest.raises(
        RetrievalError, match="entity_df must be a pandas DataFrame, an Arrow table or a SQL string"
    ):
        store.get_historical_features(entity_df, ["user_none:u_int"])


def test_every_error_is_a_feature_store_error(store):
    for bad in (
        lambda: store.get_historical_features(entities((1, 6, 0)), ["nope"]),
        lambda: store.get_historical_features(entities((1, 6, 0)), []),
        lambda: store.get_historical_features(pd.DataFrame({"x": [1]}), ["user_none:u_int"]),
    ):
        with pytest.raises(FeatureStoreError):
            bad()
