"""The join-key rule (featurestore.keys): one rule for every road a key comes in by.

Integer keys take integers, whole-number floats and digit strings; string keys take strings only; a
refused value is a clear error naming the key and the row, alike for `get_online_features`,
`start_online_lookup`, `fs online-features -e` and the entity_df of `get_historical_features` (the
HTTP roads: tests/server/test_keys.py). Key types here are not declared: they come from the source.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from featurestore import FeatureStore, RetrievalError
from tests.repo_builder import make_repo

NOW = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)

DEFINITIONS = """
from featurestore import Entity, FeatureService, FeatureView, Field, Float64, Int64, ParquetSource

driver = Entity(name="driver", join_keys=["driver_id"])
stock = Entity(name="stock", join_keys=["symbol"])
trips = ParquetSource(name="trips", path="data/trips.parquet", timestamp_field="event_timestamp")
quotes = ParquetSource(name="quotes", path="data/quotes.parquet", timestamp_field="event_timestamp")
driver_stats = FeatureView(name="driver_stats", entities=[driver], source=trips, schema=[Field("trips", Int64)])
stock_quotes = FeatureView(name="stock_quotes", entities=[stock], source=quotes, schema=[Field("price", Float64)])
driver_trips = FeatureService(name="driver_trips", features=[driver_stats])
"""


def build(root: Path) -> FeatureStore:
    """Drivers 1 and 2 (integer keys), symbols "5" and "05" (string keys), materialized online."""
    times = pa.array([NOW, NOW], pa.timestamp("us", tz="UTC"))
    make_repo(
        root,
        {"features.py": DEFINITIONS},
        {
            "data/trips.parquet": pa.table(
                {"driver_id": [1, 2], "trips": [10, 20], "event_timestamp": times}
            ),
            "data/quotes.parquet": pa.table(
                {"symbol": ["5", "05"], "price": [1.5, 2.5], "event_timestamp": times}
            ),
        },
        config='[online]\ntype = "sqlite"\npath = "data/online.db"\n',
    )
    store = FeatureStore(root)
    store.apply()
    store.materialize(NOW - timedelta(days=1), NOW + timedelta(seconds=1))
    return store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store = build(tmp_path_factory.mktemp("keys-repo"))
    yield store
    store.close()


# (feature, key, value, expected) for values the rule accepts
ACCEPTED = [
    ("driver_stats:trips", "driver_id", 1, 10),
    ("driver_stats:trips", "driver_id", "1", 10),
    ("driver_stats:trips", "driver_id", 2.0, 20),
    ("driver_stats:trips", "driver_id", "002", 20),
    ("stock_quotes:price", "symbol", "5", 1.5),
    ("stock_quotes:price", "symbol", "05", 2.5),
]
# (feature, key, value, words of the error) for values it refuses
REFUSED = [
    ("driver_stats:trips", "driver_id", "abc", ["'abc' is not an integer"]),
    ("driver_stats:trips", "driver_id", 1.5, ["1.5 is not a whole number"]),
    ("driver_stats:trips", "driver_id", True, ["boolean"]),
    ("driver_stats:trips", "driver_id", "1e3", ["'1e3' is not an integer"]),
    ("driver_stats:trips", "driver_id", 2**70, ["outside the Int64 range"]),
    ("stock_quotes:price", "symbol", 5, ["not a string", "send the string '5'"]),
    ("stock_quotes:price", "symbol", 5.0, ["not a string"]),
]


def online_value(store, feature, key, value):
    rows = [{key: value}]
    resp = store.get_online_features([feature], rows).to_dict()
    name = feature.split(":")[1]

    async def early():
        return (await store.start_online_lookup([feature], rows)).to_dict()[name]

    assert asyncio.run(early()) == resp[name]
    return resp[name][0]


def training_value(store, feature, key, value):
    entity_df = pd.DataFrame({key: [value], "event_timestamp": [NOW]})
    return store.get_historical_features(entity_df, [feature]).to_pandas()[feature.split(":")[1]][0]


@pytest.mark.parametrize("feature, key, value, expected", ACCEPTED)
def test_accepted_keys_find_the_same_row_online_and_in_training_sets(store, feature, key, value, expected):
    assert online_value(store, feature, key, value) == expected
    assert training_value(store, feature, key, value) == expected


@pytest.mark.parametrize("feature, key, value, words", REFUSED)
def test_refused_keys_are_refused_online_and_in_training_sets_naming_key_and_row(
    store, feature, key, value, words
):
    view = feature.split(":")[0]
    rows = [{key: 1 if key == "driver_id" else "5"}, {key: value}]
    with pytest.raises(RetrievalError) as online:
        store.get_online_features([feature], rows)
    with pytest.raises(RetrievalError) as early:
        asyncio.run(_start(store, feature, rows))
    if value == 2**70:  # beyond what a pandas column holds: the same number as text
        value = str(value)
    good = ("1" if key == "driver_id" else "5") if isinstance(value, str) else value  # one typed column
    entity_df = pd.DataFrame({key: [good, value], "event_timestamp": [NOW] * 2})
    with pytest.raises(RetrievalError) as training:
        store.get_historical_features(entity_df, [feature]).to_arrow()
    for error, where in ((online, "entity row 1"), (early, "entity row 1"), (training, "entity_df row")):
        message = str(error.value)
        assert where in message and f"join key '{key}'" in message and view in message, message
        for word in words:
            assert word in message, message


async def _start(store, feature, rows):
    return await store.start_online_lookup([feature], rows)


def fs(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "featurestore.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_the_cli_reads_entity_values_by_the_key_type(store):
    repo = str(store.repo_path)
    got = fs("--repo", repo, "online-features", "-f", "stock_quotes:price", "-e", "symbol=05", "--json")
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["values"]["price"] == [2.5]  # "05" stays a string: not the key "5"
    got = fs("--repo", repo, "online-features", "-f", "driver_stats:trips", "-e", "driver_id=2", "--json")
    assert json.loads(got.stdout)["values"]["trips"] == [20]
    bad = fs("--repo", repo, "online-features", "-f", "driver_stats:trips", "-e", "driver_id=abc")
    assert bad.returncode != 0
    assert "entity row 0: join key 'driver_id'" in bad.stderr + bad.stdout
    assert "'abc' is not an integer" in bad.stderr + bad.stdout


def test_the_key_rule_a_push_fixes_applies_at_once_in_a_store_that_looked_up_before(tmp_path):
    """A push source without a batch source and an undeclared key: its type is unknown until the first
    push to offline storage; a store that looked up before that follows the rule at once after it,
    as a new FeatureStore does."""
    root = make_repo(
        tmp_path / "repo",
        {
            "defs.py": """
