"""Training-set lineage: a saved training set regenerates to the same fingerprint, and when it does not,
the comparison says what changed (definitions, entity rows, or the data behind a column)."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featurestore import ModelRegistryError, UnknownNameError
from featurestore.models.lineage import hash_column, hash_table
from tests.models.conftest import DEFINITIONS, NOW, stats_rows, training_frame
from tests.repo_builder import write_table


def entity_df(drivers=(1, 2, 3, 4, 2), hours_ago=(1, 2, 3, 5, 8)):
    return pd.DataFrame(
        {
            "driver_id": list(drivers),
            "event_timestamp": [NOW - timedelta(hours=h) for h in hours_ago],
            "label": [float(i) for i in range(len(drivers))],
        }
    )


def test_a_saved_training_set_regenerates_to_the_same_fingerprint(store):
    job = store.get_historical_features(entity_df(), features="driver_activity")
    ts = job.save("eta_train", description="first")
    assert len(ts.fingerprint) == 64 and ts.rows == 5 and ts.created_by == "tester"
    assert ts.feature_refs == ("driver_stats:conv_rate", "driver_stats:acc_rate", "driver_stats:trips")
    assert ts.entity_rows["columns"] == ["driver_id", "event_timestamp", "label"]
    assert ts.definitions["driver_stats"]["version"] == 1
    assert store.training_sets.get("eta_train") == ts
    assert store.training_sets.entity_rows("eta_train").column("driver_id").to_pylist() == [1, 2, 3, 4, 2]
    comparison = store.training_sets.compare("eta_train")
    assert comparison.same and comparison.changes == () and "identically" in str(comparison)

    # saving the same thing again is a no-op; something else under the same name is refused
    again = store.save_training_set(
        "eta_train", store.get_historical_features(entity_df(), "driver_activity")
    )
    assert again.fingerprint == ts.fingerprint and again.created_at == ts.created_at
    other = store.get_historical_features(entity_df(drivers=(5, 6, 7, 8, 9)), "driver_activity")
    with pytest.raises(ModelRegistryError, match="already exists with another fingerprint"):
        other.save("eta_train")
    assert other.save("eta_train", overwrite=True).fingerprint != ts.fingerprint
    with pytest.raises(UnknownNameError, match="did you mean 'eta_train'"):
        store.training_sets.get("eta_trian")


def test_the_comparison_says_what_changed(store):
    store.get_historical_features(entity_df(), features="driver_activity").save("eta_train")

    # the data behind one column changed (re-materialized): definitions and entity rows did not
    write_table(store.repo_path / "data" / "stats.parquet", stats_rows(shift=1.0))
    store.materialize(NOW - timedelta(days=5), NOW)
    comparison = store.training_sets.compare("eta_train")
    assert not comparison.same
    assert comparison.changes == (
        "column 'conv_rate' changed",
        "definitions and entity rows are the same: the source data (or offline storage) changed",
    )

    # a definition changed
    (store.repo_path / "features.py").write_text(
        DEFINITIONS.replace("ttl=timedelta(days=1)", "ttl=timedelta(days=2)")
    )
    store.apply()
    changes = store.training_sets.compare("eta_train").changes
    assert "feature view 'driver_stats' definition changed (version 1 -> 2)" in changes


def test_models_record_the_training_set_they_were_trained_on(store):
    from sklearn.linear_model import LinearRegression

    job = store.get_historical_features(entity_df(), features="driver_activity")
    ts = job.save("eta_train")
    train = job.to_pandas()
    model = LinearRegression().fit(train[["conv_rate", "acc_rate", "trips"]], train["label"])
    mv = store.models.register("eta", model, feature_service="driver_activity", training_set="eta_train")
    assert (mv.training_set, mv.training_fingerprint) == ("eta_train", ts.fingerprint)

    store.get_historical_features(entity_df(), features="rates").save("rates_only")
    with pytest.raises(
        ModelRegistryError, match=r"training set 'rates_only' does not hold .*driver_stats:trips"
    ):
        store.models.register("eta", model, feature_service="driver_activity", training_set="rates_only")
    df, y = training_frame(columns=["conv_rate", "acc_rate"])
    narrow = LinearRegression().fit(df, y)
    assert (
        store.models.register("narrow", narrow, feature_service="rates", training_set=ts).training_set
        == "eta_train"
    )


_values = st.lists(st.one_of(st.none(), st.integers(-(2**40), 2**40)), min_size=1, max_size=30)


@settings(max_examples=50, deadline=None)
@given(_values, st.integers(1, 5), st.integers(0, 3))
def test_column_hashes_depend_on_values_not_on_chunking(values, chunks, offset):
    whole = pa.chunked_array([pa.array(values, pa.int64())])
    size = max(1, len(values) // chunks)
    pieces = [pa.array(values[i : i + size], pa.int64()) for i in range(0, len(values), size)]
    assert hash_column(pa.chunked_array(pieces, pa.int64())) == hash_column(whole)
    text = [None if v is None else str(v) for v in values]
    sliced = pa.array(["pad"] * offset + text, pa.string()).slice(offset)
    assert hash_column(sliced) == hash_column(pa.array(text, pa.string()))
    changed = list(values)
    changed[-1] = 7 if changed[-1] is None else None
    assert hash_column(pa.array(changed, pa.int64())) != hash_column(whole)
    assert hash_column(whole.cast(pa.float64())) != hash_column(whole)  # the type counts too


def test_table_hash_names_each_column():
    table = pa.table({"a": [1, 2], "b": ["x", None]})
    digest, columns = hash_table(table)
    assert list(columns) == ["a", "b"]
    assert hash_table(table.rename_columns(["a", "c"]))[0] != digest
    assert hash_table(pa.table({"a": [1, 2], "b": ["x", ""]}))[1]["b"] != columns["b"]  # null is not ""


@pytest.mark.parametrize("name", ["eta\n", "a/b", "..", ".hidden", "x\\y", "tab\there", ""])
def test_training_set_names_that_are_no_plain_folder_name_are_refused(store, name):
    job = store.get_historical_features(entity_df(), features="driver_activity")
    with pytest.raises(ModelRegistryError, match="training set name .* is invalid"):
        job.save(name)
    assert not any(p.name.startswith(("eta", "tab")) for p in store.training_sets.root.glob("*"))
