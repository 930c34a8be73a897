"""featurestore.toml plus FS_* environment overrides -> one typed RepoConfig."""

import pytest

from featurestore import ConfigError
from featurestore.config import find_repo, load_config


def write(tmp_path, text):
    (tmp_path / "featurestore.toml").write_text(text)
    return tmp_path


def test_defaults_are_embedded_and_relative_to_the_repo(tmp_path):
    cfg = load_config(write(tmp_path, 'project = "p"\n'), env={})
    assert cfg.project == "p"
    assert cfg.online.type == "sqlite" and cfg.online.path == tmp_path.resolve() / "data/online.db"
    assert cfg.offline_path == tmp_path.resolve() / "data/offline"
    assert cfg.registry_path == tmp_path.resolve() / "data/registry.db"
    assert cfg.online.key_prefix == "p"


def test_environment_overrides_the_file(tmp_path):
    write(tmp_path, 'project = "p"\n[online]\ntype = "sqlite"\n')
    cfg = load_config(
        tmp_path,
        env={
            "FS_ONLINE_URL": "redis://h:1/0",
            "FS_PROJECT": "q",
            "FS_OFFLINE_PATH": "/abs/off",
            "FS_API_KEYS": "svc:read:0123456789",
        },
    )
    assert cfg.online.type == "redis" and cfg.online.url == "redis://h:1/0"
    assert cfg.project == "q" and str(cfg.offline_path) == "/abs/off"
    assert cfg.server.api_keys[0].role == "read" and cfg.server.api_keys[0].name == "svc"
    assert "0123456789" not in repr(cfg.server.api_keys[0])  # keys never shown


@pytest.mark.parametrize(
    "text, message",
    [
        ('project = "p"\n[online]\ntype = "cassandra"\n', "type must be one of"),
        ('project = "p"\n[online]\ntype = "redis"\n', "needs url"),
        ('project = "p"\nunknown = 1\n', "unknown setting"),
        ('project = "has space"\n', "'project' must be"),
        ('project = "p\\n"\n', "'project' must be"),  # a trailing newline: fullmatch, not match + $
        ("project = \n", "not valid TOML"),
        ('project = "p"\n[[server.api_keys]]\nname = "a"\nrole = "root"\nkey = "0123456789"\n', "roles are"),
        ('project = "p"\n[[server.api_keys]]\nname = "a"\nrole = "read"\nkey = "short"\n', "at least 8"),
        ('project = "p"\n[[server.api_keys]]\nname = "a"\nrole = "read"\nkey_env = "NOPE_X"\n', "NOPE_X"),
    ],
)
def test_bad_config_names_the_problem(tmp_path, text, message):
    write(tmp_path, text)
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path, env={})


def test_monitoring_defaults_beside_the_registry_and_per_model_thresholds(tmp_path):
    cfg = load_config(write(tmp_path, 'project = "p"\n'), env={})
    assert cfg.monitor.log_path == tmp_path.resolve() / "data/predictions"
    assert cfg.monitor.retention_days == 90 and cfg.monitor.thresholds("eta").psi_drift == 0.25
    write(
        tmp_path,
        'project = "p"\n[monitoring]\nlog_path = "logs"\nretention_days = 7\npsi_warn = 0.2\n'
        '[monitoring.models.eta]\npsi_drift = 0.4\nmetric = "r2"\n',
    )
    cfg = load_config(tmp_path, env={})
    assert cfg.monitor.log_path == tmp_path.resolve() / "logs" and cfg.monitor.retention_days == 7
    eta, other = cfg.monitor.thresholds("eta"), cfg.monitor.thresholds("other")
    assert (eta.psi_warn, eta.psi_drift, eta.metric) == (0.2, 0.4, "r2")  # the defaults, then its own
    assert (other.psi_warn, other.psi_drift, other.metric) == (0.2, 0.25, None)
    assert (
        load_config(tmp_path, env={"FS_MONITORING_LOG_PATH": "/abs/log"}).monitor.log_path.as_posix()
        == "/abs/log"
    )


@pytest.mark.parametrize(
    "text, message",
    [
        ("[monitoring]\nthreshold = 1\n", "unknown \\[monitoring\\] setting"),
        ("[monitoring]\npsi_warn = 0.5\npsi_drift = 0.2\n", "must not be more than psi_drift"),
        ('[monitoring]\npsi_warn = "high"\n', "psi_warn must be a number"),
        ("[monitoring]\nretention_days = 0\n", "retention_days must be at least 1"),
        ("[monitoring.models.eta]\nwindow = 3\n", "unknown \\[monitoring.models.eta\\] setting"),
        ("[monitoring.models.eta]\nmetric = 3\n", "scorer name"),
    ],
)
def test_bad_monitoring_settings_name_the_setting(tmp_path, text, message):
    write(tmp_path, 'project = "p"\n' + text)
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path, env={})


def test_find_repo_walks_up_and_explains_when_missing(tmp_path, monkeypatch):
    write(tmp_path, 'project = "p"\n')
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    assert find_repo() == tmp_path.resolve()
    with pytest.raises(ConfigError, match="fs init"):
        find_repo(sub)


