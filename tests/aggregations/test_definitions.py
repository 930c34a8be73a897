"""Aggregating feature views as definitions: names, types, refusals, specs, the repo loader, plan."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest

from featurestore import (
    Aggregation,
    DataFrameSource,
    DefinitionError,
    Entity,
    FeatureStore,
    FeatureView,
    Field,
    Float64,
    Int64,
    ParquetSource,
    RepoError,
    String,
)
from featurestore.definitions import window_label
from tests.repo_builder import make_repo

card = Entity(name="card", join_keys=["card_id"])
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
EVENTS = pa.table(
    {
        "card_id": pa.array([1, 1, 2], pa.int64()),
        "amount": pa.array([1.5, 2.0, 3.0]),
        "qty": pa.array([1, 2, 3], pa.int32()),
        "merchant": ["a", "b", "c"],
        "event_timestamp": pa.array([T0, T0 + timedelta(minutes=1), T0], pa.timestamp("us", "UTC")),
    }
)
tx = DataFrameSource(name="tx", df=EVENTS)


def test_names_follow_column_function_window():
    assert window_label(timedelta(seconds=30)) == "30s"
    assert window_label(timedelta(minutes=5)) == "5m"
    assert window_label(timedelta(hours=1)) == "1h"
    assert window_label(timedelta(days=7)) == "7d"
    assert window_label(timedelta(minutes=90)) == "90m"
    assert Aggregation("amount", "sum", window=timedelta(hours=1)).feature_name == "amount_sum_1h"
    assert Aggregation("merchant", "last").feature_name == "merchant_last"
    assert (
        Aggregation("amount", "count", window=timedelta(days=30), name="tx_count_30d").feature_name
        == "tx_count_30d"
    )


def test_output_types_come_from_the_inputs_which_come_from_a_dataframe_source():
    view = FeatureView(
        name="card_activity",
        entities=[card],
        source=tx,
        aggregations=[
            Aggregation("amount", "sum", window=timedelta(hours=1)),
            Aggregation("qty", "sum", window=timedelta(hours=1)),
            Aggregation("qty", "mean"),
            Aggregation("qty", "max"),
            Aggregation("merchant", "count_distinct"),
            Aggregation("merchant", "last"),
            Aggregation("amount", "std", window=timedelta(days=1)),
        ],
    )
    types = {f.name: f.dtype for f in view.features}
    assert types == {
        "amount_sum_1h": Float64,
        "qty_sum_1h": Int64,
        "qty_mean": Float64,
        "qty_max": Int64,
        "merchant_count_distinct": Int64,
        "merchant_last": String,
        "amount_std_1d": Float64,
    }
    assert view.hop == timedelta(minutes=5) and view.is_aggregating
    assert {f.name for f in view.row_fields} == {"amount", "qty", "merchant"}
    again = FeatureView.from_spec(view.to_spec(), {"card": card}, {"tx": tx})
    assert again == view and again.to_spec() == view.to_spec()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ttl": timedelta(days=1)}, "takes no ttl"),
        ({"hop": timedelta(milliseconds=1500)}, "whole number of seconds"),
        ({"schema": [Field("amount", Float64), Field("other", Float64)]}, "field 'other' is not aggregated"),
    ],
)
def test_refusals(kwargs, message):
    with pytest.raises(DefinitionError, match=message):
        FeatureView(
            name="v", entities=[card], source=tx, aggregations=[Aggregation("amount", "sum")], **kwargs
        )


def test_refusals_of_aggregations():
    with pytest.raises(DefinitionError, match="unknown function 'median'"):
        Aggregation("amount", "median")
    with pytest.raises(DefinitionError, match="window must be positive"):
        Aggregation("amount", "sum", window=timedelta(0))
    with pytest.raises(DefinitionError, match="needs a numeric column"):
        FeatureView(name="v", entities=[card], source=tx, aggregations=[Aggregation("merchant", "sum")])
    with pytest.raises(DefinitionError, match="two aggregations are named 'amount_sum'"):
        FeatureView(name="v", entities=[card], source=tx, aggregations=[Aggregation("amount", "sum")] * 2)
    with pytest.raises(DefinitionError, match="aggregates the join key"):
        FeatureView(name="v", entities=[card], source=tx, aggregations=[Aggregation("card_id", "count")])
    with pytest.raises(DefinitionError, match="hop= is the tile size"):
        FeatureView(
            name="v", entities=[card], source=tx, schema=[Field("amount", Float64)], hop=timedelta(minutes=1)
        )


DEFS = """
from datetime import timedelta
from featurestore import Aggregation, Entity, FeatureView, ParquetSource
card = Entity(name="card", join_keys=["card_id"])
tx = ParquetSource(name="tx", path="data/tx.parquet")
card_activity = FeatureView(name="card_activity", entities=[card], source=tx, aggregations=[
    Aggregation("amount", "{function}", window=timedelta(hours=1)),
    Aggregation("{column}", "last"),
])
"""


def _repo(tmp_path, function="sum", column="merchant"):
    return make_repo(
        tmp_path / "repo",
        {"features.py": DEFS.format(function=function, column=column)},
        {"data/tx.parquet": EVENTS},
    )


def test_the_loader_reads_input_types_from_the_source(tmp_path):
    store = FeatureStore(_repo(tmp_path))
    store.apply()
    view = store.catalog.view("card_activity")
    assert {f.name: f.dtype for f in view.features} == {"amount_sum_1h": Float64, "merchant_last": String}
    assert [f.name for f in view.schema] == ["amount", "merchant"]


def test_the_loader_names_a_missing_column_and_a_wrong_function(tmp_path):
    with pytest.raises(
        RepoError, match="aggregated column 'merchnt' is not a column of source 'tx'.*merchant"
    ):
        FeatureStore(_repo(tmp_path, column="merchnt")).plan()
    with pytest.raises(RepoError, match="features.py.*sum of 'merchant'.*needs a numeric column"):
        FeatureStore(
            make_repo(
                tmp_path / "r2",
                {
                    "features.py": DEFS.format(function="sum", column="merchant").replace(
                        '"amount", "sum"', '"merchant", "sum"'
                    )
                },
                {"data/tx.parquet": EVENTS},
            )
        ).plan()


def test_a_changed_window_or_function_makes_the_view_stale(tmp_path):
    repo = _repo(tmp_path)
    store = FeatureStore(repo)
    store.apply()
    (repo / "features.py").write_text(DEFS.format(function="mean", column="merchant").lstrip())
    plan = FeatureStore(repo).plan()
    assert plan.stale == ("card_activity",)
    (repo / "features.py").write_text(
        DEFS.format(function="sum", column="merchant").replace("hours=1", "hours=2").lstrip()
    )
    assert FeatureStore(repo).plan().stale == ("card_activity",)


def test_parquet_source_unresolved_types_are_explained():
    view = FeatureView(
        name="v",
        entities=[card],
        source=ParquetSource(name="p", path="x.parquet"),
        aggregations=[Aggregation("amount", "sum")],
    )
    assert view.feature_names == ("amount_sum",)
    with pytest.raises(DefinitionError, match="type of aggregated column 'amount' is unknown"):
        _ = view.features
