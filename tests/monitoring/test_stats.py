"""Feature statistics: a profile equals numpy's answer on the same rows, profiles merge
(stats(A) merged with stats(B) == stats(A u B): exact fields exactly, sketches within their stated
error), materialization records one per run and `fs stats` merges them."""

from __future__ import annotations

import json
import logging
import math
from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner
from datasketches import hll_sketch, kll_doubles_sketch
from hypothesis import given, settings
from hypothesis import strategies as st

from featurestore import FeatureStore, UnknownNameError
from featurestore.cli import cli
from featurestore.monitoring import stats as stats_module
from featurestore.monitoring.stats import (
    merge_all,
    merge_profiles,
    profile_table,
    summarize,
)
from tests.repo_builder import make_repo

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
COLUMNS = ["x", "i", "s", "b", "t"]
EXACT = ("count", "nulls", "nan", "min", "max", "true", "false", "unfed")


def random_table(seed: int, n: int, null_rate: float = 0.1, categories: int = 30) -> pa.Table:
    """n rows: a float with nulls, NaN and a few repeated values, an int, a string, a bool and a
    timestamp, each with nulls."""
    rng = np.random.default_rng(seed)

    def nulls() -> np.ndarray:
        return rng.random(n) < null_rate

    x = rng.normal(10, 3, n).round(rng.integers(1, 6))  # rounding: repeated values too
    x[rng.random(n) < null_rate / 2] = np.nan
    return pa.table(
        {
            "x": pa.array(x, mask=nulls()),
            "i": pa.array(rng.integers(-50, 1000, n), mask=nulls()),
            "s": pa.array(rng.choice([f"c{k}" for k in range(categories)], n), mask=nulls()),
            "b": pa.array(rng.random(n) < 0.3, mask=nulls()),
            "t": pa.array(
                [T0 + timedelta(seconds=int(s)) for s in rng.integers(0, 10**7, n)],
                pa.timestamp("us", tz="UTC"),
                mask=nulls(),
            ),
        }
    )


# -- against an oracle ---------------------------------------------------------------------------


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 2000), null_rate=st.sampled_from([0.0, 0.1, 0.9]))
@settings(max_examples=25, deadline=None)
def test_a_profile_equals_numpy_on_random_rows_with_nulls_and_nan(seed, n, null_rate):
    table = random_table(seed, n, null_rate)
    summary = summarize(profile_table(table, COLUMNS))
    assert summary["rows"] == n
    cols = summary["columns"]

    # Floats: a NaN is a null (counted in `nulls`, and apart in `nan`), as the aggregations see it.
    raw = table["x"].to_numpy(zero_copy_only=False)  # nulls -> NaN
    x = raw[~np.isnan(raw)]
    nan = int(np.sum(np.isnan(table["x"].drop_null().to_numpy())))
    assert (cols["x"]["count"], cols["x"]["nulls"], cols["x"]["nan"]) == (len(x), n - len(x), nan)
    for name, values in (("x", x), ("i", table["i"].drop_null().to_numpy().astype(float))):
        c = cols[name]
        if len(values) == 0:
            assert c["mean"] is None and c["std"] is None
            continue
        assert (c["min"], c["max"]) == (values.min(), values.max())
        assert c["mean"] == pytest.approx(values.mean(), rel=1e-12, abs=1e-12)
        if len(values) > 1:
            assert c["std"] == pytest.approx(values.std(ddof=1), rel=1e-9, abs=1e-12)
        # The KLL sketch is exact below its capacity; in general within its normalized rank error.
        for q, v in zip(stats_module.QUANTILES, c["quantiles"].values(), strict=True):
            assert _rank_distance(values, v, q) <= c["rank_error"] + 1 / len(values)
        # each bin's count is rounded
        assert abs(sum(c["histogram"]["counts"]) - len(values)) <= stats_module.BINS
        assert c["distinct"]["lower"] <= len(np.unique(values)) <= c["distinct"]["upper"]

    s = table["s"].drop_null().to_pylist()
    assert cols["s"]["count"] == len(s)
    if s:
        assert (cols["s"]["min"], cols["s"]["max"]) == (min(s), max(s))
        counts = {v: s.count(v) for v in set(s)}
        assert {t["value"]: t["count"] for t in cols["s"]["top"]} == dict(
            sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
        )
        assert cols["s"]["top_error"] == 0  # 30 values: the sketch counts each exactly

    b = table["b"].drop_null().to_pylist()
    assert (cols["b"]["true"], cols["b"]["false"]) == (sum(b), len(b) - sum(b))

    t = table["t"].drop_null().to_pylist()
    assert cols["t"]["count"] == len(t)
    if t:
        assert (cols["t"]["min"], cols["t"]["max"]) == (min(t).isoformat(), max(t).isoformat())


