"""Drift: the distances against scipy/numpy, the DuckDB binning against numpy's, false alarms and
detection power over seeded trials, and the whole path from a served model to `fs monitor drift`."""

from __future__ import annotations

import json
import math
import tempfile
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon
from scipy.stats import wasserstein_distance

from featurestore.cli import cli
from featurestore.config import Thresholds
from featurestore.errors import MonitoringError
from featurestore.monitoring import bins
from featurestore.monitoring.drift import (
    OUTPUT,
    PSI_EPSILON,
    compare,
    histograms,
    js_distance,
    psi,
    reference_profile,
    wasserstein,
)
from featurestore.offline.sources import duckdb_connection
from tests.monitoring.scenario import FEATURES, served_scenario

DEFAULTS = Thresholds()

# -- the distances against scipy / numpy on the same bins -----------------------------------------------------


def histogram_pairs(max_bins: int = 24):
    return st.integers(2, max_bins).flatmap(
        lambda k: st.tuples(
            st.lists(st.integers(0, 10_000), min_size=k, max_size=k).filter(lambda c: sum(c) > 0),
            st.lists(st.integers(0, 10_000), min_size=k, max_size=k).filter(lambda c: sum(c) > 0),
        )
    )


@settings(max_examples=300, deadline=None)
@given(histogram_pairs())
def test_psi_and_js_equal_numpy_and_scipy(pair):
    ref, cur = (np.array(h, dtype=float) for h in pair)
    r = np.maximum(ref / ref.sum(), PSI_EPSILON)
    c = np.maximum(cur / cur.sum(), PSI_EPSILON)
    assert psi(ref, cur) == pytest.approx(float(np.sum((c - r) * np.log(c / r))), rel=1e-12, abs=1e-12)
    assert psi(ref, cur) >= 0
    assert js_distance(ref, cur) == pytest.approx(float(jensenshannon(ref, cur, base=2)), rel=1e-9, abs=1e-9)


@settings(max_examples=300, deadline=None)
@given(
    histogram_pairs(),
    st.lists(st.floats(-1e3, 1e3), min_size=48, max_size=48),
    st.lists(st.floats(-1e3, 1e3), min_size=48, max_size=48),
)
def test_wasserstein_equals_scipy_on_bin_means(pair, ref_means, cur_means):
    ref, cur = (np.array(h, dtype=float) for h in pair)
    k = len(ref)
    u, v = np.array(ref_means[:k]), np.array(cur_means[:k])
    got = wasserstein(ref, ref * u, cur, cur * v)
    want = wasserstein_distance(u[ref > 0], v[cur > 0], ref[ref > 0], cur[cur > 0])
    assert got == pytest.approx(want, rel=1e-9, abs=1e-6)


def test_compare_normalizes_wasserstein_by_the_reference_std_and_reports_null_rates():
    rng = np.random.default_rng(3)
    values = rng.normal(10, 2, 5000)
    values[:50] = np.nan
    profile = reference_profile(pa.table({"x": values}), ["x"])["x"]
    sample = rng.normal(11, 2, 3000)
    sample[:300] = np.nan
    counts, sums = bins.bin_sample(profile, pa.array(sample))
    f = compare("x", profile, counts, sums, DEFAULTS)
    ref_counts = np.array(bins.counts(profile), dtype=float)
    inner = ref_counts[:-1] > 0
    want = wasserstein_distance(
        (np.array(profile["sums"]) / np.where(inner, ref_counts[:-1], 1))[inner],
        (sums[:-1] / np.maximum(counts[:-1], 1))[counts[:-1] > 0],
        ref_counts[:-1][inner],
        counts[:-1][counts[:-1] > 0],
    ) / np.nanstd(values)
    assert f.wasserstein == pytest.approx(want, rel=1e-9)
    assert f.null_rate_ref == pytest.approx(0.01) and f.null_rate_cur == pytest.approx(0.1)
    assert f.n_ref == 5000 and f.n_cur == 3000
    assert f.psi == pytest.approx(psi(ref_counts, counts)) and f.js == pytest.approx(
        js_distance(ref_counts, counts)
    )
    assert len(f.bins) == len(f.ref) == len(f.cur) and f.bins[-1] == "null"
    assert sum(f.ref) == pytest.approx(1) and sum(f.cur) == pytest.approx(1)


