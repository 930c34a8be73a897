"""Fixtures of the web UI tests: the demo repo's state (built once per session) and app clients."""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from featurestore.config import ApiKey
from tests.ui.demo_state import build

KEYS = (
    ApiKey("ada", "admin", "key-ada-admin-000000"),
    ApiKey("abe", "approver", "key-abe-approver-0000"),
    ApiKey("rita", "read", "key-rita-read-000000"),
)


@pytest.fixture(scope="session")
def demo_built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo state, built once: tests that change it take `demo_repo` (a fresh copy) instead."""
    return build(tmp_path_factory.mktemp("ui-demo") / "repo")


@pytest.fixture
def demo_repo(demo_built: Path, tmp_path: Path) -> Path:
    """A private copy of the demo state for one test (approving a model changes it)."""
    repo = tmp_path / "repo"
    shutil.copytree(demo_built, repo)
    return repo


def ui_client(repo: Path, keys: Sequence[ApiKey] | None = None):  # type: ignore[no-untyped-def]
    """A TestClient of the full server app of `repo` (with `keys`, else open); use as a context manager."""
    warnings.filterwarnings("ignore", message=".*httpx.*")
    from fastapi.testclient import TestClient

    from featurestore import FeatureStore
    from featurestore.server import create_app

    store = FeatureStore(repo)
    return TestClient(create_app(store, api_keys=list(keys) if keys is not None else None))


@pytest.fixture
def open_client(demo_repo: Path) -> Iterator[object]:
    with ui_client(demo_repo) as client:
        yield client
