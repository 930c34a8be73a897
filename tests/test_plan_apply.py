"""`plan` shows what `apply` would change, field by field; `apply` records all of it or nothing."""

import pytest

from featurestore import FeatureStore, NotAppliedError, RepoError
from tests.postgres import each_registry  # noqa: F401 (a fixture: every test on both registries)
from tests.repo_builder import make_repo
from tests.test_repo import ENTITY, HEADER, SOURCE, STATS, view

pytestmark = pytest.mark.usefixtures("each_registry")


def repo(tmp_path, body):
    return make_repo(
        tmp_path / "repo", {"defs.py": HEADER + ENTITY + SOURCE + body}, {"data/stats.parquet": STATS}
    )


def rewrite(path, body):
    (path / "defs.py").write_text(HEADER + ENTITY + SOURCE + body)


def test_first_plan_adds_everything_and_apply_records_it(tmp_path, monkeypatch):
    monkeypatch.setenv("FS_USER", "alice")
    path = repo(tmp_path, view())
    store = FeatureStore(path)
    with pytest.raises(NotAppliedError, match="fs apply"):
        _ = store.catalog
    plan = store.plan()
    assert plan.counts() == {"add": 3, "change": 0, "remove": 0, "unchanged": 0}
    assert "+ feature view stats_view" in plan.render()
    store.apply()
    objects = {(o["kind"], o["name"]): o for o in store.registry.objects()}
    assert objects[("feature_view", "stats_view")]["version"] == 1
    assert objects[("feature_view", "stats_view")]["applied_by"] == "alice"
    assert store.plan().is_empty
    assert "No changes" in store.plan().render()
    # A new process sees the applied definitions through the registry.
    assert FeatureStore(path).catalog.view("stats_view").feature_names == ("conv_rate", "trips")


def test_changes_are_shown_field_by_field_and_bump_versions(tmp_path):
    path = repo(tmp_path, view())
    store = FeatureStore(path)
    store.apply()
    generation = store.registry.generation()
    rewrite(
        path,
        view('[Field("conv_rate", Float64), Field("trips", Float64)]').replace(
            "source=src)", "source=src, ttl=timedelta(hours=2))"
        ),
    )
    text = store.plan().render()
    assert "~ feature view stats_view" in text
    assert "schema[trips].dtype: 'Int64' -> 'Float64'" in text
    assert "ttl_seconds: (none) -> 2h" in text
    store.apply()
    versions = store.registry.versions()
    assert versions[("feature_view", "stats_view")] == 2 and versions[("entity", "driver")] == 1
    assert store.registry.generation() == generation + 1
    assert store.catalog.view("stats_view").ttl.total_seconds() == 7200


def test_removed_objects_are_planned_and_removed(tmp_path):
    path = repo(tmp_path, view() + view(name="second", schema='[Field("trips", Int64)]'))
    store = FeatureStore(path)
    store.apply()
    rewrite(path, view())
    plan = store.plan()
    assert "- feature view second" in plan.render()
    assert plan.counts()["remove"] == 1
    store.apply()
    assert set(store.catalog.views) == {"stats_view"}


def test_a_repo_with_one_error_applies_nothing(tmp_path):
    path = repo(tmp_path, view())
    store = FeatureStore(path)
    store.apply()
    before = (store.registry.specs(), store.registry.generation())
    # One good change and one bad one: neither may land.
    rewrite(
        path,
        view(name="stats_view", schema='[Field("trips", Int64)]')
        + view(name="broken", schema='[Field("no_such_column", Int64)]'),
    )
    with pytest.raises(RepoError, match="no_such_column"):
        store.apply()
    assert (store.registry.specs(), store.registry.generation()) == before


def test_apply_is_all_or_nothing_even_when_the_registry_write_fails(tmp_path, monkeypatch):
    path = repo(tmp_path, view() + view(name="second", schema='[Field("trips", Int64)]'))
    store = FeatureStore(path)
    before = store.registry.specs()
    calls = {"n": 0}
    original = store.registry.backend._bump

    def failing_bump(con, key):  # the last write of the apply's transaction
        calls["n"] += 1
        raise OSError("disk full")

    monkeypatch.setattr(store.registry.backend, "_bump", failing_bump)
    with pytest.raises(OSError):
        store.apply()
    assert calls["n"] == 1 and store.registry.specs() == before
    monkeypatch.setattr(store.registry.backend, "_bump", original)
    store.apply()
    assert len(store.registry.specs()) == 4