# -- the reference profile ---------------------------------------------------------------------------------------


def test_numeric_bins_are_reference_deciles_plus_tails_and_null():
    values = np.arange(1.0, 101.0)  # 1..100
    profile = reference_profile(pa.table({"x": pa.array([*values, None])}), ["x"])["x"]
    assert profile["kind"] == "numeric"
    assert profile["edges"] == pytest.approx(np.quantile(values, np.linspace(0, 1, 11)).tolist())
    assert profile["edges"][0] == 1 and profile["edges"][-1] == 100
    assert profile["counts"][0] == 0 and profile["counts"][-1] == 0  # the tails
    assert sum(profile["counts"]) == 100 and profile["nulls"] == 1 and profile["n"] == 101
    assert bins.labels(profile)[:2] == ["< 1", "[1, 10.9)"] and bins.labels(profile)[-3:] == [
        "[90.1, 100]",
        "> 100",
        "null",
    ]
    assert profile["std"] == pytest.approx(np.std(values))
    json.dumps(profile)


def test_duplicate_edges_merge_and_a_constant_has_one_bin():
    skewed = reference_profile(pa.table({"x": [0.0] * 80 + [1.0, 2.0] * 10}), ["x"])["x"]
    assert skewed["edges"] == sorted(set(skewed["edges"])) and skewed["edges"][0] == 0
    constant = reference_profile(pa.table({"x": [5.0] * 10}), ["x"])["x"]
    assert constant["edges"] == [5.0] and bins.labels(constant) == ["< 5", "= 5", "> 5", "null"]
    counts, _ = bins.bin_sample(constant, pa.array([4.0, 5.0, 5.0, 6.0, None]))
    assert counts.tolist() == [1, 2, 1, 1]


def test_categorical_kinds_top_20_and_other():
    n = 1000
    strings = [f"s{i % 30:02d}" for i in range(n)]  # 30 values: the top 20 and "other"
    table = pa.table(
        {
            "s": strings,
            "few_ints": pa.array([i % 5 for i in range(n)], pa.int64()),
            "many_ints": pa.array(list(range(n)), pa.int64()),
            "b": [i % 3 == 0 for i in range(n)],
            "all_null": pa.array([None] * n, pa.float64()),
        }
    )
    p = reference_profile(table, table.column_names)
    assert p["s"]["kind"] == "categorical" and len(p["s"]["values"]) == 20
    assert p["s"]["counts"][-1] == n - sum(p["s"]["counts"][:-1]) > 0  # "other"
    assert bins.labels(p["s"])[-2:] == ["other", "null"]
    assert p["few_ints"]["kind"] == "categorical" and p["few_ints"]["values"] == [0, 1, 2, 3, 4]
    assert p["many_ints"]["kind"] == "numeric"
    assert p["b"]["kind"] == "categorical" and p["b"]["values"] == [False, True]
    assert p["all_null"]["kind"] == "categorical" and p["all_null"]["nulls"] == n
    json.dumps(p)


def test_nan_counts_as_null():
    p = reference_profile(pa.table({"x": [1.0, 2.0, float("nan"), None, 3.0]}), ["x"])["x"]
    assert p["nulls"] == 2 and p["n"] == 5 and sum(p["counts"]) == 3


# -- the DuckDB binning equals numpy's ---------------------------------------------------------------------------


_FILES = tempfile.TemporaryDirectory(prefix="fs-drift-test-")


def _log_view(con, features: pa.Table, prediction: pa.Array):
    """A Parquet file in the prediction log's layout (a `features` struct, a `prediction` column),
    as the view `__t`."""
    n = features.num_rows
    t0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
    log = pa.table(
        {
            "ts": pa.array([t0 + timedelta(hours=7 * i) for i in range(n)], pa.timestamp("us", tz="UTC")),
            "features": pa.StructArray.from_arrays(
                [c.combine_chunks() for c in features.columns], names=features.column_names
            ),
            "prediction": prediction,
        }
    )
    path = Path(_FILES.name) / f"{uuid.uuid4().hex}.parquet"  # Parquet, as the log is: its statistics
    pq.write_table(log, path)  # steer DuckDB's optimizer (it folds isnan() to false on them)
    con.execute(f"CREATE OR REPLACE TEMP VIEW __t AS SELECT * FROM read_parquet('{path}')")
    return log


