"""Materialization: offline storage replaces exactly the range it is asked for, re-runs change nothing,
a killed run re-run ends like a clean one, and watermarks move only after both writes succeed."""

import os
import shutil
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featurestore import FeatureStore, MaterializationError
from tests.postgres import each_registry  # noqa: F401 (a fixture: every test on both registries)
from tests.repo_builder import make_repo, write_table

pytestmark = pytest.mark.usefixtures("each_registry")

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
DEFS = """
from datetime import timedelta
from featurestore import *
driver = Entity(name="driver", join_keys=["driver_id"])
src = ParquetSource(name="stats", path="data/stats.parquet", created_timestamp_field="created")
stats = FeatureView(name="stats", entities=[driver], ttl=timedelta(days=2), online={online},
                    schema=[Field("value", Float64), Field("n", Int64), Field("tag", String)], source=src)
"""


def rows(hours, drivers=(1, 2, 3), created_delay=timedelta(minutes=1), value_offset=0.0):
    """One row per driver per hour offset from T0."""
    out = {"driver_id": [], "event_timestamp": [], "created": [], "value": [], "n": [], "tag": []}
    for h in hours:
        for d in drivers:
            ts = T0 + timedelta(hours=h)
            out["driver_id"].append(d)
            out["event_timestamp"].append(ts)
            out["created"].append(ts + created_delay)
            out["value"].append(d * 1000 + h + value_offset)
            out["n"].append(h)
            out["tag"].append(f"d{d}h{h}")
    return pa.table(
        {
            "driver_id": pa.array(out["driver_id"], pa.int64()),
            "event_timestamp": pa.array(out["event_timestamp"], pa.timestamp("us", tz="UTC")),
            "created": pa.array(out["created"], pa.timestamp("us", tz="UTC")),
            "value": pa.array(out["value"], pa.float64()),
            "n": pa.array(out["n"], pa.int64()),
            "tag": out["tag"],
        }
    )


def new_store(tmp_path, table, online="False", name="repo"):
    path = make_repo(tmp_path / name, {"defs.py": DEFS.format(online=online)}, {"data/stats.parquet": table})
    store = FeatureStore(path)
    store.apply()
    return store


def offline(store, view="stats"):
    """Offline contents, sorted, as Python rows."""
    files = store.offline_storage.files(view)
    if not files:
        return []
    table = pa.concat_tables([pq.read_table(f) for f in files], promote_options="permissive")
    return sorted(table.to_pylist(), key=lambda r: (r["__event_ts"], r["driver_id"]))


def test_rerunning_a_range_changes_nothing(tmp_path):
    store = new_store(tmp_path, rows(range(0, 72)))
    result = store.materialize(T0, T0 + timedelta(hours=47))
    assert result.rows == 48 * 3
    first = offline(store)
    files = {f: pq.read_table(f) for f in store.offline_storage.files("stats")}
    store.materialize(T0, T0 + timedelta(hours=47))
    assert offline(store) == first
    again = {f: pq.read_table(f) for f in store.offline_storage.files("stats")}
    assert again.keys() == files.keys()
    assert all(
        again[f].to_pylist() == files[f].to_pylist() and again[f].schema.types == files[f].schema.types
        for f in files
    )
    assert store.registry.watermark("stats") == T0 + timedelta(hours=47)
    assert len(first) == 48 * 3 and first[0]["__event_ts"] == T0


def test_a_range_replaces_exactly_that_range(tmp_path):
    store = new_store(tmp_path, rows(range(0, 72)))
    store.materialize(T0, T0 + timedelta(hours=71))
    before = offline(store)
    # The source changes everywhere; we re-materialize 10:00..30:00 only (two partial days).
    write_table(store.repo_path / "data/stats.parquet", rows(range(0, 72), value_offset=0.5))
    start, end = T0 + timedelta(hours=10), T0 + timedelta(hours=30)
    store.materialize(start, end)
    after = offline(store)
    assert len(after) == len(before)
    for old, new in zip(before, after):
        inside = start <= new["__event_ts"] <= end
        assert new["value"] == old["value"] + (0.5 if inside else 0.0), new
    # Rows deleted from the source inside the range disappear; outside they stay.
    write_table(store.repo_path / "data/stats.parquet", rows([h for h in range(0, 72) if h != 20]))
    store.materialize(start, end)
    hours = {r["n"] for r in offline(store)}
    assert 20 not in hours and {0, 9, 31, 71} <= hours


