"""Where an on-demand view's code lives and what its hash covers (featurestore.on_demand_code):
every process loads the function the repo loader found, drift in anything the function uses by
global name in the repo is refused, and the registry cannot make a store run a file of its choice."""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pytest

from featurestore import DefinitionsChangedError, FeatureStore, RepoError
from featurestore.on_demand_code import code_hash, own_source_hash
from featurestore.server.run import check_on_demand_files
from tests.repo_builder import make_repo

NOW = datetime.now(timezone.utc).replace(microsecond=0)
CONFIG = '[online]\ntype = "sqlite"\npath = "data/online.db"\n'

HEAD = """
from featurestore import Entity, FeatureView, Field, Float64, Int64, PushSource, RequestSource, on_demand_feature_view
driver = Entity(name="driver", join_keys=["driver_id"])
push = PushSource(name="push")
stats = FeatureView(name="stats", entities=[driver], source=push, schema=[Field("driver_id", Int64), Field("y", Float64)])
req = RequestSource(name="req", schema=[Field("x", Float64)])
"""

USES = (
    HEAD
    + """
import units
FACTOR = 2.0
OFFSETS = {"a": (1, 2.5)}


class Scaler:
    def scale(self, x):
        return x * FACTOR


def _scale(x):
    return Scaler().scale(x) + units.ONE


def unused(x):
    return x


@on_demand_feature_view(sources=[stats, req], schema=[Field("out", Float64)])
def calc(row: dict) -> dict:
    return {"out": _scale(row["x"]) + OFFSETS["a"][0]}
"""
)

UNITS = "ONE = 0.0\n"

ROW = [{"driver_id": 1, "x": 1.0}]


def _store(root: Path, files: dict[str, str]) -> FeatureStore:
    make_repo(root, files, config=CONFIG)
    store = FeatureStore(root)
    store.apply()
    when = pa.array([NOW - timedelta(minutes=1)], pa.timestamp("us", tz="UTC"))
    store.push("push", pa.table({"driver_id": [1], "y": [0.5], "event_timestamp": when}), to="both")
    return store


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


@pytest.mark.parametrize(
    ("file", "old", "new"),
    [
        ("features.py", "FACTOR = 2.0", "FACTOR = 3.0"),  # a constant
        ("features.py", '{"a": (1, 2.5)}', '{"a": (2, 2.5)}'),  # a dict of constants
        (
            "features.py",
            "return Scaler().scale(x) + units.ONE",
            "return Scaler().scale(x) - units.ONE",
        ),  # a helper
        ("features.py", "return x * FACTOR", "return x * FACTOR * 2"),  # a method of a class of the repo
        ("units.py", "ONE = 0.0", "ONE = 1.0"),  # a module of the repo
    ],
)
def test_drift_in_what_the_function_uses_is_refused(tmp_path, file, old, new):
    store = _store(tmp_path, {"features.py": USES, "units.py": UNITS})
    assert store.get_online_features(["calc:out"], ROW).to_dict()["out"] == [3.0]
    _edit(tmp_path / file, old, new)
    with pytest.raises(DefinitionsChangedError, match="'calc'.*code its function uses"):
        check_on_demand_files(store)  # the running store's re-check
    with pytest.raises(DefinitionsChangedError, match="'calc'"):
        check_on_demand_files(FeatureStore(tmp_path))  # `fs serve` at start
    fresh = FeatureStore(tmp_path)
    assert [c.name for c in fresh.plan().pending] == ["calc"]
    fresh.apply()
    check_on_demand_files(FeatureStore(tmp_path))


def test_what_the_function_does_not_use_may_change(tmp_path):
    store = _store(tmp_path, {"features.py": USES, "units.py": UNITS})
    _edit(tmp_path / "features.py", "def unused(x):\n    return x", "def unused(x):\n    return -x")
    check_on_demand_files(store)
    check_on_demand_files(FeatureStore(tmp_path))
    assert FeatureStore(tmp_path).plan().is_empty
    assert store.get_online_features(["calc:out"], ROW).to_dict()["out"] == [3.0]


def test_the_hash_is_the_same_at_apply_at_start_and_in_the_recheck(tmp_path):
    store = _store(tmp_path, {"features.py": USES, "units.py": UNITS})
    applied = store.registry.specs()[("on_demand_feature_view", "calc")]
    fresh = FeatureStore(tmp_path)
    check_on_demand_files(fresh)  # imports the file and compares, as `fs serve` does
    view = fresh.catalog.on_demand["calc"]
    row, vec = view.loader(fresh.repo_path).functions()
    assert code_hash([row, vec], "python", tmp_path)[0] == applied["sha256"]
    assert own_source_hash(tmp_path, [("features.py", "calc")]) == applied["source_sha256"]