def _assert_same_bins(
    reference: pa.Table, current: pa.Table, prediction_ref: pa.Array, prediction_cur: pa.Array
):
    profiles = reference_profile(reference, reference.column_names)
    profiles[OUTPUT] = bins.column_profile(prediction_ref)
    con = duckdb_connection()
    _log_view(con, current, prediction_cur)
    got = histograms(con, "__t", profiles)[None]
    for name, profile in profiles.items():
        column = prediction_cur if name == OUTPUT else current.column(name)
        counts, sums = bins.bin_sample(profile, column)
        assert got[name][0].tolist() == counts.tolist(), name
        if sums is not None:
            assert got[name][1][:-1] == pytest.approx(sums[:-1], rel=1e-9, abs=1e-9), name
    con.close()
    return profiles


def test_sql_binning_equals_numpy_on_edges_ties_tails_nulls_nan_and_categories():
    rng = np.random.default_rng(5)
    n = 3000
    ref = pa.table(
        {
            "x": rng.normal(0, 1, n),
            "ties": rng.integers(0, 40, n).astype(float),  # many values exactly on edges
            "ints": pa.array(rng.poisson(30, n), pa.int64()),  # numeric (more than 20 values), integer log
            "few": pa.array(rng.integers(0, 4, n), pa.int64()),  # categorical integers
            "s": [f"v{i}" for i in rng.zipf(1.5, n) % 50],  # top 20 + other
            "b": rng.random(n) < 0.3,
            "const": np.full(n, 2.5),
            "nan_only": rng.normal(0, 1, n),
        }
    )
    profiles = reference_profile(ref, ref.column_names)
    m = 4000
    x = rng.normal(0.3, 1.5, m)
    edges = profiles["x"]["edges"]
    x[:200] = rng.choice(edges, 200)  # exactly on the edges, min and max included
    x[200:220] = np.nan
    x[220:225] = [np.inf, -np.inf, edges[0] - 1e-12, edges[-1] + 1e-12, edges[-1]]
    ties = rng.integers(-5, 45, m).astype(float)
    cur = pa.table(
        {
            "x": pa.array(x, mask=np.arange(m) % 97 == 0),  # nulls and NaN
            "ties": ties,
            "ints": pa.array(rng.poisson(33, m), pa.int64(), mask=np.arange(m) % 53 == 0),
            "few": pa.array(rng.integers(0, 6, m), pa.int64()),  # 4 and 5 are "other"
            "s": pa.array([f"v{i}" for i in rng.zipf(1.4, m) % 60], mask=np.arange(m) % 41 == 0),
            "b": pa.array(rng.random(m) < 0.5, mask=np.arange(m) % 31 == 0),
            "const": rng.choice([2.0, 2.5, 3.0], m),
            "nan_only": np.where(np.arange(m) % 7 == 0, np.nan, rng.normal(0, 1, m)),  # NaN, no null: a
        }  # Parquet file whose statistics show no null nor infinity (DuckDB folds isnan() there)
    )
    _assert_same_bins(ref, cur, pa.array(rng.normal(0, 1, n)), pa.array(rng.normal(0, 1, m)))