def _rank_distance(values: np.ndarray, v: float, q: float) -> float:
    """How far rank q is from the ranks `v` holds in `values` (with ties, a range of ranks: from
    the share below v to the share at most v)."""
    below, at_most = float(np.mean(values < v)), float(np.mean(values <= v))
    return 0.0 if below <= q <= at_most else min(abs(q - below), abs(q - at_most))


# -- merging -------------------------------------------------------------------------------------


@given(
    seed=st.integers(0, 2**32 - 1),
    n_a=st.integers(0, 3000),
    n_b=st.integers(0, 3000),
    null_rate=st.sampled_from([0.0, 0.2, 1.0]),
)
@settings(max_examples=40, deadline=None, derandomize=True)
def test_merged_profiles_equal_the_profile_of_all_rows(seed, n_a, n_b, null_rate):
    a, b = random_table(seed, n_a, null_rate), random_table(seed + 1, n_b, null_rate)
    both = pa.concat_tables([a, b])
    merged = merge_profiles(profile_table(a, COLUMNS), profile_table(b, COLUMNS))
    whole = profile_table(both, COLUMNS)
    assert merged["rows"] == whole["rows"] == n_a + n_b
    for name in COLUMNS:
        m, w = merged["columns"][name], whole["columns"][name]
        assert m["kind"] == w["kind"]
        for key in EXACT:  # exactly
            assert m.get(key) == w.get(key), (name, key)
        for key in ("mean", "m2"):  # to float rounding
            if w.get(key) is None:
                assert m.get(key) is None
            else:
                assert m[key] == pytest.approx(w[key], rel=1e-9, abs=1e-9), (name, key)
        if m["kind"] == "numeric" and m["count"]:  # and against numpy: both sides merge batches
            values = _values(both[name])
            assert m["mean"] == pytest.approx(values.mean(), rel=1e-9, abs=1e-9)
            assert m["m2"] == pytest.approx(((values - values.mean()) ** 2).sum(), rel=1e-9, abs=1e-9)
        if "kll" in w:
            _check_kll(m["kll"], both[name])
        if "hll" in w.get("distinct", {}):
            _check_hll(m["distinct"]["hll"], both[name])
        if "frequent" in w:
            _check_top(summarize(merged)["columns"][name], both[name])


def _check_kll(encoded: str, column: pa.ChunkedArray) -> None:
    sketch = kll_doubles_sketch.deserialize(stats_module._bytes(encoded))
    values = _values(column)
    assert sketch.n == len(values)
    eps = sketch.normalized_rank_error(False)
    for q in stats_module.QUANTILES:
        assert _rank_distance(values, sketch.get_quantile(q), q) <= eps + 1 / len(values)


def _check_hll(merged: str, column: pa.ChunkedArray) -> None:
    m = hll_sketch.deserialize(stats_module._bytes(merged))
    true = len({v for v in column.drop_null().to_pylist() if v == v})  # NaN != NaN: a null
    assert m.get_lower_bound(3) <= true <= m.get_upper_bound(3)  # 3 standard errors


def _check_top(summary: dict, column: pa.ChunkedArray) -> None:
    values = column.drop_null().to_pylist()
    for item in summary["top"]:
        assert item["lower"] <= values.count(item["value"]) <= item["upper"]
        assert abs(item["count"] - values.count(item["value"])) <= summary["top_error"]