from featurestore import Entity, FeatureView, Field, Int64, PushSource
acct = Entity(name="acct", join_keys=["acct_id"])
accts = FeatureView(name="accts", entities=[acct], ttl=None, schema=[Field("bal", Int64)],
                    source=PushSource(name="acct_push"))
"""
        },
    )
    store = FeatureStore(root)
    store.apply()
    before = store.get_online_features(["accts:bal"], [{"acct_id": 7}]).to_dict(include_status=True)
    assert before["bal__status"] == ["NOT_FOUND"]  # type unknown: taken as given
    when = pd.Timestamp(NOW)
    store.push(
        "acct_push", pd.DataFrame({"acct_id": ["7"], "bal": [1], "event_timestamp": [when]}), to="both"
    )
    for s in (store, FeatureStore(root)):
        with pytest.raises(RetrievalError, match=r"join key 'acct_id' .*7 \(int\) is not a string"):
            s.get_online_features(["accts:bal"], [{"acct_id": 7}])
        assert s.get_online_features(["accts:bal"], [{"acct_id": "7"}]).to_dict()["bal"] == [1]


def test_a_key_rule_fixed_by_another_process_applies_after_the_recheck_interval(tmp_path, monkeypatch):
    from featurestore.online import lookup

    root = make_repo(
        tmp_path / "repo",
        {
            "defs.py": """
from featurestore import Entity, FeatureView, Field, Int64, PushSource
acct = Entity(name="acct", join_keys=["acct_id"])
accts = FeatureView(name="accts", entities=[acct], ttl=None, schema=[Field("bal", Int64)],
                    source=PushSource(name="acct_push"))
"""
        },
    )
    serving = FeatureStore(root)
    serving.apply()
    assert serving.get_online_features(["accts:bal"], [{"acct_id": 7}]).to_dict()["bal"] == [None]
    other = FeatureStore(root)  # another process, as far as the caches can tell
    when = pd.Timestamp(NOW)
    other.push(
        "acct_push", pd.DataFrame({"acct_id": ["7"], "bal": [1], "event_timestamp": [when]}), to="both"
    )
    monkeypatch.setattr(lookup, "_RECHECK_UNKNOWN_KEYS", 0.0)  # the interval has passed
    with pytest.raises(RetrievalError, match=r"join key 'acct_id' .*7 \(int\) is not a string"):
        serving.get_online_features(["accts:bal"], [{"acct_id": 7}])
