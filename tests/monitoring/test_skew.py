"""The skew audit, end to end: a model served from a real repo (SQLite online store), online rows
corrupted behind the store's back, late source rows, missing values; `fs monitor skew`."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from featurestore.cli import cli
from featurestore.errors import MonitoringError
from featurestore.monitoring.skew import LAG, OTHER, TTL
from tests.monitoring.scenario import FEATURES, served_scenario

DRIVERS = 300
UTC_US = pa.timestamp("us", tz="UTC")


@pytest.fixture
def sc(tmp_path):
    scenario = served_scenario(tmp_path / "repo", drivers=DRIVERS, train_rows=1500)
    yield scenario
    scenario.close()


def serve(sc, ids: list[int]) -> tuple[str, datetime]:
    """One request for `ids` (row i is ids[i]), logged now; returns its id and a time just before it."""
    before = datetime.now(timezone.utc)
    request_id = uuid.uuid4().hex
    sc.server.predict(sc.ref, [{"driver_id": d} for d in ids], request_id=request_id)
    sc.server.log.flush()
    return request_id, before


def online_values(sc, ids: list[int]) -> dict[str, list]:
    return sc.store.get_online_features(
        [f"driver_stats:{f}" for f in FEATURES], [{"driver_id": d} for d in ids]
    ).to_dict()


def write_online(sc, ids: list[int], values: dict[str, list], when: datetime) -> None:
    """Rows written to the online store only (as a buggy writer would), behind offline storage's back."""
    view = sc.store.catalog.view("driver_stats")
    sc.store.online_store.write(
        view,
        pa.table(
            {
                "driver_id": pa.array(ids, pa.int64()),
                "conv_rate": pa.array(values["conv_rate"], pa.float64()),
                "acc_rate": pa.array(values["acc_rate"], pa.float64()),
                "trips": pa.array(values["trips"], pa.int64()),
                "__event_ts": pa.array([when] * len(ids), UTC_US),
            }
        ),
    )


def late_source_file(sc, table: pa.Table) -> None:
    pq.write_table(table, sc.root / "data" / "stats" / f"late-{uuid.uuid4().hex[:8]}.parquet")


def rows_of(ids: list[int], when: datetime, conv: float = 0.5) -> pa.Table:
    n = len(ids)
    return pa.table(
        {
            "driver_id": pa.array(ids, pa.int64()),
            "event_timestamp": pa.array([when] * n, UTC_US),
            "conv_rate": pa.array([conv] * n, pa.float64()),
            "acc_rate": pa.array([0.25] * n, pa.float64()),
            "trips": pa.array([7] * n, pa.int64()),
        }
    )


