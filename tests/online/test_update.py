"""`OnlineStore.update` conformance (SQLite and a real Redis): an atomic read-modify-write of blobs,
as aggregating views' tiles need (push merges events into what is stored)."""

from __future__ import annotations

import struct
import threading

import pytest

from featurestore.online.encoding import HEADER, view_prefix


def blob(n: int) -> bytes:
    return HEADER.pack(n, 7) + struct.pack(">q", n)


def number(b: bytes | None) -> int:
    return 0 if b is None else struct.unpack_from(">q", b, HEADER.size)[0]


def keys_of(store, n: int, view: str = "tiles_test") -> list[bytes]:
    prefix = view_prefix(store.online_store.key_prefix, view)
    return [prefix + str(i).encode() for i in range(n)]


def test_update_gives_the_stored_blobs_in_order_and_writes_and_deletes(store):
    online = store.online_store
    keys = keys_of(store, 3)
    seen = []

    def first(ks, old):
        seen.append(list(old))
        return [blob(1), None, blob(3)]

    assert online.update(keys, first) == 2
    assert seen == [[None, None, None]]
    assert online.read(keys) == [blob(1), None, blob(3)]
    assert (
        online.update(keys, lambda ks, old: [None if b is None else blob(number(b) + 10) for b in old]) == 2
    )
    assert online.read(keys) == [blob(11), None, blob(13)]
    assert online.update(keys, lambda ks, old: [None, None, blob(5)]) == 2  # one deleted, one replaced
    assert online.read(keys) == [None, None, blob(5)]
    assert online.count_rows("tiles_test") == 1
    assert online.update([], lambda ks, old: []) == 0


def test_update_of_many_keys_spans_batches(store):
    keys = keys_of(store, 2_500)
    store.online_store.update(keys, lambda ks, old: [blob(int(k.rsplit(b":", 1)[1])) for k in ks])
    store.online_store.update(keys, lambda ks, old: [blob(number(b) * 2) for b in old])
    assert [number(b) for b in store.online_store.read(keys)] == [2 * i for i in range(2_500)]


def test_concurrent_updates_lose_nothing(store):
    keys = keys_of(store, 5)
    rounds, threads = 40, 4

    def work():
        for _ in range(rounds):
            store.online_store.update(keys, lambda ks, old: [blob(number(b) + 1) for b in old])

    running = [threading.Thread(target=work) for _ in range(threads)]
    for t in running:
        t.start()
    for t in running:
        t.join()
    assert [number(b) for b in store.online_store.read(keys)] == [rounds * threads] * 5


def test_a_write_between_read_and_write_is_not_overwritten(store, backend):
    # Another writer lands while fn runs: Redis redoes fn on fresh values; SQLite made it wait.
    keys = keys_of(store, 1)
    store.online_store.update(keys, lambda ks, old: [blob(1)])
    calls = []
    other: list[threading.Thread] = []

    def fn(ks, old):
        calls.append(number(old[0]))
        if len(calls) == 1:
            t = threading.Thread(
                target=lambda: store.online_store.update(keys, lambda ks, o: [blob(number(o[0]) + 100)])
            )
            t.start()
            other.append(t)
            if backend == "redis":
                t.join()
        return [blob(number(old[0]) + 1)]

    store.online_store.update(keys, fn)
    for t in other:
        t.join()
    assert number(store.online_store.read(keys)[0]) == 102
    if backend == "redis":
        assert calls == [1, 101]


def test_a_failing_fn_writes_nothing_and_leaves_the_store_usable(store):
    keys = keys_of(store, 2)
    store.online_store.update(keys, lambda ks, old: [blob(1), blob(2)])

    def broken(ks, old):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        store.online_store.update(keys, broken)
    assert store.online_store.read(keys) == [blob(1), blob(2)]
    store.online_store.update(keys, lambda ks, old: [blob(3), blob(4)])
    assert store.online_store.read(keys) == [blob(3), blob(4)]


def test_a_large_update_finishes_while_another_writer_keeps_changing_a_few_keys(store):
    """An app pushing to a few entities all the time must not starve a materialization's batch."""
    keys = keys_of(store, 1_000)
    store.online_store.update(keys, lambda ks, old: [blob(0) for _ in ks])
    stop = threading.Event()
    busy = keys[::250]  # one key in every stretch of 250: each 1,000-key batch sees a change

    def pusher():
        while not stop.is_set():
            store.online_store.update(busy, lambda ks, old: [blob(number(b) + 1) for b in old])

    thread = threading.Thread(target=pusher)
    thread.start()
    try:
        for _ in range(3):
            store.online_store.update(keys, lambda ks, old: [blob(number(b) + 1_000_000) for b in old])
    finally:
        stop.set()
        thread.join()
    got = [number(b) for b in store.online_store.read(keys)]
    assert all(v >= 3_000_000 for v in got)  # every key took the three large updates exactly once
    assert all(v == 3_000_000 for k, v in zip(keys, got) if k not in busy)
