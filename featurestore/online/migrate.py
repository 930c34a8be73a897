"""`fs online migrate --from redis://host:6379/0`: copy a standalone Redis online store into the
configured Redis Cluster, in the cluster's key layout (hash-tagged entities, cluster_keys.py).

    result = migrate_to_cluster("redis://old-redis:6379/0", store.online_store, {"card_activity"})
    result.rows, result.views        # rows copied, per view
    result.tiles_held                # aggregating views' keys the cluster held already: re-materialize

What is copied, for this project's namespace only: every row (the latest value per view and entity,
as row blobs, unchanged), the layouts they were written with, the views' newest-event marks, and
the store's identity (so the registry's online watermarks, recorded per identity, stay true of the
cluster). Rows are written newest-wins, as materialization writes them: a row the cluster already
holds with a newer event time is kept, so running it again, or while lookups and writes go to the
cluster, is safe. The identity is taken over only when the cluster holds none yet.

Aggregating views (`aggregating`, by name; a blob of a layout no row was written with is taken for
tiles too) are different: their keys hold tiles, state merged from every event, not a latest row,
so neither copy can win over the other. Their keys are copied only where the cluster holds none
(a script: set if absent); the ones it held already (a push to the cluster before the copy) are
kept and counted in `tiles_held` (unless they hold the very blob, copied by an earlier run):
re-materialize those views. Stop pushes to aggregating views until migrate is done.

Stop writers to the standalone Redis first (rows written there afterwards are not copied). The
other way, re-materializing every view into the cluster, is as correct, and slower.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import cast

import redis

from ..config import redacted_text, redacted_url
from ..errors import ConfigError, OnlineStoreUnavailable
from .base import from_micros
from .encoding import HEADER, glob_escape
from .redis_cluster import RedisClusterOnlineStore

_PAGE = 1_000
_VIEW = re.compile(rb"([A-Za-z_][A-Za-z0-9_]*):")  # a row key after the namespace: <view>:<entity>


@dataclass
class MigrateResult:
    """What `migrate_to_cluster` copied."""

    source: str
    rows: int = 0  # rows read from the source
    written: int = 0  # rows the cluster took (the rest: it held a row as new or newer)
    views: dict[str, int] = field(default_factory=dict)
    skipped: int = 0  # keys of the namespace that are no row (another type, an unknown name)
    identity: str | None = None
    tiles_held: dict[str, int] = field(default_factory=dict)  # per aggregating view: keys not copied


def migrate_to_cluster(
    source_url: str,
    target: RedisClusterOnlineStore,
    aggregating: Collection[str] = (),
    timeout: float = 10.0,
) -> MigrateResult:
    """Copy the standalone Redis at `source_url` (this project's namespace) into `target`; the
    views named in `aggregating` hold tiles (see the module docstring)."""
    source = redis.Redis.from_url(source_url, socket_timeout=timeout, socket_connect_timeout=timeout)
    ns = target.key_prefix
    result = MigrateResult(source=source_url)
    try:
        info = source.info("cluster")
        if info.get("cluster_enabled"):
            raise ConfigError(
                f"--from {redacted_url(source_url)} is a Redis Cluster node: migrate copies a standalone Redis into the "
                "cluster of [online] url"
            )
        layouts = cast("dict[bytes, bytes]", source.hgetall(ns + b"__layouts"))
        target.save_layouts({int(k): v for k, v in layouts.items()})
        rows_of = {int(k) for k in layouts}  # the layouts rows were written with (tiles: none)
        meta = {ns + b"__layouts", ns + b"__newest", ns + b"__identity"}
        page: list[bytes] = []
        for key in source.scan_iter(match=glob_escape(ns) + b"*", count=_PAGE):
            if key in meta:
                continue
            page.append(key)
            if len(page) >= _PAGE:
                _copy_page(source, target, page, result, aggregating, rows_of)
                page = []
        if page:
            _copy_page(source, target, page, result, aggregating, rows_of)
        newest = cast("list[tuple[bytes, float]]", source.zrange(ns + b"__newest", 0, -1, withscores=True))
        target.mark_newest({m.decode(): from_micros(int(score)) for m, score in newest})
        identity = source.get(ns + b"__identity")
        if isinstance(identity, bytes):
            result.identity = target.adopt_identity(identity.decode())
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as e:
        raise OnlineStoreUnavailable(
            redacted_text(
                f"the Redis to migrate from ({redacted_url(source_url)}) is unavailable: {e}", source_url
            )
        ) from e
    finally:
        source.close()
    return result


def _copy_page(
    source: redis.Redis,
    target: RedisClusterOnlineStore,
    page: list[bytes],
    result: MigrateResult,
    aggregating: Collection[str],
    rows_of: set[int],
) -> None:
    ns_len = len(target.key_prefix)
    rows = [k for k in page if _VIEW.match(k, ns_len)]
    result.skipped += len(page) - len(rows)
    if not rows:
        return
    pipe = source.pipeline(transaction=False)
    for k in rows:
        pipe.type(k)
    pipe.mget(rows)
    *types, values = pipe.execute()
    keys: list[bytes] = []
    blobs: list[bytes] = []
    tiles: list[tuple[bytes, bytes, str]] = []
    for k, t, v in zip(rows, types, values):
        if t != b"string" or v is None:  # another type, or gone since the SCAN
            result.skipped += t != b"none"
            continue
        view = cast("re.Match[bytes]", _VIEW.match(k, ns_len)).group(1).decode()
        result.views[view] = result.views.get(view, 0) + 1
        if view in aggregating or len(v) < HEADER.size or HEADER.unpack_from(v)[1] not in rows_of:
            tiles.append((k, v, view))
        else:
            keys.append(k)
            blobs.append(v)
    result.rows += len(keys) + len(tiles)
    result.written += target.copy_rows(keys, blobs)
    if tiles:
        done = target.copy_absent([k for k, _, _ in tiles], [v for _, v, _ in tiles])
        result.written += done.count(1)
        for (_, _, view), outcome in zip(tiles, done):
            if outcome == 0:  # the cluster holds other tiles there (2: these very ones, copied before)
                result.tiles_held[view] = result.tiles_held.get(view, 0) + 1
