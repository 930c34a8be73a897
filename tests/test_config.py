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