HELPER = """
def calc(row: dict) -> dict:
    return {"out": row["x"] * 2}
"""

WRAPS = (
    HEAD
    + """
from helpers import calc as _calc
calc = on_demand_feature_view(sources=[stats, req], schema=[Field("out", Float64)])(_calc)
"""
)


def test_a_function_from_another_repo_file_serves_in_every_process(tmp_path):
    store = _store(tmp_path, {"features.py": WRAPS, "helpers.py": HELPER})
    spec = store.registry.specs()[("on_demand_feature_view", "calc")]
    assert (spec["module"], spec["function_file"], spec["function"]) == ("features.py", "helpers.py", "calc")
    fresh = FeatureStore(tmp_path)
    check_on_demand_files(fresh)
    assert fresh.get_online_features(["calc:out"], [{"driver_id": 1, "x": 2.0}]).to_dict()["out"] == [4.0]
    _edit(tmp_path / "helpers.py", "* 2}", "* 3}")
    with pytest.raises(DefinitionsChangedError, match="source of its function 'calc' in helpers.py"):
        check_on_demand_files(FeatureStore(tmp_path))
    FeatureStore(tmp_path).apply()
    other = FeatureStore(tmp_path)
    assert other.get_online_features(["calc:out"], [{"driver_id": 1, "x": 2.0}]).to_dict()["out"] == [6.0]


@pytest.mark.parametrize(
    ("definition", "problem"),
    [
        (
            'calc = on_demand_feature_view(sources=[stats, req], schema=[Field("out", Float64)], name="calc")'
            '(lambda row: {"out": 1.0})',
            r"'<lambda>' \(features.py\) is a lambda or is defined inside another function",
        ),
        (
            "def make():\n    def inner(row):\n        return {'out': 1.0}\n    return inner\n"
            'calc = on_demand_feature_view(sources=[stats, req], schema=[Field("out", Float64)], name="calc")'
            "(make())",
            "'make.<locals>.inner'",
        ),
        (
            "import uuid\nSALT = str(uuid.uuid4())\n"
            '@on_demand_feature_view(sources=[stats, req], schema=[Field("out", Float64)])\n'
            "def calc(row):\n    return {'out': float(len(SALT))}",
            "hashes differently each time features.py is imported",
        ),
    ],
)
def test_apply_refuses_a_function_a_store_could_not_load_as_applied(tmp_path, definition, problem):
    make_repo(tmp_path, {"features.py": HEAD + definition}, config=CONFIG)
    with pytest.raises(RepoError, match=r"features.py: on-demand feature view 'calc'.*" + problem):
        FeatureStore(tmp_path).apply()


def _tamper(root: Path, **changes: str) -> None:
    con = sqlite3.connect(root / "data" / "registry.db")
    (text,) = con.execute(
        "select spec from objects where kind='on_demand_feature_view' and name='calc'"
    ).fetchone()
    spec = json.loads(text) | changes
    con.execute(
        "update objects set spec=? where kind='on_demand_feature_view' and name='calc'",
        (json.dumps(spec, sort_keys=True),),
    )
    con.commit()
    con.close()


@pytest.mark.parametrize("where", ["absolute", "../evil.py", "_private.py", "data/evil.py"])
def test_the_registry_cannot_make_a_store_run_another_file(tmp_path, where):
    root = tmp_path / "repo"
    store = _store(root, {"features.py": USES, "units.py": UNITS})
    store.close()
    marker = tmp_path / "ran"
    evil = f"open({str(marker)!r}, 'w').write('ran')\n" + USES
    target = {"absolute": tmp_path / "evil.py", "../evil.py": tmp_path / "evil.py"}.get(where, root / where)
    target.write_text(evil)
    _tamper(root, module=str(target) if where == "absolute" else where)
    # the registry now names a file that is not one of the repo's definition files
    with pytest.raises(DefinitionsChangedError, match="which is not a definition file of the repo"):
        check_on_demand_files(FeatureStore(root))
    with pytest.raises(DefinitionsChangedError):
        FeatureStore(root).get_online_features(["calc:out"], ROW)
    assert not marker.exists()


def test_a_changed_function_is_refused_before_its_file_runs(tmp_path):
    marker = tmp_path / "ran"
    root = tmp_path / "repo"
    store = _store(root, {"features.py": USES, "units.py": UNITS})
    check_on_demand_files(store)
    _edit(
        root / "features.py",
        'return {"out": _scale(row["x"]) + OFFSETS["a"][0]}',
        'return {"out": -1.0}\n' + f"open({str(marker)!r}, 'w').write('ran')",
    )
    with pytest.raises(DefinitionsChangedError, match="source of its function 'calc' in features.py differs"):
        check_on_demand_files(store)
    with pytest.raises(DefinitionsChangedError):
        check_on_demand_files(FeatureStore(root))
    assert not marker.exists()