def _values(column: pa.ChunkedArray) -> np.ndarray:
    raw = column.to_numpy(zero_copy_only=False).astype(float)
    return raw[~np.isnan(raw)]


def test_frequent_items_past_the_sketch_capacity_stay_within_the_stated_error():
    rng = np.random.default_rng(3)
    # 5,000 distinct values (the sketch tracks 768) and three heavy ones
    noise = [f"v{k}" for k in rng.integers(0, 5000, 40_000)]
    values = noise + ["heavy1"] * 3000 + ["heavy2"] * 2000 + ["heavy3"] * 1000
    table = pa.table({"s": rng.permutation(values)})
    parts = [profile_table(table.slice(k, 10_000), ["s"]) for k in range(0, len(values), 10_000)]
    summary = summarize(merge_all(parts))["columns"]["s"]
    assert summary["top_error"] > 0  # past capacity: counts are estimates
    assert [t["value"] for t in summary["top"][:3]] == ["heavy1", "heavy2", "heavy3"]
    for item in summary["top"]:
        true = values.count(item["value"])
        assert item["lower"] <= true <= item["upper"]
        assert abs(item["count"] - true) <= summary["top_error"]


def test_above_the_distinct_cap_counts_are_per_run_and_merged_profiles_give_bounds(monkeypatch):
    monkeypatch.setattr(stats_module, "DISTINCT_CAP", 50)
    monkeypatch.setattr(stats_module, "TOP_FEED", 20)
    rng = np.random.default_rng(5)
    a = pa.table({"s": [f"k{v}" for v in rng.zipf(1.5, 3000) % 400], "i": rng.integers(0, 300, 3000)})
    b = pa.table({"s": [f"k{v}" for v in rng.zipf(1.5, 3000) % 400], "i": rng.integers(200, 500, 3000)})
    pa_, pb = profile_table(a, ["s", "i"]), profile_table(b, ["s", "i"])
    for p in (pa_, pb):
        for c in ("s", "i"):
            assert "hll" not in p["columns"][c]["distinct"]  # DuckDB's estimate of the run: no sketch
            d = summarize(p)["columns"][c]["distinct"]
            assert not d["mergeable"] and d["estimate"] is not None
    both = pa.concat_tables([a, b])
    merged = summarize(merge_profiles(pa_, pb))["columns"]
    for c in ("s", "i"):
        true = len(set(both[c].to_pylist()))
        d = merged[c]["distinct"]
        assert d["estimate"] is None and not d["mergeable"]
        # bounds: the larger run's count <= distinct <= the sum of the runs' counts (DuckDB's
        # estimates, each within a few percent)
        assert d["lower"] * 0.95 <= true <= d["upper"] * 1.05
    # Only the 20 most frequent strings were fed per run: what any count may lack is `unfed`.
    s = merged["s"]
    assert s["top_error"] >= max(pa_["columns"]["s"]["unfed"], 1)
    values = both["s"].to_pylist()
    for item in s["top"]:
        assert item["lower"] <= values.count(item["value"]) <= item["upper"]


def test_profiles_of_different_kinds_or_versions_do_not_merge():
    a = profile_table(pa.table({"x": [1.0, 2.0]}), ["x"])
    b = profile_table(pa.table({"x": ["one", "two"]}), ["x"])
    with pytest.raises(Exception, match="column 'x': cannot merge numeric statistics with string ones"):
        merge_profiles(a, b)
    with pytest.raises(Exception, match="version 7"):
        merge_profiles(a, {**a, "version": 7})


def test_a_profile_is_json():
    profile = profile_table(random_table(1, 500), COLUMNS)
    assert json.loads(json.dumps(profile, allow_nan=False)) == profile


def test_profile_table_names_a_missing_column():
    with pytest.raises(Exception, match=r"cannot profile columns \['nope'\]"):
        profile_table(pa.table({"x": [1]}), ["x", "nope"])


# -- materialization and `fs stats` ----------------------------------------------------------------

