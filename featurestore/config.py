"""`featurestore.toml` plus environment overrides, read into one typed `RepoConfig`.

    project = "rides"
    [offline]
    path = "data/offline"
    [online]
    type = "sqlite"            # or "redis"
    path = "data/online.db"    # sqlite
    # url = "redis://localhost:6379/0"   # redis
    [registry]
    path = "data/registry.db"
    [repo]
    ignore = ["generate_data.py"]   # python files of the repo that are not definitions
    [server]
    max_batch_rows = 10000
    max_header_bytes = 65536        # request line + headers; larger: 431, connection closed
    read_timeout_seconds = 10       # a request's headers and body must arrive within it
    [[server.api_keys]]
    name = "ranker"; role = "read"; key_env = "RANKER_KEY"   # or key = "..." (avoid committing keys)
    [monitoring]
    log_path = "data/predictions"   # the prediction and feedback logs (default: beside the registry)
    retention_days = 90             # older log days are deleted by `fs monitor check`
    psi_warn = 0.1                  # drift thresholds (PSI), minimum sample sizes, live-metric tolerance
    psi_drift = 0.25
    [monitoring.models.eta]         # per model: any of the keys above but the log's
    psi_drift = 0.3
    metric = "neg_mean_absolute_error"
    [models]
    protected_aliases = ["production"]   # move only through a passed promotion policy or an approver
    [governance]
    users = {alice = "approver", bob = "models"}   # $FS_USER -> role, for the CLI and Python

Environment variables override the file, so one repo deploys to several places:
`FS_PROJECT`, `FS_OFFLINE_PATH`, `FS_ONLINE_TYPE`, `FS_ONLINE_PATH`, `FS_ONLINE_URL` (a redis:// URL
also sets the type to redis), `FS_ONLINE_KEY_PREFIX`, `FS_REGISTRY_PATH`,
`FS_API_KEYS` ("name:role:key,name:role:key"), `FS_MAX_BATCH_ROWS`, `FS_MAX_HEADER_BYTES`,
`FS_READ_TIMEOUT_SECONDS`, `FS_MONITORING_LOG_PATH`.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONFIG_FILE = "featurestore.toml"
# Roles are sets of permissions (featurestore.governance.PERMISSIONS): read < write; read < models <
# approver; admin has every permission.
ROLES = ("read", "write", "models", "approver", "admin")
DEFAULT_PROTECTED_ALIASES = ("production",)
ONLINE_TYPES = ("sqlite", "redis")


@dataclass(frozen=True)
class OnlineConfig:
    """Where the online store lives. `key_prefix` separates projects sharing one Redis server."""

    type: str = "sqlite"
    path: Path | None = None
    url: str | None = None
    key_prefix: str = ""
    timeout_seconds: float = 1.0


@dataclass(frozen=True)
class ApiKey:
    name: str
    role: str
    key: str = field(repr=False)


@dataclass(frozen=True)
class ServerConfig:
    """`[server]`: API keys, the batch limit, and the connection limits of `fs serve`."""

    api_keys: tuple[ApiKey, ...] = ()
    max_batch_rows: int = 10_000
    max_header_bytes: int = 64 * 1024  # a request's line and headers; over it: 431 and the connection closed
    read_timeout_seconds: float = 10.0  # for a request's headers and body to arrive, from its first byte


@dataclass(frozen=True)
class Thresholds:
    """When monitoring calls a model's features drifted and its live metric worse, and where its
    labels come from (SPEC §12)."""

    psi_warn: float = 0.1
    psi_drift: float = 0.25
    min_reference_rows: int = 1000
    min_current_rows: int = 100
    #: a scikit-learn scorer name ("roc_auc", "neg_mean_absolute_error", ...); None: the first
    #: scorer name among the metrics recorded at registration
    metric: str | None = None
    performance_tolerance: float = 0.05  # a breach: live metric worse than validation by more
    #: a source of the repo with columns request_id, row and label, read beside the labels fed back
    label_source: str | None = None


THRESHOLD_KEYS = tuple(Thresholds.__dataclass_fields__)


@dataclass(frozen=True)
class MonitoringConfig:
    """`[monitoring]`: where the prediction log lives, how long it is kept, and the thresholds
    (defaults, and per model under `[monitoring.models.NAME]`)."""

    log_path: Path
    retention_days: int = 90
    defaults: Thresholds = Thresholds()
    models: Mapping[str, Thresholds] = field(default_factory=dict)

    def thresholds(self, model: str) -> Thresholds:
        """The thresholds of model `model`: its own section, else the defaults."""
        return self.models.get(model, self.defaults)


@dataclass(frozen=True)
class GovernanceConfig:
    """`[models] protected_aliases` and `[governance] users` (SPEC §13, featurestore.governance)."""

    #: aliases that move only through a passed promotion policy, or by an approver or admin
    protected_aliases: tuple[str, ...] = DEFAULT_PROTECTED_ALIASES
    #: user name -> role, for the CLI and Python: $FS_USER picks the user (advisory: see governance)
    users: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RepoConfig:
    """The whole configuration of one feature repo; paths are absolute."""

    project: str
    repo_path: Path
    offline_path: Path
    online: OnlineConfig
    registry_path: Path
    server: ServerConfig = ServerConfig()
    ignore: tuple[str, ...] = ()
    monitoring: MonitoringConfig | None = None  # None: the defaults, the log beside the registry
    governance: GovernanceConfig = GovernanceConfig()

    @property
    def monitor(self) -> MonitoringConfig:
        """`[monitoring]`, with its defaults filled in."""
        return self.monitoring or MonitoringConfig(log_path=self.registry_path.parent / "predictions")

    @property
    def models_path(self) -> Path:
        """Where model artifacts are stored: beside the registry file."""
        return self.registry_path.parent / "models"


def find_repo(start: str | os.PathLike[str] | None = None) -> Path:
    """The repo folder: `start` itself, or the nearest parent of the current folder holding featurestore.toml."""
    if start is not None:
        path = Path(start).resolve()
        if not (path / CONFIG_FILE).is_file():
            raise ConfigError(
                f"{path} is not a feature repo: no {CONFIG_FILE} there (create one with `fs init {start}`)"
            )
        return path
    here = Path.cwd().resolve()
    for path in (here, *here.parents):
        if (path / CONFIG_FILE).is_file():
            return path
    raise ConfigError(
        f"no {CONFIG_FILE} in {here} or its parents: pass the repo folder, or create one with `fs init`"
    )


def load_config(repo_path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> RepoConfig:
    """Read `repo_path/featurestore.toml` and apply FS_* environment overrides."""
    env = os.environ if env is None else env
    repo = Path(repo_path).resolve()
    file = repo / CONFIG_FILE
    try:
        raw = tomllib.loads(file.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{file} not found") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{file}: not valid TOML: {e}") from None
    return parse_config(raw, repo, env, where=str(file))


def parse_config(raw: dict[str, Any], repo: Path, env: Mapping[str, str], where: str) -> RepoConfig:
    known = {
        "project",
        "offline",
        "online",
        "registry",
        "server",
        "repo",
        "monitoring",
        "models",
        "governance",
    }
    extra = set(raw) - known
    if extra:
        raise ConfigError(f"{where}: unknown setting(s) {sorted(extra)} (known: {sorted(known)})")

    def section(name: str) -> dict[str, Any]:
        value = raw.get(name, {})
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: [{name}] must be a table")
        return value

    def resolve(p: str) -> Path:
        path = Path(p)
        return path if path.is_absolute() else (repo / path)

    project = env.get("FS_PROJECT") or raw.get("project")
    if not isinstance(project, str) or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_\-]*", project):
        raise ConfigError(
            f"{where}: 'project' must be a name of letters, digits, '_' or '-', got {project!r}"
        )

    offline = section("offline")
    offline_path = resolve(env.get("FS_OFFLINE_PATH") or offline.get("path", "data/offline"))

    online = section("online")
    online_type = env.get("FS_ONLINE_TYPE") or online.get("type", "sqlite")
    env_url = env.get("FS_ONLINE_URL")
    url = env_url or online.get("url")
    if env_url and not env.get("FS_ONLINE_TYPE") and env_url.startswith(("redis://", "rediss://", "unix://")):
        online_type = "redis"
    if online_type not in ONLINE_TYPES:
        raise ConfigError(f"{where}: [online] type must be one of {list(ONLINE_TYPES)}, got {online_type!r}")
    online_path = env.get("FS_ONLINE_PATH") or online.get("path", "data/online.db")
    if online_type == "redis" and not url:
        raise ConfigError(
            f'{where}: [online] type = "redis" needs url = "redis://host:port/db" (or FS_ONLINE_URL)'
        )
    try:
        timeout = float(online.get("timeout_seconds", 1.0))
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: [online] timeout_seconds must be a number") from None
    online_cfg = OnlineConfig(
        type=online_type,
        path=resolve(online_path) if online_type == "sqlite" else None,
        url=url if online_type == "redis" else None,
        key_prefix=env.get("FS_ONLINE_KEY_PREFIX") or online.get("key_prefix") or project,
        timeout_seconds=timeout,
    )

    registry = section("registry")
    registry_path = resolve(env.get("FS_REGISTRY_PATH") or registry.get("path", "data/registry.db"))

    repo_section = section("repo")
    ignore = repo_section.get("ignore", [])
    if not isinstance(ignore, list) or not all(isinstance(i, str) for i in ignore):
        raise ConfigError(f"{where}: [repo] ignore must be a list of file names or globs")

    return RepoConfig(
        project=project,
        repo_path=repo,
        offline_path=offline_path,
        online=online_cfg,
        registry_path=registry_path,
        server=_server(section("server"), env, where),
        ignore=tuple(ignore),
        monitoring=_monitoring(section("monitoring"), env, registry_path, resolve, where),
        governance=_governance(section("models"), section("governance"), where),
    )


def _governance(models: dict[str, Any], raw: dict[str, Any], where: str) -> GovernanceConfig:
    extra = set(models) - {"protected_aliases"}
    if extra:
        raise ConfigError(
            f"{where}: unknown [models] setting(s) {sorted(extra)} (known: ['protected_aliases'])"
        )
    extra = set(raw) - {"users"}
    if extra:
        raise ConfigError(f"{where}: unknown [governance] setting(s) {sorted(extra)} (known: ['users'])")
    protected = models.get("protected_aliases", list(DEFAULT_PROTECTED_ALIASES))
    if not isinstance(protected, list) or not all(isinstance(a, str) and a for a in protected):
        raise ConfigError(
            f"{where}: [models] protected_aliases must be a list of alias names, got {protected!r}"
        )
    users = raw.get("users", {})
    if not isinstance(users, dict):
        raise ConfigError(f'{where}: [governance] users must be a table of user = "role", got {users!r}')
    for user, role in users.items():
        if role not in ROLES:
            raise ConfigError(
                f"{where}: [governance] users: user '{user}' has role {role!r}; roles are {list(ROLES)}"
            )
    return GovernanceConfig(protected_aliases=tuple(protected), users=dict(users))


def _monitoring(
    raw: dict[str, Any], env: Mapping[str, str], registry_path: Path, resolve: Any, where: str
) -> MonitoringConfig:
    known = {"log_path", "retention_days", "models", *THRESHOLD_KEYS}
    extra = set(raw) - known
    if extra:
        raise ConfigError(
            f"{where}: unknown [monitoring] setting(s) {sorted(extra)} (known: {sorted(known)})"
        )
    log_path = env.get("FS_MONITORING_LOG_PATH") or raw.get("log_path")
    if log_path is not None and not isinstance(log_path, str):
        raise ConfigError(f"{where}: [monitoring] log_path must be a path, got {log_path!r}")
    retention = _whole(raw.get("retention_days", 90), "[monitoring] retention_days", 1, where)
    defaults = _thresholds(raw, Thresholds(), "[monitoring]", where)
    models_raw = raw.get("models", {})
    if not isinstance(models_raw, dict):
        raise ConfigError(f"{where}: [monitoring.models] must be a table of [monitoring.models.NAME] tables")
    models: dict[str, Thresholds] = {}
    for name, body in models_raw.items():
        section = f"[monitoring.models.{name}]"
        if not isinstance(body, dict):
            raise ConfigError(f"{where}: {section} must be a table")
        extra = set(body) - set(THRESHOLD_KEYS)
        if extra:
            raise ConfigError(
                f"{where}: unknown {section} setting(s) {sorted(extra)} (known: {sorted(THRESHOLD_KEYS)})"
            )
        models[name] = _thresholds(body, defaults, section, where)
    return MonitoringConfig(
        log_path=resolve(log_path) if log_path else registry_path.parent / "predictions",
        retention_days=retention,
        defaults=defaults,
        models=models,
    )


def _thresholds(raw: dict[str, Any], base: Thresholds, section: str, where: str) -> Thresholds:
    """`base` with the threshold keys of `raw` checked and applied."""
    values: dict[str, Any] = {}
    for key in ("psi_warn", "psi_drift", "performance_tolerance"):
        if key in raw:
            value = raw[key]
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not 0 <= value < float("inf")
            ):
                raise ConfigError(f"{where}: {section} {key} must be a number of at least 0, got {value!r}")
            values[key] = float(value)
    for key in ("min_reference_rows", "min_current_rows"):
        if key in raw:
            values[key] = _whole(raw[key], f"{section} {key}", 1, where)
    if "metric" in raw:
        metric = raw["metric"]
        if not isinstance(metric, str) or not metric:
            raise ConfigError(f"{where}: {section} metric must be a scikit-learn scorer name, got {metric!r}")
        values["metric"] = metric
    if "label_source" in raw:
        source = raw["label_source"]
        if not isinstance(source, str) or not source:
            raise ConfigError(f"{where}: {section} label_source must be the name of a source, got {source!r}")
        values["label_source"] = source
    merged = {**base.__dict__, **values}
    if merged["psi_warn"] > merged["psi_drift"]:
        raise ConfigError(
            f"{where}: {section} psi_warn ({merged['psi_warn']}) must not be more than psi_drift ({merged['psi_drift']})"
        )
    return Thresholds(**merged)


def _server(raw: dict[str, Any], env: Mapping[str, str], where: str) -> ServerConfig:
    keys: list[ApiKey] = []
    for i, item in enumerate(raw.get("api_keys", [])):
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: [[server.api_keys]] entry {i} must be a table")
        name, role = item.get("name", f"key{i}"), item.get("role")
        key = item.get("key")
        if item.get("key_env"):
            key = env.get(item["key_env"])
            if not key:
                raise ConfigError(f"{where}: api key '{name}' reads ${item['key_env']}, which is not set")
        keys.append(_api_key(name, role, key, where))
    for i, entry in enumerate(filter(None, (env.get("FS_API_KEYS") or "").split(","))):
        parts = entry.strip().split(":", 2)
        if len(parts) != 3:
            raise ConfigError(f"FS_API_KEYS entry {i} must be name:role:key")
        keys.append(_api_key(parts[0], parts[1], parts[2], "FS_API_KEYS"))
    max_rows = _whole(
        env.get("FS_MAX_BATCH_ROWS") or raw.get("max_batch_rows", 10_000), "max_batch_rows", 1, where
    )
    header_bytes = _whole(
        env.get("FS_MAX_HEADER_BYTES") or raw.get("max_header_bytes", ServerConfig.max_header_bytes),
        "max_header_bytes",
        1024,
        where,
    )
    read_timeout = env.get("FS_READ_TIMEOUT_SECONDS") or raw.get(
        "read_timeout_seconds", ServerConfig.read_timeout_seconds
    )
    try:
        if isinstance(read_timeout, bool):
            raise ValueError
        read_timeout = float(read_timeout)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{where}: read_timeout_seconds must be a number of seconds, got {read_timeout!r}"
        ) from None
    if not 0 < read_timeout < float("inf"):
        raise ConfigError(f"{where}: read_timeout_seconds must be more than 0, got {read_timeout!r}")
    return ServerConfig(
        api_keys=tuple(keys),
        max_batch_rows=max_rows,
        max_header_bytes=header_bytes,
        read_timeout_seconds=read_timeout,
    )


def _whole(value: Any, name: str, least: int, where: str) -> int:
    """`value` (from the file or the environment) as a whole number of at least `least`, else a ConfigError."""
    try:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {name} must be a whole number, got {value!r}") from None
    if number < least:
        raise ConfigError(f"{where}: {name} must be at least {least}, got {number}")
    return number


def _api_key(name: Any, role: Any, key: Any, where: str) -> ApiKey:
    if role not in ROLES:
        raise ConfigError(f"{where}: api key '{name}' has role {role!r}; roles are {list(ROLES)}")
    if not isinstance(key, str) or len(key) < 8:
        raise ConfigError(f"{where}: api key '{name}' must be a string of at least 8 characters")
    return ApiKey(name=str(name), role=role, key=key)
