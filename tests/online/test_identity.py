"""The online store's identity marker and row count, on every backend (the OnlineStore contract)."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

from tests.online.conftest import rows

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def unique(name: str) -> str:
    """A key prefix of this test run only (a shared Redis may hold earlier runs' keys)."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


def test_the_identity_is_written_once_per_namespace_and_read_by_any_handle(make_store):
    ida, idb = unique("ida"), unique("idb")
    a = make_store("a", key_prefix=ida)
    assert a.online_store.identity() is None  # nothing written: a new store
    made = a.online_store.identity(create=True)
    assert made and a.online_store.identity(create=True) == made == a.online_store.identity()
    again = make_store("again", key_prefix=ida)  # another handle on the same store and namespace
    assert again.online_store.identity() == made
    other = make_store("b", key_prefix=idb)  # another namespace of the same server or file
    assert other.online_store.identity() is None
    assert other.online_store.identity(create=True) != made


def test_rows_are_counted_per_view_and_namespace(make_store):
    store = make_store("c", key_prefix=unique("cnt"))
    drivers = store.catalog.view("driver_stats")
    assert store.online_store.count_rows("driver_stats") == 0
    store.online_store.write(drivers, rows(drivers, {"driver_id": [1, 2, 3]}, NOW))
    assert store.online_store.count_rows("driver_stats") == 3
    assert make_store("d", key_prefix=unique("cnt2")).online_store.count_rows("driver_stats") == 0
    store.online_store.delete_view("driver_stats")
    assert store.online_store.count_rows("driver_stats") == 0
