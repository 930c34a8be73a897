"""The online store: the latest feature row per view and entity key, read in one round trip.

    store = open_online_store(config)      # SQLite (embedded default) or Redis, from featurestore.toml
    store.write(view, arrow_batches)       # newest event time wins
    store.read(row_keys)                   # one round trip; see featurestore.online.lookup for the user API

Users call `FeatureStore.get_online_features` (featurestore.online.lookup), not these directly.
"""

from __future__ import annotations

from ..config import RepoConfig
from ..errors import ConfigError
from .base import OnlineStore
from .encoding import namespace

__all__ = ["OnlineStore", "open_online_store"]


def open_online_store(config: RepoConfig) -> OnlineStore:
    """The online store that `config.online` describes, in the namespace `config.online.key_prefix`."""
    online = config.online
    ns = namespace(online.key_prefix or config.project)
    if online.type == "sqlite":
        from .sqlite import SqliteOnlineStore

        if online.path is None:
            raise ConfigError('[online] type = "sqlite" needs path = "data/online.db" (or FS_ONLINE_PATH)')
        return SqliteOnlineStore(online.path, ns, timeout=max(online.timeout_seconds, 30.0))
    if online.type == "redis":
        from .redis import RedisOnlineStore

        if not online.url:
            raise ConfigError('[online] type = "redis" needs url = "redis://host:port/db" (or FS_ONLINE_URL)')
        if online.cluster:
            from .redis_cluster import RedisClusterOnlineStore

            return RedisClusterOnlineStore(online.url, ns, timeout=online.timeout_seconds)
        return RedisOnlineStore(online.url, ns, timeout=online.timeout_seconds)
    raise ConfigError(f"[online] type must be 'sqlite' or 'redis', got {online.type!r}")
