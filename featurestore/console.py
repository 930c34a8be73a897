"""What every `fs` command shares: the console it prints to, error reporting, opening the store."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

from .errors import FeatureStoreError

if TYPE_CHECKING:
    from rich.console import Console

    from .store import FeatureStore


_F = TypeVar("_F", bound=Callable[..., Any])

# The width of a console that is not a terminal (a pipe, a file, CliRunner): wide enough that no
# table cell is ever cut or wrapped, since nobody reads a pipe at 80 columns but grep and scripts.
PIPE_WIDTH = 100_000


def console(stderr: bool = False) -> Console:
    """A rich console (imported lazily: `fs --help` stays fast).

    On a terminal it fits the terminal's width; anywhere else (a pipe, a file) it never truncates
    or wraps a name, so `fs list | grep customer_profile` finds it whole.
    """
    from rich.console import Console

    out = Console(stderr=stderr, highlight=False, soft_wrap=True)
    if not out.is_terminal:
        out.width = PIPE_WIDTH
    return out


def print_json(value: Any) -> None:
    """Print `value` as JSON for scripts (`--json`): datetimes as ISO strings, NaN and infinities as
    null (JSON has neither), nothing styled or wrapped."""
    import json

    click.echo(json.dumps(_plain(value), indent=2, default=_default))


def _plain(value: Any) -> Any:
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "total_seconds"):
        return value.total_seconds()
    if hasattr(value, "item"):  # numpy scalars
        return _plain(value.item())
    return str(value)


def handle_errors(fn: Any) -> Any:
    """Print FeatureStoreErrors as one clear message and exit 1, without a traceback."""
    return exit_on_errors(1)(fn)


def exit_on_errors(code: int) -> Callable[[_F], _F]:
    """`handle_errors` with exit code `code`: the monitoring commands exit 2 on an error, since 1
    there means a breach and cron or CI must tell the two apart."""

    def decorate(fn: _F) -> _F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except FeatureStoreError as e:
                from rich.markup import escape

                console(stderr=True).print(f"[bold red]error:[/] {escape(str(e))}", markup=True)
                sys.exit(code)

        return cast(_F, wrapper)

    return decorate


def open_store(ctx: click.Context) -> FeatureStore:
    """The FeatureStore of the repo named by the global --repo option (or found from the current folder)."""
    from .store import FeatureStore

    return FeatureStore((ctx.obj or {}).get("repo"))
