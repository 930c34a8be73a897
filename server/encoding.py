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
import binascii
import math
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson
import pyarrow as pa
from starlette.responses import Response

from featurestore.types import ValueType

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


def _first(values: list[Any]) -> Any:
    for v in values:
        if v is not None:
            return v
    return None


def _finite_floats(values: list[Any]) -> list[Any]:
    try:  # numbers only and a finite sum: none is NaN or infinite (one C loop, the common case)
        if math.isfinite(sum(values)):
            return values
    except TypeError:  # nulls among them
        if math.isfinite(sum([v for v in values if v is not None])):
            return values
    return [
        ("NaN" if v != v else _NONFINITE[v]) if v.__class__ is float and (v != v or v in _NONFINITE) else v
        for v in values
    ]


def finite(values: list[Any]) -> list[Any]:
    """A column with NaN/±inf floats as "NaN"/"Infinity"/"-Infinity" (the same list when it has none).

    Looks only at columns (and lists) whose values are floats: strings, integers, bytes, timestamps
    cannot hold a NaN. A column holds one type (a view declares it), so its first value tells.
    """
    first = _first(values)
    if first.__class__ is float:
        return _finite_floats(values)
    if first.__class__ is list:
        element = None
        for v in values:
            if v:
                element = _first(v)
                if element is not None:
                    break
        if element.__class__ is float:
            fixed = [v if not v else _finite_floats(v) for v in values]
            if any(a is not b for a, b in zip(fixed, values)):
                return fixed
    return values


def dumps(content: Any) -> bytes:
    """`content` as JSON bytes, with the rules of this module (NaN handling is the caller's: `finite`)."""
    return orjson.dumps(content, default=_default, option=_OPTIONS)


class JSONResponse(Response):
    """A JSON response written by orjson with the rules of this module."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)


# -- the other direction: JSON columns of a push, typed by the views that receive them -------------


class DecodeError(ValueError):
    """A pushed JSON value that cannot be read as its column's type (message names column and row)."""


def _timestamp(value: Any) -> datetime:
    if isinstance(value, bool):
        raise ValueError("a boolean is not a time")
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, tz=timezone.utc)
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        parsed = datetime.fromisoformat(text)
        return (
            parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)
        )
    raise ValueError(f"expected an RFC 3339 string or epoch seconds, got {type(value).__name__}")


def _float(value: Any) -> float:
    if isinstance(value, str) and value in _FLOAT_WORDS:
        return _FLOAT_WORDS[value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise ValueError(f'expected a number (or "NaN", "Infinity", "-Infinity"), got {value!r}')


def _int(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():  # 3.0 from a client that writes every number as float
        return int(value)
    raise ValueError(f"expected an integer, got {value!r}")


def _bytes(value: Any) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"expected a base64 string, got {type(value).__name__}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not valid base64") from None


_FLOAT_WORDS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_CONVERT = {
    "UnixTimestamp": _timestamp,
    "Float64": _float,
    "Float32": _float,
    "Bytes": _bytes,
    "Int64": _int,
    "Int32": _int,
}


def decode_column(name: str, values: list[Any], dtype: ValueType) -> pa.Array:
    """JSON values of one pushed column as an Arrow array of `dtype`.

    Timestamps: RFC 3339 strings (naive = UTC) or epoch seconds; bytes: base64; floats: numbers or
    "NaN"/"Infinity"/"-Infinity"; integers: integers (or integral floats, 3.0), never truncated.
    Raises DecodeError naming the column and the row.
    """
    convert = _CONVERT.get(dtype.element.name if dtype.element is not None else dtype.name)
    if convert is not None:
        out: list[Any] = []
        for i, v in enumerate(values):
            try:
                if v is None:
                    out.append(None)
                elif dtype.is_list:
                    if not isinstance(v, list):
                        raise ValueError(f"expected a list, got {type(v).__name__}")
                    out.append([None if x is None else convert(x) for x in v])
                else:
                    out.append(convert(v))
            except (ValueError, OverflowError, OSError) as e:
                raise DecodeError(f"column '{name}' row {i}: {v!r} is not a {dtype!r}: {e}") from None
        values = out
    try:
        return pa.array(values, type=dtype.to_arrow())
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError, TypeError) as e:
        row = _first_bad_row(values, dtype)
        where = f"column '{name}'" + (f" row {row}: {values[row]!r}" if row is not None else "")
        raise DecodeError(f"{where} is not a {dtype!r} ({e})") from None


def _first_bad_row(values: list[Any], dtype: ValueType) -> int | None:
    for i, v in enumerate(values):
        try:
            pa.array([v], type=dtype.to_arrow())
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError, TypeError):
            return i
    return None


class JSONBytesResponse(Response):
    """A 200 of JSON already encoded (by `dumps`): the same headers as `Response(body, media_type=
    "application/json")`, written directly (the hot path answers one per request)."""

    media_type = "application/json"

    def __init__(self, body: bytes) -> None:
        self.status_code = 200
        self.background = None
        self.body = body
        self.raw_headers = [
            (b"content-length", str(len(body)).encode()),
            (b"content-type", b"application/json"),
        ]
