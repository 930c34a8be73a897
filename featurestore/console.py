"""What every `fs` command shares: the console it prints to, error reporting, opening the store."""

from __future__ import annotations

import functools
import sys
from typing import TYPE_CHECKING, Any

import click

from .errors import FeatureStoreError

if TYPE_CHECKING:
    from rich.console import Console

    from .store import FeatureStore


def console(stderr: bool = False) -> Console:
    """A rich console (imported lazily: `fs --help` stays fast)."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def handle_errors(fn: Any) -> Any:
    """Print FeatureStoreErrors as one clear message and exit 1, without a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except FeatureStoreError as e:
            console(stderr=True).print(f"[bold red]error:[/] {e}", markup=True)
            sys.exit(1)

    return wrapper


def open_store(ctx: click.Context) -> FeatureStore:
    """The FeatureStore of the repo named by the global --repo option (or found from the current folder)."""
    from .store import FeatureStore

    return FeatureStore((ctx.obj or {}).get("repo"))