DEFS = """
from datetime import timedelta
from featurestore import *
driver = Entity(name="driver", join_keys=["driver_id"])
src = ParquetSource(name="trips", path="data/trips.parquet")
driver_stats = FeatureView(name="driver_stats", entities=[driver], source=src, ttl=timedelta(days=2),
    schema=[Field("rating", Float64), Field("trips", Int64), Field("city", String), Field("active", Bool)])
driver_totals = FeatureView(name="driver_totals", entities=[driver], source=src,
    schema=[Field("trips", Int64)],
    aggregations=[Aggregation("trips", "sum", window=timedelta(days=1))])
"""


def trips(n: int = 480) -> pa.Table:
    rng = np.random.default_rng(11)
    rating = rng.normal(4.5, 0.3, n)
    rating[::17] = np.nan
    return pa.table(
        {
            "driver_id": pa.array(rng.integers(1, 20, n)),
            "event_timestamp": pa.array(
                [T0 + timedelta(minutes=6 * k) for k in range(n)], pa.timestamp("us", tz="UTC")
            ),
            "rating": pa.array(rating, mask=rng.random(n) < 0.05),
            "trips": pa.array(rng.integers(0, 30, n)),
            "city": pa.array(rng.choice(["paris", "lyon", "nice"], n, p=[0.6, 0.3, 0.1])),
            "active": pa.array(rng.random(n) < 0.8),
        }
    )


@pytest.fixture
def store(tmp_path):
    table = trips()
    path = make_repo(tmp_path / "repo", {"defs.py": DEFS}, {"data/trips.parquet": table})
    store = FeatureStore(path)
    store.apply()
    return store, table


def test_materializing_twice_records_two_profiles_and_fs_stats_merges_them(store):
    store, table = store
    middle = T0 + timedelta(hours=24)
    first = store.materialize(T0, middle, views=["driver_stats"])
    store.materialize(middle + timedelta(microseconds=1), T0 + timedelta(days=3), views=["driver_stats"])
    assert first.runs[0].stats_seconds > 0
    runs = store.registry.backend.current_runs("driver_stats")
    assert [r.stats["rows"] for r in runs] == [r.rows for r in runs] == [241, 239]

    result = store.monitor.stats("driver_stats")
    assert [r.rows for r in result.runs] == [241, 239]
    merged = result.to_dict()["merged"]
    assert merged["of"] == "features" and merged["rows"] == 480
    assert list(merged["columns"]) == ["rating", "trips", "city", "active"]  # the view's order
    rating = table["rating"].to_numpy(zero_copy_only=False)
    rating = rating[~np.isnan(rating)]
    col = merged["columns"]["rating"]
    assert col["count"] == len(rating)
    assert col["mean"] == pytest.approx(rating.mean(), rel=1e-12)
    assert col["std"] == pytest.approx(rating.std(ddof=1), rel=1e-9)
    assert (col["min"], col["max"]) == (rating.min(), rating.max())
    city = table["city"].to_pylist()
    assert {t["value"]: t["count"] for t in merged["columns"]["city"]["top"]} == {
        c: city.count(c) for c in ("paris", "lyon", "nice")
    }

    runner = CliRunner()
    out = runner.invoke(cli, ["--repo", str(store.repo_path), "stats", "driver_stats", "--json"])
    assert out.exit_code == 0, out.output
    printed = json.loads(out.output)
    assert printed["merged"]["columns"]["trips"]["count"] == 480
    assert [r["rows"] for r in printed["runs"]] == [241, 239]
    assert "kll" not in out.output and "hll" not in out.output  # summaries, no sketch bytes

    out = runner.invoke(cli, ["--repo", str(store.repo_path), "stats", "driver_stats"])
    assert out.exit_code == 0, out.output
    for text in ("rating", "trips", "city", "active", "paris (", "2 runs (2 with statistics)"):
        assert text in out.output


def test_an_aggregating_view_profiles_its_raw_events(store):
    store, table = store
    store.materialize(T0, T0 + timedelta(days=3), views=["driver_totals"])
    merged = store.monitor.stats("driver_totals").to_dict()["merged"]
    assert merged["of"] == "events"
    assert list(merged["columns"]) == ["trips"]  # the aggregated column, not trips_sum_1d
    assert merged["columns"]["trips"]["mean"] == pytest.approx(np.mean(table["trips"].to_numpy()))


