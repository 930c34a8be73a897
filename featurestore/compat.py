"""What differs between the Python versions the package supports (3.10+), in one place."""

from __future__ import annotations

import sys

if sys.version_info >= (3, 11):
    from asyncio import timeout
else:  # pragma: no cover - Python 3.10: the same context manager, from async-timeout
    from async_timeout import timeout

__all__ = ["timeout"]
