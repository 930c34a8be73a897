"""Freshness: `FeatureView(freshness=...)`, the newest online event time per view (written by
materialization and push, on SQLite and a real Redis), `fs monitor freshness` and the
`fs_view_staleness_seconds` gauge of `/metrics`."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from featurestore import DefinitionError, Entity, FeatureStore, FeatureView, Field, Float64, PushSource
from featurestore.cli import cli
from featurestore.plan import diff
from featurestore.server import create_app
from tests.repo_builder import make_repo

NOW = datetime.now(timezone.utc).replace(microsecond=0)
HOUR = timedelta(hours=1)

DEFS = """
from datetime import timedelta
from featurestore import *

driver = Entity(name="driver", join_keys=["driver_id"])
stats_src = ParquetSource(name="stats_src", path="data/stats.parquet", timestamp_field="event_timestamp")
stats = FeatureView(name="stats", entities=[driver], source=stats_src, freshness=timedelta(hours={limit}),
                    schema=[Field("driver_id", Int64), Field("value", Float64)])
live_push = PushSource(name="live_push", timestamp_field="event_timestamp")
live = FeatureView(name="live", entities=[driver], source=live_push, freshness=timedelta(minutes=10),
                   schema=[Field("driver_id", Int64), Field("value", Float64)])
clicks = FeatureView(name="clicks", entities=[driver], source=stats_src,
                     schema=[Field("driver_id", Int64), Field("value", Float64)],
                     aggregations=[Aggregation("value", "sum", window=timedelta(days=1))])
clicks_push = PushSource(name="clicks_push", timestamp_field="event_timestamp")
pushed_clicks = FeatureView(name="pushed_clicks", entities=[driver], source=clicks_push,
                            schema=[Field("driver_id", Int64), Field("value", Float64)],
                            aggregations=[Aggregation("value", "count", window=timedelta(days=1))])
archive = FeatureView(name="archive", entities=[driver], source=stats_src, online=False,
                      schema=[Field("driver_id", Int64), Field("value", Float64)])
