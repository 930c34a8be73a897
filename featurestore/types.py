"""Value types of features and join keys, and how each maps to Arrow and DuckDB.

from featurestore import Field, Float64, Array, Int64
Field("conv_rate", Float64)
Field("recent_trip_ids", Array(Int64))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

from .errors import DefinitionError


@dataclass(frozen=True)
class ValueType:
    """A feature's value type. Use the module constants (`Int64`, `String`, ...) or `Array(t)`."""

    name: str
    element: ValueType | None = None  # set for list types

    @property
    def is_list(self) -> bool:
        return self.element is not None

    def to_arrow(self) -> pa.DataType:
        if self.element is not None:
            return pa.list_(self.element.to_arrow())
        return _ARROW[self.name]

    def to_duckdb(self) -> str:
        if self.element is not None:
            return f"{self.element.to_duckdb()}[]"
        return _DUCKDB[self.name]

    def __repr__(self) -> str:
        return f"Array({self.element!r})" if self.element is not None else self.name

    def to_spec(self) -> str:
        """The stable text form stored in the registry: 'Int64', 'Array(String)'."""
        return repr(self)

    @staticmethod
    def from_spec(text: str) -> ValueType:
        if text.startswith("Array(") and text.endswith(")"):
            return Array(ValueType.from_spec(text[6:-1]))
        if text not in _SCALARS:
            raise DefinitionError(
                f"unknown value type '{text}' (known: {', '.join(sorted(_SCALARS))}, Array(...))"
            )
        return _SCALARS[text]

    def accepts(self, arrow_type: pa.DataType) -> bool:
        """Whether source data of `arrow_type` can be read as this type without losing meaning."""
        if self.element is not None:
            return (
                pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type)
            ) and self.element.accepts(arrow_type.value_type)
        return _ACCEPTS[self.name](arrow_type)


Int32 = ValueType("Int32")
Int64 = ValueType("Int64")
Float32 = ValueType("Float32")
Float64 = ValueType("Float64")
String = ValueType("String")
Bool = ValueType("Bool")
UnixTimestamp = ValueType("UnixTimestamp")
Bytes = ValueType("Bytes")

_SCALARS = {t.name: t for t in (Int32, Int64, Float32, Float64, String, Bool, UnixTimestamp, Bytes)}


def Array(element: ValueType) -> ValueType:  # noqa: N802 - reads like a type, as in Feast
    """A list type: `Array(Int64)`, `Array(String)`. Lists of lists are not supported."""
    if not isinstance(element, ValueType) or element.is_list:
        raise DefinitionError(f"Array() takes a scalar value type such as Int64, got {element!r}")
    return ValueType("Array", element)


def value_type_of(t: pa.DataType) -> ValueType | None:
    """The value type a source column of Arrow type `t` holds when none is declared (None: no such type).

    Every integer width reads as Int64, every float as Float64 (as a source read by DuckDB gives them)."""
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        element = value_type_of(t.value_type)
        return Array(element) if element is not None and not element.is_list else None
    if pa.types.is_integer(t):
        return Int64
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return String
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return Float64
    if pa.types.is_boolean(t):
        return Bool
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return Bytes
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return UnixTimestamp
    return None


_ARROW = {
    "Int32": pa.int32(),
    "Int64": pa.int64(),
    "Float32": pa.float32(),
    "Float64": pa.float64(),
    "String": pa.string(),
    "Bool": pa.bool_(),
    "UnixTimestamp": pa.timestamp("us", tz="UTC"),
    "Bytes": pa.binary(),
}
_DUCKDB = {
    "Int32": "INTEGER",
    "Int64": "BIGINT",
    "Float32": "FLOAT",
    "Float64": "DOUBLE",
    "String": "VARCHAR",
    "Bool": "BOOLEAN",
    "UnixTimestamp": "TIMESTAMPTZ",
    "Bytes": "BLOB",
}


def _is_int(t: pa.DataType) -> bool:
    return bool(pa.types.is_integer(t))


_ACCEPTS: dict[str, Callable[[pa.DataType], bool]] = {
    "Int32": _is_int,
    "Int64": _is_int,
    "Float32": lambda t: pa.types.is_floating(t) or _is_int(t) or pa.types.is_decimal(t),
    "Float64": lambda t: pa.types.is_floating(t) or _is_int(t) or pa.types.is_decimal(t),
    "String": lambda t: (
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_string_view(t)
        or pa.types.is_dictionary(t)
    ),
    "Bool": pa.types.is_boolean,
    "UnixTimestamp": lambda t: pa.types.is_timestamp(t) or pa.types.is_date(t),
    "Bytes": lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t),
}

__all__ = [
    "ValueType",
    "Int32",
    "Int64",
    "Float32",
    "Float64",
    "String",
    "Bool",
    "UnixTimestamp",
    "Bytes",
    "Array",
]
