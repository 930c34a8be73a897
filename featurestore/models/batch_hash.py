"""`hash_column` / `hash_table` of `featurestore.models.lineage`, computed a record batch at a time.

    hasher = TableHasher(schema)
    for batch in job.to_batches():
        hasher.update(batch)
    sha, columns = hasher.digest()       # == hash_table(pa.Table.from_batches(batches))

`hash_column` hashes a column's type and length, then its null bitmap, then its values (for
strings: every length, then all the bytes), so nothing after the type can be hashed before the
last row is seen. Each column's parts are spooled to temporary files as the batches go by, then
hashed in `hash_column`'s order: the driver holds one batch, whatever the table's size (the
Spark engine's training sets).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from typing import IO, Any

import numpy as np
import pyarrow as pa

from .lineage import value_parts

_CHUNK = 1 << 20


class ColumnHasher:
    """hash_column of one column, fed a piece (a batch's array) at a time."""

    def __init__(self, dtype: pa.DataType):
        self.dtype = dtype.value_type if pa.types.is_dictionary(dtype) else dtype
        self.rows = 0
        self.pending_nulls = np.zeros(0, dtype=bool)  # fewer than 8: packed with the next piece
        self.nulls: IO[bytes] = tempfile.TemporaryFile()
        self.values: IO[bytes] = tempfile.TemporaryFile()
        self.data: IO[bytes] = tempfile.TemporaryFile()
        self.json_items = 0  # lists, structs, decimals: pieces of one JSON array

    def update(self, arr: pa.Array) -> None:
        if pa.types.is_dictionary(arr.type):
            arr = arr.dictionary_decode()
        self.rows += len(arr)
        bits = np.concatenate([self.pending_nulls, arr.is_null().to_numpy(zero_copy_only=False)])
        whole = len(bits) - len(bits) % 8
        self.nulls.write(np.packbits(bits[:whole]).tobytes())
        self.pending_nulls = bits[whole:]
        parts = value_parts(arr)
        if parts is not None:
            self.values.write(parts[0])
            self.data.write(parts[1])
        else:  # json.dumps of the whole list is "[" + ", ".join(items) + "]"
            for item in arr.to_pylist():
                self.data.write((", " if self.json_items else "[").encode())
                self.data.write(json.dumps(item, default=str).encode())
                self.json_items += 1

    def digest(self) -> str:
        h = hashlib.sha256(str(self.dtype).encode())
        h.update(self.rows.to_bytes(8, "little"))
        self.nulls.write(np.packbits(self.pending_nulls).tobytes() if len(self.pending_nulls) else b"")
        parts = [self.nulls, self.values, self.data]
        if not _is_flat(self.dtype):
            self.data.write(b"]" if self.json_items else b"[]")
        for part in parts:
            part.seek(0)
            while chunk := part.read(_CHUNK):
                h.update(chunk)
            part.close()
        return h.hexdigest()


def _is_flat(t: pa.DataType) -> bool:
    """Whether hash_column hashes `t`'s values as bytes (else as JSON)."""
    t = pa.int64() if pa.types.is_temporal(t) else t
    return any(
        check(t)
        for check in (
            pa.types.is_integer,
            pa.types.is_floating,
            pa.types.is_boolean,
            pa.types.is_string,
            pa.types.is_large_string,
            pa.types.is_binary,
            pa.types.is_large_binary,
        )
    )


class TableHasher:
    """hash_table of a table given as record batches of `schema`."""

    def __init__(self, schema: pa.Schema):
        self.names = schema.names
        self.columns = [ColumnHasher(f.type) for f in schema]
        self.rows = 0

    def update(self, batch: pa.RecordBatch) -> None:
        self.rows += batch.num_rows
        for hasher, column in zip(self.columns, batch.columns):
            hasher.update(column)

    def digest(self) -> tuple[str, dict[str, str]]:
        """(sha256 of the whole table, {column: sha256}), as hash_table gives."""
        columns = {n: c.digest() for n, c in zip(self.names, self.columns)}
        return combine(self.rows, columns), columns


def combine(rows: int, columns: dict[str, Any]) -> str:
    """hash_table's whole-table sha256 from the row count and the columns' sha256s, in order."""
    h = hashlib.sha256(rows.to_bytes(8, "little"))
    for name, digest in columns.items():
        h.update(f"{name}\0{digest}\0".encode())
    return h.hexdigest()