def test_sql_binning_compares_as_the_reference_type_whatever_the_log_type():
    """Integers logged as floats, booleans and strings in the log: binned as the reference's type."""
    rng = np.random.default_rng(9)
    ref = pa.table(
        {"few": pa.array(rng.integers(0, 3, 500), pa.int64()), "x": pa.array(rng.integers(0, 500, 500))}
    )
    cur = pa.table(
        {"few": pa.array(rng.integers(0, 4, 300).astype(float)), "x": pa.array(rng.normal(250, 100, 300))}
    )
    profiles = reference_profile(ref, ref.column_names)
    profiles[OUTPUT] = bins.column_profile(pa.array(["a", "b", "a"] * 100))
    con = duckdb_connection()
    _log_view(con, cur, pa.array(["a", "c", None] * 100))
    got = histograms(con, "__t", profiles)[None]
    few = cur.column("few").to_numpy()
    assert got["few"][0].tolist() == [
        *(int((few == v).sum()) for v in profiles["few"]["values"]),
        300 - int((few < 3).sum()),
        0,
    ]
    assert got["x"][0].tolist() == bins.bin_sample(profiles["x"], cur.column("x"))[0].tolist()
    assert got[OUTPUT][0].tolist() == [100, 0, 100, 100]  # a, b, other (c), null
    con.close()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-5, 5, allow_nan=False), min_size=5, max_size=200),
    st.lists(
        st.one_of(st.floats(-10, 10), st.none(), st.sampled_from([float("nan"), float("inf")])),
        min_size=1,
        max_size=200,
    ),
    st.integers(0, 10),
)
def test_sql_binning_equals_numpy_searchsorted_on_random_values(reference, current, on_edges):
    profile = reference_profile(pa.table({"x": reference}), ["x"])["x"]
    if profile["kind"] != "numeric":
        return
    current = current + [profile["edges"][i % len(profile["edges"])] for i in range(on_edges)]
    cur = pa.array(current, pa.float64())
    _assert_same_bins(pa.table({"x": reference}), pa.table({"x": cur}), pa.array(reference), cur)


def test_drift_by_day_groups_the_same_scan_by_utc_day():
    rng = np.random.default_rng(2)
    ref = pa.table({"x": rng.normal(0, 1, 2000)})
    profiles = {"x": reference_profile(ref, ["x"])["x"]}
    cur = pa.table({"x": rng.normal(0, 1, 40)})
    con = duckdb_connection()
    log = _log_view(con, cur, pa.array(np.zeros(40)))
    got = histograms(con, "__t", profiles, by_day=True)
    days = [t.date() for t in log.column("ts").to_pylist()]
    assert sorted(got) == sorted(set(days))
    for day, per_day in got.items():
        values = np.array([v for v, d in zip(cur.column("x").to_numpy(), days) if d == day])
        assert per_day["x"][0].tolist() == bins.numeric_bins(profiles["x"]["edges"], values)[0].tolist()
    con.close()


# -- false alarms and detection power over seeded trials ----------------------------------------------------------


CATEGORY_P = np.array([0.3, 0.2, 0.15, 0.1, 0.08, 0.06, 0.04, 0.03, 0.02, 0.01, 0.005, 0.005])


def _draw(kind: str, rng: np.random.Generator, n: int, shift_sigmas: float = 0.0) -> np.ndarray:
    """n values of a feature kind, the mean moved by `shift_sigmas` of its std."""
    if kind == "normal":
        return rng.normal(0, 1, n) + shift_sigmas
    if kind == "uniform":
        return rng.random(n) + shift_sigmas * math.sqrt(1 / 12)
    if kind == "exponential":
        return rng.exponential(1.0, n) + shift_sigmas
    if kind == "categories":  # 12 integer codes, some rare: categorical bins
        return rng.choice(len(CATEGORY_P), n, p=CATEGORY_P)
    return rng.poisson(20, n).astype(float) + shift_sigmas * math.sqrt(20)  # ties on every edge


KINDS = ["normal", "uniform", "exponential", "poisson"]


def _status(rng: np.random.Generator, kind: str, n: int, shift: float = 0.0) -> str:
    profile = reference_profile(pa.table({"x": _draw(kind, rng, 10_000)}), ["x"])["x"]
    values = _draw(kind, rng, n, shift)
    if profile["kind"] == "numeric":
        counts, sums = bins.numeric_bins(profile["edges"], values)
    else:
        counts, sums = bins.bin_sample(profile, pa.array(values))
    return compare("x", profile, counts, sums, DEFAULTS).status


@pytest.mark.parametrize("n", [1_000, 100_000, 1_000_000])
def test_false_alarms_stay_under_one_percent_at_every_sample_size(n):
    """200 seeded trials per sample size, 10,000-row reference, same-distribution current: PSI's
    false drift rate does not grow with n (p-value tests flag nearly everything at 1M rows)."""
    kinds = [*KINDS, "categories"] if n < 1_000_000 else ["normal"]  # 1M x 200: one kind keeps it seconds
    for kind in kinds:
        rng = np.random.default_rng(1234 + n)
        statuses = [_status(rng, kind, n) for _ in range(200)]
        assert statuses.count("drift") / 200 <= 0.01, (kind, n)
        assert statuses.count("warn") / 200 <= 0.01, (kind, n)


