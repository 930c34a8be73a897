"""`featurestore.toml` plus environment overrides, read into one typed `RepoConfig`.

    project = "rides"
    [offline]
    path = "data/offline"      # or "s3://bucket/prefix" (also [models] path, [monitoring] log_path)
    # storage_options = {endpoint_url = "http://minio:9000"}   # s3fs settings of every s3:// location
    [online]
    type = "sqlite"            # or "redis"
    path = "data/online.db"    # sqlite
    # url = "redis://localhost:6379/0"   # redis
    # cluster = true                     # redis: a Redis Cluster, url of nodes: redis://h1:6379,h2:6379
    [registry]
    path = "data/registry.db"
    # url = "postgresql://user@host/db"   # a shared registry (wins over path)
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
    [offline]
    engine = "duckdb"               # or "spark" (featurestore[spark]); spark_master = "local[*]"
    [models]
    path = "data/models"            # model artifacts and saved training sets (default: beside the registry)
    protected_aliases = ["production"]   # move only through a passed promotion policy or an approver
    [governance]
    users = {alice = "approver", bob = "models"}   # $FS_USER -> role, for the CLI and Python

Environment variables override the file, so one repo deploys to several places:
`FS_PROJECT`, `FS_OFFLINE_PATH`, `FS_ONLINE_TYPE`, `FS_ONLINE_PATH`, `FS_ONLINE_URL` (a redis:// URL
also sets the type to redis), `FS_ONLINE_KEY_PREFIX`, `FS_ONLINE_CLUSTER` (true/false), `FS_REGISTRY_PATH`, `FS_REGISTRY_URL`,
`FS_OFFLINE_ENGINE`, `FS_SPARK_MASTER`, `FS_MODELS_PATH`, `FS_S3_ENDPOINT_URL` (storage_options' endpoint_url;
credentials come from the standard AWS variables, read by s3fs),
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
from .locations import is_url, storage_options, url_of

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
OFFLINE_ENGINES = ("duckdb", "spark")
SPARK_MASTER_FORMS = ("local", "spark://", "yarn", "k8s://", "mesos://")  # what Spark itself accepts
REGISTRY_URL_SCHEMES = ("postgresql://", "postgres://")


@dataclass(frozen=True)
class OnlineConfig:
    """Where the online store lives. `key_prefix` separates projects sharing one Redis server."""

    type: str = "sqlite"
    path: Path | None = None
    url: str | None = None
    key_prefix: str = ""
    timeout_seconds: float = 1.0
    #: redis: `url` names nodes of a Redis Cluster, comma-separated (featurestore.online.redis_cluster)
    cluster: bool = False


@dataclass(frozen=True)
class OfflineConfig:
    """`[offline]` beyond its path: the engine that runs training sets and materialization."""

    engine: str = "duckdb"  # or "spark" (featurestore.offline.spark, the featurestore[spark] extra)
    spark_master: str = "local[*]"
    #: fsspec/s3fs settings of every s3:// location (endpoint_url, key, secret, ...): see locations.py
    storage_options: Mapping[str, Any] = field(default_factory=dict)


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
    #: the log on object storage (`log_path = "s3://bucket/prefix"`); log_path is then unused
    log_url: str | None = None
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
    #: a PostgreSQL registry (featurestore.registry_postgres); None: the SQLite file at registry_path
    registry_url: str | None = None
    #: whether `[registry] path` (or FS_REGISTRY_PATH) was set: with a url too, `fs status` says the url wins
    registry_path_set: bool = False
    offline: OfflineConfig = OfflineConfig()
    #: `[models] path`; None: `models/` beside the registry file
    models_dir: Path | None = None
    #: `[offline] path` on object storage (s3://bucket/prefix); offline_path is then the local
    #: working folder of that storage (staging, lock files), not its data
    offline_url: str | None = None
    #: `[models] path` on object storage (s3://bucket/prefix); models_dir is then None
    models_url: str | None = None
    ignore: tuple[str, ...] = ()
    monitoring: MonitoringConfig | None = None  # None: the defaults, the log beside the registry
    governance: GovernanceConfig = GovernanceConfig()

    @property
    def monitor(self) -> MonitoringConfig:
        """`[monitoring]`, with its defaults filled in."""
        return self.monitoring or MonitoringConfig(log_path=self.registry_path.parent / "predictions")

    @property
    def models_path(self) -> Path:
        """Where model artifacts are stored: `[models] path`, else beside the registry file."""
        return self.models_dir if self.models_dir is not None else self.registry_path.parent / "models"

    @property
    def training_sets_path(self) -> Path:
        """Where saved training sets are stored: under `[models] path` when it is set (a shared
        location), else beside the registry file."""
        if self.models_dir is not None:
            return self.models_dir / "__training_sets"
        return self.registry_path.parent / "training_sets"

    @property
    def training_sets_url(self) -> str | None:
        """Saved training sets on object storage: under `[models] path` when that is a URL."""
        return None if self.models_url is None else self.models_url.rstrip("/") + "/__training_sets"

    @property
    def registry_location(self) -> str:
        """The registry in words, without secrets: the PostgreSQL URL's host and database, or the file."""
        if self.registry_url is None:
            return str(self.registry_path)
        return redacted_url(self.registry_url)


