"""The Redis Cluster online store beyond the conformance suite (which runs on it too): the key
layout against Redis's own slot function, one request per node sent in parallel, lookups that stay
right while a slot is resharded under them, and `fs online migrate` from a standalone Redis."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from binascii import crc_hqx
from datetime import timedelta

import pytest
import redis
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from featurestore import FeatureStore, OnlineStoreUnavailable
from featurestore.cli import cli
from featurestore.errors import ConfigError
from featurestore.online import cluster_client, cluster_connection
from featurestore.online.cluster_keys import cluster_key, entity_tag, key_slot
from featurestore.online.encoding import view_prefix
from featurestore.online.redis_cluster import RedisClusterOnlineStore
from tests.online.conftest import NOW, open_store, rows
from tests.redis_cluster import start_cluster
from tests.redis_server import missing

pytestmark = pytest.mark.redis

NS = b"proj:"


@pytest.fixture
def store(redis_cluster, tmp_path):
    cluster = redis_cluster
    s = open_store(tmp_path / "repo", "redis_cluster", cluster.url, f"fsc-{uuid.uuid4().hex[:8]}")
    yield s
    s.close()


def write_drivers(store: FeatureStore, ids: list[int]) -> None:
    v = store.catalog.view("driver_stats")
    store.online_store.write(
        v, rows(v, {"driver_id": ids, "trips": ids, "conv_rate": [i / 7 for i in ids]}, NOW)
    )


# -- key layout ------------------------------------------------------------------------------


entities = st.binary(max_size=12) | st.sampled_from([b"", b"}", b"{", b"#1", b"a}b", b"{x}", b"}{", b"1001"])


@settings(max_examples=150, deadline=None)
@given(entity=entities)
def test_a_key_hashes_to_the_slot_redis_computes_and_views_of_an_entity_share_it(redis_cluster, entity):
    cluster = redis_cluster
    node = cluster.client(cluster.ports[0])
    slots = set()
    for view in ("driver_stats", "customer_profile"):
        key, slot = cluster_key(len(NS), view_prefix(NS, view) + entity)
        assert node.execute_command("CLUSTER", "KEYSLOT", key) == slot == key_slot(key)
        slots.add(slot)
    assert slots == {crc_hqx(entity_tag(entity), 0) & 16383}  # one slot, a function of the entity only


def test_cluster_keys_never_collide_and_plain_ones_stay_readable():
    texts = [b"", b"}", b"#", b"#1", b"1", b"a}", b"{", b"{}", b"x{y}z", b"#" + b"0" * 16]
    keys = {cluster_key(len(NS), view_prefix(NS, "v") + t)[0] for t in texts}
    assert len(keys) == len(texts)
    assert cluster_key(len(NS), b"proj:driver_stats:1001")[0] == b"proj:driver_stats:{1001}"
    assert cluster_key(len(NS), b"proj:__layouts")[0] == b"proj:__layouts"  # meta keys keep their names


plain = st.integers(0, 10**9).map(lambda i: b"%d" % i) | st.text("ab:{#\x00", min_size=1).map(str.encode)


@settings(max_examples=200, deadline=None)
@given(
    parts=st.lists(st.tuples(st.sampled_from(["a", "b", "bc"]), plain | entities), max_size=20),
    odd=st.sampled_from([[], [b"proj:no-colon"], [b"proj:"]]),
)
def test_the_read_paths_key_builder_agrees_with_cluster_key(parts, odd):
    store = RedisClusterOnlineStore("redis://127.0.0.1:1", NS)  # no I/O: only keys are built
    keys = [view_prefix(NS, v) + e for v, e in parts] + odd
    assert list(zip(*store._targets(keys))) == [cluster_key(len(NS), k) for k in keys]


def test_clear_errors_for_settings_a_cluster_cannot_take():
    with pytest.raises(ConfigError, match="key_prefix 'a{b'"):
        RedisClusterOnlineStore("redis://127.0.0.1:1", b"a{b:")
    with pytest.raises(ConfigError, match="rediss://.*not supported"):
        RedisClusterOnlineStore("rediss://127.0.0.1:1", NS)
    with pytest.raises(ConfigError, match="only database 0"):
        RedisClusterOnlineStore("redis://127.0.0.1:1/3", NS)


def test_an_unreachable_cluster_is_reported_quickly_and_the_store_opens_anyway(tmp_path):
    from tests.redis_server import free_port

    s = RedisClusterOnlineStore(f"redis://127.0.0.1:{free_port()}", NS, timeout=0.5)  # opens: no I/O yet
    started = time.monotonic()
    with pytest.raises(OnlineStoreUnavailable, match="Redis Cluster online store at redis://127.0.0.1"):
        s.read([b"proj:v:1"])
    assert time.monotonic() - started < 2


def test_the_url_may_list_several_nodes_tried_in_order_so_a_process_starts_with_one_down(
    redis_cluster, tmp_path
):
    from featurestore.online.cluster_client import seed_nodes
    from tests.redis_server import free_port

    assert seed_nodes("redis://u:pw@a:1,b:2,redis://c:3/0")[0] == [("a", 1), ("b", 2), ("c", 3)]
    with pytest.raises(ConfigError, match="empty node"):
        RedisClusterOnlineStore("redis://a:1,,b:2", NS)
    down, up = free_port(), redis_cluster.ports[1]
    url = f"redis://127.0.0.1:{down},127.0.0.1:{up}/0"  # the first node named is down
    s = open_store(tmp_path / "repo", "redis_cluster", url, f"fss-{uuid.uuid4().hex[:8]}")
    try:
        write_drivers(s, [1, 2, 3])
        assert s.get_online_features(["driver_stats:trips"], {"driver_id": [1, 2, 3]}).values["trips"] == [
            1,
            2,
            3,
        ]
        assert s.online_store.client.seeds == [("127.0.0.1", down), ("127.0.0.1", up)]
    finally:
        s.online_store.delete_view("driver_stats")
        s.close()


# -- one request per node, in parallel ---------------------------------------------------------


def test_a_100_entity_lookup_is_one_request_per_node_all_sent_before_any_reply_is_read(
    store, redis_cluster, monkeypatch
):
    cluster = redis_cluster
    ids = list(range(100))
    write_drivers(store, ids)
    refs = ["driver_stats:trips", "all_types:i64"]  # two views of one entity: two keys, one slot
    store.get_online_features(refs, {"driver_id": ids})  # warm: slot map, connections
    events: list[tuple[str, object]] = []
    real_take, real_read = cluster_client.ClusterClient._take, cluster_connection.SyncConnection.read

    def take(self, address):
        events.append(("send", address))  # the payload is written right after the connection is taken
        return real_take(self, address)

    def read(self, n):
        events.append(("read", self.sock.getpeername()))
        return real_read(self, n)

    monkeypatch.setattr(cluster_client.ClusterClient, "_take", take)
    monkeypatch.setattr(cluster_connection.SyncConnection, "read", read)
    before = {
        p: cluster.client(p).info("commandstats").get("cmdstat_get", {}).get("calls", 0)
        for p in cluster.ports
    }
    got = store.get_online_features(refs, {"driver_id": ids})
    after = {
        p: cluster.client(p).info("commandstats").get("cmdstat_get", {}).get("calls", 0)
        for p in cluster.ports
    }
    assert got.values["trips"] == ids
    sends = [a for kind, a in events if kind == "send"]
    assert len(sends) == len(set(sends)) == 3  # 100 entities spread over the three masters: one request each
    assert [kind for kind, _ in events] == ["send"] * 3 + ["read"] * 3  # all in flight before any wait
    # the GETs each node ran are exactly the keys of its slots (the keys of one entity on one node)
    by_port: dict[int, int] = {}
    for i in ids:
        slot = cluster_key(
            len(store.online_store.key_prefix), view_prefix(store.online_store.key_prefix, "x") + b"%d" % i
        )[1]
        by_port[cluster.owner(slot)] = by_port.get(cluster.owner(slot), 0) + 2
    assert {p: after[p] - before[p] for p in cluster.ports} == by_port


def test_an_async_lookup_sends_to_every_node_before_it_is_awaited(store, monkeypatch):
    ids = list(range(100))
    write_drivers(store, ids)
    sent: list[int] = []
    real_send = cluster_connection.AsyncConnection.send

    def send(self, payload, n):
        sent.append(n)
        return real_send(self, payload, n)

    async def main():
        await store.get_online_features_async(["driver_stats:trips"], {"driver_id": ids})  # warm
        sent.clear()
        pending = store.start_online_lookup(["driver_stats:trips"], {"driver_id": ids})
        begun = list(sent)
        resp = await pending
        await store.online_store.aclose()
        return begun, resp

    monkeypatch.setattr(cluster_connection.AsyncConnection, "send", send)
    begun, resp = asyncio.run(main())
    assert len(begun) == 3 and sum(begun) == 100 and sent == begun  # one request per node, at once
    assert resp.values["trips"] == ids


def test_a_master_that_goes_down_is_reported_quickly_and_the_store_recovers_when_it_is_back(tmp_path):
    own = start_cluster()  # a cluster of this test's own: one of its masters is killed
    if own is None:
        missing("no redis-server / redis-cli to start a local Redis Cluster")
    store = open_store(tmp_path / "repo", "redis_cluster", own.url, "down", timeout=0.5)
    try:
        ids = list(range(100))
        write_drivers(store, ids)
        refs = ["driver_stats:trips"]
        before = store.online_store.identity(create=True)
        main = own.owner(key_slot(store.online_store.key_prefix + b"__identity"))
        victim = next(p for p in own.ports if p != main)  # not the master of the identity's main key
        own.kill(victim)
        for how in ("sync", "async"):
            started = time.monotonic()
            with pytest.raises(OnlineStoreUnavailable, match=f"node 127.0.0.1:{victim}"):
                if how == "sync":
                    store.get_online_features(refs, {"driver_id": ids})
                else:
                    asyncio.run(store.get_online_features_async(refs, {"driver_id": ids}))
            assert time.monotonic() - started < 2, how
        own.restart(victim)  # back, empty: its rows are gone, the others are still there
        got = store.get_online_features(refs, {"driver_id": ids}).values["trips"]
        lost = {i for i in ids if got[i] is None}
        assert lost and all(got[i] == i for i in ids if i not in lost)
        # the identity lives in every slot: the loss of one master's data makes the store a new one
        assert store.online_store.identity() is None
        made: list[str | None] = []
        creators = [
            threading.Thread(target=lambda: made.append(store.online_store.identity(create=True)))
            for _ in range(3)
        ]
        for t in creators:
            t.start()
        for t in creators:
            t.join()
        assert len(set(made)) == 1 and made[0] not in (None, before)  # concurrent creators agree
        assert store.online_store.identity() == made[0]
        write_drivers(store, ids)
        assert store.get_online_features(refs, {"driver_id": ids}).values["trips"] == ids

        async def again():
            resp = await store.get_online_features_async(refs, {"driver_id": ids})
            await store.online_store.aclose()
            return resp.values["trips"]

        assert asyncio.run(again()) == ids
    finally:
        store.close()
        own.stop()


def test_a_hung_master_fails_a_lookup_within_one_timeout_and_is_tried_last_for_the_slot_map(tmp_path):
    import os
    import signal

    own = start_cluster()  # a cluster of this test's own: one of its masters is paused (SIGSTOP)
    if own is None:
        missing("no redis-server / redis-cli to start a local Redis Cluster")
    timeout = 0.5
    store = open_store(tmp_path / "repo", "redis_cluster", own.url, "hung", timeout=timeout)
    client = store.online_store.client
    assert store.online_store.async_read_bound == 2 * timeout
    ids = list(range(100))
    write_drivers(store, ids)
    refs = ["driver_stats:trips"]
    victim = client._candidates()[0]  # the node a refresh of the slot map would ask first
    proc = own.processes[own.ports.index(victim[1])]
    os.kill(proc.pid, signal.SIGSTOP)  # it accepts connections and never answers
    try:
        for how in ("sync", "async"):
            started = time.monotonic()
            with pytest.raises(OnlineStoreUnavailable, match=f"node 127.0.0.1:{victim[1]}.*TimeoutError"):
                if how == "sync":
                    store.get_online_features(refs, {"driver_id": ids})
                else:
                    asyncio.run(store.get_online_features_async(refs, {"driver_id": ids}))
            assert time.monotonic() - started < 1.5 * timeout, how  # not sent again to wait once more
        started = time.monotonic()
        client.refresh()  # another node answers first: the hung one is tried last
        assert time.monotonic() - started < timeout / 2
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        store.close()
        own.stop()


# -- resharding under load ----------------------------------------------------------------------


def entities_in_one_slot(n: int) -> list[int]:
    """n driver ids whose keys share one hash slot (so a slot move takes several MIGRATE batches)."""
    target = crc_hqx(b"0", 0) & 16383
    found, i = [], 0
    while len(found) < n:
        if crc_hqx(b"%d" % i, 0) & 16383 == target:
            found.append(i)
        i += 1
    return found


def test_lookups_stay_right_while_a_slot_is_resharded_under_them(store, redis_cluster):
    cluster = redis_cluster
    crowded = entities_in_one_slot(30)
    others = list(range(1, 71))
    ids = crowded + others
    write_drivers(store, ids)
    refs = ["driver_stats:trips", "driver_stats:conv_rate"]
    expected = {"trips": ids, "conv_rate": [i / 7 for i in ids]}
    slot = crc_hqx(b"0", 0) & 16383
    seen = {"asked": 0, "moved": 0}
    client = store.online_store.client
    real_settle = client._settle

    def settle(commands, results, groups, replies, asked, rounds):
        again, moved = real_settle(commands, results, groups, replies, asked, rounds)
        seen["asked"] += bool(asked)
        seen["moved"] += moved
        return again, moved

    client._settle = settle
    stop = threading.Event()
    failures: list[str] = []
    counts = {"sync": 0, "async": 0}

    def check(resp, how):
        d = resp.to_dict()
        if d["trips"] != expected["trips"] or d["conv_rate"] != expected["conv_rate"]:
            failures.append(f"{how}: wrong answer {d['trips']}")
        counts[how] += 1

    def sync_reader():
        while not stop.is_set():
            try:
                check(store.get_online_features(refs, {"driver_id": ids}), "sync")
            except Exception as e:  # noqa: BLE001 - every error is a failure of the test
                failures.append(f"sync: {type(e).__name__}: {e}")

    def async_reader():
        async def loop():
            while not stop.is_set():
                try:
                    check(await store.get_online_features_async(refs, {"driver_id": ids}), "async")
                except Exception as e:  # noqa: BLE001
                    failures.append(f"async: {type(e).__name__}: {e}")
            await store.online_store.aclose()

        asyncio.run(loop())

    identity = store.online_store.identity(create=True)
    readers = [threading.Thread(target=sync_reader), threading.Thread(target=async_reader)]
    for t in readers:
        t.start()
    try:
        home = cluster.owner(slot)
        for to in [p for p in cluster.ports if p != home] + [home]:  # around every master and back
            assert cluster.move_slot(slot, to, pause=0.05) >= 30  # (other tests keep keys there too)
    finally:
        stop.set()
        for t in readers:
            t.join()
    assert failures == []
    assert counts["sync"] > 10 and counts["async"] > 10
    assert seen["moved"] > 0 and seen["asked"] > 0  # both redirects were met and followed
    assert store.online_store.identity() == identity  # its slot markers moved with their slots
    # writes and updates follow the slot too (the map was refreshed by the lookups, then moved again)
    cluster.move_slot(slot, [p for p in cluster.ports if p != cluster.owner(slot)][0])
    v = store.catalog.view("driver_stats")
    store.online_store.write(
        v, rows(v, {"driver_id": crowded, "trips": [7] * 30}, NOW + timedelta(seconds=1))
    )
    assert (
        store.get_online_features(["driver_stats:trips"], {"driver_id": crowded}).values["trips"] == [7] * 30
    )


def test_a_write_of_several_batches_keeps_the_newest_row_whatever_batch_it_is_in(store):
    v = store.catalog.view("driver_stats")
    n = 12_500  # each entity twice, 12,500 rows apart: in different batches of 10,000 rows
    ids = list(range(n)) * 2
    older, newer = NOW - timedelta(seconds=1), NOW
    for first, second in ((older, newer), (newer, older)):
        trips = [1 if first == newer else 0] * n + [1 if second == newer else 0] * n
        table = rows(
            v, {"driver_id": ids, "trips": trips, "conv_rate": [0.0] * (2 * n)}, [first] * n + [second] * n
        )
        assert store.online_store.write(v, table) == 2 * n
        got = store.get_online_features(["driver_stats:trips"], {"driver_id": list(range(n))})
        assert got.values["trips"] == [1] * n and set(got.event_timestamps["trips"]) == {newer}
    assert store.online_store.count_rows("driver_stats") == n


def test_writes_survive_a_lost_script_cache(store, redis_cluster):
    cluster = redis_cluster
    write_drivers(store, [1])
    for p in cluster.ports:
        cluster.client(p).script_flush()
    write_drivers(store, [1, 2, 3])
    keys = [view_prefix(store.online_store.key_prefix, "tiles") + b"k"]
    assert store.online_store.update(keys, lambda ks, old: [b"x" * 12]) == 1
    assert store.get_online_features(["driver_stats:trips"], {"driver_id": [1, 2, 3]}).values["trips"] == [
        1,
        2,
        3,
    ]


# -- fs online migrate ----------------------------------------------------------------------------


def test_fs_online_migrate_copies_a_standalone_store_into_the_cluster(redis_cluster, redis_url, tmp_path):
    cluster = redis_cluster
    prefix = f"fsm-{uuid.uuid4().hex[:8]}"
    old = open_store(tmp_path / "old", "redis", redis_url, prefix)
    new = open_store(tmp_path / "new", "redis_cluster", cluster.url, prefix)
    try:
        d, c, r = (old.catalog.view(n) for n in ("driver_stats", "customer_profile", "route_stats"))
        ids = list(range(2_345))
        old.online_store.write(
            d, rows(d, {"driver_id": ids, "trips": ids, "conv_rate": [0.5] * len(ids)}, NOW)
        )
        old.online_store.write(
            c, rows(c, {"customer_id": ["a}", "#b", ""], "age": [1, 2, 3], "city": ["x"] * 3}, NOW)
        )
        old.online_store.write(r, rows(r, {"origin": [1], "destination": ["{z}"], "eta": [2.5]}, NOW))
        identity = old.online_store.identity(create=True)
        redis.Redis.from_url(redis_url).set(f"{prefix}:not-a-row", b"1")  # another key of the namespace
        # the cluster already holds a newer row for driver 5: migrate must keep it
        new.online_store.write(
            d, rows(d, {"driver_id": [5], "trips": [500], "conv_rate": [0.9]}, NOW + timedelta(seconds=1))
        )
        result = CliRunner().invoke(
            cli, ["--repo", str(new.repo_path), "online", "migrate", "--from", redis_url]
        )
        assert result.exit_code == 0, result.output
        assert "Copied 2,349 rows" in result.output and "kept its newer row for 1;" in result.output
        assert "1 other keys skipped" in result.output
        refs = ["driver_stats:trips", "customer_profile:age", "route_stats:eta"]
        entity = {"driver_id": ids, "customer_id": ["a}", "#b", ""] + ["?"] * (len(ids) - 3),
                  "origin": [1] * len(ids), "destination": ["{z}"] * len(ids)}  # fmt: skip
        want = old.get_online_features(refs, entity).to_dict(include_status=True)
        want["trips"][5] = 500
        assert new.get_online_features(refs, entity).to_dict(include_status=True) == want
        assert new.online_store.identity() == identity
        assert new.online_store.newest_events()["driver_stats"] == NOW + timedelta(seconds=1)
        assert new.online_store.newest_events()["customer_profile"] == NOW
        assert new.online_store.count_rows("driver_stats") == len(ids)
        again = CliRunner().invoke(
            cli, ["--repo", str(new.repo_path), "online", "migrate", "--from", redis_url]
        )
        assert again.exit_code == 0 and "Copied 2,349 rows" in again.output  # again: the same outcome
        assert "kept its newer row for 1;" in again.output
        into_standalone = CliRunner().invoke(
            cli, ["--repo", str(old.repo_path), "online", "migrate", "--from", redis_url]
        )
        assert into_standalone.exit_code != 0 and "cluster = true" in into_standalone.output
        from_cluster = CliRunner().invoke(
            cli, ["--repo", str(new.repo_path), "online", "migrate", "--from", cluster.url]
        )
        assert from_cluster.exit_code != 0 and "is a Redis Cluster node" in from_cluster.output
    finally:
        for s in (old, new):
            s.online_store.delete_view("driver_stats")
            s.close()


def test_migrate_keeps_tiles_the_cluster_already_holds_and_says_to_re_materialize(
    redis_cluster, redis_url, key_prefix, tmp_path, monkeypatch
):
    # An aggregating view's keys hold tiles (merged state, not a latest row): newest-wins between
    # the standalone copy and a push the cluster already took would lose one of them.
    import random

    import tests.aggregations.test_online as ag
    from featurestore.catalog import Catalog
    from tests.repo_builder import make_repo

    online = f'[online]\ntype = "redis"\nurl = "{redis_url}"\nkey_prefix = "{key_prefix}"\n'
    make_repo(tmp_path, {}, project="agg_online", config=online)
    old = FeatureStore(tmp_path)
    df = ag.random_events(random.Random(1), 300, ag.T0, timedelta(hours=4))
    ag.write_source(old, df)
    old.apply(
        Catalog(
            entities={"card": ag.card},
            sources={"events": ag.source, "events_push": ag.push_source},
            views={"card_activity": ag.view},
        )
    )
    end = ag.T0 + timedelta(hours=4)
    clock = ag.Clock(monkeypatch, end + timedelta(seconds=30))
    old.materialize(ag.T0 - timedelta(days=1), end)
    monkeypatch.setenv("FS_ONLINE_CLUSTER", "1")
    monkeypatch.setenv("FS_ONLINE_URL", redis_cluster.url)
    new = FeatureStore(tmp_path)
    try:
        pushed = ag.random_events(random.Random(7), 1, end, timedelta(seconds=10))
        pushed["card"] = 1
        new.push("events_push", pushed, to="both")  # writers moved to the cluster before migrate ran
        result = CliRunner().invoke(cli, ["--repo", str(tmp_path), "online", "migrate", "--from", redis_url])
        assert result.exit_code == 0, result.output
        assert "already held tiles of aggregating views" in result.output
        assert "card_activity (1 keys)" in result.output and "Re-materialize" in result.output
        events = ag.to_events(df) + ag.to_events(pushed)
        others = [c for c in ag.CARDS if c != 1]
        ag.check_online(new, events, clock.us, cards=others)  # copied as they were
        only_push = new.get_online_features(["card_activity:amount_count"], {"card": [1]})
        assert only_push.values["amount_count"] == [1]  # kept, not overwritten nor merged
        from featurestore.online.migrate import migrate_to_cluster

        # again, the views unnamed: tiles are told from rows by their layouts; the ones copied before
        # are the very blobs, not reported
        assert migrate_to_cluster(redis_url, new.online_store).tiles_held == {"card_activity": 1}
        new.materialize(ag.T0 - timedelta(days=1), end)  # as the message says
        ag.check_online(new, events, clock.us)
    finally:
        new.online_store.delete_view("card_activity")
        new.close()
        old.close()


@pytest.mark.parametrize("kind", ["redis_cluster", "redis"])
def test_idle_async_connections_of_finished_event_loops_are_closed(kind, redis_cluster, redis_url, tmp_path):
    # each asyncio.run is a new event loop, closed with its idle connections still pooled
    import gc
    import os

    url = redis_cluster.url if kind == "redis_cluster" else redis_url
    store = open_store(tmp_path / "repo", kind, url, f"fsl-{uuid.uuid4().hex[:8]}")
    write_drivers(store, list(range(100)))

    def fds() -> int:
        gc.collect()
        return len(os.listdir("/proc/self/fd"))

    def lookup() -> None:
        got = asyncio.run(
            store.get_online_features_async(["driver_stats:trips"], {"driver_id": list(range(100))})
        )
        assert got.values["trips"] == list(range(100))

    lookup()
    before = fds()
    for _ in range(20):
        lookup()
    assert fds() - before <= 3  # the last loop's connections at most (one per master), not 20 loops'
    store.close()
    assert fds() < before
    store.online_store.delete_view("driver_stats")


def test_a_cluster_that_is_down_is_reported_as_such_after_a_few_rounds(store, redis_cluster):
    cluster = redis_cluster
    write_drivers(store, [1, 2, 3])
    refs = ["driver_stats:trips"]
    assert store.get_online_features(refs, {"driver_id": [1, 2, 3]}).values["trips"] == [1, 2, 3]
    slot = crc_hqx(entity_tag(b"1"), 0) & 16383  # driver 1's slot (it depends on the entity only)
    owner = cluster.client(cluster.owner(slot))
    owner.execute_command("CLUSTER", "DELSLOTS", slot)  # its master now answers CLUSTERDOWN
    try:
        started = time.monotonic()
        with pytest.raises(OnlineStoreUnavailable, match=r"the cluster is down \(CLUSTERDOWN"):
            store.get_online_features(refs, {"driver_id": [1, 2, 3]})
        assert time.monotonic() - started < 0.2  # a few short rounds, not sixteen
    finally:
        owner.execute_command("CLUSTER", "ADDSLOTS", slot)
        deadline = time.monotonic() + 10
        while b"cluster_state:ok" not in owner.execute_command("CLUSTER", "INFO"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert store.get_online_features(refs, {"driver_id": [1, 2, 3]}).values["trips"] == [1, 2, 3]


def test_a_moved_slot_stays_pointed_at_its_new_owner_over_a_map_refreshed_from_a_stale_node(
    store, redis_cluster
):
    cluster = redis_cluster
    ids = entities_in_one_slot(5)
    write_drivers(store, ids)
    refs = ["driver_stats:trips"]
    client = store.online_store.client
    assert store.get_online_features(refs, {"driver_id": ids}).values["trips"] == ids  # map read
    stale = client._read_map, list(client._slots)
    slot = crc_hqx(b"0", 0) & 16383
    cluster.move_slot(slot, next(p for p in cluster.ports if p != cluster.owner(slot)))
    # every refresh answered by a node that has not learned of the move yet
    client.refresh = lambda deadline=None: (
        setattr(client, "_read_map", (list(stale[0][0]), list(stale[0][1]))),
        setattr(client, "_slots", list(stale[1])),
    )
    moved = []
    real_settle = client._settle

    def settle(*args):
        again, was_moved = real_settle(*args)
        moved.append(was_moved)
        return again, was_moved

    client._settle = settle
    assert store.get_online_features(refs, {"driver_id": ids}).values["trips"] == ids
    assert moved == [True, False] or moved == [True]  # one MOVED round, then the new owner answers