def _several(rng, n: int, shifted: int, shift: float) -> list[str]:
    out = []
    for i, kind in enumerate(KINDS):
        out.append(_status(rng, kind, n, shift if i == shifted else 0.0))
    return out


@pytest.mark.parametrize("n", [1_000, 100_000])
def test_a_half_sigma_shift_warns_on_that_feature_only_and_one_sigma_drifts(n):
    rng = np.random.default_rng(77 + n)
    for trial in range(200):
        shifted = trial % len(KINDS)
        half = _several(rng, n, shifted, 0.5)
        assert half[shifted] in ("warn", "drift"), (trial, KINDS[shifted], half)
        assert all(s == "ok" for i, s in enumerate(half) if i != shifted), (trial, half)
        one = _several(rng, n, shifted, 1.0)
        assert one[shifted] == "drift", (trial, KINDS[shifted], one)
        assert all(s == "ok" for i, s in enumerate(one) if i != shifted), (trial, one)


def test_a_feature_that_stops_arriving_drifts():
    rng = np.random.default_rng(0)
    profile = reference_profile(pa.table({"x": rng.normal(0, 1, 5000)}), ["x"])["x"]
    counts, sums = bins.numeric_bins(profile["edges"], np.full(500, np.nan))
    f = compare("x", profile, counts, sums, DEFAULTS)
    assert f.status == "drift" and f.null_rate_cur == 1.0 and f.wasserstein is None


# -- end to end: a served model, its log, the report and the command ----------------------------------------------


@pytest.fixture
def sc(tmp_path):
    scenario = served_scenario(tmp_path)
    yield scenario
    scenario.close()


def fs_drift(root, *args: str):
    return CliRunner().invoke(cli, ["--repo", str(root), "monitor", "drift", *args], catch_exceptions=False)


def test_served_like_training_is_ok_and_a_one_sigma_shift_drifts_that_feature(sc):
    sc.serve(1000)
    report = sc.store.monitor.drift(sc.ref)
    assert report.status == "ok" and not report.breach, str(report)
    assert list(report.features) == FEATURES
    assert all(f.n_cur == 1000 and f.n_ref >= 1000 for f in report.features.values())
    assert report.prediction is not None and report.prediction.status == "ok"

    code = fs_drift(sc.root, sc.ref, "--json")
    assert code.exit_code == 0, code.output
    body = json.loads(code.output)
    assert body["status"] == "ok" and set(body["features"]) == set(FEATURES)
    assert set(body["features"]["conv_rate"]) == {
        "status", "psi", "js", "wasserstein", "null_rate_ref", "null_rate_cur", "n_ref", "n_cur"
    }  # fmt: skip
    assert body["prediction"]["n_cur"] == 1000

    sc.shift("conv_rate", 0.1)  # one sigma
    start = datetime.now(timezone.utc)
    sc.serve(1000, seed=1)
    after = sc.store.monitor.drift(sc.ref, start=start)
    assert after.features["conv_rate"].status == "drift", str(after)
    assert all(after.features[f].status == "ok" for f in FEATURES if f != "conv_rate"), str(after)
    assert after.status == "drift" and after.breach and after.features["conv_rate"].n_cur == 1000
    assert after.features["conv_rate"].wasserstein == pytest.approx(1.0, abs=0.3)

    days = sc.store.monitor.drift_by_day(sc.ref, start=start)
    assert len(days) == 1 and days[0].n == 1000 and days[0].status == "drift"
    assert days[0].psi["conv_rate"] == pytest.approx(after.features["conv_rate"].psi)
    assert days[0].worst == max(p for p in days[0].psi.values() if p is not None)

    table = fs_drift(sc.root, sc.ref, "--start", start.isoformat())
    assert table.exit_code == 1, table.output  # drift is a breach
    lines = [line for line in table.output.splitlines() if "conv_rate" in line or "acc_rate" in line]
    assert "conv_rate" in lines[0] and "drift" in lines[0]  # sorted by PSI, highest first
    assert "prediction" in table.output


def test_the_command_exits_2_on_an_error(sc):
    result = fs_drift(sc.root, "no_such_model@production")
    assert result.exit_code == 2 and "no_such_model" in result.output