_SECRET_KEYS = ("password", "sslpassword")
# A secret in a libpq keyword string ("host=db password=s3cret"), quoted or not.
_KEYWORD_SECRET = re.compile(r"\b((?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def _split_url(url: str) -> tuple[str, str | None, str, list[str]] | None:
    """`scheme://`, user information, the rest before the query, and the query's parameters; None for
    a text without `://` (user information None without an '@'). The user information ends at the LAST '@' before the query, so a password
    holding an unencoded '@' or '/' is still all of it (over-eager is the safe side)."""
    head, _, query = url.partition("?")
    scheme, sep, rest = head.partition("://")
    if not sep:
        if "=" in url or "@" not in url:
            return None  # a libpq keyword string, or no user information at all
        scheme, rest, query = "", url, ""  # "alice:s3cret@db": a URL missing its scheme
    userinfo, at, hosts = rest.rpartition("@")
    return scheme + sep, userinfo if at else None, hosts, query.split("&") if query else []


def _secret_param(param: str) -> bool:
    from urllib.parse import unquote

    return unquote(param.partition("=")[0]).strip().lower() in _SECRET_KEYS


def redacted_url(url: str) -> str:
    """`url` with every password replaced by '***' (for messages and `fs status`): the one in
    `user:password@`, `?password=` and `?sslpassword=` (the key maybe %-encoded), and, in a libpq
    keyword string, `password=`."""
    parts = _split_url(url)
    if parts is None:
        return _KEYWORD_SECRET.sub(r"\1***", url)
    scheme, userinfo, hosts, params = parts
    text = scheme
    if userinfo is not None:
        user, colon, _ = userinfo.partition(":")
        text += f"{user}{':***' if colon else ''}@"
    text += hosts
    if params:
        text += "?" + "&".join(p.partition("=")[0] + "=***" if _secret_param(p) else p for p in params)
    return text


def url_without_password(url: str) -> str:
    """`url` with its passwords left out (not masked): a URL that works as it is when the password
    comes from ~/.pgpass or PGPASSWORD, for hints a user copies."""
    parts = _split_url(url)
    if parts is None:
        return " ".join(_KEYWORD_SECRET.sub("", url).split())
    scheme, userinfo, hosts, params = parts
    user = "" if userinfo is None else userinfo.partition(":")[0] + "@"
    kept = [p for p in params if not _secret_param(p)]
    return scheme + user + hosts + ("?" + "&".join(kept) if kept else "")


def url_secrets(url: str) -> list[str]:
    """The passwords in `url` (raw and %-decoded) and the pieces a driver's message may quote of them
    (split at '@', '/', ':'), longest first: what `redacted_text` masks."""
    from urllib.parse import unquote

    found: list[str] = []
    parts = _split_url(url)
    if parts is None:
        found += [m.group(2).strip("'") for m in _KEYWORD_SECRET.finditer(url)]
    else:
        _, userinfo, _, params = parts
        user, colon, password = (userinfo or "").partition(":")
        if colon:
            found.append(password)
        found += [p.partition("=")[2] for p in params if _secret_param(p)]
    found += [unquote(s) for s in found]
    found += [piece for s in found for piece in re.split(r"[@/:]", s) if len(piece) >= 3]
    return sorted({s for s in found if s}, key=len, reverse=True)


def redacted_text(text: str, url: str) -> str:
    """`text` (a driver's error message, say) with every password of `url` masked as '***'."""
    for secret in url_secrets(url):
        text = text.replace(secret, "***")
    return text


def _flag(value: Any, name: str, where: str) -> bool:
    """A true/false setting from the file (a TOML boolean) or the environment ("true", "1", "no", ...)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{where}: {name} must be true or false, got {value!r}")


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
    offline_setting = env.get("FS_OFFLINE_PATH") or offline.get("path", "data/offline")
    if not isinstance(offline_setting, str) or not offline_setting:
        raise ConfigError(
            f"{where}: [offline] path must be a folder or an s3:// URL, got {offline_setting!r}"
        )
    offline_url = url_of(offline_setting, "[offline] path", where)
    offline_path = resolve("data/offline-work" if offline_url else offline_setting)
    try:
        options = storage_options(offline.get("storage_options"), env, where)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    engine = env.get("FS_OFFLINE_ENGINE") or offline.get("engine", "duckdb")
    if engine not in OFFLINE_ENGINES:
        raise ConfigError(f"{where}: [offline] engine must be one of {list(OFFLINE_ENGINES)}, got {engine!r}")
    spark_master = env.get("FS_SPARK_MASTER") or offline.get("spark_master", OfflineConfig.spark_master)
    if not isinstance(spark_master, str) or not spark_master.startswith(SPARK_MASTER_FORMS):
        raise ConfigError(
            f"{where}: [offline] spark_master must be a Spark master URL (local[*], local[N], "
            f"spark://host:7077, yarn, k8s://https://host:443), got {spark_master!r}"
        )
    offline_cfg = OfflineConfig(engine=engine, spark_master=spark_master, storage_options=options)

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
    cluster = _flag(env.get("FS_ONLINE_CLUSTER") or online.get("cluster", False), "[online] cluster", where)
    if cluster and online_type != "redis":
        raise ConfigError(
            f'{where}: [online] cluster = true needs type = "redis" and the url of a cluster node'
        )
    online_cfg = OnlineConfig(
        type=online_type,
        path=resolve(online_path) if online_type == "sqlite" else None,
        url=url if online_type == "redis" else None,
        key_prefix=env.get("FS_ONLINE_KEY_PREFIX") or online.get("key_prefix") or project,
        timeout_seconds=timeout,
        cluster=cluster,
    )

    registry = section("registry")
    registry_path = resolve(env.get("FS_REGISTRY_PATH") or registry.get("path", "data/registry.db"))
    registry_url = env.get("FS_REGISTRY_URL") or registry.get("url")
    if registry_url is not None and (
        not isinstance(registry_url, str) or not registry_url.startswith(REGISTRY_URL_SCHEMES)
    ):
        raise ConfigError(
            f"{where}: [registry] url must be a postgresql://user@host/database URL, got "
            f"{redacted_url(registry_url) if isinstance(registry_url, str) else registry_url!r}"
        )
    models_section = section("models")
    models_dir = env.get("FS_MODELS_PATH") or models_section.get("path")
    if models_dir is not None and (not isinstance(models_dir, str) or not models_dir):
        raise ConfigError(f"{where}: [models] path must be a path, got {models_dir!r}")
    monitoring_section = section("monitoring")
    if registry_url and (
        models_dir is None or not (env.get("FS_MONITORING_LOG_PATH") or monitoring_section.get("log_path"))
    ):
        raise ConfigError(
            f"{where}: a PostgreSQL registry ([registry] url) needs shared locations for what is not in "
            "the database: set [models] path (model artifacts, saved training sets) and [monitoring] "
            "log_path (the prediction log), or FS_MODELS_PATH and FS_MONITORING_LOG_PATH"
        )

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
        monitoring=_monitoring(monitoring_section, env, registry_path, resolve, where),
        governance=_governance(models_section, section("governance"), where),
        registry_url=registry_url,
        registry_path_set=bool(env.get("FS_REGISTRY_PATH") or "path" in registry),
        offline=offline_cfg,
        models_dir=resolve(models_dir) if models_dir and not is_url(models_dir) else None,
        offline_url=offline_url,
        models_url=url_of(models_dir, "[models] path", where) if models_dir else None,
    )


def _governance(models: dict[str, Any], raw: dict[str, Any], where: str) -> GovernanceConfig:
    extra = set(models) - {"protected_aliases", "path"}
    if extra:
        raise ConfigError(
            f"{where}: unknown [models] setting(s) {sorted(extra)} (known: ['path', 'protected_aliases'])"
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
    log_url = url_of(log_path, "[monitoring] log_path", where) if log_path else None
    return MonitoringConfig(
        log_url=log_url,
        log_path=resolve(log_path) if log_path and not log_url else registry_path.parent / "predictions",
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
    _one_key_per_name(keys, len(raw.get("api_keys", [])), where)
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


_KEY_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,100}")


def _one_key_per_name(keys: list[ApiKey], in_file: int, where: str) -> None:
    """A ConfigError when two keys share a name: a session or the audit trail names a key, so a
    name must tell which key (and role) it is. The first `in_file` keys come from `where`."""
    seen: dict[str, int] = {}
    for i, k in enumerate(keys):
        if k.name in seen:
            places = [where if j < in_file else "FS_API_KEYS" for j in (seen[k.name], i)]
            raise ConfigError(
                f"api key name '{k.name}' is used twice ({places[0]} and {places[1]}): "
                "give every key its own name"
            )
        seen[k.name] = i


def _api_key(name: Any, role: Any, key: Any, where: str) -> ApiKey:
    if not isinstance(name, str) or not _KEY_NAME.fullmatch(name):
        raise ConfigError(
            f"{where}: api key name {str(name)[:40]!r} must be 1 to 100 characters of A-Z a-z 0-9 _ . @ -"
        )
    if role not in ROLES:
        raise ConfigError(f"{where}: api key '{name}' has role {role!r}; roles are {list(ROLES)}")
    if not isinstance(key, str) or len(key) < 8:
        raise ConfigError(f"{where}: api key '{name}' must be a string of at least 8 characters")
    return ApiKey(name=str(name), role=role, key=key)