def test_clean_serving_matches_everywhere(sc):
    sc.serve(600)
    report = sc.store.monitor.skew(sc.ref)
    assert report.rows == 600 and report.version == sc.version
    assert list(report.features) == FEATURES
    for f in report.features.values():
        assert (f.total, f.matched, f.differed, f.missing_online, f.missing_offline) == (600, 600, 0, 0, 0)
        assert f.match_rate == 1.0 and f.causes == {} and f.examples == [] and f.max_abs_diff is None
    out = CliRunner().invoke(cli, ["--repo", str(sc.root), "monitor", "skew", sc.ref, "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["features"]["trips"]["match_rate"] == 1.0


def test_exactly_the_corrupted_online_rows_are_reported_for_that_feature_only(sc):
    sc.serve(300)  # clean traffic before
    rng = np.random.default_rng(3)
    bad = sorted(int(d) for d in rng.choice(np.arange(1, DRIVERS + 1), 7, replace=False))
    true = online_values(sc, bad)
    corrupted = dict(true, conv_rate=[v + 0.25 * (i + 1) for i, v in enumerate(true["conv_rate"])])
    write_online(sc, bad, corrupted, datetime.now(timezone.utc) - timedelta(seconds=1))
    ids = [int(d) for d in rng.permutation(np.arange(1, DRIVERS + 1))]
    request_id, _ = serve(sc, ids)
    later = {
        request_id,
        *(r for r, _ in sc.serve(200, seed=5)),
    }  # more traffic, some for the corrupted drivers

    report = sc.store.monitor.skew(sc.ref, examples=100)
    assert report.rows == 800
    expected = {  # every vector served with a corrupted driver since the corruption
        (r["request_id"], r["row"])
        for r in sc.log().to_pylist()
        if r["driver_id"] in bad and r["request_id"] in later
    }
    assert len(expected) > len(bad)
    conv = report.features["conv_rate"]
    assert {(e["request_id"], e["row"]) for e in conv.examples} == expected
    assert (conv.differed, conv.missing_online, conv.missing_offline) == (len(expected), 0, 0)
    assert conv.matched == 800 - len(expected)
    assert conv.causes == {OTHER: len(expected)}
    diffs = {d: 0.25 * (i + 1) for i, d in enumerate(bad)}
    seen = [diffs[e["keys"]["driver_id"]] for e in conv.examples]
    assert conv.max_abs_diff == pytest.approx(max(seen)) and conv.mean_abs_diff == pytest.approx(
        np.mean(seen)
    )
    mine = next(
        e for e in conv.examples if e["request_id"] == request_id and e["keys"]["driver_id"] == bad[0]
    )
    assert mine["row"] == ids.index(bad[0])
    assert mine["served"] == pytest.approx(corrupted["conv_rate"][0])
    assert mine["offline"] == pytest.approx(true["conv_rate"][0])
    for name in ("acc_rate", "trips"):
        other = report.features[name]
        assert (other.matched, other.differed, other.examples) == (800, 0, []), name


def test_rows_not_yet_materialized_are_materialization_lag_until_materialized(sc):
    now = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=2)
    lagging = [5, 6, 7, 8]
    late_source_file(sc, rows_of(lagging, now, conv=5.0))  # newer than the last run covered
    _, before = serve(sc, list(range(1, DRIVERS + 1)))
    report = sc.store.monitor.skew(sc.ref, start=before)
    conv = report.features["conv_rate"]
    assert conv.differed == len(lagging) and conv.causes == {LAG: len(lagging)}
    assert sorted(e["keys"]["driver_id"] for e in conv.examples[:5]) == lagging[:5]
    assert all(e["offline"] == 5.0 and e["served"] != 5.0 for e in conv.examples)

    sc.store.materialize(now - timedelta(minutes=1), now + timedelta(seconds=1))
    _, after = serve(sc, list(range(1, DRIVERS + 1)))
    fixed = sc.store.monitor.skew(sc.ref, start=after)
    assert all(f.matched == DRIVERS for f in fixed.features.values())
    # ...and the earlier window still tells what was served then
    assert sc.store.monitor.skew(sc.ref, end=after).features["conv_rate"].causes == {LAG: len(lagging)}


def use_defaults_for_missing(sc) -> None:
    """A version of the model that serves missing features as defaults (the log still lists them missing)."""
    import pandas as pd
    from sklearn.linear_model import LinearRegression

    X = pd.DataFrame({"conv_rate": [0.1, 0.5, 0.9], "acc_rate": [0.2, 0.4, 0.1], "trips": [10.0, 20.0, 30.0]})
    mv = sc.store.models.register(
        sc.model,
        LinearRegression().fit(X, [1.0, 2.0, 3.0]),
        feature_service="eta_features",
        missing_policy={"conv_rate": 0.5, "acc_rate": 0.5, "trips": 20},
    )
    sc.store.models.set_alias(sc.model, "production", mv.version)
    sc.server.refresh()


def test_missing_values_on_either_side_and_their_causes(sc):
    now = datetime.now(timezone.utc).replace(microsecond=0)
    old = now - timedelta(days=4)  # beyond the view's ttl of 3 days
    late_source_file(sc, rows_of([9003], old))
    sc.store.materialize(now - timedelta(days=5), now)  # 9003's online row is too old: OUTSIDE_MAX_AGE
    late_source_file(sc, rows_of([9002, 9003], now - timedelta(hours=2)))  # arrived after the run
    write_online(sc, [9001], {"conv_rate": [0.1], "acc_rate": [0.2], "trips": [3]}, now - timedelta(hours=1))
    use_defaults_for_missing(sc)
    ids = [9001, 9002, 9003, 9004, 1]  # 9004: nowhere at all; 1: a clean row
    _, before = serve(sc, ids)
    report = sc.store.monitor.skew(sc.ref, start=before)
    for f in report.features.values():
        assert (f.total, f.matched, f.missing_offline, f.missing_online, f.differed) == (5, 2, 1, 2, 0), f
        causes = {e["keys"]["driver_id"]: (e["status"], e["cause"]) for e in f.examples}
        assert causes == {
            9001: ("missing_offline", OTHER),  # written online only
            9002: ("missing_online", OTHER),  # offline rows arrived late
            9003: ("missing_online", TTL),  # online had only a row older than the ttl
        }
    text = CliRunner().invoke(cli, ["--repo", str(sc.root), "monitor", "skew", sc.ref, "--since", "1h"])
    assert text.exit_code == 0, text.output  # an audit: findings are no failure
    assert "conv_rate" in text.output and "online-only write" in text.output


def test_an_empty_window_reports_no_rows(sc):
    sc.serve(100)
    future = datetime.now(timezone.utc) + timedelta(days=1)
    report = sc.store.monitor.skew(sc.ref, start=future)
    assert report.rows == 0
    assert all(f.total == 0 and f.match_rate is None for f in report.features.values())
    assert json.loads(json.dumps(report.to_dict()))["rows"] == 0


ON_DEMAND_DEFS = """
from featurestore import *

driver = Entity(name="driver", join_keys=["driver_id"])
src = ParquetSource(name="src", path="data/stats.parquet", timestamp_field="event_timestamp")
stats = FeatureView(name="stats", entities=[driver], source=src,
                    schema=[Field("driver_id", Int64), Field("conv_rate", Float64)])

@on_demand_feature_view(sources=[stats[["conv_rate"]]], schema=[Field("scaled", Float64)])
def scaled(row):
    return {"scaled": row["conv_rate"] * FACTOR}

svc = FeatureService(name="svc", features=[stats[["conv_rate"]], scaled])
"""


def test_an_on_demand_view_applied_after_serving_is_the_cause(tmp_path):
    import pandas as pd
    from sklearn.linear_model import LinearRegression

    from featurestore import FeatureStore
    from featurestore.models.prediction_log import PredictionLog
    from featurestore.models.serving import ModelServer
    from featurestore.monitoring.skew import ON_DEMAND
    from tests.repo_builder import make_repo

    now = datetime.now(timezone.utc).replace(microsecond=0)
    ids = list(range(1, 21))
    data = rows_of(ids, now - timedelta(hours=1))
    data = data.set_column(2, "conv_rate", pa.array([0.1 * d for d in ids], pa.float64()))
    root = make_repo(
        tmp_path / "repo",
        {"features.py": "FACTOR = 2.0\n" + ON_DEMAND_DEFS},
        {"data/stats.parquet": data},
        config='[online]\ntype = "sqlite"\npath = "data/online.db"\n',
    )
    store = FeatureStore(root)
    store.apply()
    store.materialize(now - timedelta(days=1), now)
    X = pd.DataFrame({"conv_rate": [0.1, 0.5, 0.9], "scaled": [0.2, 1.0, 1.8]})
    mv = store.models.register("m", LinearRegression().fit(X, [1.0, 2.0, 3.0]), feature_service="svc")
    store.models.set_alias("m", "production", mv.version)
    server = ModelServer(store, prediction_log=PredictionLog(store.config.monitor.log_path), watch=False)
    try:
        server.predict("m@production", [{"driver_id": d} for d in ids])
        server.log.flush()
        assert all(f.matched == 20 for f in store.monitor.skew("m@production").features.values())

        (root / "features.py").write_text("FACTOR = 3.0\n" + ON_DEMAND_DEFS)  # the function changes
        store.apply()
        report = store.monitor.skew("m@production")
        assert report.features["conv_rate"].matched == 20
        changed = report.features["scaled"]
        assert (changed.differed, changed.causes) == (20, {ON_DEMAND: 20})
        assert changed.max_abs_diff == pytest.approx(0.1 * 20)  # 3x - 2x of the largest conv_rate
    finally:
        server.close()
        store.close()


# -- review fixes -------------------------------------------------------------------------------------------------

REQUEST_DEFS = """
from featurestore import *

driver = Entity(name="driver", join_keys=["driver_id"])
src = ParquetSource(name="src", path="data/stats.parquet", timestamp_field="event_timestamp")
stats = FeatureView(name="stats", entities=[driver], source=src,
                    schema=[Field("driver_id", Int64), Field("conv_rate", Float64)])
trip = RequestSource(name="trip", schema=[Field("distance_km", Float64)])

@on_demand_feature_view(sources=[stats[["conv_rate"]], trip], schema=[Field("minutes", Float64)])
def minutes(row):
    return {"minutes": row["distance_km"] * 2.0 / row["conv_rate"]}

svc = FeatureService(name="svc", features=[stats[["conv_rate"]], minutes])
only = FeatureService(name="only", features=[minutes])
"""


@pytest.fixture
def requested(tmp_path):
    """A store serving model `m` (conv_rate and the on-demand `minutes`, which reads request value
    distance_km) and model `o` (`minutes` only) to 20 drivers; yields (store, log file of each)."""
    import pandas as pd
    from sklearn.linear_model import LinearRegression

    from featurestore import FeatureStore
    from featurestore.models.prediction_log import PredictionLog
    from featurestore.models.serving import ModelServer
    from tests.repo_builder import make_repo

    now = datetime.now(timezone.utc).replace(microsecond=0)
    ids = list(range(1, 21))
    data = rows_of(ids, now - timedelta(hours=1)).select(["driver_id", "event_timestamp", "conv_rate"])
    data = data.set_column(2, "conv_rate", pa.array([0.1 * d for d in ids], pa.float64()))
    root = make_repo(
        tmp_path / "repo",
        {"features.py": REQUEST_DEFS},
        {"data/stats.parquet": data},
        config='[online]\ntype = "sqlite"\npath = "data/online.db"\n',
    )
    store = FeatureStore(root)
    store.apply()
    store.materialize(now - timedelta(days=1), now)
    X = pd.DataFrame({"conv_rate": [0.1, 0.5, 0.9], "minutes": [1.0, 2.0, 3.0]})
    for name, service, cols in (("m", "svc", ["conv_rate", "minutes"]), ("o", "only", ["minutes"])):
        mv = store.models.register(
            name, LinearRegression().fit(X[cols], [1.0, 2.0, 3.0]), feature_service=service
        )
        store.models.set_alias(name, "production", mv.version)
    server = ModelServer(store, prediction_log=PredictionLog(store.config.monitor.log_path), watch=False)
    try:
        files = {}
        for name in ("m", "o"):
            server.predict(f"{name}@production", [{"driver_id": d, "distance_km": float(d)} for d in ids])
            server.log.flush()
            (files[name],) = (store.config.monitor.log_path / name).glob("date=*/part-*.parquet")
        yield store, files
    finally:
        server.close()
        store.close()


def _as_old_log(file, keep: bool = False):
    """Write `file`'s rows again as a log file from before request values were logged (no distance_km);
    the original stays when `keep`."""
    old = file.with_name(file.name.replace("part-v1-", "part-"))
    pq.write_table(pq.read_table(file).drop(["distance_km"]), old)
    if not keep:
        file.unlink()


def test_rows_logged_without_request_values_audit_the_plain_features_and_count_the_rest(requested):
    store, files = requested
    _as_old_log(files["m"])
    report = store.monitor.skew("m@production")
    plain, on_demand = report.features["conv_rate"], report.features["minutes"]
    assert (plain.total, plain.matched, plain.not_recomputable, plain.note) == (20, 20, 0, None)
    assert (on_demand.total, on_demand.matched, on_demand.not_recomputable) == (0, 0, 20)
    assert on_demand.match_rate is None and "distance_km" in on_demand.note and "minutes" in on_demand.note
    assert json.loads(json.dumps(report.to_dict()))["features"]["minutes"]["not_recomputable"] == 20


def test_old_and_new_log_rows_mixed_recompute_the_new_ones(requested):
    store, files = requested
    _as_old_log(files["m"], keep=True)  # 20 rows without distance_km, 20 with it
    report = store.monitor.skew("m@production")
    assert report.rows == 40
    assert (report.features["conv_rate"].total, report.features["conv_rate"].matched) == (40, 40)
    on_demand = report.features["minutes"]
    assert (on_demand.total, on_demand.matched, on_demand.mismatched, on_demand.not_recomputable) == (
        20,
        20,
        0,
        20,
    )
    assert on_demand.match_rate == 1.0


def test_nothing_recomputable_is_an_error_naming_the_request_value(requested):
    store, files = requested
    _as_old_log(files["o"])
    with pytest.raises(MonitoringError, match=r"distance_km.*window starting after the upgrade"):
        store.monitor.skew("o@production")


KEY_DEFS = """
from datetime import timedelta
from featurestore import *
e = Entity(name="e", join_keys=["{key}"])
src = ParquetSource(name="src", path="data/u/*.parquet", timestamp_field="event_timestamp")
v = FeatureView(name="v", entities=[e], ttl=timedelta(days=3), source=src,
                schema=[Field("{key}", Int64), Field("x", Float64)])
svc = FeatureService(name="svc", features=[v[["x"]]])
"""


@pytest.mark.parametrize("key", ["ts", "entity_ts", "entity_x"])
def test_join_keys_named_like_log_columns_or_their_renames(tmp_path, key):
    from sklearn.linear_model import LinearRegression

    from featurestore import FeatureStore
    from featurestore.models.prediction_log import PredictionLog
    from featurestore.models.serving import ModelServer
    from tests.repo_builder import make_repo

    now = datetime.now(timezone.utc).replace(microsecond=0)
    n = 50
    rng = np.random.default_rng(0)
    table = pa.table(
        {
            key: pa.array(np.arange(n), pa.int64()),
            "event_timestamp": pa.array([now - timedelta(hours=2)] * n, UTC_US),
            "x": pa.array(rng.normal(size=n)),
        }
    )
    root = make_repo(
        tmp_path / "repo",
        {"features.py": KEY_DEFS.format(key=key)},
        {"data/u/p.parquet": table},
        config='[online]\ntype = "sqlite"\npath = "data/online.db"\n',
    )
    store = FeatureStore(root)
    store.apply()
    store.materialize(now - timedelta(days=1), now)
    import pandas as pd

    mv = store.models.register(
        "m", LinearRegression().fit(pd.DataFrame({"x": [0.0, 1.0]}), [0.0, 1.0]), feature_service="svc"
    )
    store.models.set_alias("m", "p", mv.version)
    server = ModelServer(store, prediction_log=PredictionLog(store.config.monitor.log_path), watch=False)
    try:
        server.predict("m@p", [{key: k} for k in range(0, n, 2)])
        server.log.flush()
        report = store.monitor.skew("m@p")
        assert (report.rows, report.features["x"].matched) == (25, 25)
    finally:
        server.close()
        store.close()


def test_bad_examples_and_a_corrupt_log_file_are_monitoring_errors(sc):
    serve(sc, [1, 2, 3])
    for bad in ("3", -1, 2.5, True):
        with pytest.raises(MonitoringError, match="examples must be a whole number"):
            sc.store.monitor.skew(sc.ref, examples=bad)
    (folder,) = (sc.store.monitor.log_path / sc.model).glob("date=*")
    corrupt = folder / f"part-v{sc.version}-zzz.parquet"
    corrupt.write_text("garbage")
    with pytest.raises(MonitoringError, match=rf"{corrupt.name}.*move the damaged file"):
        sc.store.monitor.skew(sc.ref)
