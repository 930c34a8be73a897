"""Build small feature repos on disk for tests: a featurestore.toml, definition files and data."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq


def make_repo(
    root: Path,
    files: dict[str, str],
    data: dict[str, pa.Table] | None = None,
    project: str = "test",
    config: str = "",
) -> Path:
    """Write featurestore.toml (+ `config` lines), python files and data tables (parquet or csv by suffix)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "featurestore.toml").write_text(f'project = "{project}"\n' + textwrap.dedent(config))
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    for name, table in (data or {}).items():
        write_table(root / name, table)
    return root


def write_table(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        pacsv.write_csv(table, path)
    else:
        pq.write_table(table, path)