def test_unknown_view_is_an_error_with_a_suggestion(store):
    store, _ = store
    with pytest.raises(UnknownNameError, match="did you mean 'driver_stats'"):
        store.monitor.stats("driver_stat")
    out = CliRunner().invoke(cli, ["--repo", str(store.repo_path), "stats", "driver_stat"])
    assert out.exit_code != 0 and "driver_stats" in out.output


def test_a_view_without_runs_has_no_statistics(store):
    store, _ = store
    result = store.monitor.stats("driver_stats")
    assert result.runs == [] and result.profile is None
    out = CliRunner().invoke(cli, ["--repo", str(store.repo_path), "stats", "driver_stats"])
    assert out.exit_code == 0 and "no materialization runs" in out.output


def test_failing_statistics_are_logged_and_never_fail_the_run(store, monkeypatch, caplog):
    store, _ = store

    def broken(*args, **kwargs):
        raise RuntimeError("planted")

    monkeypatch.setattr(stats_module, "view_profile", broken)
    with caplog.at_level(logging.WARNING, logger="featurestore.monitoring"):
        result = store.materialize(T0, T0 + timedelta(days=3), views=["driver_stats"])
    assert result.runs[0].rows == 480 and result.runs[0].recorded
    assert "driver_stats" in caplog.text and "planted" in caplog.text
    (run,) = store.registry.backend.current_runs("driver_stats")
    assert run.stats is None
    assert store.monitor.stats("driver_stats").to_dict()["runs_with_stats"] == 0


def test_a_saved_training_set_keeps_the_profile_of_its_columns(store):
    store, table = store
    store.materialize(T0, T0 + timedelta(days=3), views=["driver_stats"])
    entity_df = pa.table(
        {
            "driver_id": pa.array([1, 2, 3, 4] * 25),
            "event_timestamp": pa.array(
                [T0 + timedelta(hours=20 + k) for k in range(100)], pa.timestamp("us", tz="UTC")
            ),
        }
    )
    job = store.get_historical_features(entity_df, features=["driver_stats:rating", "driver_stats:city"])
    record = store.training_sets.save("ratings", job)
    profile = record.extra["profile"]
    assert profile["of"] == "training_set" and profile["rows"] == 100
    result = store.training_sets.result("ratings")
    assert set(profile["columns"]) == {"rating", "city"}  # the features, not the entity columns
    rating = [v for v in result["rating"].to_pylist() if v is not None and not math.isnan(v)]
    summary = summarize(profile)["columns"]
    assert summary["rating"]["count"] == len(rating) > 0
    assert summary["rating"]["mean"] == pytest.approx(np.mean(rating), rel=1e-12)
    city = [v for v in result["city"].to_pylist() if v is not None]
    assert {t["value"]: t["count"] for t in summary["city"]["top"]} == {c: city.count(c) for c in set(city)}
    # the same from a shell: `fs stats NAME --training-set`
    shell = CliRunner().invoke(
        cli, ["--repo", str(store.repo_path), "stats", "ratings", "--training-set", "--json"]
    )
    assert shell.exit_code == 0, shell.output
    assert json.loads(shell.output)["stats"]["columns"]["rating"]["count"] == len(rating)
    table = CliRunner().invoke(cli, ["--repo", str(store.repo_path), "stats", "ratings", "--training-set"])
    assert table.exit_code == 0 and "ratings: 100 rows, its feature columns" in table.output
    unknown = CliRunner().invoke(cli, ["--repo", str(store.repo_path), "stats", "ratngs", "--training-set"])
    assert unknown.exit_code == 2 and "did you mean 'ratings'" in unknown.output
    view = CliRunner().invoke(cli, ["--repo", str(store.repo_path), "stats", "ratings"])
    assert (
        view.exit_code == 2
        and "'ratings' is a saved training set: `fs stats ratings --training-set`" in view.output
    )


# -- review fixes ---------------------------------------------------------------------------------------------