def test_fewer_than_min_current_rows_is_insufficient(sc):
    sc.serve(99, batch=33)
    report = sc.store.monitor.drift(sc.ref)
    assert report.status == "insufficient" and not report.breach
    assert all(f.status == "insufficient" and f.psi is not None for f in report.features.values())
    sc.serve(1, seed=3)
    at_100 = sc.store.monitor.drift(sc.ref)  # PSI's noise at 100 rows is about 0.1: ok or warn
    assert all(f.status != "insufficient" and f.n_cur == 100 for f in at_100.features.values())


def test_nothing_logged_is_insufficient_with_no_distances(sc):
    report = sc.store.monitor.drift(sc.ref)
    assert report.status == "insufficient"
    assert all(f.n_cur == 0 and f.psi is None and f.null_rate_cur is None for f in report.features.values())
    json.dumps(report.to_dict())


def test_per_model_thresholds_are_honoured(tmp_path):
    config = "[monitoring.models.trip_eta]\npsi_warn = 0.0001\npsi_drift = 0.0002\nmin_current_rows = 10\n"
    sc = served_scenario(tmp_path, config=config)
    try:
        sc.serve(20, batch=10)
        report = sc.store.monitor.drift(sc.ref)
        assert report.thresholds.psi_drift == 0.0002
        assert report.status == "drift" and all(f.status == "drift" for f in report.features.values())
        assert fs_drift(sc.root, sc.ref).exit_code == 1
    finally:
        sc.close()


def test_the_prediction_reference_is_the_models_predictions_on_its_training_set_and_cached(sc, monkeypatch):
    sc.serve(200)
    mv = sc.store.models.get(sc.ref)
    loads = []
    real = sc.store.models.load_version
    monkeypatch.setattr(sc.store.models, "load_version", lambda v: loads.append(v.version) or real(v))
    first = sc.store.monitor.drift(sc.ref)
    cached = sc.store.registry.backend.monitor_profile(f"prediction:{mv.name}:{mv.version}")
    assert cached is not None and loads == [1]
    second = sc.store.monitor.drift(sc.ref)
    assert loads == [1]  # the second call did not predict again
    assert second.prediction == first.prediction

    table = sc.store.training_sets.result(mv.training_set)
    X = table.select(FEATURES).to_pandas().astype("float64").dropna()
    want = bins.column_profile(pa.array(real(mv).predict(X)))
    assert cached["prediction"]["edges"] == pytest.approx(want["edges"])
    assert cached["prediction"]["counts"] == want["counts"] and cached["prediction"]["n"] == want["n"]


def test_a_training_set_saved_before_results_were_kept_is_regenerated(sc):
    sc.serve(200)
    mv = sc.store.models.get(sc.ref)
    before = sc.store.monitor.drift(sc.ref)
    (sc.store.training_sets.root / mv.training_set / "result.parquet").unlink(missing_ok=True)
    assert sc.store.training_sets.result(mv.training_set) is None
    sc.store.registry.backend.save_monitor_profile(
        f"prediction:{mv.name}:{mv.version}", {}
    )  # forget the cache
    after = sc.store.monitor.drift(sc.ref)
    assert after.prediction == before.prediction and after.features == before.features


def test_a_model_without_a_training_set_is_refused_with_the_fix(sc):
    from sklearn.linear_model import LinearRegression

    X = np.random.default_rng(0).random((50, 3))
    model = LinearRegression().fit(X, X.sum(axis=1))
    sc.store.models.register("bare", model, feature_service="eta_features")
    with pytest.raises(MonitoringError, match=r"without a training set.*training_set="):
        sc.store.monitor.drift("bare")


def test_status_thresholds_in_compare():
    rng = np.random.default_rng(4)
    profile = reference_profile(pa.table({"x": rng.normal(0, 1, 2000)}), ["x"])["x"]
    counts, sums = bins.numeric_bins(profile["edges"], rng.normal(0.5, 1, 5000))
    value = compare("x", profile, counts, sums, DEFAULTS).psi
    assert value is not None

    def status(**kw):
        return compare("x", profile, counts, sums, Thresholds(**kw)).status

    assert status(psi_warn=value, psi_drift=value + 1) == "warn"  # >= warn
    assert status(psi_warn=value / 2, psi_drift=value) == "drift"  # >= drift
    assert status(psi_warn=value + 1, psi_drift=value + 2) == "ok"
    assert status(min_reference_rows=2001) == "insufficient"
    assert status(min_current_rows=5001) == "insufficient"
    assert status(min_reference_rows=2000, min_current_rows=5000) != "insufficient"


