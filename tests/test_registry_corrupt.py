"""A damaged registry file is one clear error naming it (CLI and server), and `fs registry backup`
makes the copy to restore from."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from featurestore import FeatureStore
from featurestore.cli import cli
from featurestore.errors import RegistryError
from featurestore.registry import Registry
from featurestore.server import create_app
from tests.repo_builder import make_repo
from tests.test_repo import ENTITY, HEADER, SOURCE, STATS, view


def applied_repo(tmp_path) -> tuple[Path, Path]:
    """A repo with its definitions applied and a run recorded; (repo, registry file), no connection open."""
    path = make_repo(
        tmp_path / "repo",
        {"defs.py": HEADER + ENTITY + SOURCE + view()},
        {"data/stats.parquet": STATS},
    )
    store = FeatureStore(path)
    store.apply()
    store.materialize("2026-01-01", "2026-01-02")
    for i in range(300):  # a registry of many pages, as one in use for a while
        store.registry.audit("push", f"view:{i}", {"rows": i, "pad": "x" * 200})
    registry = Path(store.config.registry_path)
    store.registry.close()
    assert not Path(str(registry) + "-wal").exists() or Path(str(registry) + "-wal").stat().st_size == 0
    return path, registry


def fs(*args: str):
    return CliRunner().invoke(cli, list(args))


def assert_clear_error(result, registry: Path, *also: str) -> None:
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # handled: no traceback
    text = " ".join(result.output.split())  # rich wraps long lines
    assert "Traceback" not in text
    assert f"the registry {registry} is corrupt or unreadable" in text.replace("\n", "")
    assert "restore it from a backup" in text
    for words in also:
        assert words in text


def set_sql(registry: Path, sql: str, *params) -> None:
    con = sqlite3.connect(registry)
    con.execute(sql, params)
    con.commit()
    con.close()


def test_overwritten_header_bytes_are_one_clear_error_naming_the_file(tmp_path):
    path, registry = applied_repo(tmp_path)
    with open(registry, "r+b") as f:
        f.write(b"\x00garbage garbage garbage\xff" * 4)
    assert_clear_error(fs("--repo", str(path), "list"), registry, "file is not a database")
    with pytest.raises(RegistryError, match="restore it from a backup"):
        _ = FeatureStore(path).catalog


def test_a_truncated_file_is_one_clear_error_naming_the_file(tmp_path):
    path, registry = applied_repo(tmp_path)
    size = registry.stat().st_size
    with open(registry, "r+b") as f:
        f.truncate(size // 3)
    result = fs("--repo", str(path), "list")
    assert_clear_error(result, registry)


@pytest.mark.parametrize(
    ("sql", "words"),
    [
        ("UPDATE watermarks SET watermark = 'garbage'", "the watermark of view 'stats_view' holds 'garbage'"),
        ("UPDATE watermarks SET watermark = 12", "the watermark of view 'stats_view' holds '12', not a time"),
        ("UPDATE objects SET spec = '{not json' WHERE kind = 'entity'", "the spec of entity 'driver'"),
        (
            "UPDATE objects SET spec = '{}' WHERE kind = 'feature_view'",
            "an applied definition cannot be read",
        ),
        ("UPDATE meta SET value = 'many' WHERE key = 'generation'", "meta 'generation' holds 'many'"),
    ],
)
def test_garbage_in_a_value_is_one_clear_error_naming_the_file_and_value(tmp_path, sql, words):
    path, registry = applied_repo(tmp_path)
    set_sql(registry, sql)
    assert_clear_error(fs("--repo", str(path), "list", "views"), registry, words)


def test_the_server_answers_503_naming_the_file_on_ready_and_on_endpoints_that_need_the_registry(tmp_path):
    path, registry = applied_repo(tmp_path)
    set_sql(registry, "UPDATE objects SET spec = '{not json' WHERE kind = 'entity'")
    with TestClient(create_app(FeatureStore(path))) as client:
        assert client.get("/health").status_code == 200  # liveness needs no registry
        for response in (
            client.get("/ready"),
            client.get("/catalog/views"),
            client.post(
                "/features/online",
                json={"features": ["stats_view:trips"], "entities": {"driver_id": [1]}},
            ),
        ):
            assert response.status_code == 503, response.text
            message = response.json()["error"]
            assert str(registry) in message and "restore it from a backup" in message


def test_backup_copies_a_registry_in_use_refuses_to_overwrite_and_restores(tmp_path):
    path, registry = applied_repo(tmp_path)
    backup = tmp_path / "backups" / "registry-copy.db"
    backup.parent.mkdir()
    # Another process is writing (a write transaction open, not committed): the backup neither waits
    # for it nor holds its uncommitted rows.
    writer = sqlite3.connect(registry, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("DELETE FROM objects")
    try:
        result = fs("--repo", str(path), "registry", "backup", str(backup))
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert result.exit_code == 0, result.output
    assert str(backup) in result.output
    assert not list(backup.parent.glob(".*"))  # no temporary file left beside it

    refused = fs("--repo", str(path), "registry", "backup", str(backup))
    assert refused.exit_code == 1 and "already exists" in refused.output and "--force" in refused.output
    assert fs("--repo", str(path), "registry", "backup", str(backup), "--force").exit_code == 0

    # The copy opens as a registry, with the same contents.
    original = FeatureStore(path)
    views = list(original.catalog.views)
    copy = Registry(backup)
    assert copy.specs() == original.registry.specs() and copy.watermarks() == original.registry.watermarks()
    assert copy.audit_log(limit=5) == original.registry.audit_log(limit=5)
    copy.close()
    original.registry.close()

    # Damage the registry, then restore it from the backup: everything is back.
    with open(registry, "r+b") as f:
        f.write(b"\xff" * 100)
    assert fs("--repo", str(path), "list").exit_code == 1
    shutil.copyfile(backup, registry)
    restored = fs("--repo", str(path), "list", "views", "--json")
    assert restored.exit_code == 0, restored.output
    listed = json.loads(restored.output)["views"]
    assert [v["name"] for v in listed] == list(views) and listed[0]["watermark"] is not None


def test_backup_into_a_missing_folder_or_onto_a_folder_is_refused(tmp_path):
    path, _ = applied_repo(tmp_path)
    missing = fs("--repo", str(path), "registry", "backup", str(tmp_path / "nowhere" / "r.db"))
    assert missing.exit_code == 1 and "does not exist" in missing.output


def test_backup_onto_the_live_registry_itself_is_refused_even_with_force_and_via_another_path(tmp_path):
    path, registry = applied_repo(tmp_path)
    before = registry.read_bytes()
    link = tmp_path / "alias.db"
    link.symlink_to(registry)
    for target in (registry, link, registry.parent / ".." / registry.parent.name / registry.name):
        result = fs("--repo", str(path), "registry", "backup", str(target), "--force")
        assert result.exit_code == 1, result.output
        assert "is the registry itself" in result.output
    assert registry.read_bytes() == before
    assert fs("--repo", str(path), "list", "views").exit_code == 0


def test_an_empty_registry_file_is_damage_not_a_new_registry(tmp_path):
    path, registry = applied_repo(tmp_path)
    registry.write_bytes(b"")  # a disk-full truncation
    Path(str(registry) + "-wal").unlink(missing_ok=True)
    assert_clear_error(fs("--repo", str(path), "apply"), registry, "the file is empty (0 bytes)")
    assert registry.stat().st_size == 0  # nothing written over it
    with pytest.raises(RegistryError, match="restore it from a backup"):
        Registry(registry)
    # A registry file that does not exist is still a new, empty registry.
    registry.unlink()
    assert fs("--repo", str(path), "apply").exit_code == 0
    assert registry.stat().st_size > 0 and not list(registry.parent.glob(".*.new-*"))
