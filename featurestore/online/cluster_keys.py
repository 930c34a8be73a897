"""Row keys on a Redis Cluster: the standalone row key with its entity part in a hash tag.

A Redis Cluster spreads keys over 16,384 hash slots by CRC16 of the key, or of its *hash tag* (the
bytes between the first `{` and the first `}` after it) when it has one. A lookup reads every
requested view of each entity; tagging the entity makes all views of one entity share a slot, and
so one node, whatever the views:

    standalone row key   b"rides:driver_stats:1001"       (encoding.py: <ns><view>:<entity>)
    cluster key          b"rides:driver_stats:{1001}"     (tag: the entity text, exactly)

The namespace and the view name hold no braces (validated below; view names are identifiers), so
the first `{` is ours. An entity text that is empty, holds a `}` or starts with `#` cannot be its
own tag; it is written `{#<16 hex digits of its blake2b digest>}<entity>`: still a function of the
entity only (views stay together), and no plain key starts its tag with `#`, so the two forms never
collide. Meta keys (`<ns>__layouts`, `<ns>__newest`, `<ns>__identity`) keep their standalone names:
each is used alone, by single-key commands, wherever its slot lives.
"""

from __future__ import annotations

import hashlib
from binascii import crc_hqx

from ..errors import ConfigError

SLOTS = 16384


def check_namespace(ns: bytes) -> None:
    """Reject a key prefix with braces: its `{` would become the hash tag of every key."""
    if b"{" in ns or b"}" in ns:
        raise ConfigError(
            f"[online] key_prefix {ns[:-1].decode()!r} must not contain '{{' or '}}' on a Redis Cluster "
            "(they delimit the hash tag that keeps an entity's views on one node)"
        )


def entity_tag(entity: bytes) -> bytes:
    """The hash tag (without braces) of an entity text."""
    if entity and b"}" not in entity and entity[0] != 35:  # 35: "#"
        return entity
    return b"#" + hashlib.blake2b(entity, digest_size=8).hexdigest().encode()


def cluster_key(ns_len: int, row_key: bytes) -> tuple[bytes, int]:
    """The cluster key of a standalone row key whose namespace is `ns_len` bytes long, and its slot.

    A key that is not `<ns><view>:<entity>` (no `:` after the namespace) is kept as it is."""
    cut = row_key.find(b":", ns_len) + 1
    if cut == 0:
        return row_key, key_slot(row_key)
    entity = row_key[cut:]
    if entity and b"}" not in entity and entity[0] != 35:
        return row_key[:cut] + b"{" + entity + b"}", crc_hqx(entity, 0) & 16383
    tag = entity_tag(entity)
    return row_key[:cut] + b"{" + tag + b"}" + entity, crc_hqx(tag, 0) & 16383


def key_slot(key: bytes) -> int:
    """The hash slot of any key, as Redis Cluster computes it (CRC16-XMODEM of the key or its tag)."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    return crc_hqx(key, 0) & 16383
