"""Time-window aggregations (SPEC §11) on the Spark engine: the oracle's answer, and the DuckDB engine's.

Data, views and requests are those of `tests.aggregations.test_offline` (ties, duplicates, windows
shorter than their tile, times before the epoch, values near 1e9), with fewer examples.
"""

from __future__ import annotations

import math
import shutil
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from featurestore import FeatureStore
from featurestore.offline.retrieval import get_historical_features
from tests.aggregations.oracle import expected
from tests.aggregations.test_offline import (
    VIEWS,
    Request,
    World,
    _definitions,
    aggregations,
    entity_df,
    examples,
    oracle_events,
    requests,
    same,
    source_table,
    us,
    world,
)
from tests.repo_builder import make_repo, write_table
from tests.spark.conftest import on_spark


@pytest.fixture(scope="module")
def stores(spark, tmp_path_factory: pytest.TempPathFactory) -> tuple[FeatureStore, FeatureStore]:
    root = make_repo(
        tmp_path_factory.mktemp("agg-spark") / "repo",
        {"defs.py": _definitions()},
        {"data/events.parquet": source_table([])},
    )
    duck = FeatureStore(root)
    duck.apply()
    return duck, on_spark(duck)


def _close(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)
    return a == b and type(a) is type(b)


@examples(14)
@given(data=world(), request=requests(), bitemporal=st.booleans())
def test_spark_aggregates_match_the_oracle_and_duckdb(
    stores: tuple[FeatureStore, FeatureStore], data: World, request: Request, bitemporal: bool
) -> None:
    duck, spark = stores
    events, rows = data
    write_table(duck.repo_path / "data" / "events.parquet", source_table(events))
    shutil.rmtree(duck.config.offline_path, ignore_errors=True)
    chosen, full = request
    refs = [f"{v}:{f}" for v, fs in chosen for f in fs]
    want = get_historical_features(duck, entity_df(rows), refs, full, bitemporal=bitemporal).to_arrow()
    got = get_historical_features(spark, entity_df(rows), refs, full, bitemporal=bitemporal).to_arrow()
    assert got.schema == want.schema
    keyed = [((r["card_id"],), us(r["ts"])) for r in rows]
    for view, features in chosen:  # the oracle
        if view == "latest":
            continue  # the plain view: the point-in-time oracle's business (test_pit_spark)
        by_name = {a.feature_name: a for a in aggregations(view)}
        hop_us = VIEWS[view][0] // timedelta(microseconds=1)
        oracle = expected(oracle_events(events), keyed, [by_name[f] for f in features], hop_us, bitemporal)
        for feature in features:
            name = f"{view}__{feature}" if full else feature
            for i, (g, w) in enumerate(zip(got.column(name).to_pylist(), oracle[feature])):
                assert same(g, w), f"{view}:{feature}, row {i} {rows[i]}: got {g!r}, want {w!r}"
    for name in got.column_names:  # sums of floats: the same rows, maybe in another order
        pairs = zip(got.column(name).to_pylist(), want.column(name).to_pylist())
        assert all(_close(g, w) for g, w in pairs), f"column {name}: Spark and DuckDB differ"