# -- review fixes ---------------------------------------------------------------------------------------------


def _training_set(sc, name: str, n: int, unknown: float = 0.0, extra: dict | None = None, seed: int = 5):
    """Save a training set of `n` rows of sc's features, a share `unknown` of them for drivers that do
    not exist (their features null); returns its frame."""
    rng = np.random.default_rng(seed)
    now = datetime.now(timezone.utc)
    ids = rng.integers(1, sc.drivers + 1, n)
    ids = np.where(rng.random(n) < unknown, ids + 10 * sc.drivers, ids)
    entity = {
        "driver_id": pa.array(ids, pa.int64()),
        "event_timestamp": pa.array([now - timedelta(hours=2)] * n, pa.timestamp("us", tz="UTC")),
        **(extra or {}),
    }
    job = sc.store.get_historical_features(pa.table(entity), features="eta_features")
    job.save(name)
    return job.to_pandas()


def _register(sc, name: str, frame, training_set: str, **kw):
    from sklearn.linear_model import LinearRegression

    columns = [*FEATURES, *kw.get("request_features", [])]
    X = frame[columns].astype(float).fillna(0.0)
    mv = sc.store.models.register(
        name, LinearRegression().fit(X, X["conv_rate"]), feature_service="eta_features",
        training_set=training_set, **kw,
    )  # fmt: skip
    sc.store.models.set_alias(name, "production", mv.version)
    sc.server.refresh()
    return mv


def test_inputs_served_as_defaults_count_as_missing_so_equal_missingness_is_no_drift(sc):
    frame = _training_set(sc, "with_unknown", 3000, unknown=0.25)
    _register(
        sc, "defaults", frame, "with_unknown", missing_policy={"conv_rate": 0.0, "acc_rate": 0.0, "trips": 0}
    )
    rng = np.random.default_rng(9)
    for _ in range(20):
        ids = rng.integers(1, sc.drivers + 1, 100)
        ids = np.where(rng.random(100) < 0.25, ids + 10 * sc.drivers, ids)
        sc.server.predict("defaults@production", [{"driver_id": int(d)} for d in ids])
    sc.server.log.flush()
    log = sc.server.log.read("defaults")
    served_missing = sum("conv_rate" in (m or []) for m in log.column("missing").to_pylist()) / log.num_rows
    report = sc.store.monitor.drift("defaults@production")
    for f in report.features.values():
        assert f.status == "ok", str(report)
        assert f.null_rate_ref == pytest.approx(0.25, abs=0.03)
        assert f.null_rate_cur == pytest.approx(served_missing)
    assert report.status == "ok", str(report)
    (day,) = sc.store.monitor.drift_by_day("defaults@production")
    assert day.psi["conv_rate"] == pytest.approx(report.features["conv_rate"].psi)


def test_an_input_named_prediction_is_a_feature_beside_the_models_output(sc):
    rng = np.random.default_rng(1)
    frame = _training_set(sc, "with_request", 600, extra={"prediction": pa.array(rng.normal(100, 1, 600))})
    _register(sc, "m2", frame, "with_request", request_features=["prediction"], missing_policy="null")
    rows = [
        {"driver_id": int(d), "prediction": float(v)}
        for d, v in zip(rng.integers(1, 100, 200), rng.normal(100, 1, 200))
    ]
    sc.server.predict("m2@production", rows)
    sc.server.log.flush()
    report = sc.store.monitor.drift("m2@production")
    assert list(report.features) == [*FEATURES, "prediction"]
    given, output = report.features["prediction"], report.prediction
    assert given.n_cur == output.n_cur == 200 and given.n_ref == 600
    assert float(given.bins[1].split(",")[0].strip("[(")) > 90  # binned on the input's reference (~100)
    assert given.bins != output.bins and given.psi != output.psi
    assert set(report.to_dict()["features"]) == {*FEATURES, "prediction"}
    (day,) = sc.store.monitor.drift_by_day("m2@production")
    assert day.psi["prediction"] == pytest.approx(given.psi)
    assert day.prediction_psi == pytest.approx(output.psi)
    assert day.worst == max(p for p in [*day.psi.values(), day.prediction_psi] if p is not None)
    json.dumps(day.to_dict())