def test_stale_views_are_those_whose_stored_rows_a_change_alters():
    from featurestore.plan import stale_views

    entity = {"name": "driver", "join_keys": ["driver_id"], "description": "", "owner": "", "tags": {}}
    batch = {"type": "parquet", "name": "b", "timestamp_field": "ts", "path": "b.parquet", "description": ""}
    push = {"type": "push", "name": "p", "timestamp_field": "ts", "batch_source": batch, "description": ""}
    other = {"type": "parquet", "name": "o", "timestamp_field": "ts", "path": "o.parquet", "description": ""}

    def fv(name, source, **kw):
        return {
            "name": name,
            "entities": ["driver"],
            "source": source,
            "ttl_seconds": 60.0,
            "online": True,
            "description": "",
            "owner": "",
            "tags": {},
            "schema": [{"name": "a", "dtype": "Int64"}, {"name": "b", "dtype": "Float64"}],
            **kw,
        }

    def specs(entity=entity, push=push, other=other, views=None):
        out = {("entity", "driver"): entity, ("source", "p"): push, ("source", "o"): other}
        for v in views or [fv("on_push", "p"), fv("on_other", "o")]:
            out[("feature_view", v["name"])] = v
        return out

    base = specs()
    assert stale_views(base, base) == ()
    assert stale_views(base, specs(entity={**entity, "description": "a driver", "tags": {"x": "y"}})) == ()
    assert stale_views(base, specs(entity={**entity, "join_keys": ["id"]})) == ("on_other", "on_push")
    assert stale_views(base, specs(push={**push, "batch_source": {**batch, "description": "x"}})) == ()
    assert stale_views(base, specs(push={**push, "batch_source": {**batch, "path": "c.parquet"}})) == (
        "on_push",
    )
    assert stale_views(base, specs(other={**other, "path": "p.parquet"})) == ("on_other",)
    retyped = fv("on_other", "o", schema=[{"name": "a", "dtype": "Int64"}, {"name": "b", "dtype": "Int64"}])
    reordered = fv(
        "on_other",
        "o",
        ttl_seconds=5.0,
        schema=[{"name": "b", "dtype": "Float64", "description": "d"}, {"name": "a", "dtype": "Int64"}],
    )
    assert stale_views(base, specs(views=[fv("on_push", "p"), retyped])) == ("on_other",)
    assert stale_views(base, specs(views=[fv("on_push", "p"), reordered])) == ()
    offline_only = fv("on_other", "o", online=False)
    assert stale_views(base, specs(views=[fv("on_push", "p"), offline_only])) == ()  # stored rows still good
    assert stale_views(specs(views=[fv("on_push", "p"), offline_only]), base) == (
        "on_other",
    )  # online: fill it
    fewer = fv("on_other", "o", schema=[{"name": "b", "dtype": "Float64"}])
    assert stale_views(base, specs(views=[fv("on_push", "p"), fewer])) == ()  # a feature removed
    assert stale_views(base, specs(views=[fv("on_push", "p")])) == ("on_other",)  # removed: reset too
    assert stale_views(specs(views=[fv("on_push", "p")]), base) == ("on_other",)  # added: starts clean


def test_stale_views_follow_queries_that_name_changed_sources():
    from featurestore.plan import stale_views

    def src(name, **kw):
        return {
            "type": "duckdb" if "query" in kw else "parquet",
            "name": name,
            "timestamp_field": "ts",
            "description": "",
            **kw,
        }

    def fv(name, source):
        return {
            "name": name,
            "entities": [],
            "source": source,
            "online": True,
            "schema": [{"name": "x", "dtype": "Int64"}],
        }

    def specs(a_path="a.parquet", fingerprint="1"):
        sources = [
            src("a", path=a_path),
            src("b", query="SELECT * FROM a WHERE x > 0"),
            src("c", query="SELECT * FROM b", database="other.duckdb"),
            {**src("p"), "type": "push", "batch_source": src("q", query="SELECT * FROM a")},
            src("ab", path="ab.parquet"),
            {**src("df"), "type": "dataframe", "fingerprint": fingerprint},
        ]
        views = [fv("va", "a"), fv("vb", "b"), fv("vc", "c"), fv("vp", "p"), fv("vab", "ab"), fv("vdf", "df")]
        return {
            **{("source", s["name"]): s for s in sources},
            **{("feature_view", v["name"]): v for v in views},
        }

    assert stale_views(specs(), specs(a_path="a2.parquet")) == (
        "va",
        "vb",
        "vc",
        "vp",
    )  # not "ab": a word apart
    assert stale_views(specs(), specs(fingerprint="2")) == ()  # a DataFrame's rows are data, not definition