def test_future_end_and_bad_ranges_are_refused(tmp_path):
    store = new_store(tmp_path, rows(range(0, 3)))
    with pytest.raises(MaterializationError, match="in the future"):
        store.materialize(T0, datetime.now(timezone.utc) + timedelta(days=1))
    with pytest.raises(MaterializationError, match="after end"):
        store.materialize(T0 + timedelta(days=1), T0)
    with pytest.raises(MaterializationError, match="not an ISO date"):
        store.materialize("yesterday", T0)
    with pytest.raises(Exception, match="unknown feature view 'stat' \\(did you mean 'stats'"):
        store.materialize(T0, T0 + timedelta(days=1), views=["stat"])
    assert store.registry.watermark("stats") is None and not store.offline_storage.has_data("stats")


def test_naive_and_string_times_are_utc(tmp_path):
    store = new_store(tmp_path, rows(range(0, 24)))
    store.materialize("2026-01-01T05:00:00", datetime(2026, 1, 1, 6))
    assert [r["n"] for r in offline(store)] == [5, 5, 5, 6, 6, 6]


def test_incremental_runs_continue_from_the_watermark_and_pick_up_late_rows(tmp_path):
    store = new_store(tmp_path, rows(range(0, 24)))
    store.materialize_incremental(T0 + timedelta(hours=23))
    assert store.registry.watermark("stats") == T0 + timedelta(hours=23)
    assert len(offline(store)) == 24 * 3
    # New rows arrive for later hours, plus a late row: created now, but its event time is hour 3.
    late = rows([3], drivers=(9,), created_delay=timedelta(days=3))
    write_table(store.repo_path / "data/stats.parquet", pa.concat_tables([rows(range(0, 30)), late]))
    result = store.materialize_incremental(T0 + timedelta(hours=29))
    got = offline(store)
    assert len(got) == 30 * 3 + 1
    assert any(r["driver_id"] == 9 and r["n"] == 3 for r in got)
    assert result.rows == 7 * 3 + 1  # hours 23..29 (23 again: inclusive) and the late row
    # Running again is a no-op on contents.
    store.materialize_incremental(T0 + timedelta(hours=29))
    assert offline(store) == got


KILLER = """
import os, signal, sys
from featurestore import FeatureStore
from featurestore.offline import storage

repo, where = sys.argv[1], sys.argv[2]
store = FeatureStore(repo)
if where == "online":  # die in the middle of the online write, before any day is replaced
    online = store.online_store
    write = online.write
    def write_then_die(view, batches):
        write(view, [next(iter(batches)).slice(0, 1)])
        os.kill(os.getpid(), signal.SIGKILL)
    online.write = write_then_die
else:  # die after the Nth day file was replaced
    calls = {"n": 0}
    original = os.replace
    def replace_then_die(src, dst):
        original(src, dst)
        calls["n"] += 1
        if calls["n"] == int(where):
            os.kill(os.getpid(), signal.SIGKILL)
    storage.os.replace = replace_then_die
store.materialize("2026-01-01", "2026-01-04T23:00:00")
"""


def online_rows(store):
    resp = store.get_online_features(
        ["stats:value", "stats:n", "stats:tag"], [{"driver_id": d} for d in (1, 2, 3)]
    )
    return resp.to_dict(include_event_timestamps=True)


