"""How the server writes JSON: orjson, with one documented rule per value JSON cannot hold.

| Python value                              | JSON                                                       |
|-------------------------------------------|------------------------------------------------------------|
| None, pandas NA/NaT                       | null                                                       |
| float NaN, +inf, -inf                     | the strings "NaN", "Infinity", "-Infinity" (as protobuf's  |
|                                           | JSON mapping does), so a NaN never reads as a null         |
| datetime (aware or naive, pandas too)     | RFC 3339 string in UTC with a "Z": "2026-01-02T03:04:05Z"  |
|                                           | (naive values are read as UTC, as everywhere in the store) |
| date                                      | "2026-01-02"                                               |
| timedelta                                 | seconds, as a number                                       |
| bytes                                     | standard base64 string (RFC 4648, with padding)            |
| Decimal                                   | number                                                     |
| numpy scalars and arrays                  | numbers / lists                                            |

The same rules apply to push bodies in the other direction (see `server/routers/push.py`).
"""

from __future__ import annotations

import base64
import math
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
from starlette.responses import Response

_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
_NONFINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


def _default(obj: Any) -> Any:
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(obj)).decode("ascii")
    if isinstance(obj, datetime):  # pandas.Timestamp: a datetime subclass orjson does not take
        if obj != obj:  # NaT
            return None
        return datetime.fromisoformat(obj.isoformat())
    if isinstance(obj, timedelta):
        return obj.total_seconds()
    if isinstance(obj, Decimal):
        return float(obj)
    if obj is None or type(obj).__name__ in ("NAType", "NaTType"):
        return None
    if hasattr(obj, "tolist"):  # numpy/arrow scalars orjson does not know
        return obj.tolist()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"cannot write a {type(obj).__name__} as JSON")


def finite(values: list[Any]) -> list[Any]:
    """`values` with NaN/±inf floats replaced by "NaN"/"Infinity"/"-Infinity" (the list itself when none)."""
    out = None
    for i, v in enumerate(values):
        if v.__class__ is float and (v != v or v in _NONFINITE):
            if out is None:
                out = list(values)
            out[i] = "NaN" if v != v else _NONFINITE[v]
        elif v.__class__ is list:
            fixed = finite(v)
            if fixed is not v:
                if out is None:
                    out = list(values)
                out[i] = fixed
    return values if out is None else out


def dumps(content: Any) -> bytes:
    """`content` as JSON bytes, with the rules of this module (NaN handling is the caller's: `finite`)."""
    return orjson.dumps(content, default=_default, option=_OPTIONS)


class JSONResponse(Response):
    """A JSON response written by orjson with the rules of this module."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)
