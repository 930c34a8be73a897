"""`fs registry migrate --to postgresql://...`: copy a registry, every row of it, into an empty PostgreSQL one.

    fs registry migrate --to postgresql://featurestore@db.internal/features
    # then: [registry] url = "postgresql://featurestore@db.internal/features" in featurestore.toml

The copy goes through the storage contract (`RegistryStore.export_rows` / `import_rows`): one
consistent snapshot of the source, written into the target in one transaction with every id kept
(applied objects and their history, watermarks, materialization runs and resets, online watermarks,
the audit trail, models, versions, aliases and their history, saved training sets, pipeline runs,
monitoring profiles), then read back and compared. A target holding anything is refused and left as
it was. Model artifacts, saved training sets' rows and the prediction log are files, not registry
rows. A PostgreSQL registry needs `[models] path`, and with it saved training sets move from beside
the registry file to `<models path>/__training_sets`: `--models-path` copies the artifacts and the
training sets there (`copy_model_files`); without it the command prints the copies to make.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from .config import REGISTRY_URL_SCHEMES, RepoConfig, redacted_url
from .errors import RegistryError
from .registry_store import REGISTRY_TABLES, RegistryStore


@dataclass(frozen=True)
class MigrationResult:
    """What a migration copied: rows per table, and where to (without secrets)."""

    target: str
    rows: dict[str, int]

    @property
    def total(self) -> int:
        """Every row copied."""
        return sum(self.rows.values())


def copy_registry(source: RegistryStore, target: RegistryStore) -> dict[str, int]:
    """Copy every row of `source` into the empty `target` and check that it reads back the same;
    return the rows copied per table."""
    rows = source.export_rows()
    target.import_rows(rows)
    copied = target.export_rows()
    for table in REGISTRY_TABLES:
        if copied.get(table, []) != rows.get(table, []):
            raise RegistryError(
                f"the copy of table {table} in the registry {target.location} does not read back as the "
                f"original {source.location} ({len(copied.get(table, []))} rows, not {len(rows.get(table, []))})"
            )
    return {table: len(rows.get(table, [])) for table in REGISTRY_TABLES}


def migrate_to_postgres(source: RegistryStore, url: str) -> MigrationResult:
    """Copy `source` into the empty PostgreSQL registry at `url` (its tables are created first)."""
    if not url.startswith(REGISTRY_URL_SCHEMES):
        raise RegistryError(f"--to must be a postgresql://user@host/database URL, got {redacted_url(url)!r}")
    from .registry_postgres import PostgresRegistryStore

    target = PostgresRegistryStore(url)
    try:
        if target.location == source.location:
            raise RegistryError(f"the registry {source.location} cannot be copied into itself")
        rows = copy_registry(source, target)
    finally:
        target.close()
    return MigrationResult(target=target.location, rows=rows)


def model_file_moves(config: RepoConfig, models_path: Path) -> list[tuple[Path, Path]]:
    """The folders to copy so that a repo given `[models] path = models_path` finds its files: the model
    artifacts (kept under `config.models_path`) and the saved training sets (kept under
    `config.training_sets_path`, beside the registry file when `[models] path` is not set), each as
    (from, to); folders that are missing, empty or already in place are left out."""
    moves = [(config.models_path, models_path), (config.training_sets_path, models_path / "__training_sets")]
    return [
        (src, dst)
        for src, dst in moves
        if src.is_dir() and any(src.iterdir()) and src.resolve() != dst.resolve()
    ]


def check_model_file_moves(moves: list[tuple[Path, Path]]) -> None:
    """Refuse, before anything is copied, a destination that holds files (they would be mixed or
    overwritten)."""
    for src, dst in moves:
        if dst.resolve().is_relative_to(src.resolve()):
            raise RegistryError(
                f"cannot copy {src} into {dst}, a folder inside it: give --models-path another folder"
            )
        if dst.is_dir() and any(dst.iterdir()):
            raise RegistryError(
                f"cannot copy {src} to {dst}: {dst} is not empty; give --models-path an empty folder"
            )


def copy_model_files(moves: list[tuple[Path, Path]]) -> None:
    """Copy each (from, to) folder of `model_file_moves`; the originals stay as they are."""
    for src, dst in moves:
        shutil.copytree(src, dst, dirs_exist_ok=True)