@pytest.mark.parametrize("where", ["online", "2"])
def test_a_run_killed_half_way_then_rerun_ends_like_a_clean_run(tmp_path, where):
    table = rows(range(0, 120))
    online_defs = DEFS.format(online="True").replace("ttl=timedelta(days=2)", "ttl=None")

    def store_for(name, data):
        path = make_repo(tmp_path / name, {"defs.py": online_defs}, {"data/stats.parquet": data})
        store = FeatureStore(path)
        store.apply()
        return store

    clean = store_for("clean", table)
    clean.materialize("2026-01-01", "2026-01-04T23:00:00")

    victim = store_for("victim", rows(range(0, 120), value_offset=0.25))
    victim.materialize("2026-01-01", "2026-01-04T23:00:00")  # old contents, to be replaced
    runs_before = len(victim.registry.runs())
    write_table(victim.repo_path / "data/stats.parquet", table)
    script = tmp_path / "killer.py"
    script.write_text(textwrap.dedent(KILLER))
    proc = subprocess.run(
        [sys.executable, str(script), str(victim.repo_path), where],
        capture_output=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert proc.returncode == -9, proc.stderr.decode()
    assert offline(victim) != offline(clean) or online_rows(victim) != online_rows(clean)  # it died half-way
    assert any(".staging-" in p.name for p in victim.offline_storage.view_dir("stats").iterdir())
    assert len(victim.registry.runs()) == runs_before  # nothing recorded

    victim.materialize("2026-01-01", "2026-01-04T23:00:00")
    assert offline(victim) == offline(clean)
    assert online_rows(victim) == online_rows(clean)
    assert not any(
        p.name.startswith((".staging-", ".tmp-")) for p in victim.offline_storage.view_dir("stats").rglob("*")
    )


def test_partitions_are_by_utc_day_and_sorted(tmp_path):
    store = new_store(tmp_path, rows(range(0, 50)))
    store.materialize(T0, T0 + timedelta(hours=49))
    days = [f.parent.name for f in store.offline_storage.files("stats")]
    assert days == ["date=2026-01-01", "date=2026-01-02", "date=2026-01-03"]
    first = pq.read_table(store.offline_storage.files("stats")[0])
    ts = first.column("__event_ts")
    assert pc.all(pc.greater_equal(ts.slice(1), ts.slice(0, len(ts) - 1))).as_py()
    shutil.rmtree(store.offline_storage.view_dir("stats"))


@pytest.fixture(params=["sqlite", "redis"])
def online_config(request, tmp_path):
    """[online] settings for the two backends (Redis: our own server, a unique key prefix)."""
    if request.param == "sqlite":
        return '[online]\ntype = "sqlite"\npath = "data/online.db"\n'
    url = request.getfixturevalue("redis_url")
    return f'[online]\ntype = "redis"\nurl = "{url}"\nkey_prefix = "mat-{tmp_path.name}"\n'


def test_online_holds_the_last_offline_row_per_entity_and_survives_reruns(tmp_path, online_config):
    # Shuffled hours and a tie on event time broken by the created timestamp.
    table = rows([5, 1, 9, 3, 7, 0, 2, 8, 4, 6])
    tie = rows([9], drivers=(2,), created_delay=timedelta(minutes=30), value_offset=0.5)
    defs = DEFS.format(online="True").replace("ttl=timedelta(days=2)", "ttl=None")  # January is long ago
    path = make_repo(
        tmp_path / "repo",
        {"defs.py": defs},
        {"data/stats.parquet": pa.concat_tables([table, tie])},
        config=online_config,
    )
    store = FeatureStore(path)
    store.apply()
    end = T0 + timedelta(hours=9)
    result = store.materialize(T0, end)
    assert result.online_rows == 3

    def online():
        resp = store.get_online_features(
            ["stats:value", "stats:n", "stats:tag"], [{"driver_id": d} for d in (1, 2, 3, 4)]
        )
        return resp.to_dict()

    last = {}
    for r in offline(store):  # sorted by event time; ties: created time ascending
        last[r["driver_id"]] = r
    got = online()
    for i, d in enumerate((1, 2, 3)):
        assert (
            got["value"][i] == last[d]["value"]
            and got["n"][i] == last[d]["n"]
            and got["tag"][i] == last[d]["tag"]
        )
    assert got["value"][1] == 2009.5  # the later-created of the two rows at hour 9
    assert got["value"][3] is None
    # Re-materializing an older range cannot overwrite the newer online rows.
    store.materialize(T0, T0 + timedelta(hours=2))
    assert online() == got


PUSH_DEFS = (
    DEFS.format(online="True")
    .replace(
        'src = ParquetSource(name="stats", path="data/stats.parquet", created_timestamp_field="created")',
        'batch = ParquetSource(name="stats", path="data/stats.parquet", created_timestamp_field="created")\n'
        'src = PushSource(name="stats_push", batch_source=batch)',
    )
    .replace("ttl=timedelta(days=2)", "ttl=None")
)


def training(store, driver_ids, hour):
    import pandas as pd

    entity_df = pd.DataFrame(
        {"driver_id": driver_ids, "event_timestamp": [T0 + timedelta(hours=hour)] * len(driver_ids)}
    )
    return store.get_historical_features(entity_df, ["stats:value"]).to_pandas()["value"].tolist()


def test_rows_pushed_to_offline_survive_materialization_and_source_rows_stay_visible(tmp_path):
    path = make_repo(
        tmp_path / "repo", {"defs.py": PUSH_DEFS}, {"data/stats.parquet": rows(range(0, 24), drivers=(1,))}
    )
    store = FeatureStore(path)
    store.apply()
    pushed = rows([11], drivers=(2,)).drop_columns(["created"])
    store.push("stats_push", pushed, to="offline")
    # A push to offline storage does not hide the source's rows of a view never materialized ...
    assert training(store, [1, 2], 12) == [1012.0, 2011.0]
    # ... and materialization, which replaces its range in storage, keeps what was pushed.
    store.materialize(T0, T0 + timedelta(hours=23))
    assert training(store, [1, 2], 12) == [1012.0, 2011.0]
    store.materialize(T0, T0 + timedelta(hours=23))
    assert training(store, [1, 2], 12) == [1012.0, 2011.0]


def test_storage_answers_for_materialized_ranges_and_the_source_for_the_rest(tmp_path):
    store = new_store(tmp_path, rows(range(0, 48)))
    store.materialize(T0 + timedelta(hours=24), T0 + timedelta(hours=47))  # the second day only
    for f in store.offline_storage.files("stats"):  # mark the stored rows, to tell where answers come from
        table = pq.read_table(f)
        i = table.schema.get_field_index("value")
        pq.write_table(table.set_column(i, "value", pc.add(table.column(i), 0.25)), f)
    # Day one comes from the source, day two from storage as materialized.
    assert training(store, [1], 5) == [1005.0]
    assert training(store, [1], 30) == [1030.25]
    # This source has a created timestamp: a changed file does not make the stored day stale (late
    # rows arrive by materialize-incremental; without one, see tests/test_late_rows.py).
    write_table(store.repo_path / "data/stats.parquet", rows(range(0, 48), value_offset=0.5))
    assert training(store, [1], 5) == [1005.5]
    assert training(store, [1], 30) == [1030.25]


def _add_extra_feature(store, table):
    write_table(
        store.repo_path / "data/stats.parquet",
        table.append_column("extra", pa.array([7] * len(table), pa.int64())),
    )
    defs = store.repo_path / "defs.py"
    defs.write_text(
        defs.read_text().replace('Field("tag", String)]', 'Field("tag", String), Field("extra", Int64)]')
    )


def test_a_feature_added_after_materialization_reads_from_the_source_until_rebuilt(tmp_path):
    """Adding a feature makes the materialized rows stale: apply resets the view, so training sets read
    the source (not NULLs from the old files), and the next incremental run rebuilds it from the start."""
    import pandas as pd

    store = new_store(tmp_path, rows(range(0, 24)), online="True")
    store.materialize_incremental(T0 + timedelta(hours=23))
    assert store.registry.watermark("stats") == T0 + timedelta(hours=23)
    _add_extra_feature(store, rows(range(0, 24)))
    plan = store.plan()
    assert (
        plan.stale == ("stats",)
        and "Materialized rows of feature view(s) stats no longer match" in plan.render()
    )
    store.apply()
    assert store.registry.watermark("stats") is None and store.registry.materialized_intervals("stats") == []
    assert store.registry.last_materialization("stats") is None
    entity_df = pd.DataFrame({"driver_id": [1], "event_timestamp": [T0 + timedelta(hours=5)]})
    got = store.get_historical_features(entity_df, ["stats:value", "stats:extra"]).to_pandas()
    assert got["value"].tolist() == [1005.0] and got["extra"].tolist() == [7]
    assert _online_row(store, 1) == [
        1023.0,
        23,
        "d1h23",
    ]  # online rows stay meanwhile (lookups keep answering)

    result = store.materialize_incremental(T0 + timedelta(hours=23))
    assert result.runs[0].start.year == 1970 and result.rows == 72  # from the start
    assert store.registry.materialized_intervals("stats")[0][1] == T0 + timedelta(hours=23)
    assert {r["extra"] for r in offline(store)} == {7}
    got = store.get_historical_features(entity_df, ["stats:value", "stats:extra"]).to_pandas()
    assert got["value"].tolist() == [1005.0] and got["extra"].tolist() == [7]
    assert _online_row(store, 1) == [1023.0, 23, "d1h23", 7]  # rewritten with the new feature


def _online_row(store, driver_id):
    """The values of a driver's stored online row, whatever its layout (the ttl hides them from lookups)."""
    from featurestore.online.encoding import decode_blob, view_prefix

    online = store.online_store
    [blob] = online.read([view_prefix(online.key_prefix, "stats") + str(driver_id).encode()])
    return decode_blob(blob)[2]


def test_changes_that_alter_no_stored_row_reset_nothing(tmp_path):
    store = new_store(tmp_path, rows(range(0, 24)))
    store.materialize_incremental(T0 + timedelta(hours=23))
    defs = store.repo_path / "defs.py"
    defs.write_text(
        defs.read_text()
        .replace("ttl=timedelta(days=2)", "ttl=timedelta(days=3), description='now documented'")
        .replace('[Field("value", Float64), Field("n", Int64)', '[Field("n", Int64), Field("value", Float64)')
        .replace('created_timestamp_field="created")', 'created_timestamp_field="created", tags={"a": "b"})')
    )
    plan = store.apply()
    assert plan.counts()["change"] == 2 and plan.stale == () and "no longer match" not in plan.render()
    assert store.registry.watermark("stats") == T0 + timedelta(hours=23)
    assert store.registry.materialized_intervals("stats") != []


def test_a_changed_source_resets_the_views_that_read_it(tmp_path):
    """Directly or through a DuckDB query that names it; views reading other sources keep their rows."""
    extra = """
q = DuckDBSource(name="q", query="SELECT * FROM stats WHERE driver_id < 3", timestamp_field="event_timestamp")
via_query = FeatureView(name="via_query", entities=[driver], source=q, schema=[Field("value", Float64)])
other_src = ParquetSource(name="other", path="data/other.parquet")
other = FeatureView(name="other", entities=[driver], source=other_src, schema=[Field("value", Float64)])
"""
    table = rows(range(0, 24))
    path = make_repo(
        tmp_path / "repo",
        {"defs.py": DEFS.format(online="False") + extra},
        {"data/stats.parquet": table, "data/stats2.parquet": table, "data/other.parquet": table},
    )
    store = FeatureStore(path)
    store.apply()
    store.materialize_incremental(T0 + timedelta(hours=23))
    defs = path / "defs.py"
    defs.write_text(defs.read_text().replace('path="data/stats.parquet"', 'path="data/stats2.parquet"'))
    plan = store.apply()
    assert plan.stale == ("stats", "via_query")
    assert {v: store.registry.watermark(v) for v in ("stats", "via_query", "other")} == {
        "stats": None,
        "via_query": None,
        "other": T0 + timedelta(hours=23),
    }


def test_a_run_that_read_the_definition_before_an_apply_changed_it_is_not_recorded(tmp_path, monkeypatch):
    """Another process applies a new feature while a run is writing rows of the old definition: those
    rows must not count as covering the view (else training sets would read NULL for the feature)."""
    store = new_store(tmp_path, rows(range(0, 24)))
    other = FeatureStore(store.repo_path)  # the other process
    storage = store.offline_storage
    commit = storage.commit

    def commit_then_apply(*args, **kwargs):
        commit(*args, **kwargs)
        _add_extra_feature(other, rows(range(0, 24)))
        other.apply()

    monkeypatch.setattr(storage, "commit", commit_then_apply)
    result = store.materialize_incremental(T0 + timedelta(hours=23))
    assert "not recorded" in result.runs[0].skipped and "not recorded" in str(result)
    assert result.unrecorded == ["stats"]
    from featurestore.cli import _fail_if_unrecorded

    with pytest.raises(MaterializationError, match="definitions of stats changed during the run"):
        _fail_if_unrecorded(result)  # `fs materialize*` exits 1: a scheduler notices
    assert store.registry.watermark("stats") is None and store.registry.materialized_intervals("stats") == []
    monkeypatch.setattr(storage, "commit", commit)
    result = store.materialize_incremental(T0 + timedelta(hours=23))  # the new definition, recorded
    assert not result.runs[0].skipped and store.registry.watermark("stats") == T0 + timedelta(hours=23)
    assert {r["extra"] for r in offline(store)} == {7}


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([1, 2, None]),
            st.sampled_from(["a", "b"]),
            st.integers(0, 3),
            st.one_of(st.none(), st.integers(0, 2)),
            st.one_of(st.none(), st.integers(0, 3)),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_the_newest_row_per_entity_is_the_point_in_time_choice(data):
    """latest_rows_sql (aggregate, then a window over ties only) picks what one window over all rows picks."""
    from featurestore import Entity, FeatureView, Field, Int64, ParquetSource
    from featurestore.materialize import latest_rows_sql
    from featurestore.offline.sources import arrow_table, duckdb_connection

    view = FeatureView(
        name="v",
        entities=[Entity(name="e", join_keys=["k1", "k2"])],
        source=ParquetSource(name="s", path="x"),
        schema=[Field("f", Int64)],
    )
    table = pa.table(
        {
            "k1": pa.array([r[0] for r in data], pa.int64()),
            "k2": [r[1] for r in data],
            "__event_ts": pa.array([T0 + timedelta(hours=r[2]) for r in data], pa.timestamp("us", tz="UTC")),
            "__created_ts": pa.array(
                [None if r[3] is None else T0 + timedelta(hours=r[3]) for r in data],
                pa.timestamp("us", tz="UTC"),
            ),
            "f": pa.array([r[4] for r in data], pa.int64()),
        }
    )
    con = duckdb_connection()
    con.register("rows_", table)
    got = arrow_table(con, latest_rows_sql(view, "rows_")).sort_by([("k1", "ascending"), ("k2", "ascending")])
    want = arrow_table(
        con,
        "SELECT k1, k2, f, __event_ts FROM rows_ WHERE k1 IS NOT NULL QUALIFY row_number() OVER "
        "(PARTITION BY k1, k2 ORDER BY __event_ts DESC, __created_ts DESC NULLS LAST, "
        "f DESC NULLS LAST) = 1",
    ).sort_by([("k1", "ascending"), ("k2", "ascending")])
    assert got.select(["k1", "k2", "f", "__event_ts"]).to_pylist() == want.to_pylist()


def test_a_reset_counts_runs_by_commit_order_not_by_clock(tmp_path, monkeypatch):
    """Runs recorded after a reset count, and those before it do not, whatever the clocks said."""
    import featurestore.registry as registry_module

    store = new_store(tmp_path, rows(range(0, 24)))
    registry = store.registry
    day = timedelta(days=1)
    registry.record_materialization("stats", T0, T0 + day, 1, 0, advance_watermark=True)
    import itertools

    clock = itertools.chain([T0 + 10 * day], itertools.repeat(T0 + 5 * day))  # the apply's clock runs ahead
    monkeypatch.setattr(registry_module, "utcnow", lambda: next(clock))
    generation = registry.apply(
        [("change", "feature_view", "stats", {"name": "stats"})], stale_views=["stats"]
    )
    assert registry.materialized_intervals("stats") == [] and registry.watermark("stats") is None
    assert registry.record_materialization(
        "stats", T0, T0 + 2 * day, 1, 0, advance_watermark=True, generation=generation
    )
    assert registry.materialized_intervals("stats") == [(T0, T0 + 2 * day)]
    assert not registry.record_materialization(
        "stats", T0, T0 + 3 * day, 1, 0, advance_watermark=True, generation=generation - 1
    )  # read the definitions before the reset
    assert registry.materialized_intervals("stats") == [(T0, T0 + 2 * day)]
    assert registry.last_materialization("stats")["end"] == (T0 + 2 * day).isoformat()