def test_a_range_materialized_again_replaces_the_earlier_run_and_partial_overlaps_are_counted(store):
    store, table = store
    store.materialize(T0, T0 + timedelta(days=3), views=["driver_stats"])
    store.materialize(T0, T0 + timedelta(days=3), views=["driver_stats"])  # the same rows again
    result = store.monitor.stats("driver_stats")
    assert len(store.registry.backend.current_runs("driver_stats")) == 2
    assert (len(result.runs), result.replaced_runs, result.overlapping_runs) == (1, 1, 0)
    assert result.profile["rows"] == 480 and result.to_dict()["merged"]["columns"]["trips"]["count"] == 480

    store.materialize(T0 + timedelta(days=2), T0 + timedelta(days=4), views=["driver_stats"])  # no rows there
    result = store.monitor.stats("driver_stats")
    assert (len(result.runs), result.replaced_runs, result.overlapping_runs) == (2, 1, 0)  # it shares none
    store.materialize(T0 + timedelta(days=1), T0 + timedelta(days=4), views=["driver_stats"])  # in part
    result = store.monitor.stats("driver_stats")
    assert (len(result.runs), result.replaced_runs, result.overlapping_runs) == (2, 2, 2)
    assert result.to_dict()["overlapping_runs"] == 2 and result.to_dict()["replaced_runs"] == 2
    # incremental runs touch at their ends: they share no rows
    store.materialize_incremental(T0 + timedelta(days=5), views=["driver_stats"])
    assert store.monitor.stats("driver_stats").overlapping_runs == 2


def test_infinities_are_counted_and_kept_out_of_the_mean_and_std_even_merged():
    a = pa.table({"x": pa.array([1.0, 2.0, math.inf, None, 4.0])})
    b = pa.table({"x": pa.array([5.0, -math.inf, 6.0, math.inf])})
    pa_, pb = profile_table(a, ["x"]), profile_table(b, ["x"])
    assert (pa_["columns"]["x"]["inf"], pb["columns"]["x"]["inf"]) == (1, 2)
    finite = np.array([1.0, 2.0, 4.0, 5.0, 6.0])
    for profile in (merge_profiles(pa_, pb), merge_profiles(pb, pa_)):
        col = summarize(profile)["columns"]["x"]
        assert (col["count"], col["inf"], col["nulls"]) == (8, 3, 1)
        assert col["mean"] == pytest.approx(finite.mean(), rel=1e-12)
        assert col["std"] == pytest.approx(finite.std(ddof=1), rel=1e-12)
        assert (col["min"], col["max"]) == (-math.inf, math.inf)
    only_inf = profile_table(pa.table({"x": pa.array([math.inf, -math.inf])}), ["x"])
    col = summarize(merge_profiles(only_inf, pa_))["columns"]["x"]
    assert col["mean"] == pytest.approx(7 / 3) and col["inf"] == 3
    assert summarize(only_inf)["columns"]["x"]["mean"] is None


def test_doubles_reads_a_sliced_array_from_its_offset_as_a_writable_copy():
    array = pa.array(np.arange(10.0)).slice(3, 4)
    values = stats_module._doubles(array)
    assert values.tolist() == [3.0, 4.0, 5.0, 6.0] and values.flags.writeable
    with pytest.raises(Exception, match="expected doubles without nulls"):
        stats_module._doubles(pa.array([1.0, None]))


def test_materializing_with_statistics_does_not_load_pandas(store):
    """pyarrow's numpy conversions and Python scalars import pandas (a noticeable share of a
    run's time), which nothing else in a materialization loads: the statistics avoid them."""
    import subprocess
    import sys

    repo = store[0].repo_path
    script = (
        "import sys\n"
        "from datetime import datetime, timezone\n"
        "from featurestore import FeatureStore\n"
        f"store = FeatureStore({str(repo)!r})\n"
        "t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)\n"
        "store.materialize(t0, datetime(2026, 1, 3, tzinfo=timezone.utc), views=['driver_stats'])\n"
        "print(store.monitor.stats('driver_stats').profile is not None, 'pandas' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "False"]
