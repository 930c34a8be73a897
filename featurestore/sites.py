"""Where a definition was made: the file and line of the user's code that constructed it.

Definitions call `record_site(self)` when built; the repo loader turns the site into a location
relative to the repo ("features.py:12"), which `apply` records in the registry beside (not inside)
the spec, so moving a definition is no change. The site is an attribute outside the dataclass
fields: it takes no part in equality, specs or fingerprints.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import FrameType
from typing import Any

_PACKAGE = str(Path(__file__).resolve().parent)
_ATTRIBUTE = "_fs_defined_at"


def _ours(filename: str) -> bool:
    """Frames to skip: featurestore itself and the dataclass machinery (generated code is '<string>')."""
    return filename.startswith(_PACKAGE) or filename.startswith("<") or filename.endswith("dataclasses.py")


def record_site(obj: Any) -> None:
    """Remember the first frame outside featurestore on the stack as where `obj` was made."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and _ours(frame.f_code.co_filename):
        frame = frame.f_back
    if frame is not None:
        object.__setattr__(obj, _ATTRIBUTE, (frame.f_code.co_filename, frame.f_lineno))


def location(obj: Any, root: Path) -> str | None:
    """Where `obj` was made, as "path/relative/to/root.py:LINE", or None when not inside `root`."""
    site = getattr(obj, _ATTRIBUTE, None)
    if site is None:
        return None
    filename, line = site
    try:
        rel = Path(filename).resolve().relative_to(root.resolve())
    except (ValueError, OSError):
        return None
    return f"{rel.as_posix()}:{line}"