def test_team_settings_from_the_file_and_the_environment(tmp_path):
    write(
        tmp_path,
        'project = "p"\n[registry]\npath = "r.db"\nurl = "postgresql://ann:s3cret@db/fs"\n'
        '[models]\npath = "shared/models"\n[monitoring]\nlog_path = "shared/log"\n'
        '[offline]\nengine = "spark"\nspark_master = "spark://m:7077"\n'
        '[online]\ntype = "redis"\nurl = "redis://n1:7000"\ncluster = true\n',
    )
    cfg = load_config(tmp_path, env={})
    root = tmp_path.resolve()
    assert cfg.registry_url == "postgresql://ann:s3cret@db/fs"
    assert cfg.registry_location == "postgresql://ann:***@db/fs"  # never the password
    assert cfg.models_path == root / "shared/models"
    assert cfg.training_sets_path == root / "shared/models/__training_sets"
    assert cfg.offline.engine == "spark" and cfg.offline.spark_master == "spark://m:7077"
    assert cfg.online.cluster is True
    env = {"FS_OFFLINE_ENGINE": "duckdb", "FS_SPARK_MASTER": "local[2]", "FS_ONLINE_CLUSTER": "false"}
    cfg = load_config(tmp_path, env=env)
    assert cfg.offline.engine == "duckdb" and cfg.offline.spark_master == "local[2]"
    assert cfg.online.cluster is False
    cfg = load_config(tmp_path, env={"FS_REGISTRY_URL": "postgres://other/db"})
    assert cfg.registry_url == "postgres://other/db"


def test_embedded_defaults_keep_models_and_training_sets_beside_the_registry(tmp_path):
    cfg = load_config(write(tmp_path, 'project = "p"\n'), env={})
    root = tmp_path.resolve()
    assert cfg.registry_url is None and cfg.registry_location == str(root / "data/registry.db")
    assert cfg.models_path == root / "data/models"
    assert cfg.training_sets_path == root / "data/training_sets"
    assert cfg.offline.engine == "duckdb" and cfg.offline.spark_master == "local[*]"
    assert cfg.online.cluster is False


@pytest.mark.parametrize(
    "text, message",
    [
        ('[registry]\nurl = "mysql://x/y"\n', r"\[registry\] url must be a postgresql://"),
        ('[registry]\nurl = "postgresql://db/fs"\n', r"needs shared locations.*\[models\] path"),
        (
            '[registry]\nurl = "postgresql://db/fs"\n[models]\npath = "m"\n',
            r"\[monitoring\] log_path",
        ),
        ('[offline]\nengine = "flink"\n', r"engine must be one of \['duckdb', 'spark'\]"),
        ("[online]\ncluster = true\n", r'cluster = true needs type = "redis"'),
        ('[online]\ntype = "redis"\nurl = "redis://h"\ncluster = "maybe"\n', "cluster must be true or false"),
        ("[models]\npath = 3\n", r"\[models\] path must be a path"),
    ],
)
def test_bad_team_settings_name_the_setting(tmp_path, text, message):
    write(tmp_path, 'project = "p"\n' + text)
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path, env={})


@pytest.mark.parametrize(
    "url, shown",
    [
        ("postgresql://ann:s3cret@db:5432/fs", "postgresql://ann:***@db:5432/fs"),
        (
            "postgresql://ann@db/fs?password=s3cret&sslmode=require",
            "postgresql://ann@db/fs?password=***&sslmode=require",
        ),
        (
            "postgresql:///fs?host=db&user=ann&password=s3cret",
            "postgresql:///fs?host=db&user=ann&password=***",
        ),
        ("postgresql://db/fs?pass%77ord=s3cret", "postgresql://db/fs?pass%77ord=***"),
        ("postgresql://db/fs?sslpassword=s3cret", "postgresql://db/fs?sslpassword=***"),
        ("postgresql://ann:s3/cret@db/fs", "postgresql://ann:***@db/fs"),  # unencoded '/' and '@'
        ("postgresql://ann:s3@cret@db/fs", "postgresql://ann:***@db/fs"),
        ("postgresql://ann:s3cret@[::1]:5432/fs", "postgresql://ann:***@[::1]:5432/fs"),
        ("postgresql://ann@db/fs", "postgresql://ann@db/fs"),
        ("host=db password='s3 cret' user=ann", "host=db password=*** user=ann"),
        ("ann:s3cret@db/fs", "ann:***@db/fs"),  # the scheme forgotten
    ],
)
def test_redacted_urls_never_show_a_password(url, shown):
    from featurestore.config import redacted_text, redacted_url, url_without_password

    assert redacted_url(url) == shown
    assert "cret" not in redacted_text(f"a driver's message quoting {url}", url)
    assert "cret" not in url_without_password(url) and "***" not in url_without_password(url)
    if "s3@cret" in url:  # libpq quotes the host it could not resolve: part of the password
        assert redacted_text("failed to resolve host 'cret@db'", url) == "failed to resolve host '***@db'"


def test_a_bad_registry_url_scheme_is_refused_without_the_password(tmp_path):
    write(tmp_path, 'project = "p"\n[registry]\nurl = "postgressql://ann:s3cret@db/fs"\n')
    with pytest.raises(ConfigError, match=r"postgressql://ann:\*\*\*@db/fs") as caught:
        load_config(tmp_path, env={})
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize("master", ["bogus", "127.0.0.1:7077", "localhost"])
def test_a_spark_master_spark_would_refuse_is_a_config_error(tmp_path, master):
    write(tmp_path, 'project = "p"\n')
    if master == "localhost":  # "local..." is Spark's own prefix: accepted here, refused by Spark itself
        assert load_config(tmp_path, env={"FS_SPARK_MASTER": master}).offline.spark_master == master
        return
    with pytest.raises(ConfigError, match=r"spark_master must be a Spark master URL .*" + master):
        load_config(tmp_path, env={"FS_SPARK_MASTER": master})
