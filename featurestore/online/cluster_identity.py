"""The identity of an online store on a Redis Cluster: one value, held in every hash slot.

The registry records what is online per store identity (`OnlineStore.identity`): a store that
lost its data must stop answering with the identity it had, so that the next materialization
writes everything again. One Redis loses its data whole, its identity key with it. A cluster loses
data a master at a time, and one key would survive the loss of the other masters' rows. So the
identity is held by a main key (`<ns>__identity`) and by one marker per hash slot
(`<ns>__identity:{<tag>}`, the tag chosen to hash to that slot, so a marker moves with its slot
when the cluster is resharded): the store holds an identity only while the main key and all
16,384 markers hold it. Reading it is one round trip per master.

Writing it (`establish`): the main key first says `pending:<id>`, then every marker is set to
`<id>`, then the main key becomes `<id>` by a compare-and-set. A writer that finds `pending:<id>`
(another one at work, or one that died half-way) completes that id; one that finds a complete main
key whose markers are not all there (a master lost its data) starts a new id. Concurrent writers
thus end with one id.
"""

from __future__ import annotations

import functools
import uuid
from binascii import crc_hqx
from typing import TYPE_CHECKING

from ..errors import FeatureStoreError
from .cluster_connection import pack
from .cluster_keys import SLOTS, key_slot

if TYPE_CHECKING:
    from .redis_cluster import RedisClusterOnlineStore

PENDING = b"pending:"
_ATTEMPTS = 20


@functools.cache
def marker_tags() -> tuple[bytes, ...]:
    """For each hash slot, a short tag (decimal digits) that hashes to it."""
    tags: list[bytes | None] = [None] * SLOTS
    missing, i = SLOTS, 0
    while missing:
        tag = b"%d" % i
        slot = crc_hqx(tag, 0) & (SLOTS - 1)
        if tags[slot] is None:
            tags[slot] = tag
            missing -= 1
        i += 1
    return tuple(t for t in tags if t is not None)


def _markers(store: RedisClusterOnlineStore) -> list[bytes]:
    head = store.key_prefix + b"__identity:{"
    return [head + tag + b"}" for tag in marker_tags()]


def _state(store: RedisClusterOnlineStore) -> tuple[bytes | None, list[bytes | None]]:
    """The main key's value and every slot's marker (one GET per key, one round trip per master)."""
    main = store.key_prefix + b"__identity"
    values = store.read_keys([main, *_markers(store)], [key_slot(main), *range(SLOTS)])
    return values[0], values[1:]


def _complete(main: bytes | None, markers: list[bytes | None]) -> bool:
    return main is not None and not main.startswith(PENDING) and markers.count(main) == SLOTS


def read_identity(store: RedisClusterOnlineStore) -> str | None:
    """The identity every slot holds, or None (a new store, or one that lost some of its data)."""
    main, markers = _state(store)
    return main.decode() if main is not None and _complete(main, markers) else None


def establish(store: RedisClusterOnlineStore, candidate: str) -> str:
    """The identity the store holds, making it `candidate` when it holds none (see the module doc)."""
    main_key = store.key_prefix + b"__identity"
    main_slot = key_slot(main_key)
    for _ in range(_ATTEMPTS):
        main, markers = _state(store)
        if main is not None and _complete(main, markers):
            return main.decode()
        if main is None:
            store.run_commands([(main_slot, pack((b"SET", main_key, PENDING + candidate.encode(), b"NX")))])
            continue
        if not main.startswith(PENDING):  # complete once, some markers gone since: data was lost
            store.compare_and_set(main_key, main, PENDING + uuid.uuid4().hex.encode())
            continue
        value = main[len(PENDING) :]
        keys = _markers(store)
        store.run_commands(
            [(slot, pack((b"SET", keys[slot], value))) for slot, have in enumerate(markers) if have != value]
        )
        store.compare_and_set(main_key, main, value)
    raise FeatureStoreError(
        f"the online store identity of namespace {store.key_prefix.decode()!r} did not settle after "
        f"{_ATTEMPTS} attempts (other processes kept changing it); try again"
    )