def test_a_training_set_overwritten_since_registration_is_refused(sc):
    sc.serve(100)
    mv = sc.store.models.get(sc.ref)
    sc.store.monitor.drift(sc.ref)  # the reference is cached ...
    rng = np.random.default_rng(2)
    entity = pa.table(
        {
            "driver_id": pa.array(rng.integers(1, sc.drivers + 1, 500), pa.int64()),
            "event_timestamp": pa.array([datetime.now(timezone.utc)] * 500, pa.timestamp("us", tz="UTC")),
        }
    )
    sc.store.get_historical_features(entity, features="eta_features").save(mv.training_set, overwrite=True)
    new = sc.store.training_sets.get(mv.training_set).fingerprint
    with pytest.raises(
        MonitoringError,
        match=rf"overwritten since trip_eta v{mv.version}.*{mv.training_fingerprint[:12]}.*{new[:12]}.*[Rr]etrain",
    ):
        sc.store.monitor.drift(sc.ref)


def test_a_corrupt_log_file_is_named_with_the_way_out(sc):
    sc.serve(100)
    (folder,) = (sc.store.monitor.log_path / sc.model).glob("date=*")
    bad = folder / f"part-v{sc.version}-zzz.parquet"
    bad.write_text("garbage")
    for ask in (sc.store.monitor.drift, sc.store.monitor.drift_by_day, sc.store.monitor.skew):
        with pytest.raises(MonitoringError, match=rf"{bad.name}.*move"):
            ask(sc.ref)
    result = fs_drift(sc.root, sc.ref)
    assert result.exit_code == 2 and bad.name in result.output
    bad.unlink()
    assert sc.store.monitor.drift(sc.ref).features["trips"].n_cur == 100


def test_a_time_that_is_not_one_is_a_monitoring_error(sc):
    import pandas as pd

    with pytest.raises(MonitoringError, match="start NaT is not a time"):
        sc.store.monitor.drift(sc.ref, start=pd.NaT)
    with pytest.raises(MonitoringError, match="end nan is not a time"):
        sc.store.monitor.drift(sc.ref, end=float("nan"))


def test_names_like_rich_markup_render_as_text():
    profile = reference_profile(pa.table({"x": [1.0, 2.0, 3.0]}), ["x"])["x"]
    f = compare("x", profile, *bins.bin_sample(profile, pa.array([1.0, 2.0])), DEFAULTS)
    from dataclasses import replace

    from featurestore.monitoring.drift import DriftReport

    features = {n: replace(f, name=n) for n in ("[/]", "[bold red]x", "a[b]")}
    report = DriftReport("[/]m", 1, None, None, "ok", features, replace(f, name="prediction"), DEFAULTS)
    text = str(report)
    for name in ("[/]", "[bold red]x", "a[b]", "[/]m"):
        assert name in text


def test_drift_with_days_is_drift_and_drift_by_day_from_one_scan(tmp_path):
    sc = served_scenario(tmp_path, drivers=300, train_rows=1500)
    try:
        sc.serve(400)
        sc.shift("conv_rate", 0.1)
        sc.serve(400, seed=1)
        from featurestore.monitoring import window
        from featurestore.monitoring.drift import drift_with_days

        monitor = sc.store.monitor
        report, days = drift_with_days(monitor, monitor.version(sc.ref), window(None, None))
        alone = monitor.drift(sc.ref)
        assert days == monitor.drift_by_day(sc.ref) and report.status == alone.status == "drift"
        for name, f in {**report.features, "prediction": report.prediction}.items():
            g = alone.prediction if name == "prediction" else alone.features[name]
            assert (f.psi, f.js, f.n_cur, f.status, f.cur) == (
                g.psi,
                g.js,
                g.n_cur,
                g.status,
                g.cur,
            )  # counts
            assert f.wasserstein == pytest.approx(g.wasserstein, rel=1e-9)  # sums, added per day
        assert report.features["conv_rate"].n_cur == 800 and sum(d.n for d in days) == 800
    finally:
        sc.close()
