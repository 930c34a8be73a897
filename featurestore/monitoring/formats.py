"""How reports and the web UI write numbers, shares, durations and times (their Jinja filters).

    num(1234) == "1,234"; num(0.12345) == "0.123"; pct(0.5) == "50.0%"; duration(7500) == "2h 5m"

A missing or non-finite value is written "–".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any


def num(value: Any, digits: int = 3) -> str:
    """A count with thousands separators, a float with `digits` decimals."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}f}"


def pct(value: Any) -> str:
    """A share as a percentage with one decimal."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.1%}"


def duration(seconds: float | None) -> str:
    """Seconds as "3d 4h", "2h 5m", "40s"."""
    if seconds is None or not math.isfinite(seconds):
        return "–"
    s = int(round(abs(seconds)))
    parts = [(s // 86400, "d"), (s % 86400 // 3600, "h"), (s % 3600 // 60, "m"), (s % 60, "s")]
    shown = [f"{v}{u}" for v, u in parts if v][:2]
    return ("-" if seconds < 0 else "") + (" ".join(shown) or "0s")


def utc(value: datetime | None) -> str:
    """A time in UTC, to the second."""
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") if value else "–"


FILTERS: dict[str, Callable[..., str]] = {"num": num, "pct": pct, "duration": duration, "utc": utc}