"""


def stats_rows(times: list[datetime]) -> pa.Table:
    return pa.table(
        {
            "driver_id": pa.array([i % 3 + 1 for i in range(len(times))], pa.int64()),
            "event_timestamp": pa.array(times, pa.timestamp("us", tz="UTC")),
            "value": pa.array([float(i) for i in range(len(times))], pa.float64()),
        }
    )


# Source rows up to 3 hours ago, newest (of driver 2) at exactly 3 h ago: the newest online event.
NEWEST = NOW - 3 * HOUR
TIMES = [NOW - 5 * HOUR, NOW - 4 * HOUR, NEWEST, NOW - 6 * HOUR]


def online_config(backend: str, request) -> str:
    if backend == "sqlite":
        return '[online]\ntype = "sqlite"\npath = "data/online.db"\n'
    url = request.getfixturevalue("redis_url")
    return f'[online]\ntype = "redis"\nurl = "{url}"\nkey_prefix = "fresh-{uuid.uuid4().hex[:10]}"\n'


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def backend(request) -> str:
    return request.param


@pytest.fixture
def repo(tmp_path, backend, request):
    root = make_repo(
        tmp_path / "repo",
        {"features.py": DEFS.format(limit=4)},
        {"data/stats.parquet": stats_rows(TIMES)},
        config=online_config(backend, request),
    )
    store = FeatureStore(root)
    store.apply()
    yield store
    store.close()


# -- the definition ------------------------------------------------------------------------------


def view(**kw) -> FeatureView:
    return FeatureView(
        name="v",
        entities=[Entity(name="driver", join_keys=["driver_id"])],
        source=PushSource(name="p"),
        schema=[Field("x", Float64)],
        **kw,
    )


@pytest.mark.parametrize("bad", [timedelta(0), timedelta(seconds=-5), 3600, "1h"])
def test_freshness_must_be_a_positive_timedelta(bad):
    with pytest.raises(DefinitionError, match=r"feature view 'v': freshness must be a positive"):
        view(freshness=bad)


def test_freshness_round_trips_through_the_spec_and_is_absent_when_unset():
    v = view(freshness=timedelta(minutes=90))
    spec = v.to_spec()
    assert spec["freshness_seconds"] == 5400.0
    back = FeatureView.from_spec(spec, {"driver": v.entities[0]}, {"p": v.source})
    assert back.freshness == timedelta(minutes=90)
    assert "freshness_seconds" not in view().to_spec()  # a view applied before freshness existed: same spec
    assert (
        FeatureView.from_spec(view().to_spec(), {"driver": v.entities[0]}, {"p": v.source}).freshness is None
    )


def test_an_unset_freshness_is_no_change_and_a_changed_one_makes_nothing_stale(tmp_path):
    old = {("feature_view", "v"): view().to_spec()}
    assert diff(old, {("feature_view", "v"): view().to_spec()}).is_empty
    plan = diff(old, {("feature_view", "v"): view(freshness=timedelta(hours=2)).to_spec()})
    assert [c.action for c in plan.pending] == ["change"]
    assert "freshness_seconds: (none) -> 2h" in plan.render()
    assert plan.stale == ()


def test_changing_freshness_in_a_repo_is_applied_without_resetting_the_view(repo):
    repo.materialize(NOW - 10 * HOUR, NOW)
    watermark = repo.registry.watermark("stats")
    (repo.repo_path / "features.py").write_text(DEFS.format(limit=1))
    plan = repo.plan()
    assert [(c.name, [f.path for f in c.fields]) for c in plan.pending] == [("stats", ["freshness_seconds"])]
    assert plan.stale == ()
    repo.apply()
    assert repo.registry.watermark("stats") == watermark
    assert repo.catalog.view("stats").freshness == HOUR


# -- the newest online event per view ------------------------------------------------------------


def test_the_online_mark_only_moves_forward_and_is_per_namespace(repo):
    online = repo.online_store
    assert online.newest_events() == {}
    online.mark_newest({"a": NOW - HOUR, "b": NOW})
    online.mark_newest({"a": NOW - 2 * HOUR})  # older: ignored
    assert online.newest_events() == {"a": NOW - HOUR, "b": NOW}
    online.mark_newest({"a": NOW})
    assert online.newest_events()["a"] == NOW
    assert asyncio.run(online.newest_events_async()) == {"a": NOW, "b": NOW}
    online.delete_view("a")
    assert online.newest_events() == {"b": NOW}


def test_a_write_marks_the_newest_event_of_its_rows(repo):
    view = repo.catalog.view("live")
    t = NOW - timedelta(minutes=3, microseconds=7)
    rows = pa.table(
        {
            "driver_id": pa.array([1, 2, 3], pa.int64()),
            "value": pa.array([1.0, 2.0, 3.0]),
            "__event_ts": pa.array([t - HOUR, t, t - 2 * HOUR], pa.timestamp("us", tz="UTC")),
        }
    )
    repo.online_store.write(view, rows)
    assert repo.online_store.newest_events() == {"live": t}  # to the microsecond
    repo.online_store.write(view, rows.slice(0, 1))  # older rows leave the mark where it is
    assert repo.online_store.newest_events() == {"live": t}


def test_materialization_marks_plain_and_aggregating_views(repo):
    repo.materialize(NOW - 10 * HOUR, NOW)
    marks = repo.online_store.newest_events()
    assert marks == {"stats": NEWEST, "clicks": NEWEST}  # not the offline-only view
    report = repo.monitor.freshness(now=NOW)
    by_view = {v.view: v for v in report.views}
    assert by_view["stats"].newest_event == NEWEST
    assert by_view["stats"].age_seconds == 3 * 3600
    assert by_view["stats"].freshness_seconds == 4 * 3600
    assert by_view["stats"].status == "ok"
    assert by_view["clicks"].status == "ok"  # no freshness declared: never a breach
    assert by_view["live"].status == "never"
    assert by_view["archive"].status == "offline" and not by_view["archive"].online
    assert not report.breach
    late = repo.monitor.freshness(now=NEWEST + 4 * HOUR + timedelta(seconds=1))
    assert [v.view for v in late.breaches] == ["stats"]


def test_push_marks_plain_and_aggregating_views(repo):
    t = NOW - timedelta(minutes=2)
    rows = {"driver_id": [1, 2], "value": [0.5, 1.5], "event_timestamp": [t - HOUR, t]}
    assert repo.push("live_push", pa.table(rows)) == 2
    assert repo.push("clicks_push", pa.table(rows)) == 2
    marks = repo.online_store.newest_events()
    assert marks == {"live": t, "pushed_clicks": t}
    assert repo.push("live_push", pa.table(rows), to="offline") == 2  # offline only: no online event
    newer = {"driver_id": [3], "value": [2.0], "event_timestamp": [NOW]}
    repo.push("live_push", pa.table(newer), to="offline")
    assert repo.online_store.newest_events()["live"] == t
    report = repo.monitor.freshness(now=t + timedelta(minutes=11))
    assert [v.view for v in report.breaches] == ["live"]  # 10 minutes allowed


# -- fs monitor freshness ------------------------------------------------------------------------


def run(store: FeatureStore, *args: str):
    return CliRunner().invoke(cli, ["--repo", str(store.repo_path), "monitor", "freshness", *args])


def test_the_command_exits_1_on_a_breach_and_0_when_fresh(repo):
    repo.materialize(NOW - 10 * HOUR, NOW)
    ok = run(repo)
    assert ok.exit_code == 0, ok.output
    assert "stats" in ok.output and "ok" in ok.output and "never" in ok.output
    out = json.loads(run(repo, "--json").output)
    assert {v["view"]: v["status"] for v in out["views"]} == {
        "archive": "offline",
        "clicks": "ok",
        "live": "never",
        "pushed_clicks": "never",
        "stats": "ok",
    }
    assert out["breach"] is False
    stats = next(v for v in out["views"] if v["view"] == "stats")
    assert stats["newest_event"] == NEWEST.isoformat()
    # The source gets no newer rows; pushing an old row to `live` breaches its 10 minutes.
    repo.push("live_push", pa.table({"driver_id": [1], "value": [1.0], "event_timestamp": [NOW - HOUR]}))
    breached = run(repo, "--json")
    assert breached.exit_code == 1, breached.output
    assert [v["view"] for v in json.loads(breached.output)["views"] if v["status"] == "breach"] == ["live"]
    table = run(repo)
    assert table.exit_code == 1 and "breach" in table.output


# -- /metrics --------------------------------------------------------------------------------------


def gauges(text: str, name: str) -> dict[str, float]:
    return {
        s.labels["view"]: s.value
        for family in text_string_to_metric_families(text)
        if family.name == name
        for s in family.samples
    }


def test_metrics_export_the_seconds_since_each_views_newest_online_event(repo):
    with TestClient(create_app(repo)) as client:
        assert gauges(client.get("/metrics").text, "fs_view_staleness_seconds") == {}  # nothing written yet
        repo.materialize(NOW - 10 * HOUR, NOW)
        repo.push("live_push", pa.table({"driver_id": [1], "value": [1.0], "event_timestamp": [NOW - HOUR]}))
        before = datetime.now(timezone.utc)
        text = client.get("/metrics").text
        after = datetime.now(timezone.utc)
    ages = gauges(text, "fs_view_staleness_seconds")
    assert set(ages) == {"stats", "clicks", "live"}  # never-written and offline views are absent
    for view, newest in (("stats", NEWEST), ("clicks", NEWEST), ("live", NOW - HOUR)):
        assert (before - newest).total_seconds() <= ages[view] <= (after - newest).total_seconds()
    assert "fs_http_requests_total" in text  # beside the request metrics
    assert set(gauges(text, "fs_view_watermark_age_seconds")) == {"stats", "clicks", "archive"}


def test_an_unreachable_online_store_is_an_error_not_a_breach(tmp_path):
    root = make_repo(
        tmp_path / "down",
        {"features.py": DEFS.format(limit=4)},
        {"data/stats.parquet": stats_rows(TIMES)},
        config='[online]\ntype = "redis"\nurl = "redis://127.0.0.1:1"\nkey_prefix = "down"\ntimeout_seconds = 0.2\n',
    )
    FeatureStore(root).apply()
    out = CliRunner().invoke(cli, ["--repo", str(root), "monitor", "freshness"])
    assert out.exit_code == 2, out.output
    assert "unavailable" in out.output
